//! tern-cache integration tests, one binary: invalidation precision, the byte budget,
//! scan resistance (S3-FIFO against LRU) and TTLs.

mod budget;
mod invalidation;
mod scan_resistance;
mod ttl;

use tern_cache::{CacheConfig, Policy, ShardCache};

/// TTLs long enough not to matter unless a test advances the clock on purpose.
pub const LONG_TTL_MS: u64 = 1_000_000;

pub fn config(budget_bytes: usize, policy: Policy) -> CacheConfig {
    CacheConfig {
        budget_bytes,
        policy,
        item_ttl_ms: LONG_TTL_MS,
        query_ttl_ms: LONG_TTL_MS,
    }
}

pub fn cache<V: Clone, R>(budget_bytes: usize) -> ShardCache<V, R> {
    ShardCache::new(config(budget_bytes, Policy::S3Fifo))
}

/// SplitMix64: a small deterministic generator for traces and sizes.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
