//! `ShardCache`: one shard's item cache and query cache, under one byte budget and one
//! eviction policy. Single-threaded: the shard's executor owns it.
//!
//! Entries live in a slab (`slab`) and are found through one hash table of slab indices
//! (`hashbrown::HashTable<u32>`: 4 bytes and a control byte per entry, so even a million
//! entries' table mostly stays in the last-level cache). The composite key is a tag byte
//! (item, Query or Scan), the table id (`u32`, little endian) and the caller's bytes (the
//! item's key, or the canonical bytes of the whole Query/Scan request); it is stored once,
//! in the entry's one heap block, followed by the entry's blob (an item's bytes, when the
//! caller keeps them inline). Lookups build the composite key in a reused scratch buffer,
//! hash it once, and compare it with the entry's: no allocation on the read path, and a
//! hit touches the table, the slab slot and that one block.

use std::collections::HashMap;
use std::mem;

use ahash::RandomState;
use hashbrown::HashTable;

use crate::charge;
use crate::limits::MAX_ENTRY_BUDGET_DIVISOR;
use crate::lru::Lru;
use crate::registry::Registry;
use crate::s3fifo::S3Fifo;
use crate::slab::{Entry, NIL, Payload, Queue, QueueRef, Slab};
use crate::stats::CacheStats;
use crate::types::{CacheConfig, Lookup, Policy, ResultKind, Span, Ttls};

const TAG_ITEM: u8 = 1;
const TAG_QUERY: u8 = 2;
const TAG_SCAN: u8 = 3;
/// Tag byte + table id.
const KEY_PREFIX_LEN: usize = 1 + 4;

/// Scratch index lists larger than this are released after use rather than kept.
const SCRATCH_SLOTS_KEPT: usize = 1024;

fn compose(buf: &mut Vec<u8>, tag: u8, table: u32, bytes: &[u8]) {
    buf.clear();
    buf.push(tag);
    buf.extend_from_slice(&table.to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn result_tag(kind: ResultKind) -> u8 {
    match kind {
        ResultKind::Query => TAG_QUERY,
        ResultKind::Scan => TAG_SCAN,
    }
}

/// Why an entry leaves the cache: decides which counter it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Made room for another entry.
    Evicted,
    /// Its TTL ran out.
    Expired,
    /// A write touched its span or its table (result entries).
    Invalidated,
    /// A write replaced it with a value too large to keep (counted by the caller).
    Updated,
    /// A fill replaced it.
    Replaced,
    /// `drop_table`, or a TTL shortened under it.
    Dropped,
}

// One per shard cache; boxing the large variant would add a pointer chase to every call.
#[allow(clippy::large_enum_variant)]
enum Eviction {
    S3Fifo(S3Fifo),
    Lru(Lru),
}

impl Eviction {
    fn admit<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        match self {
            Eviction::S3Fifo(p) => p.admit(slab, index),
            Eviction::Lru(p) => p.admit(slab, index),
        }
    }

    fn hit<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        match self {
            Eviction::S3Fifo(p) => p.hit(slab, index),
            Eviction::Lru(p) => p.hit(slab, index),
        }
    }

    fn detach<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        match self {
            Eviction::S3Fifo(p) => p.detach(slab, index),
            Eviction::Lru(p) => p.detach(slab, index),
        }
    }

    fn recharge<V, R>(&mut self, slab: &Slab<V, R>, index: u32, old: usize, new: usize) {
        match self {
            Eviction::S3Fifo(p) => p.recharge(slab, index, old, new),
            Eviction::Lru(_) => {}
        }
    }

    fn victim<V, R>(&mut self, slab: &mut Slab<V, R>, now_ms: u64) -> Option<u32> {
        match self {
            Eviction::S3Fifo(p) => p.victim(slab, now_ms),
            Eviction::Lru(p) => p.victim(slab),
        }
    }

    fn after_remove<V, R>(&mut self, slab: &Slab<V, R>) {
        match self {
            Eviction::S3Fifo(p) => p.after_remove(slab),
            Eviction::Lru(_) => {}
        }
    }

    fn clear(&mut self) {
        match self {
            Eviction::S3Fifo(p) => p.clear(),
            Eviction::Lru(p) => p.clear(),
        }
    }

    fn check_invariants<V, R>(&self, slab: &Slab<V, R>) {
        match self {
            Eviction::S3Fifo(p) => p.check_invariants(slab),
            Eviction::Lru(p) => p.check_invariants(slab),
        }
    }
}

/// One shard's cache of items (`Option<V>`, `None` = "not found") and of Query/Scan
/// results (`R`), with a byte budget, S3-FIFO or LRU eviction and TTLs. No I/O, no clock:
/// every call that needs the time takes the caller's `now_ms`.
pub struct ShardCache<V, R> {
    config: CacheConfig,
    table_ttls: HashMap<u32, Ttls, RandomState>,
    /// Slab indices, by the hash of their entry's composite key (`Entry::hash`).
    map: HashTable<u32>,
    hasher: RandomState,
    slab: Slab<V, R>,
    eviction: Eviction,
    registry: Registry,
    scratch_key: Vec<u8>,
    scratch_slots: Vec<u32>,
    bytes_used: usize,
    item_entries: usize,
    /// Counters only; the gauges are filled in by `stats()`.
    counters: CacheStats,
}

impl<V, R> ShardCache<V, R> {
    /// Charged to every entry on top of its key and payload bytes: its slab slot, hash
    /// map entry, queue references, ghost slot and key allocations (derivation in
    /// `charge`). Depends on `V` and `R`, which live inline in the slot.
    pub const FIXED_OVERHEAD: usize = charge::fixed_overhead::<V, R>();

    /// What an item entry for a key of `key_len` bytes charged `value_bytes` costs.
    pub fn item_charge_bytes(key_len: usize, value_bytes: usize) -> usize {
        charge::item::<V, R>(KEY_PREFIX_LEN + key_len, value_bytes)
    }

    /// What a result entry for a request of `request_len` bytes costs.
    pub fn result_charge_bytes(
        kind: ResultKind,
        request_len: usize,
        span: &Span,
        result_bytes: usize,
    ) -> usize {
        charge::result::<V, R>(KEY_PREFIX_LEN + request_len, result_bytes, kind, span)
    }

    pub fn new(config: CacheConfig) -> Self {
        let eviction = match config.policy {
            Policy::S3Fifo => Eviction::S3Fifo(S3Fifo::new(config.budget_bytes)),
            Policy::Lru => Eviction::Lru(Lru::new()),
        };
        ShardCache {
            config,
            table_ttls: HashMap::with_hasher(RandomState::new()),
            map: HashTable::new(),
            hasher: RandomState::new(),
            slab: Slab::new(),
            eviction,
            registry: Registry::new(),
            scratch_key: Vec::new(),
            scratch_slots: Vec::new(),
            bytes_used: 0,
            item_entries: 0,
            counters: CacheStats::default(),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Entries charged more than this are not cached.
    pub fn max_entry_bytes(&self) -> usize {
        self.config.budget_bytes / MAX_ENTRY_BUDGET_DIVISOR
    }

    /// Overrides the global TTLs for one table (`None`: back to the global ones). A TTL
    /// that gets shorter (or 0, disabled) drops that table's entries of that cache at
    /// once, so none outlives the new TTL; O(entries), like `drop_table`.
    pub fn set_table_ttls(&mut self, table: u32, ttls: Option<Ttls>) {
        let old = self.ttls(table);
        match ttls {
            Some(t) => self.table_ttls.insert(table, t),
            None => self.table_ttls.remove(&table),
        };
        let new = self.ttls(table);
        let drop_items = new.item_ms < old.item_ms;
        let drop_results = new.query_ms < old.query_ms;
        if drop_items || drop_results {
            self.purge(|e| {
                e.table == table
                    && if e.is_item() {
                        drop_items
                    } else {
                        drop_results
                    }
            });
        }
        self.assert_budget();
    }

    /// The TTLs in force for `table`.
    pub fn ttls(&self, table: u32) -> Ttls {
        let global = Ttls {
            item_ms: self.config.item_ttl_ms,
            query_ms: self.config.query_ttl_ms,
        };
        if self.table_ttls.is_empty() {
            return global;
        }
        self.table_ttls.get(&table).copied().unwrap_or(global)
    }

    pub fn item_enabled(&self, table: u32) -> bool {
        self.ttls(table).item_ms > 0
    }

    pub fn query_enabled(&self, table: u32) -> bool {
        self.ttls(table).query_ms > 0
    }

    /// The hash of the composite key in `scratch_key`, and its entry's slab index.
    fn find_scratch(&self) -> (u64, Option<u32>) {
        let hash = self.hasher.hash_one(&self.scratch_key[..]);
        let key = &self.scratch_key[..];
        let slab = &self.slab;
        let index = self.map.find(hash, |&i| slab.get(i).key() == key).copied();
        (hash, index)
    }

    /// After a miss, caches what the store holds for `key` (`None`: no item), charged
    /// `value_bytes` plus overhead, until `now_ms + item TTL`. Replaces an entry already
    /// there. Not cached if the table's item cache is disabled or the entry would exceed
    /// `max_entry_bytes()`; otherwise other entries are evicted until it fits.
    pub fn fill_item(
        &mut self,
        table: u32,
        key: &[u8],
        value: Option<V>,
        value_bytes: usize,
        now_ms: u64,
    ) {
        self.fill_item_inline(table, key, value, &[], value_bytes, now_ms);
    }

    /// `fill_item` that also keeps `blob` (the item's bytes) in the entry, returned by
    /// `item_blob`. `value_bytes` must count the blob: `blob.len() <= value_bytes`.
    pub fn fill_item_inline(
        &mut self,
        table: u32,
        key: &[u8],
        value: Option<V>,
        blob: &[u8],
        value_bytes: usize,
        now_ms: u64,
    ) {
        assert!(blob.len() <= value_bytes, "an inline blob is charged");
        let ttl = self.ttls(table).item_ms;
        if ttl == 0 {
            return;
        }
        compose(&mut self.scratch_key, TAG_ITEM, table, key);
        let (hash, found) = self.find_scratch();
        if let Some(index) = found {
            self.remove(index, Removal::Replaced);
        }
        let charge = charge::item::<V, R>(self.scratch_key.len(), value_bytes);
        if charge <= self.max_entry_bytes() {
            self.admit_item(
                table,
                hash,
                value,
                blob,
                charge,
                now_ms.saturating_add(ttl),
                now_ms,
            );
        }
        self.assert_budget();
    }

    /// Makes room for and inserts the item entry whose composite key is in `scratch_key`
    /// (absent from the map) and hashes to `hash`.
    #[allow(clippy::too_many_arguments)] // the entry's fields, and the time
    fn admit_item(
        &mut self,
        table: u32,
        hash: u64,
        value: Option<V>,
        blob: &[u8],
        charge: usize,
        expires_at_ms: u64,
        now_ms: u64,
    ) {
        self.make_room(charge, now_ms);
        let new = NewEntry {
            table,
            hash,
            blob,
            charge,
            expires_at_ms,
        };
        self.insert(new, Payload::Item(value), None);
    }

    /// Write-through for a Put (`Some`) or Delete (`None`) of `key` that the store has
    /// applied: updates the item entry if one is cached (its TTL restarts) or inserts one
    /// (as DAX's write-through does: an item read right after its write is a hit; the
    /// same admission rules as `fill_item`, and S3-FIFO's small queue keeps write-only
    /// keys from pushing out what is read), and drops every Query result of the table
    /// registered under `partition` whose span contains `key`, and every Scan result of
    /// the table. Costs O(Query results of that partition + Scan results of the table).
    pub fn write_item(
        &mut self,
        table: u32,
        partition: u64,
        key: &[u8],
        value: Option<V>,
        value_bytes: usize,
        now_ms: u64,
    ) {
        self.write_item_inline(table, partition, key, value, &[], value_bytes, now_ms);
    }

    /// `write_item` that also replaces the entry's blob with `blob` (counted in
    /// `value_bytes`). A blob of the old one's length is overwritten in place: an
    /// overwrite of a same-sized item allocates nothing.
    #[allow(clippy::too_many_arguments)] // write_item's, plus the blob
    pub fn write_item_inline(
        &mut self,
        table: u32,
        partition: u64,
        key: &[u8],
        value: Option<V>,
        blob: &[u8],
        value_bytes: usize,
        now_ms: u64,
    ) {
        assert!(blob.len() <= value_bytes, "an inline blob is charged");
        compose(&mut self.scratch_key, TAG_ITEM, table, key);
        let ttl = self.ttls(table).item_ms;
        let charge = charge::item::<V, R>(self.scratch_key.len(), value_bytes);
        let (hash, found) = self.find_scratch();
        if found.is_none() && ttl > 0 && charge <= self.max_entry_bytes() {
            self.admit_item(
                table,
                hash,
                value,
                blob,
                charge,
                now_ms.saturating_add(ttl),
                now_ms,
            );
        } else if let Some(index) = found {
            self.counters.item_updates += 1;
            if ttl == 0 || charge > self.max_entry_bytes() {
                self.remove(index, Removal::Updated);
            } else {
                let entry = self.slab.get_mut(index);
                let old = entry.charge_bytes;
                entry.payload = Payload::Item(value);
                let key_len = entry.key_len as usize;
                if entry.data.len() - key_len == blob.len() {
                    entry.data[key_len..].copy_from_slice(blob);
                } else {
                    entry.data = [&self.scratch_key[..], blob].concat().into_boxed_slice();
                }
                entry.charge_bytes = charge;
                entry.expires_at_ms = now_ms.saturating_add(ttl);
                self.bytes_used = self.bytes_used - old + charge;
                self.eviction.recharge(&self.slab, index, old, charge);
                self.make_room(0, now_ms);
            }
        }
        self.invalidate_results(table, partition, key);
        self.assert_budget();
    }

    /// Looks up a cached Query or Scan result by the request's canonical bytes.
    pub fn get_result(
        &mut self,
        kind: ResultKind,
        table: u32,
        request: &[u8],
        now_ms: u64,
    ) -> Lookup<&R> {
        if !self.query_enabled(table) {
            return Lookup::Bypass;
        }
        compose(&mut self.scratch_key, result_tag(kind), table, request);
        let (_, Some(index)) = self.find_scratch() else {
            self.count_result(kind, false);
            return Lookup::Miss;
        };
        if self.slab.get(index).is_expired(now_ms) {
            self.remove(index, Removal::Expired);
            self.count_result(kind, false);
            self.assert_budget();
            return Lookup::Miss;
        }
        self.eviction.hit(&mut self.slab, index);
        self.count_result(kind, true);
        match &self.slab.get(index).payload {
            Payload::Result { result, .. } => Lookup::Hit(result),
            Payload::Item(_) => unreachable!("a result key names an item entry"),
        }
    }

    /// After a miss, caches a Query or Scan result computed from the store, charged
    /// `result_bytes` plus overhead, until `now_ms + query TTL`. A Query result is
    /// registered under `span` (its partition and key range) for invalidation; a Scan
    /// result ignores `span` (any write to the table drops it). Same admission rules as
    /// `fill_item`.
    #[allow(clippy::too_many_arguments)] // mirrors the request: kind, table, bytes, span, result, size, time
    pub fn fill_result(
        &mut self,
        kind: ResultKind,
        table: u32,
        request: &[u8],
        span: Span,
        result: R,
        result_bytes: usize,
        now_ms: u64,
    ) {
        let ttl = self.ttls(table).query_ms;
        if ttl == 0 {
            return;
        }
        compose(&mut self.scratch_key, result_tag(kind), table, request);
        let (hash, found) = self.find_scratch();
        if let Some(index) = found {
            self.remove(index, Removal::Replaced);
        }
        let charge = charge::result::<V, R>(self.scratch_key.len(), result_bytes, kind, &span);
        if charge <= self.max_entry_bytes() {
            self.make_room(charge, now_ms);
            let payload = Payload::Result {
                result,
                kind,
                partition: span.partition,
                registry_pos: u32::MAX,
            };
            let span = (kind == ResultKind::Query).then_some(span);
            let new = NewEntry {
                table,
                hash,
                blob: &[],
                charge,
                expires_at_ms: now_ms.saturating_add(ttl),
            };
            self.insert(new, payload, span);
        }
        self.assert_budget();
    }

    /// DeleteTable: drops every entry of `table` and its TTL override. O(slab slots).
    pub fn drop_table(&mut self, table: u32) {
        self.purge(|e| e.table == table);
        self.table_ttls.remove(&table);
        self.assert_budget();
    }

    /// Drops every entry (and the ghost); keeps the counters and TTL overrides.
    pub fn clear(&mut self) {
        self.map = HashTable::new();
        self.slab = Slab::new();
        self.registry = Registry::new();
        self.eviction.clear();
        self.bytes_used = 0;
        self.item_entries = 0;
        self.assert_budget();
    }

    pub fn stats(&self) -> CacheStats {
        let entries = self.slab.live();
        CacheStats {
            bytes: self.bytes_used as u64,
            budget_bytes: self.config.budget_bytes as u64,
            entries: entries as u64,
            item_entries: self.item_entries as u64,
            result_entries: (entries - self.item_entries) as u64,
            ..self.counters
        }
    }

    fn count_result(&mut self, kind: ResultKind, hit: bool) {
        let c = &mut self.counters;
        match (kind, hit) {
            (ResultKind::Query, true) => c.query_hits += 1,
            (ResultKind::Query, false) => c.query_misses += 1,
            (ResultKind::Scan, true) => c.scan_hits += 1,
            (ResultKind::Scan, false) => c.scan_misses += 1,
        }
    }

    /// Inserts the entry whose composite key is in `scratch_key` (absent from the map);
    /// room is already made.
    fn insert(&mut self, new: NewEntry<'_>, payload: Payload<V, R>, span: Option<Span>) {
        let NewEntry {
            table,
            hash,
            blob,
            charge,
            expires_at_ms,
        } = new;
        assert!(
            self.bytes_used + charge <= self.config.budget_bytes,
            "insert without room"
        );
        debug_assert_eq!(hash, self.hasher.hash_one(&self.scratch_key[..]));
        let is_item = matches!(payload, Payload::Item(_));
        let index = self.slab.insert(Entry {
            hash,
            data: [&self.scratch_key[..], blob].concat().into_boxed_slice(),
            key_len: u32::try_from(self.scratch_key.len()).expect("keys are bounded"),
            payload,
            expires_at_ms,
            charge_bytes: charge,
            table,
            prev: NIL,
            next: NIL,
            freq: 0,
            queue: Queue::Small,
        });
        let slab = &self.slab;
        self.map.insert_unique(hash, index, |&i| slab.get(i).hash);
        if let Payload::Result {
            kind, registry_pos, ..
        } = &mut self.slab.get_mut(index).payload
        {
            *registry_pos = match kind {
                ResultKind::Query => {
                    self.registry
                        .add_query(table, index, span.expect("a Query result has a span"))
                }
                ResultKind::Scan => self.registry.add_scan(table, index),
            };
        }
        self.bytes_used += charge;
        if is_item {
            self.item_entries += 1;
        }
        self.eviction.admit(&mut self.slab, index);
    }

    /// Evicts until `extra` more bytes fit in the budget.
    fn make_room(&mut self, extra: usize, now_ms: u64) {
        while self.bytes_used + extra > self.config.budget_bytes {
            let index = self
                .eviction
                .victim(&mut self.slab, now_ms)
                .expect("bytes charged but no entry to evict");
            let reason = if self.slab.get(index).is_expired(now_ms) {
                Removal::Expired
            } else {
                Removal::Evicted
            };
            self.remove_detached(index, reason);
        }
    }

    fn remove(&mut self, index: u32, reason: Removal) {
        self.eviction.detach(&mut self.slab, index);
        self.remove_detached(index, reason);
    }

    /// Removes an entry the eviction policy no longer references.
    fn remove_detached(&mut self, index: u32, reason: Removal) {
        let entry = self.slab.remove(index);
        let charge = entry.charge_bytes;
        let in_map = self.map.find_entry(entry.hash, |&i| i == index);
        in_map.expect("map and slab disagree").remove();
        match entry.payload {
            Payload::Item(_) => self.item_entries -= 1,
            Payload::Result {
                kind,
                partition,
                registry_pos,
                ..
            } => {
                let moved = match kind {
                    ResultKind::Query => {
                        self.registry
                            .remove_query(entry.table, partition, registry_pos, index)
                    }
                    ResultKind::Scan => self.registry.remove_scan(entry.table, registry_pos, index),
                };
                if let Some(moved) = moved {
                    match &mut self.slab.get_mut(moved).payload {
                        Payload::Result {
                            registry_pos: p, ..
                        } => *p = registry_pos,
                        Payload::Item(_) => unreachable!("an item entry in the registry"),
                    }
                }
            }
        }
        self.bytes_used -= charge;
        let c = &mut self.counters;
        match reason {
            Removal::Evicted => {
                c.evictions += 1;
                c.evicted_bytes += charge as u64;
            }
            Removal::Expired => c.expirations += 1,
            Removal::Invalidated => c.result_invalidations += 1,
            Removal::Updated | Removal::Replaced | Removal::Dropped => {}
        }
        self.eviction.after_remove(&self.slab);
    }

    fn invalidate_results(&mut self, table: u32, partition: u64, key: &[u8]) {
        let mut slots = mem::take(&mut self.scratch_slots);
        self.registry
            .queries_covering(table, partition, key, &mut slots);
        self.registry.scans_of(table, &mut slots);
        for &index in &slots {
            self.remove(index, Removal::Invalidated);
        }
        self.return_scratch_slots(slots);
    }

    /// Removes every entry matching `doomed`. O(slab slots).
    fn purge(&mut self, doomed: impl FnMut(&Entry<V, R>) -> bool) {
        let mut slots = mem::take(&mut self.scratch_slots);
        self.slab.indices_where(doomed, &mut slots);
        for &index in &slots {
            self.remove(index, Removal::Dropped);
        }
        self.return_scratch_slots(slots);
    }

    fn return_scratch_slots(&mut self, mut slots: Vec<u32>) {
        slots.clear();
        slots.shrink_to(SCRATCH_SLOTS_KEPT);
        self.scratch_slots = slots;
    }

    /// The budget is a hard bound after every public call (cheap: asserted in release).
    fn assert_budget(&self) {
        assert!(
            self.bytes_used <= self.config.budget_bytes,
            "over the byte budget"
        );
    }

    /// Checks every structural invariant; panics on a violation. O(entries): for tests.
    pub fn check_invariants(&self) {
        self.assert_budget();
        self.slab.check_invariants();
        self.registry.check_invariants();
        self.eviction.check_invariants(&self.slab);
        assert_eq!(self.map.len(), self.slab.live(), "map and slab sizes");
        let max_entry = self.max_entry_bytes();
        let mut bytes = 0;
        let mut items = 0;
        let mut results = 0;
        for (index, entry) in self.slab.iter() {
            assert_eq!(entry.hash, self.hasher.hash_one(entry.key()), "entry hash");
            let slab = &self.slab;
            assert_eq!(
                self.map
                    .find(entry.hash, |&i| slab.get(i).key() == entry.key()),
                Some(&index),
                "entry not in the map"
            );
            assert!(entry.key().len() >= KEY_PREFIX_LEN, "short composite key");
            assert!(
                entry.blob().is_empty() || entry.is_item(),
                "only item entries keep a blob"
            );
            assert_eq!(
                entry.key()[1..KEY_PREFIX_LEN],
                entry.table.to_le_bytes(),
                "table bytes"
            );
            assert!(
                entry.charge_bytes <= max_entry,
                "entry above the max entry charge"
            );
            assert!(
                entry.charge_bytes >= Self::FIXED_OVERHEAD + entry.data.len(),
                "entry charged less than its overhead, key and blob"
            );
            bytes += entry.charge_bytes;
            match &entry.payload {
                Payload::Item(_) => {
                    assert_eq!(entry.key()[0], TAG_ITEM, "item tag");
                    items += 1;
                }
                Payload::Result {
                    kind,
                    partition,
                    registry_pos,
                    ..
                } => {
                    assert_eq!(entry.key()[0], result_tag(*kind), "result tag");
                    let registered = match kind {
                        ResultKind::Query => {
                            self.registry
                                .query_slot(entry.table, *partition, *registry_pos)
                        }
                        ResultKind::Scan => self.registry.scan_slot(entry.table, *registry_pos),
                    };
                    assert_eq!(registered, Some(index), "registry position");
                    results += 1;
                }
            }
        }
        assert_eq!(bytes, self.bytes_used, "bytes_used is the sum of charges");
        assert_eq!(items, self.item_entries, "item entry count");
        assert_eq!(
            self.registry.len(),
            results,
            "registry holds exactly the result entries"
        );
    }

    #[cfg(test)]
    fn item_state(&self, table: u32, key: &[u8]) -> Option<(Queue, u8)> {
        let mut k = Vec::new();
        compose(&mut k, TAG_ITEM, table, key);
        let hash = self.hasher.hash_one(&k[..]);
        let index = *self.map.find(hash, |&i| self.slab.get(i).key() == k)?;
        let entry = self.slab.get(index);
        Some((entry.queue, entry.freq))
    }

    #[cfg(test)]
    fn ghost_len(&self) -> usize {
        match &self.eviction {
            Eviction::S3Fifo(p) => p.ghost_len(),
            Eviction::Lru(_) => 0,
        }
    }
}

impl<V: Clone, R> ShardCache<V, R> {
    /// Looks up an item: `Hit(Some(v))`, `Hit(None)` (cached "not found"), `Miss` (absent
    /// or expired: read the store, then `fill_item`) or `Bypass` (item cache disabled for
    /// the table; not counted).
    pub fn get_item(&mut self, table: u32, key: &[u8], now_ms: u64) -> Lookup<Option<V>> {
        match self.get_item_ref(table, key, now_ms) {
            Lookup::Hit((value, _)) => Lookup::Hit(value),
            Lookup::Miss => Lookup::Miss,
            Lookup::Bypass => Lookup::Bypass,
        }
    }

    /// `get_item`, with a reference to the entry for `item_blob`.
    pub fn get_item_ref(
        &mut self,
        table: u32,
        key: &[u8],
        now_ms: u64,
    ) -> Lookup<(Option<V>, EntryRef)> {
        if !self.item_enabled(table) {
            return Lookup::Bypass;
        }
        compose(&mut self.scratch_key, TAG_ITEM, table, key);
        let (_, Some(index)) = self.find_scratch() else {
            self.counters.item_misses += 1;
            return Lookup::Miss;
        };
        if self.slab.get(index).is_expired(now_ms) {
            self.remove(index, Removal::Expired);
            self.counters.item_misses += 1;
            self.assert_budget();
            return Lookup::Miss;
        }
        self.eviction.hit(&mut self.slab, index);
        self.counters.item_hits += 1;
        let entry = EntryRef(self.slab.queue_ref(index));
        match &self.slab.get(index).payload {
            Payload::Item(value) => Lookup::Hit((value.clone(), entry)),
            Payload::Result { .. } => unreachable!("an item key names a result entry"),
        }
    }
}

impl<V, R> ShardCache<V, R> {
    /// The blob of the item entry `entry` names (empty: none kept), or `None` if that
    /// entry has left the cache since the lookup that returned the reference.
    pub fn item_blob(&self, entry: EntryRef) -> Option<&[u8]> {
        self.slab
            .current_any(entry.0)
            .filter(|e| e.is_item())
            .map(|e| e.blob())
    }
}

/// Names one entry, as `get_item_ref` found it; stale once that entry leaves the cache
/// (the slot's generation changes), however the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef(QueueRef);

/// What `insert` needs besides the payload.
struct NewEntry<'b> {
    table: u32,
    hash: u64,
    blob: &'b [u8],
    charge: usize,
    expires_at_ms: u64,
}

#[cfg(test)]
mod tests;
