//! Shared harness of the `net_*` tests: a one-core server on a glommio executor thread
//! serving an echo [`Service`], and blocking std clients with timeouts everywhere.
//!
//! The echo service answers each request with a response frame carrying the same opcode,
//! request id and body. A body starting with `defer:<ms>:` is answered `<ms>` milliseconds
//! later from a spawned task (a deferred reply); a body starting with `close` is answered
//! and then the service asks the transport to close the connection.
#![allow(dead_code)]

#[macro_use]
pub mod scenarios;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown as SocketShutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_RESPONSE, Frame, FrameError, HEADER_LEN, Header, NO_SHARD_HINT, Opcode,
    parse_frame, write_frame,
};
use tern_protocol::limits::IN_FLIGHT_PER_CONNECTION_MAX;
use tern_server::net::{self, NetMode, limits::EXECUTOR_IO_MEMORY_BYTES};
use tern_server::service::{ConnCtx, Service, Shutdown, Verdict, Wakeup};

/// Upper bound on any single blocking socket operation of a test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on a server stopping after it was told to.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the echo service saw, readable from the test thread.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames: AtomicUsize,
    pub frame_errors: AtomicUsize,
    /// Highest number of deferred requests in flight on one connection.
    pub max_in_flight: AtomicUsize,
    /// Frames handed to the service while the connection was already at the in-flight
    /// bound (the transport should have paused instead).
    pub over_bound: AtomicUsize,
    /// Deferred replies completed.
    pub deferred_done: AtomicUsize,
}

struct EchoService {
    stats: Arc<Stats>,
}

fn reply(out: &mut Vec<u8>, header: &Header, body: &[u8]) {
    write_frame(
        out,
        header.opcode,
        FLAG_RESPONSE,
        header.request_id,
        NO_SHARD_HINT,
        &[body],
    );
}

/// `defer:<ms>:...` → Some(ms).
fn defer_ms(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"defer:")?;
    let end = rest.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Service for EchoService {
    fn on_frame(&self, conn: &Rc<ConnCtx>, frame: Frame<'_>, out: &mut Vec<u8>) -> Verdict {
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        if let Some(ms) = defer_ms(frame.body) {
            if conn.in_flight() >= IN_FLIGHT_PER_CONNECTION_MAX {
                self.stats.over_bound.fetch_add(1, Ordering::Relaxed);
            }
            conn.begin_deferred();
            self.stats
                .max_in_flight
                .fetch_max(conn.in_flight(), Ordering::Relaxed);
            let mut frame_bytes = Vec::with_capacity(HEADER_LEN + frame.body.len());
            reply(&mut frame_bytes, &frame.header, frame.body);
            let conn = conn.clone();
            let stats = self.stats.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(ms)).await;
                conn.finish_deferred(&frame_bytes);
                stats.deferred_done.fetch_add(1, Ordering::Relaxed);
            })
            .detach();
            return Verdict::Continue;
        }
        reply(out, &frame.header, frame.body);
        if frame.body.starts_with(b"close") {
            Verdict::Close
        } else {
            Verdict::Continue
        }
    }

    fn on_frame_error(&self, err: &FrameError, out: &mut Vec<u8>) {
        self.stats.frame_errors.fetch_add(1, Ordering::Relaxed);
        write_frame(
            out,
            Opcode::Hello,
            FLAG_RESPONSE | FLAG_ERROR,
            0,
            NO_SHARD_HINT,
            &[err.to_string().as_bytes()],
        );
    }
}

/// A one-core echo server on its own executor thread.
pub struct TestServer {
    pub mode: NetMode,
    pub shared_port: u16,
    pub shard_port: u16,
    pub stats: Arc<Stats>,
    /// Kernel thread id of the executor thread (for its CPU time).
    pub executor_tid: u32,
    stop: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(mode: NetMode) -> TestServer {
        TestServer::start_on(mode, Placement::Unbound)
    }

    pub fn start_on(mode: NetMode, placement: Placement) -> TestServer {
        let (shared_port, mut listeners) =
            net::bind_listeners(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, &[0], Duration::ZERO)
                .expect("bind listeners");
        let listeners = listeners.pop().expect("one core");
        let shard_port = listeners.shard_port;
        assert_ne!(shared_port, shard_port);
        let stats = Arc::new(Stats::default());
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let service_stats = stats.clone();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("net-test-{mode}"))
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                let served = (|| {
                    let executor = LocalExecutorBuilder::new(placement)
                        .name("net-test")
                        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
                        .make()
                        .map_err(|e| net::executor_start_error(e, EXECUTOR_IO_MEMORY_BYTES))?;
                    executor.run(async move {
                        let shutdown = Shutdown::default();
                        let trigger = shutdown.clone();
                        glommio::spawn_local(async move {
                            // A stop message, or the harness going away.
                            let _ = glommio::executor()
                                .spawn_blocking(move || stop_rx.recv())
                                .await;
                            trigger.trigger();
                        })
                        .detach();
                        let service = Rc::new(EchoService {
                            stats: service_stats,
                        });
                        net::serve(
                            mode,
                            listeners,
                            service,
                            Wakeup::new(),
                            shutdown,
                            Box::new(|| {}),
                        )
                        .await
                    })
                })();
                let _ = done_tx.send(served);
            })
            .expect("spawn the executor thread");
        let executor_tid = tid_rx
            .recv_timeout(STOP_TIMEOUT)
            .expect("executor thread id");
        TestServer {
            mode,
            shared_port,
            shard_port,
            stats,
            executor_tid,
            stop: Some(stop_tx),
            done: done_rx,
            thread: Some(thread),
        }
    }

    /// CPU time (user + system) the executor thread used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        thread_cpu_ticks(self.executor_tid)
    }

    /// Tells the server to stop and waits (bounded) for `serve` to return.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        let Some(stop) = self.stop.take() else {
            return Ok(());
        };
        let _ = stop.send(());
        let result = self.done.recv_timeout(STOP_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{} server did not stop within {STOP_TIMEOUT:?}: {e}",
                self.mode
            )
        });
        if let Some(t) = self.thread.take() {
            t.join().expect("executor thread panicked");
        }
        result
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.stop_inner();
        } else if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A request frame.
pub fn request(id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, Opcode::GetItem, 0, id, NO_SHARD_HINT, &[body]);
    out
}

/// A body of `len` bytes that depends on `id` (so misdelivered bodies are caught).
pub fn body_for(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect()
}

/// Reads one whole frame (CRC checked).
pub fn read_frame(s: &mut TcpStream) -> io::Result<(Header, Vec<u8>)> {
    let mut bytes = vec![0u8; HEADER_LEN];
    s.read_exact(&mut bytes)?;
    let head: &[u8; HEADER_LEN] = bytes[..].try_into().unwrap();
    let header = Header::read(head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    bytes.resize(HEADER_LEN + header.body_len as usize, 0);
    s.read_exact(&mut bytes[HEADER_LEN..])?;
    let (frame, used) = parse_frame(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        .expect("whole frame");
    assert_eq!(used, bytes.len());
    Ok((frame.header, frame.body.to_vec()))
}

/// Reads `n` replies and checks each is the echo of the request with its id.
/// `expected(id)` gives the body a request id was sent with.
pub fn read_echoes(s: &mut TcpStream, n: usize, expected: impl Fn(u64) -> Vec<u8>) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut order = Vec::with_capacity(n);
    for i in 0..n {
        let (header, body) = read_frame(s).unwrap_or_else(|e| panic!("reply {i} of {n}: {e}"));
        assert_eq!(
            header.flags & FLAG_RESPONSE,
            FLAG_RESPONSE,
            "reply {i} is a response"
        );
        assert_eq!(header.flags & FLAG_ERROR, 0, "reply {i} is not an error");
        assert_eq!(
            body,
            expected(header.request_id),
            "body of reply to request {}",
            header.request_id
        );
        assert!(
            seen.insert(header.request_id),
            "request {} answered twice",
            header.request_id
        );
        order.push(header.request_id);
    }
    order
}

/// Whether the server closed the connection: the next read sees EOF or a reset.
pub fn is_closed_by_server(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ),
    }
}

pub fn write_all(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
}

pub fn shutdown_write(s: &TcpStream) {
    s.shutdown(SocketShutdown::Write).expect("shutdown(WR)");
}

/// This thread's kernel id, from /proc/thread-self (a link to `<pid>/task/<tid>`).
fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("tid")
}

/// utime + stime of thread `tid` of this process, in clock ticks.
pub fn thread_cpu_ticks(tid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("thread stat");
    // Fields after the parenthesised name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second of /proc times (USER_HZ; 100 on Linux).
pub const TICKS_PER_SECOND: u64 = 100;
