//! The store as a shard's Raft log (a replicated store, `StoreConfig::replicated`).
//!
//! There is no second write-ahead log: a Raft entry is one log record carrying its term
//! and Raft index (`Record::entry`). Entries are *appended* when Raft hands them over
//! (readable at once, durable with the next group commit) and *applied* when committed:
//! applying points the index at the record already in the log and writes nothing again.
//! A new leader's conflicting suffix is replaced by appending the new entry at its index:
//! in log order, an entry record voids every earlier one at its index or above, so no
//! truncation record exists. Raft's hard state and the applied configuration are records
//! too (the last one in log order is in force); compaction keeps the current ones.
//!
//! Invariants (checked by `Store::check_invariants` and the replicated crash test):
//! * `entries` holds every retained entry, `first..=last`, in index order, and in log
//!   order (their records' positions grow);
//! * `first ≤ applied + 1`, `applied ≤ hard_state.commit` after recovery, and
//!   `hard_state.commit ≤ last`;
//! * an entry at or below `applied` is never replaced;
//! * a segment holding a retained entry is never compacted, so every `Loc` here names a
//!   record in a present segment; relocated copies keep their original term and entry
//!   and are applied state, never entries.

use super::*;

use crate::format::{EntryData, HardState};

/// How many applied entries stay readable for followers that lag (Raft's log beyond its
/// compacted prefix); older ones are forgotten and `first` moves up.
pub const RAFT_RETAINED_APPLIED_ENTRIES: u64 = 10_000;

/// One retained entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EntryAt {
    pub(super) term: u64,
    pub(super) loc: Loc,
}

/// A replicated store's Raft state.
#[derive(Debug, Default)]
pub(super) struct RaftLog {
    /// Index of `entries[0]`; `first - 1` is the last forgotten entry.
    pub(super) first: u64,
    pub(super) prev_term: u64,
    pub(super) entries: VecDeque<EntryAt>,
    pub(super) applied: u64,
    pub(super) hard_state: HardState,
    pub(super) hard_state_loc: Option<Loc>,
    pub(super) conf_state: Vec<u8>,
    pub(super) conf_state_loc: Option<Loc>,
    /// Entry records a newer one at their index replaced (never applied): compaction
    /// must not take them for applied state. Few (a leader change with an uncommitted
    /// suffix), kept until their segment is dropped, and listed in checkpoints.
    pub(super) voided: BTreeSet<(u32, u32)>,
}

impl RaftLog {
    pub(super) fn new() -> RaftLog {
        RaftLog {
            first: 1,
            ..RaftLog::default()
        }
    }

    pub(super) fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    pub(super) fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.prev_term, |e| e.term)
    }

    pub(super) fn get(&self, entry: u64) -> Option<EntryAt> {
        let at = entry.checked_sub(self.first)?;
        self.entries.get(usize::try_from(at).ok()?).copied()
    }

    /// Drops retained entries from `entry` on (a replaced suffix); their records are
    /// void.
    pub(super) fn truncate_from(&mut self, entry: u64) {
        let keep = entry.saturating_sub(self.first) as usize;
        for e in self.entries.range(keep.min(self.entries.len())..) {
            self.voided.insert((e.loc.segment, e.loc.offset));
        }
        self.entries.truncate(keep);
    }

    pub(super) fn is_voided(&self, loc: Loc) -> bool {
        self.voided.contains(&(loc.segment, loc.offset))
    }

    /// The module's invariants; `record` parses the record at a location.
    pub(super) fn check_invariants<'a>(
        &self,
        record: impl Fn(Loc) -> Result<Parsed<'a>, crate::format::BadRecord>,
    ) {
        assert!(
            self.first >= 1 && self.first <= self.applied + 1,
            "{self:?}"
        );
        assert!(
            self.applied <= self.last(),
            "applied past the last entry: {self:?}"
        );
        assert!(
            self.hard_state.commit <= self.last(),
            "commit past the last entry"
        );
        let mut prev: Option<(u64, LogPos)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let index = self.first + i as u64;
            let Ok(Parsed::Record(r)) = record(e.loc) else {
                panic!("entry {index} at {:?} is not a record", e.loc);
            };
            assert_eq!(
                (r.entry, r.term, r.flags),
                (index, e.term, 0),
                "entry {index}"
            );
            let pos = LogPos::new(e.loc.segment, e.loc.offset);
            if let Some((term, at)) = prev {
                assert!(term <= e.term && at < pos, "entry {index} out of order");
            }
            prev = Some((e.term, pos));
        }
    }

    /// Forgets applied entries beyond the retained window of `keep`.
    pub(super) fn forget_old(&mut self, keep: u64) {
        while self.applied.saturating_sub(self.first) >= keep.max(1) {
            let e = self
                .entries
                .pop_front()
                .expect("applied entries are retained");
            self.prev_term = e.term;
            self.first += 1;
        }
    }
}

/// What applying one entry did, for the caller's cache and replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A Put: the item's new slot and the one it replaced.
    Put {
        table: u32,
        slot: Slot,
        old: Option<Slot>,
    },
    /// A Delete: the slot removed, if the item existed.
    Delete {
        table: u32,
        old: Option<Slot>,
    },
    /// A CreateTable; `Err` when it could not take effect (its name or id was taken by
    /// an entry applied before it — every replica decides the same).
    CreateTable {
        table: u32,
        result: Result<(), StoreError>,
    },
    DeleteTable {
        table: u32,
        existed: bool,
    },
    /// A write to a table that an earlier entry deleted (or never created): nothing.
    NoTable {
        table: u32,
    },
    /// A Put the table's index had no room for (`StoreError::IndexFull`): nothing.
    Refused {
        table: u32,
        error: StoreError,
    },
    /// A Raft entry that is not a store operation; the value of its record (entry type
    /// and data) is returned by [`Store::raft_entry`].
    Raft,
}

impl<D: Disk + Clone> Store<D> {
    pub(super) fn raft(&self) -> &RaftLog {
        self.raft
            .as_ref()
            .expect("Raft calls are made on a replicated store")
    }

    pub(super) fn raft_mut(&mut self) -> &mut RaftLog {
        self.raft
            .as_mut()
            .expect("Raft calls are made on a replicated store")
    }

    pub fn is_replicated(&self) -> bool {
        self.raft.is_some()
    }

    /// The first retained entry (Raft's `first_index`).
    pub fn raft_first(&self) -> u64 {
        self.raft().first
    }

    /// The newest entry (Raft's `last_index`).
    pub fn raft_last(&self) -> u64 {
        self.raft().last()
    }

    pub fn raft_applied(&self) -> u64 {
        self.raft().applied
    }

    pub fn raft_hard_state(&self) -> HardState {
        self.raft().hard_state
    }

    /// The applied configuration, as last set (empty when never set).
    pub fn raft_conf_state(&self) -> &[u8] {
        &self.raft().conf_state
    }

    /// The term of `entry`, for retained entries and the last forgotten one.
    pub fn raft_term(&self, entry: u64) -> Option<u64> {
        let raft = self.raft();
        if entry + 1 == raft.first {
            return Some(raft.prev_term);
        }
        raft.get(entry).map(|e| e.term)
    }

    /// A retained entry: its term and its data as it was appended.
    pub fn raft_entry(&self, entry: u64) -> Result<(u64, EntryData<'_>), StoreError> {
        self.check_usable()?;
        let at = self
            .raft()
            .get(entry)
            .unwrap_or_else(|| panic!("entry {entry} is not retained"));
        let r = self.parse_at(at.loc)?;
        Ok((at.term, EntryData::of(&r)))
    }

    /// The record at `loc`, parsed and checked again (it may be read from the page
    /// cache long after it was written).
    fn parse_at(&self, loc: Loc) -> Result<Record<'_>, StoreError> {
        match parse_record(self.record_at(loc)) {
            Ok(Parsed::Record(r)) => Ok(r),
            Ok(Parsed::End) => Err(StoreError::Corrupt(format!("no record at {loc:?}"))),
            Err(bad) => Err(StoreError::Corrupt(format!("record at {loc:?}: {bad}"))),
        }
    }

    /// Appends Raft entries `(term, index, data)` with consecutive indexes. The first may
    /// be at or below the last retained entry: the suffix from it on is replaced (never
    /// an applied entry: that would be a Raft bug, and panics). Returns the position to
    /// make durable before telling Raft they are persisted.
    pub fn append_entries<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (u64, u64, EntryData<'a>)>,
    ) -> Result<LogPos, StoreError> {
        self.check_usable()?;
        for (term, index, data) in entries {
            let raft = self.raft();
            assert!(
                index > raft.applied && index <= raft.last() + 1,
                "entry {index} appended with applied {} and last {}",
                raft.applied,
                raft.last()
            );
            assert!(
                term >= raft.last_term() || index <= raft.last(),
                "entry {index} of term {term} after term {}",
                raft.last_term()
            );
            check_entry_data(&data)?;
            let record = data.record(term, index);
            if record.encoded_len() > self.record_max_len() {
                return Err(StoreError::TooLarge(record.encoded_len()));
            }
            // Replaced entries go first, so that a segment begun by this record names
            // its true predecessor in its header.
            self.raft_mut().truncate_from(index);
            let loc = self.append(record, false)?;
            self.raft_mut().entries.push_back(EntryAt { term, loc });
        }
        Ok(self.appended_pos())
    }

    /// Records Raft's hard state (a record when it changed). Returns the position to
    /// make durable.
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<LogPos, StoreError> {
        self.check_usable()?;
        assert!(
            hs.commit <= self.raft().last(),
            "commit {} beyond the last entry {}",
            hs.commit,
            self.raft().last()
        );
        if self.raft().hard_state != hs || self.raft().hard_state_loc.is_none() {
            let value = hs.encode();
            let loc = self.append(raft_state_record(RecordKind::HardState, &value), false)?;
            let raft = self.raft_mut();
            raft.hard_state = hs;
            raft.hard_state_loc = Some(loc);
        }
        Ok(self.appended_pos())
    }

    /// Records the applied configuration (opaque bytes, the replica crate's encoding).
    pub fn set_conf_state(&mut self, conf: &[u8]) -> Result<LogPos, StoreError> {
        self.check_usable()?;
        let loc = self.append(raft_state_record(RecordKind::ConfState, conf), false)?;
        let raft = self.raft_mut();
        raft.conf_state = conf.to_vec();
        raft.conf_state_loc = Some(loc);
        Ok(self.appended_pos())
    }

    /// Applies the next entry (`applied + 1`, which must be retained): the index and
    /// catalog take the effect of its record, which is already in the log.
    pub fn apply_entry(&mut self, entry: u64) -> Result<Applied, StoreError> {
        self.check_usable()?;
        let raft = self.raft();
        assert_eq!(entry, raft.applied + 1, "entries are applied in order");
        let at = raft
            .get(entry)
            .unwrap_or_else(|| panic!("entry {entry} applied but not retained"));
        let (kind, table, size_bytes, key, value) = {
            let r = self.parse_at(at.loc)?;
            (
                r.kind,
                r.table_id,
                r.size_bytes,
                r.key.to_vec(),
                value_if_needed(&r),
            )
        };
        let applied = self.apply_effect(kind, table, size_bytes, &key, &value, at.loc, true)?;
        let keep = self.cfg.raft_retained_entries;
        let raft = self.raft_mut();
        raft.applied = entry;
        raft.forget_old(keep);
        Ok(applied)
    }

    /// The effect of one entry record at `loc` on the index and catalog; `account`
    /// keeps segments' live bytes (recovery counts them afterwards from the index).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_effect(
        &mut self,
        kind: RecordKind,
        table: u32,
        size_bytes: u32,
        key: &[u8],
        value: &[u8],
        loc: Loc,
        account: bool,
    ) -> Result<Applied, StoreError> {
        Ok(match kind {
            RecordKind::Put => {
                if !self.tables.contains_key(&table) {
                    return Ok(Applied::NoTable { table });
                }
                // Appended entries were sized already; the index may still be full. That
                // is decided by the applied state, the same on every replica: the entry
                // applies as refused, and the log goes on.
                if let Err(error) = self.check_room(table, [key]) {
                    return Ok(Applied::Refused { table, error });
                }
                let slot = Slot { loc, size_bytes };
                let old = self.table_mut(table)?.index.insert(key, slot);
                if account {
                    self.segments.get_mut(&loc.segment).expect("present").live += loc.len as u64;
                    if let Some(old) = old {
                        self.release(old.loc);
                    }
                }
                Applied::Put { table, slot, old }
            }
            RecordKind::Delete => {
                let Some(t) = self.tables.get_mut(&table) else {
                    return Ok(Applied::NoTable { table });
                };
                let old = t.index.remove(key);
                if let Some(old) = old
                    && account
                {
                    self.release(old.loc);
                }
                Applied::Delete { table, old }
            }
            RecordKind::CreateTable => {
                let desc = TableDesc::decode(value)
                    .map_err(|e| StoreError::Corrupt(format!("entry at {loc:?}: {e}")))?;
                let result = if self.by_name.contains_key(&desc.name) {
                    Err(StoreError::TableExists(desc.name.clone()))
                } else if desc.table_id != table || table < self.next_table_id {
                    Err(StoreError::TableIdTaken(table))
                } else {
                    self.next_table_id = table + 1;
                    self.insert_table(desc);
                    Ok(())
                };
                Applied::CreateTable { table, result }
            }
            RecordKind::DeleteTable => {
                // Ids are never reused: a replica keeps every DeleteTable record (see
                // compaction), so recovery learns every id ever taken from them too.
                self.next_table_id = self.next_table_id.max(table + 1);
                let existed = self.tables.contains_key(&table);
                if existed {
                    self.remove_table(table, account);
                }
                Applied::DeleteTable { table, existed }
            }
            RecordKind::RaftEntry => Applied::Raft,
            RecordKind::HardState | RecordKind::ConfState | RecordKind::Snapshot => {
                return Err(StoreError::Corrupt(format!(
                    "Raft state at {loc:?} where an entry was expected"
                )));
            }
        })
    }
}

impl<D: Disk + Clone> Store<D> {
    /// Recovery: relocated copies of Puts the loaded checkpoint reflects. Per key, the
    /// copy of the newest entry is where the checkpoint's state lives now if the index
    /// entry names a record of that same entry, or a segment compaction dropped (its
    /// live records were copied first, so that copy is among these). Copies of older
    /// entries' state are ignored.
    fn follow_moves(&mut self, moved: Vec<(u64, Loc)>) -> Result<(), String> {
        type Newest = (u64, LogPos, Loc, u32);
        let mut newest: HashMap<(u32, Vec<u8>), Newest> = HashMap::new();
        for (entry, loc) in moved {
            let r = self.replayed_record(loc)?;
            let pos = LogPos::new(loc.segment, loc.offset);
            let size = r.size_bytes;
            let e = newest
                .entry((r.table_id, r.key.to_vec()))
                .or_insert((entry, pos, loc, size));
            if (entry, pos) > (e.0, e.1) {
                *e = (entry, pos, loc, size);
            }
        }
        for ((table, key), (entry, _, loc, size_bytes)) in newest {
            let Some(slot) = self.tables.get(&table).and_then(|t| t.index.get(&key)) else {
                continue;
            };
            let follow = if self.segments.contains_key(&slot.loc.segment) {
                self.replayed_record(slot.loc)?.entry == entry
            } else {
                true
            };
            if follow {
                let t = self.tables.get_mut(&table).expect("checked");
                t.index.insert(&key, Slot { loc, size_bytes });
            }
        }
        Ok(())
    }

    /// A record in a segment recovery mapped, checked again.
    fn replayed_record(&self, loc: Loc) -> Result<Record<'_>, String> {
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or("a replayed segment went")?;
        let map = seg.map.as_ref().expect("replayed segments are mapped");
        let bytes = map
            .bytes()
            .get(loc.offset as usize..)
            .ok_or("a location past its segment's end")?;
        match parse_record(bytes) {
            Ok(Parsed::Record(r)) => Ok(r),
            _ => Err(format!("no record at {loc:?}")),
        }
    }
}

/// The value `apply_effect` reads: a CreateTable's descriptor. An item's bytes stay in
/// the log (the index points at its record), so applying a Put copies nothing of them.
fn value_if_needed(r: &Record<'_>) -> Vec<u8> {
    if r.kind == RecordKind::CreateTable {
        r.value.to_vec()
    } else {
        Vec::new()
    }
}

/// A HardState or ConfState record.
fn raft_state_record(kind: RecordKind, value: &[u8]) -> Record<'_> {
    Record::op(kind, 0, 0, &[], value)
}

/// What an entry must be to become a record: the shapes recovery and apply rely on.
fn check_entry_data(data: &EntryData<'_>) -> Result<(), StoreError> {
    let ok = match data.kind {
        RecordKind::Put | RecordKind::Delete => data.key.len() >= 8,
        RecordKind::CreateTable => data.key.is_empty(),
        RecordKind::DeleteTable => data.key.is_empty() && data.value.is_empty(),
        RecordKind::RaftEntry => data.key.is_empty() && !data.value.is_empty(),
        RecordKind::HardState | RecordKind::ConfState | RecordKind::Snapshot => false,
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadEntry(format!(
            "{:?} entry with a {}-byte key and a {}-byte value",
            data.kind,
            data.key.len(),
            data.value.len()
        )))
    }
}

/// What recovery does after one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// The log from this record's segment on is an install that never completed.
    DiscardFromHere,
}

/// Recovery of a replicated store: the Raft log rebuilt from the entry records after the
/// replay point, then every entry known to be applied re-applied in *entry* order — with
/// compaction's relocated copies (state as of their entry) merged in at their entries.
/// Log order is not apply order here: an entry is appended before it is committed, so a
/// relocated copy of older state can follow it in the log.
#[derive(Debug, Default)]
pub(super) struct RaftReplay {
    /// The tables as loaded reflect every entry through this one.
    applied_base: u64,
    /// The chain has its start (from the checkpoint or the first replayed segment).
    started: bool,
    /// Relocated records after the replay point whose entry is above `applied_base`.
    relocated: Vec<(u64, Loc)>,
    /// The newest commit of the hard state records replayed so far.
    seen_commit: u64,
    /// Relocated Puts after the replay point of entries the checkpoint reflects.
    moved: Vec<(u64, Loc)>,
}

impl RaftReplay {
    /// Starts from a checkpoint's Raft state (or from nothing: `None`).
    pub(super) fn start<D: Disk + Clone>(
        store: &mut Store<D>,
        ckpt: Option<&checkpoint::RaftCheckpoint>,
    ) -> RaftReplay {
        let raft = store.raft_mut();
        let mut replay = RaftReplay::default();
        if let Some(c) = ckpt {
            raft.first = c.log_first;
            raft.prev_term = c.log_prev_term;
            raft.applied = c.applied;
            raft.hard_state = c.hard_state;
            raft.conf_state = c.conf_state.clone();
            raft.voided = c.voided.iter().copied().collect();
            replay.applied_base = c.applied;
            replay.started = true;
        }
        replay
    }

    /// The first replayed segment's header, when no checkpoint started the chain.
    pub(super) fn segment_header<D: Disk + Clone>(
        &mut self,
        store: &mut Store<D>,
        h: &SegmentHeader,
    ) {
        if !self.started {
            let raft = store.raft_mut();
            raft.first = h.last_entry + 1;
            raft.prev_term = h.last_entry_term;
            self.started = true;
        }
    }

    /// One replayed record at `loc`.
    pub(super) fn record<D: Disk + Clone>(
        &mut self,
        store: &mut Store<D>,
        r: &Record<'_>,
        loc: Loc,
    ) -> Result<Flow, String> {
        let relocated = r.flags & FLAG_RELOCATED != 0;
        match r.kind {
            // An install no checkpoint completed (`store::snapshot`).
            RecordKind::Snapshot => return Ok(Flow::DiscardFromHere),
            RecordKind::HardState => {
                let hs = HardState::decode(r.value).ok_or("a malformed hard state record")?;
                let raft = store.raft_mut();
                // Term and commit only grow; replay may begin before the checkpoint
                // whose hard state was loaded, so older records are skipped.
                let rank = |h: &HardState| (h.term, h.commit, h.vote != 0);
                if rank(&hs) >= rank(&raft.hard_state) {
                    raft.hard_state = hs;
                }
                self.seen_commit = self.seen_commit.max(hs.commit);
                raft.hard_state_loc = Some(loc);
            }
            RecordKind::ConfState => {
                let raft = store.raft_mut();
                raft.conf_state = r.value.to_vec();
                raft.conf_state_loc = Some(loc);
            }
            _ if r.entry == 0 => {
                return Err(format!(
                    "a {:?} record without a Raft entry in a replicated log",
                    r.kind
                ));
            }
            _ if relocated => {
                if r.entry > self.applied_base {
                    self.relocated.push((r.entry, loc));
                } else if r.kind == RecordKind::Put {
                    // State the checkpoint holds already, perhaps moved since.
                    self.moved.push((r.entry, loc));
                }
            }
            _ => {
                check_entry_data(&EntryData::of(r)).map_err(|e| e.to_string())?;
                let raft = store.raft_mut();
                let e = r.entry;
                if e < raft.first || e > raft.last() + 1 {
                    return Err(format!(
                        "Raft entry {e} where the log holds entries {}..={}",
                        raft.first,
                        raft.last()
                    ));
                }
                // A committed entry may be appended again only as itself (same index and
                // term: the same entry, by Raft's log matching). Replay may begin before
                // the checkpoint whose state was loaded, so what counts is the commit
                // the hard state records replayed so far say.
                let committed = self.seen_commit;
                if e <= raft.last() && e <= committed && raft.get(e).map(|x| x.term) != Some(r.term)
                {
                    return Err(format!(
                        "Raft entry {e} of term {} replaces a committed one (commit {committed})",
                        r.term
                    ));
                }
                // (A replacement may carry an older term than the entry it replaces: a new
                // leader's log can hold an old entry there. Along the log terms only grow.)
                if r.term < raft.get(e - 1).map_or(raft.prev_term, |x| x.term) {
                    return Err(format!(
                        "Raft entry {e} of term {} after a newer term",
                        r.term
                    ));
                }
                raft.truncate_from(e);
                raft.entries.push_back(EntryAt { term: r.term, loc });
            }
        }
        Ok(Flow::Continue)
    }

    /// After the last record: re-applies, in entry order, every entry that is known to
    /// have been applied — through the newest of the hard state's commit, the
    /// checkpoint's applied entry and any relocated copy (a copy is made of applied
    /// state only) — and leaves the rest as the unapplied tail of the Raft log.
    pub(super) fn finish<D: Disk + Clone>(mut self, store: &mut Store<D>) -> Result<(), String> {
        store.follow_moves(std::mem::take(&mut self.moved))?;
        let raft = store.raft();
        let reloc_max = self.relocated.iter().map(|&(e, _)| e).max().unwrap_or(0);
        let applied = raft.hard_state.commit.max(self.applied_base).max(reloc_max);
        // What was applied is in the chain (a relocated copy's entry too: its original
        // was retained when copied, and a later segment's header or the checkpoint
        // starts the chain no later than it).
        if applied > raft.last() || raft.first > applied + 1 {
            return Err(format!(
                "entries through {applied} are applied but the log holds {}..={}",
                raft.first,
                raft.last()
            ));
        }
        // Entries in (applied_base, applied], merged with the relocated copies; a copy
        // of a retained entry stands for it (the index points at the copy live, too).
        let mut work: Vec<(u64, bool, Loc)> = self
            .relocated
            .drain(..)
            .map(|(e, loc)| (e, true, loc))
            .collect();
        let from = (self.applied_base + 1).max(raft.first);
        for e in from..=applied.min(raft.last()) {
            work.push((e, false, raft.get(e).expect("retained").loc));
        }
        work.sort_by_key(|&(e, relocated, loc)| {
            (e, !relocated, LogPos::new(loc.segment, loc.offset))
        });
        work.dedup_by_key(|&mut (e, _, _)| e);
        for (e, _, loc) in work {
            let (kind, table, size_bytes, key, value) = {
                let r = store.replayed_record(loc)?;
                (
                    r.kind,
                    r.table_id,
                    r.size_bytes,
                    r.key.to_vec(),
                    value_if_needed(&r),
                )
            };
            store
                .apply_effect(kind, table, size_bytes, &key, &value, loc, false)
                .map_err(|err| format!("re-applying entry {e}: {err}"))?;
        }
        let keep = store.cfg.raft_retained_entries;
        let raft = store.raft_mut();
        raft.applied = applied;
        raft.hard_state.commit = raft.hard_state.commit.max(applied);
        raft.forget_old(keep);
        Ok(())
    }
}
