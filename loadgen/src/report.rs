//! Latency recording and every output of a run: the live line, the final table, JSON, HDR
//! interval logs and the SVG plot; also the preload's progress bar.
//!
//! Flow: each engine thread records into its own [`Recorder`] and, once per interval (a
//! second), hands it to the main thread, which calls [`Aggregator::add`] for each thread and
//! then [`Aggregator::tick`]; at the end [`Aggregator::finish`] makes the [`Report`].
//!
//! Units: latencies are recorded in **nanoseconds** into HDR histograms tracking
//! 1 ns ..= 60 s with 3 significant digits (every value within 0.1%; below 2048 ns exact).
//! Longer latencies count as 60 s. Everything reported is in µs (`*_us`, floats) or seconds
//! (`*_secs`).
//!
//! Warm-up: an interval counts toward the totals when more than half of it lies after the
//! warm-up (so timer jitter around the boundary neither drops nor adds an interval); the live
//! line marks the others "(warm-up)". The HDR log holds the counted intervals only.
//!
//! # JSON schema ([`Report::to_json`], `schema_version` 1)
//!
//! ```text
//! {
//!   "schema_version": 1,
//!   "tool": "tern-loadgen",
//!   "info": {
//!     "target": S, "protocol": S, "workload": S,
//!     "threads": N, "connections": N, "depth": N,
//!     "rate": F | null,                 // open-loop target ops/s; null = closed loop
//!     "server_cpu_ns": N | null,        // server utime+stime over the measured period
//!     "loadgen_cpu_ns": N,
//!     "loadgen_busy_fraction": F        // 0..1, busiest engine thread's CPU / wall
//!   },
//!   "warmup_secs": F,
//!   "measured_secs": F,                 // the divisor of every ops_per_sec
//!   "saturated": B,                     // loadgen_busy_fraction >= 0.9: latencies suspect
//!   "server_cpu_us_per_op": F | null,   // server_cpu_ns / (ops + errors) / 1000
//!   "loadgen_cpu_us_per_op": F,
//!   "total": STATS,                     // all operation types together
//!   "per_op": [ STATS + {"op": S}, … ], // op: get|set|update|insert|scan|read_modify_write,
//!                                       // only types that occurred, in that order
//!   "intervals": [ {                    // every interval, warm-up included, in order
//!     "end_secs": F, "duration_secs": F, "ops": N, "errors": N,
//!     "ops_per_sec": F, "p50_us": F, "p99_us": F, "warmup": B } … ]
//! }
//! STATS = {"ops": N, "ops_per_sec": F, "avg_us": F, "p50_us": F, "p90_us": F, "p99_us": F,
//!          "p999_us": F, "max_us": F, "errors": N,
//!          "percentiles": [ {"percentile": F, "us": F}, … ]}   // 0 (min) … 100 (max)
//! ```
//! N: non-negative integer, F: finite number, S: string, B: boolean. `ops` counts completed
//! operations (latencies recorded); `errors` counts failed ones, which have no latency.

#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde_json::{Value, json};

use crate::workload::OpKind;

/// Highest latency a histogram tracks; anything slower counts as this.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// HDR precision: values are kept within 10^-3 relative.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// `saturated` when the busiest engine thread is at least this busy.
pub const SATURATED_BUSY_FRACTION: f64 = 0.9;
/// Bound on the compressed interval histograms kept for `--hdr` (≈ hours of a busy mix);
/// later intervals are left out of the log, which then says so.
pub const HDR_LOG_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Bound on the per-interval summaries kept for JSON (a day of seconds).
pub const TIMELINE_INTERVALS_MAX: usize = 86_400;
/// Percentiles listed in JSON `percentiles` (0 = min, 100 = max).
pub const PERCENTILES: [f64; 18] = [
    0.0, 10.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 90.0, 95.0, 99.0, 99.9, 99.99,
    99.999, 100.0,
];

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Per-thread, per-interval latencies: one HDR histogram (ns) and one error count per
/// [`OpKind`]. All allocation happens in `new` (~1.3 MiB: six 27,648-counter histograms, so
/// keep two per thread and swap them rather than make one each interval); `record` is a few
/// ns and never allocates.
#[derive(Debug, Clone)]
pub struct Recorder {
    latency_ns: [Histogram<u64>; OpKind::COUNT],
    errors: [u64; OpKind::COUNT],
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            latency_ns: std::array::from_fn(|_| new_histogram()),
            errors: [0; OpKind::COUNT],
        }
    }

    /// A completed operation and its latency in **ns** (clamped to [`LATENCY_MAX_NS`]).
    #[inline]
    pub fn record(&mut self, kind: OpKind, latency_ns: u64) {
        self.latency_ns[kind.index()].saturating_record(latency_ns);
    }

    /// A failed operation (no latency recorded; don't also call `record` for it).
    #[inline]
    pub fn record_error(&mut self, kind: OpKind) {
        self.errors[kind.index()] += 1;
    }

    /// Adds `other`'s counts to this one's.
    pub fn merge_from(&mut self, other: &Recorder) {
        for i in 0..OpKind::COUNT {
            self.latency_ns[i]
                .add(&other.latency_ns[i])
                .expect("recorders share histogram bounds");
            self.errors[i] += other.errors[i];
        }
    }

    /// Completed operations, all kinds.
    pub fn ops(&self) -> u64 {
        self.latency_ns.iter().map(Histogram::len).sum()
    }

    /// Failed operations, all kinds.
    pub fn errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Completed operations of one kind.
    pub fn ops_of(&self, kind: OpKind) -> u64 {
        self.latency_ns[kind.index()].len()
    }

    /// Failed operations of one kind.
    pub fn errors_of(&self, kind: OpKind) -> u64 {
        self.errors[kind.index()]
    }

    /// One kind's latencies, in ns.
    pub fn histogram(&self, kind: OpKind) -> &Histogram<u64> {
        &self.latency_ns[kind.index()]
    }

    /// Forgets everything, keeping the allocations.
    pub fn clear(&mut self) {
        for h in &mut self.latency_ns {
            h.reset();
        }
        self.errors = [0; OpKind::COUNT];
    }

    /// All kinds' latencies in one histogram (reusing `into`).
    fn combine_into(&self, into: &mut Histogram<u64>) {
        into.reset();
        for h in &self.latency_ns {
            into.add(h).expect("recorders share histogram bounds");
        }
    }
}

// Recorders cross from engine threads to the main thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Recorder>();
};

/// One interval as the live line showed it.
#[derive(Debug, Clone, Copy)]
struct IntervalSummary {
    end: Duration,
    duration: Duration,
    ops: u64,
    errors: u64,
    p50_ns: u64,
    p99_ns: u64,
    warmup: bool,
}

impl IntervalSummary {
    fn ops_per_sec(&self) -> f64 {
        per_sec(self.ops, self.duration.as_secs_f64())
    }
}

/// One counted interval of one kind, for the HDR log: V2 + DEFLATE bytes.
#[derive(Debug, Clone)]
struct HdrInterval {
    start: Duration,
    duration: Duration,
    kind: OpKind,
    compressed: Vec<u8>,
}

/// Main thread: receives per-thread interval recorders, prints the live line each interval,
/// accumulates totals after warm-up.
pub struct Aggregator {
    warmup: Duration,
    quiet: bool,
    started_at: SystemTime,
    /// This interval so far (all threads' `add`s since the last `tick`).
    interval: Recorder,
    interval_start: Duration,
    /// Latest `elapsed` passed to `add`: the end of an interval `finish` has to close.
    pending_end: Duration,
    totals: Recorder,
    /// Start of the first counted interval and end of the last.
    counted_span: Option<(Duration, Duration)>,
    scratch: Histogram<u64>,
    timeline: Vec<IntervalSummary>,
    hdr_intervals: Vec<HdrInterval>,
    hdr_bytes: usize,
    hdr_truncated: bool,
    serializer: V2DeflateSerializer,
}

impl Aggregator {
    /// `warmup`: how long after the start intervals are not counted. `quiet`: no live line.
    pub fn new(warmup: Duration, quiet: bool) -> Aggregator {
        Aggregator {
            warmup,
            quiet,
            started_at: SystemTime::now(),
            interval: Recorder::new(),
            interval_start: Duration::ZERO,
            pending_end: Duration::ZERO,
            totals: Recorder::new(),
            counted_span: None,
            scratch: new_histogram(),
            timeline: Vec::new(),
            hdr_intervals: Vec::new(),
            hdr_bytes: 0,
            hdr_truncated: false,
            serializer: V2DeflateSerializer::new(),
        }
    }

    /// Called once per interval per thread (`elapsed` since the run started). Intervals
    /// that end before `warmup` are shown in the live line but not counted (precisely: `tick`
    /// counts an interval when more than half of it lies after the warm-up).
    pub fn add(&mut self, elapsed: Duration, rec: &Recorder) {
        self.interval.merge_from(rec);
        self.pending_end = self.pending_end.max(elapsed);
    }

    /// Prints the live line for the interval ending at `elapsed` (ops/s, p50, p99, errors) to
    /// stderr, and closes the interval: call it after each round of `add`s (also when quiet).
    pub fn tick(&mut self, elapsed: Duration) {
        let summary = self.close_interval(elapsed);
        if !self.quiet {
            eprintln!("{}", live_line(&summary));
        }
    }

    /// The wall time covered by the intervals counted so far.
    pub fn counted(&self) -> Duration {
        self.counted_span
            .map_or(Duration::ZERO, |(start, end)| end.saturating_sub(start))
    }

    fn close_interval(&mut self, elapsed: Duration) -> IntervalSummary {
        let end = elapsed.max(self.interval_start);
        let duration = end - self.interval_start;
        let warmup = self.interval_start + duration / 2 < self.warmup;
        self.interval.combine_into(&mut self.scratch);
        let summary = IntervalSummary {
            end,
            duration,
            ops: self.scratch.len(),
            errors: self.interval.errors(),
            p50_ns: self.scratch.value_at_quantile(0.5),
            p99_ns: self.scratch.value_at_quantile(0.99),
            warmup,
        };
        if !warmup {
            self.totals.merge_from(&self.interval);
            let first = self.counted_span.map_or(self.interval_start, |(s, _)| s);
            self.counted_span = Some((first, end));
            self.keep_hdr_interval(self.interval_start, duration);
        }
        if self.timeline.len() < TIMELINE_INTERVALS_MAX {
            self.timeline.push(summary);
        }
        self.interval.clear();
        self.interval_start = end;
        self.pending_end = self.pending_end.max(end);
        summary
    }

    fn keep_hdr_interval(&mut self, start: Duration, duration: Duration) {
        for kind in OpKind::ALL {
            let h = self.interval.histogram(kind);
            if h.is_empty() || self.hdr_truncated {
                continue;
            }
            let mut compressed = Vec::new();
            if self.serializer.serialize(h, &mut compressed).is_err()
                || self.hdr_bytes + compressed.len() > HDR_LOG_BYTES_MAX
            {
                self.hdr_truncated = true;
                continue;
            }
            self.hdr_bytes += compressed.len();
            self.hdr_intervals.push(HdrInterval {
                start,
                duration,
                kind,
                compressed,
            });
        }
    }

    /// The report. `measured` is the wall time the counted intervals cover (run end minus
    /// warm-up; [`counted`](Self::counted) is that as the intervals saw it) and divides every
    /// ops/s. An interval still open (added but not ticked) is closed first.
    pub fn finish(mut self, measured: Duration, info: RunInfo) -> Report {
        if self.interval.ops() + self.interval.errors() > 0 {
            let end = self.pending_end.max(self.interval_start);
            self.close_interval(end);
        }
        let measured_secs = measured.as_secs_f64();
        let mut per_op = Vec::new();
        for kind in OpKind::ALL {
            let (h, errors) = (self.totals.histogram(kind), self.totals.errors_of(kind));
            if h.len() + errors > 0 {
                per_op.push((kind, OpStats::from_histogram(h, errors, measured_secs)));
            }
        }
        let mut all = new_histogram();
        self.totals.combine_into(&mut all);
        let total = OpStats::from_histogram(&all, self.totals.errors(), measured_secs);
        let requests = total.ops + total.errors;
        let us_per_op = |ns: u64| {
            if requests == 0 {
                0.0
            } else {
                ns as f64 / requests as f64 / 1000.0
            }
        };
        Report {
            measured_secs,
            per_op,
            total,
            server_cpu_us_per_op: info.server_cpu_ns.map(us_per_op),
            loadgen_cpu_us_per_op: us_per_op(info.loadgen_cpu_ns),
            saturated: info.loadgen_busy_fraction >= SATURATED_BUSY_FRACTION,
            info,
            warmup: self.warmup,
            started_at: self.started_at,
            totals: self.totals,
            all_ns: all,
            timeline: self.timeline,
            hdr_intervals: self.hdr_intervals,
            hdr_truncated: self.hdr_truncated,
        }
    }
}

/// `[   12s]  1,234,567 ops/s   p50    45.1 us   p99   210.3 us   errors 0`
fn live_line(s: &IntervalSummary) -> String {
    format!(
        "[{:>6.0}s] {:>11} ops/s   p50 {:>9.1} us   p99 {:>9.1} us   errors {}{}",
        s.end.as_secs_f64(),
        group_thousands(s.ops_per_sec().round() as u64),
        ns_to_us(s.p50_ns),
        ns_to_us(s.p99_ns),
        s.errors,
        if s.warmup { "   (warm-up)" } else { "" }
    )
}

/// What the engine knows about the run, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub target: String,
    pub protocol: String,
    pub workload: String,
    pub threads: usize,
    pub connections: usize,
    pub depth: usize,
    /// Open-loop target rate (ops/s); None for closed loop.
    pub rate: Option<f64>,
    /// The server's CPU time (utime + stime) over the measured period.
    pub server_cpu_ns: Option<u64>,
    /// The load generator's CPU time over the measured period.
    pub loadgen_cpu_ns: u64,
    /// 0..1: engine threads' CPU / wall, max over threads.
    pub loadgen_busy_fraction: f64,
}

/// Throughput and latency of one operation type (or all together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpStats {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub avg_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub errors: u64,
}

impl OpStats {
    /// From a histogram of ns latencies; `secs` divides `ops`.
    pub fn from_histogram(h: &Histogram<u64>, errors: u64, secs: f64) -> OpStats {
        let q = |quantile: f64| {
            if h.is_empty() {
                0.0
            } else {
                ns_to_us(h.value_at_quantile(quantile))
            }
        };
        OpStats {
            ops: h.len(),
            ops_per_sec: per_sec(h.len(), secs),
            avg_us: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0.0 } else { ns_to_us(h.max()) },
            errors,
        }
    }

    fn to_json(self, h: &Histogram<u64>) -> serde_json::Map<String, Value> {
        let percentiles: Vec<Value> = PERCENTILES
            .iter()
            .map(|&p| {
                let us = match p {
                    _ if h.is_empty() => 0.0,
                    0.0 => ns_to_us(h.min()),
                    100.0 => ns_to_us(h.max()),
                    p => ns_to_us(h.value_at_quantile(p / 100.0)),
                };
                json!({"percentile": p, "us": us})
            })
            .collect();
        let v = json!({
            "ops": self.ops,
            "ops_per_sec": self.ops_per_sec,
            "avg_us": self.avg_us,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
            "errors": self.errors,
            "percentiles": percentiles,
        });
        match v {
            Value::Object(map) => map,
            _ => unreachable!("json! of an object literal"),
        }
    }
}

/// Everything a run measured.
pub struct Report {
    pub info: RunInfo,
    pub measured_secs: f64,
    /// Operation types that occurred, in `OpKind::ALL` order.
    pub per_op: Vec<(OpKind, OpStats)>,
    pub total: OpStats,
    pub server_cpu_us_per_op: Option<f64>,
    pub loadgen_cpu_us_per_op: f64,
    /// loadgen_busy_fraction >= 0.9: warn in table and JSON.
    pub saturated: bool,
    warmup: Duration,
    started_at: SystemTime,
    totals: Recorder,
    all_ns: Histogram<u64>,
    timeline: Vec<IntervalSummary>,
    hdr_intervals: Vec<HdrInterval>,
    hdr_truncated: bool,
}

impl Report {
    /// The measured latencies of one kind, in ns.
    pub fn histogram(&self, kind: OpKind) -> &Histogram<u64> {
        self.totals.histogram(kind)
    }

    /// All kinds' measured latencies together, in ns.
    pub fn total_histogram(&self) -> &Histogram<u64> {
        &self.all_ns
    }

    /// memtier-style table + warnings.
    pub fn print_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let i = &self.info;
        let pacing = match i.rate {
            Some(rate) => format!(
                "open loop at {} ops/s",
                group_thousands(rate.round() as u64)
            ),
            None => "closed loop".to_string(),
        };
        writeln!(
            out,
            "{} against {} ({}): {} threads, {} connections, depth {}, {}",
            i.workload, i.target, i.protocol, i.threads, i.connections, i.depth, pacing
        )?;
        writeln!(
            out,
            "measured {:.2} s after a {:.2} s warm-up",
            self.measured_secs,
            self.warmup.as_secs_f64()
        )?;
        writeln!(out)?;
        let rule = "-".repeat(108);
        writeln!(
            out,
            "{:<8} {:>14} {:>11} {:>11} {:>11} {:>11} {:>11} {:>12} {:>12}",
            "Type",
            "Ops/sec",
            "Avg(us)",
            "p50(us)",
            "p90(us)",
            "p99(us)",
            "p99.9(us)",
            "Max(us)",
            "Errors"
        )?;
        writeln!(out, "{rule}")?;
        for (kind, stats) in &self.per_op {
            table_row(out, kind.label(), stats)?;
        }
        writeln!(out, "{rule}")?;
        table_row(out, "Totals", &self.total)?;
        writeln!(out)?;
        match self.server_cpu_us_per_op {
            Some(us) => writeln!(out, "server CPU:  {us:.2} us/op")?,
            None => writeln!(out, "server CPU:  not measured (no --server-pid)")?,
        }
        writeln!(
            out,
            "loadgen CPU: {:.2} us/op, busiest engine thread {:.0}% busy",
            self.loadgen_cpu_us_per_op,
            i.loadgen_busy_fraction * 100.0
        )?;
        if self.saturated {
            writeln!(
                out,
                "WARNING: the load generator was saturated (busiest engine thread {:.0}% busy): \
                 latencies include client-side queueing and throughput is the client's limit; \
                 add threads or lower the load.",
                i.loadgen_busy_fraction * 100.0
            )?;
        }
        if self.total.errors > 0 {
            writeln!(
                out,
                "WARNING: {} operations failed ({:.4}% of all); they are not in the latencies.",
                self.total.errors,
                100.0 * self.total.errors as f64 / (self.total.ops + self.total.errors) as f64
            )?;
        }
        if self.total.ops + self.total.errors == 0 {
            writeln!(
                out,
                "WARNING: no operation completed after the warm-up; nothing was measured."
            )?;
        }
        Ok(())
    }

    /// The JSON document described in the module doc; stable keys, snake_case.
    pub fn to_json(&self) -> Value {
        let i = &self.info;
        let per_op: Vec<Value> = self
            .per_op
            .iter()
            .map(|(kind, stats)| {
                let mut map = serde_json::Map::new();
                map.insert("op".into(), Value::from(kind.name()));
                map.extend(stats.to_json(self.histogram(*kind)));
                Value::Object(map)
            })
            .collect();
        let intervals: Vec<Value> = self
            .timeline
            .iter()
            .map(|s| {
                json!({
                    "end_secs": s.end.as_secs_f64(),
                    "duration_secs": s.duration.as_secs_f64(),
                    "ops": s.ops,
                    "errors": s.errors,
                    "ops_per_sec": s.ops_per_sec(),
                    "p50_us": ns_to_us(s.p50_ns),
                    "p99_us": ns_to_us(s.p99_ns),
                    "warmup": s.warmup,
                })
            })
            .collect();
        json!({
            "schema_version": 1,
            "tool": "tern-loadgen",
            "info": {
                "target": i.target,
                "protocol": i.protocol,
                "workload": i.workload,
                "threads": i.threads,
                "connections": i.connections,
                "depth": i.depth,
                "rate": i.rate.filter(|r| r.is_finite()),
                "server_cpu_ns": i.server_cpu_ns,
                "loadgen_cpu_ns": i.loadgen_cpu_ns,
                "loadgen_busy_fraction": finite(i.loadgen_busy_fraction),
            },
            "warmup_secs": self.warmup.as_secs_f64(),
            "measured_secs": finite(self.measured_secs),
            "saturated": self.saturated,
            "server_cpu_us_per_op": self.server_cpu_us_per_op.map(finite),
            "loadgen_cpu_us_per_op": finite(self.loadgen_cpu_us_per_op),
            "total": Value::Object(self.total.to_json(&self.all_ns)),
            "per_op": per_op,
            "intervals": intervals,
        })
    }

    /// An HdrHistogram interval log (the Java `HistogramLogWriter` format, V2 + DEFLATE
    /// histograms, readable by HistogramLogAnalyzer and hdrhistogram's `IntervalLogIterator`):
    /// one line per counted interval per operation type, tagged with the type's name
    /// ("Tag=get,…"). Values are ns; the max column is in ms, as the Java tools expect.
    pub fn write_hdr_log(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut deserializer = Deserializer::new();
        {
            let mut builder = IntervalLogWriterBuilder::new();
            builder
                .add_comment("[Histogram log format version 1.3]")
                .add_comment(&format!(
                    "tern-loadgen {} against {} ({}): latencies in ns, warm-up ({:.3} s) excluded",
                    self.info.workload,
                    self.info.target,
                    self.info.protocol,
                    self.warmup.as_secs_f64()
                ))
                .with_start_time(self.started_at)
                .with_base_time(self.started_at)
                .with_max_value_divisor(1e6);
            if self.hdr_truncated {
                builder.add_comment(&format!(
                    "truncated: intervals beyond {HDR_LOG_BYTES_MAX} bytes of histograms were \
                     left out"
                ));
            }
            let mut writer = builder.begin_log_with(&mut text, &mut serializer)?;
            for interval in &self.hdr_intervals {
                let h: Histogram<u64> = deserializer
                    .deserialize(&mut interval.compressed.as_slice())
                    .context("decoding a kept interval histogram")?;
                writer
                    .write_histogram(
                        &h,
                        interval.start,
                        interval.duration,
                        Tag::new(interval.kind.name()),
                    )
                    .map_err(|e| anyhow::anyhow!("writing an HDR log line: {e}"))?;
            }
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// plot.rs: latency (log y) vs percentile (log "nines" x axis) per op type,
    /// self-contained SVG.
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let title = format!(
            "{} against {} ({}), {:.0} s",
            self.info.workload, self.info.target, self.info.protocol, self.measured_secs
        );
        let series: Vec<(&str, &Histogram<u64>)> = self
            .per_op
            .iter()
            .map(|(kind, _)| (kind.label(), self.histogram(*kind)))
            .collect();
        let svg = crate::plot::latency_percentile_svg(&title, &series);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
    }
}

fn table_row(out: &mut dyn Write, label: &str, s: &OpStats) -> io::Result<()> {
    writeln!(
        out,
        "{:<8} {:>14.2} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>12.2} {:>12}",
        label, s.ops_per_sec, s.avg_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us, s.errors
    )
}

fn ns_to_us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// JSON has no NaN or infinity (serde_json would write null); report 0 instead.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// 1234567 → "1,234,567".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The preload's progress bar: one line on stderr, redrawn at most 5×/s on a terminal
/// (every 5 s, one line each, when stderr is not a terminal).
pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
    redraw_every: Duration,
    terminal: bool,
}

impl Progress {
    /// A bar for `total` operations.
    pub fn new(total: u64) -> Progress {
        let terminal = io::stderr().is_terminal();
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            last_draw: None,
            redraw_every: if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            },
            terminal,
        }
    }

    /// `n` more operations done; redraws if the last draw is old enough.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if self
            .last_draw
            .is_none_or(|t| now.duration_since(t) >= self.redraw_every)
        {
            self.last_draw = Some(now);
            self.draw(now, false);
        }
    }

    /// Operations done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Draws the final state and ends the line.
    pub fn finish(self) {
        self.draw(Instant::now(), true);
    }

    fn draw(&self, now: Instant, last: bool) {
        let line = progress_line(self.done, self.total, now.duration_since(self.started));
        let mut err = io::stderr().lock();
        // A progress bar that cannot be drawn is not worth failing the run for.
        let _ = if self.terminal {
            write!(err, "\r{line}\x1b[K{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// `preload [##########..........]  50.0%  500,000/1,000,000  250,000 ops/s  ETA 2s`
fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    const BAR: usize = 30;
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (fraction * BAR as f64) as usize;
    let rate = per_sec(done, elapsed.as_secs_f64());
    let eta = if rate > 0.0 && done < total {
        format!("  ETA {:.0}s", (total - done) as f64 / rate)
    } else {
        String::new()
    };
    format!(
        "preload [{}{}] {:>5.1}%  {}/{}  {} ops/s{}",
        "#".repeat(filled),
        ".".repeat(BAR - filled),
        fraction * 100.0,
        group_thousands(done),
        group_thousands(total),
        group_thousands(rate.round() as u64),
        eta
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn progress_line_shows_fraction_and_eta() {
        let line = progress_line(500, 1000, Duration::from_secs(1));
        assert!(line.contains(" 50.0%"), "{line}");
        assert!(line.contains("500/1,000"), "{line}");
        assert!(line.contains("ETA 1s"), "{line}");
        assert!(line.contains(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))));
        let done = progress_line(1000, 1000, Duration::from_secs(2));
        assert!(done.contains("100.0%") && !done.contains("ETA"), "{done}");
        assert!(progress_line(0, 0, Duration::ZERO).contains("100.0%"));
    }

    #[test]
    fn live_line_format() {
        let s = IntervalSummary {
            end: Duration::from_secs(3),
            duration: Duration::from_secs(1),
            ops: 1_234_567,
            errors: 2,
            p50_ns: 45_100,
            p99_ns: 210_000,
            warmup: true,
        };
        let line = live_line(&s);
        assert!(line.contains("1,234,567 ops/s"), "{line}");
        assert!(line.contains("p50      45.1 us"), "{line}");
        assert!(line.contains("p99     210.0 us"), "{line}");
        assert!(line.contains("errors 2"), "{line}");
        assert!(line.ends_with("(warm-up)"), "{line}");
    }

    #[test]
    fn latencies_beyond_range_saturate() {
        let mut r = Recorder::new();
        r.record(OpKind::Get, u64::MAX);
        r.record(OpKind::Get, 0);
        assert_eq!(r.ops(), 2);
        assert!(r.histogram(OpKind::Get).max() >= LATENCY_MAX_NS);
    }
}
