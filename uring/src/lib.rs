//! io_uring primitives shared by tern's server (client-socket rings) and load generator:
//! the provided-buffer ring that multishot receives fill, entering the kernel without
//! waiting, and reaping completions.
//!
//! All of this crate is the unsafe edge between Rust and memory the kernel reads and writes;
//! each block says why it is sound. No tern dependencies.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{EnterFlags, IoUring};

/// One reaped completion, copied out of the CQ so handlers may submit while processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

/// Moves up to `max` completions from the CQ into `into`; returns how many.
pub fn reap(ring: &mut IoUring, into: &mut Vec<Completion>, max: usize) -> usize {
    let before = into.len();
    into.extend(ring.completion().take(max).map(|cqe| Completion {
        user_data: cqe.user_data(),
        result: cqe.result(),
        flags: cqe.flags(),
    }));
    into.len() - before
}

/// Submits every queued entry and waits until a completion is posted or `timeout`
/// passes (GETEVENTS, min_complete 1, EXT_ARG timeout). A timeout, a signal or a busy CQ
/// are not errors: the caller looks at the CQ (and its clock) either way. With a zero
/// timeout this runs a DEFER_TASKRUN ring's deferred completion work dry: the kernel keeps
/// running its work list until a completion is posted or the list is empty.
pub fn enter_wait(ring: &mut IoUring, timeout: std::time::Duration) -> io::Result<()> {
    let ts = io_uring::types::Timespec::new()
        .sec(timeout.as_secs())
        .nsec(timeout.subsec_nanos());
    let args = io_uring::types::SubmitArgs::new().timespec(&ts);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Submits every queued entry and runs deferred completion work (GETEVENTS), without
/// waiting: afterwards the CQ holds everything that has completed. The caller vouches for
/// the queued entries (its own `push` contract).
pub fn enter_nowait(ring: &mut IoUring) -> io::Result<()> {
    loop {
        let to_submit = ring.submission().len() as u32;
        // SAFETY: no extended argument: a null pointer of size 0 is passed.
        let entered = unsafe {
            ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                0,
                EnterFlags::GETEVENTS.bits(),
                None,
            )
        };
        match entered {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            // CQ overflow backlog or a transient allocation failure: reap what is there
            // and try again on the next turn.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The kernel's `struct io_uring_buf`; the ring's tail overlaps `resv` of entry 0.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RawBuf>() == 16);

/// Provided receive buffers: `count` buffers of `size` bytes, handed to the kernel through
/// a registered buffer ring; a multishot receive picks one per completion.
pub struct BufRing {
    ring_mem: *mut u8,
    ring_mem_bytes: usize,
    data: *mut u8,
    data_bytes: usize,
    count: u16,
    size: usize,
    /// Our producer index into the ring (entries before it are the kernel's).
    tail: u16,
}

impl BufRing {
    /// Maps the ring and the buffers, registers them as buffer group `group` of the
    /// io_uring behind `submitter`, and gives every buffer to the kernel.
    ///
    /// Contract: the io_uring must be dropped (or the group unregistered) before this
    /// value, and `leak` used instead of drop while the kernel may still write buffers.
    pub fn new(
        submitter: &io_uring::Submitter<'_>,
        group: u16,
        count: u16,
        size: usize,
    ) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 32768);
        assert!(size > 0 && size <= u32::MAX as usize);
        let page = page_size();
        let ring_mem_bytes = (count as usize * std::mem::size_of::<RawBuf>()).div_ceil(page) * page;
        let data_bytes = count as usize * size;
        let ring_mem = map_anonymous(ring_mem_bytes)?;
        let data = match map_anonymous(data_bytes) {
            Ok(p) => p,
            Err(e) => {
                unmap(ring_mem, ring_mem_bytes);
                return Err(e);
            }
        };
        let mut bufs = BufRing {
            ring_mem,
            ring_mem_bytes,
            data,
            data_bytes,
            count,
            size,
            tail: 0,
        };
        // SAFETY: `ring_mem` is a page-aligned mapping of `count` entries that lives until
        // `Drop`, and the owner drops the io_uring (unregistering the group) before it
        // (the contract of `new`).
        unsafe { submitter.register_buf_ring_with_flags(ring_mem as u64, count, group, 0) }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("registering {count} receive buffers of {size} bytes as a buffer ring: {e} (needs Linux 5.19+)"),
            )
        })?;
        for bid in 0..count {
            bufs.write_entry(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    fn write_entry(&mut self, bid: u16) {
        assert!(bid < self.count);
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`, so the entry lies inside the ring mapping, and `bid <
        // count`, so the buffer lies inside the data mapping. The kernel reads only entries
        // before the published tail; this one is at it. Fields are written through raw
        // pointers, never touching entry 0's `resv` (the tail the kernel reads).
        unsafe {
            let entry = self.ring_mem.cast::<RawBuf>().add(index);
            std::ptr::addr_of_mut!((*entry).addr)
                .write(self.data.add(bid as usize * self.size) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.size as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is entry 0's `resv`, inside the mapping and 2-byte aligned;
        // AtomicU16 has u16's layout. The release store orders the entry writes before it,
        // as the kernel's acquire load of the tail expects.
        let tail = unsafe {
            &*std::ptr::addr_of!((*self.ring_mem.cast::<RawBuf>()).resv).cast::<AtomicU16>()
        };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed us.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.size,
            "buffer {bid} / {len} bytes out of range"
        );
        // SAFETY: the range lies inside the data mapping. The kernel wrote these bytes and
        // gave the buffer to us with the completion; it writes it again only after
        // `recycle` (which takes `&mut self`, so not while this borrow lives).
        unsafe { std::slice::from_raw_parts(self.data.add(bid as usize * self.size), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.write_entry(bid);
        self.publish();
    }

    /// Gives up the mappings without unmapping them: used when the kernel might still
    /// write into the buffers (operations that did not finish at shutdown).
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

// SAFETY: the mappings are owned by this value alone; moving it to another thread moves
// that ownership (each user creates and uses it on one thread).
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        unmap(self.data, self.data_bytes);
        unmap(self.ring_mem, self.ring_mem_bytes);
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 { page as usize } else { 4096 }
}

fn map_anonymous(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: a new private anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

fn unmap(p: *mut u8, bytes: usize) {
    // SAFETY: `p`/`bytes` is a mapping made by `map_anonymous` and unmapped only once.
    let rc = unsafe { libc::munmap(p.cast(), bytes) };
    debug_assert_eq!(rc, 0, "munmap failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_registered_filled_and_recycled() {
        let ring = io_uring::IoUring::new(8).expect("io_uring (Linux 5.19+)");
        let mut bufs = BufRing::new(&ring.submitter(), 7, 4, 4096).unwrap();
        assert_eq!(bufs.data(3, 4096).len(), 4096);
        assert!(bufs.data(0, 0).is_empty());
        // Recycling more times than there are buffers wraps the ring without overrunning.
        for round in 0..10u16 {
            bufs.recycle(round % 4);
        }
        drop(ring);
        drop(bufs);
    }

    #[test]
    fn enter_nowait_then_reap_returns_each_completion_once() {
        let mut ring = io_uring::IoUring::new(8).expect("io_uring");
        for id in [7u64, 8] {
            let nop = io_uring::opcode::Nop::new().build().user_data(id);
            // SAFETY: a NOP points to no memory.
            unsafe { ring.submission().push(&nop) }.expect("SQ has room");
        }
        enter_nowait(&mut ring).unwrap();
        let mut got = Vec::new();
        assert_eq!(reap(&mut ring, &mut got, 1), 1, "max is honoured");
        assert_eq!(reap(&mut ring, &mut got, 16), 1);
        assert_eq!(reap(&mut ring, &mut got, 16), 0);
        let mut ids: Vec<u64> = got.iter().map(|c| c.user_data).collect();
        ids.sort_unstable();
        assert_eq!(ids, [7, 8]);
        assert!(got.iter().all(|c| c.result == 0));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn out_of_range_buffers_are_refused() {
        let ring = io_uring::IoUring::new(8).expect("io_uring");
        let bufs = BufRing::new(&ring.submitter(), 1, 2, 64).unwrap();
        let _ = bufs.data(2, 1);
    }
}
