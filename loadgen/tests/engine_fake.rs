//! The engine against fake servers (`tern_loadgen::fake`) on 127.0.0.1: what the
//! generator counts is what the server saw; depth, routing, errors, misses; the open
//! loop's coordinated-omission correction against a server that stalls one reply.

mod support;

use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use support::{errors_of, ops_of, ops_run, serial, spec};
use tern_loadgen::engine::{self, RunLength};
use tern_loadgen::fake::{FakeConfig, FakeServer};
use tern_loadgen::proto::ProtocolKind;
use tern_loadgen::workload::{Mix, OpKind};

fn fake(config: FakeConfig) -> FakeServer {
    FakeServer::start(config).expect("start the fake server")
}

#[test]
fn tern_closed_loop_counts_match_the_server_and_route_to_the_owning_shard() {
    let _serial = serial();
    let mut cfg = FakeConfig::new(ProtocolKind::Tern);
    cfg.shards = 3;
    cfg.check_routing = true;
    let server = fake(cfg);
    let config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::YcsbA, 10_000),
        20_000,
    );
    let out = engine::run_detailed(&config).expect("run");
    let r = &out.report;
    let s = server.stats();
    assert_eq!(r.total.ops, 20_000);
    assert_eq!(r.total.errors, 0);
    assert_eq!(s.requests.load(SeqCst), 20_000);
    assert_eq!(ops_of(r, OpKind::Get), s.gets.load(SeqCst));
    assert_eq!(ops_of(r, OpKind::Update), s.writes.load(SeqCst));
    assert_eq!(
        s.misrouted.load(SeqCst),
        0,
        "requests reached the wrong shard"
    );
    for shard in 0..3 {
        assert!(
            s.per_shard[shard].load(SeqCst) > 4000,
            "shard {shard} saw {} requests",
            s.per_shard[shard].load(SeqCst)
        );
    }
    // Hello and the CreateTable of the setup, nothing else.
    assert_eq!(s.setup.load(SeqCst), 2);
    // 4 connections per thread, each to one of the 3 shards.
    assert_eq!(s.connections.load(SeqCst), 1 + 4);
    assert_eq!(out.engine.misses(), 0);
}

#[test]
fn tern_read_modify_write_is_a_read_then_a_write_and_one_latency() {
    let _serial = serial();
    let mut cfg = FakeConfig::new(ProtocolKind::Tern);
    cfg.shards = 2;
    cfg.check_routing = true;
    let server = fake(cfg);
    let config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::YcsbF, 1000),
        6000,
    );
    let r = engine::run(&config).expect("run");
    let s = server.stats();
    let rmw = ops_of(&r, OpKind::ReadModifyWrite);
    let gets = ops_of(&r, OpKind::Get);
    assert_eq!(r.total.ops, 6000);
    assert_eq!(rmw + gets, 6000);
    assert!(rmw > 2500 && gets > 2500, "rmw {rmw} gets {gets}");
    // Every read-modify-write is two requests: a GetItem, then a PutItem.
    assert_eq!(s.requests.load(SeqCst), 6000 + rmw);
    assert_eq!(s.writes.load(SeqCst), rmw);
    assert_eq!(s.gets.load(SeqCst), gets + rmw);
    assert_eq!(s.misrouted.load(SeqCst), 0);
}

#[test]
fn tern_ranged_workload_scans_and_inserts_on_the_owning_shard() {
    let _serial = serial();
    let mut cfg = FakeConfig::new(ProtocolKind::Tern);
    cfg.shards = 2;
    cfg.check_routing = true;
    let server = fake(cfg);
    let config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::YcsbE, 5000),
        4000,
    );
    let r = engine::run(&config).expect("run");
    let s = server.stats();
    assert_eq!(r.total.ops, 4000);
    assert_eq!(r.total.errors, 0);
    assert_eq!(ops_of(&r, OpKind::Scan), s.scans.load(SeqCst));
    assert_eq!(ops_of(&r, OpKind::Insert), s.writes.load(SeqCst));
    assert!(s.scans.load(SeqCst) > 3000);
    assert_eq!(s.misrouted.load(SeqCst), 0);
    // Hello, CreateTable usertable, CreateTable usertable_ranges.
    assert_eq!(s.setup.load(SeqCst), 3);
}

#[test]
fn resp_closed_loop_counts_misses_and_errors_like_the_server() {
    let _serial = serial();
    let mut cfg = FakeConfig::new(ProtocolKind::Resp);
    cfg.miss_every = Some(10);
    cfg.error_every = Some(7);
    let server = fake(cfg);
    let config = ops_run(
        &server.target(),
        ProtocolKind::Resp,
        spec(Mix::Ratio { get_fraction: 0.8 }, 1000),
        14_000,
    );
    let out = engine::run_detailed(&config).expect("run");
    let r = &out.report;
    let s = server.stats();
    assert_eq!(s.requests.load(SeqCst), 14_000);
    assert_eq!(r.total.ops + r.total.errors, 14_000);
    assert_eq!(r.total.errors, s.errors.load(SeqCst));
    // Every 7th request of each of the 4 connections.
    assert!(
        (14_000 / 7 - 4..=14_000 / 7).contains(&r.total.errors),
        "{} errors",
        r.total.errors
    );
    assert_eq!(out.engine.misses(), s.misses.load(SeqCst));
    assert!(out.engine.misses() > 0);
    assert_eq!(ops_of(r, OpKind::Get), s.gets.load(SeqCst));
    assert_eq!(ops_of(r, OpKind::Set), s.writes.load(SeqCst));
    assert_eq!(
        errors_of(r, OpKind::Get) + errors_of(r, OpKind::Set),
        r.total.errors
    );
    assert!(
        out.engine
            .error_samples()
            .iter()
            .any(|e| e.contains("injected")),
        "{:?}",
        out.engine.error_samples()
    );
}

#[test]
fn pipelining_depth_is_honoured_and_used() {
    let _serial = serial();
    let mut cfg = FakeConfig::new(ProtocolKind::Resp);
    // Hold every batch of replies: the generator fills its pipelines meanwhile.
    cfg.reply_delay = Some(Duration::from_millis(3));
    let server = fake(cfg);
    let (connections, depth) = (3, 5);
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Resp,
        spec(Mix::Get, 1000),
        3000,
    );
    config.connections = connections;
    config.depth = depth;
    let r = engine::run(&config).expect("run");
    let s = server.stats();
    assert_eq!(r.total.ops, 3000);
    let per_conn = s.max_pending_per_conn.load(SeqCst);
    let total = s.max_pending_total.load(SeqCst);
    assert_eq!(
        per_conn, depth as u64,
        "a connection had {per_conn} unanswered"
    );
    assert!(
        total <= (connections * depth) as u64 && total >= depth as u64,
        "{total} unanswered over all connections"
    );
}

#[test]
fn server_cpu_is_measured_and_spinning_works() {
    let _serial = serial();
    let server = fake(FakeConfig::new(ProtocolKind::Tern));
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::Get, 1000),
        1,
    );
    // The fake server runs in this process: its CPU time is this process's.
    config.server_pid = Some(std::process::id());
    config.spin = true;
    config.warmup = Duration::from_millis(200);
    config.length = RunLength::Duration(Duration::from_millis(800));
    let out = engine::run_detailed(&config).expect("run");
    let r = &out.report;
    assert!(r.total.ops > 0);
    let server_us = r.server_cpu_us_per_op.expect("server CPU measured");
    assert!(server_us > 0.0, "{server_us}");
    assert!(r.info.loadgen_cpu_ns > 0);
    // Spinning keeps the thread busy the whole measured window.
    assert!(
        r.info.loadgen_busy_fraction > 0.5,
        "{}",
        r.info.loadgen_busy_fraction
    );
}

#[test]
fn depth_one_never_pipelines() {
    let _serial = serial();
    let mut cfg = FakeConfig::new(ProtocolKind::Tern);
    cfg.reply_delay = Some(Duration::from_millis(1));
    let server = fake(cfg);
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::Get, 1000),
        400,
    );
    config.connections = 4;
    config.depth = 1;
    engine::run(&config).expect("run");
    assert_eq!(server.stats().max_pending_per_conn.load(SeqCst), 1);
    assert!(server.stats().max_pending_total.load(SeqCst) <= 4);
}

/// The open loop measures from the intended send time: when the server stalls one reply
/// for 200 ms at 2000 ops/s, the ~400 ops due meanwhile all wait, and their latencies
/// (not just the stalled one's) show it. A generator that timed from the actual send would
/// see one slow op and a p99 near the round trip.
#[test]
fn open_loop_corrects_coordinated_omission() {
    let _serial = serial();
    let stall = Duration::from_millis(200);
    let mut cfg = FakeConfig::new(ProtocolKind::Resp);
    cfg.stall = Some((1000, stall));
    let server = fake(cfg);
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Resp,
        spec(Mix::Get, 1000),
        1,
    );
    config.connections = 1;
    config.depth = 1;
    config.rate = Some(2000.0);
    config.length = RunLength::Duration(Duration::from_secs(2));
    let out = engine::run_detailed(&config).expect("run");
    let r = &out.report;
    // The schedule is kept: 2 s at 2000/s, give or take the edges.
    assert!(
        (3900..=4100).contains(&r.total.ops),
        "{} ops in 2 s at 2000/s",
        r.total.ops
    );
    assert_eq!(r.total.errors, 0);
    assert!(
        r.total.p99_us >= 100_000.0,
        "p99 {} µs: the stall's backlog is not in the latencies",
        r.total.p99_us
    );
    assert!(r.total.max_us >= 190_000.0, "max {} µs", r.total.max_us);
    // Ops due while the reply was stalled: about 0.2 s × 2000/s, those due in its first
    // 150 ms waited at least 50 ms.
    let slow = r
        .total_histogram()
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= 50_000_000)
        .map(|v| v.count_at_value())
        .sum::<u64>();
    assert!(slow >= 200, "only {slow} ops waited 50 ms or more");
    // The generator caught up by sending the backlog at once, and said so.
    assert!(
        out.engine.late_sends() >= 300,
        "{}",
        out.engine.late_sends()
    );
}

#[test]
fn open_loop_keeps_the_rate_and_excludes_the_warmup() {
    let _serial = serial();
    let server = fake(FakeConfig::new(ProtocolKind::Tern));
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::Get, 1000),
        1,
    );
    config.threads = 2;
    config.rate = Some(3000.0);
    config.warmup = Duration::from_millis(500);
    config.length = RunLength::Duration(Duration::from_secs(1));
    let out = engine::run_detailed(&config).expect("run");
    let r = &out.report;
    assert!(
        (2900..=3100).contains(&r.total.ops),
        "{} measured ops at 3000/s for 1 s",
        r.total.ops
    );
    let seen = server.stats().requests.load(SeqCst);
    assert!(
        (4400..=4600).contains(&seen),
        "the server saw {seen} requests in 1.5 s at 3000/s"
    );
    assert!(r.total.p50_us < 50_000.0, "p50 {} µs", r.total.p50_us);
    // How many sends left late depends on the host's scheduling, not on the generator
    // (a noisy 2-vCPU guest running other tests showed 1,202 of 4,500): the counts above
    // prove the schedule was kept, and `open_loop_corrects_coordinated_omission` proves lateness is
    // counted. Reported, not asserted (speed is for benchmarks, not tests).
    eprintln!("late sends: {}", out.engine.late_sends());
}

#[test]
fn closed_loop_by_duration_measures_after_the_warmup() {
    let _serial = serial();
    let server = fake(FakeConfig::new(ProtocolKind::Resp));
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Resp,
        spec(Mix::Set, 1000),
        1,
    );
    config.warmup = Duration::from_millis(300);
    config.length = RunLength::Duration(Duration::from_millis(700));
    let started = Instant::now();
    let r = engine::run(&config).expect("run");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!((r.measured_secs - 0.7).abs() < 1e-9);
    let seen = server.stats().requests.load(SeqCst);
    assert!(r.total.ops > 1000, "{} ops", r.total.ops);
    assert!(
        r.total.ops < seen,
        "measured {} of {seen}: warm-up ops were counted",
        r.total.ops
    );
    assert_eq!(r.total.errors, 0);
}

#[test]
fn a_server_that_goes_away_is_errors_not_a_hang() {
    let _serial = serial();
    let server = fake(FakeConfig::new(ProtocolKind::Tern));
    let mut config = ops_run(
        &server.target(),
        ProtocolKind::Tern,
        spec(Mix::Get, 1000),
        1,
    );
    config.length = RunLength::Duration(Duration::from_secs(3));
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        server.stop();
    });
    let started = Instant::now();
    let out = engine::run_detailed(&config).expect("errors during a run are not fatal");
    stopper.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.report.total.ops > 0);
    assert!(out.engine.connection_failures() >= 1);
    assert!(
        out.engine
            .error_samples()
            .iter()
            .any(|e| e.contains("closed the connection")),
        "{:?}",
        out.engine.error_samples()
    );
}

#[test]
fn setup_failure_is_an_error() {
    let _serial = serial();
    // Nothing listens on a port we just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    for protocol in [ProtocolKind::Tern, ProtocolKind::Resp] {
        let config = ops_run(&target, protocol, spec(Mix::Get, 10), 10);
        let err = engine::run(&config).err().expect("no server: setup fails");
        assert!(format!("{err:#}").contains("connecting"), "{err:#}");
    }
}

#[test]
fn cli_runs_and_writes_json_and_fails_on_setup_errors() {
    let _serial = serial();
    let server = fake(FakeConfig::new(ProtocolKind::Tern));
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let hdr = dir.path().join("run.hdr");
    let out = Command::new(env!("CARGO_BIN_EXE_tern-loadgen"))
        .args([
            "--target",
            &server.target(),
            "--workload",
            "ycsb-b",
            "--keys",
            "1000",
            "--ops",
            "3k",
            "--warmup",
            "0s",
            "--depth",
            "4",
            "--connections",
            "2",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .arg("--hdr")
        .arg(&hdr)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Totals"), "{stdout}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["total"]["ops"], 3000);
    assert_eq!(doc["info"]["workload"], "ycsb-b");
    assert_eq!(doc["engine"]["misses"], 0);
    assert!(doc["engine"]["clock_read_ns"].as_f64().unwrap() > 0.0);
    assert!(std::fs::metadata(&hdr).unwrap().len() > 0);
    assert_eq!(server.stats().requests.load(SeqCst), 3000);

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_tern-loadgen"))
        .args(["run", "--target", &format!("127.0.0.1:{closed}"), "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connecting"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
