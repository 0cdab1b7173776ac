//! Opening a store: checkpoint load, log replay, torn-tail cutting (docs/log-format.md, "Recovery").

use super::*;

impl<D: Disk + Clone> Store<D> {
    // ---------------------------------------------------------------------------------
    // Opening and recovery

    /// Opens the log in `disk`: loads the newest readable checkpoint, replays the log
    /// after it verifying every record, cuts off a torn tail. Damage that is not a torn
    /// tail leaves the store open but refusing service (`StoreError::Corrupt`), with the
    /// details in the report: it never serves data it could not verify.
    ///
    /// Fails only on I/O errors (nothing was changed on disk then).
    pub fn open(disk: D, cfg: StoreConfig) -> io::Result<(Store<D>, RecoveryReport)> {
        assert!(
            cfg.segment_size >= SEGMENT_SIZE_MIN && cfg.segment_size <= SEGMENT_SIZE_MAX,
            "segment size {} outside {SEGMENT_SIZE_MIN}..={SEGMENT_SIZE_MAX}",
            cfg.segment_size
        );
        let started = Instant::now();
        let raft = cfg.replicated.then(raft::RaftLog::new);
        let mut store = Store {
            disk,
            cfg,
            segments: BTreeMap::new(),
            active: 0,
            next_index: 1,
            next_table_id: 1,
            pending: VecDeque::new(),
            inflight: None,
            written: LogPos::default(),
            synced: LogPos::default(),
            unsynced: BTreeSet::new(),
            sync_requested: false,
            tables: HashMap::new(),
            by_name: HashMap::new(),
            pending_deletes: HashMap::new(),
            failure: None,
            stats: StoreStats::default(),
            appended_at_checkpoint: 0,
            checkpoint_file: None,
            checkpoint_running: false,
            checkpoint_segments: [None, None],
            checkpoint_requested: false,
            raft,
            snapshot_at: None,
        };
        let mut report = RecoveryReport::default();
        match store.recover(&mut report)? {
            Ok(()) => store.remove_stale_checkpoints()?,
            Err(msg) => {
                // Everything stays on disk as found, for whoever investigates.
                store.stats.corruptions += 1;
                report.corruption = Some(msg.clone());
                store.failure = Some(StoreError::Corrupt(msg));
            }
        }
        report.items = store.tables.values().map(|t| t.index.len() as u64).sum();
        // Replayed front to back; from now on read at random.
        for seg in store.segments.values() {
            if let Some(map) = &seg.map {
                map.advise_random();
            }
        }
        report.elapsed = started.elapsed();
        store.appended_at_checkpoint = store.stats.client_bytes;
        Ok((store, report))
    }

    /// After a successful recovery only the checkpoint it used is worth keeping.
    pub(super) fn remove_stale_checkpoints(&mut self) -> io::Result<()> {
        for name in self.disk.list()? {
            if parse_checkpoint_file_name(&name).is_some()
                && self.checkpoint_file.as_deref() != Some(name.as_str())
            {
                self.disk.remove(&name)?;
            }
        }
        Ok(())
    }

    /// Recovery proper. Outer error: I/O. Inner error: corruption (a message).
    pub(super) fn recover(
        &mut self,
        report: &mut RecoveryReport,
    ) -> io::Result<Result<(), String>> {
        let names = self.disk.list()?;
        let mut seg_ids: Vec<u32> = names
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .collect();
        seg_ids.sort_unstable();
        let mut ckpts: Vec<(u64, &String)> = names
            .iter()
            .filter_map(|n| parse_checkpoint_file_name(n).map(|i| (i, n)))
            .collect();
        ckpts.sort_unstable_by(|a, b| b.cmp(a));

        // The newest checkpoint that decodes and whose replay point exists.
        let mut ckpt: Option<Checkpoint> = None;
        for (_, name) in &ckpts {
            match checkpoint::decode(&self.disk.read_all(name)?) {
                Ok(c) if seg_ids.binary_search(&c.replay_from.segment()).is_ok() => {
                    report.checkpoint = Some((*name).clone());
                    self.checkpoint_file = Some((*name).clone());
                    self.checkpoint_segments[0] = Some(c.replay_from.segment());
                    ckpt = Some(c);
                    break;
                }
                Ok(_) => report
                    .bad_checkpoints
                    .push(format!("{name}: its replay segment is missing")),
                Err(e) => report.bad_checkpoints.push(format!("{name}: {e}")),
            }
        }
        if ckpt.is_none() && !ckpts.is_empty() && seg_ids.is_empty() {
            return Ok(Err(
                "checkpoints exist but no log segment does: the log was lost".into(),
            ));
        }

        let mut ends: HashMap<u32, u32> = HashMap::new();
        let mut start = LogPos::new(seg_ids.first().copied().unwrap_or(0), 0);
        let mut orphans: HashMap<u32, Index> = HashMap::new();
        if let Some(c) = &ckpt
            && c.raft.is_some() != self.cfg.replicated
        {
            return Ok(Err(if self.cfg.replicated {
                "the checkpoint is a single-node store's: this data directory was not written by a replica".into()
            } else {
                "the checkpoint is a replica's: this data directory belongs to a replicated node"
                    .into()
            }));
        }
        let mut raft_replay = self
            .cfg
            .replicated
            .then(|| raft::RaftReplay::start(self, ckpt.as_ref().and_then(|c| c.raft.as_ref())));
        if let Some(c) = ckpt {
            start = c.replay_from;
            self.next_index = c.next_index;
            self.next_table_id = c.next_table_id;
            ends.extend(c.segments.iter().copied());
            for (desc, index) in c.tables {
                self.by_name.insert(desc.name.clone(), desc.table_id);
                self.tables.insert(desc.table_id, TableData { desc, index });
            }
        }

        // Segments before the replay point: known from the checkpoint.
        for &id in seg_ids.iter().filter(|&&id| id < start.segment()) {
            let Some(&end) = ends.get(&id) else {
                return Ok(Err(format!(
                    "segment {id} precedes the checkpoint but the checkpoint does not list it"
                )));
            };
            let map = self.disk.map(&segment_file_name(id))?;
            if let Err(msg) = check_sealed_segment(id, map.bytes(), end) {
                return Ok(Err(msg));
            }
            self.segments.insert(
                id,
                Segment {
                    map: Some(map),
                    end,
                    live: 0,
                    min_entry: 0,
                },
            );
        }

        // Replay.
        let replay: Vec<u32> = seg_ids
            .iter()
            .copied()
            .filter(|&id| id >= start.segment())
            .collect();
        let mut expected_index: Option<u64> = ckpt_expected(&self.tables, self.next_index, start);
        let mut cut_from: Option<u32> = None;
        'segments: for (i, &id) in replay.iter().enumerate() {
            let last = i + 1 == replay.len();
            let name = segment_file_name(id);
            let map = self.disk.map(&name)?;
            let bytes = map.bytes();
            let header = match SegmentHeader::decode(bytes) {
                Ok(h) => h,
                Err(e) if last => {
                    // A segment created just before a crash: its header never became
                    // durable. Nothing can be in it; it is recreated when needed.
                    if let Some(msg) = find_valid_record(bytes, SEGMENT_HEADER_LEN, 0) {
                        return Ok(Err(format!(
                            "segment {id}: header unreadable ({e}) but it holds records ({msg})"
                        )));
                    }
                    drop(map);
                    self.disk.remove(&name)?;
                    report.torn_tail = Some((id, 0, self.cfg.segment_size));
                    break;
                }
                Err(e) => return Ok(Err(format!("segment {id}: {e}"))),
            };
            if let Err(msg) = check_header_names(id, &header, bytes.len()) {
                return Ok(Err(msg));
            }
            // A replica's table ids move with applied entries only (the checkpoint has
            // them, and every DeleteTable is kept); a header's count may be ahead of the
            // replay point's.
            if !self.cfg.replicated {
                self.next_table_id = self.next_table_id.max(header.next_table_id);
            }
            if let Some(rr) = raft_replay.as_mut() {
                rr.segment_header(self, &header);
            }
            let mut pos = if id == start.segment() && start.offset() as usize >= SEGMENT_HEADER_LEN
            {
                start.offset() as usize
            } else {
                SEGMENT_HEADER_LEN
            };
            if pos > bytes.len() {
                return Ok(Err(format!(
                    "the checkpoint replays segment {id} from offset {pos}, past its {} bytes",
                    bytes.len()
                )));
            }
            if pos == SEGMENT_HEADER_LEN {
                match expected_index {
                    Some(e)
                        if e != header.first_index
                            && id.checked_sub(1).is_some_and(|p| seg_ids.contains(&p)) =>
                    {
                        return Ok(Err(format!(
                            "segment {id} starts at index {} but the log before it ends at {}",
                            header.first_index,
                            e - 1
                        )));
                    }
                    _ => expected_index = Some(header.first_index),
                }
            }
            report.segments_replayed += 1;
            // Records before a mid-segment replay point are not seen: unknown.
            let mut min_entry = if pos > SEGMENT_HEADER_LEN {
                0
            } else {
                u64::MAX
            };
            let end = loop {
                match parse_record(&bytes[pos..]) {
                    Ok(Parsed::Record(r)) => {
                        let want = expected_index.expect("set from the header");
                        if r.index != want {
                            // Segments are zero-filled before use and torn tails are
                            // zeroed, so no stale record can follow the last one.
                            return Ok(Err(format!(
                                "segment {id} offset {pos}: record index {} where {want} was expected",
                                r.index
                            )));
                        }
                        let applied = match raft_replay.as_mut() {
                            Some(rr) => {
                                let loc = Loc {
                                    segment: id,
                                    offset: pos as u32,
                                    len: r.encoded_len() as u32,
                                };
                                match rr.record(self, &r, loc) {
                                    Ok(raft::Flow::Continue) => Ok(()),
                                    Ok(raft::Flow::DiscardFromHere)
                                        if pos == SEGMENT_HEADER_LEN =>
                                    {
                                        cut_from = Some(id);
                                        break 'segments;
                                    }
                                    Ok(raft::Flow::DiscardFromHere) => {
                                        Err("a snapshot record inside a segment".to_string())
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                            None => self.apply_replayed(&r, id, pos as u32, &mut orphans),
                        };
                        if let Err(msg) = applied {
                            return Ok(Err(format!("segment {id} offset {pos}: {msg}")));
                        }
                        if r.entry != 0 {
                            min_entry = min_entry.min(r.entry);
                        }
                        expected_index = Some(want + 1);
                        report.records_replayed += 1;
                        report.bytes_replayed += r.encoded_len() as u64;
                        pos += r.encoded_len();
                    }
                    Ok(Parsed::End) => {
                        let rest = &bytes[pos..];
                        if rest.iter().all(|&b| b == 0) {
                            break pos;
                        }
                        if !last {
                            return Ok(Err(format!(
                                "segment {id} offset {pos}: data after the end of the segment's records"
                            )));
                        }
                        // Zeros then bytes: a write that reached the device out of order.
                        match self.cut_torn_tail(&name, bytes, pos, expected_index, report)? {
                            Ok(()) => break pos,
                            Err(msg) => return Ok(Err(format!("segment {id}: {msg}"))),
                        }
                    }
                    Err(bad) => {
                        if !last {
                            return Ok(Err(format!(
                                "segment {id} offset {pos}: {bad} in a sealed segment"
                            )));
                        }
                        match self.cut_torn_tail(&name, bytes, pos, expected_index, report)? {
                            Ok(()) => break pos,
                            Err(msg) => {
                                return Ok(Err(format!("segment {id} offset {pos}: {bad}; {msg}")));
                            }
                        }
                    }
                }
            };
            self.segments.insert(
                id,
                Segment {
                    map: Some(map),
                    end: end as u32,
                    live: 0,
                    min_entry,
                },
            );
        }
        if let Some(e) = expected_index {
            self.next_index = self.next_index.max(e);
        }
        if let Some(id) = cut_from {
            for &later in replay.iter().filter(|&&s| s >= id) {
                self.disk.remove(&segment_file_name(later))?;
            }
            report.discarded_snapshot = Some(id);
        }
        if let Some(rr) = raft_replay
            && let Err(msg) = rr.finish(self)
        {
            return Ok(Err(msg));
        }
        if let Some((&id, _)) = orphans.iter().next() {
            return Ok(Err(format!(
                "the log holds records of table id {id}, which no record creates"
            )));
        }
        // Live bytes, and every entry must point at a whole record within its segment's
        // records, long enough for its key (what a checkpoint says is checked here, without
        // reading the records; a read checks the one record it touches).
        for t in self.tables.values() {
            for (key, slot) in t.index.range(Bound::Unbounded, Bound::Unbounded) {
                let Some(seg) = self.segments.get_mut(&slot.loc.segment) else {
                    return Ok(Err(format!(
                        "table {} has an item in segment {}, which does not exist",
                        t.desc.name, slot.loc.segment
                    )));
                };
                let Loc {
                    segment,
                    offset,
                    len,
                } = slot.loc;
                if (offset as usize) < SEGMENT_HEADER_LEN
                    || offset as u64 + len as u64 > seg.end as u64
                    || (len as usize) < RECORD_HEADER_LEN + key.len()
                    || len as usize > RECORD_MAX_BYTES
                {
                    return Ok(Err(format!(
                        "table {} has an item at segment {segment} offset {offset} ({len} bytes) that is not a record within the segment's {} bytes of records",
                        t.desc.name, seg.end
                    )));
                }
                seg.live += len as u64;
            }
        }
        for t in self.tables.values_mut() {
            t.index.set_key_bytes_max(self.cfg.index_key_bytes_max);
        }
        match self.segments.last_key_value() {
            Some((&id, seg)) => {
                self.active = id;
                self.written = LogPos::new(id, seg.end);
                self.synced = self.written;
            }
            None => self.roll(),
        }
        Ok(Ok(()))
    }

    /// A bad record (or stray bytes) at `pos` of the last segment: a torn tail if no
    /// valid record follows it, which is then erased; otherwise corruption.
    pub(super) fn cut_torn_tail(
        &mut self,
        name: &str,
        bytes: &[u8],
        pos: usize,
        expected_index: Option<u64>,
        report: &mut RecoveryReport,
    ) -> io::Result<Result<(), String>> {
        if let Some(msg) = find_valid_record(bytes, pos + 1, expected_index.unwrap_or(0)) {
            return Ok(Err(format!(
                "a damaged record is followed by a valid one ({msg}): corruption in the middle of the log, not a torn tail"
            )));
        }
        let dirty_end = bytes.iter().rposition(|&b| b != 0).map_or(pos, |i| i + 1);
        let len = (dirty_end - pos) as u64;
        self.disk.zero_range_sync(name, pos as u64, len)?;
        let id = parse_segment_file_name(name).expect("a segment name");
        report.torn_tail = Some((id, pos as u32, len));
        Ok(Ok(()))
    }

    /// Applies one replayed record to the catalog and indexes.
    pub(super) fn apply_replayed(
        &mut self,
        r: &Record<'_>,
        segment: u32,
        offset: u32,
        orphans: &mut HashMap<u32, Index>,
    ) -> Result<(), String> {
        let loc = Loc {
            segment,
            offset,
            len: r.encoded_len() as u32,
        };
        match r.kind {
            RecordKind::Put | RecordKind::Delete => {
                if r.key.len() < 8 {
                    return Err("a data record with a key under 8 bytes".into());
                }
                let index = match self.tables.get_mut(&r.table_id) {
                    Some(t) => &mut t.index,
                    // Records of a table whose CreateTable record was relocated by
                    // compaction to a later position: kept aside until it is replayed.
                    None => orphans.entry(r.table_id).or_default(),
                };
                if r.kind == RecordKind::Put {
                    if !index.has_room_for(r.key) {
                        return Err(format!(
                            "table id {} holds more keys than one index can address ({} bytes)",
                            r.table_id,
                            index.key_bytes()
                        ));
                    }
                    index.insert(
                        r.key,
                        Slot {
                            loc,
                            size_bytes: r.size_bytes,
                        },
                    );
                } else {
                    index.remove(r.key);
                }
            }
            RecordKind::CreateTable => {
                let desc = TableDesc::decode(r.value).map_err(|e| e.to_string())?;
                if desc.table_id != r.table_id {
                    return Err("CreateTable record names two table ids".into());
                }
                if self.tables.contains_key(&desc.table_id) {
                    // A relocated copy of a record replayed before: nothing new.
                    if r.flags & FLAG_RELOCATED == 0 {
                        return Err(format!("table id {} created twice", desc.table_id));
                    }
                } else {
                    if let Some(&other) = self.by_name.get(&desc.name) {
                        // Ids grow: a newer table of the same name means the older one
                        // was deleted — its DeleteTable record may have been relocated
                        // by compaction to after this record.
                        if other > desc.table_id {
                            return Err(format!(
                                "table {} created as id {} after id {other}",
                                desc.name, desc.table_id
                            ));
                        }
                        self.tables.remove(&other);
                    }
                    let index = orphans.remove(&desc.table_id).unwrap_or_default();
                    self.by_name.insert(desc.name.clone(), desc.table_id);
                    self.tables.insert(desc.table_id, TableData { desc, index });
                }
                self.next_table_id = self.next_table_id.max(r.table_id + 1);
            }
            RecordKind::RaftEntry
            | RecordKind::HardState
            | RecordKind::ConfState
            | RecordKind::Snapshot => {
                return Err(format!(
                    "a Raft record ({:?}) in a single-node log: this data directory belongs to a replicated node",
                    r.kind
                ));
            }
            RecordKind::DeleteTable => {
                orphans.remove(&r.table_id);
                if let Some(t) = self.tables.remove(&r.table_id) {
                    self.by_name.remove(&t.desc.name);
                }
                self.next_table_id = self.next_table_id.max(r.table_id + 1);
            }
        }
        Ok(())
    }
}

/// A segment header must name its file's segment id and size.
fn check_header_names(id: u32, header: &SegmentHeader, file_len: usize) -> Result<(), String> {
    if header.segment_id != id || header.segment_size != file_len as u64 {
        return Err(format!(
            "segment {id}: header names segment {} of {} bytes, file has {file_len} bytes",
            header.segment_id, header.segment_size
        ));
    }
    Ok(())
}

/// A segment before the replay point, as the checkpoint describes it: its header must
/// name it and its size, and `end` (the end of its records) must lie within it.
fn check_sealed_segment(id: u32, bytes: &[u8], end: u32) -> Result<(), String> {
    let header = SegmentHeader::decode(bytes).map_err(|e| format!("segment {id}: {e}"))?;
    check_header_names(id, &header, bytes.len())?;
    if (end as usize) < SEGMENT_HEADER_LEN || end as usize > bytes.len() {
        return Err(format!(
            "the checkpoint says segment {id}'s records end at {end}, outside its {} bytes",
            bytes.len()
        ));
    }
    Ok(())
}

/// The index the record at `start` must carry when replay begins at a checkpoint.
fn ckpt_expected(tables: &HashMap<u32, TableData>, next_index: u64, start: LogPos) -> Option<u64> {
    // With a checkpoint (tables loaded or a replay point past a header) the next record
    // carries `next_index`; without one the first segment's header says.
    (!tables.is_empty() || start.offset() as usize >= SEGMENT_HEADER_LEN).then_some(next_index)
}

/// Looks for a whole record at or after `from` carrying an index ≥ `min_index`
/// (damage followed by such a record is corruption, not a torn tail).
fn find_valid_record(bytes: &[u8], from: usize, min_index: u64) -> Option<String> {
    let mut pos = from;
    while pos + RECORD_HEADER_LEN <= bytes.len() {
        if bytes[pos] == 0 && bytes[pos..pos + RECORD_HEADER_LEN].iter().all(|&b| b == 0) {
            // Skip a run of zeros quickly.
            match bytes[pos..].iter().position(|&b| b != 0) {
                Some(n) => pos += n.saturating_sub(RECORD_HEADER_LEN - 1).max(1),
                None => return None,
            }
            continue;
        }
        if let Ok(Parsed::Record(r)) = parse_record(&bytes[pos..])
            && r.index >= min_index
        {
            return Some(format!("record index {} at offset {pos}", r.index));
        }
        pos += 1;
    }
    None
}
