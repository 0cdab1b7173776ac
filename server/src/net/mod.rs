//! Client sockets: listeners, and the transports that serve them on each core.
//!
//! The main thread binds every listener before any executor starts
//! ([`bind_listeners`]): core k gets its own port (clients that know the topology talk to
//! the owning core directly) and a socket on the shared port, bound with SO_REUSEPORT by
//! every core so the kernel spreads new connections across them. Each executor then runs
//! [`serve`] with its [`CoreListeners`] until its [`Shutdown`] fires.
//!
//! Two transports behind the same [`Service`] seam ([`NetMode`]):
//! * `uring` (default, `uring.rs`): the core's own io_uring ring with SINGLE_ISSUER |
//!   COOP_TASKRUN, multishot accept and receive into provided buffers, one gathered send
//!   per connection per completion batch; a glommio task drives it and sleeps on the
//!   ring's eventfd through glommio.
//! * `glommio` (`tcp.rs`): glommio's sockets, one task per connection; for comparison.
//!
//! `limits.rs` holds every bound of both; `sys.rs` every `unsafe` block.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::service::{Service, Shutdown, Wakeup};

pub mod limits;
mod sys;

pub(crate) use sys::{coarse_monotonic_ms, eventfd, eventfd_into_glommio};
mod tcp;
mod uring;

/// One core's listeners.
#[derive(Debug)]
pub struct CoreListeners {
    /// The core's own port.
    pub shard: TcpListener,
    /// The shared port (SO_REUSEPORT, one socket per core).
    pub shared: TcpListener,
    /// The port `shard` is bound to (the chosen one when 0 was asked for).
    pub shard_port: u16,
}

/// Binds, for each core k, a listener on `shard_ports[k]` (0 = ephemeral) and one on the
/// shared port with SO_REUSEPORT. When `shared_port` is 0 the first core's bind picks the
/// port and the others join it. Returns the shared port and the listeners, nonblocking,
/// with a backlog of [`limits::LISTEN_BACKLOG`]. Run it before the executors start.
///
/// A port still in use is retried for up to `retry_for` (a killed predecessor's
/// listening sockets are released by the kernel asynchronously, a moment after its
/// death), saying so once. The shared port is first bound alone, without SO_REUSEPORT:
/// that fails while any listener still holds it, so a new node never joins a dead one's
/// SO_REUSEPORT group, whose backlog would swallow connections.
pub fn bind_listeners(
    host: IpAddr,
    shared_port: u16,
    shard_ports: &[u16],
    retry_for: Duration,
) -> io::Result<(u16, Vec<CoreListeners>)> {
    let deadline = Instant::now() + retry_for;
    let mut shared_port = shared_port;
    if shared_port != 0 {
        retrying(
            SocketAddr::new(host, shared_port),
            deadline,
            probe_exclusive,
        )
        .map_err(|e| annotate(e, format!("binding the shared port {host}:{shared_port}")))?;
    }
    let mut cores = Vec::with_capacity(shard_ports.len());
    for (core, &port) in shard_ports.iter().enumerate() {
        let shared = retrying(SocketAddr::new(host, shared_port), deadline, |a| {
            bind(a, true)
        })
        .map_err(|e| {
            annotate(
                e,
                format!("core {core}: binding the shared port {host}:{shared_port}"),
            )
        })?;
        if shared_port == 0 {
            shared_port = shared.local_addr()?.port();
        }
        let shard =
            retrying(SocketAddr::new(host, port), deadline, |a| bind(a, false)).map_err(|e| {
                annotate(
                    e,
                    format!("core {core}: binding its own port {host}:{port}"),
                )
            })?;
        let shard_port = shard.local_addr()?.port();
        cores.push(CoreListeners {
            shard,
            shared,
            shard_port,
        });
    }
    Ok((shared_port, cores))
}

/// `attempt(addr)`, again every `BIND_RETRY_INTERVAL_MS` while the port is in use and
/// `deadline` has not passed.
fn retrying<T>(
    addr: SocketAddr,
    deadline: Instant,
    attempt: impl Fn(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut said = false;
    loop {
        match attempt(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !said {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tracing::warn!(
                        "port {} is in use; if a ternd just stopped or was killed, the kernel \
                         is still releasing its sockets: retrying for up to {:.1} s",
                        addr.port(),
                        left.as_secs_f64()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(crate::limits::BIND_RETRY_INTERVAL_MS));
            }
            other => return other,
        }
    }
}

/// Binds `addr` without SO_REUSEPORT and without listening, then lets it go: succeeds only
/// when no socket at all listens on the port.
fn probe_exclusive(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(addr))
}

fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting while old connections sit in TIME_WAIT must not fail.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(limits::LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn annotate(e: io::Error, what: String) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            ": the port is taken (another ternd is running?): stop it, or choose another --port, or 0"
        }
        io::ErrorKind::PermissionDenied => {
            ": ports below 1024 need privileges: choose a higher --port"
        }
        io::ErrorKind::AddrNotAvailable => ": that address is not on this machine: check --host",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

/// Which transport serves client sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// The core's own io_uring ring (default).
    #[default]
    Uring,
    /// glommio's sockets, one task per connection (for comparison).
    Glommio,
}

/// An unknown `--net` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network mode {0:?}: expected \"uring\" or \"glommio\"")]
pub struct ParseNetModeError(String);

impl FromStr for NetMode {
    type Err = ParseNetModeError;

    fn from_str(s: &str) -> Result<NetMode, ParseNetModeError> {
        match s {
            "uring" => Ok(NetMode::Uring),
            "glommio" => Ok(NetMode::Glommio),
            other => Err(ParseNetModeError(other.to_owned())),
        }
    }
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetMode::Uring => "uring",
            NetMode::Glommio => "glommio",
        })
    }
}

/// Serves one core's listeners with `service` until `shutdown` fires; then stops
/// accepting, closes every connection (the service sees them closed) and returns.
/// `serving` is called once the listeners accept (for the node's readiness line).
/// Runs as a task of the core's glommio executor.
pub async fn serve(
    mode: NetMode,
    listeners: CoreListeners,
    service: Rc<dyn Service>,
    wakeup: Rc<Wakeup>,
    shutdown: Shutdown,
    serving: Box<dyn FnOnce()>,
) -> io::Result<()> {
    match mode {
        NetMode::Uring => uring::serve(listeners, service, wakeup, shutdown, serving).await,
        NetMode::Glommio => tcp::serve(listeners, service, wakeup, shutdown, serving).await,
    }
}

static URING_SETUP_FLAGS: AtomicBool = AtomicBool::new(true);

/// Whether uring transports started from now on ask the kernel for SINGLE_ISSUER |
/// COOP_TASKRUN | TASKRUN_FLAG (the default; `ternd --uring-plain` turns it off). Off
/// selects the ring a kernel that refuses those flags gets: for tests of that fallback
/// and for benchmarks comparing the two.
pub fn set_uring_setup_flags(enabled: bool) {
    URING_SETUP_FLAGS.store(enabled, Ordering::Relaxed);
}

fn uring_setup_flags() -> bool {
    URING_SETUP_FLAGS.load(Ordering::Relaxed)
}

/// Turns a failure to start a glommio executor into an error that says why and what to do.
pub fn executor_start_error(err: glommio::GlommioError<()>, io_memory_bytes: usize) -> io::Error {
    let limit =
        memlock_limit_bytes().map_or_else(|| "unknown".to_owned(), |b| format!("{} KiB", b / 1024));
    io::Error::other(format!(
        "could not start a glommio executor: {err}. Each executor locks its io_memory \
         ({} KiB here) and the whole process must stay under the locked-memory limit \
         (`ulimit -l`: {limit}). Lower io_memory (1 MiB is enough for the client-socket \
         transports) or raise the limit (`ulimit -l`, LimitMEMLOCK= in a systemd unit, \
         /etc/security/limits.conf); if the error is about CPU placement, use fewer cores \
         or do not pin",
        io_memory_bytes / 1024
    ))
}

/// The soft RLIMIT_MEMLOCK of this process, from /proc (None when unlimited or unknown).
fn memlock_limit_bytes() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
