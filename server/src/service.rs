//! The seam between transports (sockets) and the shard behind them.
//!
//! A transport (the per-shard io_uring ring in `net::uring`, or glommio's sockets in
//! `net::tcp`) owns connections: it receives bytes, cuts them into frames with
//! `tern_protocol::frame::parse_frame` and hands each frame to a [`Service`]. The service
//! answers most requests at once by appending a reply frame to the connection's send
//! buffer; requests that need another core (or several) are answered later through the
//! connection's [`Deferred`] queue, and the per-core [`Wakeup`] tells the transport that
//! some connection has deferred bytes to send.
//!
//! Everything here is per core (`Rc`, `Cell`, `RefCell`): nothing is shared across threads.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tern_protocol::frame::{Frame, FrameError};

/// Identifies a connection within one core.
pub type ConnId = u64;

/// What a transport should do with a connection after handing it a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep reading.
    Continue,
    /// Send what is in the send buffer, then close (the peer sent something that cannot
    /// be answered, e.g. an undecodable body).
    Close,
}

/// The shard side, as transports see it.
pub trait Service {
    /// Handles one complete, CRC-checked frame received on `conn`, in arrival order.
    /// A reply produced now is appended to `out` (the connection's send buffer); a reply
    /// produced later goes to `conn.deferred` and `Wakeup` is notified.
    fn on_frame(&self, conn: &Rc<ConnCtx>, frame: Frame<'_>, out: &mut Vec<u8>) -> Verdict;

    /// Appends the error frame for a frame that could not be parsed. When the error is
    /// skippable (`FrameError::skippable_len`: an unknown opcode) the transport skips the
    /// frame and keeps reading; otherwise it closes the connection after sending what is
    /// owed and this frame.
    fn on_frame_error(&self, err: &FrameError, out: &mut Vec<u8>);
}

/// Per-connection state shared between its transport and the tasks answering its
/// deferred requests.
#[derive(Debug)]
pub struct ConnCtx {
    pub id: ConnId,
    /// Reply frames produced after `on_frame` returned, waiting to be sent.
    deferred: RefCell<Vec<u8>>,
    /// Requests accepted but not yet answered (deferred ones).
    in_flight: Cell<usize>,
    /// Set by the transport when the connection is gone: late replies are dropped.
    closed: Cell<bool>,
    wakeup: Rc<Wakeup>,
}

impl ConnCtx {
    pub fn new(id: ConnId, wakeup: Rc<Wakeup>) -> Rc<ConnCtx> {
        Rc::new(ConnCtx {
            id,
            deferred: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            closed: Cell::new(false),
            wakeup,
        })
    }

    /// Requests of this connection still waiting for a deferred reply.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Called by the service when it defers a request.
    pub fn begin_deferred(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// Called by the task that finished a deferred request: queues its reply frame and
    /// wakes the transport.
    pub fn finish_deferred(self: &Rc<Self>, reply_frame: &[u8]) {
        let n = self.in_flight.get();
        assert!(n > 0, "finish_deferred without begin_deferred");
        self.in_flight.set(n - 1);
        if self.closed.get() {
            return;
        }
        let mut buf = self.deferred.borrow_mut();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(reply_frame);
        if was_empty {
            self.wakeup.mark_dirty(self.clone());
        }
    }

    /// Moves deferred reply bytes into the transport's send buffer.
    pub fn take_deferred(&self, out: &mut Vec<u8>) {
        let mut buf = self.deferred.borrow_mut();
        if out.is_empty() {
            std::mem::swap(out, &mut buf);
        } else {
            out.extend_from_slice(&buf);
            buf.clear();
        }
    }

    pub fn mark_closed(&self) {
        self.closed.set(true);
        self.deferred.borrow_mut().clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

/// Per-core: which connections have deferred replies, and the transport task to wake.
#[derive(Default)]
pub struct Wakeup {
    dirty: RefCell<Vec<Rc<ConnCtx>>>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeup")
            .field("dirty", &self.dirty.borrow().len())
            .finish()
    }
}

impl Wakeup {
    pub fn new() -> Rc<Wakeup> {
        Rc::new(Wakeup::default())
    }

    fn mark_dirty(&self, conn: Rc<ConnCtx>) {
        self.dirty.borrow_mut().push(conn);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Takes the connections that have deferred bytes (each at most once per call).
    pub fn take_dirty(&self, into: &mut Vec<Rc<ConnCtx>>) {
        into.append(&mut self.dirty.borrow_mut());
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.borrow().is_empty()
    }

    /// A future that completes when some connection becomes dirty (immediately if one is).
    pub fn wait(&self) -> WakeupWait<'_> {
        WakeupWait { wakeup: self }
    }
}

pub struct WakeupWait<'a> {
    wakeup: &'a Wakeup,
}

impl Future for WakeupWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wakeup.has_dirty() {
            Poll::Ready(())
        } else {
            self.wakeup.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// A per-core shutdown flag that tasks can await.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Rc<ShutdownInner>);

#[derive(Debug, Default)]
struct ShutdownInner {
    triggered: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.0.triggered.set(true);
        for w in self.0.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.0.triggered.get()
    }

    /// Completes once `trigger` has been called.
    pub fn wait(&self) -> ShutdownWait {
        ShutdownWait(self.0.clone())
    }
}

pub struct ShutdownWait(Rc<ShutdownInner>);

impl Future for ShutdownWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.triggered.get() {
            Poll::Ready(())
        } else {
            // A task that polls its wait on every loop turn (a transport racing shutdown
            // against I/O) must not grow this list by one waker per turn.
            let mut wakers = self.0.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        }
    }
}
