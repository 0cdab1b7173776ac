//! The unsafe edges of the engine, kept in one place.
//!
//! * [`Ring`]: a thread's io_uring ring (the `io-uring` crate) created with SINGLE_ISSUER |
//!   DEFER_TASKRUN, the few operations the engine submits, entering the kernel (with or
//!   without waiting) and reaping completions.
//! * [`BufRing`] (from tern-uring, shared by the server and the load generator): the
//!   provided-buffer ring that multishot receives fill.
//! * [`pin_to_cpu`]: `sched_setaffinity` of the calling thread.
//!
//! The contract with the rest of the engine: a buffer passed to [`Ring::send`] stays alive
//! and untouched until that send's completion is reaped (a connection's in-flight send
//! buffer is never written while `send_in_flight`), every socket outlives the operations
//! on it, and [`BufRing`] outlives every receive that may write into it (the worker drops
//! the ring, which ends every operation, before the buffers; when operations may still be
//! running the buffers are leaked instead).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

/// One reaped completion (shared with the other io_uring user, in tern-uring).
pub(crate) use tern_uring::Completion;

/// A thread's ring.
pub(super) struct Ring {
    ring: IoUring,
    /// SINGLE_ISSUER | DEFER_TASKRUN took effect.
    pub(super) tuned: bool,
}

impl Ring {
    /// Creates the ring with SINGLE_ISSUER | DEFER_TASKRUN (completion work runs only when
    /// this thread enters the kernel: no interrupts of the running loop), falling back to
    /// a plain ring when the kernel refuses them; `warning` then says so.
    pub(super) fn new(sq_entries: u32, cq_entries: u32) -> io::Result<(Ring, Option<String>)> {
        let tuned = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq_entries)
            .build(sq_entries);
        match tuned {
            Ok(ring) => Ok((Ring { ring, tuned: true }, None)),
            Err(tuned_err) => {
                let ring = IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!(
                                "could not create an io_uring ring ({sq_entries} SQ / {cq_entries} CQ \
                                 entries): {e}. ENOMEM or EPERM usually mean the locked-memory \
                                 limit (`ulimit -l`) is exhausted or io_uring is disabled \
                                 (sysctl kernel.io_uring_disabled); ENOSYS means a kernel \
                                 without io_uring"
                            ),
                        )
                    })?;
                let warning = format!(
                    "io_uring refused SINGLE_ISSUER | DEFER_TASKRUN ({tuned_err}; kernel older \
                     than 6.1?): using a plain ring, which costs more interrupts per reply"
                );
                Ok((Ring { ring, tuned: false }, Some(warning)))
            }
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry comes from the constructors below; the memory each one
            // points to stays valid until its completion (see the module contract): a
            // send's buffer, or nothing at all (receive into provided buffers, cancel).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            // SQ full: hand the queued entries to the kernel to make room.
            self.ring.submit()?;
        }
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

    /// Queues the cancellation of every operation submitted with `target`.
    pub(super) fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        self.push(
            opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data),
        )
    }

    /// Whether the CQ holds completions not yet reaped.
    pub(super) fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// Submits every queued entry and runs deferred completion work, without waiting:
    /// afterwards the CQ holds everything that has completed.
    pub(super) fn enter_nowait(&mut self) -> io::Result<()> {
        tern_uring::enter_nowait(&mut self.ring)
    }

    /// Submits every queued entry and sleeps until a completion arrives or `timeout`
    /// passes (a timeout, a signal or a busy CQ are not errors: the caller looks at the
    /// clock and the CQ either way).
    pub(super) fn enter_wait(&mut self, timeout: Duration) -> io::Result<()> {
        tern_uring::enter_wait(&mut self.ring, timeout)
    }

    /// Moves up to `max` completions from the CQ into `into`; returns how many.
    pub(super) fn reap(&mut self, into: &mut Vec<Completion>, max: usize) -> usize {
        tern_uring::reap(&mut self.ring, into, max)
    }
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

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond CPU_SETSIZE"),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, checked above, so the bit lies inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("pinning a thread to CPU {cpu}: {e} (is the CPU online and allowed?)"),
        ));
    }
    Ok(())
}
