//! The unsafe edges of the client-socket transports, kept in one place.
//!
//! * [`Ring`]: a core's own io_uring ring (the `io-uring` crate): creation with
//!   SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG, the eventfd registration, the few operations the
//!   transport submits, entering the kernel and reaping completions.
//! * [`BufRing`] (from tern-uring, shared by the server and the load generator): the
//!   provided-buffer ring that multishot receives fill.
//! * fd ownership hand-offs: an eventfd into a glommio file, a listener into glommio, an
//!   accepted fd into an `OwnedFd`.
//! * [`coarse_monotonic_ms`]: the cache's cheap clock (CLOCK_MONOTONIC_COARSE).
//!
//! The contract with the rest of `net`: a buffer passed to [`Ring::send`] stays alive and
//! untouched until that send's completion is reaped (the uring transport never touches a
//! connection's in-flight send buffer and frees a connection only after all its operations
//! completed), and [`BufRing`] outlives every receive that may write into it.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{IoUring, opcode, squeue, types};

/// One reaped completion (shared with the other io_uring user, in tern-uring).
pub(crate) use tern_uring::Completion;

/// Creates the eventfd a ring signals when it has completions (or deferred work) for us.
///
/// Blocking on purpose: glommio reads it through its own ring, and io_uring returns
/// EAGAIN to userspace for O_NONBLOCK files instead of waiting for readiness.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd(2); nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Hands an eventfd to glommio as a file, so reads of it go through glommio's ring and a
/// task can await it while the executor parks normally.
pub(crate) fn eventfd_into_glommio(fd: OwnedFd) -> glommio::io::BufferedFile {
    // SAFETY: ownership of the open fd moves into the BufferedFile, which closes it.
    unsafe { <glommio::io::BufferedFile as FromRawFd>::from_raw_fd(fd.into_raw_fd()) }
}

/// Hands a bound, listening socket to glommio; also returns its fd (glommio does not
/// expose it), valid as long as the glommio listener lives.
pub(super) fn listener_into_glommio(
    listener: std::net::TcpListener,
) -> (glommio::net::TcpListener, RawFd) {
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a bound and listening TCP socket; its ownership moves into
    // glommio's listener, which closes it.
    let listener = unsafe { <glommio::net::TcpListener as FromRawFd>::from_raw_fd(fd) };
    (listener, fd)
}

/// Takes ownership of the socket a completed accept returned.
pub(super) fn accepted_fd(raw: i32) -> OwnedFd {
    assert!(raw >= 0, "accepted fd {raw} is not an fd");
    // SAFETY: a successful accept completion's result is a new fd in our table that
    // nothing else owns (we never use fixed-file accepts).
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A core's client-socket ring.
pub(super) struct Ring {
    ring: IoUring,
    /// The kernel copies a timeout's timespec when the SQE is submitted; keeping it here
    /// keeps it alive and unmoved until then.
    timeout: Box<types::Timespec>,
    /// SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG took effect.
    pub(super) tuned: bool,
}

impl Ring {
    /// Creates the ring with SINGLE_ISSUER | COOP_TASKRUN (completion work runs when this
    /// thread next enters the kernel: no IPI interrupts it) and TASKRUN_FLAG (the kernel
    /// flags pending completion work in the SQ ring, so we enter only when there is some),
    /// falling back to no flags when the kernel refuses them.
    ///
    /// Not DEFER_TASKRUN, which this was until issue 13: on this project's machine
    /// (Linux 6.18.44, glommio 0.9) a DEFER_TASKRUN ring's completions arriving while the
    /// executor was parked did not wake it through the eventfd, so a request reaching an
    /// idle shard waited for the transport's `IDLE_RECHECK_MS` safety timer — a lone SET
    /// took ~10 ms instead of ~60 µs, and pipelined GETs' p99 was 10 ms. COOP_TASKRUN
    /// keeps most of its saving over a plain ring (pipelined GETs: 1.13 vs 1.37 server
    /// µs each) and wakes every time; docs/benchmarks.md ("Lost wake-ups") has the
    /// figures and the io_uring trace.
    pub(super) fn new(sq_entries: u32, cq_entries: u32, setup_flags: bool) -> io::Result<Ring> {
        let tuned = if setup_flags {
            IoUring::builder()
                .setup_single_issuer()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_cqsize(cq_entries)
                .build(sq_entries)
        } else {
            Err(io::Error::other("setup flags turned off"))
        };
        let (ring, tuned) = match tuned {
            Ok(ring) => (ring, true),
            Err(tuned_err) => {
                if setup_flags {
                    tracing::warn!(
                        error = %tuned_err,
                        "io_uring refused SINGLE_ISSUER | COOP_TASKRUN (kernel older than 6.0?); \
                         using a ring without setup flags: more interrupts and syscalls per request"
                    );
                }
                let plain = IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries);
                (
                    plain.map_err(|e| ring_error(e, sq_entries, cq_entries))?,
                    false,
                )
            }
        };
        Ok(Ring {
            ring,
            timeout: Box::new(types::Timespec::new()),
            tuned,
        })
    }

    /// Makes the ring signal `eventfd` whenever it has completions or deferred work.
    pub(super) fn register_eventfd(&self, eventfd: RawFd) -> io::Result<()> {
        self.ring.submitter().register_eventfd(eventfd)
    }

    /// Turns the eventfd signal on (before sleeping) or off (while running: our own
    /// entering posts completions, and each would signal a wake-up nobody needs).
    pub(super) fn set_eventfd_enabled(&mut self, enabled: bool) {
        let cq = self.ring.completion();
        if enabled {
            cq.enable_eventfd();
        } else {
            cq.disable_eventfd();
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry comes from the constructors below; the memory each one
            // points to stays valid until its completion (see the module contract): a
            // send's buffer, or nothing at all (accept, recv into provided buffers,
            // cancel), or `self.timeout`, which lives as long as the ring.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            // SQ full: hand the queued entries to the kernel to make room.
            self.ring.submit()?;
        }
    }

    /// Queues a multishot accept on `listener`.
    pub(super) fn accept_multi(&mut self, listener: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        self.push(entry)
    }

    /// Queues a multishot receive on `socket` into buffers of group `buf_group`.
    pub(super) fn recv_multi(
        &mut self,
        socket: RawFd,
        buf_group: u16,
        user_data: u64,
    ) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(socket), buf_group)
            .build()
            .user_data(user_data);
        self.push(entry)
    }

    /// Queues a send of `buf` (at most 1 GiB of it; the completion says how much went).
    /// `buf` must stay alive and unchanged until the completion is reaped.
    pub(super) fn send(&mut self, socket: RawFd, buf: &[u8], user_data: u64) -> io::Result<()> {
        let len = buf.len().min(1 << 30) as u32;
        let entry = opcode::Send::new(types::Fd(socket), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        self.push(entry)
    }

    /// Queues the cancellation of the operation submitted with `target`.
    pub(super) fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        self.push(
            opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data),
        )
    }

    /// Queues a timer that completes (with -ETIME) after `ms` milliseconds.
    pub(super) fn timeout_ms(&mut self, ms: u64, user_data: u64) -> io::Result<()> {
        *self.timeout = types::Timespec::new()
            .sec(ms / 1000)
            .nsec(((ms % 1000) * 1_000_000) as u32);
        let ts: *const types::Timespec = &*self.timeout;
        self.push(opcode::Timeout::new(ts).build().user_data(user_data))?;
        // Submit now: the next timer would overwrite the timespec this one points to.
        self.ring.submit().map(drop)
    }

    /// Entries queued but not yet handed to the kernel.
    pub(super) fn unsubmitted(&mut self) -> usize {
        self.ring.submission().len()
    }

    /// Whether the kernel may hold work for us: entries to submit, completion work it
    /// flagged as pending (TASKRUN, tuned rings only: a hint, see `run_local_work`), or an
    /// overflowed CQ to flush.
    pub(super) fn work_pending(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || (self.tuned && sq.taskrun())
    }

    /// Whether completions overflowed the CQ and wait in the kernel to be flushed.
    pub(super) fn cq_overflowed(&mut self) -> bool {
        self.ring.submission().cq_overflow()
    }

    /// Runs the kernel's pending completion work dry, without waiting (GETEVENTS with
    /// min_complete 1 and a zero timeout): afterwards the CQ holds whatever had
    /// completed, so the idle check sees it before the transport parks.
    pub(super) fn run_local_work(&mut self) -> io::Result<()> {
        tern_uring::enter_wait(&mut self.ring, std::time::Duration::ZERO)
    }

    /// Whether entering the kernel would do anything. An untuned ring does not flag
    /// pending completion work, so it always enters.
    pub(super) fn needs_enter(&mut self) -> bool {
        !self.tuned || self.work_pending()
    }

    /// Whether the CQ holds completions not yet reaped.
    pub(super) fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// Submits every queued entry and runs deferred completion work (GETEVENTS), without
    /// waiting: afterwards the CQ holds everything that has completed.
    pub(super) fn enter(&mut self) -> io::Result<()> {
        tern_uring::enter_nowait(&mut self.ring)
    }

    /// Submits and waits (blocking this thread) up to `ms` milliseconds for a completion.
    /// Only for draining cancelled operations at shutdown.
    pub(super) fn wait_ms(&mut self, ms: u64) -> io::Result<()> {
        tern_uring::enter_wait(&mut self.ring, std::time::Duration::from_millis(ms))
    }

    /// Moves up to `max` completions from the CQ into `into`; returns how many.
    pub(super) fn reap(&mut self, into: &mut Vec<Completion>, max: usize) -> usize {
        tern_uring::reap(&mut self.ring, into, max)
    }
}

fn ring_error(e: io::Error, sq_entries: u32, cq_entries: u32) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "could not create the client-socket io_uring ring ({sq_entries} SQ / {cq_entries} CQ \
             entries): {e}. ENOMEM or EPERM usually mean the locked-memory limit (`ulimit -l`) \
             is exhausted or io_uring is disabled (sysctl kernel.io_uring_disabled); ENOSYS \
             means a kernel without io_uring: run with --net glommio"
        ),
    )
}

/// The provided-buffer ring lives in tern-uring, shared with the other io_uring user.
pub(crate) use tern_uring::BufRing;

impl Ring {
    /// Registers `count` receive buffers of `size` bytes as buffer group `group` of this
    /// ring. The ring must outlive the buffers (drop order), see `BufRing::new`.
    pub(super) fn buf_ring(&self, group: u16, count: u16, size: usize) -> io::Result<BufRing> {
        BufRing::new(&self.ring.submitter(), group, count, size)
    }
}

/// CLOCK_MONOTONIC_COARSE in milliseconds (0 should the call ever fail).
pub(crate) fn coarse_monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Makes a listening socket stop listening at once (shutdown(2) of a listening socket:
/// pending and new connection attempts are refused). For glommio's listeners, whose fd
/// glommio closes only asynchronously, while the kernel keeps the socket listening as long
/// as a cancelled accept is in flight.
///
/// `fd` must be a socket that stays open for the duration of the call (the caller holds
/// the listener that owns it).
pub(super) fn stop_listening(fd: RawFd) {
    // SAFETY: shutdown(2) only acts on the descriptor and touches no memory of ours; the
    // caller keeps `fd` open. Errors (already shut down) change nothing.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
