//! TTLs on a fake clock: hits before expiry, misses at and after it; 0 disables a cache
//! (Bypass, not counted); per-table overrides; writes restart an item's TTL.

use tern_cache::{CacheConfig, Lookup, Policy, ResultKind, ShardCache, Span, Ttls};

type Cache = ShardCache<u64, u8>;

fn cache(item_ttl_ms: u64, query_ttl_ms: u64) -> Cache {
    Cache::new(CacheConfig {
        budget_bytes: 1 << 20,
        policy: Policy::S3Fifo,
        item_ttl_ms,
        query_ttl_ms,
    })
}

#[test]
fn entries_hit_before_expiry_and_miss_at_it() {
    let mut c = cache(1_000, 500);
    c.fill_item(1, b"k", Some(1), 0, 10);
    c.fill_result(ResultKind::Query, 1, b"q", Span::partition(0), 7, 0, 10);
    assert_eq!(c.get_item(1, b"k", 1_009), Lookup::Hit(Some(1)));
    assert_eq!(
        c.get_result(ResultKind::Query, 1, b"q", 509),
        Lookup::Hit(&7)
    );
    assert_eq!(c.get_result(ResultKind::Query, 1, b"q", 510), Lookup::Miss);
    assert_eq!(c.get_item(1, b"k", 1_010), Lookup::Miss);
    let s = c.stats();
    assert_eq!(
        (s.expirations, s.entries, s.item_misses, s.query_misses),
        (2, 0, 1, 1)
    );
    c.check_invariants();
}

#[test]
fn ttl_zero_disables_a_cache() {
    let mut c = cache(0, 1_000);
    assert!(!c.item_enabled(1) && c.query_enabled(1));
    c.fill_item(1, b"k", Some(1), 0, 0);
    assert_eq!(c.get_item(1, b"k", 0), Lookup::Bypass);
    c.fill_result(ResultKind::Scan, 1, b"s", Span::partition(0), 1, 0, 0);
    assert_eq!(c.get_result(ResultKind::Scan, 1, b"s", 0), Lookup::Hit(&1));

    let mut c = cache(1_000, 0);
    c.fill_result(ResultKind::Query, 1, b"q", Span::partition(0), 1, 0, 0);
    assert_eq!(c.get_result(ResultKind::Query, 1, b"q", 0), Lookup::Bypass);
    let s = c.stats();
    assert_eq!((s.entries, s.query_hits, s.query_misses), (0, 0, 0));
}

#[test]
fn per_table_overrides_and_back_to_global() {
    let mut c = cache(1_000, 1_000);
    c.set_table_ttls(
        2,
        Some(Ttls {
            item_ms: 50,
            query_ms: 0,
        }),
    );
    assert!(c.item_enabled(2) && !c.query_enabled(2) && c.query_enabled(1));
    for t in [1, 2] {
        c.fill_item(t, b"k", Some(u64::from(t)), 0, 0);
    }
    assert_eq!(c.get_item(2, b"k", 49), Lookup::Hit(Some(2)));
    assert_eq!(c.get_item(2, b"k", 50), Lookup::Miss);
    assert_eq!(c.get_item(1, b"k", 50), Lookup::Hit(Some(1)));
    assert_eq!(c.get_result(ResultKind::Query, 2, b"q", 50), Lookup::Bypass);
    c.set_table_ttls(2, None);
    assert_eq!(
        c.ttls(2),
        Ttls {
            item_ms: 1_000,
            query_ms: 1_000
        }
    );
    c.fill_item(2, b"k", Some(2), 0, 100);
    assert_eq!(c.get_item(2, b"k", 1_099), Lookup::Hit(Some(2)));
    c.check_invariants();
}

#[test]
fn a_shorter_ttl_drops_the_tables_entries_of_that_cache_at_once() {
    let mut c = cache(1_000, 1_000);
    for t in [1, 2] {
        c.fill_item(t, b"k", Some(1), 0, 0);
        c.fill_result(ResultKind::Query, t, b"q", Span::partition(0), 1, 0, 0);
    }
    c.set_table_ttls(
        1,
        Some(Ttls {
            item_ms: 10,
            query_ms: 5_000,
        }),
    );
    // Cached under the old, longer TTL: it would outlive the new one, so it is gone.
    assert_eq!(c.get_item(1, b"k", 5), Lookup::Miss);
    // Query TTL got longer: the entry stays.
    assert_eq!(c.get_result(ResultKind::Query, 1, b"q", 5), Lookup::Hit(&1));
    assert_eq!(c.get_item(2, b"k", 5), Lookup::Hit(Some(1)));
    c.check_invariants();
}

#[test]
fn a_write_restarts_the_items_ttl() {
    let mut c = cache(1_000, 1_000);
    c.fill_item(1, b"k", Some(1), 0, 0);
    c.write_item(1, 0, b"k", Some(2), 0, 900);
    assert_eq!(c.get_item(1, b"k", 1_500), Lookup::Hit(Some(2)));
    assert_eq!(c.get_item(1, b"k", 1_900), Lookup::Miss);
}
