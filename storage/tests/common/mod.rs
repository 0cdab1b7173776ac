//! Helpers the storage test binaries share (each uses a subset, hence the allow).
#![allow(dead_code)]

use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::flush::run_job;
use tern_storage::sim::SimDisk;
use tern_storage::store::Store;

/// A table `name` with an S partition key `pk` and no sort key.
pub fn desc(name: &str) -> TableDesc {
    TableDesc {
        table_id: 0,
        name: name.to_owned(),
        partition_key: KeyAttrDesc {
            name: "pk".into(),
            ty: KeyType::S,
        },
        sort_key: None,
        creation_time_ms: 1,
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// Runs flush jobs (with a sync) until nothing is left to write.
pub fn flush_all(store: &mut Store<SimDisk>, disk: &SimDisk) {
    store.request_sync();
    while let Some(job) = store.next_flush() {
        let r = block_on(run_job(disk, job));
        store.finish_flush(r);
    }
}

/// The I/O a shard's executor interleaves, one await at a time, as the crash tests
/// drive it: the flusher's job step by step (so a crash can fall between a write and its
/// sync) and production's upkeep lane (`Maintenance`).
pub struct IoLane {
    steps: Vec<tern_storage::flush::Step>,
    pub maintenance: tern_storage::maintenance::Maintenance,
    task: Option<tern_storage::maintenance::Task>,
}

impl IoLane {
    pub fn new(step_bytes: usize) -> IoLane {
        IoLane {
            steps: Vec::new(),
            maintenance: tern_storage::maintenance::Maintenance::new(step_bytes),
            task: None,
        }
    }

    /// After a crash: nothing in flight.
    pub fn reset(&mut self) {
        self.steps.clear();
        self.maintenance.reset();
        self.task = None;
    }

    /// Continues or starts a flush job.
    pub fn flush_step(&mut self, store: &mut Store<SimDisk>, disk: &SimDisk) {
        if self.steps.is_empty()
            && let Some(job) = store.next_flush()
        {
            self.steps = job.steps();
            self.steps.reverse();
        }
        if let Some(step) = self.steps.pop() {
            let r = block_on(tern_storage::flush::run_step(disk, step));
            if r.is_err() || self.steps.is_empty() {
                self.steps.clear();
                store.finish_flush(r);
            }
        }
    }

    /// Performs the task the upkeep lane asked for, when it can be performed now, and
    /// steps the lane: what production's maintenance task does.
    pub fn maintenance_step(&mut self, store: &mut Store<SimDisk>, disk: &SimDisk) {
        use tern_storage::disk::Disk;
        use tern_storage::maintenance::Task;
        let task = match self.task.take() {
            Some(task) => task,
            None => self.maintenance.step(store),
        };
        self.task = match task {
            Task::AwaitSettled(pos) => match store.is_settled(pos) {
                // Not yet: the flusher must run first (the lane asked for a sync).
                Ok(false) => Some(Task::AwaitSettled(pos)),
                Ok(true) | Err(_) => None,
            },
            Task::WriteCheckpoint(job) => {
                let r = block_on(disk.write_file(&job.file, job.bytes.clone()));
                self.maintenance.checkpoint_written(store, &job, r);
                None
            }
            Task::Yield => None,
            Task::RoundDone { error } => {
                assert!(error.is_none(), "compaction failed: {error:?}");
                None
            }
        };
    }
}

/// Appends one Raft entry of table 1 to a replicated store.
pub fn append_entry(
    store: &mut Store<SimDisk>,
    index: u64,
    term: u64,
    kind: tern_storage::format::RecordKind,
    key: &[u8],
    value: &[u8],
) {
    let data = tern_storage::format::EntryData {
        kind,
        table_id: 1,
        size_bytes: value.len() as u32,
        key,
        value,
    };
    store.append_entries([(term, index, data)]).unwrap();
}
