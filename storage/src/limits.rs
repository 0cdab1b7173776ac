//! Every bound of the storage engine, in one place.
//!
//! The log format fixes some (a record's key length is a `u16`, offsets are `u32`), the
//! index's key arena others; the rest are choices. Bounds that other crates must respect
//! (the largest record, the longest key) are tied to theirs at compile time in
//! `tern-server`'s `limits` module, where both crates are visible.

/// The largest record: header + key + value (docs/log-format.md). Sized so that the
/// largest encoded item (`tern_protocol::limits::ITEM_ENCODED_MAX_BYTES`) with the
/// longest key and the record header fits; a log written with a smaller bound reads
/// unchanged.
pub const RECORD_MAX_BYTES: usize = 4 << 20;

/// The longest key a record carries: the record header stores its length as a `u16`.
/// Index keys are a few KiB at most (hash, partition key ≤ 2048, sort key ≤ 1024).
pub const KEY_MAX_BYTES: usize = u16::MAX as usize;

/// log2 of the index's key-arena page size (1 MiB). A key never straddles pages.
pub const KEY_ARENA_PAGE_SHIFT: u32 = 20;

/// Key-arena offsets are `u32`: the arena addresses at most this many bytes.
pub const KEY_ARENA_ADDRESSABLE_BYTES: u64 = 1 << 32;

/// Pages the arena can address.
pub const KEY_ARENA_PAGES_MAX: u64 = KEY_ARENA_ADDRESSABLE_BYTES >> KEY_ARENA_PAGE_SHIFT;

/// The most key bytes one table's index on one shard holds (about 3.75 GiB). Pages are
/// filled greedily and a key that does not fit the rest of a page starts the next one,
/// so every page but the last holds at least `page size − KEY_MAX_BYTES + 1` bytes of
/// keys: at or below this many live bytes every new key has room, even right after the
/// arena is compacted. A write that would pass it is refused before anything is
/// appended (`StoreError::IndexFull`).
pub const KEY_ARENA_LIVE_MAX_BYTES: u64 =
    (KEY_ARENA_PAGES_MAX - 1) * ((1u64 << KEY_ARENA_PAGE_SHIFT) - KEY_MAX_BYTES as u64 + 1);

/// `Durability::None`: appended bytes not yet written that a store lets pile up before
/// acknowledgements wait for the flusher (backpressure; without it a fast writer grows
/// the pending chunks without bound).
pub const UNWRITTEN_MAX_BYTES: u64 = 64 << 20;

/// The smallest segment size accepted (tests use small segments to exercise rolls).
pub const SEGMENT_SIZE_MIN: u64 = 4096;

/// The largest segment size: record offsets within a segment are `u32`.
pub const SEGMENT_SIZE_MAX: u64 = u32::MAX as u64;

/// The largest checkpoint body: its length field is a `u32`.
pub const CHECKPOINT_BODY_MAX_BYTES: usize = u32::MAX as usize;

// A key fits in one arena page with room to spare, and the arena bound is positive.
const _: () = assert!(KEY_MAX_BYTES < 1 << KEY_ARENA_PAGE_SHIFT);
const _: () = assert!(KEY_ARENA_PAGE_SHIFT < 32);
const _: () = assert!(KEY_ARENA_LIVE_MAX_BYTES > 0);
// A record's length is a `u32`, and one record fits in a segment.
const _: () = assert!(RECORD_MAX_BYTES <= u32::MAX as usize);
const _: () = assert!((RECORD_MAX_BYTES as u64) < SEGMENT_SIZE_MAX);
const _: () = assert!(KEY_MAX_BYTES < RECORD_MAX_BYTES);
