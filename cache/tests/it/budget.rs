//! The byte budget is a hard bound, and what is charged is honest: negative entries,
//! keys, spans and the fixed overhead all count; entries above the max are refused.

use std::ops::Bound;

use tern_cache::{Lookup, Policy, ResultKind, ShardCache, Span};

use crate::{SplitMix, config};

type Cache = ShardCache<u64, u32>;

#[test]
fn random_fills_and_writes_never_exceed_the_budget() {
    for policy in [Policy::S3Fifo, Policy::Lru] {
        let budget = 64 * 1024;
        let mut c = Cache::new(config(budget, policy));
        let mut rng = SplitMix(7);
        let max_entry = c.max_entry_bytes() as u64;
        let mut refused = 0;
        let mut late_peak = 0;
        for i in 0..20_000u64 {
            let key = rng.below(2_000).to_be_bytes();
            // Sizes from 0 to twice the largest admissible entry.
            let size = rng.below(2 * max_entry) as usize;
            match rng.below(4) {
                0 => c.write_item(1, rng.below(8), &key, Some(i), size, i),
                1 => {
                    let span = Span {
                        partition: rng.below(8),
                        lower: Bound::Included(key[..4].to_vec()),
                        upper: Bound::Unbounded,
                    };
                    c.fill_result(ResultKind::Query, 1, &key, span, 0, size, i);
                }
                _ => {
                    let value = if rng.below(3) == 0 { None } else { Some(i) };
                    c.fill_item(1, &key, value, size, i);
                    if Cache::item_charge_bytes(key.len(), size) > c.max_entry_bytes() {
                        refused += 1;
                        assert_eq!(
                            c.get_item(1, &key, i),
                            Lookup::Miss,
                            "oversized entry cached"
                        );
                    }
                }
            }
            let s = c.stats();
            assert!(s.bytes <= s.budget_bytes, "{policy:?}: {s:?}");
            if i >= 19_000 {
                late_peak = late_peak.max(s.bytes);
            }
            if i.is_multiple_of(512) {
                c.check_invariants();
            }
        }
        let s = c.stats();
        assert!(refused > 0 && s.evictions > 0, "{policy:?}: {s:?}");
        // The cache runs full: after thousands of evictions it comes within one entry of
        // the budget (at the peaks: a write that shrinks an entry or an invalidation can
        // leave it lower at any one moment, such as the last).
        assert!(late_peak > s.budget_bytes - max_entry, "{policy:?}: {s:?}");
        c.check_invariants();
    }
}

#[test]
fn an_entry_at_the_max_is_admitted_and_one_byte_more_is_refused() {
    let mut c = Cache::new(config(160_000, Policy::S3Fifo));
    let max = c.max_entry_bytes();
    assert_eq!(max, 10_000);
    let at_max = max - Cache::item_charge_bytes(1, 0);
    c.fill_item(1, b"a", Some(1), at_max, 0);
    assert_eq!(c.get_item(1, b"a", 0), Lookup::Hit(Some(1)));
    assert_eq!(c.stats().bytes, max as u64);
    c.fill_item(1, b"b", Some(1), at_max + 1, 0);
    assert_eq!(c.get_item(1, b"b", 0), Lookup::Miss);
    // A refused fill replaces nothing and evicts nothing.
    assert_eq!((c.stats().entries, c.stats().evictions), (1, 0));
    // Same for results: the span's bytes count.
    let span = Span {
        partition: 1,
        lower: Bound::Included(vec![0; 100]),
        upper: Bound::Excluded(vec![1; 100]),
    };
    let fits = max - Cache::result_charge_bytes(ResultKind::Query, 1, &span, 0);
    c.fill_result(ResultKind::Query, 1, b"q", span.clone(), 9, fits + 1, 0);
    assert_eq!(c.get_result(ResultKind::Query, 1, b"q", 0), Lookup::Miss);
    c.fill_result(ResultKind::Query, 1, b"q", span, 9, fits, 0);
    assert_eq!(c.get_result(ResultKind::Query, 1, b"q", 0), Lookup::Hit(&9));
    c.check_invariants();
}

#[test]
fn negative_entries_keys_and_spans_are_charged() {
    let mut c = Cache::new(config(1 << 20, Policy::S3Fifo));
    c.fill_item(1, b"missing", None, 0, 0);
    let negative = c.stats().bytes as usize;
    assert_eq!(negative, Cache::item_charge_bytes(7, 0));
    assert!(negative >= Cache::FIXED_OVERHEAD + (1 + 4 + 7));
    c.fill_item(1, b"present", Some(1), 1_000, 0);
    assert_eq!(
        c.stats().bytes as usize,
        negative + Cache::item_charge_bytes(7, 1_000)
    );
    // A longer key costs its extra length (it is stored once, in the entry).
    assert_eq!(
        Cache::item_charge_bytes(17, 0) - Cache::item_charge_bytes(7, 0),
        10
    );
    let narrow = Span::partition(1);
    let wide = Span {
        partition: 1,
        lower: Bound::Included(vec![0; 50]),
        upper: Bound::Unbounded,
    };
    let extra = Cache::result_charge_bytes(ResultKind::Query, 1, &wide, 0)
        - Cache::result_charge_bytes(ResultKind::Query, 1, &narrow, 0);
    assert!(extra > 50, "span bounds are charged");
}

#[test]
fn a_fill_evicts_until_it_fits() {
    let unit = Cache::item_charge_bytes(8, 0);
    // 64 units: the largest entry is 4 units.
    let mut c = Cache::new(config(64 * unit, Policy::S3Fifo));
    for i in 0..64u64 {
        c.fill_item(1, &i.to_be_bytes(), Some(i), 0, 0);
    }
    assert_eq!(
        (c.stats().entries, c.stats().bytes as usize),
        (64, 64 * unit)
    );
    // One entry worth two units: two evictions, then it is in.
    c.fill_item(1, &99u64.to_be_bytes(), Some(99), unit, 0);
    let s = c.stats();
    assert_eq!(
        (s.evictions, s.entries, s.bytes as usize),
        (2, 63, 64 * unit)
    );
    assert_eq!(
        c.get_item(1, &99u64.to_be_bytes(), 0),
        Lookup::Hit(Some(99))
    );
    // A write that grows a cached item to 4 units evicts two more to stay in budget.
    c.write_item(1, 0, &99u64.to_be_bytes(), Some(100), 3 * unit, 0);
    let s = c.stats();
    assert_eq!(
        (s.evictions, s.entries, s.bytes as usize),
        (4, 61, 64 * unit)
    );
    assert_eq!(
        c.get_item(1, &99u64.to_be_bytes(), 0),
        Lookup::Hit(Some(100))
    );
    c.check_invariants();
}
