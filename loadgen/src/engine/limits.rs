//! Every bound of the engine, in one place.

use std::time::Duration;

/// Most engine threads.
pub const THREADS_MAX: usize = 1024;
/// Most connections one thread drives.
pub const CONNECTIONS_PER_THREAD_MAX: usize = 16 * 1024;
/// Most requests one connection keeps in flight (the slot index is 16 bits of the
/// request id).
pub const DEPTH_MAX: usize = 8192;
/// Depth of the preload when the run's own depth is lower: loading is throughput work.
pub const LOAD_DEPTH_MIN: usize = 64;

/// Provided receive buffers per thread (one buffer group, registered as a buffer ring).
/// Power of two, at most 32768 (kernel limit).
pub const RECV_BUFFER_COUNT: u16 = 512;
/// Size of one provided receive buffer. Replies that fit are parsed in place.
pub const RECV_BUFFER_SIZE_BYTES: usize = 32 * 1024;
/// Buffer group id of the receive buffers.
pub const RECV_BUFFER_GROUP: u16 = 0;
/// A split reply is reassembled in a connection's own buffer; a reply larger than this
/// (bigger than any tern frame) ends the connection.
pub const REASSEMBLY_MAX_BYTES: usize =
    tern_protocol::frame::HEADER_LEN + tern_protocol::limits::FRAME_BODY_MAX_BYTES;
/// Bytes moved into the reassembly buffer at least per step when a protocol cannot tell
/// a split reply's length yet (RESP arrays): bounds the re-parsing of its front.
pub const REASSEMBLY_STEP_MIN_BYTES: usize = 256;
/// Completions moved out of the CQ per reap.
pub const REAP_BATCH: usize = 4096;

/// How often each thread hands its recorder to the main thread (one live line each).
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How often preload threads report progress.
pub const LOAD_INTERVAL: Duration = Duration::from_millis(200);
/// Longest sleep in the kernel: a thread looks at its abort flag at least this often.
pub const WAIT_MAX: Duration = Duration::from_millis(50);
/// After its last operation was issued, a thread waits this long for the replies still
/// owed; those that do not come count as errors.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// With requests in flight and no reply for this long, a thread gives up on the run (its
/// outstanding operations count as errors): a server that stopped answering must not hang
/// the load generator.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long shutting a thread's ring down may wait for the kernel to finish cancelled
/// operations before leaking the receive buffers instead of freeing them.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Open loop: a request sent this late after its intended time counts as late (the
/// generator or its connections could not keep the schedule).
pub const LATE_SEND_THRESHOLD: Duration = Duration::from_millis(1);
/// Open loop: operations queued for busy connections, beyond the C×P in flight, per
/// thread, as a multiple of C×P. Past it the schedule's backlog waits undrawn (its
/// intended times are kept: latency still counts from them).
pub const OPEN_LOOP_QUEUE_FACTOR: usize = 1;
/// Connecting and the setup exchange (Hello, CreateTable) time out after this.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct error messages kept per thread for the report.
pub const ERROR_SAMPLES_MAX: usize = 4;

const _: () = assert!(RECV_BUFFER_COUNT.is_power_of_two() && RECV_BUFFER_COUNT <= 32768);
const _: () = assert!(DEPTH_MAX <= 1 << 16);
const _: () = assert!(RECV_BUFFER_SIZE_BYTES <= u32::MAX as usize);
