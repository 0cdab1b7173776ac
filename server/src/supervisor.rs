//! The local three-AZ cluster that `ternd` starts by default: three `ternd node`
//! processes on this machine, one per availability zone, supervised.
//!
//! * Node `az` (a, b, c = index i) serves clients on `base + 100 i` (shard k on
//!   `base + 100 i + 1 + k`) and its peers on `base + 100 i + 50 + k`, keeps its data in
//!   `DATA_DIR/az-<az>`, and authenticates its peers with the secret in
//!   `DATA_DIR/cluster.secret` (generated on first start, mode 0600).
//! * The supervisor prints one readiness line once all three serve, then waits — blocked
//!   on a channel, never polling: one thread per child waits for its exit, one reads its
//!   readiness, one forwards its log lines prefixed with its AZ.
//! * A node that exits is reported and restarted (after a backoff that grows while it
//!   keeps dying young). SIGINT/SIGTERM stops every node with SIGTERM (each drains and
//!   exits on its own) and kills what is left after `SHUTDOWN_DEADLINE_MS`; a second
//!   signal kills them at once.
//! * Children run in their own process group (Ctrl-C in a terminal reaches only the
//!   supervisor, which stops them in order) and get SIGTERM if the supervisor dies
//!   (`PR_SET_PDEATHSIG`, set by the node itself: [`die_with_supervisor`]), so a killed
//!   supervisor leaves no orphans.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};

use crate::limits::SHUTDOWN_DEADLINE_MS;

/// The local cluster's AZs.
pub const AZS: [char; 3] = ['a', 'b', 'c'];
/// Node i's client port is `base + NODE_PORT_STRIDE * i`.
pub const NODE_PORT_STRIDE: u16 = 100;
/// Node i's first peer port is its client port plus this.
pub const PEER_PORT_OFFSET: u16 = 50;
/// The cluster secret file under the data directory.
pub const SECRET_FILE: &str = "cluster.secret";
/// Restart backoff: from the first to the last, doubling while a node dies within
/// `STABLE_AFTER` of its start.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long the first start of the three may take.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// What the supervisor runs.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    /// The `ternd` executable (itself).
    pub exe: PathBuf,
    pub host: IpAddr,
    /// Node a's client port; b and c follow at `NODE_PORT_STRIDE`.
    pub base_port: u16,
    pub data_root: PathBuf,
    /// Arguments every node gets (cores, durability, cache, ...).
    pub node_args: Vec<String>,
}

impl LocalCluster {
    pub fn client_port(&self, i: usize) -> u16 {
        self.base_port + NODE_PORT_STRIDE * i as u16
    }

    pub fn peer_port(&self, i: usize) -> u16 {
        self.client_port(i) + PEER_PORT_OFFSET
    }

    /// The command line of node `i`.
    pub fn node_command(&self, i: usize, secret: &Path) -> Command {
        let az = AZS[i];
        let peers: Vec<String> = (0..AZS.len())
            .filter(|&j| j != i)
            .map(|j| format!("{}={}:{}", AZS[j], self.host, self.peer_port(j)))
            .collect();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .args(["--az", &az.to_string()])
            .args(["--host", &self.host.to_string()])
            .args(["--port", &self.client_port(i).to_string()])
            .args(["--peer-port", &self.peer_port(i).to_string()])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.data_root.join(format!("az-{az}")))
            .arg("--secret-file")
            .arg(secret)
            .args(["--node-id", &format!("az-{az}")])
            .args(&self.node_args);
        cmd
    }
}

/// Reads the cluster secret under `root`, creating it (32 random bytes, hex) if absent.
pub fn ensure_secret(root: &Path) -> anyhow::Result<PathBuf> {
    let path = root.join(SECRET_FILE);
    if path.exists() {
        return Ok(path);
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{hex}")?;
    f.sync_all()?;
    Ok(path)
}

enum Event {
    Ready {
        node: usize,
        generation: u64,
        line: String,
    },
    Exited {
        node: usize,
        generation: u64,
        status: ExitStatus,
    },
    Signal(i32),
}

struct NodeProc {
    pid: u32,
    generation: u64,
    started: Instant,
    running: bool,
    ready: bool,
    backoff: Duration,
    /// Its readiness line, once it printed one.
    line: Option<String>,
}

/// Signals a child this process spawned and has not seen exit (the waiter thread
/// reports its exit, after which no signal is sent to it).
fn send_signal(pid: u32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// In a node the supervisor started (`--supervisor-pid`): exit with the supervisor.
/// PR_SET_PDEATHSIG, then a check that the parent is still the supervisor — it may
/// have died before the call.
pub fn die_with_supervisor(supervisor: u32) -> anyhow::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .context("PR_SET_PDEATHSIG")?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(supervisor) {
        bail!("the supervisor (pid {supervisor}) is gone");
    }
    Ok(())
}

/// Starts node `i` (generation `generation`) and its reader and waiter threads.
fn spawn_node(
    c: &LocalCluster,
    i: usize,
    generation: u64,
    secret: &Path,
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<u32> {
    let mut cmd = c.node_command(i, secret);
    cmd.args(["--supervisor-pid", &std::process::id().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting node az-{}", AZS[i]))?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let az = AZS[i];
    let ready_tx = tx.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = ready_tx.send(Event::Ready {
                node: i,
                generation,
                line,
            });
        }
        for _ in lines {}
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[az-{az}] {line}");
        }
    });
    let exit_tx = tx.clone();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = exit_tx.send(Event::Exited {
                node: i,
                generation,
                status,
            });
        }
    });
    Ok(pid)
}

/// Runs the local cluster until a signal stops it; see the module doc.
pub fn run_local_cluster(c: &LocalCluster) -> anyhow::Result<()> {
    if c.base_port == 0 {
        bail!("the local cluster needs fixed ports: --port 0 works only with --replicas 1");
    }
    if c.base_port as usize + NODE_PORT_STRIDE as usize * AZS.len() > u16::MAX as usize {
        bail!(
            "--port {} leaves no room for three nodes' ports",
            c.base_port
        );
    }
    std::fs::create_dir_all(&c.data_root)
        .with_context(|| format!("creating {}", c.data_root.display()))?;
    let secret = ensure_secret(&c.data_root)?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signals_handle = signals.handle();
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig_tx.send(Event::Signal(sig)).is_err() {
                return;
            }
        }
    });
    let mut nodes = Vec::new();
    for i in 0..AZS.len() {
        let pid = spawn_node(c, i, 0, &secret, &tx)?;
        nodes.push(NodeProc {
            pid,
            generation: 0,
            started: Instant::now(),
            running: true,
            ready: false,
            backoff: RESTART_BACKOFF_MIN,
            line: None,
        });
    }
    let mut stopping: Option<Instant> = None;
    let mut announced = false;
    let start = Instant::now();
    // Nodes waiting to be restarted: (when, node).
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    loop {
        let now = Instant::now();
        let mut wait = restarts
            .iter()
            .map(|(at, _)| at.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        if !announced {
            wait = wait.min(START_TIMEOUT.saturating_sub(start.elapsed()));
        }
        if let Some(since) = stopping {
            wait = wait
                .min(Duration::from_millis(SHUTDOWN_DEADLINE_MS).saturating_sub(since.elapsed()));
        }
        let event = match rx.recv_timeout(wait) {
            Ok(e) => Some(e),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the supervisor lost its threads"),
        };
        match event {
            Some(Event::Ready {
                node,
                generation,
                line,
            }) if generation == nodes[node].generation => {
                nodes[node].ready = true;
                nodes[node].line = Some(line.trim().to_owned());
                if announced {
                    eprintln!(
                        "ternd: node az-{} (pid {}) is serving again",
                        AZS[node], nodes[node].pid
                    );
                }
            }
            Some(Event::Ready { .. }) => {}
            Some(Event::Exited {
                node,
                generation,
                status,
            }) if generation == nodes[node].generation => {
                let n = &mut nodes[node];
                n.running = false;
                n.ready = false;
                if stopping.is_some() {
                    if nodes.iter().all(|n| !n.running) {
                        signals_handle.close();
                        eprintln!("ternd: stopped");
                        return Ok(());
                    }
                    continue;
                }
                if !announced {
                    // A node that cannot start (a port in use, a bad data directory)
                    // would only die again: stop the others and say why.
                    for other in nodes.iter().filter(|n| n.running) {
                        send_signal(other.pid, Signal::KILL);
                    }
                    bail!(
                        "node az-{} exited during start-up ({status}); see its messages above",
                        AZS[node]
                    );
                }
                // A node that ran for a while restarts soon; one that keeps dying young
                // waits longer each time.
                if n.started.elapsed() >= STABLE_AFTER {
                    n.backoff = RESTART_BACKOFF_MIN;
                }
                let delay = n.backoff;
                n.backoff = (n.backoff * 2).min(RESTART_BACKOFF_MAX);
                eprintln!(
                    "ternd: node az-{} (pid {}) exited ({status}); restarting it in {} ms",
                    AZS[node],
                    n.pid,
                    delay.as_millis()
                );
                restarts.push((Instant::now() + delay, node));
            }
            Some(Event::Exited { .. }) => {}
            Some(Event::Signal(sig)) => {
                if stopping.is_some() {
                    eprintln!("ternd: signal {sig} again, killing every node");
                    for n in nodes.iter().filter(|n| n.running) {
                        send_signal(n.pid, Signal::KILL);
                    }
                    std::process::exit(128 + sig);
                }
                eprintln!(
                    "ternd: signal {sig}, stopping the three nodes (at most {} s; a second signal kills them)",
                    SHUTDOWN_DEADLINE_MS / 1000
                );
                stopping = Some(Instant::now());
                restarts.clear();
                for n in nodes.iter().filter(|n| n.running) {
                    send_signal(n.pid, Signal::TERM);
                }
                if nodes.iter().all(|n| !n.running) {
                    return Ok(());
                }
            }
            None => {}
        }
        if let Some(since) = stopping {
            if since.elapsed() >= Duration::from_millis(SHUTDOWN_DEADLINE_MS) {
                eprintln!("ternd: nodes still running after the deadline; killing them");
                for n in nodes.iter().filter(|n| n.running) {
                    send_signal(n.pid, Signal::KILL);
                }
                std::process::exit(1);
            }
            continue;
        }
        let now = Instant::now();
        let due: Vec<usize> = restarts
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, i)| *i)
            .collect();
        restarts.retain(|(at, _)| *at > now);
        for i in due {
            let generation = nodes[i].generation + 1;
            match spawn_node(c, i, generation, &secret, &tx) {
                Ok(pid) => {
                    let n = &mut nodes[i];
                    n.pid = pid;
                    n.generation = generation;
                    n.started = Instant::now();
                    n.running = true;
                }
                Err(e) => {
                    eprintln!("ternd: restarting node az-{}: {e:#}; trying again", AZS[i]);
                    restarts.push((Instant::now() + RESTART_BACKOFF_MAX, i));
                }
            }
        }
        if !announced {
            if nodes.iter().all(|n| n.ready) {
                announced = true;
                let lines: Vec<&str> = nodes.iter().filter_map(|n| n.line.as_deref()).collect();
                println!(
                    "{{\"event\":\"ready\",\"cluster\":\"local\",\"nodes\":[{}]}}",
                    lines.join(",")
                );
                let _ = std::io::stdout().flush();
                let shown: Vec<String> = (0..AZS.len())
                    .map(|i| {
                        format!(
                            "az-{} {}:{} (pid {})",
                            AZS[i],
                            c.host,
                            c.client_port(i),
                            nodes[i].pid
                        )
                    })
                    .collect();
                eprintln!(
                    "ternd: local three-AZ cluster serving: {}; data in {}/az-{{a,b,c}}. Any node takes any request. Ctrl-C to stop.",
                    shown.join(", "),
                    c.data_root.display()
                );
            } else if start.elapsed() >= START_TIMEOUT {
                for n in nodes.iter().filter(|n| n.running) {
                    send_signal(n.pid, Signal::KILL);
                }
                bail!(
                    "the three nodes did not all start serving within {} s",
                    START_TIMEOUT.as_secs()
                );
            }
        }
    }
}
