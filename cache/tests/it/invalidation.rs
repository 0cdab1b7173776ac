//! A write invalidates exactly the results it can change: Query results of the same table
//! and partition whose span contains the key, and every Scan result of the same table.

use std::ops::Bound::{self, Excluded, Included, Unbounded};

use tern_cache::{Lookup, ResultKind, ShardCache, Span, Ttls};

use crate::cache;

type Cache = ShardCache<u64, &'static str>;

const TABLE: u32 = 7;
const P: u64 = 0xABCD;

fn b(s: &str) -> Bound<Vec<u8>> {
    Included(s.as_bytes().to_vec())
}

fn cached_query(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Cache {
    let mut c: Cache = cache(1 << 20);
    let span = Span {
        partition: P,
        lower,
        upper,
    };
    c.fill_result(ResultKind::Query, TABLE, b"q", span, "rows", 100, 0);
    assert_eq!(
        c.get_result(ResultKind::Query, TABLE, b"q", 0),
        Lookup::Hit(&"rows")
    );
    c
}

fn still_cached(c: &mut Cache) -> bool {
    c.get_result(ResultKind::Query, TABLE, b"q", 0).is_hit()
}

#[test]
fn a_write_inside_the_span_invalidates_the_query() {
    let mut c = cached_query(b("b"), b("d"));
    let before = c.stats();
    c.write_item(TABLE, P, b"c", Some(1), 10, 0);
    assert_eq!(
        c.get_result(ResultKind::Query, TABLE, b"q", 0),
        Lookup::Miss
    );
    let after = c.stats();
    assert_eq!(after.query_misses, before.query_misses + 1);
    assert_eq!(after.result_invalidations, before.result_invalidations + 1);
    assert_eq!(after.result_entries, 0);
    c.check_invariants();
}

#[test]
fn writes_outside_the_span_partition_or_table_leave_it_cached() {
    let mut c = cached_query(b("b"), b("d"));
    let hits_before = c.stats().query_hits;
    c.write_item(TABLE, P, b"e", Some(1), 10, 0); // after the range
    assert!(still_cached(&mut c));
    c.write_item(TABLE, P, b"a", None, 0, 0); // before it
    assert!(still_cached(&mut c));
    c.write_item(TABLE, P + 1, b"c", Some(1), 10, 0); // another partition
    assert!(still_cached(&mut c));
    c.write_item(TABLE + 1, P, b"c", Some(1), 10, 0); // another table
    assert!(still_cached(&mut c));
    let s = c.stats();
    assert_eq!(s.query_hits, hits_before + 4);
    assert_eq!(s.result_invalidations, 0);
    c.check_invariants();
}

/// (lower, upper, written key, invalidated?)
#[test]
fn bounds_are_inclusive_exclusive_or_open_as_given() {
    let cases: &[(Bound<&str>, Bound<&str>, &str, bool)] = &[
        (Included("b"), Included("d"), "b", true),
        (Included("b"), Included("d"), "d", true),
        (Excluded("b"), Included("d"), "b", false),
        (Included("b"), Excluded("d"), "d", false),
        (Included("b"), Excluded("d"), "cz", true),
        (Unbounded, Excluded("d"), "", true),
        (Included("b"), Unbounded, "zzzz", true),
        (Unbounded, Unbounded, "anything", true),
        // Byte order, not string order of lengths: "ba" sorts between "b" and "c".
        (Excluded("b"), Excluded("c"), "ba", true),
        (Excluded("b"), Excluded("c"), "c\0", false),
    ];
    for (lower, upper, key, invalidated) in cases {
        let own = |bound: &Bound<&str>| bound.map(|s| s.as_bytes().to_vec());
        let mut c = cached_query(own(lower), own(upper));
        c.write_item(TABLE, P, key.as_bytes(), Some(1), 0, 0);
        assert_eq!(
            !still_cached(&mut c),
            *invalidated,
            "{lower:?}..{upper:?} write {key:?}"
        );
    }
}

#[test]
fn only_covering_queries_of_a_partition_are_dropped() {
    let mut c: Cache = cache(1 << 20);
    let spans = [("ab", "a", "b"), ("cd", "c", "d"), ("ad", "a", "d")];
    for (name, lo, hi) in spans {
        let span = Span {
            partition: P,
            lower: b(lo),
            upper: b(hi),
        };
        c.fill_result(
            ResultKind::Query,
            TABLE,
            name.as_bytes(),
            span,
            "rows",
            10,
            0,
        );
    }
    c.write_item(TABLE, P, b"c", Some(1), 0, 0);
    let cached: Vec<bool> = spans
        .iter()
        .map(|(name, _, _)| {
            c.get_result(ResultKind::Query, TABLE, name.as_bytes(), 0)
                .is_hit()
        })
        .collect();
    assert_eq!(cached, [true, false, false]);
    assert_eq!(c.stats().result_invalidations, 2);
    c.check_invariants();
}

#[test]
fn any_write_to_the_table_invalidates_its_scans_and_only_its_scans() {
    let mut c: Cache = cache(1 << 20);
    c.fill_result(
        ResultKind::Scan,
        TABLE,
        b"s",
        Span::partition(0),
        "all",
        100,
        0,
    );
    c.fill_result(
        ResultKind::Scan,
        TABLE + 1,
        b"s",
        Span::partition(0),
        "other",
        100,
        0,
    );
    c.write_item(TABLE + 2, P, b"k", Some(1), 0, 0);
    assert_eq!(
        c.get_result(ResultKind::Scan, TABLE, b"s", 0),
        Lookup::Hit(&"all")
    );
    // Any partition, any key of the table.
    c.write_item(TABLE, 12345, b"zz", None, 0, 0);
    assert_eq!(c.get_result(ResultKind::Scan, TABLE, b"s", 0), Lookup::Miss);
    assert_eq!(
        c.get_result(ResultKind::Scan, TABLE + 1, b"s", 0),
        Lookup::Hit(&"other")
    );
    let s = c.stats();
    assert_eq!(
        (s.scan_hits, s.scan_misses, s.result_invalidations),
        (2, 1, 1)
    );
    c.check_invariants();
}

#[test]
fn query_and_scan_with_the_same_request_bytes_are_distinct() {
    let mut c: Cache = cache(1 << 20);
    c.fill_result(
        ResultKind::Query,
        TABLE,
        b"r",
        Span::partition(P),
        "query",
        10,
        0,
    );
    assert_eq!(c.get_result(ResultKind::Scan, TABLE, b"r", 0), Lookup::Miss);
    c.fill_result(
        ResultKind::Scan,
        TABLE,
        b"r",
        Span::partition(0),
        "scan",
        10,
        0,
    );
    assert_eq!(
        c.get_result(ResultKind::Query, TABLE, b"r", 0),
        Lookup::Hit(&"query")
    );
    assert_eq!(
        c.get_result(ResultKind::Scan, TABLE, b"r", 0),
        Lookup::Hit(&"scan")
    );
}

#[test]
fn writes_update_cached_items_in_place_and_insert_the_others() {
    let mut c: Cache = cache(1 << 20);
    c.fill_item(TABLE, b"k", None, 0, 0);
    assert_eq!(c.get_item(TABLE, b"k", 0), Lookup::Hit(None));
    c.write_item(TABLE, P, b"k", Some(5), 10, 0);
    assert_eq!(c.get_item(TABLE, b"k", 0), Lookup::Hit(Some(5)));
    c.write_item(TABLE, P, b"k", None, 0, 0);
    assert_eq!(c.get_item(TABLE, b"k", 0), Lookup::Hit(None));
    // Not cached before: a write inserts it (DAX's write-through), a Put and a Delete.
    c.write_item(TABLE, P, b"other", Some(1), 10, 0);
    assert_eq!(c.get_item(TABLE, b"other", 0), Lookup::Hit(Some(1)));
    c.write_item(TABLE, P, b"gone", None, 0, 0);
    assert_eq!(c.get_item(TABLE, b"gone", 0), Lookup::Hit(None));
    let s = c.stats();
    assert_eq!((s.item_updates, s.item_entries), (2, 3));
    // A write too large to keep inserts nothing; with the item cache off, neither.
    c.write_item(TABLE, P, b"huge", Some(1), c.max_entry_bytes(), 0);
    assert_eq!(c.get_item(TABLE, b"huge", 0), Lookup::Miss);
    c.set_table_ttls(
        TABLE,
        Some(Ttls {
            item_ms: 0,
            query_ms: 1_000,
        }),
    );
    c.write_item(TABLE, P, b"off", Some(1), 10, 0);
    assert_eq!(c.stats().item_entries, 0);
    c.check_invariants();
}

#[test]
fn a_write_too_large_to_keep_removes_the_item() {
    let mut c: Cache = cache(1 << 20);
    c.fill_item(TABLE, b"k", Some(1), 10, 0);
    c.write_item(TABLE, P, b"k", Some(2), c.max_entry_bytes(), 0);
    assert_eq!(c.get_item(TABLE, b"k", 0), Lookup::Miss);
    assert_eq!(c.stats().item_updates, 1);
    c.check_invariants();
}

#[test]
fn drop_table_removes_every_entry_of_the_table() {
    let mut c: Cache = cache(1 << 20);
    for t in [TABLE, TABLE + 1] {
        c.fill_item(t, b"k", Some(1), 10, 0);
        c.fill_result(ResultKind::Query, t, b"q", Span::partition(P), "q", 10, 0);
        c.fill_result(ResultKind::Scan, t, b"s", Span::partition(0), "s", 10, 0);
    }
    c.drop_table(TABLE);
    c.check_invariants();
    assert_eq!(c.get_item(TABLE, b"k", 0), Lookup::Miss);
    assert_eq!(
        c.get_result(ResultKind::Query, TABLE, b"q", 0),
        Lookup::Miss
    );
    assert_eq!(c.get_result(ResultKind::Scan, TABLE, b"s", 0), Lookup::Miss);
    assert_eq!(c.get_item(TABLE + 1, b"k", 0), Lookup::Hit(Some(1)));
    assert_eq!(c.stats().entries, 3);
    c.clear();
    c.check_invariants();
    assert_eq!((c.stats().entries, c.stats().bytes), (0, 0));
}
