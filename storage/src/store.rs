//! A shard's durable store: one segmented append-only log holding every table's records,
//! an in-memory index per table mapping key → record location, the catalog, checkpoints
//! and compaction. Layout: docs/log-format.md.
//!
//! The store is synchronous and does no write I/O itself. Writes append records to
//! in-memory *pending* chunks and update the index at once (so later operations see
//! them, in log order); a driver (`flush::run_job`, from the shard's executor or a test)
//! takes one chunk at a time with [`Store::next_flush`], writes and syncs it, and reports
//! back with [`Store::finish_flush`]. Whatever arrived while one sync ran is the next
//! chunk: group commit.
//!
//! Invariants:
//! * log order is apply order: a record's index is its predecessor's + 1, and positions
//!   (`LogPos`) grow with it;
//! * `durable ≤ written ≤ appended`; bytes below `written` are in the files and readable
//!   through the segment maps, bytes above are in `inflight` or `pending`;
//! * a write is acknowledged only once `durable` covers its record (`Durability::Sync`);
//!   a read that would return (or hide, for a delete) a record above `durable` waits for
//!   it too, so no reader ever sees a state a crash could take back;
//! * after a failed sync the store is poisoned: it never acknowledges another write,
//!   never retries the sync, and refuses reads (the page cache may hold data the device
//!   lost);
//! * every index entry points to a Put record in a present segment; `live` of a segment
//!   is the sum of the lengths of the records index entries point to.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::ops::Bound;
use std::time::{Duration, Instant};

use crate::catalog::TableDesc;
use crate::checkpoint::{self, Checkpoint};
use crate::disk::{Disk, FileMap};
use crate::format::{
    FLAG_RELOCATED, Parsed, RECORD_HEADER_LEN, Record, RecordKind, SEGMENT_HEADER_LEN,
    SegmentHeader, checkpoint_file_name, encode_record, parse_checkpoint_file_name, parse_record,
    parse_segment_file_name, segment_file_name,
};
use crate::index::{Index, Loc, Slot};
use crate::limits::{
    KEY_ARENA_LIVE_MAX_BYTES, KEY_MAX_BYTES, RECORD_MAX_BYTES, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN,
    UNWRITTEN_MAX_BYTES,
};

/// A position in a shard's log: segment id in the high 32 bits, byte offset in the low
/// 32. Positions order like the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPos(pub u64);

impl LogPos {
    pub fn new(segment: u32, offset: u32) -> LogPos {
        LogPos(((segment as u64) << 32) | offset as u64)
    }
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
    /// The position just after the record at `loc`.
    pub fn end_of(loc: Loc) -> LogPos {
        LogPos::new(loc.segment, loc.offset + loc.len)
    }
}

/// Which watermark a waiter waits for: `Store::durable_pos` (replies) or
/// `Store::settled_pos` (checkpoints, dropping compacted segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Durable,
    Settled,
}

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After fdatasync covers its record (the default).
    Sync,
    /// At once; records reach the page cache in the background and are never synced.
    /// A machine crash loses recent writes; a process crash loses what was not yet
    /// written. For benchmarking the engine and cache alone.
    None,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub segment_size: u64,
    pub durability: Durability,
    /// Take a checkpoint after this many bytes of log since the last one.
    pub checkpoint_every_bytes: u64,
    /// Compact a sealed segment once this fraction of its bytes is dead.
    pub compact_dead_ratio: f64,
    /// The term written into records (replication will advance it).
    pub term: u64,
    /// Live key bytes one table's index may hold before new keys are refused
    /// (`StoreError::IndexFull`): the arena's bound `limits::KEY_ARENA_LIVE_MAX_BYTES`, or
    /// less (tests).
    pub index_key_bytes_max: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            segment_size: 64 << 20,
            durability: Durability::Sync,
            checkpoint_every_bytes: 512 << 20,
            compact_dead_ratio: 0.5,
            term: 1,
            index_key_bytes_max: KEY_ARENA_LIVE_MAX_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A sync failed: the shard stopped and acknowledges nothing more.
    #[error(
        "the shard's log is stopped after a failed sync ({0}); writes not yet acknowledged were not applied"
    )]
    Poisoned(String),
    /// Recovery found damage it cannot repair: the shard serves nothing.
    #[error("the shard's log is corrupt: {0}")]
    Corrupt(String),
    #[error("a record of {0} bytes exceeds the log's record limit")]
    TooLarge(usize),
    #[error("a key of {0} bytes exceeds the log's key limit of {KEY_MAX_BYTES}")]
    KeyTooLong(usize),
    /// A new key would take the table's index past what it can address.
    #[error(
        "the index of table id {table} holds {key_bytes} bytes of keys, the most one shard's index of a table can hold ({max})"
    )]
    IndexFull {
        table: u32,
        key_bytes: u64,
        max: u64,
    },
    #[error("no table with id {0} on this shard")]
    NoTable(u32),
    #[error("table {0} already exists")]
    TableExists(String),
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Record bytes appended for client writes and DDL.
    pub client_bytes: u64,
    /// Record bytes appended by compaction (relocated copies).
    pub relocated_bytes: u64,
    /// Bytes handed to the disk (records and segment headers).
    pub written_bytes: u64,
    pub flushes: u64,
    pub syncs: u64,
    pub segments_created: u64,
    pub segments_compacted: u64,
    pub checkpoints: u64,
    /// Corruption found by recovery (0 or 1 per open).
    pub corruptions: u64,
}

/// What `open` found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub checkpoint: Option<String>,
    /// Checkpoints that failed to decode (skipped for an older one or a full replay).
    pub bad_checkpoints: Vec<String>,
    pub segments_replayed: u32,
    pub bytes_replayed: u64,
    pub records_replayed: u64,
    /// (segment, offset, bytes zeroed) of a torn tail that was cut off.
    pub torn_tail: Option<(u32, u32, u64)>,
    pub corruption: Option<String>,
    pub items: u64,
    pub elapsed: Duration,
}

/// One table's slice on this shard.
#[derive(Debug)]
pub struct TableData {
    pub desc: TableDesc,
    pub index: Index,
}

#[derive(Debug)]
struct Segment<M> {
    /// `None` until the file exists (its first chunk is being flushed).
    map: Option<M>,
    /// End of data: header + records. Final once the segment is sealed.
    end: u32,
    /// Bytes of records that index entries point to.
    live: u64,
}

/// Bytes appended to one segment that the disk does not have yet.
#[derive(Debug)]
struct Chunk {
    segment: u32,
    start: u32,
    bytes: Vec<u8>,
    /// The chunk begins a new segment: create the file first.
    create: bool,
}

impl Chunk {
    fn end(&self) -> LogPos {
        LogPos::new(self.segment, self.start + self.bytes.len() as u32)
    }

    fn get(&self, loc: Loc) -> Option<&[u8]> {
        if loc.segment != self.segment || loc.offset < self.start {
            return None;
        }
        let at = (loc.offset - self.start) as usize;
        self.bytes.get(at..at + loc.len as usize)
    }
}

/// A unit of work for the driver: create `file` (a new segment), write `bytes` at
/// `offset` of it (when not empty), then fdatasync each of `sync_files` (in any order:
/// the job is done when all are).
#[derive(Debug)]
pub struct FlushJob {
    pub file: String,
    pub create_len: Option<u64>,
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub sync_files: Vec<String>,
}

/// The job being run by the driver.
#[derive(Debug)]
struct Inflight {
    chunk: Option<Chunk>,
    sync: bool,
}

/// A checkpoint ready to be written once the log is durable up to `replay_from`.
#[derive(Debug)]
pub struct CheckpointJob {
    pub file: String,
    pub bytes: Vec<u8>,
    pub replay_from: LogPos,
}

/// One item as a read returns it.
#[derive(Debug, Clone, Copy)]
pub struct ItemRef<'a> {
    pub key: &'a [u8],
    /// The item bytes as the client sent them (a slice of the log).
    pub bytes: &'a [u8],
    pub size_bytes: u32,
    /// The end of its record: the read may only be answered once this is durable.
    pub end: LogPos,
    /// Where its record is (see [`Store::try_item_at`]).
    pub slot: Slot,
}

pub struct Store<D: Disk> {
    disk: D,
    cfg: StoreConfig,
    segments: BTreeMap<u32, Segment<D::Map>>,
    active: u32,
    next_index: u64,
    next_table_id: u32,
    pending: VecDeque<Chunk>,
    inflight: Option<Inflight>,
    written: LogPos,
    /// Everything before this is covered by a completed fdatasync.
    synced: LogPos,
    /// Segments written since their last sync (`Durability::None` only).
    unsynced: BTreeSet<u32>,
    sync_requested: bool,
    tables: HashMap<u32, TableData>,
    by_name: HashMap<String, u32>,
    /// Deletes whose tombstones are not durable yet: a read of the key must wait.
    pending_deletes: HashMap<(u32, Box<[u8]>), LogPos>,
    failure: Option<StoreError>,
    stats: StoreStats,
    appended_at_checkpoint: u64,
    checkpoint_file: Option<String>,
    checkpoint_running: bool,
    /// Replay segments of the newest durable checkpoint and of the one being written:
    /// never compacted, or recovery could not use those checkpoints (dropping the segment
    /// would also drop tombstones after the replay point that the checkpoint predates).
    checkpoint_segments: [Option<u32>; 2],
    /// A compaction dropped a segment: checkpoint at the next chance, so recovery need
    /// not replay the relocation records (and the checkpoint stops naming the segment).
    checkpoint_requested: bool,
}

impl<D: Disk> std::fmt::Debug for Store<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("active", &self.active)
            .field("next_index", &self.next_index)
            .field("tables", &self.tables.len())
            .field("synced", &self.synced)
            .field("failure", &self.failure)
            .finish()
    }
}

fn io_text(e: &io::Error) -> String {
    e.to_string()
}

/// The item bytes of the Put record `rec` (after its header and key), checked against
/// what the index says it holds: a key of `key_len` bytes when the caller knows it.
/// Recovery checked that every location lies within its segment's records; this checks
/// the one record a read touches (its header is read anyway), so a checkpoint that named
/// the wrong bytes yields a typed error, never a panic or another record's bytes.
fn item_of_record(rec: &[u8], loc: Loc, key_len: Option<usize>) -> Result<&[u8], StoreError> {
    let header = rec.get(..RECORD_HEADER_LEN);
    let stored_key_len = header.map(|h| u16::from_le_bytes([h[10], h[11]]) as usize);
    let consistent = match (header, stored_key_len) {
        (Some(h), Some(k)) => {
            h[8] == RecordKind::Put as u8
                && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == loc.len
                && key_len.is_none_or(|want| want == k)
                && RECORD_HEADER_LEN + k <= rec.len()
        }
        _ => false,
    };
    match stored_key_len {
        Some(k) if consistent => Ok(&rec[RECORD_HEADER_LEN + k..]),
        _ => Err(StoreError::Corrupt(format!(
            "the index names a Put record at segment {} offset {} ({} bytes) that is not one",
            loc.segment, loc.offset, loc.len
        ))),
    }
}

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
    fn remove_stale_checkpoints(&mut self) -> io::Result<()> {
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
    fn recover(&mut self, report: &mut RecoveryReport) -> io::Result<Result<(), String>> {
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
        for (i, &id) in replay.iter().enumerate() {
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
            self.next_table_id = self.next_table_id.max(header.next_table_id);
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
                        if let Err(msg) = self.apply_replayed(&r, id, pos as u32, &mut orphans) {
                            return Ok(Err(format!("segment {id} offset {pos}: {msg}")));
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
                },
            );
        }
        if let Some(e) = expected_index {
            self.next_index = self.next_index.max(e);
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
    fn cut_torn_tail(
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
    fn apply_replayed(
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

    // ---------------------------------------------------------------------------------
    // Appending

    /// `Ok` unless the store failed (a poisoning fsync error) or found corruption: then
    /// it serves nothing, and callers answering from elsewhere (a cache) must not either.
    pub fn check_usable(&self) -> Result<(), StoreError> {
        match &self.failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Starts segment `active + 1`: its header is the first bytes of its first chunk.
    fn roll(&mut self) {
        let id = self.active + 1;
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        SegmentHeader {
            segment_id: id,
            segment_size: self.cfg.segment_size,
            first_index: self.next_index,
            next_table_id: self.next_table_id,
        }
        .encode(&mut header);
        self.segments.insert(
            id,
            Segment {
                map: None,
                end: SEGMENT_HEADER_LEN as u32,
                live: 0,
            },
        );
        self.pending.push_back(Chunk {
            segment: id,
            start: 0,
            bytes: header,
            create: true,
        });
        self.active = id;
        self.stats.segments_created += 1;
    }

    /// Appends one record (its `index` is assigned here) and returns where it went.
    fn append(&mut self, mut r: Record<'_>, relocated: bool) -> Result<Loc, StoreError> {
        self.check_usable()?;
        if r.key.len() > KEY_MAX_BYTES {
            return Err(StoreError::KeyTooLong(r.key.len()));
        }
        let len = r.encoded_len();
        if len > self.record_max_len() {
            return Err(StoreError::TooLarge(len));
        }
        let end = self.segments[&self.active].end as u64;
        if end + len as u64 > self.cfg.segment_size {
            self.roll();
        }
        let segment = self.active;
        let offset = self.segments[&segment].end;
        let chunk = match self.pending.back_mut() {
            Some(c) if c.segment == segment && c.end() == LogPos::new(segment, offset) => c,
            _ => {
                self.pending.push_back(Chunk {
                    segment,
                    start: offset,
                    bytes: Vec::new(),
                    create: false,
                });
                self.pending.back_mut().expect("just pushed")
            }
        };
        r.index = self.next_index;
        r.term = self.cfg.term;
        if relocated {
            r.flags |= FLAG_RELOCATED;
        }
        encode_record(&r, &mut chunk.bytes);
        self.next_index += 1;
        self.segments.get_mut(&segment).expect("active exists").end += len as u32;
        if relocated {
            self.stats.relocated_bytes += len as u64;
        } else {
            self.stats.client_bytes += len as u64;
        }
        Ok(Loc {
            segment,
            offset,
            len: len as u32,
        })
    }

    /// The largest record this log takes: `RECORD_MAX_BYTES`, or less when segments are
    /// configured smaller than one such record (tests).
    pub fn record_max_len(&self) -> usize {
        RECORD_MAX_BYTES.min(self.cfg.segment_size as usize - SEGMENT_HEADER_LEN)
    }

    fn table_mut(&mut self, table: u32) -> Result<&mut TableData, StoreError> {
        self.tables
            .get_mut(&table)
            .ok_or(StoreError::NoTable(table))
    }

    /// Marks the record at `loc` dead (its index entry was replaced or removed).
    fn release(&mut self, loc: Loc) {
        let seg = self
            .segments
            .get_mut(&loc.segment)
            .expect("index entries point into present segments");
        seg.live -= loc.len as u64;
    }

    /// Inserts or replaces an item. Returns where its record ends (wait for it to be
    /// durable before acknowledging) and the replaced item's slot, if any, whose bytes
    /// stay readable through [`Store::item_at`] until the next write.
    pub fn put(
        &mut self,
        table: u32,
        key: &[u8],
        item: &[u8],
        size_bytes: u32,
    ) -> Result<(LogPos, Option<Slot>), StoreError> {
        let (slot, old) = self.put_slot(table, key, item, size_bytes)?;
        Ok((LogPos::end_of(slot.loc), old))
    }

    /// Fails with `IndexFull` unless all of `keys` (distinct keys of one table) can be
    /// put together: a batch checks this before applying any of its writes, so it is
    /// refused whole rather than half applied.
    pub fn check_room<'k>(
        &self,
        table: u32,
        keys: impl IntoIterator<Item = &'k [u8]> + Clone,
    ) -> Result<(), StoreError> {
        let index = &self.table(table)?.index;
        if index.has_room_for_all(keys) {
            return Ok(());
        }
        Err(StoreError::IndexFull {
            table,
            key_bytes: index.key_bytes(),
            max: self.cfg.index_key_bytes_max.min(KEY_ARENA_LIVE_MAX_BYTES),
        })
    }

    /// Like [`Store::put`], returning the new record's slot (its end is
    /// `LogPos::end_of(slot.loc)`): what a cache keeps to find the item's bytes again.
    pub fn put_slot(
        &mut self,
        table: u32,
        key: &[u8],
        item: &[u8],
        size_bytes: u32,
    ) -> Result<(Slot, Option<Slot>), StoreError> {
        // Refused before the record exists: after the append the write could not be
        // taken back, and the index must take the key.
        self.check_room(table, [key])?;
        let loc = self.append(
            Record {
                kind: RecordKind::Put,
                flags: 0,
                table_id: table,
                term: 0,
                index: 0,
                size_bytes,
                key,
                value: item,
            },
            false,
        )?;
        let old = self
            .table_mut(table)?
            .index
            .insert(key, Slot { loc, size_bytes });
        self.segments.get_mut(&loc.segment).expect("active").live += loc.len as u64;
        if let Some(old) = old {
            self.release(old.loc);
        }
        if !self.pending_deletes.is_empty() {
            self.pending_deletes.remove(&(table, Box::from(key)));
        }
        Ok((Slot { loc, size_bytes }, old))
    }

    /// Deletes an item. Returns the position to wait for (the tombstone's end, or an
    /// earlier delete's that is not durable yet) and the removed item's slot.
    pub fn delete(
        &mut self,
        table: u32,
        key: &[u8],
    ) -> Result<(Option<LogPos>, Option<Slot>), StoreError> {
        self.check_usable()?;
        let Some(old) = self.table_mut(table)?.index.get(key) else {
            let earlier = self.pending_deletes.get(&(table, Box::from(key))).copied();
            return Ok((earlier.and_then(|p| self.until_durable(p)), None));
        };
        let loc = self.append(
            Record {
                kind: RecordKind::Delete,
                flags: 0,
                table_id: table,
                term: 0,
                index: 0,
                size_bytes: 0,
                key,
                value: &[],
            },
            false,
        )?;
        self.table_mut(table)?.index.remove(key);
        self.release(old.loc);
        let end = LogPos::end_of(loc);
        if self.cfg.durability == Durability::Sync {
            self.pending_deletes.insert((table, key.into()), end);
        }
        Ok((Some(end), Some(old)))
    }

    /// Creates a table; `desc.table_id` is assigned here. Returns the id and the
    /// position to wait for.
    pub fn create_table(&mut self, mut desc: TableDesc) -> Result<(u32, LogPos), StoreError> {
        self.check_usable()?;
        if self.by_name.contains_key(&desc.name) {
            return Err(StoreError::TableExists(desc.name));
        }
        desc.table_id = self.next_table_id;
        let value = desc.encode();
        let loc = self.append(
            Record {
                kind: RecordKind::CreateTable,
                flags: 0,
                table_id: desc.table_id,
                term: 0,
                index: 0,
                size_bytes: 0,
                key: &[],
                value: &value,
            },
            false,
        )?;
        self.next_table_id += 1;
        let id = desc.table_id;
        self.by_name.insert(desc.name.clone(), id);
        self.tables.insert(
            id,
            TableData {
                desc,
                index: {
                    let mut index = Index::new();
                    index.set_key_bytes_max(self.cfg.index_key_bytes_max);
                    index
                },
            },
        );
        Ok((id, LogPos::end_of(loc)))
    }

    /// Deletes a table and all its items. Returns the position to wait for.
    pub fn delete_table(&mut self, table: u32) -> Result<LogPos, StoreError> {
        self.table_mut(table)?;
        let loc = self.append(
            Record {
                kind: RecordKind::DeleteTable,
                flags: 0,
                table_id: table,
                term: 0,
                index: 0,
                size_bytes: 0,
                key: &[],
                value: &[],
            },
            false,
        )?;
        let t = self.tables.remove(&table).expect("checked above");
        self.by_name.remove(&t.desc.name);
        for (_, slot) in t.index.range(Bound::Unbounded, Bound::Unbounded) {
            self.segments
                .get_mut(&slot.loc.segment)
                .expect("present")
                .live -= slot.loc.len as u64;
        }
        self.pending_deletes.retain(|(t, _), _| *t != table);
        Ok(LogPos::end_of(loc))
    }

    // ---------------------------------------------------------------------------------
    // Reading

    /// The bytes of the record at `loc` (which must be a record this store wrote).
    fn record_at(&self, loc: Loc) -> &[u8] {
        self.try_record_at(loc)
            .unwrap_or_else(|| panic!("record {loc:?} is in no present segment"))
    }

    /// The bytes of the record at `loc` if its segment is still present (`loc` must be a
    /// record this store wrote).
    fn try_record_at(&self, loc: Loc) -> Option<&[u8]> {
        if LogPos::new(loc.segment, loc.offset) >= self.written {
            let found = self
                .inflight
                .iter()
                .filter_map(|i| i.chunk.as_ref())
                .chain(self.pending.iter())
                .find_map(|c| c.get(loc));
            return Some(
                found.unwrap_or_else(|| panic!("record {loc:?} is neither written nor pending")),
            );
        }
        let map = self
            .segments
            .get(&loc.segment)?
            .map
            .as_ref()
            .expect("a written segment is mapped");
        Some(&map.bytes()[loc.offset as usize..(loc.offset + loc.len) as usize])
    }

    /// The item bytes of the Put record in `slot`, if its segment still exists: a slot
    /// kept outside the index (the shard's item cache) may name a record that compaction
    /// copied elsewhere and whose segment it then dropped. Segment numbers are never
    /// reused, so a present segment still holds exactly the record the slot named.
    pub fn try_item_at(&self, slot: Slot) -> Option<Result<&[u8], StoreError>> {
        self.try_record_at(slot.loc)
            .map(|rec| item_of_record(rec, slot.loc, None))
    }

    /// The item bytes of the Put record in `slot` (valid until the next write).
    pub fn item_at(&self, slot: Slot) -> Result<&[u8], StoreError> {
        item_of_record(self.record_at(slot.loc), slot.loc, None)
    }

    /// The item bytes of the Put record of `key` in `slot`.
    fn item_of(&self, key: &[u8], slot: Slot) -> Result<&[u8], StoreError> {
        item_of_record(self.record_at(slot.loc), slot.loc, Some(key.len()))
    }

    pub fn table_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn table(&self, table: u32) -> Result<&TableData, StoreError> {
        self.tables.get(&table).ok_or(StoreError::NoTable(table))
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableData> {
        self.tables.values()
    }

    /// Looks up one item. `Ok((item, wait))`: answer once `wait` (if any) is durable.
    pub fn get<'a>(
        &'a self,
        table: u32,
        key: &'a [u8],
    ) -> Result<(Option<ItemRef<'a>>, Option<LogPos>), StoreError> {
        self.check_usable()?;
        let t = self.table(table)?;
        match t.index.get(key) {
            Some(slot) => {
                let end = LogPos::end_of(slot.loc);
                let item = ItemRef {
                    key,
                    bytes: self.item_of(key, slot)?,
                    size_bytes: slot.size_bytes,
                    end,
                    slot,
                };
                Ok((Some(item), self.until_durable(end)))
            }
            None if self.pending_deletes.is_empty() => Ok((None, None)),
            None => {
                let wait = self.pending_deletes.get(&(table, Box::from(key))).copied();
                Ok((None, wait.and_then(|p| self.until_durable(p))))
            }
        }
    }

    /// Items with keys within the bounds, ascending (`.rev()` for descending). An item
    /// whose record is not what the index says is an `Err` (see `item_of_record`).
    pub fn range<'a>(
        &'a self,
        table: u32,
        lower: Bound<&'a [u8]>,
        upper: Bound<&'a [u8]>,
    ) -> Result<impl DoubleEndedIterator<Item = Result<ItemRef<'a>, StoreError>> + 'a, StoreError>
    {
        self.check_usable()?;
        let t = self.table(table)?;
        Ok(t.index.range(lower, upper).map(move |(key, slot)| {
            Ok(ItemRef {
                key,
                bytes: self.item_of(key, slot)?,
                size_bytes: slot.size_bytes,
                end: LogPos::end_of(slot.loc),
                slot,
            })
        }))
    }

    /// The position a range read that returned items ending at most at `max_end` must
    /// wait for: deletes not yet durable in the table could be taken back by a crash, so
    /// while there are any the read waits for everything appended so far.
    pub fn range_wait(&self, table: u32, max_end: LogPos) -> Option<LogPos> {
        let durable = self.durable_pos();
        if self.pending_deletes.keys().any(|(t, _)| *t == table) {
            let all = self.appended_pos();
            return (all > durable).then_some(all);
        }
        (max_end > durable).then_some(max_end)
    }

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

    // ---------------------------------------------------------------------------------
    // Checkpoints

    /// Whether enough log has been appended since the last checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        !self.checkpoint_running
            && self.failure.is_none()
            && (self.checkpoint_requested
                || self.stats.client_bytes + self.stats.relocated_bytes
                    - self.appended_at_checkpoint
                    >= self.cfg.checkpoint_every_bytes)
    }

    /// Serializes the catalog and indexes as of now. Write the job's bytes once the log
    /// is durable up to `replay_from`, then call `checkpoint_written`.
    pub fn begin_checkpoint(&mut self) -> CheckpointJob {
        self.checkpoint_running = true;
        self.checkpoint_requested = false;
        self.checkpoint_segments[1] = Some(self.active);
        self.appended_at_checkpoint = self.stats.client_bytes + self.stats.relocated_bytes;
        let replay_from = self.appended_pos();
        let segments: Vec<(u32, u32)> = self.segments.iter().map(|(&id, s)| (id, s.end)).collect();
        let mut tables: Vec<&TableData> = self.tables.values().collect();
        tables.sort_by_key(|t| t.desc.table_id);
        let bytes = checkpoint::encode(
            replay_from,
            self.next_index,
            self.next_table_id,
            &segments,
            tables.iter().map(|t| (&t.desc, &t.index)),
        );
        CheckpointJob {
            file: checkpoint_file_name(self.next_index - 1),
            bytes,
            replay_from,
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
        if self.failure.is_some() {
            return None;
        }
        self.segments
            .iter()
            .filter(|&(&id, s)| id != self.active && s.map.is_some())
            .filter(|&(&id, _)| !self.checkpoint_segments.contains(&Some(id)))
            .filter(|&(&id, _)| LogPos::new(id + 1, 0) <= self.settled_pos())
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
                let keep = match r.kind {
                    RecordKind::Put => {
                        table.and_then(|t| t.index.get(r.key)).map(|s| s.loc) == Some(loc)
                    }
                    // A tombstone still hides a put in an older segment from a full
                    // replay; with no older segment it hides nothing.
                    RecordKind::Delete => {
                        older_exists && table.is_some_and(|t| t.index.get(r.key).is_none())
                    }
                    RecordKind::CreateTable => table.is_some(),
                    RecordKind::DeleteTable => older_exists,
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
        let seg = self
            .segments
            .remove(&segment)
            .expect("segment to drop exists");
        assert_eq!(seg.live, 0, "segment {segment} dropped with live records");
        assert_ne!(segment, self.active, "the active segment is never dropped");
        drop(seg);
        self.stats.segments_compacted += 1;
        self.checkpoint_requested = true;
        self.disk.remove(&segment_file_name(segment))
    }

    // ---------------------------------------------------------------------------------
    // Introspection

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// (segment id, end of data, live bytes) of every segment.
    pub fn segments(&self) -> Vec<(u32, u32, u64)> {
        self.segments
            .iter()
            .map(|(&id, s)| (id, s.end, s.live))
            .collect()
    }

    /// Heap bytes of all indexes (for the memory-per-item figure).
    pub fn index_heap_bytes(&self) -> usize {
        self.tables.values().map(|t| t.index.heap_bytes()).sum()
    }

    /// Checks the invariants in the module doc (tests and debug builds).
    pub fn check_invariants(&self) {
        assert!(self.synced <= self.written && self.written <= self.appended_pos());
        assert!(self.durable_pos() <= self.appended_pos());
        let mut live: HashMap<u32, u64> = HashMap::new();
        for t in self.tables.values() {
            for (key, slot) in t.index.range(Bound::Unbounded, Bound::Unbounded) {
                *live.entry(slot.loc.segment).or_default() += slot.loc.len as u64;
                let Ok(Parsed::Record(r)) = parse_record(self.record_at(slot.loc)) else {
                    panic!("index entry {slot:?} does not point at a record");
                };
                assert_eq!(
                    (r.kind, r.key, r.table_id),
                    (RecordKind::Put, key, t.desc.table_id)
                );
            }
        }
        for (id, s) in &self.segments {
            assert_eq!(
                s.live,
                live.get(id).copied().unwrap_or(0),
                "live bytes of segment {id}"
            );
        }
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
