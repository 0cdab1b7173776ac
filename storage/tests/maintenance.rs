//! The upkeep lane's order of events, step by step: a due checkpoint waits for the log
//! to settle before its file is written; a compaction copies, waits for its copies to
//! settle, then drops its segment; a round ends; a store that stops mid-round ends it
//! without writing anything.

use tern_storage::disk::Disk;
use tern_storage::maintenance::{Maintenance, Task};
use tern_storage::sim::SimDisk;
use tern_storage::store::{Store, StoreConfig};

mod common;
use common::{block_on, desc, flush_all};

fn open(disk: &SimDisk, checkpoint_every_bytes: u64) -> Store<SimDisk> {
    let cfg = StoreConfig {
        segment_size: 4096,
        checkpoint_every_bytes,
        compact_dead_ratio: 0.3,
        ..StoreConfig::default()
    };
    Store::open(disk.clone(), cfg).expect("open").0
}

fn put_many(store: &mut Store<SimDisk>, table: u32, n: u32, round: u8) {
    for i in 0..n {
        let key = (u64::from(i) * 0x0101_0101_0101_0101).to_be_bytes();
        let value = vec![round; 200];
        store.put(table, &key, &value, 200).expect("put");
    }
}

/// A key apart from `put_many`'s (index keys start with an 8-byte hash).
fn keep(i: u8) -> [u8; 9] {
    let mut k = [0xEE; 9];
    k[8] = i;
    k
}

fn checkpoint_files(disk: &SimDisk) -> usize {
    let names = disk.list().expect("list");
    names.iter().filter(|n| n.starts_with("ckpt-")).count()
}

#[test]
fn a_checkpoint_waits_for_the_log_then_is_written_once() {
    let disk = SimDisk::new();
    let mut store = open(&disk, 1000);
    let (t, _) = store.create_table(desc("t")).expect("create");
    put_many(&mut store, t, 10, 1);
    let mut lane = Maintenance::new(700);
    // Due, but the log is not settled up to the checkpoint's replay position: wait, and
    // keep waiting (no file) however often the lane is stepped.
    let Task::AwaitSettled(pos) = lane.step(&mut store) else {
        panic!("a due checkpoint over an unsynced log must wait first");
    };
    assert!(matches!(lane.step(&mut store), Task::AwaitSettled(p) if p == pos));
    assert_eq!(checkpoint_files(&disk), 0);
    flush_all(&mut store, &disk);
    let Task::WriteCheckpoint(job) = lane.step(&mut store) else {
        panic!("a settled log lets the checkpoint be written");
    };
    assert_eq!(job.replay_from, pos);
    let r = block_on(disk.write_file(&job.file, job.bytes.clone()));
    lane.checkpoint_written(&mut store, &job, r);
    assert_eq!(checkpoint_files(&disk), 1);
    assert_eq!(lane.counts().0, 1);
    assert!(matches!(
        lane.step(&mut store),
        Task::RoundDone { error: None }
    ));
}

#[test]
fn a_compaction_drops_its_segment_only_after_its_copies_settle() {
    let disk = SimDisk::new();
    let mut store = open(&disk, u64::MAX / 2);
    let (t, _) = store.create_table(desc("t")).expect("create");
    // Overwrites of the same keys until several segments are sealed and mostly dead,
    // each round with one record that stays live (the compaction must copy it).
    for round in 0..8 {
        store.put(t, &keep(round), &[round; 200], 200).expect("put");
        put_many(&mut store, t, 8, round);
        flush_all(&mut store, &disk);
    }
    let ids =
        |store: &Store<SimDisk>| -> Vec<u32> { store.segments().iter().map(|s| s.0).collect() };
    let before = ids(&store);
    let mut lane = Maintenance::new(700);
    let mut yields = 0;
    let waited = loop {
        match lane.step(&mut store) {
            Task::Yield => yields += 1,
            Task::AwaitSettled(_) => break true,
            other => panic!("unexpected {other:?}"),
        }
        assert!(yields < 10_000, "a compaction ends");
    };
    assert!(waited && yields > 0);
    assert!(
        before.iter().all(|id| ids(&store).contains(id)),
        "nothing dropped before the copies settle"
    );
    flush_all(&mut store, &disk);
    assert!(matches!(
        lane.step(&mut store),
        Task::RoundDone { error: None }
    ));
    assert_eq!(lane.counts().1, 1);
    let after = ids(&store);
    assert_eq!(
        before.iter().filter(|id| !after.contains(id)).count(),
        1,
        "one segment went: {before:?} -> {after:?}"
    );
    store.check_invariants();
    for i in 0..8u8 {
        let key = keep(i);
        let item = store.get(t, &key).expect("get").0.expect("a copied record");
        assert_eq!(item.bytes, &[i; 200][..]);
    }
}

#[test]
fn a_store_that_stops_mid_round_ends_it_without_a_file() {
    let disk = SimDisk::new();
    let mut store = open(&disk, 1000);
    let (t, _) = store.create_table(desc("t")).expect("create");
    put_many(&mut store, t, 10, 1);
    let mut lane = Maintenance::new(700);
    assert!(matches!(lane.step(&mut store), Task::AwaitSettled(_)));
    // The sync fails: the store stops, and the waiting checkpoint is abandoned.
    disk.fail_sync_after(0);
    store.request_sync();
    while let Some(job) = store.next_flush() {
        let r = block_on(tern_storage::flush::run_job(&disk, job));
        store.finish_flush(r);
    }
    assert!(store.failure().is_some());
    assert!(matches!(
        lane.step(&mut store),
        Task::RoundDone { error: None }
    ));
    assert!(matches!(
        lane.step(&mut store),
        Task::RoundDone { error: None }
    ));
    assert_eq!(checkpoint_files(&disk), 0);
    assert_eq!(lane.counts(), (0, 0));
}
