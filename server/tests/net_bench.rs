//! Throughput of the echo service over both transports, for the numbers in reports and
//! docs/benchmarks; ignored by default and never a timed assertion. Run with
//! `cargo test --release -p tern-server --test net_bench -- --ignored --nocapture`.
//!
//! The server runs pinned to CPU 0; one client thread (unpinned, so on the other CPU of a
//! 2-CPU machine) keeps `NET_BENCH_CONNS` (default 8) connections busy with `depth` pipelined 100-byte
//! requests each. Reported: requests per second and server CPU µs per request (the
//! executor thread's user + system time).

#[path = "net_support/mod.rs"]
#[macro_use]
mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use glommio::Placement;
use support::{TICKS_PER_SECOND, TestServer, connect, request, write_all};
use tern_protocol::frame::HEADER_LEN;
use tern_server::net::{self, NetMode};

const BODY_BYTES: usize = 100;
const RUN: Duration = Duration::from_secs(3);

fn measure(mode: NetMode, depth: usize, connections: usize) -> (f64, f64) {
    let server = TestServer::start_on(mode, Placement::Fixed(0));
    let mut conns: Vec<_> = (0..connections)
        .map(|_| connect(server.shard_port))
        .collect();
    let mut batch = Vec::new();
    for id in 0..depth as u64 {
        batch.extend(request(id, &[b'x'; BODY_BYTES]));
    }
    let mut replies = vec![0u8; depth * (HEADER_LEN + BODY_BYTES)];
    let mut round = |conns: &mut Vec<std::net::TcpStream>| {
        for s in conns.iter_mut() {
            write_all(s, &batch);
        }
        for s in conns.iter_mut() {
            s.read_exact(&mut replies).expect("replies");
        }
        // The last reply answers the last request of the batch.
        let last = &replies[replies.len() - HEADER_LEN - BODY_BYTES..];
        assert_eq!(
            u64::from_le_bytes(last[8..16].try_into().unwrap()),
            depth as u64 - 1
        );
    };
    for _ in 0..200 {
        round(&mut conns);
    }
    let cpu_before = server.cpu_ticks();
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < RUN {
        round(&mut conns);
        ops += (connections * depth) as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = (server.cpu_ticks() - cpu_before) as f64 * 1e6 / TICKS_PER_SECOND as f64;
    drop(conns);
    server.stop().expect("stop");
    (ops as f64 / elapsed, cpu_us / ops as f64)
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture (release build)"]
fn echo_throughput() {
    // NET_BENCH_MODE=uring|uring-plain|glommio and NET_BENCH_DEPTH=n narrow the run.
    let all = ["uring", "uring-plain", "glommio"];
    let modes: Vec<String> = match std::env::var("NET_BENCH_MODE") {
        Ok(m) => vec![m],
        Err(_) => all.iter().map(|m| m.to_string()).collect(),
    };
    let depths: Vec<usize> = match std::env::var("NET_BENCH_DEPTH") {
        Ok(d) => vec![d.parse().expect("NET_BENCH_DEPTH")],
        Err(_) => vec![16, 1],
    };
    let connections: usize =
        std::env::var("NET_BENCH_CONNS").map_or(8, |c| c.parse().expect("NET_BENCH_CONNS"));
    for &depth in &depths {
        for name in &modes {
            // "uring-plain": the uring transport on a ring without setup flags.
            let (mode, setup_flags) = match name.as_str() {
                "uring-plain" => (NetMode::Uring, false),
                other => (other.parse().expect("NET_BENCH_MODE"), true),
            };
            net::set_uring_setup_flags(setup_flags);
            let (ops_per_s, cpu_us_per_op) = measure(mode, depth, connections);
            println!(
                "net_bench mode={name:<11} P{depth:<2} c{connections} body={BODY_BYTES}B: {ops_per_s:>9.0} req/s, server {cpu_us_per_op:.2} CPU µs/req"
            );
        }
    }
}
