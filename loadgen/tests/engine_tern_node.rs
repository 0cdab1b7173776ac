//! End to end against a real tern node started in-process (2 shards, io_uring transport):
//! preload, then YCSB workloads; every count adds up and nothing fails.

mod support;

use support::{ops_of, ops_run, serial, spec};
use tern_loadgen::engine;
use tern_loadgen::proto::ProtocolKind;
use tern_loadgen::workload::{Mix, OpKind};
use tern_server::node::{Node, NodeConfig};

/// A node on ephemeral ports with its data in a temporary directory (removed when the
/// returned guard drops).
fn start_node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let node =
        Node::start(&NodeConfig::for_tests(2, "loadgen-test", dir.path())).expect("start node");
    (node, dir)
}

#[test]
fn preload_then_ycsb_a_b_f_against_a_real_node() {
    let _serial = serial();
    let (node, _data) = start_node();
    let target = format!("127.0.0.1:{}", node.topology.shared_port);
    const KEYS: u64 = 2000;

    let mut config = ops_run(&target, ProtocolKind::Tern, spec(Mix::YcsbA, KEYS), 10_000);
    config.load = Some(KEYS);
    let out = engine::run_detailed(&config).expect("ycsb-a");
    let r = &out.report;
    let load = out.engine.load.as_ref().expect("preloaded");
    assert_eq!((load.keys, load.ops, load.errors), (KEYS, KEYS, 0));
    assert_eq!(r.total.ops, 10_000);
    assert_eq!(r.total.errors, 0, "{:?}", out.engine.error_samples());
    assert_eq!(ops_of(r, OpKind::Get) + ops_of(r, OpKind::Update), 10_000);
    assert!(ops_of(r, OpKind::Get) > 4000 && ops_of(r, OpKind::Update) > 4000);
    // Every key read was preloaded.
    assert_eq!(out.engine.misses(), 0);

    // The tables exist now: a second setup finds them and checks their schema.
    for mix in [Mix::YcsbB, Mix::YcsbF] {
        let config = ops_run(&target, ProtocolKind::Tern, spec(mix, KEYS), 5000);
        let out = engine::run_detailed(&config).expect("run");
        assert_eq!(out.report.total.ops, 5000, "{mix}");
        assert_eq!(
            out.report.total.errors,
            0,
            "{mix}: {:?}",
            out.engine.error_samples()
        );
        assert_eq!(out.engine.misses(), 0, "{mix}");
    }
    node.stopper().stop();
    node.join().expect("node stops cleanly");
}

#[test]
fn ycsb_e_scans_the_ranged_model_of_a_real_node() {
    let _serial = serial();
    let (node, _data) = start_node();
    let target = format!("127.0.0.1:{}", node.topology.shared_port);
    const KEYS: u64 = 3000;
    let mut config = ops_run(&target, ProtocolKind::Tern, spec(Mix::YcsbE, KEYS), 3000);
    config.load = Some(KEYS);
    let out = engine::run_detailed(&config).expect("ycsb-e");
    let r = &out.report;
    assert_eq!(r.total.ops, 3000);
    assert_eq!(r.total.errors, 0, "{:?}", out.engine.error_samples());
    assert!(ops_of(r, OpKind::Scan) > 2500);
    assert_eq!(ops_of(r, OpKind::Scan) + ops_of(r, OpKind::Insert), 3000);
    node.stopper().stop();
    node.join().expect("node stops cleanly");
}

#[test]
fn reads_without_a_preload_are_misses_not_errors() {
    let _serial = serial();
    let (node, _data) = start_node();
    let target = format!("127.0.0.1:{}", node.topology.shared_port);
    let config = ops_run(&target, ProtocolKind::Tern, spec(Mix::Get, 1_000_000), 2000);
    let out = engine::run_detailed(&config).expect("run");
    assert_eq!(out.report.total.ops, 2000);
    assert_eq!(out.report.total.errors, 0);
    assert_eq!(out.engine.misses(), 2000);
    node.stopper().stop();
    node.join().expect("node stops cleanly");
}
