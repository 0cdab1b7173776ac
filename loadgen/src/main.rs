//! `tern-loadgen`: drive tern (or Redis) with YCSB-style workloads and report throughput,
//! HDR latencies and CPU per operation.
//!
//! ```text
//! tern-loadgen [run] --target 127.0.0.1:7000 --protocol tern --workload ycsb-a --load 1M \
//!     --threads 1 --connections 16 --depth 16 --cpu 1 --duration 10s --server-pid PID
//! tern-loadgen fake-server --protocol tern --listen 127.0.0.1:7100 --cpu 0
//! ```
//! `run` is the default subcommand. The run's errors are counted and reported; setup
//! failures (nothing listening, a table with the wrong key schema, ...) exit non-zero.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tern_loadgen::engine::{self, RunConfig, RunLength};
use tern_loadgen::fake::{FakeConfig, FakeServer};
use tern_loadgen::proto::ProtocolKind;
use tern_loadgen::workload::{DEFAULT_SCAN_LEN_MAX, KeyDist, Mix, ValueSize, WorkloadSpec};

#[derive(Parser, Debug)]
#[command(
    name = "tern-loadgen",
    version,
    about = "Load generator for tern (binary protocol) and Redis (RESP): io_uring, pipelined, \
             closed or open loop, HDR latencies, CPU per op"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drive a server (the default subcommand).
    Run(Box<RunArgs>),
    /// A trivial server answering every request with a canned reply, to measure the
    /// generator's own capacity.
    FakeServer(FakeArgs),
    /// tern beside Redis in one run (what benches/compare calls): each server in turn
    /// pinned to one CPU, identical workloads from this process pinned to another; writes
    /// JSON and the comparison section of docs/benchmarks.md.
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Shorter runs (3 s each after a 1 s warm-up): under 2 minutes in all.
    #[arg(long)]
    quick: bool,
    /// The tern server binary.
    #[arg(long, default_value = "target/release/ternd")]
    ternd: std::path::PathBuf,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    redis_server: std::path::PathBuf,
    /// Also write the JSON report here (it always goes to target/bench/compare.json).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Markdown file whose comparison section is replaced.
    #[arg(long, default_value = "docs/benchmarks.md")]
    doc: std::path::PathBuf,
    /// Do not touch the Markdown file; print the section instead.
    #[arg(long)]
    no_doc: bool,
    /// CPU for the servers.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the load generator.
    #[arg(long, default_value_t = 1)]
    loadgen_cpu: usize,
    /// Keys preloaded into each server.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Value bytes.
    #[arg(long, default_value_t = 100)]
    value_size: u32,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Server address: any port of a tern node, or Redis.
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: String,
    /// tern | resp (Redis).
    #[arg(long, default_value = "tern")]
    protocol: ProtocolKind,
    /// Engine threads (one io_uring ring each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections per thread (tern: at least one per shard).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight per connection (pipelining depth).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// CPUs to pin threads to, e.g. `1`, `0,1` or `2-3` (thread i → cpus[i % len]).
    #[arg(long, value_parser = parse_cpus)]
    cpu: Option<CpuList>,
    /// Open loop at this many ops/s in total (e.g. 50000, 200k, 1.5M); default: closed loop.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Measured time after the warm-up (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, conflicts_with = "ops")]
    duration: Option<Duration>,
    /// Measured operations after the warm-up, instead of a duration (e.g. 1M).
    #[arg(long, value_parser = parse_count)]
    ops: Option<u64>,
    /// Warm-up, not measured.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,
    /// get | set | mixed:F (F = fraction of GETs) | ycsb-a … ycsb-f | query (Scans of exactly --scan-len items).
    #[arg(long, default_value = "get")]
    workload: Mix,
    /// Key space: keys 0..N (preload them with --load N).
    #[arg(long, value_parser = parse_count, default_value = "100000")]
    keys: u64,
    /// uniform | zipfian[:θ] | latest[:θ] | hotspot[:H:O]; default: YCSB's for the workload.
    #[arg(long)]
    dist: Option<KeyDist>,
    /// Value bytes of writes: `100` or a range `64-1024`.
    #[arg(long, default_value = "100")]
    value_size: ValueSize,
    /// Scans read 1..=N items (ycsb-e).
    #[arg(long, default_value_t = DEFAULT_SCAN_LEN_MAX)]
    scan_len: u32,
    /// Preload keys 0..N before the run (for ycsb-e: the ranged model).
    #[arg(long, value_parser = parse_count)]
    load: Option<u64>,
    /// Write the JSON report (with the engine's counters under "engine") here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HdrHistogram interval log here.
    #[arg(long)]
    hdr: Option<PathBuf>,
    /// Write a latency-by-percentile SVG plot here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Report this server process's CPU time per operation.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Workload seed (runs are reproducible).
    #[arg(long, default_value_t = 0x7465_726e)]
    seed: u64,
    /// No live lines, no progress bar.
    #[arg(long)]
    quiet: bool,
    /// Poll the ring instead of sleeping when idle (burns the CPUs; lowest latency).
    #[arg(long)]
    spin: bool,
}

#[derive(Args, Debug)]
struct FakeArgs {
    /// tern | resp.
    #[arg(long, default_value = "tern")]
    protocol: ProtocolKind,
    /// Address of the first listener (tern: shard k listens on port + k).
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: std::net::SocketAddr,
    /// tern: shards announced (listeners), 1..=8.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Value bytes of GET replies.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Pin the server's threads to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Check each tern request's body CRC (off: the server spends less per request).
    #[arg(long)]
    check_crc: bool,
    /// One thread polls every connection without sleeping (burns its CPU; no wake-ups):
    /// the cheapest server, for capacity runs.
    #[arg(long)]
    spin: bool,
    /// Stop after this long (default: run until killed).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

/// `run` is the default subcommand: insert it when the first argument is a flag.
fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    const KNOWN: &[&str] = &[
        "run",
        "fake-server",
        "compare",
        "help",
        "-h",
        "--help",
        "-V",
        "--version",
    ];
    if args.len() == 1 || !KNOWN.contains(&args[1].as_str()) {
        args.insert(1, "run".into());
    }
    args
}

fn main() {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args().collect()));
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::FakeServer(args) => fake_server(args),
        Command::Compare(args) => compare(args),
    };
    if let Err(e) = result {
        eprintln!("tern-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let config = tern_loadgen::compare::CompareConfig {
        quick: args.quick,
        ternd: args.ternd,
        redis_server: args.redis_server,
        json: args.json,
        markdown: (!args.no_doc).then_some(args.doc),
        server_cpu: args.server_cpu,
        loadgen_cpu: args.loadgen_cpu,
        keys: args.keys,
        value_bytes: args.value_size,
    };
    let command = if args.quick {
        "benches/compare --quick"
    } else {
        "benches/compare"
    };
    tern_loadgen::compare::run_compare(&config, command)?;
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let spec = WorkloadSpec {
        mix: args.workload,
        keyspace: args.keys,
        dist: args.dist.unwrap_or_else(|| args.workload.default_dist()),
        value: args.value_size,
        scan_len_max: args.scan_len,
        seed: args.seed,
    };
    if spec.mix == Mix::Load {
        bail!("--workload load is the preload; use --load N (with any workload)");
    }
    let config = RunConfig {
        target: args.target,
        protocol: args.protocol,
        threads: args.threads,
        connections: args.connections,
        depth: args.depth,
        cpus: args.cpu.map(|c| c.0).unwrap_or_default(),
        rate: args.rate,
        length: match (args.ops, args.duration) {
            (Some(n), _) => RunLength::Ops(n),
            (None, d) => RunLength::Duration(d.unwrap_or(Duration::from_secs(10))),
        },
        warmup: args.warmup,
        workload: spec,
        load: args.load,
        server_pid: args.server_pid,
        spin: args.spin,
        quiet: args.quiet,
    };
    let outcome = engine::run_detailed(&config)?;
    let mut stdout = std::io::stdout().lock();
    outcome.report.print_table(&mut stdout)?;
    if let Some(load) = &outcome.engine.load {
        writeln!(
            stdout,
            "preload:     {} keys in {:.1} s",
            load.keys, load.secs
        )?;
    }
    let misses = outcome.engine.misses();
    if misses > 0 {
        writeln!(
            stdout,
            "misses:      {misses} reads found no item (preload with --load N?)"
        )?;
    }
    writeln!(
        stdout,
        "clock:       {:.1} ns per read (read twice per loop turn, not per op)",
        outcome.engine.clock_read_ns
    )?;
    for note in outcome.engine.notes() {
        writeln!(stdout, "note: {note}")?;
    }
    drop(stdout);
    if let Some(path) = &args.json {
        let mut doc = outcome.report.to_json();
        if let Some(map) = doc.as_object_mut() {
            map.insert("engine".into(), outcome.engine.to_json());
        }
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.hdr {
        outcome.report.write_hdr_log(path)?;
    }
    if let Some(path) = &args.plot {
        outcome.report.write_svg(path)?;
    }
    Ok(())
}

fn fake_server(args: FakeArgs) -> anyhow::Result<()> {
    let mut config = FakeConfig::new(args.protocol);
    config.host = args.listen.ip();
    config.port = args.listen.port();
    config.shards = args.shards;
    config.value_len = args.value_size;
    config.cpu = args.cpu;
    config.check_crc = args.check_crc;
    config.spin = args.spin;
    let server =
        FakeServer::start(config).with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "fake {} server on {}:{:?}",
        args.protocol,
        args.listen.ip(),
        server.ports()
    );
    let started = std::time::Instant::now();
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let seen = server
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("{} requests/s", seen - last);
        last = seen;
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    server.stop();
    Ok(())
}

/// "10s", "500ms", "2m", "1h", "1.5s", "250us"; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}: expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "bad duration unit {other:?} in {text:?}: use us, ms, s, m or h"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// "1000", "100k", "1M", "2G", "1_000_000", "1e6".
fn parse_count(text: &str) -> Result<u64, String> {
    let value = parse_number(text)?;
    if value < 0.0 || value > u64::MAX as f64 || value.fract() != 0.0 {
        return Err(format!("{text:?} is not a whole count"));
    }
    Ok(value as u64)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let value = parse_number(text)?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("rate {text:?} must be positive ops/s"));
    }
    Ok(value)
}

fn parse_number(text: &str) -> Result<f64, String> {
    let t = text.trim().replace('_', "");
    let (digits, scale) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t.as_str(), 1.0),
    };
    digits
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("bad number {text:?}: expected e.g. 1000, 100k, 1.5M"))
}

/// A `--cpu` list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CpuList(Vec<usize>);

/// "1", "0,1", "2-3", "0,2-3".
fn parse_cpus(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {text:?}: expected e.g. 1, 0,1 or 2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err(format!("empty CPU list {text:?}"));
    }
    Ok(CpuList(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(parse_count("1000"), Ok(1000));
        assert_eq!(parse_count("100k"), Ok(100_000));
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert_eq!(parse_count("1_000"), Ok(1000));
        assert_eq!(parse_count("1e6"), Ok(1_000_000));
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("-3").is_err());
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpus("0,1"), Ok(CpuList(vec![0, 1])));
        assert_eq!(parse_cpus("0,2-4"), Ok(CpuList(vec![0, 2, 3, 4])));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            with_default_subcommand(args(&["lg", "--depth", "4"])),
            args(&["lg", "run", "--depth", "4"])
        );
        assert_eq!(
            with_default_subcommand(args(&["lg", "fake-server"])),
            args(&["lg", "fake-server"])
        );
        assert_eq!(with_default_subcommand(args(&["lg"])), args(&["lg", "run"]));
        let cli = Cli::try_parse_from(with_default_subcommand(args(&[
            "lg",
            "--workload",
            "ycsb-e",
            "--ops",
            "5k",
            "--cpu",
            "0-1",
        ])))
        .expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        assert_eq!(run.workload, Mix::YcsbE);
        assert_eq!(run.ops, Some(5000));
        assert_eq!(run.cpu, Some(CpuList(vec![0, 1])));
    }
}
