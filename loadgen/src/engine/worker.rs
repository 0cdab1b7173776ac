//! One engine thread: a ring, its connections, its share of the workload.
//!
//! A turn of the loop: enter the kernel once (submit every queued send and re-armed
//! receive; sleep until a completion or the next timer unless there is work), read the
//! clock once, hand recorders to the main thread at interval boundaries, handle every
//! completion (replies are parsed in place from the provided buffers; a reply completes
//! its request and frees its slot), issue operations (queued ones first, then new ones:
//! closed loop while fewer than C×P are outstanding, open loop when their intended time
//! has come), and queue one send per connection of everything encoded this turn.
//!
//! Every operation belongs to the endpoint its key routes to and waits in that endpoint's
//! FIFO queue while every connection to it is full: the workload's sequence is issued as
//! drawn, never re-drawn or dropped for being on a busy shard.
//!
//! Latency: open loop from the op's intended time on the fixed schedule (coordinated
//! omission corrected: a stalled server delays the whole backlog, and every op of it
//! counts the delay); closed loop from the moment the request was handed to the kernel
//! (or, when it had to wait for a free connection, from when it was drawn).
//!
//! An op belongs to the measured window when it started (was drawn, or was due) at or
//! after the warm-up's end; ops started during warm-up and completing after it are not
//! recorded at all, so no interval mixes the two.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use io_uring::cqueue;

use super::limits::{
    DRAIN_TIMEOUT, ERROR_SAMPLES_MAX, LATE_SEND_THRESHOLD, OPEN_LOOP_QUEUE_FACTOR, REAP_BATCH,
    REASSEMBLY_MAX_BYTES, REASSEMBLY_STEP_MIN_BYTES, RECV_BUFFER_COUNT, RECV_BUFFER_GROUP,
    RECV_BUFFER_SIZE_BYTES, SHUTDOWN_DRAIN_TIMEOUT, STALL_TIMEOUT, WAIT_MAX,
};
use super::sys::{BufRing, Completion, Ring};
use super::{Schedule, ThreadStats};
use crate::cpu;
use crate::proto::{Match, Outcome, Parse, Protocol, Reply};
use crate::report::Recorder;
use crate::workload::{Op, OpKind, Workload, WorkloadSpec};

/// What ends a thread's stream of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Length {
    /// Ops due (open loop) or drawn (closed loop) before this time since the epoch.
    Until(Duration),
    /// This many measured ops (after the warm-up).
    Ops(u64),
    /// Until the workload ends (the preload).
    Exhaust,
}

/// Everything one thread needs to know.
#[derive(Debug, Clone)]
pub(super) struct ThreadPlan {
    pub index: usize,
    pub threads: usize,
    pub connections: usize,
    pub depth: usize,
    pub cpu: Option<usize>,
    /// This thread's share of the open-loop rate, ops/s.
    pub rate: Option<f64>,
    pub length: Length,
    pub warmup: Duration,
    pub schedule: Schedule,
    pub spin: bool,
    pub spec: WorkloadSpec,
}

/// Messages to the main thread.
pub(super) enum ToMain {
    /// Setup done (or failed); the thread now waits for the start.
    Ready {
        thread: usize,
        result: Result<(), String>,
        warning: Option<String>,
    },
    /// The recorder of the next interval boundary of the schedule.
    Interval { thread: usize, rec: Recorder },
    /// The thread is done: what it recorded since its last boundary, and its stats.
    Final {
        thread: usize,
        rec: Recorder,
        stats: Box<ThreadStats>,
    },
}

/// Channels and flags a thread shares with the main thread.
pub(super) struct Links {
    pub to_main: Sender<ToMain>,
    /// The start instant (the common epoch), or None to give up before starting.
    pub start: Receiver<Option<Instant>>,
    /// Cleared recorders coming back for reuse.
    pub recycled: Receiver<Recorder>,
    pub abort: Arc<AtomicBool>,
}

/// The body of an engine thread.
pub(super) fn thread_main<P: Protocol>(proto: P, plan: ThreadPlan, links: Links) {
    let thread = plan.index;
    let setup = Worker::new(proto, &plan);
    let mut worker = match setup {
        Ok((w, warning)) => {
            let _ = links.to_main.send(ToMain::Ready {
                thread,
                result: Ok(()),
                warning,
            });
            w
        }
        Err(e) => {
            let _ = links.to_main.send(ToMain::Ready {
                thread,
                result: Err(e.to_string()),
                warning: None,
            });
            return;
        }
    };
    let Ok(Some(epoch)) = links.start.recv() else {
        worker.shutdown();
        return;
    };
    let result = worker.run(epoch, &links);
    let mut stats = worker.core.stats.clone();
    if let Err(e) = result {
        stats.fatal = Some(format!("thread {thread}: {e}"));
    }
    let rec = std::mem::take(&mut worker.core.rec);
    worker.shutdown();
    let _ = links.to_main.send(ToMain::Final {
        thread,
        rec,
        stats: Box::new(stats),
    });
}

/// Operation kinds in the top bits of user_data.
mod kind {
    pub const RECV: u64 = 1;
    pub const SEND: u64 = 2;
    pub const CANCEL: u64 = 3;
}

fn user_data(kind: u64, conn: u32) -> u64 {
    kind << 32 | u64::from(conn)
}

/// A request slot of a connection.
#[derive(Debug, Clone, Copy)]
struct Slot {
    op: Op,
    /// Latency is measured from this (ns since the epoch).
    start_ns: u64,
    /// Part of the request id: a stale or duplicated reply does not match a reused slot.
    generation: u32,
    /// Read-modify-write: 0 while the read is in flight, 1 for the write.
    phase: u8,
    measured: bool,
    busy: bool,
}

const IDLE_OP: Op = Op {
    kind: OpKind::Get,
    key: 0,
    value_len: 0,
    scan_len: 0,
};

fn request_id(generation: u32, slot: usize) -> u64 {
    u64::from(generation) << 16 | slot as u64
}

struct Conn {
    stream: TcpStream,
    endpoint: u32,
    /// In its endpoint's ready queue.
    ready_queued: bool,
    /// Requests encoded since the last send was queued.
    out: Vec<u8>,
    /// The bytes of the send in flight; `sent` of them went out already.
    sending: Vec<u8>,
    sent: usize,
    send_in_flight: bool,
    /// A reply split across receive buffers, being reassembled.
    backlog: Vec<u8>,
    slots: Box<[Slot]>,
    free: Vec<u16>,
    /// Slots in the order their requests were sent (protocols that answer in order).
    order: VecDeque<u16>,
    recv_armed: bool,
    recv_cancel_queued: bool,
    dead: bool,
    flush_queued: bool,
}

/// An op waiting for a free connection to its endpoint.
#[derive(Debug, Clone, Copy)]
struct Queued {
    op: Op,
    start_ns: u64,
    measured: bool,
}

struct Endpoint {
    /// Connections with a free slot, in round-robin order (each at most once).
    ready: VecDeque<u32>,
    /// Connections not dead.
    alive: usize,
    queue: VecDeque<Queued>,
}

enum Sent {
    Yes,
    Full,
    Dead,
}

/// Everything but the ring and the buffers (which the receive path borrows separately).
struct Core<P: Protocol> {
    proto: P,
    conns: Vec<Conn>,
    endpoints: Vec<Endpoint>,
    queued: usize,
    dead_conns: usize,
    workload: Workload,
    rec: Recorder,
    /// Ops drawn and not finished: queued + in flight.
    outstanding: usize,
    in_flight: usize,
    budget: usize,
    flush_list: Vec<u32>,
    cancel_list: Vec<u32>,
    /// Closed loop: ops drawn and sent this turn, stamped with the send time at its end.
    issued_now: Vec<(u32, u16)>,
    open_loop: bool,
    warmup_ns: u64,
    /// Warm-up completions are still recorded (the warm-up interval is not closed yet).
    recording_warmup: bool,
    stats: ThreadStats,
    last_progress_ns: u64,
}

pub(super) struct Worker<P: Protocol> {
    // Field order is drop order: the ring (ending every operation) before the buffers.
    ring: Ring,
    bufs: Option<BufRing>,
    core: Core<P>,
    plan: ThreadPlan,
    completions: Vec<Completion>,
    /// Operations submitted whose last completion has not been reaped.
    kernel_ops: usize,
    epoch: Instant,
    // Open loop.
    interval_ns: f64,
    phase_ns: f64,
    next_index: u64,
    // Stop conditions.
    measured_drawn: u64,
    exhausted: bool,
    drawing_done_ns: Option<u64>,
    next_boundary_ns: Option<u64>,
    cpu_start: Option<(u64, u64)>,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl<P: Protocol> Worker<P> {
    fn new(proto: P, plan: &ThreadPlan) -> io::Result<(Worker<P>, Option<String>)> {
        if let Some(cpu) = plan.cpu {
            super::sys::pin_to_cpu(cpu)?;
        }
        let endpoints = proto.endpoints().to_vec();
        // Every endpoint needs a connection; spread the rest round robin.
        let connections = plan.connections.max(endpoints.len());
        let depth = plan.depth;
        let sq = (2 * connections + 64).next_power_of_two().clamp(256, 8192) as u32;
        let cq = (sq * 4).max(u32::from(RECV_BUFFER_COUNT) * 2);
        let (ring, warning) = Ring::new(sq, cq)?;
        let bufs = ring.buf_ring(RECV_BUFFER_GROUP, RECV_BUFFER_COUNT, RECV_BUFFER_SIZE_BYTES)?;
        let mut conns = Vec::with_capacity(connections);
        let mut eps: Vec<Endpoint> = endpoints
            .iter()
            .map(|_| Endpoint {
                ready: VecDeque::new(),
                alive: 0,
                queue: VecDeque::new(),
            })
            .collect();
        for c in 0..connections {
            // Offset by thread so that threads do not all favour endpoint 0 with their
            // extra connections.
            let ep = (c + plan.index) % endpoints.len();
            let stream = connect(endpoints[ep])?;
            eps[ep].ready.push_back(c as u32);
            eps[ep].alive += 1;
            conns.push(Conn {
                stream,
                endpoint: ep as u32,
                ready_queued: true,
                out: Vec::with_capacity(4096),
                sending: Vec::with_capacity(4096),
                sent: 0,
                send_in_flight: false,
                backlog: Vec::new(),
                slots: vec![
                    Slot {
                        op: IDLE_OP,
                        start_ns: 0,
                        generation: 0,
                        phase: 0,
                        measured: false,
                        busy: false,
                    };
                    depth
                ]
                .into_boxed_slice(),
                free: (0..depth as u16).rev().collect(),
                order: VecDeque::with_capacity(depth),
                recv_armed: false,
                recv_cancel_queued: false,
                dead: false,
                flush_queued: false,
            });
        }
        let in_flight_max = connections * depth;
        let open_loop = plan.rate.is_some();
        let budget = if open_loop {
            in_flight_max * (1 + OPEN_LOOP_QUEUE_FACTOR)
        } else {
            in_flight_max
        };
        for ep in &mut eps {
            ep.queue.reserve(budget.min(64 * 1024));
        }
        let workload = Workload::new(&plan.spec, plan.index, plan.threads);
        let (interval_ns, phase_ns) = match plan.rate {
            Some(rate) => {
                let interval = 1e9 / rate;
                // Threads interleave their schedules instead of all sending at t = 0.
                (interval, interval * plan.index as f64 / plan.threads as f64)
            }
            None => (0.0, 0.0),
        };
        let stats = ThreadStats {
            ring_tuned: ring.tuned,
            connections,
            ..ThreadStats::default()
        };
        let worker = Worker {
            ring,
            bufs: Some(bufs),
            core: Core {
                proto,
                conns,
                endpoints: eps,
                queued: 0,
                dead_conns: 0,
                workload,
                rec: Recorder::new(),
                outstanding: 0,
                in_flight: 0,
                budget,
                flush_list: Vec::with_capacity(connections),
                cancel_list: Vec::new(),
                issued_now: Vec::with_capacity(in_flight_max),
                open_loop,
                warmup_ns: ns(plan.warmup),
                recording_warmup: !plan.warmup.is_zero(),
                stats,
                last_progress_ns: 0,
            },
            plan: plan.clone(),
            completions: Vec::with_capacity(REAP_BATCH),
            kernel_ops: 0,
            epoch: Instant::now(),
            interval_ns,
            phase_ns,
            next_index: 0,
            measured_drawn: 0,
            exhausted: false,
            drawing_done_ns: None,
            next_boundary_ns: None,
            cpu_start: None,
        };
        Ok((worker, warning))
    }

    #[inline]
    fn clock(&self) -> u64 {
        ns(self.epoch.elapsed())
    }

    fn run(&mut self, epoch: Instant, links: &Links) -> io::Result<()> {
        self.epoch = epoch;
        self.next_boundary_ns = self.plan.schedule.after(Duration::ZERO).map(ns);
        for ci in 0..self.core.conns.len() {
            self.arm_recv(ci as u32)?;
        }
        let mut now = self.clock();
        loop {
            self.enter(now)?;
            now = self.clock();
            self.core.stats.turns += 1;
            self.boundaries(now, links);
            if self.cpu_start.is_none() && now >= self.core.warmup_ns {
                self.cpu_start = Some((cpu::thread_cpu_ns(), now));
                // The loop's counters describe the measured window, like the CPU time.
                let stats = &mut self.core.stats;
                (stats.turns, stats.recvs, stats.sends, stats.recv_rearms) = (1, 0, 0, 0);
            }
            self.handle_completions(now)?;
            if links.abort.load(Ordering::Relaxed) && self.drawing_done_ns.is_none() {
                self.drawing_done_ns = Some(now);
            }
            self.issue(now);
            self.flush_sends()?;
            if !self.core.open_loop && !self.core.issued_now.is_empty() {
                let sent_at = self.clock();
                for (ci, slot) in self.core.issued_now.drain(..) {
                    self.core.conns[ci as usize].slots[slot as usize].start_ns = sent_at;
                }
            }
            for ci in std::mem::take(&mut self.core.cancel_list) {
                self.cancel_recv(ci)?;
            }
            if self.finished(now) {
                break;
            }
        }
        let end = self.clock();
        let (cpu0, wall0) = self.cpu_start.unwrap_or((cpu::thread_cpu_ns(), end));
        self.core.stats.cpu_ns = cpu::thread_cpu_ns().saturating_sub(cpu0);
        self.core.stats.wall_ns = end.saturating_sub(wall0);
        self.core.stats.finished_at = Duration::from_nanos(end);
        self.core.stats.measured_drawn = self.measured_drawn;
        Ok(())
    }

    /// Submits and, unless there is work already, sleeps until a completion or the next
    /// timer.
    fn enter(&mut self, now: u64) -> io::Result<()> {
        if self.plan.spin || self.ring.has_completions() {
            return self.ring.enter_nowait();
        }
        // The open loop's next send time is tight: measure from now, not from the start
        // of the turn that just ran.
        let now = if self.core.open_loop {
            self.clock()
        } else {
            now
        };
        let mut wake = now + ns(WAIT_MAX);
        if let Some(b) = self.next_boundary_ns {
            wake = wake.min(b);
        }
        if self.core.open_loop
            && self.drawing_done_ns.is_none()
            && self.core.outstanding < self.core.budget
        {
            wake = wake.min(self.intended_ns(self.next_index));
        }
        if let Some(done) = self.drawing_done_ns {
            wake = wake.min(done + ns(DRAIN_TIMEOUT));
        }
        if wake <= now {
            self.ring.enter_nowait()
        } else {
            self.ring.enter_wait(Duration::from_nanos(wake - now))
        }
    }

    #[inline]
    fn intended_ns(&self, index: u64) -> u64 {
        (self.phase_ns + index as f64 * self.interval_ns) as u64
    }

    /// Hands the recorder to the main thread at every boundary passed.
    fn boundaries(&mut self, now: u64, links: &Links) {
        while let Some(b) = self.next_boundary_ns
            && now >= b
        {
            let fresh = links
                .recycled
                .try_recv()
                .unwrap_or_else(|_| Recorder::new());
            let rec = std::mem::replace(&mut self.core.rec, fresh);
            let _ = links.to_main.send(ToMain::Interval {
                thread: self.plan.index,
                rec,
            });
            if b >= self.core.warmup_ns {
                self.core.recording_warmup = false;
            }
            self.next_boundary_ns = self.plan.schedule.after(Duration::from_nanos(b)).map(ns);
        }
    }

    fn handle_completions(&mut self, now: u64) -> io::Result<()> {
        let mut batch = std::mem::take(&mut self.completions);
        loop {
            batch.clear();
            if self.ring.reap(&mut batch, REAP_BATCH) == 0 {
                break;
            }
            for c in &batch {
                self.handle(*c, now)?;
            }
        }
        self.completions = batch;
        Ok(())
    }

    fn handle(&mut self, c: Completion, now: u64) -> io::Result<()> {
        let ci = c.user_data as u32;
        let more = cqueue::more(c.flags);
        match c.user_data >> 32 {
            kind::RECV => {
                if !more {
                    self.kernel_ops -= 1;
                }
                self.on_recv(ci, c, more, now)
            }
            kind::SEND => {
                self.kernel_ops -= 1;
                self.on_send(ci, c.result);
                Ok(())
            }
            kind::CANCEL => {
                self.kernel_ops -= 1;
                Ok(())
            }
            other => panic!("completion of unknown kind {other}"),
        }
    }

    fn on_recv(&mut self, ci: u32, c: Completion, more: bool, now: u64) -> io::Result<()> {
        let buffer = cqueue::buffer_select(c.flags);
        if !more {
            self.core.conns[ci as usize].recv_armed = false;
        }
        let bufs = self.bufs.as_mut().expect("buffers live while running");
        if self.core.conns[ci as usize].dead {
            // Given up on: whatever still arrives is dropped.
            if let Some(bid) = buffer {
                bufs.recycle(bid);
            }
            return Ok(());
        }
        if c.result > 0 {
            self.core.stats.recvs += 1;
            match buffer {
                Some(bid) => {
                    let data = bufs.data(bid, c.result as usize);
                    if let Err(why) = self.core.feed(ci, data, now) {
                        self.core.fail_conn(ci, &why, now);
                    }
                    bufs.recycle(bid);
                }
                None => self
                    .core
                    .fail_conn(ci, "receive completion without a buffer", now),
            }
        } else {
            if let Some(bid) = buffer {
                bufs.recycle(bid);
            }
            match -c.result {
                // Out of provided buffers: the multishot ended; re-armed below, after
                // this batch gave its buffers back.
                libc::ENOBUFS => self.core.stats.recv_rearms += 1,
                libc::ECANCELED => {}
                0 => self
                    .core
                    .fail_conn(ci, "the server closed the connection", now),
                errno => {
                    let why = format!("receive failed: {}", io::Error::from_raw_os_error(errno));
                    self.core.fail_conn(ci, &why, now);
                }
            }
        }
        let conn = &self.core.conns[ci as usize];
        if !conn.recv_armed && !conn.dead {
            self.arm_recv(ci)?;
        }
        Ok(())
    }

    fn on_send(&mut self, ci: u32, result: i32) {
        let now = self.clock();
        let conn = &mut self.core.conns[ci as usize];
        conn.send_in_flight = false;
        if result < 0 {
            let why = format!("send failed: {}", io::Error::from_raw_os_error(-result));
            self.core.fail_conn(ci, &why, now);
            return;
        }
        conn.sent += result as usize;
        assert!(conn.sent <= conn.sending.len(), "sent more than queued");
        if conn.sent == conn.sending.len() {
            conn.sending.clear();
            conn.sent = 0;
        }
        if !conn.out.is_empty() || !conn.sending.is_empty() {
            self.core.queue_flush(ci);
        }
    }

    fn arm_recv(&mut self, ci: u32) -> io::Result<()> {
        let conn = &mut self.core.conns[ci as usize];
        debug_assert!(!conn.recv_armed);
        self.ring.recv_multi(
            conn.stream.as_raw_fd(),
            RECV_BUFFER_GROUP,
            user_data(kind::RECV, ci),
        )?;
        conn.recv_armed = true;
        self.kernel_ops += 1;
        Ok(())
    }

    fn cancel_recv(&mut self, ci: u32) -> io::Result<()> {
        let conn = &mut self.core.conns[ci as usize];
        if conn.recv_armed && !conn.recv_cancel_queued {
            conn.recv_cancel_queued = true;
            self.ring
                .cancel(user_data(kind::RECV, ci), user_data(kind::CANCEL, ci))?;
            self.kernel_ops += 1;
        }
        Ok(())
    }

    /// Queues one send per connection with bytes to send and no send in flight.
    fn flush_sends(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.core.flush_list);
        for &ci in &list {
            let conn = &mut self.core.conns[ci as usize];
            conn.flush_queued = false;
            if conn.dead || conn.send_in_flight {
                continue;
            }
            if conn.sent == conn.sending.len() {
                conn.sending.clear();
                conn.sent = 0;
                std::mem::swap(&mut conn.out, &mut conn.sending);
            }
            if conn.sending.is_empty() {
                continue;
            }
            self.ring.send(
                conn.stream.as_raw_fd(),
                &conn.sending[conn.sent..],
                user_data(kind::SEND, ci),
            )?;
            conn.send_in_flight = true;
            self.kernel_ops += 1;
            self.core.stats.sends += 1;
        }
        list.clear();
        self.core.flush_list = list;
        Ok(())
    }

    /// Whether the thread may draw an op that starts at `start_ns`.
    fn may_draw(&self, start_ns: u64) -> bool {
        if self.drawing_done_ns.is_some() || self.exhausted {
            return false;
        }
        match self.plan.length {
            Length::Until(end) => start_ns < ns(end),
            Length::Ops(quota) => start_ns < self.core.warmup_ns || self.measured_drawn < quota,
            Length::Exhaust => true,
        }
    }

    /// Sends queued ops to connections that have room, then draws new ones.
    fn issue(&mut self, now: u64) {
        if self.core.queued > 0 {
            self.core.drain_queues(now);
        }
        if self.core.open_loop {
            while self.core.outstanding < self.core.budget {
                let due = self.intended_ns(self.next_index);
                if due > now {
                    break;
                }
                if !self.may_draw(due) {
                    self.drawing_done_ns.get_or_insert(now);
                    break;
                }
                let Some(op) = self.core.workload.next() else {
                    self.exhausted = true;
                    self.drawing_done_ns.get_or_insert(now);
                    break;
                };
                let lag = now - due;
                if lag > ns(LATE_SEND_THRESHOLD) {
                    self.core.stats.late_sends += 1;
                }
                self.core.stats.max_lag_ns = self.core.stats.max_lag_ns.max(lag);
                let measured = due >= self.core.warmup_ns;
                self.measured_drawn += u64::from(measured);
                self.next_index += 1;
                if !self.core.start(op, due, measured, now) {
                    break;
                }
            }
        } else {
            while self.core.outstanding < self.core.budget {
                if !self.may_draw(now) {
                    self.drawing_done_ns.get_or_insert(now);
                    break;
                }
                let Some(op) = self.core.workload.next() else {
                    self.exhausted = true;
                    self.drawing_done_ns.get_or_insert(now);
                    break;
                };
                let measured = now >= self.core.warmup_ns;
                self.measured_drawn += u64::from(measured);
                if !self.core.start(op, now, measured, now) {
                    break;
                }
            }
        }
    }

    /// Whether the thread is done: nothing more to draw and nothing outstanding (or the
    /// replies still owed are overdue, or every connection is dead).
    fn finished(&mut self, now: u64) -> bool {
        if self.core.dead_conns == self.core.conns.len() {
            self.core
                .fail_queued(now, "every connection of the thread failed");
            return true;
        }
        if self.core.in_flight > 0
            && now.saturating_sub(self.core.last_progress_ns) > ns(STALL_TIMEOUT)
        {
            let why = format!("no reply for {STALL_TIMEOUT:?} with requests in flight");
            self.core.fail_everything(now, &why);
            return true;
        }
        let Some(done) = self.drawing_done_ns else {
            return false;
        };
        if self.core.outstanding == 0 {
            return true;
        }
        if now >= done + ns(DRAIN_TIMEOUT) {
            let why = format!("no reply within {DRAIN_TIMEOUT:?} after the last request");
            self.core.fail_everything(now, &why);
            return true;
        }
        false
    }

    /// Stops every operation, waits (bounded) for the kernel to finish them, and frees
    /// the buffers if it did.
    fn shutdown(&mut self) {
        for ci in 0..self.core.conns.len() as u32 {
            let _ = self.cancel_recv(ci);
            let conn = &self.core.conns[ci as usize];
            // Ends a receive or send blocked on the socket; errors change nothing.
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        let deadline = Instant::now() + SHUTDOWN_DRAIN_TIMEOUT;
        while self.kernel_ops > 0 && Instant::now() < deadline {
            if self.ring.enter_wait(Duration::from_millis(10)).is_err() {
                break;
            }
            let mut batch = std::mem::take(&mut self.completions);
            batch.clear();
            self.ring.reap(&mut batch, REAP_BATCH);
            for c in &batch {
                match c.user_data >> 32 {
                    kind::RECV => {
                        if let Some(bid) = cqueue::buffer_select(c.flags)
                            && let Some(bufs) = self.bufs.as_mut()
                        {
                            bufs.recycle(bid);
                        }
                        if !cqueue::more(c.flags) {
                            self.kernel_ops -= 1;
                        }
                    }
                    _ => self.kernel_ops -= 1,
                }
            }
            self.completions = batch;
        }
        if self.kernel_ops > 0
            && let Some(bufs) = self.bufs.take()
        {
            eprintln!(
                "warning: engine thread {}: {} operations still running after shutdown; \
                 leaking the receive buffers rather than freeing memory the kernel may write",
                self.plan.index, self.kernel_ops
            );
            bufs.leak();
        }
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, super::limits::SETUP_TIMEOUT)
        .map_err(|e| io::Error::new(e.kind(), format!("connecting to {addr}: {e}")))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl<P: Protocol> Core<P> {
    fn queue_flush(&mut self, ci: u32) {
        let conn = &mut self.conns[ci as usize];
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.flush_list.push(ci);
        }
    }

    /// Starts a drawn op: sends it if its endpoint has a free connection and nothing
    /// queued before it, queues it otherwise. False when it failed at once (no live
    /// connection to its endpoint): the caller stops drawing for this turn rather than
    /// spin through the workload producing errors.
    fn start(&mut self, op: Op, start_ns: u64, measured: bool, now: u64) -> bool {
        self.outstanding += 1;
        let ep = self.proto.route(&op);
        let q = Queued {
            op,
            start_ns,
            measured,
        };
        if self.endpoints[ep].queue.is_empty() {
            match self.try_send(ep, q, now) {
                Sent::Yes => return true,
                Sent::Dead => {
                    self.finish_error(q.op.kind, q.measured, "no live connection to the endpoint");
                    self.outstanding -= 1;
                    return false;
                }
                Sent::Full => {}
            }
        }
        self.endpoints[ep].queue.push_back(q);
        self.queued += 1;
        true
    }

    fn drain_queues(&mut self, now: u64) {
        for ep in 0..self.endpoints.len() {
            while let Some(&q) = self.endpoints[ep].queue.front() {
                match self.try_send(ep, q, now) {
                    Sent::Yes => {}
                    Sent::Full => break,
                    Sent::Dead => {
                        self.finish_error(
                            q.op.kind,
                            q.measured,
                            "no live connection to the endpoint",
                        );
                        self.outstanding -= 1;
                    }
                }
                self.endpoints[ep].queue.pop_front();
                self.queued -= 1;
            }
        }
    }

    /// Encodes `q` on a connection to `ep` with a free slot (round robin over the ready
    /// ones, O(1)).
    fn try_send(&mut self, ep: usize, q: Queued, now: u64) -> Sent {
        let e = &mut self.endpoints[ep];
        loop {
            let Some(&ci) = e.ready.front() else {
                return if e.alive > 0 { Sent::Full } else { Sent::Dead };
            };
            let conn = &mut self.conns[ci as usize];
            e.ready.pop_front();
            if conn.dead {
                conn.ready_queued = false;
                continue;
            }
            let Some(slot) = conn.free.pop() else {
                conn.ready_queued = false;
                continue;
            };
            if conn.free.is_empty() {
                conn.ready_queued = false;
            } else {
                e.ready.push_back(ci);
            }
            let s = &mut conn.slots[slot as usize];
            debug_assert!(!s.busy);
            s.busy = true;
            s.generation = s.generation.wrapping_add(1);
            s.op = q.op;
            s.start_ns = q.start_ns;
            s.measured = q.measured;
            s.phase = 0;
            let id = request_id(s.generation, slot as usize);
            if q.op.kind == OpKind::ReadModifyWrite {
                let read = Op {
                    kind: OpKind::Get,
                    ..q.op
                };
                self.proto.encode(&read, id, &mut conn.out);
            } else {
                self.proto.encode(&q.op, id, &mut conn.out);
            }
            if P::IN_ORDER {
                conn.order.push_back(slot);
            }
            if self.in_flight == 0 {
                // Progress is measured from the first request after an idle spell.
                self.last_progress_ns = now;
            }
            self.in_flight += 1;
            if !self.open_loop && q.start_ns == now {
                self.issued_now.push((ci, slot));
            }
            self.queue_flush(ci);
            return Sent::Yes;
        }
    }

    /// Parses every reply in `data` (received on `ci`), reassembling split ones.
    fn feed(&mut self, ci: u32, mut data: &[u8], now: u64) -> Result<(), String> {
        let c = ci as usize;
        if !self.conns[c].backlog.is_empty() {
            let mut backlog = std::mem::take(&mut self.conns[c].backlog);
            let mut at = 0;
            let result = loop {
                match self.proto.parse(&backlog[at..]) {
                    Err(e) => break Err(e.to_string()),
                    Ok(Parse::Reply(r)) => {
                        if let Err(e) = self.complete(ci, r, &backlog[at..at + r.consumed], now) {
                            break Err(e);
                        }
                        at += r.consumed;
                        if at == backlog.len() {
                            backlog.clear();
                            at = 0;
                            break Ok(());
                        }
                    }
                    Ok(Parse::Incomplete { needed }) => {
                        let have = backlog.len() - at;
                        debug_assert!(needed > have, "a protocol asked for bytes it has");
                        if data.is_empty() {
                            break Ok(());
                        }
                        if needed > REASSEMBLY_MAX_BYTES {
                            break Err(format!("a reply of {needed} bytes is too large"));
                        }
                        let take = needed
                            .saturating_sub(have)
                            .max(REASSEMBLY_STEP_MIN_BYTES)
                            .min(data.len());
                        backlog.extend_from_slice(&data[..take]);
                        data = &data[take..];
                    }
                }
            };
            backlog.drain(..at);
            self.conns[c].backlog = backlog;
            result?;
            if !self.conns[c].backlog.is_empty() {
                // `data` is used up: the rest of this reply comes with the next receive.
                return Ok(());
            }
        }
        let mut at = 0;
        while at < data.len() {
            match self.proto.parse(&data[at..]).map_err(|e| e.to_string())? {
                Parse::Reply(r) => {
                    self.complete(ci, r, &data[at..at + r.consumed], now)?;
                    at += r.consumed;
                }
                Parse::Incomplete { .. } => {
                    self.conns[c].backlog.extend_from_slice(&data[at..]);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Completes the request a reply answers.
    fn complete(&mut self, ci: u32, r: Reply, bytes: &[u8], now: u64) -> Result<(), String> {
        let conn = &mut self.conns[ci as usize];
        let slot = match r.matched {
            Match::Id(id) => {
                let slot = (id & 0xFFFF) as usize;
                let generation = (id >> 16) as u32;
                match conn.slots.get(slot) {
                    Some(s) if s.busy && s.generation == generation => slot,
                    _ => return Err(format!("reply to request id {id}, which is not in flight")),
                }
            }
            Match::Fifo => match conn.order.pop_front() {
                Some(slot) => slot as usize,
                None => return Err("a reply with no request in flight".into()),
            },
        };
        self.last_progress_ns = now;
        let s = &mut conn.slots[slot];
        if s.op.kind == OpKind::ReadModifyWrite && s.phase == 0 && r.outcome != Outcome::Error {
            // The read is back: the write of the same key goes out on the same slot.
            s.phase = 1;
            s.generation = s.generation.wrapping_add(1);
            let write = Op {
                kind: OpKind::Set,
                ..s.op
            };
            let id = request_id(s.generation, slot);
            self.proto.encode(&write, id, &mut conn.out);
            if P::IN_ORDER {
                conn.order.push_back(slot as u16);
            }
            self.queue_flush(ci);
            return Ok(());
        }
        let (kind, start, measured) = (s.op.kind, s.start_ns, s.measured);
        s.busy = false;
        conn.free.push(slot as u16);
        if !conn.ready_queued {
            conn.ready_queued = true;
            self.endpoints[conn.endpoint as usize].ready.push_back(ci);
        }
        self.in_flight -= 1;
        self.outstanding -= 1;
        if measured || self.recording_warmup {
            match r.outcome {
                Outcome::Error => {
                    self.rec.record_error(kind);
                    if measured {
                        self.stats.errors += 1;
                    }
                    if self.stats.error_samples.len() < ERROR_SAMPLES_MAX {
                        let text = self.proto.describe_error(bytes);
                        if !self.stats.error_samples.contains(&text) {
                            self.stats.error_samples.push(text);
                        }
                    }
                }
                outcome => {
                    self.rec.record(kind, now.saturating_sub(start));
                    if measured {
                        self.stats.completed += 1;
                        self.stats.misses += u64::from(outcome == Outcome::Miss);
                    }
                }
            }
        }
        Ok(())
    }

    fn note_error(&mut self, why: &str) {
        if self.stats.error_samples.len() < ERROR_SAMPLES_MAX
            && !self.stats.error_samples.iter().any(|s| s == why)
        {
            self.stats.error_samples.push(why.to_owned());
        }
    }

    fn finish_error(&mut self, kind: OpKind, measured: bool, why: &str) {
        if measured || self.recording_warmup {
            self.rec.record_error(kind);
            if measured {
                self.stats.errors += 1;
            }
        }
        self.note_error(why);
    }

    /// Gives up on a connection: its requests in flight fail; its receive is cancelled.
    fn fail_conn(&mut self, ci: u32, why: &str, _now: u64) {
        let conn = &mut self.conns[ci as usize];
        if conn.dead {
            return;
        }
        conn.dead = true;
        self.dead_conns += 1;
        self.endpoints[conn.endpoint as usize].alive -= 1;
        self.stats.connection_failures += 1;
        let mut failed = Vec::new();
        for (i, s) in conn.slots.iter_mut().enumerate() {
            if s.busy {
                s.busy = false;
                failed.push((s.op.kind, s.measured));
                conn.free.push(i as u16);
            }
        }
        conn.order.clear();
        conn.backlog.clear();
        conn.out.clear();
        let addr = conn
            .stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        let why = format!("connection to {addr}: {why}");
        for (kind, measured) in failed {
            self.in_flight -= 1;
            self.outstanding -= 1;
            self.finish_error(kind, measured, &why);
        }
        self.note_error(&why);
        self.cancel_list.push(ci);
    }

    /// Fails every queued op (no connection will take them).
    fn fail_queued(&mut self, _now: u64, why: &str) {
        for ep in 0..self.endpoints.len() {
            while let Some(q) = self.endpoints[ep].queue.pop_front() {
                self.queued -= 1;
                self.outstanding -= 1;
                self.finish_error(q.op.kind, q.measured, why);
            }
        }
    }

    /// Fails everything outstanding: queued ops and requests in flight.
    fn fail_everything(&mut self, now: u64, why: &str) {
        self.fail_queued(now, why);
        for ci in 0..self.conns.len() as u32 {
            self.fail_conn(ci, why, now);
        }
    }
}
