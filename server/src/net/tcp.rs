//! The comparison transport: glommio's own sockets, one task per connection.
//!
//! Kept selectable (`--net glommio`) so benchmarks can show what the per-core ring buys.
//! Each connection task reads into its buffer, hands every whole frame to the service,
//! and writes everything the batch produced in one write. Deferred replies: the core's
//! [`Wakeup`] has room for one waiting task, so a dispatcher task awaits it and pokes the
//! [`Signal`] of each connection that has replies; the connection task races that signal
//! against its read. Backpressure: a connection with [`IN_FLIGHT_PER_CONNECTION_MAX`]
//! requests in flight is not read until replies drain; replies are written before the
//! next read, so unsent bytes never pile up.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;
use tern_protocol::frame::{self, HEADER_LEN};
use tern_protocol::limits::IN_FLIGHT_PER_CONNECTION_MAX;
use tracing::{debug, warn};

use super::CoreListeners;
use super::limits::{
    ACCEPT_RETRY_DELAY_MS, BUFFER_RETAIN_BYTES, CONNECTIONS_PER_CORE_MAX, GLOMMIO_READ_BUFFER_BYTES,
};
use super::sys;
use crate::service::{ConnCtx, ConnId, Service, Shutdown, Verdict, Wakeup};

/// Serves `listeners` with glommio sockets until `shutdown` fires, then closes every
/// connection and returns once their tasks have ended.
pub(super) async fn serve(
    listeners: CoreListeners,
    service: Rc<dyn Service>,
    wakeup: Rc<Wakeup>,
    shutdown: Shutdown,
    serving: Box<dyn FnOnce()>,
) -> io::Result<()> {
    let shard = into_glommio(listeners.shard)?;
    let shared = into_glommio(listeners.shared)?;
    let core = Rc::new(CoreConns {
        service,
        wakeup,
        shutdown: shutdown.clone(),
        conns: RefCell::new(HashMap::default()),
        next_id: Cell::new(0),
        gate: Gate::new(),
    });
    let tasks = Gate::new();
    spawn_in(&tasks, dispatch_deferred(core.clone()))?;
    spawn_in(&tasks, accept_loop(shard, core.clone()))?;
    spawn_in(&tasks, accept_loop(shared, core.clone()))?;
    serving();
    shutdown.wait().await;
    tasks.close().await.map_err(io::Error::from)?;
    // Wake every connection task: each sees the shutdown and closes.
    let signals: Vec<Rc<Signal>> = core.conns.borrow().values().cloned().collect();
    for signal in signals {
        signal.notify();
    }
    core.gate.close().await.map_err(io::Error::from)
}

fn spawn_in(gate: &Gate, task: impl Future<Output = ()> + 'static) -> io::Result<()> {
    gate.spawn(task)
        .map(|t| drop(t.detach()))
        .map_err(io::Error::from)
}

fn into_glommio(listener: std::net::TcpListener) -> io::Result<(TcpListener, RawFd)> {
    // glommio accepts through its ring, which waits for readiness only on blocking sockets.
    listener.set_nonblocking(false)?;
    Ok(sys::listener_into_glommio(listener))
}

/// The connections of one core.
struct CoreConns {
    service: Rc<dyn Service>,
    wakeup: Rc<Wakeup>,
    shutdown: Shutdown,
    conns: RefCell<HashMap<ConnId, Rc<Signal>, ahash::RandomState>>,
    next_id: Cell<ConnId>,
    /// Every connection task; closed (awaited) at shutdown.
    gate: Gate,
}

/// Wakes one connection task: it has deferred replies, or the core is stopping.
#[derive(Default)]
struct Signal {
    notified: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    fn notify(&self) {
        self.notified.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn poll_notified(&self, cx: &Context<'_>) -> Poll<()> {
        if self.notified.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

async fn dispatch_deferred(core: Rc<CoreConns>) {
    let mut dirty = Vec::new();
    loop {
        let stopping = or(
            async {
                core.shutdown.wait().await;
                true
            },
            async {
                core.wakeup.wait().await;
                false
            },
        )
        .await;
        if stopping {
            return;
        }
        core.wakeup.take_dirty(&mut dirty);
        let conns = core.conns.borrow();
        for ctx in dirty.drain(..) {
            if let Some(signal) = conns.get(&ctx.id) {
                signal.notify();
            }
        }
    }
}

async fn accept_loop((listener, fd): (TcpListener, RawFd), core: Rc<CoreConns>) {
    loop {
        let accepted = or(async { Some(listener.accept().await) }, async {
            core.shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => {
                // Stop listening now: glommio closes the fd asynchronously, and the kernel
                // keeps the socket listening until the cancelled accept has completed, so
                // a client could still connect (into a backlog nobody serves) after
                // `serve` returned. shutdown(2) of a listening socket stops it at once.
                sys::stop_listening(fd);
                drop(listener);
                return;
            }
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                warn!(error = %e, "accepting a connection failed; retrying in {ACCEPT_RETRY_DELAY_MS} ms");
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                continue;
            }
        };
        if core.conns.borrow().len() >= CONNECTIONS_PER_CORE_MAX {
            warn!("closing a new connection: this core already serves {CONNECTIONS_PER_CORE_MAX}");
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY on an accepted socket");
        }
        let id = core.next_id.get();
        core.next_id.set(id + 1);
        let signal = Rc::new(Signal::default());
        core.conns.borrow_mut().insert(id, signal.clone());
        let ctx = ConnCtx::new(id, core.wakeup.clone());
        let task = {
            let core = core.clone();
            async move {
                if let Err(e) = serve_conn(stream, &ctx, &signal, &core).await {
                    debug!(conn = id, error = %e, "connection ended with an error");
                }
                ctx.mark_closed();
                core.conns.borrow_mut().remove(&id);
            }
        };
        if let Err(e) = core.gate.spawn(task).map(|t| drop(t.detach())) {
            debug!(error = %e, "not serving a connection accepted while stopping");
            core.conns.borrow_mut().remove(&id);
        }
    }
}

enum Event {
    Read(io::Result<usize>),
    Signal,
}

/// Serves one connection until it closes, errs, or the core stops.
async fn serve_conn(
    mut stream: TcpStream,
    ctx: &Rc<ConnCtx>,
    signal: &Signal,
    core: &CoreConns,
) -> io::Result<()> {
    let service = &*core.service;
    let mut buf = vec![0u8; GLOMMIO_READ_BUFFER_BYTES];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut eof = false;
    // Set by a malformed frame or Verdict::Close: parse nothing more, answer what was
    // accepted (deferred replies included), then close.
    let mut closing = false;
    loop {
        if core.shutdown.is_triggered() {
            return Ok(());
        }
        while !closing && ctx.in_flight() < IN_FLIGHT_PER_CONNECTION_MAX {
            match frame::parse_frame(&buf[start..end]) {
                Ok(Some((frame, used))) => {
                    start += used;
                    if service.on_frame(ctx, frame, &mut out) == Verdict::Close {
                        closing = true;
                    }
                }
                Ok(None) => break,
                // A whole frame of an unknown kind: answered and skipped.
                Err(e) => match e.skippable_len() {
                    Some(len) if end - start >= len => {
                        service.on_frame_error(&e, &mut out);
                        start += len;
                    }
                    Some(_) => break,
                    None => {
                        debug!(conn = ctx.id, error = %e, "malformed frame; answering with an error and closing");
                        service.on_frame_error(&e, &mut out);
                        closing = true;
                    }
                },
            }
        }
        ctx.take_deferred(&mut out);
        if !out.is_empty() {
            let written = or(
                async { stream.write_all(&out).await.map(|()| true) },
                async {
                    core.shutdown.wait().await;
                    Ok(false)
                },
            )
            .await?;
            if !written {
                return Ok(());
            }
            out.clear();
            if out.capacity() > BUFFER_RETAIN_BYTES {
                out.shrink_to(BUFFER_RETAIN_BYTES);
            }
        }
        if (closing || eof) && ctx.in_flight() == 0 {
            return Ok(());
        }
        let paused = ctx.in_flight() >= IN_FLIGHT_PER_CONNECTION_MAX;
        let pending = &buf[start..end];
        let needed = match frame::frame_len(pending) {
            Ok(needed) => needed.unwrap_or(HEADER_LEN),
            // Found after a pause stopped parsing: caught by the next parse.
            Err(_) if !paused && !closing => continue,
            Err(_) => HEADER_LEN,
        };
        if !paused && !closing && needed <= pending.len() {
            // A whole frame is waiting (parsing stopped for replies to drain).
            continue;
        }
        if start == end {
            start = 0;
            end = 0;
            if buf.len() > GLOMMIO_READ_BUFFER_BYTES {
                buf.truncate(GLOMMIO_READ_BUFFER_BYTES);
                buf.shrink_to_fit();
            }
        }
        if start + needed > buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            if needed > buf.len() {
                buf.resize(needed, 0);
            }
        }
        let event = if paused || eof || closing {
            poll_fn(|cx| signal.poll_notified(cx)).await;
            Event::Signal
        } else {
            let read_into = &mut buf[end..];
            or(async { Event::Read(stream.read(read_into).await) }, async {
                poll_fn(|cx| signal.poll_notified(cx)).await;
                Event::Signal
            })
            .await
        };
        match event {
            Event::Read(Ok(0)) => eof = true,
            Event::Read(Ok(n)) => end += n,
            Event::Read(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(());
            }
            Event::Read(Err(e)) => return Err(e),
            Event::Signal => {}
        }
    }
}
