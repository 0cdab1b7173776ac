//! Every bound of the client-socket transports, in one place.
//!
//! Protocol bounds (frame size, requests in flight per connection) live in
//! `tern_protocol::limits`; these are the transport's own: ring sizes, receive buffers,
//! how much a connection may have queued, how many connections a core holds.

use tern_protocol::frame::HEADER_LEN;
use tern_protocol::limits::FRAME_BODY_MAX_BYTES;

/// Submission queue entries of a core's client-socket ring. A full SQ is submitted early,
/// so this bounds a batch, not the number of operations in flight.
pub const RING_SQ_ENTRIES: u32 = 1024;
/// Completion queue entries. Sized for a batch of every receive buffer completing at once
/// plus one send per connection; past it the kernel buffers overflow (FEAT_NODROP).
pub const RING_CQ_ENTRIES: u32 = 8192;

/// Provided receive buffers per core (one buffer group, registered as a buffer ring).
/// Power of two, at most 32768 (kernel limit).
pub const RECV_BUFFER_COUNT: u16 = 512;
/// Size of one provided receive buffer. Frames that fit in one are parsed in place.
pub const RECV_BUFFER_SIZE_BYTES: usize = 16 * 1024;
/// Buffer group id of the receive buffers in a core's ring.
pub const RECV_BUFFER_GROUP: u16 = 0;

/// Connections one core serves at once; a connection accepted past it is closed at once.
pub const CONNECTIONS_PER_CORE_MAX: usize = 64 * 1024;

/// Reply bytes a connection may have queued (produced but not yet sent) before the
/// transport stops reading its requests (backpressure).
pub const UNSENT_PER_CONNECTION_MAX_BYTES: usize = 16 * 1024 * 1024;
/// A paused connection resumes reading once its queued reply bytes fall to this.
pub const UNSENT_RESUME_BYTES: usize = UNSENT_PER_CONNECTION_MAX_BYTES / 4;

/// Largest frame a connection may need to assemble in its own buffer.
pub const FRAME_MAX_BYTES: usize = HEADER_LEN + FRAME_BODY_MAX_BYTES;

/// A connection's buffers keep at most this much capacity once they are empty again; a
/// burst (a 20 MiB frame) does not pin its memory for the connection's lifetime.
pub const BUFFER_RETAIN_BYTES: usize = 256 * 1024;

/// Receive buffer of one connection in the glommio-socket transport.
pub const GLOMMIO_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Listen backlog of every listener.
pub const LISTEN_BACKLOG: i32 = 1024;

/// After an accept fails for lack of resources (EMFILE, ENFILE, ENOMEM), wait this long
/// before accepting again, instead of spinning on the error.
pub const ACCEPT_RETRY_DELAY_MS: u64 = 100;

/// The client-socket ring's transport, when idle, looks at its ring at least this often
/// even without a signal: a bound on any wake-up the kernel might fail to deliver. (It
/// was 10 ms; with the COOP_TASKRUN ring no request waits for it — lone SETs' p99 105
/// µs — and every idle shard of the three local nodes woke 100 times a second for it.)
pub const IDLE_RECHECK_MS: u64 = 100;

/// At shutdown, how long to wait for the kernel to finish cancelled operations before
/// giving up (and leaking the receive buffers rather than freeing memory the kernel might
/// still write).
pub const SHUTDOWN_DRAIN_TIMEOUT_MS: u64 = 2_000;

/// glommio locked I/O memory that a transport-only executor needs. glommio's default
/// (10 MiB) exceeds the 8 MiB memlock limit most non-root users have.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 1024 * 1024;

const _: () = assert!(RECV_BUFFER_COUNT.is_power_of_two() && RECV_BUFFER_COUNT <= 32768);
const _: () =
    assert!(RECV_BUFFER_SIZE_BYTES >= HEADER_LEN && RECV_BUFFER_SIZE_BYTES <= u32::MAX as usize);
const _: () = assert!(RING_CQ_ENTRIES >= RING_SQ_ENTRIES);
const _: () = assert!(CONNECTIONS_PER_CORE_MAX <= u32::MAX as usize);
const _: () = assert!(UNSENT_RESUME_BYTES < UNSENT_PER_CONNECTION_MAX_BYTES);
