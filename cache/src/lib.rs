//! tern-cache: the DAX-style cache built into every shard (design brief §6). No I/O, no
//! clock reads: every call that needs the time takes the caller's `now_ms`.
//!
//! One [`ShardCache`] per shard, owned by that shard's executor (single-threaded: no
//! locks). It holds two kinds of entries under **one byte budget** and **one eviction
//! policy**:
//!
//! * **item entries**, by (table, key): `Some(v)` for an item the store holds (the value
//!   is opaque here: the server keeps a log location in it), `None` for "not found"
//!   (negative caching). Filled after a miss ([`ShardCache::fill_item`]); a write that
//!   goes through the shard updates a cached entry in place ([`ShardCache::write_item`]).
//! * **result entries** (the query cache), by (kind, table, canonical request bytes):
//!   a whole Query or Scan result. Unlike DAX, writes invalidate them: a write drops the
//!   Query results whose [`Span`] (partition + key range) contains the written key, found
//!   through a `(table, partition)` registry in O(results of that partition), and every
//!   Scan result of the table.
//!
//! Budget: every entry is charged its bytes *and* the memory the cache keeps for it
//! (`charge`); `bytes_used <= budget_bytes` after every call. Eviction is S3-FIFO
//! (`s3fifo`), scan-resistant and O(1) amortized, or LRU (`lru`) as the baseline. TTLs:
//! global per cache, overridable per table; 0 disables a cache ([`Lookup::Bypass`]);
//! expired entries are misses and are dropped where they are found.
//!
//! Modules: `shard` (the cache), `slab` (entry storage), `s3fifo` and `lru` (eviction),
//! `registry` (what a write invalidates), `charge` (what an entry costs), `stats`
//! (counters), `types` (public plain types), `limits` (every bound and constant).
#![forbid(unsafe_code)]

mod charge;
pub mod limits;
mod lru;
mod registry;
mod s3fifo;
mod shard;
mod slab;
mod stats;
mod types;

pub use limits::DEFAULT_TTL_MS;
pub use shard::{EntryRef, ShardCache};
pub use stats::CacheStats;
pub use types::{CacheConfig, Lookup, Policy, ResultKind, Span, Ttls};
