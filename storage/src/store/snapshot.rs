//! Snapshots of a replica's applied state: what a leader sends a follower that is behind
//! its retained log (or a node joining after the log stopped reaching entry 1), and how
//! the follower installs it crash-safely.
//!
//! The snapshot is logical: the next table id, each table's descriptor and its live
//! items, as of the leader's applied entry. Installing it appends a `Snapshot` record at
//! the start of a fresh segment, then the state as relocated records (term and entry of
//! the snapshot), a hard state and the configuration; the in-memory state switches at
//! once. The install counts as durable only once a checkpoint taken after it has been
//! written (`snapshot_pending` turns false): recovery that meets a `Snapshot` record —
//! which only a replay from an older checkpoint can — removes that segment and every
//! later one, leaving the replica as it was before the install. Until then no segment is
//! dropped by compaction, so the state before the install stays whole on disk.

use super::*;

use crate::format::HardState;

/// One live item of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotItem {
    pub key: Vec<u8>,
    pub item: Vec<u8>,
    pub size_bytes: u32,
}

/// A replica's applied state, as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotState {
    pub next_table_id: u32,
    pub tables: Vec<(TableDesc, Vec<SnapshotItem>)>,
}

fn bad(what: &str) -> StoreError {
    StoreError::BadEntry(format!("a malformed snapshot: {what}"))
}

impl SnapshotState {
    /// next_table_id u32 ‖ table count u32 ‖ per table { desc_len u32, desc, item count
    /// u64, per item { key_len u16, key, size u32, item_len u32, item } }.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.next_table_id.to_le_bytes());
        out.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        for (desc, items) in &self.tables {
            let d = desc.encode();
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            out.extend_from_slice(&d);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                out.extend_from_slice(&(i.key.len() as u16).to_le_bytes());
                out.extend_from_slice(&i.key);
                out.extend_from_slice(&i.size_bytes.to_le_bytes());
                out.extend_from_slice(&(i.item.len() as u32).to_le_bytes());
                out.extend_from_slice(&i.item);
            }
        }
        out
    }

    /// Decodes and checks a snapshot (it comes from a peer: every length is bounded by
    /// the bytes present, every key and record by the log's limits).
    pub fn decode(mut b: &[u8]) -> Result<SnapshotState, StoreError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
            if b.len() < n {
                return Err(bad("truncated"));
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        let u32_of = |x: &[u8]| u32::from_le_bytes(x.try_into().expect("4"));
        let next_table_id = u32_of(take(&mut b, 4)?);
        let count = u32_of(take(&mut b, 4)?) as usize;
        let mut tables = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let len = u32_of(take(&mut b, 4)?) as usize;
            let desc = TableDesc::decode(take(&mut b, len)?).map_err(|e| bad(&e.to_string()))?;
            if desc.table_id == 0 || desc.table_id >= next_table_id {
                return Err(bad("a table id outside the snapshot's range"));
            }
            let n = u64::from_le_bytes(take(&mut b, 8)?.try_into().expect("8"));
            let mut items = Vec::new();
            for _ in 0..n {
                let key_len = u16::from_le_bytes(take(&mut b, 2)?.try_into().expect("2")) as usize;
                let key = take(&mut b, key_len)?.to_vec();
                let size_bytes = u32_of(take(&mut b, 4)?);
                let item_len = u32_of(take(&mut b, 4)?) as usize;
                let item = take(&mut b, item_len)?.to_vec();
                if key.len() < 8 {
                    return Err(bad("a key under 8 bytes"));
                }
                items.push(SnapshotItem {
                    key,
                    item,
                    size_bytes,
                });
            }
            tables.push((desc, items));
        }
        if !b.is_empty() {
            return Err(bad("bytes after the last table"));
        }
        let mut ids: Vec<u32> = tables.iter().map(|(d, _)| d.table_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut names: Vec<&str> = tables.iter().map(|(d, _)| d.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if ids.len() != tables.len() || names.len() != tables.len() {
            return Err(bad("a table listed twice"));
        }
        Ok(SnapshotState {
            next_table_id,
            tables,
        })
    }
}

impl<D: Disk + Clone> Store<D> {
    /// The applied state, for a snapshot at `raft_applied()` (term `raft_term(applied)`).
    pub fn snapshot_state(&self) -> Result<SnapshotState, StoreError> {
        self.check_usable()?;
        let mut tables: Vec<&TableData> = self.tables.values().collect();
        tables.sort_by_key(|t| t.desc.table_id);
        let mut out = SnapshotState {
            next_table_id: self.next_table_id,
            tables: Vec::with_capacity(tables.len()),
        };
        for t in tables {
            let mut items = Vec::with_capacity(t.index.len());
            for item in self.range(t.desc.table_id, Bound::Unbounded, Bound::Unbounded)? {
                let i = item?;
                items.push(SnapshotItem {
                    key: i.key.to_vec(),
                    item: i.bytes.to_vec(),
                    size_bytes: i.size_bytes,
                });
            }
            out.tables.push((t.desc.clone(), items));
        }
        Ok(out)
    }

    /// Whether a snapshot install still waits for the checkpoint that makes it durable.
    pub fn snapshot_pending(&self) -> bool {
        self.snapshot_at.is_some()
    }

    /// Installs `state`, the leader's applied state at entry `index` of `term` with
    /// configuration `conf`: this replica's state and Raft log are replaced (see the
    /// module doc). Checked before anything changes; returns the position to make
    /// durable (the install completes with the checkpoint it requests).
    pub fn install_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: &[u8],
        state: &SnapshotState,
    ) -> Result<LogPos, StoreError> {
        self.check_usable()?;
        assert!(
            index >= self.raft().applied,
            "a snapshot at {index} behind the applied {}",
            self.raft().applied
        );
        let max = self.record_max_len();
        for (desc, items) in &state.tables {
            for i in items {
                let len = RECORD_HEADER_LEN + i.key.len() + i.item.len();
                if len > max || i.key.len() > KEY_MAX_BYTES {
                    return Err(StoreError::TooLarge(len));
                }
            }
            if RECORD_HEADER_LEN + desc.encode().len() > max {
                return Err(bad("a table descriptor larger than a record"));
            }
        }
        // The marker begins a segment, so a discarded install is whole segments.
        self.roll();
        let mut marker = index.to_le_bytes().to_vec();
        marker.extend_from_slice(&term.to_le_bytes());
        let at = self.append(
            Record {
                term,
                entry: 0,
                ..Record::op(RecordKind::Snapshot, 0, 0, &[], &marker)
            },
            false,
        )?;
        // The old state goes: its records are dead, its retained entries void.
        {
            let raft = self.raft_mut();
            let old: Vec<(u32, u32)> = raft
                .entries
                .iter()
                .map(|e| (e.loc.segment, e.loc.offset))
                .collect();
            raft.voided.extend(old);
            raft.entries.clear();
        }
        self.tables.clear();
        self.by_name.clear();
        self.pending_deletes.clear();
        for seg in self.segments.values_mut() {
            seg.live = 0;
        }
        self.next_table_id = self.next_table_id.max(state.next_table_id);
        for (desc, items) in &state.tables {
            let value = desc.encode();
            self.append(
                Record {
                    term,
                    entry: index,
                    ..Record::op(RecordKind::CreateTable, desc.table_id, 0, &[], &value)
                },
                true,
            )?;
            self.insert_table(desc.clone());
            for i in items {
                let loc = self.append(
                    Record {
                        term,
                        entry: index,
                        ..Record::op(
                            RecordKind::Put,
                            desc.table_id,
                            i.size_bytes,
                            &i.key,
                            &i.item,
                        )
                    },
                    true,
                )?;
                let slot = Slot {
                    loc,
                    size_bytes: i.size_bytes,
                };
                self.table_mut(desc.table_id)?.index.insert(&i.key, slot);
                self.segments.get_mut(&loc.segment).expect("active").live += loc.len as u64;
            }
        }
        let hs = {
            let raft = self.raft_mut();
            raft.first = index + 1;
            raft.prev_term = term;
            raft.applied = index;
            HardState {
                commit: raft.hard_state.commit.max(index),
                term: raft.hard_state.term.max(term),
                ..raft.hard_state
            }
        };
        // Both records always written: the install's own hard state and configuration.
        self.raft_mut().hard_state_loc = None;
        self.set_hard_state(hs)?;
        self.set_conf_state(conf)?;
        self.snapshot_at = Some(LogPos::new(at.segment, at.offset));
        self.checkpoint_requested = true;
        Ok(self.appended_pos())
    }
}
