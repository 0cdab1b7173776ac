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

mod append;
mod durability;
mod raft;
mod recover;
mod snapshot;
mod upkeep;

pub use raft::{Applied, RAFT_RETAINED_APPLIED_ENTRIES};
pub use snapshot::{SnapshotItem, SnapshotState};

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
    /// The term written into a single-node store's records.
    pub term: u64,
    /// The store is a shard replica's Raft log (`store::raft`): writes are appended as
    /// entries and applied when committed. Fixed for the life of a data directory.
    pub replicated: bool,
    /// A replica keeps this many applied entries readable for lagging followers
    /// (`RAFT_RETAINED_APPLIED_ENTRIES`; tests use fewer, to exercise forgetting).
    pub raft_retained_entries: u64,
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
            replicated: false,
            raft_retained_entries: RAFT_RETAINED_APPLIED_ENTRIES,
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
    /// A replicated CreateTable whose id an entry applied before it took.
    #[error("table id {0} was taken by an earlier table; retry the CreateTable")]
    TableIdTaken(u32),
    /// A Raft entry that cannot be a record of this log.
    #[error("a malformed Raft entry: {0}")]
    BadEntry(String),
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
    /// A replica's snapshot install that never completed, discarded with the segments
    /// from this one on (nothing in them was acknowledged).
    pub discarded_snapshot: Option<u32>,
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
    /// The lowest Raft entry any record here carries (relocated copies included;
    /// `u64::MAX` when none, 0 when unknown): a replica keeps a tombstone while another
    /// segment may hold older state of its key.
    min_entry: u64,
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

/// A checkpoint ready to be written once the log is durable up to `settle_to`.
#[derive(Debug)]
pub struct CheckpointJob {
    pub file: String,
    pub bytes: Vec<u8>,
    /// Where recovery from this checkpoint replays the log from.
    pub replay_from: LogPos,
    /// The append position when it was taken: every record its tables name lies before
    /// it (a replica's replay point may be earlier: see `store::raft`).
    pub settle_to: LogPos,
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
    /// `Some` in a replicated store.
    raft: Option<raft::RaftLog>,
    /// A snapshot install (its `Snapshot` record) not yet covered by a checkpoint.
    snapshot_at: Option<LogPos>,
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

    /// The id the next created table takes.
    pub fn next_table_id(&self) -> u32 {
        self.next_table_id
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
        if let Some(raft) = &self.raft {
            raft.check_invariants(|loc| parse_record(self.record_at(loc)));
        }
    }
}
