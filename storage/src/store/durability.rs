//! Durability: the flush jobs a driver runs, group commit, and the watermarks replies and reads wait for.

use super::*;

impl<D: Disk + Clone> Store<D> {
    // ---------------------------------------------------------------------------------
    // Durability

    /// Everything before this position survives a crash (in `Durability::None`: has
    /// been appended, which is all that mode promises).
    pub fn durable_pos(&self) -> LogPos {
        match self.cfg.durability {
            Durability::Sync => self.synced,
            Durability::None if self.unwritten_bytes() <= UNWRITTEN_MAX_BYTES => {
                self.appended_pos()
            }
            Durability::None => self.written,
        }
    }

    /// Everything before this position is synced to the device, in either durability
    /// mode. Background work that makes files refer to records — checkpoints, dropping a
    /// compacted segment — waits for this (with `request_sync` in `Durability::None`), so
    /// no crash leaves a checkpoint pointing at bytes the device never got.
    pub fn settled_pos(&self) -> LogPos {
        self.synced
    }

    /// Like `is_durable`, against `settled_pos`.
    pub fn is_settled(&self, pos: LogPos) -> Result<bool, StoreError> {
        self.reached(pos, Mark::Settled)
    }

    /// Whether `mark` covers `pos`: `Ok(true)` yes, `Ok(false)` not yet, `Err` never (the
    /// store failed first).
    pub fn reached(&self, pos: LogPos, mark: Mark) -> Result<bool, StoreError> {
        let covered = match mark {
            Mark::Durable => self.durable_pos(),
            Mark::Settled => self.settled_pos(),
        };
        if pos <= covered {
            return Ok(true);
        }
        self.check_usable().map(|()| false)
    }

    /// The end of the last record appended.
    pub fn appended_pos(&self) -> LogPos {
        LogPos::new(self.active, self.segments[&self.active].end)
    }

    /// `Some(pos)` while `pos` is not durable yet: what an answer revealing the record
    /// ending there must wait for.
    pub fn until_durable(&self, pos: LogPos) -> Option<LogPos> {
        (pos > self.durable_pos()).then_some(pos)
    }

    /// Whether a write ending at `pos` can be acknowledged: `Ok(true)` yes, `Ok(false)`
    /// not yet, `Err` never (the store failed before making it durable).
    pub fn is_durable(&self, pos: LogPos) -> Result<bool, StoreError> {
        self.reached(pos, Mark::Durable)
    }

    pub fn failure(&self) -> Option<&StoreError> {
        self.failure.as_ref()
    }

    /// Bytes appended but not yet written to the files.
    pub fn unwritten_bytes(&self) -> u64 {
        let inflight = self
            .inflight
            .as_ref()
            .and_then(|i| i.chunk.as_ref())
            .map_or(0, |c| c.bytes.len());
        (inflight + self.pending.iter().map(|c| c.bytes.len()).sum::<usize>()) as u64
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn flush_in_progress(&self) -> bool {
        self.inflight.is_some()
    }

    /// Whether the flusher has something to do: bytes to write, or a requested sync.
    pub fn has_flush_work(&self) -> bool {
        self.inflight.is_none()
            && self.failure.is_none()
            && (!self.pending.is_empty() || (self.sync_requested && !self.unsynced.is_empty()))
    }

    /// Asks the next flush to sync (`Durability::None` syncs only when background work
    /// needs `settled_pos` to advance).
    pub fn request_sync(&mut self) {
        if self.synced < self.appended_pos() {
            self.sync_requested = true;
        }
    }

    /// The next flush job — the oldest pending chunk, and/or the syncs due — if none is in
    /// flight.
    pub fn next_flush(&mut self) -> Option<FlushJob> {
        if !self.has_flush_work() {
            return None;
        }
        // A new segment is created only once every older one is synced: a sealed segment
        // with a torn tail would read as corruption after a machine crash. (Only
        // `Durability::None` leaves segments unsynced; this costs it one sync per segment.)
        let seals = self.pending.front().is_some_and(|c| c.create) && !self.unsynced.is_empty();
        let chunk = if seals {
            None
        } else {
            self.pending.pop_front()
        };
        let sync = self.cfg.durability == Durability::Sync || self.sync_requested || seals;
        let mut files = if sync {
            std::mem::take(&mut self.unsynced)
        } else {
            BTreeSet::new()
        };
        let job = match &chunk {
            Some(c) => {
                if sync {
                    files.insert(c.segment);
                }
                FlushJob {
                    file: segment_file_name(c.segment),
                    create_len: c.create.then_some(self.cfg.segment_size),
                    offset: c.start as u64,
                    bytes: c.bytes.clone(),
                    sync_files: Vec::new(),
                }
            }
            None => FlushJob {
                file: String::new(),
                create_len: None,
                offset: 0,
                bytes: Vec::new(),
                sync_files: Vec::new(),
            },
        };
        let job = FlushJob {
            sync_files: files.iter().map(|&id| segment_file_name(id)).collect(),
            ..job
        };
        self.inflight = Some(Inflight { chunk, sync });
        Some(job)
    }

    /// Reports the outcome of the job `next_flush` returned. An error poisons the store.
    pub fn finish_flush(&mut self, result: io::Result<()>) {
        let Inflight { chunk, sync } = self
            .inflight
            .take()
            .expect("finish_flush without next_flush");
        let result = result.and_then(|()| match &chunk {
            None => Ok(()),
            Some(chunk) => {
                let name = segment_file_name(chunk.segment);
                let seg = self
                    .segments
                    .get_mut(&chunk.segment)
                    .expect("a segment with pending bytes exists");
                match &mut seg.map {
                    Some(map) => self.disk.refresh(&name, map),
                    None => {
                        seg.map = Some(self.disk.map(&name)?);
                        Ok(())
                    }
                }
            }
        });
        if let Err(e) = result {
            // Never retried: after a failed fsync the kernel may have dropped the dirty
            // pages, and a retry that succeeds would claim durability for lost data.
            let at = chunk.as_ref().map_or(String::from("sync"), |c| {
                format!("{} at offset {}", segment_file_name(c.segment), c.start)
            });
            self.failure = Some(StoreError::Poisoned(format!("{at}: {}", io_text(&e))));
            self.pending.clear();
            return;
        }
        self.stats.flushes += 1;
        if let Some(chunk) = chunk {
            self.stats.written_bytes += chunk.bytes.len() as u64;
            self.written = chunk.end();
            if !sync {
                self.unsynced.insert(chunk.segment);
            }
        }
        if sync {
            self.stats.syncs += 1;
            self.synced = self.written;
            self.sync_requested = false;
            let durable = self.durable_pos();
            self.pending_deletes.retain(|_, end| *end > durable);
        }
    }
}
