//! The engine: threads, each with its own io_uring ring, driving many pipelined
//! connections, closed loop or open loop at a fixed rate.
//!
//! # Shape of a run ([`run`])
//!
//! 1. Setup (blocking, main thread): the protocol learns its endpoints and prepares the
//!    server ([`crate::proto`]).
//! 2. Preload (`RunConfig::load`): keys `0..N` written once by the same engine at high
//!    depth, with a progress bar.
//! 3. The run: `threads` engine threads, each pinned to `cpus[i % len]` when CPUs are
//!    given, each with `connections` connections spread over the endpoints (every endpoint
//!    gets at least one) and `depth` requests in flight per connection at most. The main
//!    thread receives each thread's [`Recorder`] at every interval boundary (each second,
//!    the warm-up's end, the run's end), feeds the [`Aggregator`] (one live line per
//!    interval) and stops the run by duration or op count.
//!
//! # The ring of a thread
//!
//! Created on the thread with SINGLE_ISSUER | DEFER_TASKRUN (completion work runs only
//! when the thread enters the kernel: no interrupts while it encodes and parses; a plain
//! ring with a warning when the kernel refuses). Per connection one multishot receive into
//! a provided-buffer ring (`limits::RECV_BUFFER_COUNT` × `RECV_BUFFER_SIZE_BYTES`) and at
//! most one send in flight, of everything encoded since the previous one. One
//! `io_uring_enter` per loop turn submits all of it and, when there is nothing to do,
//! sleeps until a completion or the next timer (an interval boundary, the next open-loop
//! send time) — `--spin` polls instead. user_data = operation kind << 32 | connection;
//! connections live as long as the thread, so no generation is needed; request ids carry
//! a per-slot generation (`slot | generation << 16`) so a stray reply cannot complete a
//! reused slot.
//!
//! # Time
//!
//! One `Instant::now()` (CLOCK_MONOTONIC through the vDSO) per turn for every completion
//! of the turn and one more per turn for the send time of the requests it issued, so the
//! clock costs per turn, not per op ([`clock_read_ns`] measures a read; the run reports
//! it). Open loop: op `i` of thread `t` is due at `(i + t / T) / rate_per_thread`; its
//! latency runs from that intended time (coordinated omission corrected), and an op
//! issued more than `limits::LATE_SEND_THRESHOLD` after it counts as a late send.
//!
//! # CPU
//!
//! Each thread's CPU time (CLOCK_THREAD_CPUTIME_ID) over its measured window gives the
//! generator's CPU per op and its busy fraction (the report warns from 90 %). With
//! `server_pid`, the server's CPU time is read from /proc at the warm-up's end and after
//! the last thread finished.
//!
//! # Capacity (measured)
//!
//! One engine thread pinned to CPU 1, pipelined GETs (100-byte values, uniform keys)
//! against the trivial server of [`crate::fake`] pinned to CPU 0, in its spinning mode
//! (one thread polls every connection: no wake-ups, canned replies). 2-vCPU VM, Linux
//! 6.18, release build; medians of 3 runs of 10 s (±10 % run to run on this shared VM):
//!
//! ```text
//! tern-loadgen fake-server --spin --protocol tern --listen 127.0.0.1:7100 --cpu 0 &
//! tern-loadgen run --target 127.0.0.1:7100 --protocol tern --cpu 1 --threads 1 \
//!     --connections 4 --depth 256 --workload get --dist uniform --duration 10s --warmup 2s
//! ```
//!
//! | protocol | connections × depth | GET/s | loadgen CPU µs/op | busy | p50 / p99 µs |
//! |---|---|---|---|---|---|
//! | tern | 4 × 256  | 6.30 M | 0.156 | 98 % | 100 / 241 |
//! | tern | 1 × 1024 | 7.10 M | 0.130 | 93 % | 83 / 183 |
//! | tern | 50 × 16  | 1.94 M | 0.493 | 96 % | 323 / 949 |
//! | resp | 4 × 256  | 7.57 M | 0.130 | 98 % | 79 / 181 |
//! | resp | 1 × 1024 | 6.16 M | 0.115 | 71 % (server-bound) | 91 / 219 |
//! | resp | 50 × 16  | 2.25 M | 0.428 | 95 % | 299 / 796 |
//!
//! Where the time goes (`perf record`, tern 4 × 256): about half in the kernel (copying
//! replies out of and requests into sockets, TCP), and in user space the request template
//! copy and its CRC patch, reply header checks, HDR recording, `format_key` and the
//! workload draw, none above 8 %. The CRC32 of request bodies was the largest item
//! (17 %) until GetItem templates patched it (`proto::tern`), and the reply body CRC is
//! not checked at all. At 50 connections × 16 the kernel's per-segment TCP work (≈ 72 % of
//! the samples: a send and a receive of ~13 requests each cost ≈ 4.5 µs on this VM) caps
//! one thread near 2 M/s; deeper pipelines or fewer connections amortise it, and
//! redis-benchmark with the same `-c 50 -P 16` spends ≈ 0.8–1.0 µs of CPU per GET against
//! Redis where this engine spends ≈ 0.5.

pub mod limits;
mod sys;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

use self::limits::{
    CONNECTIONS_PER_THREAD_MAX, DEPTH_MAX, INTERVAL, LOAD_DEPTH_MIN, LOAD_INTERVAL, SETUP_TIMEOUT,
    THREADS_MAX,
};
use self::worker::{Length, Links, ThreadPlan, ToMain};
use crate::cpu;
use crate::proto::{AnyProtocol, KeyModel, Protocol, ProtocolKind};
use crate::report::{Aggregator, Progress, Recorder, Report, RunInfo};
use crate::workload::{Mix, WorkloadSpec};

/// How long the measured part of a run lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunLength {
    /// Wall time after the warm-up.
    Duration(Duration),
    /// Operations after the warm-up, split evenly over the threads.
    Ops(u64),
}

/// Everything a run needs (the CLI's `run` flags).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// "host:port": any port of a tern node (the shared or a shard port), or Redis.
    pub target: String,
    pub protocol: ProtocolKind,
    pub threads: usize,
    /// Connections per thread (tern: at least one per shard).
    pub connections: usize,
    /// Requests in flight per connection at most.
    pub depth: usize,
    /// Thread `i` is pinned to `cpus[i % cpus.len()]`; empty: not pinned.
    pub cpus: Vec<usize>,
    /// Open loop at this many ops/s in total; None: closed loop.
    pub rate: Option<f64>,
    pub length: RunLength,
    pub warmup: Duration,
    pub workload: WorkloadSpec,
    /// Preload keys `0..N` first.
    pub load: Option<u64>,
    /// Report this process's CPU time per op.
    pub server_pid: Option<u32>,
    /// Poll the ring instead of sleeping in the kernel when idle.
    pub spin: bool,
    /// No live line, no progress bar.
    pub quiet: bool,
}

impl RunConfig {
    /// A closed-loop run of `workload` against `target` with modest defaults: 1 thread,
    /// 16 connections, depth 1, 10 s after a 2 s warm-up.
    pub fn new(target: impl Into<String>, protocol: ProtocolKind, workload: WorkloadSpec) -> Self {
        RunConfig {
            target: target.into(),
            protocol,
            threads: 1,
            connections: 16,
            depth: 1,
            cpus: Vec::new(),
            rate: None,
            length: RunLength::Duration(Duration::from_secs(10)),
            warmup: Duration::from_secs(2),
            workload,
            load: None,
            server_pid: None,
            spin: false,
            quiet: false,
        }
    }

    /// Checks the bounds; each message says what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.threads == 0 || self.threads > THREADS_MAX {
            bail!("--threads must be 1..={THREADS_MAX}, not {}", self.threads);
        }
        if self.connections == 0 || self.connections > CONNECTIONS_PER_THREAD_MAX {
            bail!(
                "--connections (per thread) must be 1..={CONNECTIONS_PER_THREAD_MAX}, not {}",
                self.connections
            );
        }
        if self.depth == 0 || self.depth > DEPTH_MAX {
            bail!("--depth must be 1..={DEPTH_MAX}, not {}", self.depth);
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of ops/s, not {rate}");
        }
        match self.length {
            RunLength::Duration(d) if d.is_zero() => bail!("--duration must be positive"),
            RunLength::Ops(0) => bail!("--ops must be positive"),
            _ => {}
        }
        if let Some(&cpu) = self.cpus.iter().find(|c| **c >= libc::CPU_SETSIZE as usize) {
            bail!("--cpu {cpu} is out of range");
        }
        if self.load == Some(0) {
            bail!("--load must be positive (or left out)");
        }
        self.workload
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    fn key_model(&self) -> KeyModel {
        if self.workload.mix.uses_ranges() {
            KeyModel::Ranged
        } else {
            KeyModel::Point
        }
    }
}

/// One thread's counters.
#[derive(Debug, Clone, Default)]
pub struct ThreadStats {
    pub ring_tuned: bool,
    pub connections: usize,
    /// Loop turns (kernel entries) of the measured window (like the next three).
    pub turns: u64,
    /// Receive completions with data.
    pub recvs: u64,
    /// Sends queued.
    pub sends: u64,
    /// Multishot receives re-armed after running out of buffers.
    pub recv_rearms: u64,
    /// Measured ops completed (with a latency) / failed / misses among the completed.
    pub completed: u64,
    pub errors: u64,
    pub misses: u64,
    /// Measured ops drawn.
    pub measured_drawn: u64,
    /// Open loop: ops issued later than `limits::LATE_SEND_THRESHOLD` after their time.
    pub late_sends: u64,
    /// Open loop: the largest delay of an issue after its intended time, ns.
    pub max_lag_ns: u64,
    pub connection_failures: u64,
    /// The first distinct error messages.
    pub error_samples: Vec<String>,
    /// CPU time and wall time of the thread's measured window.
    pub cpu_ns: u64,
    pub wall_ns: u64,
    /// When the thread finished, since the epoch.
    pub finished_at: Duration,
    /// The thread stopped on an I/O error of its ring.
    pub fatal: Option<String>,
}

/// What the preload did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSummary {
    pub keys: u64,
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
}

/// The engine's own account of a run, beside the [`Report`].
#[derive(Debug, Clone)]
pub struct EngineStats {
    pub threads: Vec<ThreadStats>,
    /// ns per `Instant::now()` on this machine.
    pub clock_read_ns: f64,
    pub load: Option<LoadSummary>,
    /// Setup warnings (a ring without SINGLE_ISSUER | DEFER_TASKRUN, more connections than
    /// asked for).
    pub warnings: Vec<String>,
}

impl EngineStats {
    fn sum(&self, f: impl Fn(&ThreadStats) -> u64) -> u64 {
        self.threads.iter().map(f).sum()
    }

    /// Measured GET-like reads that found nothing (a successful miss).
    pub fn misses(&self) -> u64 {
        self.sum(|t| t.misses)
    }

    pub fn late_sends(&self) -> u64 {
        self.sum(|t| t.late_sends)
    }

    pub fn connection_failures(&self) -> u64 {
        self.sum(|t| t.connection_failures)
    }

    /// Distinct error messages of all threads.
    pub fn error_samples(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for s in self.threads.iter().flat_map(|t| &t.error_samples) {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        all
    }

    /// The busiest thread's CPU / wall over its measured window.
    pub fn busy_fraction(&self) -> f64 {
        self.threads
            .iter()
            .filter(|t| t.wall_ns > 0)
            .map(|t| t.cpu_ns as f64 / t.wall_ns as f64)
            .fold(0.0, f64::max)
    }

    /// Lines worth printing under the report.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.warnings.clone();
        let late = self.late_sends();
        if late > 0 {
            let lag = self.threads.iter().map(|t| t.max_lag_ns).max().unwrap_or(0);
            notes.push(format!(
                "open loop fell behind its schedule: {late} requests went out more than {:?} \
                 late (at most {:.1} ms); their latency counts from the intended time",
                limits::LATE_SEND_THRESHOLD,
                lag as f64 / 1e6
            ));
        }
        let failures = self.connection_failures();
        if failures > 0 {
            notes.push(format!("{failures} connections failed during the run"));
        }
        for s in self.error_samples() {
            notes.push(format!("error: {s}"));
        }
        notes
    }

    pub fn to_json(&self) -> Json {
        let turns = self.sum(|t| t.turns);
        let recvs = self.sum(|t| t.recvs);
        let sends = self.sum(|t| t.sends);
        let done = self.sum(|t| t.completed + t.errors);
        let per = |n: u64| if n == 0 { 0.0 } else { done as f64 / n as f64 };
        json!({
            "ring_tuned": self.threads.iter().all(|t| t.ring_tuned),
            "clock_read_ns": self.clock_read_ns,
            "misses": self.misses(),
            "late_sends": self.late_sends(),
            "max_lag_us": self.threads.iter().map(|t| t.max_lag_ns).max().unwrap_or(0) as f64 / 1e3,
            "connection_failures": self.connection_failures(),
            "ops_per_turn": per(turns),
            "ops_per_recv": per(recvs),
            "ops_per_send": per(sends),
            "error_samples": self.error_samples(),
            "warnings": self.warnings,
            "threads": self.threads.iter().map(|t| json!({
                "cpu_ns": t.cpu_ns,
                "wall_ns": t.wall_ns,
                "busy_fraction": if t.wall_ns > 0 { t.cpu_ns as f64 / t.wall_ns as f64 } else { 0.0 },
                "connections": t.connections,
                "completed": t.completed,
                "errors": t.errors,
            })).collect::<Vec<_>>(),
            "load": self.load.as_ref().map(|l| json!({
                "keys": l.keys, "ops": l.ops, "errors": l.errors, "secs": l.secs,
            })),
        })
    }
}

/// A report and the engine's own account.
pub struct RunOutcome {
    pub report: Report,
    pub engine: EngineStats,
}

/// Runs setup, the preload and the measured run; the library entry point.
pub fn run(config: &RunConfig) -> anyhow::Result<Report> {
    run_detailed(config).map(|o| o.report)
}

/// [`run`], with the engine's counters.
pub fn run_detailed(config: &RunConfig) -> anyhow::Result<RunOutcome> {
    config.validate()?;
    let proto = AnyProtocol::connect(
        config.protocol,
        &config.target,
        config.key_model(),
        SETUP_TIMEOUT,
    )
    .with_context(|| format!("setting up {} against {}", config.protocol, config.target))?;
    match proto {
        AnyProtocol::Tern(p) => run_with(&*p, config),
        AnyProtocol::Resp(p) => run_with(&p, config),
    }
}

/// [`run_detailed`] with a protocol already set up (tests, benchmarks).
pub fn run_with<P: Protocol>(proto: &P, config: &RunConfig) -> anyhow::Result<RunOutcome> {
    config.validate()?;
    let mut warnings = Vec::new();
    let endpoints = proto.endpoints().len();
    if config.connections < endpoints {
        warnings.push(format!(
            "{} connections per thread raised to {endpoints}: one per endpoint (shard)",
            config.connections
        ));
    }
    let load = match config.load {
        Some(keys) => Some(preload(proto, config, keys, &mut warnings)?),
        None => None,
    };
    let connections = config.connections.max(endpoints);
    let phase = Phase {
        spec: config.workload.clone(),
        threads: config.threads,
        connections,
        depth: config.depth,
        cpus: config.cpus.clone(),
        rate: config.rate,
        length: config.length,
        warmup: config.warmup,
        interval: INTERVAL,
        spin: config.spin,
    };
    let mut sink = Sink::Report {
        agg: Some(Box::new(Aggregator::new(config.warmup, config.quiet))),
        server_pid: config.server_pid,
        server_cpu_start: None,
    };
    let outcome = run_phase(proto, &phase, &mut sink)?;
    warnings.extend(outcome.warnings);
    let server_cpu_ns = match (&sink, config.server_pid) {
        (
            Sink::Report {
                server_cpu_start: Some(start),
                ..
            },
            Some(pid),
        ) => match cpu::process_tree_cpu_ns(pid) {
            Ok(end) => Some(end.saturating_sub(*start)),
            Err(e) => {
                warnings.push(format!("reading the CPU time of server pid {pid}: {e}"));
                None
            }
        },
        _ => None,
    };
    let engine = EngineStats {
        clock_read_ns: clock_read_ns(),
        threads: outcome.threads,
        load,
        warnings,
    };
    let info = RunInfo {
        target: config.target.clone(),
        protocol: proto.name().to_owned(),
        workload: config.workload.mix.name(),
        threads: config.threads,
        connections: connections * config.threads,
        depth: config.depth,
        rate: config.rate,
        server_cpu_ns,
        loadgen_cpu_ns: engine.sum(|t| t.cpu_ns),
        loadgen_busy_fraction: engine.busy_fraction(),
    };
    let Sink::Report { agg, .. } = &mut sink else {
        unreachable!("the run's sink is a report");
    };
    let report = agg
        .take()
        .expect("the aggregator is finished once")
        .finish(outcome.measured, info);
    Ok(RunOutcome { report, engine })
}

/// Writes keys `0..keys` once (Mix::Load) at high depth, with a progress bar.
fn preload<P: Protocol>(
    proto: &P,
    config: &RunConfig,
    keys: u64,
    warnings: &mut Vec<String>,
) -> anyhow::Result<LoadSummary> {
    let spec = WorkloadSpec {
        mix: Mix::Load,
        keyspace: keys,
        ..config.workload.clone()
    };
    let phase = Phase {
        spec,
        threads: config.threads,
        connections: config.connections.max(proto.endpoints().len()),
        depth: config.depth.max(LOAD_DEPTH_MIN),
        cpus: config.cpus.clone(),
        rate: None,
        length: RunLength::Ops(u64::MAX),
        warmup: Duration::ZERO,
        interval: LOAD_INTERVAL,
        spin: config.spin,
    };
    let started = Instant::now();
    let mut sink = Sink::Progress {
        bar: (!config.quiet).then(|| Progress::new(keys)),
        ops: 0,
        errors: 0,
    };
    let outcome = run_phase(proto, &phase, &mut sink).context("preload")?;
    warnings.extend(outcome.warnings);
    let Sink::Progress { bar, ops, errors } = sink else {
        unreachable!("the preload's sink is a progress bar");
    };
    if let Some(bar) = bar {
        bar.finish();
    }
    let samples: Vec<String> = outcome
        .threads
        .iter()
        .flat_map(|t| t.error_samples.iter().cloned())
        .collect();
    if errors > 0 || ops < keys {
        bail!(
            "preload: {errors} of {keys} writes failed ({ops} succeeded){}",
            samples
                .first()
                .map(|s| format!("; first error: {s}"))
                .unwrap_or_default()
        );
    }
    Ok(LoadSummary {
        keys,
        ops,
        errors,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// The interval boundaries of a phase: every `every` since the epoch, the warm-up's end
/// and the end (duration runs). Threads and the main thread walk the same list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    every: Duration,
    warmup: Duration,
    end: Option<Duration>,
}

impl Schedule {
    /// The first boundary strictly after `t`; None at or past the end.
    pub(crate) fn after(&self, t: Duration) -> Option<Duration> {
        let every = self.every.as_nanos().max(1);
        let t_ns = t.as_nanos();
        let mut next = (t_ns / every + 1) * every;
        let warmup = self.warmup.as_nanos();
        if warmup > t_ns && warmup < next {
            next = warmup;
        }
        if let Some(end) = self.end {
            let end = end.as_nanos();
            if t_ns >= end {
                return None;
            }
            next = next.min(end);
        }
        Some(Duration::from_nanos(next.min(u128::from(u64::MAX)) as u64))
    }
}

/// One phase (the preload or the run).
struct Phase {
    spec: WorkloadSpec,
    threads: usize,
    connections: usize,
    depth: usize,
    cpus: Vec<usize>,
    rate: Option<f64>,
    length: RunLength,
    warmup: Duration,
    interval: Duration,
    spin: bool,
}

/// Where a phase's recorders go.
enum Sink {
    Report {
        agg: Option<Box<Aggregator>>,
        server_pid: Option<u32>,
        server_cpu_start: Option<u64>,
    },
    Progress {
        bar: Option<Progress>,
        ops: u64,
        errors: u64,
    },
}

/// The main thread's side of a phase: what the threads sent so far.
struct Collector {
    stats: Vec<Option<ThreadStats>>,
    /// Boundaries each thread has sent.
    sent: Vec<usize>,
    /// Merged recorders of boundaries `base..`, waiting for every thread's.
    pending: VecDeque<Recorder>,
    spare: Vec<Recorder>,
    base: usize,
    /// What the threads recorded after their last boundary.
    tail: Recorder,
    recycle: Vec<mpsc::Sender<Recorder>>,
    abort: Arc<AtomicBool>,
    warnings: Vec<String>,
}

impl Collector {
    fn take(&mut self, msg: ToMain, sink: &mut Sink) {
        match msg {
            ToMain::Interval { thread, mut rec } => {
                let k = self.sent[thread];
                self.sent[thread] += 1;
                while self.pending.len() <= k - self.base {
                    self.pending.push_back(self.spare.pop().unwrap_or_default());
                }
                match sink {
                    Sink::Progress { bar, ops, errors } => {
                        *ops += rec.ops();
                        *errors += rec.errors();
                        if let Some(bar) = bar {
                            bar.advance(rec.ops() + rec.errors());
                        }
                    }
                    Sink::Report { .. } => self.pending[k - self.base].merge_from(&rec),
                }
                rec.clear();
                let _ = self.recycle[thread].send(rec);
            }
            ToMain::Final { thread, rec, stats } => {
                match sink {
                    Sink::Progress { bar, ops, errors } => {
                        *ops += rec.ops();
                        *errors += rec.errors();
                        if let Some(bar) = bar {
                            bar.advance(rec.ops() + rec.errors());
                        }
                    }
                    Sink::Report { .. } => self.tail.merge_from(&rec),
                }
                if let Some(fatal) = &stats.fatal {
                    self.abort.store(true, Ordering::Relaxed);
                    self.warnings.push(fatal.clone());
                }
                self.stats[thread] = Some(*stats);
            }
            ToMain::Ready { .. } => unreachable!("threads report ready once"),
        }
    }
}

struct PhaseOutcome {
    threads: Vec<ThreadStats>,
    measured: Duration,
    warnings: Vec<String>,
}

fn run_phase<P: Protocol>(
    proto: &P,
    phase: &Phase,
    sink: &mut Sink,
) -> anyhow::Result<PhaseOutcome> {
    let threads = phase.threads;
    let end = match phase.length {
        RunLength::Duration(d) => Some(phase.warmup + d),
        RunLength::Ops(_) => None,
    };
    let schedule = Schedule {
        every: phase.interval,
        warmup: phase.warmup,
        end,
    };
    let (to_main, from_threads) = mpsc::channel();
    let abort = Arc::new(AtomicBool::new(false));
    let mut starts = Vec::with_capacity(threads);
    let mut recycle = Vec::with_capacity(threads);
    let mut handles: Vec<Option<JoinHandle<()>>> = Vec::with_capacity(threads);
    for i in 0..threads {
        let (start_tx, start_rx) = mpsc::channel();
        let (recycle_tx, recycle_rx) = mpsc::channel();
        let length = match (phase.length, phase.spec.mix) {
            (_, Mix::Load) => Length::Exhaust,
            (RunLength::Duration(_), _) => Length::Until(end.expect("duration runs end")),
            (RunLength::Ops(n), _) => {
                let share = n / threads as u64 + u64::from((i as u64) < n % threads as u64);
                Length::Ops(share)
            }
        };
        let plan = ThreadPlan {
            index: i,
            threads,
            connections: phase.connections,
            depth: phase.depth,
            cpu: (!phase.cpus.is_empty()).then(|| phase.cpus[i % phase.cpus.len()]),
            rate: phase.rate.map(|r| r / threads as f64),
            length,
            warmup: phase.warmup,
            schedule,
            spin: phase.spin,
            spec: phase.spec.clone(),
        };
        let links = Links {
            to_main: to_main.clone(),
            start: start_rx,
            recycled: recycle_rx,
            abort: abort.clone(),
        };
        let proto = proto.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .spawn(move || worker::thread_main(proto, plan, links))
            .context("spawning an engine thread")?;
        starts.push(start_tx);
        recycle.push(recycle_tx);
        handles.push(Some(handle));
    }
    drop(to_main);

    // Setup: every thread connects, then all start together.
    let mut warnings = Vec::new();
    let mut setup_error = None;
    for _ in 0..threads {
        match from_threads.recv_timeout(SETUP_TIMEOUT * 2) {
            Ok(ToMain::Ready {
                thread,
                result,
                warning,
            }) => {
                if let Err(e) = result {
                    setup_error.get_or_insert(format!("engine thread {thread}: {e}"));
                }
                if let Some(w) = warning
                    && !warnings.contains(&w)
                {
                    warnings.push(w);
                }
            }
            Ok(_) => unreachable!("threads report ready before anything else"),
            Err(_) => {
                setup_error.get_or_insert("an engine thread did not finish its setup".into());
                break;
            }
        }
    }
    if let Some(e) = setup_error {
        for s in &starts {
            let _ = s.send(None);
        }
        for h in handles.iter_mut().filter_map(Option::take) {
            let _ = h.join();
        }
        bail!("{e}");
    }
    let epoch = Instant::now();
    for s in &starts {
        let _ = s.send(Some(epoch));
    }
    if let Sink::Report {
        server_pid: Some(pid),
        server_cpu_start,
        ..
    } = sink
        && phase.warmup.is_zero()
    {
        *server_cpu_start = cpu::process_tree_cpu_ns(*pid).ok();
    }

    // The run: merge each boundary's recorders once every thread has sent its own.
    let mut c = Collector {
        stats: vec![None; threads],
        sent: vec![0; threads],
        pending: VecDeque::new(),
        spare: Vec::new(),
        base: 0,
        tail: Recorder::new(),
        recycle,
        abort: abort.clone(),
        warnings: Vec::new(),
    };
    let mut bounds: Vec<Duration> = Vec::new();
    let mut panicked = None;
    loop {
        if c.stats.iter().all(Option::is_some) {
            break;
        }
        if let Sink::Report {
            server_pid: Some(pid),
            server_cpu_start: start @ None,
            ..
        } = sink
            && epoch.elapsed() >= phase.warmup
        {
            *start = cpu::process_tree_cpu_ns(*pid).ok();
        }
        let until_warmup = phase.warmup.saturating_sub(epoch.elapsed());
        let wait = if until_warmup.is_zero() {
            Duration::from_millis(100)
        } else {
            until_warmup.min(Duration::from_millis(100))
        };
        match from_threads.recv_timeout(wait) {
            Ok(msg) => c.take(msg, sink),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Every thread is gone; those without a Final panicked.
                for (i, s) in c.stats.iter_mut().enumerate() {
                    if s.is_none() {
                        panicked.get_or_insert(i);
                        *s = Some(ThreadStats::default());
                    }
                }
            }
        }
        // A thread that ended sent its Final before: look at the channel after seeing it
        // ended; no Final then means it panicked.
        let ended: Vec<usize> = (0..threads)
            .filter(|&i| {
                c.stats[i].is_none() && handles[i].as_ref().is_some_and(|h| h.is_finished())
            })
            .collect();
        if !ended.is_empty() {
            while let Ok(msg) = from_threads.try_recv() {
                c.take(msg, sink);
            }
            for i in ended {
                if c.stats[i].is_none() {
                    panicked.get_or_insert(i);
                    c.stats[i] = Some(ThreadStats::default());
                }
            }
        }
        // Tick every boundary all threads have passed (or finished before).
        while !c.pending.is_empty()
            && (0..threads).all(|i| c.stats[i].is_some() || c.sent[i] > c.base)
        {
            let mut merged = c.pending.pop_front().expect("not empty");
            while bounds.len() <= c.base {
                let last = bounds.last().copied().unwrap_or(Duration::ZERO);
                bounds.push(schedule.after(last).unwrap_or(last));
            }
            if let Sink::Report { agg: Some(agg), .. } = sink {
                agg.add(bounds[c.base], &merged);
                agg.tick(bounds[c.base]);
            }
            merged.clear();
            c.spare.push(merged);
            c.base += 1;
        }
    }
    warnings.append(&mut c.warnings);
    let Collector { stats, tail, .. } = c;
    for h in handles.iter_mut().filter_map(Option::take) {
        if h.join().is_err() {
            panicked.get_or_insert(usize::MAX);
        }
    }
    if let Some(i) = panicked {
        bail!("engine thread {i} panicked (see its message above)");
    }
    let threads_stats: Vec<ThreadStats> =
        stats.into_iter().map(Option::unwrap_or_default).collect();
    if let Some(fatal) = threads_stats.iter().find_map(|t| t.fatal.clone()) {
        bail!("{fatal}");
    }
    let last_finish = threads_stats
        .iter()
        .map(|t| t.finished_at)
        .max()
        .unwrap_or_default();
    let (tail_at, measured) = match phase.length {
        RunLength::Duration(d) => (phase.warmup + d, d),
        RunLength::Ops(_) => (last_finish, last_finish.saturating_sub(phase.warmup)),
    };
    if let Sink::Report { agg: Some(agg), .. } = sink {
        agg.add(
            tail_at.max(bounds.last().copied().unwrap_or_default()),
            &tail,
        );
    }
    Ok(PhaseOutcome {
        threads: threads_stats,
        measured,
        warnings,
    })
}

/// Pins the calling thread to `cpu` (engine threads do it themselves with `cpus`).
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    sys::pin_to_cpu(cpu)
}

/// ns per `Instant::now()`, measured over a few thousand reads.
pub fn clock_read_ns() -> f64 {
    const READS: u32 = 20_000;
    let start = Instant::now();
    let mut last = start;
    for _ in 0..READS {
        last = std::hint::black_box(Instant::now());
    }
    last.duration_since(start).as_nanos() as f64 / f64::from(READS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(s: &Schedule, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        while let Some(next) = s.after(t) {
            out.push(next.as_millis() as u64);
            t = next;
            if out.len() == limit {
                break;
            }
        }
        out
    }

    #[test]
    fn schedule_walks_seconds_warmup_and_end() {
        let s = Schedule {
            every: Duration::from_secs(1),
            warmup: Duration::from_millis(2500),
            end: Some(Duration::from_millis(4500)),
        };
        assert_eq!(walk(&s, 100), [1000, 2000, 2500, 3000, 4000, 4500]);
        let open = Schedule {
            every: Duration::from_millis(200),
            warmup: Duration::ZERO,
            end: None,
        };
        assert_eq!(walk(&open, 4), [200, 400, 600, 800]);
        let aligned = Schedule {
            every: Duration::from_secs(1),
            warmup: Duration::from_secs(2),
            end: Some(Duration::from_secs(3)),
        };
        assert_eq!(walk(&aligned, 100), [1000, 2000, 3000]);
    }

    #[test]
    fn config_bounds_are_checked() {
        let spec = WorkloadSpec {
            mix: Mix::Get,
            keyspace: 10,
            dist: crate::workload::KeyDist::Uniform,
            value: crate::workload::ValueSize::Fixed(10),
            scan_len_max: 10,
            seed: 1,
        };
        let ok = RunConfig::new("127.0.0.1:1", ProtocolKind::Resp, spec);
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.depth = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("--depth"));
        let mut bad = ok.clone();
        bad.rate = Some(f64::NAN);
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.length = RunLength::Ops(0);
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.workload.keyspace = 0;
        assert!(bad.validate().is_err());
    }
}
