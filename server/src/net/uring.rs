//! The default transport: a core's client sockets on its own io_uring ring.
//!
//! One glommio task per core drives a ring created on the executor's thread with
//! SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG: completion work runs when this thread
//! next enters the kernel (no IPIs interrupting it), flagged in the SQ ring so the task
//! enters only when there is some. (DEFER_TASKRUN was used until issue 13 measured it
//! losing wake-ups on this machine's kernel: see `sys::Ring::new`.) On the ring:
//!
//! * a multishot accept per listener (the core's own port and the shared port);
//! * a multishot receive per connection into a provided-buffer ring
//!   ([`RECV_BUFFER_COUNT`] × [`RECV_BUFFER_SIZE_BYTES`]); whole frames are parsed in place
//!   from the buffer and the buffer goes back to the kernel right after its completion;
//!   a frame split across buffers is assembled in the connection's backlog, its header
//!   checked as soon as it is complete;
//! * at most one send per connection in flight, of everything its replies produced since
//!   the last send (gathered into one buffer while the previous send is in flight).
//!
//! The loop: enter the kernel once (submit everything queued, run deferred completions),
//! handle every completion, move deferred replies into send buffers, queue sends; repeat
//! while there is work. When idle, the task arms the ring's eventfd, looks at the ring one
//! last time (a completion that arrived while the eventfd was disarmed did not signal it),
//! then awaits — through glommio — a read of that eventfd, racing the core's [`Wakeup`]
//! (deferred replies) and [`Shutdown`]. The eventfd read is a
//! `glommio::io::BufferedFile::read_at` on the eventfd, i.e. an IORING_OP_READ on
//! glommio's own ring: the executor parks as usual and runs other tasks meanwhile.
//!
//! Every operation carries `kind | generation | slot` in its user_data; a connection slot
//! is reused only after every operation it submitted has completed, and completions whose
//! generation does not match their slot are ignored.

use std::future::poll_fn;
use std::io;
use std::net::{Shutdown as SocketShutdown, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use socket2::SockRef;
use tern_protocol::frame::{self, FrameError, HEADER_LEN};
use tern_protocol::limits::IN_FLIGHT_PER_CONNECTION_MAX;
use tracing::{debug, warn};

use super::CoreListeners;
use super::limits::{
    ACCEPT_RETRY_DELAY_MS, BUFFER_RETAIN_BYTES, CONNECTIONS_PER_CORE_MAX, IDLE_RECHECK_MS,
    RECV_BUFFER_COUNT, RECV_BUFFER_GROUP, RECV_BUFFER_SIZE_BYTES, RING_CQ_ENTRIES, RING_SQ_ENTRIES,
    SHUTDOWN_DRAIN_TIMEOUT_MS, UNSENT_PER_CONNECTION_MAX_BYTES, UNSENT_RESUME_BYTES,
};
use super::sys::{self, BufRing, Completion, Ring};
use crate::limits::REACTOR_TURN_US;
use crate::service::{ConnCtx, ConnId, Service, Shutdown, Verdict, Wakeup};

/// Serves `listeners` on a ring of this core until `shutdown` fires, then closes every
/// connection and returns.
pub(super) async fn serve(
    listeners: CoreListeners,
    service: Rc<dyn Service>,
    wakeup: Rc<Wakeup>,
    shutdown: Shutdown,
    serving: Box<dyn FnOnce()>,
) -> io::Result<()> {
    let mut transport = Transport::new(listeners, service, wakeup.clone())?;
    let eventfd = sys::eventfd()?;
    transport.ring.register_eventfd(eventfd.as_raw_fd())?;
    let eventfd = sys::eventfd_into_glommio(eventfd);
    // The accepts are queued: the first turn of `run` submits them, and the kernel
    // queues connections in the listeners' backlogs meanwhile.
    serving();
    let served = transport.run(&eventfd, &wakeup, &shutdown).await;
    let drained = transport.stop();
    let Transport { ring, bufs, .. } = transport;
    drop(ring);
    if drained {
        drop(bufs);
    } else {
        warn!(
            "client-socket ring: operations still running {SHUTDOWN_DRAIN_TIMEOUT_MS} ms after \
             shutdown; leaking the receive buffers rather than freeing memory the kernel may write"
        );
        bufs.leak();
    }
    if let Err(e) = eventfd.close().await {
        debug!(error = %e, "closing the ring's eventfd");
    }
    served
}

/// What an operation was, in the top byte of its user_data.
mod kind {
    pub const ACCEPT: u8 = 1;
    pub const ACCEPT_RETRY: u8 = 2;
    pub const RECV: u8 = 3;
    pub const SEND: u8 = 4;
    pub const CANCEL: u8 = 5;
}

const GENERATION_MASK: u32 = 0x00FF_FFFF;

fn user_data(kind: u8, generation: u32, slot: u32) -> u64 {
    (kind as u64) << 56 | ((generation & GENERATION_MASK) as u64) << 32 | slot as u64
}

fn split_user_data(user_data: u64) -> (u8, u32, u32) {
    (
        (user_data >> 56) as u8,
        (user_data >> 32) as u32 & GENERATION_MASK,
        user_data as u32,
    )
}

/// The listener indices of a core: its own port and the shared one.
const LISTENERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving and answering.
    Open,
    /// No more requests: send what is queued (and, when `deferred`, the replies still
    /// owed), then close.
    Draining { deferred: bool },
    /// Closed for the service; waiting for its operations to complete to free the slot.
    Closing,
}

struct Conn {
    fd: OwnedFd,
    ctx: Rc<ConnCtx>,
    state: State,
    /// Received bytes not yet handed to the service: a frame split across receive buffers
    /// (a prefix of one frame), or, while paused, everything received since.
    backlog: Vec<u8>,
    /// Replies produced since the last send was queued.
    out: Vec<u8>,
    /// The bytes of the send in flight; `sent` of them went out already.
    sending: Vec<u8>,
    sent: usize,
    send_in_flight: bool,
    recv_armed: bool,
    recv_cancel_queued: bool,
    /// Not handing requests to the service (too many in flight or too much unsent).
    paused: bool,
    /// The peer closed its side; seen while paused, acted on after the backlog.
    eof: bool,
    flush_queued: bool,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.out.len() + self.sending.len() - self.sent
    }

    fn over_limit(&self) -> bool {
        self.ctx.in_flight() >= IN_FLIGHT_PER_CONNECTION_MAX
            || self.unsent() > UNSENT_PER_CONNECTION_MAX_BYTES
    }
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

struct Transport {
    // Field order is drop order: the ring goes before the buffers it receives into.
    ring: Ring,
    bufs: BufRing,
    service: Rc<dyn Service>,
    wakeup: Rc<Wakeup>,
    listeners: [Option<TcpListener>; LISTENERS],
    accept_armed: [bool; LISTENERS],
    retry_armed: [bool; LISTENERS],
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Connections holding a slot.
    open: usize,
    /// Operations submitted whose last completion has not been reaped yet.
    ops: usize,
    completions: Vec<Completion>,
    flush: Vec<u32>,
    dirty: Vec<Rc<ConnCtx>>,
    stopping: bool,
}

/// Why parsing stopped.
enum Stop {
    NeedMore,
    OverLimit,
    Close,
    Error(FrameError),
}

/// What a connection needs after bytes were fed to it.
enum Flow {
    Continue,
    Paused,
    Close,
    Error(FrameError),
}

/// Hands every whole frame at the front of `data` to the service, stopping early when the
/// connection is over its limits. Returns the bytes consumed and why it stopped.
fn dispatch(service: &dyn Service, conn: &mut Conn, data: &[u8]) -> (usize, Stop) {
    let mut pos = 0;
    loop {
        if pos == data.len() {
            return (pos, Stop::NeedMore);
        }
        if conn.over_limit() {
            return (pos, Stop::OverLimit);
        }
        match frame::parse_frame(&data[pos..]) {
            Ok(Some((frame, used))) => {
                pos += used;
                if service.on_frame(&conn.ctx, frame, &mut conn.out) == Verdict::Close {
                    return (pos, Stop::Close);
                }
            }
            Ok(None) => return (pos, Stop::NeedMore),
            // A whole frame of an unknown kind: answered and skipped.
            Err(e) => match e.skippable_len() {
                Some(len) if data.len() - pos >= len => {
                    service.on_frame_error(&e, &mut conn.out);
                    pos += len;
                }
                Some(_) => return (pos, Stop::NeedMore),
                None => return (pos, Stop::Error(e)),
            },
        }
    }
}

/// Moves bytes from `data` into `backlog` until it holds one whole frame (true) or `data`
/// runs out (false). The header is checked as soon as it is complete, so a garbage length
/// is refused before any of its body is buffered.
fn complete_partial(backlog: &mut Vec<u8>, data: &mut &[u8]) -> Result<bool, FrameError> {
    if backlog.len() < HEADER_LEN {
        let take = (HEADER_LEN - backlog.len()).min(data.len());
        backlog.extend_from_slice(&data[..take]);
        *data = &data[take..];
        if backlog.len() < HEADER_LEN {
            frame::check_partial_header(backlog)?;
            return Ok(false);
        }
    }
    let total = frame::frame_len(backlog)?.unwrap_or(HEADER_LEN);
    assert!(
        total >= backlog.len(),
        "backlog holds more than its first frame"
    );
    let missing = total - backlog.len();
    if backlog.capacity() < total {
        backlog.reserve_exact(missing);
    }
    let take = missing.min(data.len());
    backlog.extend_from_slice(&data[..take]);
    *data = &data[take..];
    Ok(backlog.len() == total)
}

fn release_excess(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > BUFFER_RETAIN_BYTES {
        buf.shrink_to(BUFFER_RETAIN_BYTES);
    }
}

/// Feeds received bytes to an open connection.
fn feed(service: &dyn Service, conn: &mut Conn, mut data: &[u8]) -> Flow {
    if conn.state != State::Open {
        return Flow::Continue;
    }
    if conn.paused {
        conn.backlog.extend_from_slice(data);
        return Flow::Continue;
    }
    if !conn.backlog.is_empty() {
        match complete_partial(&mut conn.backlog, &mut data) {
            Err(e) => return Flow::Error(e),
            Ok(false) => return Flow::Continue,
            Ok(true) => {
                if conn.over_limit() {
                    conn.paused = true;
                    conn.backlog.extend_from_slice(data);
                    return Flow::Paused;
                }
                let backlog = std::mem::take(&mut conn.backlog);
                let flow = match frame::parse_frame(&backlog) {
                    Ok(Some((frame, _))) => match service.on_frame(&conn.ctx, frame, &mut conn.out)
                    {
                        Verdict::Continue => Flow::Continue,
                        Verdict::Close => Flow::Close,
                    },
                    Ok(None) => unreachable!("a complete frame parses"),
                    Err(e) if e.skippable_len().is_some() => {
                        service.on_frame_error(&e, &mut conn.out);
                        Flow::Continue
                    }
                    Err(e) => Flow::Error(e),
                };
                conn.backlog = backlog;
                release_excess(&mut conn.backlog);
                if !matches!(flow, Flow::Continue) {
                    return flow;
                }
            }
        }
    }
    let (used, stop) = dispatch(service, conn, data);
    match stop {
        Stop::NeedMore => {
            conn.backlog.extend_from_slice(&data[used..]);
            Flow::Continue
        }
        Stop::OverLimit => {
            conn.paused = true;
            conn.backlog.extend_from_slice(&data[used..]);
            Flow::Paused
        }
        Stop::Close => Flow::Close,
        Stop::Error(e) => Flow::Error(e),
    }
}

fn is_resource_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
    )
}

/// A busy transport's yield point: once it has been busy for `REACTOR_TURN_US` since the
/// last turn, it waits out a 1 µs glommio timer, so the executor runs its other tasks and
/// then polls its reactor (reaping the log's I/O, the mesh, timers) before this task goes
/// on; otherwise it yields only if glommio's preemption timer asks. The busy loop never
/// parks, and glommio polls its rings only between task-queue runs, so without this the
/// log flusher's completions would wait for the 100 ms preemption timer.
async fn reactor_turn_if_due(busy_since: &mut Instant) {
    let now = Instant::now();
    if now.duration_since(*busy_since) >= Duration::from_micros(REACTOR_TURN_US) {
        glommio::timer::sleep(Duration::from_micros(1)).await;
        *busy_since = Instant::now();
    } else {
        glommio::yield_if_needed().await;
    }
}

impl Transport {
    fn new(
        listeners: CoreListeners,
        service: Rc<dyn Service>,
        wakeup: Rc<Wakeup>,
    ) -> io::Result<Transport> {
        let ring = Ring::new(RING_SQ_ENTRIES, RING_CQ_ENTRIES, super::uring_setup_flags())?;
        let bufs = ring.buf_ring(RECV_BUFFER_GROUP, RECV_BUFFER_COUNT, RECV_BUFFER_SIZE_BYTES)?;
        debug!(
            tuned = ring.tuned,
            shard_port = listeners.shard_port,
            "client-socket ring up"
        );
        let mut t = Transport {
            ring,
            bufs,
            service,
            wakeup,
            listeners: [Some(listeners.shard), Some(listeners.shared)],
            accept_armed: [false; LISTENERS],
            retry_armed: [false; LISTENERS],
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            ops: 0,
            completions: Vec::with_capacity(RING_CQ_ENTRIES as usize),
            flush: Vec::new(),
            dirty: Vec::new(),
            stopping: false,
        };
        for l in 0..LISTENERS {
            t.arm_accept(l)?;
        }
        Ok(t)
    }

    async fn run(
        &mut self,
        eventfd: &glommio::io::BufferedFile,
        wakeup: &Wakeup,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        let mut eventfd_read = pin!(eventfd.read_at(0, 8));
        let mut stopped = pin!(shutdown.wait());
        self.ring.set_eventfd_enabled(false);
        let mut busy_since = Instant::now();
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            self.turn()?;
            if self.ring.unsubmitted() > 0 || wakeup.has_dirty() {
                reactor_turn_if_due(&mut busy_since).await;
                continue;
            }
            // Idle. Arm the eventfd, then run the completion work pending for this thread
            // dry (`Ring::run_local_work`): completions it posts while the eventfd was
            // disarmed did not signal it, so they must be seen by the re-check below;
            // one arriving after that runs as task work while we are parked, posts its
            // completion and signals the eventfd.
            // (The TASKRUN flag is no guide: it can be left set over an empty list, and
            // trusting it once made this loop spin without ever yielding, starving the
            // log flusher.) The fence orders our arming before the kernel's checks.
            self.ring.set_eventfd_enabled(true);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if self.ring.tuned {
                self.ring.run_local_work()?;
            }
            if self.ring.unsubmitted() > 0
                || self.ring.cq_overflowed()
                || self.ring.has_completions()
                || wakeup.has_dirty()
            {
                self.ring.set_eventfd_enabled(false);
                // Every path back to the top passes a yield point.
                reactor_turn_if_due(&mut busy_since).await;
                continue;
            }
            // Belt and braces: should a kernel ever not signal, a connection waits at
            // most this long rather than forever.
            let mut safety = pin!(glommio::timer::sleep(Duration::from_millis(
                IDLE_RECHECK_MS
            )));
            let woke = poll_fn(|cx| {
                if stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(read) = eventfd_read.as_mut().poll(cx) {
                    return Poll::Ready(Some(read));
                }
                if pin!(wakeup.wait()).poll(cx).is_ready() || safety.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            self.ring.set_eventfd_enabled(false);
            busy_since = Instant::now();
            if let Some(read) = woke {
                eventfd_read.set(eventfd.read_at(0, 8));
                read.map_err(|e| {
                    io::Error::other(format!("reading the ring's eventfd through glommio: {e}"))
                })?;
            }
        }
    }

    /// One pass: submit and reap, handle completions, pick up deferred replies, queue sends.
    fn turn(&mut self) -> io::Result<()> {
        if self.ring.needs_enter() {
            self.ring.enter()?;
        }
        let mut batch = std::mem::take(&mut self.completions);
        loop {
            batch.clear();
            if self.ring.reap(&mut batch, RING_CQ_ENTRIES as usize) == 0 {
                break;
            }
            for c in &batch {
                self.handle(*c)?;
            }
        }
        self.completions = batch;
        self.take_deferred()?;
        self.flush_sends()
    }

    fn handle(&mut self, c: Completion) -> io::Result<()> {
        let (kind, generation, slot) = split_user_data(c.user_data);
        let more = cqueue::more(c.flags);
        if !more {
            self.ops -= 1;
        }
        match kind {
            kind::ACCEPT => self.on_accept(slot as usize, c.result, more),
            kind::ACCEPT_RETRY => {
                let l = slot as usize;
                self.retry_armed[l] = false;
                if !self.stopping && !self.accept_armed[l] {
                    self.arm_accept(l)?;
                }
                Ok(())
            }
            kind::RECV => self.on_recv(slot, generation, c, more),
            kind::SEND => self.on_send(slot, generation, c.result),
            kind::CANCEL => Ok(()),
            _ => unreachable!(
                "unknown operation kind {kind} in user_data {:#x}",
                c.user_data
            ),
        }
    }

    fn arm_accept(&mut self, l: usize) -> io::Result<()> {
        let Some(listener) = &self.listeners[l] else {
            return Ok(());
        };
        self.ring
            .accept_multi(listener.as_raw_fd(), user_data(kind::ACCEPT, 0, l as u32))?;
        self.accept_armed[l] = true;
        self.ops += 1;
        Ok(())
    }

    fn on_accept(&mut self, l: usize, result: i32, more: bool) -> io::Result<()> {
        if !more {
            self.accept_armed[l] = false;
        }
        if result >= 0 {
            let fd = sys::accepted_fd(result);
            if !self.stopping {
                self.open_conn(fd)?;
            }
        } else if -result != libc::ECANCELED {
            let err = io::Error::from_raw_os_error(-result);
            if is_resource_error(-result) {
                warn!(error = %err, "accepting a connection failed; retrying in {ACCEPT_RETRY_DELAY_MS} ms");
            } else {
                debug!(error = %err, "accepting a connection failed");
            }
        }
        if !self.accept_armed[l] && !self.stopping {
            if result < 0 && -result != libc::ECANCELED {
                // Re-arming at once could fail at once, forever: wait a little.
                if !self.retry_armed[l] {
                    self.ring.timeout_ms(
                        ACCEPT_RETRY_DELAY_MS,
                        user_data(kind::ACCEPT_RETRY, 0, l as u32),
                    )?;
                    self.retry_armed[l] = true;
                    self.ops += 1;
                }
            } else {
                self.arm_accept(l)?;
            }
        }
        Ok(())
    }

    fn open_conn(&mut self, fd: OwnedFd) -> io::Result<()> {
        if self.open >= CONNECTIONS_PER_CORE_MAX {
            warn!("closing a new connection: this core already serves {CONNECTIONS_PER_CORE_MAX}");
            return Ok(());
        }
        if let Err(e) = SockRef::from(&fd).set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY on an accepted socket");
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[slot as usize];
        assert!(entry.conn.is_none(), "slot {slot} reused while occupied");
        let id: ConnId = (entry.generation as u64) << 32 | slot as u64;
        entry.conn = Some(Conn {
            fd,
            ctx: ConnCtx::new(id, self.wakeup.clone()),
            state: State::Open,
            backlog: Vec::new(),
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            send_in_flight: false,
            recv_armed: false,
            recv_cancel_queued: false,
            paused: false,
            eof: false,
            flush_queued: false,
        });
        self.open += 1;
        self.arm_recv(slot)
    }

    /// The connection in `slot` if `generation` (24 bits) is its current one.
    fn conn_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Conn> {
        let entry = self.slots.get_mut(slot as usize)?;
        if entry.generation & GENERATION_MASK != generation {
            return None;
        }
        entry.conn.as_mut()
    }

    fn arm_recv(&mut self, slot: u32) -> io::Result<()> {
        let entry = &mut self.slots[slot as usize];
        let generation = entry.generation;
        let conn = entry
            .conn
            .as_mut()
            .expect("arming a receive on an empty slot");
        debug_assert!(!conn.recv_armed);
        self.ring.recv_multi(
            conn.fd.as_raw_fd(),
            RECV_BUFFER_GROUP,
            user_data(kind::RECV, generation, slot),
        )?;
        conn.recv_armed = true;
        conn.recv_cancel_queued = false;
        self.ops += 1;
        Ok(())
    }

    fn cancel_recv(&mut self, slot: u32) -> io::Result<()> {
        let entry = &mut self.slots[slot as usize];
        let generation = entry.generation;
        let Some(conn) = entry.conn.as_mut() else {
            return Ok(());
        };
        if conn.recv_armed && !conn.recv_cancel_queued {
            conn.recv_cancel_queued = true;
            self.ring.cancel(
                user_data(kind::RECV, generation, slot),
                user_data(kind::CANCEL, generation, slot),
            )?;
            self.ops += 1;
        }
        Ok(())
    }

    fn on_recv(&mut self, slot: u32, generation: u32, c: Completion, more: bool) -> io::Result<()> {
        let buffer = cqueue::buffer_select(c.flags);
        let Some(conn) = self
            .slots
            .get_mut(slot as usize)
            .filter(|e| e.generation & GENERATION_MASK == generation)
            .and_then(|e| e.conn.as_mut())
        else {
            debug!(slot, "receive completion for a connection that is gone");
            if let Some(bid) = buffer {
                self.bufs.recycle(bid);
            }
            return Ok(());
        };
        if !more {
            conn.recv_armed = false;
        }
        let mut flow = Flow::Continue;
        let mut eof = false;
        let mut reset = false;
        if c.result > 0 {
            match buffer {
                Some(bid) => {
                    let data = self.bufs.data(bid, c.result as usize);
                    flow = feed(&*self.service, conn, data);
                    self.bufs.recycle(bid);
                }
                None => {
                    warn!(
                        conn = conn.ctx.id,
                        "receive completion without a buffer; closing the connection"
                    );
                    reset = true;
                }
            }
        } else {
            if let Some(bid) = buffer {
                self.bufs.recycle(bid);
            }
            match -c.result {
                0 => eof = true,
                // ENOBUFS: out of provided buffers, the multishot ended; it is re-armed
                // below and submitted after this batch gave its buffers back.
                libc::ENOBUFS | libc::ECANCELED => {}
                libc::ECONNRESET
                | libc::EPIPE
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH => reset = true,
                errno => {
                    warn!(
                        conn = conn.ctx.id,
                        error = %io::Error::from_raw_os_error(errno),
                        "receive failed; closing the connection"
                    );
                    reset = true;
                }
            }
        }
        let needs_flush = !conn.out.is_empty();
        if reset {
            return self.close(slot, SocketShutdown::Both);
        }
        match flow {
            Flow::Continue => {}
            Flow::Paused => self.cancel_recv(slot)?,
            Flow::Close => return self.begin_drain(slot, true),
            Flow::Error(e) => return self.frame_error(slot, e),
        }
        if needs_flush {
            self.queue_flush(slot);
        }
        let conn = self.slots[slot as usize]
            .conn
            .as_mut()
            .expect("open connection");
        if eof {
            conn.eof = true;
            if !conn.paused && conn.state == State::Open {
                return self.begin_drain(slot, true);
            }
        }
        if !conn.recv_armed
            && conn.state == State::Open
            && !conn.paused
            && !conn.eof
            && !self.stopping
        {
            self.arm_recv(slot)?;
        }
        self.maybe_free(slot);
        Ok(())
    }

    fn frame_error(&mut self, slot: u32, e: FrameError) -> io::Result<()> {
        let conn = self.slots[slot as usize]
            .conn
            .as_mut()
            .expect("open connection");
        debug!(conn = conn.ctx.id, error = %e, "malformed frame; answering with an error and closing");
        self.service.on_frame_error(&e, &mut conn.out);
        // Requests accepted before the bad frame are still answered: their effects may
        // have happened, and the client deserves to know.
        self.begin_drain(slot, true)
    }

    /// Stops reading; sends what is queued (and, with `deferred`, the deferred replies
    /// still owed), then closes.
    fn begin_drain(&mut self, slot: u32, deferred: bool) -> io::Result<()> {
        let conn = self.slots[slot as usize]
            .conn
            .as_mut()
            .expect("open connection");
        if conn.state != State::Open {
            return Ok(());
        }
        conn.state = State::Draining { deferred };
        if !deferred {
            conn.ctx.mark_closed();
        }
        release_excess(&mut conn.backlog);
        self.cancel_recv(slot)?;
        self.queue_flush(slot);
        Ok(())
    }

    /// Closes the connection for the service now and shuts the socket down; the slot is
    /// freed once its operations have completed.
    fn close(&mut self, slot: u32, how: SocketShutdown) -> io::Result<()> {
        let entry = &mut self.slots[slot as usize];
        let generation = entry.generation;
        let Some(conn) = entry.conn.as_mut() else {
            return Ok(());
        };
        if conn.state == State::Closing {
            return Ok(());
        }
        conn.state = State::Closing;
        conn.ctx.mark_closed();
        // Wakes a receive or send blocked on the socket; errors (already shut down,
        // reset) change nothing.
        let _ = SockRef::from(&conn.fd).shutdown(how);
        if conn.send_in_flight && how == SocketShutdown::Both {
            self.ring.cancel(
                user_data(kind::SEND, generation, slot),
                user_data(kind::CANCEL, generation, slot),
            )?;
            self.ops += 1;
        }
        self.cancel_recv(slot)?;
        self.maybe_free(slot);
        Ok(())
    }

    fn maybe_free(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        let Some(conn) = &entry.conn else {
            return;
        };
        if conn.state == State::Closing && !conn.recv_armed && !conn.send_in_flight {
            entry.conn = None;
            entry.generation = entry.generation.wrapping_add(1);
            self.free.push(slot);
            self.open -= 1;
        }
    }

    fn on_send(&mut self, slot: u32, generation: u32, result: i32) -> io::Result<()> {
        let Some(conn) = self.conn_mut(slot, generation) else {
            debug!(slot, "send completion for a connection that is gone");
            return Ok(());
        };
        conn.send_in_flight = false;
        if result > 0 {
            conn.sent += result as usize;
            assert!(conn.sent <= conn.sending.len(), "sent more than queued");
            if conn.sent == conn.sending.len() {
                release_excess(&mut conn.sending);
                conn.sent = 0;
            }
            if conn.state == State::Closing {
                self.maybe_free(slot);
                return Ok(());
            }
            self.queue_flush(slot);
            self.maybe_resume(slot)
        } else {
            if result < 0 && !matches!(-result, libc::EPIPE | libc::ECONNRESET | libc::ECANCELED) {
                debug!(conn = conn.ctx.id, error = %io::Error::from_raw_os_error(-result), "send failed");
            }
            self.close(slot, SocketShutdown::Both)?;
            self.maybe_free(slot);
            Ok(())
        }
    }

    fn queue_flush(&mut self, slot: u32) {
        let conn = self.slots[slot as usize]
            .conn
            .as_mut()
            .expect("open connection");
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.flush.push(slot);
        }
    }

    /// Queues one send per connection that has replies and no send in flight.
    fn flush_sends(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.flush);
        for &slot in &list {
            let entry = &mut self.slots[slot as usize];
            let generation = entry.generation;
            let Some(conn) = entry.conn.as_mut() else {
                continue;
            };
            conn.flush_queued = false;
            if conn.state == State::Closing || conn.send_in_flight {
                continue;
            }
            if conn.sent == conn.sending.len() {
                conn.sending.clear();
                conn.sent = 0;
                std::mem::swap(&mut conn.out, &mut conn.sending);
            }
            if conn.sending.is_empty() {
                if let State::Draining { deferred } = conn.state
                    && (!deferred || conn.ctx.in_flight() == 0)
                {
                    self.close(slot, SocketShutdown::Write)?;
                }
                continue;
            }
            self.ring.send(
                conn.fd.as_raw_fd(),
                &conn.sending[conn.sent..],
                user_data(kind::SEND, generation, slot),
            )?;
            conn.send_in_flight = true;
            self.ops += 1;
        }
        list.clear();
        self.flush = list;
        Ok(())
    }

    /// Moves deferred replies of every connection that has some into its send buffer.
    fn take_deferred(&mut self) -> io::Result<()> {
        let mut dirty = std::mem::take(&mut self.dirty);
        self.wakeup.take_dirty(&mut dirty);
        for ctx in dirty.drain(..) {
            if ctx.is_closed() {
                continue;
            }
            let slot = ctx.id as u32;
            let generation = (ctx.id >> 32) as u32;
            let Some(entry) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            let Some(conn) = entry.conn.as_mut() else {
                continue;
            };
            ctx.take_deferred(&mut conn.out);
            self.queue_flush(slot);
            self.maybe_resume(slot)?;
        }
        self.dirty = dirty;
        Ok(())
    }

    /// Resumes a paused connection whose replies drained: parses its backlog, then
    /// receives again.
    fn maybe_resume(&mut self, slot: u32) -> io::Result<()> {
        let conn = self.slots[slot as usize]
            .conn
            .as_mut()
            .expect("open connection");
        if !conn.paused
            || conn.state != State::Open
            || conn.ctx.in_flight() >= IN_FLIGHT_PER_CONNECTION_MAX
            || conn.unsent() > UNSENT_RESUME_BYTES
        {
            return Ok(());
        }
        conn.paused = false;
        let backlog = std::mem::take(&mut conn.backlog);
        let (used, stop) = dispatch(&*self.service, conn, &backlog);
        conn.backlog = backlog;
        conn.backlog.drain(..used);
        if !conn.out.is_empty() {
            self.queue_flush(slot);
        }
        match stop {
            // What is left is a prefix of one frame, its header already checked.
            Stop::NeedMore => {}
            Stop::OverLimit => {
                self.slots[slot as usize]
                    .conn
                    .as_mut()
                    .expect("open connection")
                    .paused = true;
                return Ok(());
            }
            Stop::Close => return self.begin_drain(slot, true),
            Stop::Error(e) => return self.frame_error(slot, e),
        }
        let conn = self.slots[slot as usize]
            .conn
            .as_mut()
            .expect("open connection");
        if conn.eof {
            return self.begin_drain(slot, true);
        }
        if !conn.recv_armed && !self.stopping {
            self.arm_recv(slot)?;
        }
        Ok(())
    }

    /// Stops accepting, closes every connection and waits (bounded) for the kernel to
    /// finish every operation. Returns whether it did.
    fn stop(&mut self) -> bool {
        self.stopping = true;
        let closed = self.stop_accepting().and_then(|()| {
            for slot in 0..self.slots.len() as u32 {
                self.close(slot, SocketShutdown::Both)?;
            }
            Ok(())
        });
        if let Err(e) = closed {
            warn!(error = %e, "client-socket ring: cancelling operations at shutdown failed");
            return false;
        }
        let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_TIMEOUT_MS);
        while self.ops > 0 && Instant::now() < deadline {
            if let Err(e) = self.turn().and_then(|()| self.ring.wait_ms(10)) {
                warn!(error = %e, "client-socket ring: draining at shutdown failed");
                return false;
            }
        }
        self.ops == 0
    }

    fn stop_accepting(&mut self) -> io::Result<()> {
        for l in 0..LISTENERS {
            if self.accept_armed[l] {
                self.ring.cancel(
                    user_data(kind::ACCEPT, 0, l as u32),
                    user_data(kind::CANCEL, 0, l as u32),
                )?;
                self.ops += 1;
            }
            if self.retry_armed[l] {
                self.ring.cancel(
                    user_data(kind::ACCEPT_RETRY, 0, l as u32),
                    user_data(kind::CANCEL, 0, l as u32),
                )?;
                self.ops += 1;
            }
            // The kernel holds the listener until the cancelled accept completes (and
            // until this thread has run that completion): shut it down
            // now, so it stops taking connections into a backlog nobody will accept
            // from, and close our fd so the port is free as soon as the kernel lets go.
            if let Some(listener) = self.listeners[l].take() {
                let _ = SockRef::from(&listener).shutdown(SocketShutdown::Both);
            }
        }
        Ok(())
    }
}
