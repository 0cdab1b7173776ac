//! The S3-FIFO moves and the LRU order, observed through the entries' queue and frequency.

use super::*;
use crate::limits::PROMOTE_MIN_FREQ;

type Cache = ShardCache<u64, ()>;

/// Every test key is 2 bytes, every value charged 0 bytes: all entries cost `unit()`.
fn unit() -> usize {
    Cache::item_charge_bytes(2, 0)
}

fn key(i: u16) -> [u8; 2] {
    i.to_be_bytes()
}

/// A cache that holds exactly `n` test entries; S's share is `n / 10` of them. `n` must
/// be at least `MAX_ENTRY_BUDGET_DIVISOR` for an entry to be admitted at all.
fn cache(n: usize, policy: Policy) -> Cache {
    Cache::new(CacheConfig {
        budget_bytes: n * unit(),
        policy,
        item_ttl_ms: 1_000,
        query_ttl_ms: 1_000,
    })
}

fn fill(c: &mut Cache, i: u16, now_ms: u64) {
    c.fill_item(1, &key(i), Some(u64::from(i)), 0, now_ms);
    c.check_invariants();
}

fn hit(c: &mut Cache, i: u16) {
    assert_eq!(c.get_item(1, &key(i), 0), Lookup::Hit(Some(u64::from(i))));
}

fn state(c: &Cache, i: u16) -> Option<(Queue, u8)> {
    c.item_state(1, &key(i))
}

#[test]
fn new_entries_go_to_small_and_frequency_saturates() {
    let mut c = cache(20, Policy::S3Fifo);
    fill(&mut c, 0, 0);
    assert_eq!(state(&c, 0), Some((Queue::Small, 0)));
    for expected in [1, 2, 3, 3] {
        hit(&mut c, 0);
        assert_eq!(state(&c, 0), Some((Queue::Small, expected)));
    }
}

#[test]
fn accessed_small_head_moves_to_main_and_unaccessed_goes_to_ghost() {
    let mut c = cache(20, Policy::S3Fifo);
    for i in 0..20 {
        fill(&mut c, i, 0);
    }
    for _ in 0..PROMOTE_MIN_FREQ {
        hit(&mut c, 0);
    }
    assert_eq!(c.stats().evictions, 0);
    // Full: the next fill pops S's head (0, accessed: to M with frequency 0), then 1
    // (never accessed: evicted, its hash remembered).
    fill(&mut c, 20, 0);
    assert_eq!(state(&c, 0), Some((Queue::Main, 0)));
    assert_eq!(state(&c, 1), None);
    assert_eq!(state(&c, 20), Some((Queue::Small, 0)));
    assert_eq!(c.ghost_len(), 1);
    let s = c.stats();
    assert_eq!(
        (s.evictions, s.evicted_bytes, s.entries),
        (1, unit() as u64, 20)
    );
}

#[test]
fn ghost_hit_readmits_straight_into_main() {
    let mut c = cache(20, Policy::S3Fifo);
    for i in 0..21 {
        fill(&mut c, i, 0);
    }
    // 0 was evicted from S unaccessed and is in the ghost.
    assert_eq!(state(&c, 0), None);
    assert_eq!(c.ghost_len(), 1);
    assert_eq!(c.get_item(1, &key(0), 0), Lookup::Miss);
    fill(&mut c, 0, 0);
    assert_eq!(state(&c, 0), Some((Queue::Main, 0)));
    // Room for it came from S's head (1), which took 0's place in the ghost.
    assert_eq!(state(&c, 1), None);
    assert_eq!(c.ghost_len(), 1);
    // A key never seen before still goes to S.
    fill(&mut c, 100, 0);
    assert_eq!(state(&c, 100), Some((Queue::Small, 0)));
}

#[test]
fn main_reinserts_accessed_entries_with_one_access_less() {
    let mut c = cache(20, Policy::S3Fifo);
    for i in 0..20 {
        fill(&mut c, i, 0);
    }
    for i in 0..18 {
        for _ in 0..PROMOTE_MIN_FREQ {
            hit(&mut c, i);
        }
    }
    // Promotes 0..18 to M, evicts 18: S = {19, 20} is at its share (2 of 20).
    fill(&mut c, 20, 0);
    assert_eq!(state(&c, 18), None);
    for i in 0..18 {
        assert_eq!(state(&c, i), Some((Queue::Main, 0)));
    }
    hit(&mut c, 0);
    hit(&mut c, 0);
    assert_eq!(state(&c, 0), Some((Queue::Main, 2)));
    // S is not above its share: evict from M. 0 (frequency 2) is reinserted at M's tail
    // with frequency 1; 1 (frequency 0) is evicted.
    fill(&mut c, 21, 0);
    assert_eq!(state(&c, 0), Some((Queue::Main, 1)));
    assert_eq!(state(&c, 1), None);
    // M's eviction does not feed the ghost (only S's does).
    assert_eq!(c.ghost_len(), 1);
}

#[test]
fn expired_entries_met_by_eviction_count_as_expirations() {
    let mut c = cache(20, Policy::S3Fifo);
    for i in 0..20 {
        fill(&mut c, i, 0);
    }
    // TTL 1000: everything cached at 0 is expired at 1000.
    fill(&mut c, 20, 1_000);
    let s = c.stats();
    assert_eq!((s.evictions, s.expirations), (0, 1));
    // Expired S entries are not remembered in the ghost.
    assert_eq!(c.ghost_len(), 0);
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let mut c = cache(20, Policy::Lru);
    for i in 0..20 {
        fill(&mut c, i, 0);
    }
    hit(&mut c, 0);
    fill(&mut c, 20, 0);
    assert_eq!(state(&c, 0), Some((Queue::Lru, 0)));
    assert_eq!(state(&c, 1), None);
    fill(&mut c, 21, 0);
    assert_eq!(state(&c, 2), None);
    assert_eq!(c.stats().evictions, 2);
}

#[test]
fn queue_garbage_is_compacted() {
    let mut c = cache(400, Policy::S3Fifo);
    // Entries removed out of FIFO order (replacement by a refill) leave dead references;
    // check_invariants (in fill) asserts they never exceed live + QUEUE_GARBAGE_SLACK.
    for round in 0..5 {
        for i in 0..300 {
            fill(&mut c, i, round);
        }
    }
    assert_eq!(c.stats().entries, 300);
}

#[test]
fn inline_bytes_follow_writes_and_a_stale_reference_finds_nothing() {
    let mut c = cache(100, Policy::S3Fifo);
    c.fill_item_inline(1, &key(1), Some(1), b"abc", 3, 0);
    let Lookup::Hit((Some(1), r)) = c.get_item_ref(1, &key(1), 0) else {
        panic!("filled key missed");
    };
    assert_eq!(c.item_blob(r), Some(&b"abc"[..]));
    // Same length: in place; longer: a new block; a delete: no bytes.
    c.write_item_inline(1, 0, &key(1), Some(2), b"xyz", 3, 0);
    assert_eq!(c.item_blob(r), Some(&b"xyz"[..]));
    c.write_item_inline(1, 0, &key(1), Some(3), b"longer", 6, 0);
    assert_eq!(c.item_blob(r), Some(&b"longer"[..]));
    c.write_item_inline(1, 0, &key(1), None, b"", 0, 0);
    assert_eq!(c.item_blob(r), Some(&b""[..]));
    c.check_invariants();
    // Once the entry is gone, its reference finds nothing, even with the slot reused.
    c.drop_table(1);
    assert_eq!(c.item_blob(r), None);
    c.fill_item_inline(1, &key(2), Some(2), b"new", 3, 0);
    assert_eq!(c.item_blob(r), None);
    c.check_invariants();
}
