//! End to end against a real redis-server (skipped, with a note, when it is not on PATH,
//! unless TERN_REQUIRE_REDIS is set — scripts/test.sh sets it once Redis is installed, so
//! CI fails instead of skipping): the same engine, the RESP mapping, preload and YCSB
//! workloads.

mod support;

use support::{Redis, ops_of, ops_run, redis_server, serial, spec};
use tern_loadgen::engine;
use tern_loadgen::proto::ProtocolKind;
use tern_loadgen::workload::{Mix, OpKind};

fn redis() -> Option<Redis> {
    match redis_server() {
        Some(binary) => Some(Redis::start(&binary)),
        None => {
            assert!(
                std::env::var_os("TERN_REQUIRE_REDIS").is_none(),
                "TERN_REQUIRE_REDIS is set but redis-server is not on PATH"
            );
            eprintln!("note: redis-server is not on PATH; skipping the Redis end-to-end test");
            None
        }
    }
}

#[test]
fn preload_then_ycsb_a_and_f_against_redis() {
    let _serial = serial();
    let Some(redis) = redis() else {
        return;
    };
    const KEYS: u64 = 2000;
    let mut config = ops_run(
        &redis.target(),
        ProtocolKind::Resp,
        spec(Mix::YcsbA, KEYS),
        10_000,
    );
    config.load = Some(KEYS);
    let out = engine::run_detailed(&config).expect("ycsb-a");
    let r = &out.report;
    assert_eq!(r.total.ops, 10_000);
    assert_eq!(r.total.errors, 0, "{:?}", out.engine.error_samples());
    assert_eq!(ops_of(r, OpKind::Get) + ops_of(r, OpKind::Update), 10_000);
    assert_eq!(out.engine.misses(), 0, "every key was preloaded");
    assert_eq!(redis.command("DBSIZE"), format!(":{KEYS}\r\n"));

    let config = ops_run(
        &redis.target(),
        ProtocolKind::Resp,
        spec(Mix::YcsbF, KEYS),
        4000,
    );
    let out = engine::run_detailed(&config).expect("ycsb-f");
    assert_eq!(out.report.total.ops, 4000);
    assert_eq!(out.report.total.errors, 0);
    assert_eq!(out.engine.misses(), 0);
}

#[test]
fn ycsb_e_uses_sorted_sets_in_redis() {
    let _serial = serial();
    let Some(redis) = redis() else {
        return;
    };
    const KEYS: u64 = 640;
    let mut config = ops_run(
        &redis.target(),
        ProtocolKind::Resp,
        spec(Mix::YcsbE, KEYS),
        3000,
    );
    config.load = Some(KEYS);
    let out = engine::run_detailed(&config).expect("ycsb-e");
    let r = &out.report;
    assert_eq!(r.total.ops, 3000);
    assert_eq!(r.total.errors, 0, "{:?}", out.engine.error_samples());
    assert!(ops_of(r, OpKind::Scan) > 2500);
    // 640 preloaded keys are 10 partitions of 64: range:0 holds keys 0..64 by position.
    assert_eq!(redis.command("ZCARD range:0"), ":64\r\n");
    assert!(
        redis
            .command("ZRANGEBYSCORE range:9 63 +inf")
            .contains("user000000000639")
    );
}
