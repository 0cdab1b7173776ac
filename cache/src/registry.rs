//! Which result entries a write must invalidate, found without walking the cache.
//!
//! * `(table, partition) → [QueryRef]`: the Query results registered under a partition,
//!   each with the key range it depends on. A write to `(table, partition, key)` tests
//!   only that list: O(Query results of that partition).
//! * `table → [slot]`: the Scan results of a table; any write to the table drops them all.
//!
//! Each result entry stores its position in its list; removal is `swap_remove`, and the
//! caller fixes the position of the entry that moved into the hole. An emptied list is
//! removed from its map, so the maps hold only partitions and tables with live results.

use std::collections::HashMap;
use std::ops::Bound;

use ahash::RandomState;

use crate::types::{Span, range_contains};

/// A Query result's entry in its partition's list, with its span's bounds (kept here, not
/// in the slot, so a write tests a partition's spans in one contiguous walk).
pub(crate) struct QueryRef {
    pub slot: u32,
    pub lower: Bound<Box<[u8]>>,
    pub upper: Bound<Box<[u8]>>,
}

impl QueryRef {
    fn contains(&self, key: &[u8]) -> bool {
        range_contains(as_slice(&self.lower), as_slice(&self.upper), key)
    }
}

fn as_slice(bound: &Bound<Box<[u8]>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b),
        Bound::Excluded(b) => Bound::Excluded(b),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn boxed(bound: Bound<Vec<u8>>) -> Bound<Box<[u8]>> {
    match bound {
        Bound::Included(b) => Bound::Included(b.into_boxed_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.into_boxed_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn pos(len: usize) -> u32 {
    u32::try_from(len).expect("registry lists are bounded by ENTRIES_MAX")
}

pub(crate) struct Registry {
    queries: HashMap<(u32, u64), Vec<QueryRef>, RandomState>,
    scans: HashMap<u32, Vec<u32>, RandomState>,
}

impl Registry {
    pub fn new() -> Self {
        Registry {
            queries: HashMap::with_hasher(RandomState::new()),
            scans: HashMap::with_hasher(RandomState::new()),
        }
    }

    /// Registers a Query result; returns its position in the partition's list.
    pub fn add_query(&mut self, table: u32, slot: u32, span: Span) -> u32 {
        // Capacity 1 first: most partitions hold one cached Query.
        let list = self
            .queries
            .entry((table, span.partition))
            .or_insert_with(|| Vec::with_capacity(1));
        list.push(QueryRef {
            slot,
            lower: boxed(span.lower),
            upper: boxed(span.upper),
        });
        pos(list.len() - 1)
    }

    /// Unregisters the Query result at `position`; returns the slot of the result that
    /// moved into `position`, whose stored position the caller must update.
    pub fn remove_query(
        &mut self,
        table: u32,
        partition: u64,
        position: u32,
        slot: u32,
    ) -> Option<u32> {
        let list = self
            .queries
            .get_mut(&(table, partition))
            .expect("a registered Query result's partition list");
        let removed = list.swap_remove(position as usize);
        assert_eq!(removed.slot, slot, "registry position out of date");
        let moved = list.get(position as usize).map(|r| r.slot);
        if list.is_empty() {
            self.queries.remove(&(table, partition));
        }
        moved
    }

    pub fn add_scan(&mut self, table: u32, slot: u32) -> u32 {
        let list = self
            .scans
            .entry(table)
            .or_insert_with(|| Vec::with_capacity(1));
        list.push(slot);
        pos(list.len() - 1)
    }

    /// Like `remove_query`, for a Scan result.
    pub fn remove_scan(&mut self, table: u32, position: u32, slot: u32) -> Option<u32> {
        let list = self
            .scans
            .get_mut(&table)
            .expect("a registered Scan result's table list");
        let removed = list.swap_remove(position as usize);
        assert_eq!(removed, slot, "registry position out of date");
        let moved = list.get(position as usize).copied();
        if list.is_empty() {
            self.scans.remove(&table);
        }
        moved
    }

    /// Appends to `out` the slots of the Query results of `(table, partition)` whose span
    /// contains `key`.
    pub fn queries_covering(&self, table: u32, partition: u64, key: &[u8], out: &mut Vec<u32>) {
        if let Some(list) = self.queries.get(&(table, partition)) {
            out.extend(list.iter().filter(|r| r.contains(key)).map(|r| r.slot));
        }
    }

    /// Appends to `out` the slots of the Scan results of `table`.
    pub fn scans_of(&self, table: u32, out: &mut Vec<u32>) {
        if let Some(list) = self.scans.get(&table) {
            out.extend_from_slice(list);
        }
    }

    pub fn query_slot(&self, table: u32, partition: u64, position: u32) -> Option<u32> {
        Some(
            self.queries
                .get(&(table, partition))?
                .get(position as usize)?
                .slot,
        )
    }

    pub fn scan_slot(&self, table: u32, position: u32) -> Option<u32> {
        self.scans.get(&table)?.get(position as usize).copied()
    }

    /// Total references held: the caller checks it equals its result entry count.
    pub fn len(&self) -> usize {
        self.queries.values().map(Vec::len).sum::<usize>()
            + self.scans.values().map(Vec::len).sum::<usize>()
    }

    pub fn check_invariants(&self) {
        assert!(
            self.queries.values().all(|l| !l.is_empty()),
            "empty Query list kept"
        );
        assert!(
            self.scans.values().all(|l| !l.is_empty()),
            "empty Scan list kept"
        );
    }
}
