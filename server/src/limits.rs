//! The contract between the crates' limits, checked when the server is built.
//!
//! Each crate names its own bounds once (`tern_protocol::limits`, `tern_storage::limits`,
//! `net::limits`); this module is where they meet. Every assertion here is a promise one
//! crate makes to another: break one and the build fails, instead of a shard panicking
//! on the first request that finds the gap.
//!
//! The server's own bounds are here too.

use tern_protocol::limits::{
    BATCH_GET_RESPONSE_MAX_BYTES, FRAME_BODY_MAX_BYTES, INDEX_KEY_MAX_BYTES,
    ITEM_ENCODED_MAX_BYTES, PAGE_ENCODED_MAX_BYTES,
};
use tern_storage::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use tern_storage::limits::{KEY_MAX_BYTES, RECORD_MAX_BYTES};

/// The smallest segment `ternd` accepts: one record of the largest item fits.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = (SEGMENT_HEADER_LEN + RECORD_MAX_BYTES) as u64;

/// Shutdown: how long a shard may take to send what its connections are owed and to
/// write what its log holds, after the transport stopped. Past it the shard gives up
/// waiting (acknowledged writes are durable already with `--durability sync`).
pub const SHUTDOWN_DRAIN_LOG_TIMEOUT_MS: u64 = 10_000;

/// Shutdown: after a stop was asked, the node exits at the latest this much later, whatever
/// is still pending (the main thread's watchdog; a second signal exits at once).
pub const SHUTDOWN_DEADLINE_MS: u64 = 20_000;

/// Scheduling: how long a shard's client-socket transport may stay busy before it gives
/// glommio's reactor a turn. glommio reaps its own ring (the log's writes and fdatasyncs,
/// timers, the mesh) only when the executor parks or its preemption timer fires (100 ms),
/// and the transport never parks while it has work: under saturating load the flusher and
/// every deferred reply waited up to that long. So every this-many µs of busy time the
/// transport waits out a 1 µs glommio timer, which the reactor fires on its next poll.
/// (Not a shorter executor preemption timer: with a 200 µs one, about one two-shard start
/// in ten never finished joining the channel mesh, an executor sleeping through its peer,
/// glommio 0.9; and a `Latency::Matters` transport queue made a restarted node's shard
/// stop answering in the kill -9 test.)
pub const REACTOR_TURN_US: u64 = 200;

/// Startup: once every shard recovered, how long the node waits for every shard to join the
/// channel meshes and accept on its sockets (no disk work, milliseconds when healthy)
/// before it gives up and exits with an error instead of hanging unready.
pub const STARTUP_SERVING_TIMEOUT_MS: u64 = 30_000;

/// Startup: how long to keep retrying a port that is still in use (a killed predecessor's
/// listening sockets are released by the kernel asynchronously).
pub const BIND_RETRY_TIMEOUT_MS: u64 = 10_000;
/// Startup: the pause between two binds of a port that is in use.
pub const BIND_RETRY_INTERVAL_MS: u64 = 50;

/// The cache: items up to this many bytes are kept inline in their cache entry (one copy
/// at write or fill), so a GetItem hit reads the entry alone instead of also the log
/// record in its mapped segment (a second cache miss and often a TLB miss per hit). A copy
/// this size costs less than the memory miss it saves; larger items are served from the
/// log's map as before, which copies nothing.
pub const CACHE_INLINE_ITEM_MAX_BYTES: usize = 4096;

// Every index key the protocol can produce is a key the log and the index take.
const _: () = assert!(INDEX_KEY_MAX_BYTES <= KEY_MAX_BYTES);
// Every item the protocol accepts, under its longest key, is one log record.
const _: () =
    assert!(RECORD_HEADER_LEN + INDEX_KEY_MAX_BYTES + ITEM_ENCODED_MAX_BYTES <= RECORD_MAX_BYTES);
// Whatever the log holds (any record, from any build that shares this format) can be
// sent back in one frame, and one such item always fits an empty page or batch reply,
// so reads always make progress.
const _: () = assert!(RECORD_MAX_BYTES + 64 * 1024 <= FRAME_BODY_MAX_BYTES);
const _: () = assert!(RECORD_MAX_BYTES + 8 <= PAGE_ENCODED_MAX_BYTES);
const _: () = assert!(RECORD_MAX_BYTES + 8 <= BATCH_GET_RESPONSE_MAX_BYTES);
// A reactor turn far more often than one fdatasync (~100-500 µs) would be pure overhead;
// far less often, a busy transport would stretch every group commit.
const _: () = assert!(REACTOR_TURN_US >= 50 && REACTOR_TURN_US <= 1_000);
// Inline cache bytes are a small share of what an item can be.
const _: () = assert!(CACHE_INLINE_ITEM_MAX_BYTES <= ITEM_ENCODED_MAX_BYTES / 64);
// Shutdown's phases fit in its deadline.
const _: () = assert!(
    SHUTDOWN_DRAIN_LOG_TIMEOUT_MS + crate::net::limits::SHUTDOWN_DRAIN_TIMEOUT_MS
        < SHUTDOWN_DEADLINE_MS
);
