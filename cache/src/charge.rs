//! What an entry costs against the byte budget.
//!
//! The budget bounds real memory, so an entry is charged for everything the cache keeps
//! because of it, not only for the caller's bytes:
//!
//! ```text
//! charge = FIXED_OVERHEAD                       every entry (derivation below)
//!        + composite key length                 the key, once: in the entry's heap
//!                                               block (the hash table holds only
//!                                               slab indices)
//!        + value_bytes | result_bytes           the caller's bytes (an item's inline
//!                                               blob, in that same block, among them)
//!        + QUERY_OVERHEAD + bound bytes         Query results: the registry reference
//!          + ALLOC_OVERHEAD per bound           holding the span, the span's bounds
//!        | SCAN_OVERHEAD                        Scan results: the registry reference
//! ```
//!
//! `FIXED_OVERHEAD` (a function of `V` and `R`, because both live inline in the slot):
//!
//! * the slab slot, `size_of::<Slot<V, R>>()` (the entry, links, frequency, generation);
//! * the hash table entry: a `u32` slab index plus one control byte, divided by
//!   hashbrown's maximum load factor 7/8;
//! * two S3-FIFO queue references, `2 × size_of::<QueueRef>()`: the entry's own, and the
//!   dead one it may leave behind (a queue holds at most `2 × live + QUEUE_GARBAGE_SLACK`);
//! * one ghost slot (`size_of::<u64>()` in the ring plus a `(u64, u64)` map entry at 7/8
//!   load): the ghost never holds more hashes than there are live entries;
//! * `ALLOC_OVERHEAD_BYTES` for the entry's one heap block (key and blob).
//!
//! LRU needs neither queue references nor a ghost but is charged the same, so both
//! policies hold the same number of entries under a budget and hit ratios compare fairly.
//!
//! Not charged: spare capacity of growable containers (a `Vec` or `VecDeque` up to twice
//! its length, a hash map between 7/16 and 7/8 full right after it doubles), free slab
//! slots kept after a peak, the queues' constant `QUEUE_GARBAGE_SLACK`, and the caller's
//! own heap inside `V` or `R` unless it passes it in `value_bytes`/`result_bytes`. So
//! resident memory can exceed the budget by up to about the overhead terms once more,
//! never by the caller's bytes.

use std::mem::size_of;
use std::ops::Bound;

use crate::limits::ALLOC_OVERHEAD_BYTES;
use crate::registry::QueryRef;
use crate::slab::{QueueRef, Slot};
use crate::types::{ResultKind, Span};

/// Bytes one hash map entry of `entry_size` costs at hashbrown's maximum load (7/8),
/// with its one control byte.
pub(crate) const fn map_entry_bytes(entry_size: usize) -> usize {
    ((entry_size + 1) * 8).div_ceil(7)
}

/// The main table's entry: a slab index (the key is in the entry).
pub(crate) const MAP_ENTRY_BYTES: usize = map_entry_bytes(size_of::<u32>());

/// One remembered hash in the ghost: its ring slot and its `hash → sequence` map entry.
pub(crate) const GHOST_SLOT_BYTES: usize =
    size_of::<u64>() + map_entry_bytes(size_of::<(u64, u64)>());

/// Charged to every entry; see the module docs.
pub(crate) const fn fixed_overhead<V, R>() -> usize {
    size_of::<Slot<V, R>>()
        + MAP_ENTRY_BYTES
        + 2 * size_of::<QueueRef>()
        + GHOST_SLOT_BYTES
        + ALLOC_OVERHEAD_BYTES
}

/// A Query result's registry reference, plus (as if it were alone in its partition) the
/// registry map entry `(table, partition) → Vec<QueryRef>` and that `Vec`'s heap block.
pub(crate) const QUERY_OVERHEAD: usize = size_of::<QueryRef>()
    + map_entry_bytes(size_of::<((u32, u64), Vec<QueryRef>)>())
    + ALLOC_OVERHEAD_BYTES;

/// A Scan result's registry reference, plus (as if it were its table's only Scan result)
/// the registry map entry `table → Vec<u32>` and that `Vec`'s heap block.
pub(crate) const SCAN_OVERHEAD: usize =
    size_of::<u32>() + map_entry_bytes(size_of::<(u32, Vec<u32>)>()) + ALLOC_OVERHEAD_BYTES;

pub(crate) fn item<V, R>(key_len: usize, value_bytes: usize) -> usize {
    fixed_overhead::<V, R>()
        .saturating_add(key_len)
        .saturating_add(value_bytes)
}

pub(crate) fn result<V, R>(
    key_len: usize,
    result_bytes: usize,
    kind: ResultKind,
    span: &Span,
) -> usize {
    let base = item::<V, R>(key_len, result_bytes);
    match kind {
        ResultKind::Query => base
            .saturating_add(QUERY_OVERHEAD)
            .saturating_add(bound_bytes(&span.lower))
            .saturating_add(bound_bytes(&span.upper)),
        ResultKind::Scan => base.saturating_add(SCAN_OVERHEAD),
    }
}

/// A bound is kept as a `Box<[u8]>`: its bytes plus a heap block (none when empty).
fn bound_bytes(bound: &Bound<Vec<u8>>) -> usize {
    match bound {
        Bound::Included(b) | Bound::Excluded(b) if !b.is_empty() => b.len() + ALLOC_OVERHEAD_BYTES,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constant covers every `size_of` term its derivation claims, for a few payloads.
    fn check_overhead<V, R>() {
        let claimed = size_of::<Slot<V, R>>()
            + size_of::<u32>()
            + 1
            + 2 * size_of::<QueueRef>()
            + size_of::<u64>()
            + size_of::<(u64, u64)>()
            + 1;
        assert!(fixed_overhead::<V, R>() >= claimed);
        // The map terms are divided by the load factor, not merely added.
        assert!(MAP_ENTRY_BYTES * 7 >= (size_of::<u32>() + 1) * 8);
        assert!(GHOST_SLOT_BYTES * 7 >= (size_of::<(u64, u64)>() + 1) * 8 + 7 * size_of::<u64>());
    }

    #[test]
    fn fixed_overhead_covers_its_terms() {
        check_overhead::<u64, ()>();
        check_overhead::<(u64, u32), Vec<u8>>();
        check_overhead::<[u8; 64], Box<[u8]>>();
        check_overhead::<(), [u64; 32]>();
    }

    #[test]
    fn registry_overheads_cover_their_terms() {
        let control_byte = 1;
        let query_map_entry = size_of::<((u32, u64), Vec<QueryRef>)>() + control_byte;
        assert!(
            QUERY_OVERHEAD
                >= size_of::<QueryRef>() + query_map_entry * 8 / 7 + ALLOC_OVERHEAD_BYTES
        );
        let scan_map_entry = size_of::<(u32, Vec<u32>)>() + control_byte;
        assert!(SCAN_OVERHEAD >= size_of::<u32>() + scan_map_entry * 8 / 7 + ALLOC_OVERHEAD_BYTES);
    }

    #[test]
    fn charges_add_up() {
        let f = fixed_overhead::<u64, ()>();
        assert_eq!(item::<u64, ()>(10, 100), f + 10 + 100);
        let span = Span {
            partition: 7,
            lower: Bound::Included(b"abc".to_vec()),
            upper: Bound::Unbounded,
        };
        assert_eq!(
            result::<u64, ()>(10, 100, ResultKind::Query, &span),
            f + 10 + 100 + QUERY_OVERHEAD + 3 + ALLOC_OVERHEAD_BYTES
        );
        assert_eq!(
            result::<u64, ()>(10, 100, ResultKind::Scan, &span),
            f + 10 + 100 + SCAN_OVERHEAD
        );
    }
}
