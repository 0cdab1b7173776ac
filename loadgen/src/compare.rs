//! `tern-loadgen compare`: tern beside Redis, same machine, same run, same workloads.
//!
//! For each server in turn (tern, then Redis) it starts the server pinned to one CPU,
//! preloads the same keys, drives every workload with this process's engine pinned to
//! another CPU, measures the server's CPU time per operation from /proc, and stops the
//! server. Then it writes the side-by-side rows with ratios as JSON (the schema below) and
//! as a Markdown section of docs/benchmarks.md.
//!
//! Durability of each side (also written into the report's notes, [`NOTES`]):
//! * the non-durable rows: `ternd --durability none` (its log is written in the background
//!   and never synced) against `redis-server --save "" --appendonly no` (no persistence):
//!   both acknowledge from memory;
//! * `durable_set`: a fresh `ternd --durability sync` (fdatasync before the ack, group
//!   commit) against a fresh `redis-server --appendonly yes --appendfsync always`, neither
//!   preloaded.
//!
//! Every server gets its own fresh data directory under `target/bench/` (the same file
//! system for both), removed when the run ends.
//!
//! JSON schema (`target/bench/compare.json` and `--json FILE`):
//! ```text
//! {"date": "YYYY-MM-DD HH:MM:SS UTC", "machine": "...", "quick": bool,
//!  "notes": ["how each side ran", ...],
//!  "rows": [{"workload": NAME,
//!            "tern":  {"ops_per_sec": F, "p50_us": F, "p99_us": F, "server_cpu_us_per_op": F,
//!                      "loadgen_saturated": bool} | {"missing": "why"},
//!            "redis": {same keys} | {"missing": "why"},
//!            "ratio_ops": F | null,            // tern ops/s ÷ Redis ops/s
//!            "ratio_cpu": F | null,            // tern CPU/op ÷ Redis CPU/op
//!            "ratio_p99": F | null,            // tern p99 ÷ Redis p99
//!            "missing": "why"?}]}              // present when a side could not run
//! ```
//! Workload names: get_p16, set_p16, get_p1, get_p1_half_load, ycsb_a, ycsb_b, ycsb_c,
//! durable_set, durable_set_c1, replicated_set, replicated_set_c1, replicated_get_leader,
//! replicated_get_all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

/// What to compare and where to write it.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub quick: bool,
    pub ternd: PathBuf,
    pub redis_server: PathBuf,
    /// Extra JSON output besides target/bench/compare.json.
    pub json: Option<PathBuf>,
    /// Markdown file whose compare section is replaced (docs/benchmarks.md); None = print only.
    pub markdown: Option<PathBuf>,
    pub server_cpu: usize,
    pub loadgen_cpu: usize,
    /// Keys preloaded into both servers.
    pub keys: u64,
    pub value_bytes: u32,
}

/// One workload of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    /// `--workload` syntax (get, set, ycsb-a, ...).
    pub workload: &'static str,
    pub dist: &'static str,
    pub connections: usize,
    pub depth: usize,
    /// Open loop at this fraction of the same server's `get_p1` rate.
    pub half_of_get_p1: bool,
    /// Needs a durable server (fsync before ack).
    pub durable: bool,
    /// tern's side runs on the replicated local three-AZ cluster (durable; Redis's side
    /// is `appendfsync always`): the load goes to node a (which leads the one shard each
    /// node has) or to all three nodes in turn.
    pub cluster: Option<Nodes>,
}

/// Which nodes of the cluster a cluster row drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    /// Node a alone: the leader.
    Leader,
    /// a, b and c in turn: reads served by every replica, writes passed to the leader.
    All,
}

pub const ROWS: &[Row] = &[
    Row {
        name: "get_p16",
        workload: "get",
        dist: "uniform",
        connections: 50,
        depth: 16,
        half_of_get_p1: false,
        durable: false,
        cluster: None,
    },
    Row {
        name: "set_p16",
        workload: "set",
        dist: "uniform",
        connections: 50,
        depth: 16,
        half_of_get_p1: false,
        durable: false,
        cluster: None,
    },
    Row {
        name: "get_p1",
        workload: "get",
        dist: "uniform",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: false,
        cluster: None,
    },
    Row {
        name: "get_p1_half_load",
        workload: "get",
        dist: "uniform",
        connections: 50,
        depth: 1,
        half_of_get_p1: true,
        durable: false,
        cluster: None,
    },
    Row {
        name: "ycsb_a",
        workload: "ycsb-a",
        dist: "zipfian",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: false,
        cluster: None,
    },
    Row {
        name: "ycsb_b",
        workload: "ycsb-b",
        dist: "zipfian",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: false,
        cluster: None,
    },
    Row {
        name: "ycsb_c",
        workload: "ycsb-c",
        dist: "zipfian",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: false,
        cluster: None,
    },
    Row {
        name: "durable_set",
        workload: "set",
        dist: "uniform",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: true,
        cluster: None,
    },
    Row {
        name: "durable_set_c1",
        workload: "set",
        dist: "uniform",
        connections: 1,
        depth: 1,
        half_of_get_p1: false,
        durable: true,
        cluster: None,
    },
    Row {
        name: "replicated_set",
        workload: "set",
        dist: "uniform",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: true,
        cluster: Some(Nodes::Leader),
    },
    Row {
        name: "replicated_set_c1",
        workload: "set",
        dist: "uniform",
        connections: 1,
        depth: 1,
        half_of_get_p1: false,
        durable: true,
        cluster: Some(Nodes::Leader),
    },
    Row {
        name: "replicated_get_leader",
        workload: "get",
        dist: "uniform",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: true,
        cluster: Some(Nodes::Leader),
    },
    Row {
        name: "replicated_get_all",
        workload: "get",
        dist: "uniform",
        connections: 50,
        depth: 1,
        half_of_get_p1: false,
        durable: true,
        cluster: Some(Nodes::All),
    },
];

/// How the servers ran: part of every report (JSON `notes`, Markdown list).
pub const NOTES: &[&str] = &[
    "Rows other than `durable_set`: tern runs with `--durability none` (log written in the \
     background, never synced) and Redis with `--save \"\" --appendonly no` (no persistence): \
     both acknowledge writes from memory, neither survives a machine crash.",
    "`durable_set`: tern with `--durability sync` (fdatasync before the acknowledgement, \
     group commit) against Redis with `--appendonly yes --appendfsync always` (fsync of \
     the AOF before the reply), each started fresh without a preload.",
    "`replicated_*`: tern's local three-AZ cluster (`ternd --cores 1`: three node processes, \
     every write durable on two of three before the acknowledgement, all three pinned to \
     the server CPU) against Redis with `--appendfsync always`; `_leader` rows drive node a \
     (the shard's leader), `replicated_get_all` spreads reads over the three replicas \
     (eventually consistent reads, served by each). The get rows read keys the \
     `replicated_get_leader` row preloaded through the leader.",
    "Both servers keep their files in fresh directories under `target/bench/` (the same \
     file system), removed after the run.",
];

/// The figures of one side of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_op: f64,
    pub loadgen_saturated: bool,
}

impl Side {
    fn to_json(&self) -> Json {
        json!({
            "ops_per_sec": self.ops_per_sec,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "server_cpu_us_per_op": self.server_cpu_us_per_op,
            "loadgen_saturated": self.loadgen_saturated,
        })
    }
}

/// One row's outcome: figures, or why a side is missing.
pub type Outcome = Result<Side, String>;

/// The server kinds compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Tern,
    Redis,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Tern => "tern",
            Server::Redis => "redis",
        }
    }

    pub fn protocol(self) -> &'static str {
        match self {
            Server::Tern => "tern",
            Server::Redis => "resp",
        }
    }
}

/// A server process pinned to one CPU, stopped when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    /// The local cluster's other nodes' client ports (a cluster's `port` is node a's).
    pub others: Vec<u16>,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every node of a cluster (`a,b,c`), or the one server.
    pub fn all_targets(&self) -> String {
        std::iter::once(self.port)
            .chain(self.others.iter().copied())
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `ternd --cores 1 --first-cpu CPU --port BASE --data-dir DIR` — the local
    /// three-AZ cluster (durable), its three nodes pinned to `cpu`; waits for its
    /// readiness line.
    pub fn start_cluster(ternd: &Path, cpu: usize, dir: &Path) -> anyhow::Result<ServerProcess> {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("making {} absolute", dir.display()))?;
        let base = free_port_run(260)?;
        let mut cmd = Command::new(ternd);
        cmd.args([
            "--cores",
            "1",
            "--port",
            &base.to_string(),
            "--first-cpu",
            &cpu.to_string(),
            "--durability",
            "sync",
        ])
        .arg("--data-dir")
        .arg(&dir);
        let (child, doc) = spawn_ready(cmd, ternd)?;
        let ports: Vec<u16> = doc["nodes"]
            .as_array()
            .context("nodes")?
            .iter()
            .map(|n| n["shared_port"].as_u64().map(|p| p as u16))
            .collect::<Option<_>>()
            .context("shared_port")?;
        let (&port, others) = ports.split_first().context("no nodes")?;
        Ok(ServerProcess {
            child,
            port,
            others: others.to_vec(),
        })
    }

    /// `ternd --cores 1 --first-cpu CPU --port 0 --data-dir DIR --durability sync|none`;
    /// waits for its readiness line. `dir` should be a fresh directory.
    pub fn start_tern(
        ternd: &Path,
        cpu: usize,
        durable: bool,
        dir: &Path,
    ) -> anyhow::Result<ServerProcess> {
        // Absolute: ternd could not sync a relative data directory (glommio's
        // `Directory::open` failed with EBADF and the first flush poisoned the shard).
        let dir = std::path::absolute(dir)
            .with_context(|| format!("making {} absolute", dir.display()))?;
        let mut cmd = Command::new(ternd);
        cmd.args([
            "--replicas",
            "1",
            "--cores",
            "1",
            "--port",
            "0",
            "--first-cpu",
            &cpu.to_string(),
            "--durability",
            if durable { "sync" } else { "none" },
        ])
        .arg("--data-dir")
        .arg(&dir);
        let (child, doc) = spawn_ready(cmd, ternd)?;
        let port = doc["shared_port"].as_u64().context("shared_port")? as u16;
        Ok(ServerProcess {
            child,
            port,
            others: Vec::new(),
        })
    }

    /// `redis-server` pinned with taskset, no persistence (or appendfsync always).
    pub fn start_redis(
        redis: &Path,
        cpu: usize,
        durable: bool,
        dir: &Path,
    ) -> anyhow::Result<ServerProcess> {
        let port = free_port()?;
        let mut args: Vec<String> = vec![
            "-c".into(),
            cpu.to_string(),
            redis.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--protected-mode".into(),
            "no".into(),
        ];
        if durable {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        let child = Command::new("taskset")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting redis-server under taskset")?;
        let process = ServerProcess {
            child,
            port,
            others: Vec::new(),
        };
        wait_for_redis(port)?;
        Ok(process)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGTERM first so the server exits cleanly; SIGKILL if it lingers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a `ternd` command line and reads its readiness line (the first on stdout).
fn spawn_ready(mut cmd: Command, ternd: &Path) -> anyhow::Result<(Child, Json)> {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", ternd.display()))?;
    let stdout = child.stdout.take().context("ternd stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let doc: Json = serde_json::from_str(line.trim())
        .with_context(|| format!("ternd's first line is not its readiness JSON: {line:?}"))?;
    Ok((child, doc))
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The first of `n` consecutive free loopback ports (bound to check, then let go).
fn free_port_run(n: u16) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = first.local_addr()?.port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all = (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all {
            return Ok(base);
        }
    }
    bail!("no run of {n} free ports on 127.0.0.1")
}

/// PINGs until Redis answers PONG (5 s at most).
fn wait_for_redis(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(b"PING\r\n")?;
            let mut buf = [0u8; 7];
            if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("redis-server did not answer PING on port {port} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// "CPU model, N vCPU, kernel".
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cpus} vCPU, Linux {}", kernel.trim())
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// Runs the whole comparison and writes its outputs; returns the JSON report.
pub fn run_compare(cfg: &CompareConfig, command: &str) -> anyhow::Result<Json> {
    let (duration, warmup) = if cfg.quick {
        (Duration::from_secs(3), Duration::from_secs(1))
    } else {
        (Duration::from_secs(8), Duration::from_secs(2))
    };
    // Every server's files (tern's log, Redis's AOF) go under target/bench, on the same
    // file system; removed when `scratch` is dropped, after every server stopped.
    std::fs::create_dir_all(BENCH_DIR).with_context(|| format!("creating {BENCH_DIR}"))?;
    let scratch = tempfile::Builder::new()
        .prefix("compare-")
        .tempdir_in(BENCH_DIR)
        .with_context(|| format!("a scratch directory under {BENCH_DIR}"))?;
    let mut outcomes: Vec<(Outcome, Outcome)> = ROWS
        .iter()
        .map(|_| (Err("not run".into()), Err("not run".into())))
        .collect();
    for server in [Server::Tern, Server::Redis] {
        eprintln!(
            "compare: {} (server on CPU {}, load generator on CPU {})",
            server.name(),
            cfg.server_cpu,
            cfg.loadgen_cpu
        );
        let process = start_server(cfg, server, false, scratch.path())?;
        let mut get_p1_rate = None;
        let mut loaded = false;
        for (i, row) in ROWS.iter().enumerate() {
            if row.durable {
                continue;
            }
            let rate = if row.half_of_get_p1 {
                match get_p1_rate {
                    Some(r) => Some(r * 0.5),
                    None => {
                        set_outcome(
                            &mut outcomes[i],
                            server,
                            Err("get_p1 did not run, so half of its rate is unknown".into()),
                        );
                        continue;
                    }
                }
            } else {
                None
            };
            let load = (!loaded).then_some(cfg.keys);
            let outcome = measure(cfg, server, &process, row, rate, load, duration, warmup);
            loaded |= outcome.is_ok();
            if row.name == "get_p1" {
                get_p1_rate = outcome.as_ref().ok().map(|s| s.ops_per_sec);
            }
            report_progress(server, row, &outcome);
            set_outcome(&mut outcomes[i], server, outcome);
        }
        drop(process);
    }
    // The durable rows: each server started afresh in its durable mode, not preloaded.
    for (i, row) in ROWS
        .iter()
        .enumerate()
        .filter(|(_, r)| r.durable && r.cluster.is_none())
    {
        for server in [Server::Tern, Server::Redis] {
            let outcome = start_server(cfg, server, true, scratch.path())
                .map_err(|e| format!("{e:#}"))
                .and_then(|process| {
                    measure(cfg, server, &process, row, None, None, duration, warmup)
                });
            report_progress(server, row, &outcome);
            set_outcome(&mut outcomes[i], server, outcome);
        }
    }
    // The cluster rows: one fresh cluster (and one fresh Redis with appendfsync
    // always) for all of them, in order; the first get row preloads the keys.
    for server in [Server::Tern, Server::Redis] {
        let process = match server {
            Server::Tern => {
                let dir = tempfile::Builder::new()
                    .prefix("tern-cluster-")
                    .tempdir_in(scratch.path())
                    .context("a data directory")?
                    .keep();
                ServerProcess::start_cluster(&cfg.ternd, cfg.server_cpu, &dir)
                    .context("the local three-AZ cluster did not start")
            }
            Server::Redis => start_server(cfg, server, true, scratch.path()),
        };
        let process = match process {
            Ok(p) => p,
            Err(e) => {
                for (i, _) in ROWS.iter().enumerate().filter(|(_, r)| r.cluster.is_some()) {
                    set_outcome(&mut outcomes[i], server, Err(format!("{e:#}")));
                }
                continue;
            }
        };
        let mut loaded = false;
        for (i, row) in ROWS.iter().enumerate().filter(|(_, r)| r.cluster.is_some()) {
            let load = (row.workload == "get" && !loaded).then_some(cfg.keys);
            let outcome = measure(cfg, server, &process, row, None, load, duration, warmup);
            loaded |= load.is_some() && outcome.is_ok();
            report_progress(server, row, &outcome);
            set_outcome(&mut outcomes[i], server, outcome);
        }
    }
    drop(scratch);
    let rows: Vec<(&Row, Outcome, Outcome)> = ROWS
        .iter()
        .zip(outcomes)
        .map(|(row, (t, r))| (row, t, r))
        .collect();
    let report = report_json(&utc_now(), &machine_description(), cfg.quick, &rows);
    write_outputs(cfg, &report, command)?;
    Ok(report)
}

/// Where compare keeps its scratch directories (and its JSON report).
const BENCH_DIR: &str = "target/bench";

/// Starts `server` (durable: fsync before ack) with a fresh data directory in `scratch`.
fn start_server(
    cfg: &CompareConfig,
    server: Server,
    durable: bool,
    scratch: &Path,
) -> anyhow::Result<ServerProcess> {
    let mode = if durable { "durable" } else { "memory" };
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-{mode}-", server.name()))
        .tempdir_in(scratch)
        .context("a data directory")?
        // Removed with `scratch` once every server has stopped.
        .keep();
    let started = match server {
        Server::Tern => ServerProcess::start_tern(&cfg.ternd, cfg.server_cpu, durable, &dir),
        Server::Redis => {
            ServerProcess::start_redis(&cfg.redis_server, cfg.server_cpu, durable, &dir)
        }
    };
    started.with_context(|| {
        format!(
            "{} ({}) did not start",
            server.name(),
            if durable {
                match server {
                    Server::Tern => "--durability sync",
                    Server::Redis => "appendfsync always",
                }
            } else {
                match server {
                    Server::Tern => "--durability none",
                    Server::Redis => "no persistence",
                }
            }
        )
    })
}

fn set_outcome(slot: &mut (Outcome, Outcome), server: Server, outcome: Outcome) {
    match server {
        Server::Tern => slot.0 = outcome,
        Server::Redis => slot.1 = outcome,
    }
}

fn report_progress(server: Server, row: &Row, outcome: &Outcome) {
    match outcome {
        Ok(s) => eprintln!(
            "compare: {:>6} {:<17} {:>10.0} ops/s  p50 {:>7.1} us  p99 {:>7.1} us  server {:>5.2} CPU us/op{}",
            server.name(),
            row.name,
            s.ops_per_sec,
            s.p50_us,
            s.p99_us,
            s.server_cpu_us_per_op,
            if s.loadgen_saturated {
                "  (load generator saturated)"
            } else {
                ""
            }
        ),
        Err(why) => eprintln!(
            "compare: {:>6} {:<17} missing: {why}",
            server.name(),
            row.name
        ),
    }
}

/// One row against one running server.
#[allow(clippy::too_many_arguments)]
fn measure(
    cfg: &CompareConfig,
    server: Server,
    process: &ServerProcess,
    row: &Row,
    rate: Option<f64>,
    load: Option<u64>,
    duration: Duration,
    warmup: Duration,
) -> Outcome {
    use crate::engine::{RunConfig, RunLength};
    use crate::proto::ProtocolKind;
    use crate::workload::{KeyDist, Mix, ValueSize, WorkloadSpec};
    let parse =
        || -> anyhow::Result<(Mix, KeyDist)> { Ok((row.workload.parse()?, row.dist.parse()?)) };
    let (mix, dist) = parse().map_err(|e| format!("bad row definition: {e:#}"))?;
    let protocol = match server {
        Server::Tern => ProtocolKind::Tern,
        Server::Redis => ProtocolKind::Resp,
    };
    let workload = WorkloadSpec {
        mix,
        keyspace: cfg.keys,
        dist,
        value: ValueSize::Fixed(cfg.value_bytes),
        scan_len_max: 100,
        seed: 0x7e57,
    };
    let target = match (server, row.cluster) {
        (Server::Tern, Some(Nodes::All)) => process.all_targets(),
        _ => process.target(),
    };
    let mut config = RunConfig::new(target, protocol, workload);
    config.threads = 1;
    config.connections = row.connections;
    config.depth = row.depth;
    config.cpus = vec![cfg.loadgen_cpu];
    config.rate = rate;
    config.length = RunLength::Duration(duration);
    config.warmup = warmup;
    config.load = load;
    config.server_pid = Some(process.pid());
    config.quiet = true;
    let report = crate::engine::run(&config).map_err(|e| format!("run failed: {e:#}"))?;
    if report.total.errors > 0 {
        return Err(format!(
            "{} of {} operations failed",
            report.total.errors,
            report.total.ops + report.total.errors
        ));
    }
    Ok(Side {
        ops_per_sec: report.total.ops_per_sec,
        p50_us: report.total.p50_us,
        p99_us: report.total.p99_us,
        server_cpu_us_per_op: report.server_cpu_us_per_op.unwrap_or(f64::NAN),
        loadgen_saturated: report.saturated,
    })
}

/// target/bench/compare.json, `--json`, and the Markdown section.
fn write_outputs(cfg: &CompareConfig, report: &Json, command: &str) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)? + "\n";
    std::fs::create_dir_all(BENCH_DIR)?;
    std::fs::write(format!("{BENCH_DIR}/compare.json"), &text)?;
    if let Some(path) = &cfg.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let section = report_markdown(report, command);
    match &cfg.markdown {
        Some(path) => {
            let doc = std::fs::read_to_string(path).unwrap_or_default();
            std::fs::write(path, replace_section(&doc, &section))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "compare: wrote target/bench/compare.json and {}",
                path.display()
            );
        }
        None => println!("{section}"),
    }
    Ok(())
}

/// "YYYY-MM-DD HH:MM:SS UTC" from the system clock (civil-from-days, no date crate).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The JSON report of a comparison.
pub fn report_json(
    date: &str,
    machine: &str,
    quick: bool,
    rows: &[(&Row, Outcome, Outcome)],
) -> Json {
    let rows: Vec<Json> = rows
        .iter()
        .map(|(row, tern, redis)| {
            let side = |o: &Outcome| match o {
                Ok(s) => s.to_json(),
                Err(why) => json!({ "missing": why }),
            };
            let mut doc = json!({
                "workload": row.name,
                "tern": side(tern),
                "redis": side(redis),
                "ratio_ops": null,
                "ratio_cpu": null,
                "ratio_p99": null,
            });
            match (tern, redis) {
                (Ok(t), Ok(r)) => {
                    doc["ratio_ops"] = json!(ratio(t.ops_per_sec, r.ops_per_sec));
                    doc["ratio_cpu"] = json!(ratio(t.server_cpu_us_per_op, r.server_cpu_us_per_op));
                    doc["ratio_p99"] = json!(ratio(t.p99_us, r.p99_us));
                }
                (Err(why), _) | (_, Err(why)) => doc["missing"] = json!(why),
            }
            doc
        })
        .collect();
    json!({
        "date": date,
        "machine": machine,
        "quick": quick,
        "notes": NOTES,
        "rows": rows,
    })
}

/// The Markdown section for docs/benchmarks.md, rendered from the JSON report.
pub fn report_markdown(report: &Json, command: &str) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}`  \nMachine: {}  \nDate: {}{}\n\n",
        report["machine"].as_str().unwrap_or("?"),
        report["date"].as_str().unwrap_or("?"),
        if report["quick"].as_bool() == Some(true) {
            " (quick run)"
        } else {
            ""
        },
    ));
    if report["notes"].as_array().is_some_and(|n| !n.is_empty()) {
        md.push_str("How the servers ran:\n\n");
    }
    for note in report["notes"].as_array().into_iter().flatten() {
        if let Some(note) = note.as_str() {
            md.push_str(&format!("* {note}\n"));
        }
    }
    if report["notes"].as_array().is_some_and(|n| !n.is_empty()) {
        md.push('\n');
    }
    md.push_str("| workload | tern ops/s | Redis ops/s | ops ratio | tern p50 / p99 µs | Redis p50 / p99 µs | tern CPU µs/op | Redis CPU µs/op | CPU ratio |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let num = |v: &Json, key: &str| v[key].as_f64();
    let fmt_rate = |v: Option<f64>| {
        v.map_or("—".to_owned(), |x| {
            if x >= 1e6 {
                format!("{:.2} M", x / 1e6)
            } else {
                format!("{:.0} k", x / 1e3)
            }
        })
    };
    let fmt =
        |v: Option<f64>, digits: usize| v.map_or("—".to_owned(), |x| format!("{x:.digits$}"));
    for row in report["rows"].as_array().into_iter().flatten() {
        let (t, r) = (&row["tern"], &row["redis"]);
        let lat = |s: &Json| match (num(s, "p50_us"), num(s, "p99_us")) {
            (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
            _ => "—".into(),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row["workload"].as_str().unwrap_or("?"),
            fmt_rate(num(t, "ops_per_sec")),
            fmt_rate(num(r, "ops_per_sec")),
            fmt(num(row, "ratio_ops"), 2),
            lat(t),
            lat(r),
            fmt(num(t, "server_cpu_us_per_op"), 2),
            fmt(num(r, "server_cpu_us_per_op"), 2),
            fmt(num(row, "ratio_cpu"), 2),
        ));
    }
    let missing: Vec<String> = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| {
            row["missing"]
                .as_str()
                .map(|why| format!("* `{}`: {why}", row["workload"].as_str().unwrap_or("?")))
        })
        .collect();
    if !missing.is_empty() {
        md.push_str("\nMissing:\n");
        md.push_str(&missing.join("\n"));
        md.push('\n');
    }
    let saturated: Vec<String> = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| {
            ["tern", "redis"]
                .into_iter()
                .filter(move |side| row[*side]["loadgen_saturated"].as_bool() == Some(true))
                .map(move |side| format!("`{}` ({side})", row["workload"].as_str().unwrap_or("?")))
        })
        .collect();
    if !saturated.is_empty() {
        md.push_str(&format!(
            "\nWarning: the load generator was saturated (≥ 90 % busy) in {}; those rates are lower bounds.\n",
            saturated.join(", ")
        ));
    }
    md.push_str("\nTargets:\n\n");
    let row = |name: &str| {
        report["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["workload"] == name)
            .cloned()
            .unwrap_or(Json::Null)
    };
    for t in TARGETS {
        let r = row(t.row);
        let figure = match t.side {
            Some(side) => num(&r[side], t.ratio),
            None => num(&r, t.ratio),
        };
        let line = match figure {
            Some(v) => {
                let met = if t.at_least { v >= t.goal } else { v <= t.goal };
                let verdict = if met { "met" } else { "not met" };
                format!(
                    "* {} ({}): {v:.2} (goal {}) — {verdict}\n",
                    t.what, t.issue, t.goal_text
                )
            }
            None => format!(
                "* {} ({}): not measured (goal {})\n",
                t.what, t.issue, t.goal_text
            ),
        };
        md.push_str(&line);
    }
    for (what, name, key) in REPORTED {
        if let Some(v) = num(&row(name), key) {
            md.push_str(&format!("* {what}: {v:.2} (reported, no goal)\n"));
        }
    }
    let ops = |name: &str| num(&row(name)["tern"], "ops_per_sec");
    if let (Some(all), Some(leader)) = (ops("replicated_get_all"), ops("replicated_get_leader")) {
        md.push_str(&format!(
            "* eventually consistent GET ops, three replicas ÷ the leader alone: {:.2} (reported; here the three nodes share one CPU)\n",
            all / leader
        ));
    }
    md
}

/// Ratios reported under the targets without a goal of their own: (what, row, ratio).
const REPORTED: &[(&str, &str, &str)] = &[(
    "durable SET p99, tern ÷ Redis appendfsync always",
    "durable_set",
    "ratio_p99",
)];

/// A target from the issue that set it: `row`'s `ratio` must be at least (or at most)
/// `goal`.
struct Target {
    what: &'static str,
    /// Where the target comes from.
    issue: &'static str,
    row: &'static str,
    ratio: &'static str,
    /// Read `ratio` from this side of the row (an absolute figure) instead of the row.
    side: Option<&'static str>,
    at_least: bool,
    goal: f64,
    goal_text: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        what: "pipelined GET ops, tern ÷ Redis",
        issue: "issue 4",
        row: "get_p16",
        ratio: "ratio_ops",
        side: None,
        at_least: true,
        goal: 2.0,
        goal_text: "≥ 2",
    },
    Target {
        what: "server CPU per pipelined GET, tern ÷ Redis",
        issue: "issue 4",
        row: "get_p16",
        ratio: "ratio_cpu",
        side: None,
        at_least: false,
        goal: 0.4,
        goal_text: "≤ 0.4",
    },
    Target {
        what: "unpipelined GET ops (P1 c50), tern ÷ Redis",
        issue: "issue 4",
        row: "get_p1",
        ratio: "ratio_ops",
        side: None,
        at_least: true,
        goal: 1.0,
        goal_text: "≥ 1.0",
    },
    Target {
        what: "server CPU per unpipelined GET, tern ÷ Redis",
        issue: "issue 4",
        row: "get_p1",
        ratio: "ratio_cpu",
        side: None,
        at_least: false,
        goal: 0.8,
        goal_text: "≤ 0.8",
    },
    Target {
        what: "p99 at half load, tern ÷ Redis",
        issue: "issue 4",
        row: "get_p1_half_load",
        ratio: "ratio_p99",
        side: None,
        at_least: false,
        goal: 0.8,
        goal_text: "≤ 0.8",
    },
    Target {
        what: "durable SET ops (fsync before ack), tern ÷ Redis appendfsync always",
        issue: "storage issue 5",
        row: "durable_set",
        ratio: "ratio_ops",
        side: None,
        at_least: true,
        goal: 2.0,
        goal_text: "≥ 2",
    },
    Target {
        what: "replicated durable PUT ops at c50, tern's three AZs ÷ Redis appendfsync always",
        issue: "issue 13",
        row: "replicated_set",
        ratio: "ratio_ops",
        side: None,
        at_least: true,
        goal: 1.5,
        goal_text: "≥ 1.5",
    },
    Target {
        what: "replicated durable PUT p99 at c1, µs",
        issue: "issue 13",
        row: "replicated_set_c1",
        ratio: "p99_us",
        side: Some("tern"),
        at_least: false,
        goal: 1000.0,
        goal_text: "< 1000",
    },
];

pub const SECTION_BEGIN: &str =
    "<!-- compare:begin (written by benches/compare; edits here are overwritten) -->";
pub const SECTION_END: &str = "<!-- compare:end -->";

/// Replaces (or appends) the compare section of a Markdown document.
pub fn replace_section(doc: &str, section: &str) -> String {
    let body = format!("{SECTION_BEGIN}\n{section}{SECTION_END}");
    match (doc.find(SECTION_BEGIN), doc.find(SECTION_END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &doc[..b], body, &doc[e + SECTION_END.len()..])
        }
        _ => format!(
            "{}\n## tern vs Redis (benches/compare)\n\n{body}\n",
            doc.trim_end()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(ops: f64, cpu: f64, p99: f64) -> Side {
        Side {
            ops_per_sec: ops,
            p50_us: p99 / 2.0,
            p99_us: p99,
            server_cpu_us_per_op: cpu,
            loadgen_saturated: false,
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let rows: Vec<(&Row, Outcome, Outcome)> = ROWS
            .iter()
            .map(|r| {
                let (tern, redis) = if r.durable {
                    (side(120e3, 4.0, 900.0), side(50e3, 12.0, 3600.0))
                } else {
                    (side(2e6, 0.3, 40.0), side(1e6, 1.2, 80.0))
                };
                (r, Ok(tern), Ok(redis))
            })
            .collect();
        let doc = report_json("2026-11-25 00:00:00 UTC", "test machine", true, &rows);
        assert_eq!(doc["quick"], true);
        assert_eq!(doc["notes"].as_array().unwrap().len(), NOTES.len());
        let rows = doc["rows"].as_array().unwrap();
        let names: Vec<&str> = rows
            .iter()
            .map(|r| r["workload"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "get_p16",
                "set_p16",
                "get_p1",
                "get_p1_half_load",
                "ycsb_a",
                "ycsb_b",
                "ycsb_c",
                "durable_set",
                "durable_set_c1",
                "replicated_set",
                "replicated_set_c1",
                "replicated_get_leader",
                "replicated_get_all"
            ]
        );
        for row in rows {
            assert!(row.get("missing").is_none(), "{row}");
            for side in ["tern", "redis"] {
                let s = &row[side];
                for key in ["ops_per_sec", "p50_us", "p99_us", "server_cpu_us_per_op"] {
                    assert!(s[key].is_f64(), "{side}.{key} in {row}");
                }
            }
        }
        assert_eq!(rows[0]["ratio_ops"], 2.0);
        assert_eq!(rows[0]["ratio_cpu"], 0.25);
        // The durable row is measured on both sides like any other.
        assert_eq!(rows[7]["ratio_ops"], 2.4);
        assert_eq!(rows[7]["ratio_p99"], 0.25);
        let md = report_markdown(&doc, "benches/compare --quick");
        assert!(md.contains("| get_p16 | 2.00 M | 1.00 M | 2.00 |"), "{md}");
        assert!(
            md.contains("| durable_set | 120 k | 50 k | 2.40 | 450.0 / 900.0 | 1800.0 / 3600.0 |"),
            "{md}"
        );
        // The cluster rows' targets: an ops ratio and tern's own p99 (900 µs < 1 ms).
        assert!(
            md.contains("replicated durable PUT ops at c50, tern's three AZs ÷ Redis appendfsync always (issue 13): 2.40 (goal ≥ 1.5) — met"),
            "{md}"
        );
        assert!(
            md.contains(
                "replicated durable PUT p99 at c1, µs (issue 13): 900.00 (goal < 1000) — met"
            ),
            "{md}"
        );
        assert!(
            md.contains("three replicas ÷ the leader alone: 1.00"),
            "{md}"
        );
        assert!(
            md.contains("pipelined GET ops, tern ÷ Redis (issue 4): 2.00 (goal ≥ 2) — met"),
            "{md}"
        );
        assert!(
            md.contains(
                "durable SET ops (fsync before ack), tern ÷ Redis appendfsync always \
                 (storage issue 5): 2.40 (goal ≥ 2) — met"
            ),
            "{md}"
        );
        assert!(
            md.contains("durable SET p99, tern ÷ Redis appendfsync always: 0.25"),
            "{md}"
        );
        assert!(md.contains("`--durability none`"), "{md}");
        assert!(md.contains("--appendfsync always`"), "{md}");
        assert!(!md.contains("Missing:"), "{md}");
    }

    #[test]
    fn a_side_that_could_not_run_is_missing() {
        let rows: Vec<(&Row, Outcome, Outcome)> = ROWS
            .iter()
            .map(|r| {
                let redis = if r.durable {
                    Err("redis-server (appendfsync always) did not start".to_owned())
                } else {
                    Ok(side(1e6, 1.2, 80.0))
                };
                (r, Ok(side(2e6, 0.3, 40.0)), redis)
            })
            .collect();
        let doc = report_json("2026-11-25 00:00:00 UTC", "test machine", false, &rows);
        let row = &doc["rows"][7];
        assert_eq!(row["workload"], "durable_set");
        assert_eq!(
            row["missing"],
            "redis-server (appendfsync always) did not start"
        );
        assert_eq!(
            row["redis"]["missing"],
            "redis-server (appendfsync always) did not start"
        );
        assert!(row["tern"]["ops_per_sec"].is_f64());
        assert!(row["ratio_ops"].is_null() && row["ratio_p99"].is_null());
        let md = report_markdown(&doc, "benches/compare");
        assert!(
            md.contains("* `durable_set`: redis-server (appendfsync always) did not start"),
            "{md}"
        );
        assert!(
            md.contains("(storage issue 5): not measured (goal ≥ 2)"),
            "{md}"
        );
        assert!(!md.contains("durable SET p99"), "{md}");
    }

    #[test]
    fn utc_now_is_well_formed() {
        let now = utc_now();
        assert_eq!(now.len(), "2026-11-25 18:00:00 UTC".len(), "{now}");
        let year: i32 = now[..4].parse().unwrap();
        assert!((2024..2200).contains(&year), "{now}");
        assert!(now.ends_with(" UTC"));
    }

    #[test]
    fn the_section_is_replaced_not_duplicated() {
        let doc = "# Benchmarks\n\nintro\n";
        let once = replace_section(doc, "first\n");
        assert!(once.contains("first"));
        let twice = replace_section(&once, "second\n");
        assert!(twice.contains("second") && !twice.contains("first"));
        assert_eq!(twice.matches(SECTION_BEGIN).count(), 1);
        assert!(twice.starts_with("# Benchmarks\n\nintro"));
    }
}
