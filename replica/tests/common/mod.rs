//! What the shard-driver tests share: one table, entry encodings, a replica opened over
//! a simulated disk, and the flusher run to completion.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use tern_replica::Group;
use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::format::{EntryData, RecordKind};
use tern_storage::sim::SimDisk;
use tern_storage::store::{Store, StoreConfig};

pub const IDS: [u64; 3] = [1, 2, 3];
pub const TABLE: u32 = 1;

/// Few retained entries, so that lagging and joining replicas are caught up by
/// snapshots.
pub fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 8192,
        replicated: true,
        raft_retained_entries: 16,
        ..StoreConfig::default()
    }
}

/// A store operation as a proposal's data.
pub fn entry(kind: RecordKind, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    EntryData {
        kind,
        table_id: TABLE,
        size_bytes: value.len() as u32 * u32::from(kind == RecordKind::Put),
        key,
        value,
    }
    .encode(&mut out);
    out
}

pub fn create_table() -> Vec<u8> {
    let desc = TableDesc {
        table_id: TABLE,
        name: "t".into(),
        partition_key: KeyAttrDesc {
            name: "pk".into(),
            ty: KeyType::S,
        },
        sort_key: None,
        creation_time_ms: 1,
    };
    entry(RecordKind::CreateTable, &[], &desc.encode())
}

/// Replica `id` over `disk` (recovering what it holds), in a group bootstrapped with
/// `voters`.
pub fn open(id: u64, disk: SimDisk, voters: &[u64], seed: u64) -> (SimDisk, Group<SimDisk>) {
    let (store, report) = Store::open(disk.clone(), config()).expect("recovery I/O");
    assert!(
        report.corruption.is_none(),
        "a crash is not corruption: {report:?}"
    );
    let group = Group::open(id, Rc::new(RefCell::new(store)), voters, seed).expect("opens");
    (disk, group)
}

/// Runs the store's flush jobs until nothing is left (one or more group commits).
pub fn flush(group: &Group<SimDisk>, disk: &SimDisk) {
    let mut store = group.store().borrow_mut();
    while let Some(job) = store.next_flush() {
        let r = futures_lite::future::block_on(tern_storage::flush::run_job(disk, job));
        store.finish_flush(r);
    }
}

/// The items of the shared table in a replica's store (none before it exists).
pub fn items(group: &Group<SimDisk>) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let store = group.store().borrow();
    if store.table(TABLE).is_err() {
        return Default::default();
    }
    store
        .range(
            TABLE,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
        )
        .expect("readable")
        .map(|i| i.expect("record"))
        .map(|i| (i.key.to_vec(), i.bytes.to_vec()))
        .collect()
}

/// One round of the store's upkeep lane, performed synchronously (checkpoints — which
/// complete a snapshot install — and compaction).
pub fn upkeep(
    group: &Group<SimDisk>,
    disk: &SimDisk,
    lane: &mut tern_storage::maintenance::Maintenance,
) {
    use tern_storage::disk::Disk;
    use tern_storage::maintenance::Task;
    for _ in 0..1000 {
        let task = lane.step(&mut group.store().borrow_mut());
        match task {
            Task::AwaitSettled(_) => flush(group, disk),
            Task::WriteCheckpoint(job) => {
                let r =
                    futures_lite::future::block_on(disk.write_file(&job.file, job.bytes.clone()));
                lane.checkpoint_written(&mut group.store().borrow_mut(), &job, r);
            }
            Task::Yield => {}
            Task::RoundDone { error } => {
                assert!(error.is_none(), "upkeep failed: {error:?}");
                return;
            }
        }
    }
}
