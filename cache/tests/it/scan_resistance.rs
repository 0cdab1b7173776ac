//! Scan resistance: a hot set read over and over, interleaved with long one-time scans of
//! cold keys, in a cache that holds about the hot set. LRU lets every scan flush the hot
//! set; S3-FIFO keeps it in its main queue while the cold keys pass through the small one.
//! The trace is deterministic (fixed seed), so the comparison is not flaky.

use tern_cache::{Lookup, Policy, ShardCache};

use crate::{SplitMix, config};

type Cache = ShardCache<u64, ()>;

const HOT_KEYS: u64 = 200;
const CACHE_ENTRIES: usize = 250;
const ROUNDS: usize = 100;
const HOT_READS_PER_ROUND: usize = 400;
const SCAN_LEN: u64 = 500;

/// Read-through: a miss fills. Returns whether it hit.
fn read(c: &mut Cache, key: u64, now_ms: u64) -> bool {
    let k = key.to_be_bytes();
    match c.get_item(1, &k, now_ms) {
        Lookup::Hit(_) => true,
        Lookup::Miss => {
            c.fill_item(1, &k, Some(key), 0, now_ms);
            false
        }
        Lookup::Bypass => unreachable!("cache enabled"),
    }
}

/// Hit ratio on the hot reads.
fn hot_hit_ratio(policy: Policy) -> f64 {
    let budget = CACHE_ENTRIES * Cache::item_charge_bytes(8, 0);
    let mut c = Cache::new(config(budget, policy));
    let mut rng = SplitMix(0x5CA7);
    let mut next_cold = 1u64 << 32;
    let (mut hits, mut reads) = (0u64, 0u64);
    for round in 0..ROUNDS {
        for _ in 0..HOT_READS_PER_ROUND {
            let hit = read(&mut c, rng.below(HOT_KEYS), round as u64);
            // The first rounds warm the cache up; measure the rest.
            if round >= 5 {
                reads += 1;
                hits += u64::from(hit);
            }
        }
        for _ in 0..SCAN_LEN {
            read(&mut c, next_cold, round as u64);
            next_cold += 1;
        }
    }
    c.check_invariants();
    hits as f64 / reads as f64
}

#[test]
fn s3fifo_keeps_the_hot_set_through_scans_and_lru_does_not() {
    let s3fifo = hot_hit_ratio(Policy::S3Fifo);
    let lru = hot_hit_ratio(Policy::Lru);
    println!("hot-set hit ratio with scans: S3-FIFO {s3fifo:.3}, LRU {lru:.3}");
    assert!(s3fifo > 0.9, "S3-FIFO {s3fifo:.3}");
    assert!(s3fifo > lru + 0.25, "S3-FIFO {s3fifo:.3} vs LRU {lru:.3}");
}
