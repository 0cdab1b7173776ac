//! Lookups do not allocate: the composite key is built in a reused scratch buffer, hashed,
//! and compared with the entry's own; an overwrite of a same-sized inline item reuses
//! the entry's block. Checked with a counting global allocator (its own test
//! binary, one test, so no other thread allocates while it counts).
// The allocator wrapper is the only unsafe code: it forwards to `System` unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_cache::{CacheConfig, Lookup, ResultKind, ShardCache, Span};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
// guarantees hold; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn hits_misses_and_in_place_writes_do_not_allocate() {
    let mut c: ShardCache<u64, u64> = ShardCache::new(CacheConfig::with_budget(1 << 20));
    let long_key = [7u8; 200];
    c.fill_item(1, &long_key, Some(1), 10, 0);
    let span = Span {
        partition: 3,
        lower: Bound::Included(vec![0]),
        upper: Bound::Unbounded,
    };
    c.fill_result(ResultKind::Query, 1, &long_key, span, 5, 10, 0);
    let n = allocations_during(|| {
        for _ in 0..100 {
            assert_eq!(c.get_item(1, &long_key, 1), Lookup::Hit(Some(1)));
            assert_eq!(c.get_item(1, b"absent", 1), Lookup::Miss);
            assert_eq!(
                c.get_result(ResultKind::Query, 1, &long_key, 1),
                Lookup::Hit(&5)
            );
            assert_eq!(
                c.get_result(ResultKind::Scan, 1, b"absent", 1),
                Lookup::Miss
            );
            // A write that updates the item and invalidates nothing.
            c.write_item(1, 4, &long_key, Some(1), 10, 1);
        }
    });
    assert_eq!(n, 0, "allocations on the lookup path");
    inline_hits_and_same_sized_overwrites_do_not_allocate();
}

/// Part of the one test (see the module doc).
fn inline_hits_and_same_sized_overwrites_do_not_allocate() {
    let mut c: ShardCache<u64, u64> = ShardCache::new(CacheConfig::with_budget(1 << 20));
    let key = [7u8; 20];
    c.fill_item_inline(1, &key, Some(1), &[1; 100], 100, 0);
    let n = allocations_during(|| {
        for round in 0..100u8 {
            let Lookup::Hit((Some(_), entry)) = c.get_item_ref(1, &key, 1) else {
                panic!("a miss on a filled key");
            };
            assert_eq!(c.item_blob(entry), Some(&[round.wrapping_add(1); 100][..]));
            let next = [round.wrapping_add(2); 100];
            c.write_item_inline(1, 4, &key, Some(1), &next, 100, 1);
        }
    });
    assert_eq!(n, 0, "allocations on the inline hit and overwrite path");
}
