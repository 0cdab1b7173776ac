//! Crash test against a real `ternd`: writers pipeline puts into a 2-shard node, the node
//! is killed with SIGKILL mid-load, restarted on the same data directory, and every write
//! ever acknowledged must be there (at its acknowledged version or a later one) and intact.
//!
//! `TERN_KILL9_CYCLES` sets the number of write/kill/restart/verify cycles (default 20);
//! `TERN_KILL9_SEED` replays a run's random choices (the seed is printed on stderr).
//! `tests/faults/kill9.sh` runs many cycles in release mode.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tern_client::{Client, ClientConfig, Item, ScalarType, Value};
use tern_protocol::frame::Opcode;
use tern_protocol::messages::{GetItemRequest, encode};

use crate::harness::*;

const TABLE: &str = "kill9";
const WRITERS: usize = 4;
const KEYS_PER_WRITER: u64 = 2000;
const BATCH: usize = 16;
const PAD_MAX: u64 = 2000;
/// How long writers may take to notice the kill and stop.
const WRITER_STOP_BOUND: Duration = Duration::from_secs(15);

/// The storage crate's seedable splitmix64 (its crash tests use it too).
use tern_storage::sim::SplitMix as Rng;

/// FNV-1a, 64 bits.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

fn key_id(thread: usize, n: u64) -> String {
    format!("t{thread}-k{n}")
}

/// The pad of `id` at version `ver`: length and bytes are a function of both.
fn pad(id: &str, ver: u64) -> String {
    let h = fnv(&[id.as_bytes(), &ver.to_le_bytes()]);
    let len = (h % PAD_MAX) as usize;
    let mut rng = Rng(h);
    (0..len)
        .map(|_| char::from(b'a' + (rng.below(26) as u8)))
        .collect()
}

fn checksum(id: &str, ver: u64, pad: &str) -> u64 {
    fnv(&[id.as_bytes(), &ver.to_le_bytes(), pad.as_bytes()])
}

/// The one item written for `id` at version `ver`.
fn versioned(id: &str, ver: u64) -> Item {
    let pad = pad(id, ver);
    let sum = checksum(id, ver, &pad);
    item(&[
        ("id", s(id)),
        ("ver", Value::N(ver.into())),
        ("sum", Value::N(sum.into())),
        ("pad", s(&pad)),
    ])
}

fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name)? {
        Value::N(n) => n.as_str().parse().ok(),
        _ => None,
    }
}

fn string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name)? {
        Value::S(v) => Some(v),
        _ => None,
    }
}

/// Key → highest acknowledged version.
type Acked = Arc<Mutex<BTreeMap<String, u64>>>;

/// One writer's state, kept across cycles so a key's versions only ever increase.
struct WriterState {
    thread: usize,
    next_ver: Vec<u64>,
}

#[derive(Default)]
struct WriterStats {
    attempts: u64,
    acked: u64,
    /// An error seen before the kill was started: not expected.
    early_error: Option<String>,
}

fn writer(
    endpoint: String,
    mut state: WriterState,
    seed: u64,
    acked: Acked,
    killing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    alive: Arc<AtomicUsize>,
) -> (WriterState, WriterStats) {
    let mut stats = WriterStats::default();
    let mut rng = Rng(seed);
    let config = ClientConfig {
        timeout: Duration::from_secs(2),
        retries: 0,
        ..ClientConfig::default()
    };
    let note = |stats: &mut WriterStats, e: &dyn std::fmt::Display| {
        if !killing.load(Ordering::SeqCst) {
            stats.early_error = Some(e.to_string());
        }
    };
    let mut client = match Client::connect_with(&endpoint, config) {
        Ok(c) => c,
        Err(e) => {
            note(&mut stats, &e);
            alive.fetch_sub(1, Ordering::SeqCst);
            return (state, stats);
        }
    };
    'run: while !stop.load(Ordering::SeqCst) {
        // Distinct keys in one batch: two puts of one key in flight together could
        // legitimately land in either order.
        let mut batch: Vec<(u64, u64)> = Vec::with_capacity(BATCH);
        let mut seen = HashSet::with_capacity(BATCH);
        while batch.len() < BATCH {
            let n = rng.below(KEYS_PER_WRITER);
            if seen.insert(n) {
                let ver = state.next_ver[n as usize];
                state.next_ver[n as usize] += 1;
                batch.push((n, ver));
            }
        }
        let mut p = client.pipeline();
        for &(n, ver) in &batch {
            let id = key_id(state.thread, n);
            if let Err(e) = p.put_item(TABLE, &versioned(&id, ver)) {
                // Routing needs the table's schema (a DescribeTable): the node may be gone.
                note(&mut stats, &e);
                break 'run;
            }
        }
        stats.attempts += batch.len() as u64;
        let replies = match p.run() {
            Ok(r) => r,
            Err(e) => {
                note(&mut stats, &e);
                break;
            }
        };
        let mut failed = None;
        let mut map = acked.lock().unwrap();
        for (&(n, ver), reply) in batch.iter().zip(replies) {
            match reply {
                Ok(_) => {
                    stats.acked += 1;
                    let v = map.entry(key_id(state.thread, n)).or_insert(0);
                    *v = (*v).max(ver);
                }
                Err(e) => failed = Some(e),
            }
        }
        drop(map);
        if let Some(e) = failed {
            note(&mut stats, &e);
            break;
        }
    }
    alive.fetch_sub(1, Ordering::SeqCst);
    (state, stats)
}

/// What verification found wrong with one key.
struct Bad {
    key: String,
    acked: u64,
    found: String,
}

/// Reads every acknowledged key (consistent, pipelined) and checks version and content.
fn verify(server: &Server, acked: &BTreeMap<String, u64>) -> (Vec<Bad>, Vec<Bad>) {
    let mut c = server.client();
    let (mut lost, mut torn) = (Vec::new(), Vec::new());
    let keys: Vec<(&String, &u64)> = acked.iter().collect();
    for chunk in keys.chunks(512) {
        let mut requests = Vec::with_capacity(chunk.len());
        for (id, _) in chunk {
            let key = item(&[("id", s(id))]).encode();
            let shard = c.shard_for(TABLE, &key).expect("route a key");
            let body = encode(&GetItemRequest {
                table: TABLE.to_owned(),
                key,
                consistent_read: true,
            });
            requests.push((shard, body));
        }
        let mut p = c.pipeline();
        for (shard, body) in &requests {
            p.push(*shard, Opcode::GetItem, body);
        }
        let replies = p
            .run()
            .unwrap_or_else(|e| panic!("verification reads failed after restart: {e}"));
        for (&(id, &want), reply) in chunk.iter().zip(replies) {
            let bad = |found: String| Bad {
                key: id.clone(),
                acked: want,
                found,
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    torn.push(bad(format!("read error: {e}")));
                    continue;
                }
            };
            let got = match tern_client::reply_item(&reply) {
                Ok(Some(item)) => item,
                Ok(None) => {
                    lost.push(bad("no item".into()));
                    continue;
                }
                Err(e) => {
                    torn.push(bad(format!("undecodable: {e}")));
                    continue;
                }
            };
            let (Some(gid), Some(ver), Some(sum), Some(gpad)) = (
                string(&got, "id"),
                number(&got, "ver"),
                number(&got, "sum"),
                string(&got, "pad"),
            ) else {
                torn.push(bad(format!("missing attributes: {got:?}")));
                continue;
            };
            if gid != id.as_str()
                || sum != checksum(gid, ver, gpad)
                || got != versioned(id, ver)
                || reply.body != versioned(id, ver).encode()
            {
                let shown = format!("{got:?}");
                torn.push(bad(format!(
                    "ver {ver}, content does not match its checksum: {}",
                    &shown[..shown.len().min(300)]
                )));
            } else if ver < want {
                lost.push(bad(format!("ver {ver}")));
            }
        }
    }
    (lost, torn)
}

#[test]
fn kill9_cycles_lose_no_acknowledged_write() {
    let cycles: usize = std::env::var("TERN_KILL9_CYCLES")
        .ok()
        .map(|v| v.parse().expect("TERN_KILL9_CYCLES: a number"))
        .unwrap_or(20);
    let seed: u64 = std::env::var("TERN_KILL9_SEED")
        .ok()
        .map(|v| v.parse().expect("TERN_KILL9_SEED: a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill9: seed={seed} cycles={cycles} (replay with TERN_KILL9_SEED={seed})");
    let mut rng = Rng(seed);

    let data = Rc::new(tempfile::tempdir().expect("data dir"));
    // `start_in` passes `--segment-size-mib 8` itself (passing it again is a clap error).
    let mut server = Server::start_in(data, 2, "uring", &[]);
    server
        .client()
        .create_table(TABLE, schema(("id", ScalarType::S), None))
        .expect("create table");

    let acked: Acked = Arc::default();
    let mut states: Vec<WriterState> = (0..WRITERS)
        .map(|thread| WriterState {
            thread,
            next_ver: vec![1; KEYS_PER_WRITER as usize],
        })
        .collect();
    let (mut total_acked, mut total_attempts) = (0u64, 0u64);
    let mut acked_cycles = 0usize;
    let (mut lost, mut torn) = (Vec::new(), Vec::new());
    let mut done = 0usize;
    let started = Instant::now();

    for cycle in 0..cycles {
        // Write under load.
        let run_for = Duration::from_millis(100 + rng.below(501));
        let killing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(AtomicUsize::new(WRITERS));
        let (tx, rx) = mpsc::channel();
        let handles: Vec<_> = states
            .drain(..)
            .map(|state| {
                let (endpoint, acked, killing, stop, alive, tx) = (
                    server.endpoint(),
                    acked.clone(),
                    killing.clone(),
                    stop.clone(),
                    alive.clone(),
                    tx.clone(),
                );
                let seed = rng.next_u64();
                std::thread::spawn(move || {
                    let out = writer(endpoint, state, seed, acked, killing, stop, alive);
                    let _ = tx.send(());
                    out
                })
            })
            .collect();
        drop(tx);
        std::thread::sleep(run_for);

        // Crash.
        let alive_at_kill = alive.load(Ordering::SeqCst);
        killing.store(true, Ordering::SeqCst);
        let data = server.kill9();
        stop.store(true, Ordering::SeqCst);
        let bound = Instant::now() + WRITER_STOP_BOUND;
        for _ in 0..WRITERS {
            let left = bound.saturating_duration_since(Instant::now());
            rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("cycle {cycle}: writers still running 15 s after kill -9")
            });
        }
        let (mut attempts, mut cycle_acked) = (0, 0);
        for h in handles {
            let (state, stats) = h.join().expect("writer thread");
            if let Some(e) = stats.early_error {
                eprintln!(
                    "kill9: cycle {cycle}: writer {} failed before the kill: {e}",
                    state.thread
                );
            }
            attempts += stats.attempts;
            cycle_acked += stats.acked;
            states.push(state);
        }
        total_attempts += attempts;
        total_acked += cycle_acked;
        if cycle_acked > 0 {
            acked_cycles += 1;
        }

        // Restart on the same directory and verify every key ever acknowledged.
        let restart = Instant::now();
        server = Server::start_in(data, 2, "uring", &[]);
        let restart_ms = restart.elapsed().as_millis();
        let mut c = server.client();
        assert_eq!(
            c.list_all_tables().expect("list tables after restart"),
            vec![TABLE.to_string()],
            "cycle {cycle}: the table did not survive kill -9"
        );
        drop(c);
        let snapshot = acked.lock().unwrap().clone();
        let check = Instant::now();
        let (l, t) = verify(&server, &snapshot);
        eprintln!(
            "kill9: cycle {cycle}: ran {} ms, {alive_at_kill}/{WRITERS} writers alive at kill, \
             attempts {attempts}, acked {cycle_acked}; restart {restart_ms} ms; \
             verified {} keys in {} ms: lost {}, torn {}",
            run_for.as_millis(),
            snapshot.len(),
            check.elapsed().as_millis(),
            l.len(),
            t.len()
        );
        done = cycle + 1;
        let failed = !l.is_empty() || !t.is_empty();
        lost.extend(l.into_iter().map(|b| (cycle, b)));
        torn.extend(t.into_iter().map(|b| (cycle, b)));
        if failed {
            // Stop at the first cycle that found damage: later cycles would only repeat it.
            break;
        }
    }

    eprintln!(
        "kill9: {done} cycles in {:.1} s, {total_attempts} puts attempted, seed {seed}",
        started.elapsed().as_secs_f64()
    );
    for (kind, list) in [("LOST", &lost), ("TORN", &torn)] {
        for (cycle, b) in list.iter().take(20) {
            eprintln!(
                "kill9: {kind} seed={seed} cycle={cycle} key={} acked ver={} found: {}",
                b.key, b.acked, b.found
            );
        }
    }
    println!(
        "kill9: cycles={done} acked={total_acked} lost={} torn={}",
        lost.len(),
        torn.len()
    );
    if !lost.is_empty() || !torn.is_empty() {
        let data = server.kill9();
        if let Ok(dir) = Rc::try_unwrap(data) {
            eprintln!("kill9: data directory kept at {}", dir.keep().display());
        }
        panic!(
            "kill -9 lost {} and tore {} acknowledged writes (seed {seed})",
            lost.len(),
            torn.len()
        );
    }
    assert!(total_acked > 0, "no write was ever acknowledged");
    assert!(
        acked_cycles * 2 >= done,
        "only {acked_cycles} of {done} cycles acknowledged a write"
    );
    let status = server.stop();
    assert!(status.success(), "ternd after the last cycle: {status:?}");
}
