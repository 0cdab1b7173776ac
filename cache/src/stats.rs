//! The cache's counters and gauges, under names modelled on DAX's CloudWatch metrics.

/// A snapshot of one shard cache's counters (monotonic) and gauges (current values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub item_hits: u64,
    pub item_misses: u64,
    pub query_hits: u64,
    pub query_misses: u64,
    pub scan_hits: u64,
    pub scan_misses: u64,
    /// Entries removed to make room (expired ones met by eviction count as expirations).
    pub evictions: u64,
    pub evicted_bytes: u64,
    /// Entries found expired, by a lookup or by eviction.
    pub expirations: u64,
    /// Item entries updated or removed by a write (write-through).
    pub item_updates: u64,
    /// Query/Scan result entries removed by a write.
    pub result_invalidations: u64,
    /// Gauge: bytes charged to live entries.
    pub bytes: u64,
    /// Gauge: the byte budget.
    pub budget_bytes: u64,
    /// Gauge: live entries (item + result).
    pub entries: u64,
    pub item_entries: u64,
    pub result_entries: u64,
}

impl CacheStats {
    /// Every counter and gauge under its metric name, in a fixed order.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("ItemCacheHits", self.item_hits),
            ("ItemCacheMisses", self.item_misses),
            ("QueryCacheHits", self.query_hits),
            ("QueryCacheMisses", self.query_misses),
            ("ScanCacheHits", self.scan_hits),
            ("ScanCacheMisses", self.scan_misses),
            ("CacheEvictions", self.evictions),
            ("CacheEvictedBytes", self.evicted_bytes),
            ("CacheExpirations", self.expirations),
            ("CacheItemUpdates", self.item_updates),
            ("CacheResultInvalidations", self.result_invalidations),
            ("CacheBytes", self.bytes),
            ("CacheBudgetBytes", self.budget_bytes),
            ("CacheEntries", self.entries),
            ("ItemCacheEntries", self.item_entries),
            ("QueryCacheEntries", self.result_entries),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_unique_and_complete() {
        let stats = CacheStats {
            item_hits: 1,
            item_misses: 2,
            query_hits: 3,
            query_misses: 4,
            scan_hits: 5,
            scan_misses: 6,
            evictions: 7,
            evicted_bytes: 8,
            expirations: 9,
            item_updates: 10,
            result_invalidations: 11,
            bytes: 12,
            budget_bytes: 13,
            entries: 14,
            item_entries: 15,
            result_entries: 16,
        };
        let counters = stats.counters();
        let values: Vec<u64> = counters.iter().map(|&(_, v)| v).collect();
        assert_eq!(values, (1..=16).collect::<Vec<u64>>());
        let mut names: Vec<&str> = counters.iter().map(|&(n, _)| n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 16);
    }
}
