//! Every bound and tuning constant of the cache, in one place.

/// Default TTL of both caches, like DAX's item and query caches: 5 minutes.
pub const DEFAULT_TTL_MS: u64 = 300_000;

/// An entry whose charge exceeds `budget_bytes / MAX_ENTRY_BUDGET_DIVISOR` is not cached.
///
/// 16 rather than 8: it keeps one entry below S3-FIFO's small-queue share (10 % of the
/// budget), so a single large Query page cannot push every other new entry out of the
/// small queue on its way in, and it bounds what one fill can evict to 1/16 of the cache.
/// A 1 MB Query page (the DynamoDB page limit) is cacheable from a 16 MB shard budget on.
pub const MAX_ENTRY_BUDGET_DIVISOR: usize = 16;

/// S3-FIFO: share of the byte budget the small (probationary) FIFO may hold before
/// evictions come from it, in percent. 10 % is the paper's choice (Yang et al., SOSP'23,
/// §4.1) and libCacheSim's default (`small-size-ratio=0.10`).
pub const SMALL_QUEUE_PERCENT: usize = 10;

/// S3-FIFO: the smallest frequency with which an entry leaving the small FIFO is moved
/// to the main FIFO; below it the entry is evicted and its key hash remembered in the
/// ghost. See `s3fifo` for why 1 and not libCacheSim's default 2.
pub const PROMOTE_MIN_FREQ: u8 = 1;

/// S3-FIFO: the access frequency saturates here (two bits).
pub const FREQ_MAX: u8 = 3;

/// S3-FIFO: dead references (left by entries removed out of FIFO order: invalidation,
/// expiry on lookup, replacement) a queue may hold beyond its live ones before it is
/// compacted. A queue therefore never holds more than `2 × live + QUEUE_GARBAGE_SLACK`
/// references, and each entry is charged two of them.
pub const QUEUE_GARBAGE_SLACK: usize = 64;

/// Most live entries in one shard cache: slab indices are `u32`, and `u32::MAX` is the
/// "no entry" link of the LRU list.
pub const ENTRIES_MAX: usize = u32::MAX as usize - 1;

/// What the allocator adds to every heap block, as charged: glibc's malloc keeps an
/// 8-byte header and rounds each chunk up to 16 bytes, so 8 + 8 on average.
pub const ALLOC_OVERHEAD_BYTES: usize = 16;
