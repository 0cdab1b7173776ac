//! Upkeep: checkpoints and compaction (their order is `crate::maintenance`'s).

use super::*;

use crate::format::HardState;

impl<D: Disk + Clone> Store<D> {
    // ---------------------------------------------------------------------------------
    // Checkpoints

    /// Whether enough log has been appended since the last checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        !self.checkpoint_running
            && self.failure.is_none()
            && (self.checkpoint_requested
                || self.stats.client_bytes + self.stats.relocated_bytes
                    - self.appended_at_checkpoint
                    >= self.cfg.checkpoint_every_bytes
                || self.replica_checkpoint_lags())
    }

    /// A replica compacts only segments older than its durable checkpoint's replay
    /// segment (below): once the retained entries have moved two segments past it, a new
    /// checkpoint lets compaction go on.
    fn replica_checkpoint_lags(&self) -> bool {
        let Some(front) = self.raft.as_ref().and_then(|r| r.entries.front()) else {
            return false;
        };
        self.checkpoint_segments[0].is_none_or(|s| front.loc.segment > s + 1)
    }

    /// Serializes the catalog and indexes as of now. Write the job's bytes once the log
    /// is durable up to `settle_to`, then call `checkpoint_written`.
    pub fn begin_checkpoint(&mut self) -> CheckpointJob {
        self.checkpoint_running = true;
        self.checkpoint_requested = false;
        self.appended_at_checkpoint = self.stats.client_bytes + self.stats.relocated_bytes;
        let settle_to = self.appended_pos();
        let mut replay_from = settle_to;
        let mut replay_index = self.next_index;
        // A replica's replay must find every retained entry (applied ones a follower
        // may still need, and the unapplied tail): it begins at the first one's record.
        let raft = self.raft.as_ref().map(|r| {
            if let Some(front) = r.entries.front() {
                replay_from = LogPos::new(front.loc.segment, front.loc.offset);
                let Ok(Parsed::Record(rec)) = parse_record(self.record_at(front.loc)) else {
                    unreachable!("retained entries are records this store wrote");
                };
                replay_index = rec.index;
            }
            checkpoint::RaftCheckpoint {
                applied: r.applied,
                applied_term: r.get(r.applied).map_or(r.prev_term, |e| e.term),
                log_first: r.first,
                log_prev_term: r.prev_term,
                hard_state: HardState {
                    commit: r.hard_state.commit.max(r.applied),
                    ..r.hard_state
                },
                conf_state: r.conf_state.clone(),
                voided: r.voided.iter().copied().collect(),
            }
        });
        self.checkpoint_segments[1] = Some(replay_from.segment());
        let segments: Vec<(u32, u32)> = self.segments.iter().map(|(&id, s)| (id, s.end)).collect();
        let mut tables: Vec<&TableData> = self.tables.values().collect();
        tables.sort_by_key(|t| t.desc.table_id);
        let bytes = checkpoint::encode(
            replay_from,
            replay_index,
            self.next_table_id,
            &segments,
            tables.iter().map(|t| (&t.desc, &t.index)),
            raft.as_ref(),
        );
        CheckpointJob {
            file: checkpoint_file_name(self.next_index - 1),
            bytes,
            replay_from,
            settle_to,
        }
    }

    /// The checkpoint file is durable: older ones are removed.
    pub fn checkpoint_written(&mut self, job: &CheckpointJob, result: io::Result<()>) {
        self.checkpoint_running = false;
        let replay_segment = self.checkpoint_segments[1].take();
        if let Err(e) = result {
            // A checkpoint is an accelerator: recovery falls back to the previous one.
            tracing::warn!("checkpoint {} not written: {e}", job.file);
            return;
        }
        self.stats.checkpoints += 1;
        self.checkpoint_segments[0] = replay_segment;
        // A checkpoint that replays from past a snapshot install completes it.
        if self.snapshot_at.is_some_and(|at| job.replay_from > at) {
            self.snapshot_at = None;
        }
        if let Some(old) = self.checkpoint_file.replace(job.file.clone())
            && old != job.file
            && let Err(e) = self.disk.remove(&old)
        {
            tracing::warn!("old checkpoint {old} not removed: {e}");
        }
    }

    // ---------------------------------------------------------------------------------
    // Compaction

    /// The sealed segment most worth compacting, if any passes the dead-ratio threshold.
    pub fn compaction_candidate(&self) -> Option<u32> {
        // While a snapshot install is not durable, the state before it stays whole.
        if self.failure.is_some() || self.snapshot_at.is_some() {
            return None;
        }
        self.segments
            .iter()
            .filter(|&(&id, s)| id != self.active && s.map.is_some())
            .filter(|&(&id, _)| !self.checkpoint_segments.contains(&Some(id)))
            .filter(|&(&id, _)| LogPos::new(id + 1, 0) <= self.settled_pos())
            // A replica's retained entries stay where they are (`store::raft`), and its
            // replay from the durable checkpoint must find every entry after that
            // checkpoint's first retained one: only older segments are compacted.
            .filter(|&(&id, _)| {
                self.raft.as_ref().is_none_or(|r| {
                    r.entries.front().is_none_or(|front| id < front.loc.segment)
                        && self.checkpoint_segments[0].is_some_and(|s| id < s)
                })
            })
            .map(|(&id, s)| {
                let data = (s.end as u64 - SEGMENT_HEADER_LEN as u64).max(1);
                (id, 1.0 - s.live as f64 / data as f64)
            })
            .filter(|&(_, dead)| dead >= self.cfg.compact_dead_ratio)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id)
    }

    /// Copies the live records of `segment` from `cursor` to the head of the log until
    /// about `budget` bytes were examined; returns the new cursor, or `None` when the
    /// segment is done. Between steps, writes may supersede records: only records an
    /// index entry still points to are copied.
    pub fn compact_step(
        &mut self,
        segment: u32,
        cursor: u32,
        budget: usize,
    ) -> Result<Option<u32>, StoreError> {
        self.check_usable()?;
        // A tombstone (or DeleteTable) still matters while a replay could start before
        // it, i.e. while an older segment exists. (A checkpoint taken before it replays
        // from a position in this segment or an older one; once this segment is dropped
        // such a checkpoint is not used, see `recover`.)
        let older_exists = self.segments.range(..segment).next().is_some();
        // In a replica, older state of a key may also be a relocated copy in a newer
        // segment (a copy of applied state can follow an entry appended earlier): a
        // tombstone stays while any other segment holds a record of an older entry.
        let min_entry_elsewhere = self
            .segments
            .iter()
            .filter(|&(&id, _)| id != segment)
            .map(|(_, s)| s.min_entry)
            .min()
            .unwrap_or(u64::MAX);
        let replicated = self.raft.is_some();
        let (hard_state_loc, conf_state_loc) = self
            .raft
            .as_ref()
            .map_or((None, None), |r| (r.hard_state_loc, r.conf_state_loc));
        let seg = &self.segments[&segment];
        let end = seg.end;
        let mut pos = cursor.max(SEGMENT_HEADER_LEN as u32);
        let mut examined = 0usize;
        let mut copies: Vec<(Vec<u8>, Loc)> = Vec::new();
        {
            let map = seg.map.as_ref().expect("sealed segments are mapped");
            if cursor == 0 {
                // Compaction reads the segment front to back, once.
                map.advise_sequential();
            }
            let bytes = map.bytes();
            while pos < end && examined < budget {
                let r = match parse_record(&bytes[pos as usize..]) {
                    Ok(Parsed::Record(r)) => r,
                    Ok(Parsed::End) => break,
                    Err(bad) => {
                        let msg = format!("compaction of segment {segment} offset {pos}: {bad}");
                        self.failure = Some(StoreError::Corrupt(msg.clone()));
                        self.stats.corruptions += 1;
                        return Err(StoreError::Corrupt(msg));
                    }
                };
                let len = r.encoded_len() as u32;
                let loc = Loc {
                    segment,
                    offset: pos,
                    len,
                };
                let table = self.tables.get(&r.table_id);
                let voided = self.raft.as_ref().is_some_and(|raft| raft.is_voided(loc));
                let keep = !voided
                    && match r.kind {
                        RecordKind::Put => {
                            table.and_then(|t| t.index.get(r.key)).map(|s| s.loc) == Some(loc)
                        }
                        // A tombstone still hides a put in an older segment from a full
                        // replay; with no older segment it hides nothing.
                        RecordKind::Delete if replicated => {
                            min_entry_elsewhere < r.entry
                                && table.is_some_and(|t| t.index.get(r.key).is_none())
                        }
                        RecordKind::Delete => {
                            older_exists && table.is_some_and(|t| t.index.get(r.key).is_none())
                        }
                        RecordKind::CreateTable => table.is_some(),
                        // Kept for good in a replica: 48 bytes per table ever deleted, and the
                        // only durable trace of an id whose table is gone (ids are never
                        // reused, and a replica's table ids move with applied entries only).
                        RecordKind::DeleteTable if replicated => true,
                        RecordKind::DeleteTable => older_exists,
                        // Applied and forgotten (the segment holds no retained entry).
                        RecordKind::RaftEntry => false,
                        RecordKind::HardState => hard_state_loc == Some(loc),
                        RecordKind::ConfState => conf_state_loc == Some(loc),
                        // Covered by the checkpoint that completed the install.
                        RecordKind::Snapshot => false,
                    };
                if keep {
                    copies.push((bytes[pos as usize..(pos + len) as usize].to_vec(), loc));
                }
                examined += len as usize;
                pos += len;
            }
        }
        for (raw, old) in copies {
            let Ok(Parsed::Record(r)) = parse_record(&raw) else {
                unreachable!("parsed once already");
            };
            let new = self.append(r, true)?;
            if let Some(raft) = self.raft.as_mut() {
                match r.kind {
                    RecordKind::HardState => raft.hard_state_loc = Some(new),
                    RecordKind::ConfState => raft.conf_state_loc = Some(new),
                    _ => {}
                }
            }
            if r.kind == RecordKind::Put {
                let t = self.tables.get_mut(&r.table_id).expect("checked live");
                let moved = t.index.relocate(r.key, old, new);
                debug_assert!(moved, "a live record was superseded within one step");
                self.segments.get_mut(&new.segment).expect("active").live += new.len as u64;
                self.release(old);
            }
        }
        Ok((pos < end && examined >= budget).then_some(pos))
    }

    /// Deletes a compacted segment. Call once the copies `compact_step` made are durable
    /// (`is_durable(appended_pos at the last step)`).
    pub fn drop_segment(&mut self, segment: u32) -> io::Result<()> {
        if self.snapshot_at.is_some() {
            // A compaction round that began before an install: its segment stays until
            // a later round (the state before the install must survive a crash whole).
            return Ok(());
        }
        let seg = self
            .segments
            .remove(&segment)
            .expect("segment to drop exists");
        assert_eq!(seg.live, 0, "segment {segment} dropped with live records");
        assert_ne!(segment, self.active, "the active segment is never dropped");
        drop(seg);
        if let Some(raft) = self.raft.as_mut() {
            raft.voided.retain(|&(s, _)| s != segment);
        }
        self.stats.segments_compacted += 1;
        self.checkpoint_requested = true;
        self.disk.remove(&segment_file_name(segment))
    }
}
