//! The shard's DAX-style cache (design brief §6): a `tern_cache::ShardCache` plus what the
//! server keeps in it and how it is configured.
//!
//! * **Item entries** hold a [`CachedItem`]: the record's slot in the log or "not found",
//!   and the log position the answer may not be given before (a write not yet durable is
//!   cached at once, and a hit waits for it exactly as a store read would). An item of up
//!   to `CACHE_INLINE_ITEM_MAX_BYTES` is also kept inline, in the entry's own block next
//!   to its key: a hit then never touches the log. A larger one is read again through
//!   `Store::try_item_at` (the very bytes the store serves, never copied).
//! * **Result entries** hold an encoded Query page or a Scan step over this shard's slice,
//!   with the same position.
//!
//! Every write the shard applies goes through [`ShardCacheState::wrote`] before its reply
//! is produced (write-through: the item entry is updated or inserted, Query results whose span covers
//! the key and every Scan result of the table are dropped), so a read after a write on
//! any connection sees the write: nothing can run between the store's change and the
//! cache's on a shard's single thread. Fills happen in the same synchronous step as the
//! store read they cache, so no write can slip in between.
//!
//! Strongly consistent reads (`ConsistentRead`) neither read nor fill the cache.

use std::collections::HashMap;
use std::ops::Bound;

use tern_cache::{CacheConfig, EntryRef, Lookup, Policy, ResultKind, ShardCache, Span, Ttls};
use tern_protocol::keys::decode_index_key_hash;
use tern_protocol::messages::Counter;
use tern_storage::index::Slot;
use tern_storage::store::LogPos;

use crate::limits::CACHE_INLINE_ITEM_MAX_BYTES;
use crate::mesh::{ScanChunk, ScanRange};
use crate::net::coarse_monotonic_ms;

/// What an item entry remembers.
#[derive(Debug, Clone, Copy)]
pub struct CachedItem {
    /// The record holding the item (`None`: the item does not exist).
    pub slot: Option<Slot>,
    /// The answer may be given once the log is durable up to here.
    pub wait: LogPos,
    /// CRC32 of the item's bytes, computed when they were written or read from the log:
    /// a GetItem hit sends it as its reply's body CRC instead of hashing the bytes again.
    /// Should the log's bytes change under the entry (a device returning other bytes
    /// after the page cache dropped them), the client's frame check refuses the reply:
    /// never silently wrong.
    pub crc: u32,
}

impl CachedItem {
    /// The item `bytes` in the Put record at `slot` (answer once that record is durable).
    pub fn written(slot: Slot, bytes: &[u8]) -> CachedItem {
        CachedItem {
            slot: Some(slot),
            wait: LogPos::end_of(slot.loc),
            crc: crc32fast::hash(bytes),
        }
    }

    /// No item; `wait` is the delete not durable yet, if any.
    pub fn absent(wait: Option<LogPos>) -> CachedItem {
        CachedItem {
            slot: None,
            wait: wait.unwrap_or_default(),
            crc: 0,
        }
    }
}

/// What of an item's bytes its cache entry keeps inline: all of them, or none.
fn inline(bytes: &[u8]) -> &[u8] {
    if bytes.len() <= CACHE_INLINE_ITEM_MAX_BYTES {
        bytes
    } else {
        &[]
    }
}

/// What a result entry remembers.
#[derive(Debug)]
pub enum CachedResult {
    /// An encoded `PageResponse` (the reply body of a Query).
    Page { body: Vec<u8>, wait: LogPos },
    /// One Scan step over this shard's slice.
    Chunk { chunk: ScanChunk, wait: LogPos },
}

/// How every shard's cache is set up (`ternd --cache-size ...`).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Bytes for the whole node, split evenly across shards.
    pub size_bytes: usize,
    pub policy: Policy,
    /// Item cache TTL (0 disables it).
    pub item_ttl_ms: u64,
    /// Query and Scan cache TTL (0 disables it).
    pub query_ttl_ms: u64,
    /// Per-table TTLs by table name, overriding the two above.
    pub table_ttls: Vec<(String, Ttls)>,
}

impl CacheSettings {
    /// The default: DAX's 5-minute TTLs, S3-FIFO, and [`default_cache_bytes`].
    pub fn new() -> CacheSettings {
        CacheSettings {
            size_bytes: default_cache_bytes(),
            policy: Policy::S3Fifo,
            item_ttl_ms: tern_cache::DEFAULT_TTL_MS,
            query_ttl_ms: tern_cache::DEFAULT_TTL_MS,
            table_ttls: Vec::new(),
        }
    }

    /// For tests: 64 MiB and the default TTLs.
    pub fn for_tests() -> CacheSettings {
        CacheSettings {
            size_bytes: 64 << 20,
            ..CacheSettings::new()
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings::new()
    }
}

/// The share of physical memory the cache takes by default: an eighth (the rest is for
/// the indexes, which must fit in RAM, and the page cache under the log's maps).
pub const DEFAULT_CACHE_RAM_DIVISOR: u64 = 8;

/// `MemTotal / DEFAULT_CACHE_RAM_DIVISOR`, or 256 MiB when /proc/meminfo cannot be read.
pub fn default_cache_bytes() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    total.map_or(256 << 20, |b| (b / DEFAULT_CACHE_RAM_DIVISOR) as usize)
}

/// One shard's cache, its clock and its per-table TTLs by name.
pub struct ShardCacheState {
    cache: ShardCache<CachedItem, CachedResult>,
    /// Milliseconds for TTLs are counted from here: CLOCK_MONOTONIC_COARSE, a read of
    /// the vDSO page (the precise clock took 2 % of a cached GET's CPU); its resolution
    /// of a few ms is ample for TTLs.
    start_ms: u64,
    ttls_by_name: HashMap<String, Ttls>,
    /// Scratch for Scan keys.
    scan_key: Vec<u8>,
}

impl ShardCacheState {
    /// The cache of one of `shards` shards.
    pub fn new(settings: &CacheSettings, shards: usize) -> ShardCacheState {
        let config = CacheConfig {
            budget_bytes: settings.size_bytes / shards.max(1),
            policy: settings.policy,
            item_ttl_ms: settings.item_ttl_ms,
            query_ttl_ms: settings.query_ttl_ms,
        };
        ShardCacheState {
            cache: ShardCache::new(config),
            start_ms: coarse_monotonic_ms(),
            ttls_by_name: settings.table_ttls.iter().cloned().collect(),
            scan_key: Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        coarse_monotonic_ms().saturating_sub(self.start_ms)
    }

    /// A table (created, or found at recovery) got `id`: apply its TTL override, if any.
    pub fn table_added(&mut self, name: &str, id: u32) {
        if let Some(&ttls) = self.ttls_by_name.get(name) {
            self.cache.set_table_ttls(id, Some(ttls));
        }
    }

    /// A table was deleted: its entries go.
    pub fn table_dropped(&mut self, id: u32) {
        self.cache.drop_table(id);
    }

    /// A cached item, and a reference for `inline_bytes`.
    pub fn get_item(&mut self, table: u32, key: &[u8]) -> Option<(CachedItem, EntryRef)> {
        let now = self.now_ms();
        match self.cache.get_item_ref(table, key, now) {
            Lookup::Hit((Some(item), entry)) => Some((item, entry)),
            // The server never stores the cache's own negative form: "not found" is a
            // `CachedItem` with no slot, because it too carries a position.
            Lookup::Hit((None, _)) | Lookup::Miss | Lookup::Bypass => None,
        }
    }

    /// The item's bytes, if its entry (as `get_item` just found it) keeps them inline.
    pub fn inline_bytes(&self, entry: EntryRef) -> Option<&[u8]> {
        self.cache.item_blob(entry).filter(|b| !b.is_empty())
    }

    /// After a store read of `key` (which found `item`, whose bytes are `bytes`, or
    /// nothing: `bytes` empty).
    pub fn fill_item(&mut self, table: u32, key: &[u8], item: CachedItem, bytes: &[u8]) {
        let now = self.now_ms();
        self.cache
            .fill_item_inline(table, key, Some(item), inline(bytes), bytes.len(), now);
    }

    /// Write-through: the shard applied a Put (`item.slot` is its record, `bytes` the
    /// item) or a Delete (`item.slot` is `None`, `bytes` empty) of `key`.
    pub fn wrote(&mut self, table: u32, key: &[u8], item: CachedItem, bytes: &[u8]) {
        let now = self.now_ms();
        let partition = decode_index_key_hash(key);
        self.cache.write_item_inline(
            table,
            partition,
            key,
            Some(item),
            inline(bytes),
            bytes.len(),
            now,
        );
    }

    /// A cached Query page for this exact request body.
    pub fn get_page(&mut self, table: u32, request: &[u8]) -> Option<(&[u8], LogPos)> {
        let now = self.now_ms();
        match self
            .cache
            .get_result(ResultKind::Query, table, request, now)
        {
            Lookup::Hit(CachedResult::Page { body, wait }) => Some((body, *wait)),
            _ => None,
        }
    }

    /// Caches a Query page that depends on the index keys in `lower..upper` (all in one
    /// partition, the one `partition_key` is in).
    pub fn fill_page(
        &mut self,
        table: u32,
        request: &[u8],
        partition_key: &[u8],
        bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        body: Vec<u8>,
        wait: LogPos,
    ) {
        let now = self.now_ms();
        let span = Span {
            partition: decode_index_key_hash(partition_key),
            lower: bounds.0,
            upper: bounds.1,
        };
        let len = body.len();
        let result = CachedResult::Page { body, wait };
        self.cache
            .fill_result(ResultKind::Query, table, request, span, result, len, now);
    }

    /// A cached Scan step for exactly this range, as a copy.
    pub fn get_chunk(&mut self, table: u32, range: &ScanRange) -> Option<(ScanChunk, LogPos)> {
        let now = self.now_ms();
        scan_key(range, &mut self.scan_key);
        match self
            .cache
            .get_result(ResultKind::Scan, table, &self.scan_key, now)
        {
            Lookup::Hit(CachedResult::Chunk { chunk, wait }) => Some((chunk.clone(), *wait)),
            _ => None,
        }
    }

    pub fn fill_chunk(&mut self, table: u32, range: &ScanRange, chunk: &ScanChunk, wait: LogPos) {
        let now = self.now_ms();
        scan_key(range, &mut self.scan_key);
        let len: usize = chunk
            .items
            .iter()
            .map(|(k, v)| k.len() + v.len() + SCAN_ITEM_OVERHEAD_BYTES)
            .sum();
        let result = CachedResult::Chunk {
            chunk: chunk.clone(),
            wait,
        };
        let key = std::mem::take(&mut self.scan_key);
        self.cache.fill_result(
            ResultKind::Scan,
            table,
            &key,
            Span::partition(0),
            result,
            len,
            now,
        );
        self.scan_key = key;
    }

    /// The cache's counters, named like DAX's metrics.
    pub fn counters(&self) -> impl Iterator<Item = Counter> {
        self.cache
            .stats()
            .counters()
            .into_iter()
            .map(|(name, value)| Counter {
                name: name.to_owned(),
                value,
            })
    }
}

/// What a cached Scan step costs per item beyond its key and item bytes: the two `Vec`
/// headers of its `(key, item)` pair and the allocator's header of each heap block.
const SCAN_ITEM_OVERHEAD_BYTES: usize = 2 * std::mem::size_of::<Vec<u8>>() + 2 * 16;

/// The canonical bytes of a Scan step: bounds and budget (the table is part of the
/// cache's own key).
fn scan_key(range: &ScanRange, out: &mut Vec<u8>) {
    out.clear();
    for bound in [&range.lower, &range.upper] {
        let (tag, bytes): (u8, &[u8]) = match bound {
            Bound::Included(b) => (1, b),
            Bound::Excluded(b) => (2, b),
            Bound::Unbounded => (0, &[]),
        };
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let b = range.budget;
    for n in [b.items, b.size_bytes, b.encoded_bytes] {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PageBudget;

    fn range(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, limit: usize) -> ScanRange {
        ScanRange {
            table: "t".into(),
            lower,
            upper,
            budget: PageBudget {
                items: limit,
                size_bytes: 1 << 20,
                encoded_bytes: 1 << 24,
            },
            consistent: false,
        }
    }

    #[test]
    fn scan_keys_tell_every_field_apart() {
        let cases = [
            range(Bound::Included(vec![1]), Bound::Unbounded, 10),
            range(Bound::Excluded(vec![1]), Bound::Unbounded, 10),
            range(Bound::Included(vec![1]), Bound::Unbounded, 11),
            range(Bound::Unbounded, Bound::Included(vec![1]), 10),
            range(Bound::Included(vec![1, 2]), Bound::Unbounded, 10),
            range(Bound::Included(vec![]), Bound::Unbounded, 10),
            ScanRange {
                budget: PageBudget {
                    encoded_bytes: 1 << 23,
                    ..range(Bound::Included(vec![1]), Bound::Unbounded, 10).budget
                },
                ..range(Bound::Included(vec![1]), Bound::Unbounded, 10)
            },
        ];
        let keys: Vec<Vec<u8>> = cases
            .iter()
            .map(|r| {
                let mut k = Vec::new();
                scan_key(r, &mut k);
                k
            })
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
