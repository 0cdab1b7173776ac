//! Durability against a real `ternd`: acknowledged writes survive SIGKILL and restarts,
//! tables survive restarts, a failing fsync stops a shard without acknowledging, and
//! damage found on disk is reported instead of served.

use std::path::{Path, PathBuf};

use tern_client::{ErrorCode, ReturnValues, ScalarType};

use crate::harness::*;

fn key(i: u32) -> tern_client::Item {
    item(&[("id", s(&format!("k{i}")))])
}

fn value(i: u32, round: u32) -> tern_client::Item {
    item(&[
        ("id", s(&format!("k{i}"))),
        ("round", n(round as i64)),
        ("pad", s(&"x".repeat((i % 50) as usize))),
    ])
}

/// Segment files of shard `k` in a data directory, in log order.
fn segments(data: &Path, k: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join(format!("shard-{k}")))
        .expect("shard dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    v.sort();
    v
}

/// The end of the records in a segment (walked with the storage crate's parser).
fn log_end(segment: &[u8]) -> usize {
    use tern_storage::format::{Parsed, SEGMENT_HEADER_LEN, parse_record};
    let mut pos = SEGMENT_HEADER_LEN;
    while let Ok(Parsed::Record(r)) = parse_record(&segment[pos..]) {
        pos += r.encoded_len();
    }
    pos
}

#[test]
fn acknowledged_writes_and_tables_survive_kill_9_and_restart() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    c.create_table("gone", schema(("id", ScalarType::S), None))
        .unwrap();
    for i in 0..300 {
        c.put_item("kvs", &value(i, 1)).unwrap();
    }
    for i in 0..100 {
        c.put_item("kvs", &value(i, 2)).unwrap();
    }
    for i in 250..300 {
        c.delete_item("kvs", &key(i), ReturnValues::None).unwrap();
    }
    c.delete_table("gone").unwrap();
    drop(c);
    let data = server.kill9();

    let server = Server::start_in(data, 2, "uring", &[]);
    let mut c = server.client();
    assert_eq!(c.list_all_tables().unwrap(), vec!["kvs".to_string()]);
    for i in 0..300 {
        let got = c.get_item("kvs", &key(i), true).unwrap();
        let want = match i {
            0..100 => Some(value(i, 2)),
            100..250 => Some(value(i, 1)),
            _ => None,
        };
        assert_eq!(got, want, "item {i} after kill -9");
    }
    assert_eq!(c.describe_table("kvs").unwrap().item_count, 250);
    // A clean stop and a second restart change nothing.
    drop(c);
    let status = server.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_failing_fsync_stops_the_shard_and_acknowledges_nothing_more() {
    // The first syncs cover the new segment and the CreateTable record; a few puts
    // later, syncs fail.
    let data = std::rc::Rc::new(tempfile::tempdir().unwrap());
    let server = Server::start_in(data, 1, "uring", &["--inject-sync-failure-after", "6"]);
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..20 {
        match c.put_item("kvs", &value(i, 1)) {
            Ok(()) => {
                acked.push(i);
                // Read it back: now it is in the item cache, which must not answer
                // for a stopped shard either.
                let _ = c.get_item("kvs", &key(i), false);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("a write must fail once syncs fail");
    assert_eq!(e.code(), Some(ErrorCode::InternalServerError), "{e}");
    assert!(e.to_string().contains("failed sync"), "{e}");
    assert!(
        (1..20).contains(&acked.len()),
        "{} writes acknowledged before the failure",
        acked.len()
    );
    // The shard stays stopped: no more writes, no reads.
    let stats = c.stats().unwrap();
    let stopped = stats.shards[0]
        .counters
        .iter()
        .find(|k| k.name == "LogStopped")
        .expect("LogStopped");
    assert_eq!(stopped.value, 1);
    let again = c.put_item("kvs", &value(99, 1)).unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::InternalServerError));
    let read = c.get_item("kvs", &key(0), false).unwrap_err();
    assert_eq!(read.code(), Some(ErrorCode::InternalServerError));
    let cached = stats.shards[0]
        .counters
        .iter()
        .find(|k| k.name == "ItemCacheEntries")
        .map_or(0, |k| k.value);
    assert!(cached > 0, "key 0 was in the item cache, and still refused");
    drop(c);
    let data = server.kill9();

    // Restarted without the failpoint: every acknowledged write is there.
    let server = Server::start_in(data, 1, "uring", &[]);
    let mut c = server.client();
    for i in acked {
        assert_eq!(c.get_item("kvs", &key(i), true).unwrap(), Some(value(i, 1)));
    }
}

#[test]
fn a_torn_tail_is_cut_and_a_flipped_bit_is_reported() {
    let server = Server::start(1, "uring");
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    for i in 0..200 {
        c.put_item("kvs", &value(i, 1)).unwrap();
    }
    drop(c);
    let data = server.kill9();
    let seg = segments(data.path(), 0).pop().expect("a segment");
    let bytes = std::fs::read(&seg).unwrap();
    let end = log_end(&bytes);

    // Half a record's worth of garbage after the last record: a torn write.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0xAB; 30], end as u64).unwrap();
    }
    let server = Server::start_in(data, 1, "uring", &[]);
    let mut c = server.client();
    for i in 0..200 {
        assert_eq!(c.get_item("kvs", &key(i), true).unwrap(), Some(value(i, 1)));
    }
    c.put_item("kvs", &value(7, 2)).unwrap();
    drop(c);
    let data = server.kill9();

    // A bit flip inside an early record: corruption, reported, never served.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 500).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], 500).unwrap();
    }
    let server = Server::start_in(data, 1, "uring", &[]);
    let mut c = server.client();
    let e = c.get_item("kvs", &key(1), false).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InternalServerError), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
    // The metric says so too.
    let stats = c.stats().unwrap();
    let corruptions = stats.shards[0]
        .counters
        .iter()
        .find(|k| k.name == "LogCorruptions")
        .expect("LogCorruptions");
    assert_eq!(corruptions.value, 1);
}

/// The client-socket ring keeps serving while many connections pipeline durable writes
/// through segment rollovers. (It once stopped for good: the
/// transport trusted the kernel's TASKRUN hint, spun without yielding, and the log
/// flusher's fdatasync completion was never reaped; every write then waited forever.)
/// A liveness check, not a speed one: the client timeout is generous.
#[test]
fn uring_transport_serves_pipelined_durable_writes_to_the_end() {
    const CONNECTIONS: usize = 32;
    const DEPTH: usize = 16;
    const BATCHES: usize = 100;
    const KEYS: usize = 256;
    let server = Server::start(1, "uring");
    server
        .client()
        .create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let endpoint = server.endpoint();
    let pad = "p".repeat(1000);
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|t| {
            let endpoint = endpoint.clone();
            let pad = pad.clone();
            std::thread::spawn(move || {
                let config = tern_client::ClientConfig {
                    timeout: std::time::Duration::from_secs(20),
                    retries: 0,
                    ..tern_client::ClientConfig::default()
                };
                let mut c = tern_client::Client::connect_with(&endpoint, config).unwrap();
                let mut acked = 0usize;
                for b in 0..BATCHES {
                    let mut p = c.pipeline();
                    for d in 0..DEPTH {
                        let k = (b * DEPTH + d) % KEYS;
                        let it = item(&[
                            ("id", s(&format!("t{t}-k{k}"))),
                            ("round", n(b as i64)),
                            ("pad", s(&pad)),
                        ]);
                        p.put_item("kvs", &it).unwrap();
                    }
                    for r in p
                        .run()
                        .unwrap_or_else(|e| panic!("connection {t}, batch {b}: {e}"))
                    {
                        r.unwrap_or_else(|e| panic!("connection {t}, batch {b}: {e}"));
                        acked += 1;
                    }
                }
                acked
            })
        })
        .collect();
    let acked: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(acked, CONNECTIONS * DEPTH * BATCHES);
    // About 20 MiB of log in 8 MiB segments: the writes crossed segment rollovers.
    let stats = server.client().stats().unwrap();
    let created: u64 = stats
        .shards
        .iter()
        .flat_map(|s| &s.counters)
        .filter(|c| c.name == "LogSegmentsCreated")
        .map(|c| c.value)
        .sum();
    assert!(created >= 2, "segments created: {created}");
}

/// One counter of shard 0.
fn counter(c: &mut tern_client::Client, name: &str) -> u64 {
    let stats = c.stats().unwrap();
    stats.shards[0]
        .counters
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .value
}

/// The production maintenance sequence end to end: the log grows past the checkpoint
/// interval (checkpoints are written once what they cover is synced), overwrites leave
/// sealed segments mostly dead (compaction copies their live records, waits for the
/// copies to be synced, drops the file, and checkpoints again), and a restart after
/// kill -9 recovers from the checkpoint — replaying only the log after it — with every
/// acknowledged write.
#[test]
fn checkpoints_and_compaction_run_and_a_restart_recovers_from_the_checkpoint() {
    const KEYS: usize = 200;
    const ROUNDS: usize = 60;
    let flags = ["--checkpoint-every-mib", "4", "--compact-dead-ratio", "0.5"];
    let data = std::rc::Rc::new(tempfile::tempdir().unwrap());
    let server = Server::start_in(data, 1, "uring", &flags);
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    // 200 keys of 4 KB rewritten 60 times: ~48 MB of log in 8 MB segments, < 1 MB live.
    let pad = "m".repeat(4000);
    let version = |k: usize, round: usize| {
        item(&[
            ("id", s(&format!("k{k}"))),
            ("round", n(round as i64)),
            ("pad", s(&pad)),
        ])
    };
    let mut writes = 0u64;
    for round in 0..ROUNDS {
        let mut p = c.pipeline();
        for k in 0..KEYS {
            p.put_item("kvs", &version(k, round)).unwrap();
        }
        for r in p.run().unwrap() {
            r.unwrap();
            writes += 1;
        }
    }
    // Maintenance runs in the background: give it a bounded while to catch up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (checkpoints, compacted) = (
            counter(&mut c, "LogCheckpoints"),
            counter(&mut c, "LogSegmentsCompacted"),
        );
        if checkpoints >= 2 && compacted >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance did not run: {checkpoints} checkpoints, {compacted} segments compacted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let created = counter(&mut c, "LogSegmentsCreated");
    let live = counter(&mut c, "LogSegments");
    assert!(live < created, "{live} of {created} segments still present");
    drop(c);
    let data = server.kill9();

    let server = Server::start_in(data, 1, "uring", &flags);
    let mut c = server.client();
    assert_eq!(counter(&mut c, "RecoveryFromCheckpoint"), 1);
    let replayed = counter(&mut c, "RecoveryRecordsReplayed");
    assert!(replayed < writes, "replayed {replayed} of {writes} records");
    assert_eq!(counter(&mut c, "LogCorruptions"), 0);
    for k in 0..KEYS {
        let key = item(&[("id", s(&format!("k{k}")))]);
        assert_eq!(
            c.get_item("kvs", &key, true).unwrap(),
            Some(version(k, ROUNDS - 1)),
            "key {k}"
        );
    }
    assert_eq!(c.describe_table("kvs").unwrap().item_count, KEYS as u64);
}
