//! Durable writes under saturating pipelined reads: every acknowledgement arrives.
//!
//! A hang guard, not a timing assertion: the client's 10 s timeout is the only bound.
//! Before issue 12 a busy transport could keep the log flusher (and every deferred
//! reply) waiting for glommio's 100 ms preemption timer; a scheduling change that starves
//! them outright — the issue-5 stall — fails this test instead of hanging a benchmark.
//! The latencies seen are printed for whoever reads the test log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tern_client::{ReturnValues, ScalarType};

use crate::harness::*;

const KEYS: u32 = 200;
const READERS: usize = 4;
/// GETs per pipelined window of a reader.
const READ_WINDOW: usize = 32;
const SINGLE_WRITES: u32 = 300;
const PIPELINED_ROUNDS: u32 = 20;
const PIPELINED_WRITES: u32 = 16;
/// The readers stop after this long even if the writer is stuck (bounded load).
const READ_LOAD_MAX: Duration = Duration::from_secs(60);

fn key(i: u32) -> tern_client::Item {
    item(&[("id", s(&format!("k{i}")))])
}

fn value(i: u32, v: u32) -> tern_client::Item {
    item(&[("id", s(&format!("k{i}"))), ("v", n(v as i64))])
}

fn mixed_load(net: &str) {
    let server = Server::start(1, net);
    let mut c = server.client();
    c.create_table("mixed", schema(("id", ScalarType::S), None))
        .unwrap();
    for i in 0..KEYS {
        c.put_item("mixed", &value(i, 0)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let mut rc = server.client();
            let (stop, reads) = (stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut next = r as u32;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < READ_LOAD_MAX {
                    let mut p = rc.pipeline();
                    for _ in 0..READ_WINDOW {
                        p.get_item("mixed", &key(next % KEYS)).unwrap();
                        next += 7;
                    }
                    for reply in p.run().expect("a pipelined GET window") {
                        reply.expect("a GET under mixed load");
                    }
                    reads.fetch_add(READ_WINDOW as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the readers saturate the shard before writing.
    while reads.load(Ordering::Relaxed) < 2_000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    for w in 0..SINGLE_WRITES {
        let t = Instant::now();
        c.put_item("mixed", &value(w % KEYS, w + 1))
            .unwrap_or_else(|e| panic!("durable PutItem {w} under load: {e}"));
        let took = t.elapsed();
        worst = worst.max(took);
        total += took;
    }
    for round in 0..PIPELINED_ROUNDS {
        let mut p = c.pipeline();
        for j in 0..PIPELINED_WRITES {
            p.put_item("mixed", &value(j, 1_000 + round)).unwrap();
        }
        for (j, reply) in p
            .run()
            .expect("a pipelined PutItem window")
            .into_iter()
            .enumerate()
        {
            reply.unwrap_or_else(|e| panic!("pipelined PutItem {round}/{j}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader thread");
    }
    // Every acknowledged write is there.
    for j in 0..PIPELINED_WRITES {
        let got = c
            .get_item("mixed", &key(j), true)
            .unwrap()
            .expect("an acknowledged item");
        assert_eq!(got, value(j, 1_000 + PIPELINED_ROUNDS - 1));
    }
    for i in PIPELINED_WRITES..KEYS {
        let last = (0..SINGLE_WRITES).rev().find(|w| w % KEYS == i);
        let want = last.map_or(0, |w| w + 1);
        let got = c.get_item("mixed", &key(i), false).unwrap().expect("item");
        assert_eq!(got, value(i, want), "key {i}");
    }
    c.delete_item("mixed", &key(0), ReturnValues::None).unwrap();
    eprintln!(
        "mixed load ({net}): {} GETs alongside; durable PutItem mean {:?}, worst {:?}",
        reads.load(Ordering::Relaxed),
        total / SINGLE_WRITES,
        worst
    );
}

#[test]
fn every_durable_ack_arrives_under_pipelined_reads_uring() {
    mixed_load("uring");
}

#[test]
fn every_durable_ack_arrives_under_pipelined_reads_glommio() {
    mixed_load("glommio");
}
