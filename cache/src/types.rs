//! The plain public types: configuration, lookup outcomes, result kinds and key spans.

use std::ops::Bound;

use crate::limits::DEFAULT_TTL_MS;

/// The eviction policy of a shard cache (one policy for item and result entries alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// S3-FIFO (Yang et al., SOSP'23): scan-resistant, O(1) amortized. The default.
    S3Fifo,
    /// Classic LRU: the baseline for hit-ratio comparisons.
    Lru,
}

/// A shard cache's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Hard bound on the bytes charged to live entries (see `charge`).
    pub budget_bytes: usize,
    pub policy: Policy,
    /// Item cache TTL; 0 disables the item cache.
    pub item_ttl_ms: u64,
    /// Query/Scan cache TTL; 0 disables the query cache.
    pub query_ttl_ms: u64,
}

impl CacheConfig {
    /// S3-FIFO and DAX's default TTLs (5 minutes) for both caches.
    pub fn with_budget(budget_bytes: usize) -> Self {
        CacheConfig {
            budget_bytes,
            policy: Policy::S3Fifo,
            item_ttl_ms: DEFAULT_TTL_MS,
            query_ttl_ms: DEFAULT_TTL_MS,
        }
    }
}

/// Per-table TTLs overriding the global ones; 0 disables that cache for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    pub item_ms: u64,
    pub query_ms: u64,
}

/// The outcome of a cache lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Cached and fresh.
    Hit(T),
    /// Not cached (or expired): read the store, then fill.
    Miss,
    /// This cache is disabled for the table (TTL 0): read the store and do not fill.
    /// Not counted as a hit or a miss.
    Bypass,
}

impl<T> Lookup<T> {
    pub fn hit(self) -> Option<T> {
        match self {
            Lookup::Hit(t) => Some(t),
            Lookup::Miss | Lookup::Bypass => None,
        }
    }

    pub fn is_hit(&self) -> bool {
        matches!(self, Lookup::Hit(_))
    }
}

/// Which kind of request a result entry caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultKind {
    /// Invalidated by writes to keys inside its [`Span`].
    Query,
    /// Invalidated by any write to its table.
    Scan,
}

/// The key range a Query result depends on: one partition (the caller's 64-bit partition
/// hash, which must be the same function of the key at fill and at write) and a range of
/// keys in it, compared as byte slices (`[u8]`'s lexicographic order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub partition: u64,
    pub lower: Bound<Vec<u8>>,
    pub upper: Bound<Vec<u8>>,
}

impl Span {
    /// Every key of one partition.
    pub fn partition(partition: u64) -> Self {
        Span {
            partition,
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// Whether `key` lies in the span's key range (the partition is not compared).
    pub fn contains(&self, key: &[u8]) -> bool {
        range_contains(as_slice(&self.lower), as_slice(&self.upper), key)
    }
}

fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// `lower <= key <= upper` with each bound inclusive, exclusive or absent.
pub(crate) fn range_contains(lower: Bound<&[u8]>, upper: Bound<&[u8]>, key: &[u8]) -> bool {
    let above = match lower {
        Bound::Included(b) => key >= b,
        Bound::Excluded(b) => key > b,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(b) => key <= b,
        Bound::Excluded(b) => key < b,
        Bound::Unbounded => true,
    };
    above && below
}
