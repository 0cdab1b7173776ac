//! The order of a shard's background upkeep — checkpoints and compaction — as a sans-I/O
//! state machine that production (`server/src/node.rs`, a low-priority glommio task)
//! and the crash simulator (`storage/tests/crash.rs`) both run, so the simulator checks
//! production's sequence of events and not one of its own.
//!
//! One *round* is: a checkpoint if one is due (serialize now, wait until the log is
//! settled up to its replay position, write the file, record it), then at most one
//! segment compaction (copy its live records a budget at a time, wait until the copies
//! are settled, drop the segment). [`Maintenance::step`] does the synchronous parts on the
//! store and returns the [`Task`] the driver must perform before calling it again: wait,
//! write a file, let other work run, or rest until the next round. Flushes are the other
//! lane (`Store::next_flush` / `finish_flush`) and may run between any two steps.

use std::io;

use crate::disk::Disk;
use crate::store::{CheckpointJob, LogPos, Store, StoreError};

/// What the driver does before the next [`Maintenance::step`].
#[derive(Debug)]
pub enum Task {
    /// Wait until the store is settled (durable on disk, sync included) up to the
    /// position, asking for a sync meanwhile. Calling `step` before is harmless: it
    /// returns the same wait.
    AwaitSettled(LogPos),
    /// Write the checkpoint's bytes to its file, then call
    /// [`Maintenance::checkpoint_written`] with the job and the result.
    WriteCheckpoint(CheckpointJob),
    /// A compaction step was done: let other work (and the flusher, which has new
    /// records to write) run, then step again.
    Yield,
    /// The round is over (`error`: why a compaction stopped early, for the log). Rest
    /// until the next round is due.
    RoundDone { error: Option<String> },
}

#[derive(Debug, Default)]
enum State {
    /// A round starts: a checkpoint if due, then a compaction.
    #[default]
    Start,
    /// A checkpoint was serialized; its file may be written once `settle_to` is settled.
    CheckpointSettling(CheckpointJob),
    /// Its file is being written (the job is with the driver).
    CheckpointWriting,
    /// The checkpoint part is over: pick a segment to compact, if any.
    PickSegment,
    /// Copying the segment's live records, from `cursor`.
    Copying { segment: u32, cursor: u32 },
    /// Copies done: the segment may be dropped once `copied_up_to` is settled.
    CopiesSettling { segment: u32, copied_up_to: LogPos },
}

/// The upkeep lane of one shard; see the module doc.
#[derive(Debug, Default)]
pub struct Maintenance {
    state: State,
    /// Bytes of a segment one compaction step examines.
    step_bytes: usize,
    /// Counters for tests and stats.
    checkpoints: u64,
    compactions: u64,
}

impl Maintenance {
    /// A lane whose compaction steps examine `step_bytes` each.
    pub fn new(step_bytes: usize) -> Maintenance {
        assert!(step_bytes > 0, "a compaction step examines something");
        Maintenance {
            step_bytes,
            ..Maintenance::default()
        }
    }

    /// Checkpoint files this lane wrote successfully, and segments it compacted away.
    pub fn counts(&self) -> (u64, u64) {
        (self.checkpoints, self.compactions)
    }

    /// Advances as far as the store allows without I/O; returns what to do next.
    pub fn step<D: Disk + Clone>(&mut self, store: &mut Store<D>) -> Task {
        loop {
            match std::mem::take(&mut self.state) {
                State::Start => {
                    if store.failure().is_some() {
                        return Task::RoundDone { error: None };
                    }
                    self.state = if store.checkpoint_due() {
                        State::CheckpointSettling(store.begin_checkpoint())
                    } else {
                        State::PickSegment
                    };
                }
                State::CheckpointSettling(job) => match store.is_settled(job.settle_to) {
                    Ok(true) => {
                        self.state = State::CheckpointWriting;
                        return Task::WriteCheckpoint(job);
                    }
                    Ok(false) => {
                        store.request_sync();
                        let pos = job.settle_to;
                        self.state = State::CheckpointSettling(job);
                        return Task::AwaitSettled(pos);
                    }
                    Err(e) => {
                        // The store stopped: the checkpoint is abandoned (recovery uses
                        // the previous one), and the round ends.
                        store.checkpoint_written(&job, Err(io::Error::other(e.to_string())));
                        return Task::RoundDone { error: None };
                    }
                },
                State::CheckpointWriting => {
                    // `step` before `checkpoint_written`: the driver still has the job.
                    self.state = State::CheckpointWriting;
                    panic!("Maintenance::step while the checkpoint file is being written");
                }
                State::PickSegment => match store.compaction_candidate() {
                    Some(segment) => self.state = State::Copying { segment, cursor: 0 },
                    None => return Task::RoundDone { error: None },
                },
                State::Copying { segment, cursor } => {
                    match store.compact_step(segment, cursor, self.step_bytes) {
                        Ok(Some(next)) => {
                            self.state = State::Copying {
                                segment,
                                cursor: next,
                            };
                        }
                        Ok(None) => {
                            self.state = State::CopiesSettling {
                                segment,
                                copied_up_to: store.appended_pos(),
                            };
                        }
                        Err(e) => return compaction_failed(segment, &e),
                    }
                    return Task::Yield;
                }
                State::CopiesSettling {
                    segment,
                    copied_up_to,
                } => match store.is_settled(copied_up_to) {
                    Ok(true) => {
                        let result = store.drop_segment(segment);
                        self.compactions += 1;
                        return Task::RoundDone {
                            error: result
                                .err()
                                .map(|e| format!("removing compacted segment {segment}: {e}")),
                        };
                    }
                    Ok(false) => {
                        store.request_sync();
                        self.state = State::CopiesSettling {
                            segment,
                            copied_up_to,
                        };
                        return Task::AwaitSettled(copied_up_to);
                    }
                    Err(e) => return compaction_failed(segment, &e),
                },
            }
        }
    }

    /// The driver wrote (or failed to write) the checkpoint `step` handed it.
    pub fn checkpoint_written<D: Disk + Clone>(
        &mut self,
        store: &mut Store<D>,
        job: &CheckpointJob,
        result: io::Result<()>,
    ) {
        assert!(
            matches!(self.state, State::CheckpointWriting),
            "checkpoint_written without a checkpoint being written"
        );
        if result.is_ok() {
            self.checkpoints += 1;
        }
        store.checkpoint_written(job, result);
        self.state = State::PickSegment;
    }

    /// Starts over after the store was reopened (a crash in the simulator): whatever was
    /// in progress belonged to the old store.
    pub fn reset(&mut self) {
        self.state = State::Start;
    }
}

fn compaction_failed(segment: u32, e: &StoreError) -> Task {
    Task::RoundDone {
        error: Some(format!("compaction of segment {segment}: {e}")),
    }
}
