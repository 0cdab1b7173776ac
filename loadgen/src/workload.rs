//! Workloads: which operation comes next, on which key, with what value size.
//!
//! INTERFACE (owned by the workload/report helper; the engine depends on these names).
//!
//! A [`WorkloadSpec`] (parsed from the command line) becomes one [`Workload`] per engine
//! thread. `Workload::next` is O(1) and allocation-free: one or two random draws for the
//! operation type and key, a `powf` for zipfian keys.
//!
//! Mixes (YCSB's core workloads, with their default proportions):
//!
//! | mix      | operations                           | keys                                   |
//! |----------|--------------------------------------|----------------------------------------|
//! | get      | 100% Get                             | `dist`                                 |
//! | set      | 100% Set                             | `dist`                                 |
//! | mixed:F  | F Get, 1−F Set                       | `dist`                                 |
//! | ycsb-a   | 50% Get, 50% Update                  | `dist` (YCSB: zipfian)                 |
//! | ycsb-b   | 95% Get, 5% Update                   | `dist` (YCSB: zipfian)                 |
//! | ycsb-c   | 100% Get                             | `dist` (YCSB: zipfian)                 |
//! | ycsb-d   | 95% Get, 5% Insert                   | `dist` (YCSB: latest)                  |
//! | ycsb-e   | 95% Scan, 5% Insert                  | `dist` for the scan's start key        |
//! | ycsb-f   | 50% Get, 50% ReadModifyWrite         | `dist` (YCSB: zipfian)                 |
//! | query    | 100% Scan of exactly `scan_len_max` items (no writes: a read-only ranged load, e.g. for tern's query cache) | `dist` for the start key |
//! | load     | Set on every key once, in order      | this thread's slice of 0..keyspace     |
//!
//! The spec's `dist` is honoured for every mix; [`Mix::default_dist`] is YCSB's choice, for a
//! command line to use when no distribution is given.
//!
//! Keys: reads, updates, read-modify-writes and scan starts draw from 0..keyspace (the
//! preloaded keys). Inserts (D, E) create new keys past the preloaded ones, thread `t` of `T`
//! writing `keyspace + t`, `keyspace + t + T`, `keyspace + t + 2T`, …, so threads never
//! collide. `latest` draws in recency order over the preloaded keys followed by this thread's
//! inserts (YCSB's SkewedLatestGenerator: newest minus a zipfian offset), so its reads favour
//! what this thread inserted last. There is no acknowledgement feedback: with pipelining, a
//! read of the newest insert may reach the server before that insert does (a miss).
//!
//! Scans (E): `key` is the start key and `scan_len` is uniform in 1..=scan_len_max. The data
//! model of E is ranged ([`Mix::uses_ranges`]): key k lives in partition
//! k / [`RANGE_PARTITION_KEYS`] at position k % [`RANGE_PARTITION_KEYS`], and a scan reads up to
//! `scan_len` items of the start key's partition from that position on.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use crate::dist::{Hotspot, Rng, Scrambler, Zipfian, fraction_threshold, splitmix64};

/// Operation types, reported separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Read one key (GET / GetItem).
    Get,
    /// Write one key (SET / PutItem); also the preload.
    Set,
    /// YCSB update: overwrite an existing key (SET / PutItem).
    Update,
    /// YCSB insert: write a new key (D, E).
    Insert,
    /// YCSB short range scan (E): Query on tern, ZRANGEBYSCORE on Redis.
    Scan,
    /// YCSB read-modify-write (F): a read, then a write of the same key.
    ReadModifyWrite,
}

/// One operation to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    /// Key number; rendered by `format_key`.
    pub key: u64,
    /// Bytes of value to write (Set, Update, Insert, ReadModifyWrite).
    pub value_len: u32,
    /// Items to read (Scan).
    pub scan_len: u32,
}

impl OpKind {
    /// Number of kinds: the length of per-kind arrays.
    pub const COUNT: usize = 6;
    /// Every kind, in report order; `ALL[k.index()] == k`.
    pub const ALL: [OpKind; OpKind::COUNT] = [
        OpKind::Get,
        OpKind::Set,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
    ];

    /// Dense index in 0..COUNT, for per-kind arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name, as used in JSON and HDR log tags.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Set => "set",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "read_modify_write",
        }
    }

    /// Short upper-case label for tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            OpKind::Get => "GET",
            OpKind::Set => "SET",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "RMW",
        }
    }
}

/// The ranged data model of YCSB E: key k lives in partition k / RANGE_PARTITION_KEYS at
/// position k % RANGE_PARTITION_KEYS.
pub const RANGE_PARTITION_KEYS: u64 = 64;

/// Digits after "user" in a rendered key (YCSB's key width); larger key numbers get more.
pub const KEY_DIGITS: usize = 12;

/// Largest value size a spec may ask for (a sanity bound; tern's item limit is 400 KiB).
pub const VALUE_SIZE_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// Largest `scan_len_max` a spec may ask for.
pub const SCAN_LEN_MAX: u32 = 10_000;

/// YCSB's default scan length bound (`maxscanlength`).
pub const DEFAULT_SCAN_LEN_MAX: u32 = 100;

/// YCSB's default zipfian exponent (`zipfianconstant`).
pub const DEFAULT_ZIPFIAN_THETA: f64 = 0.99;

/// YCSB's default hotspot: 20% of the keys get 80% of the operations.
pub const DEFAULT_HOT_FRACTION: f64 = 0.2;
/// See [`DEFAULT_HOT_FRACTION`].
pub const DEFAULT_HOT_OP_FRACTION: f64 = 0.8;

/// A workload spec the user got wrong; each message says what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error(
        "unknown workload {0:?}: expected get, set, mixed:<fraction of GETs> (e.g. mixed:0.9), \
         ycsb-a … ycsb-f, or load"
    )]
    UnknownMix(String),
    #[error("bad GET fraction in {0:?}: expected mixed:F with 0 <= F <= 1, e.g. mixed:0.9")]
    BadGetFraction(String),
    #[error(
        "unknown key distribution {0:?}: expected uniform, zipfian[:θ], latest[:θ] or \
         hotspot[:hot_fraction:hot_op_fraction]"
    )]
    UnknownDist(String),
    #[error("bad θ in {0:?}: expected 0 < θ < 1, e.g. zipfian:0.99 (YCSB's default)")]
    BadTheta(String),
    #[error(
        "bad hotspot {0:?}: expected hotspot:H:O with 0 < H <= 1 the fraction of keys that are \
         hot and 0 <= O <= 1 the fraction of operations that go to them, e.g. hotspot:0.2:0.8"
    )]
    BadHotspot(String),
    #[error(
        "bad value size {0:?}: expected a byte count (\"100\") or a range (\"64-1024\") with \
         min <= max <= {VALUE_SIZE_MAX_BYTES}"
    )]
    BadValueSize(String),
    #[error("the keyspace must hold at least one key")]
    EmptyKeyspace,
    #[error("scan length bound {0} is out of range: expected 1..={SCAN_LEN_MAX}")]
    BadScanLen(u32),
}

/// Which operations a workload issues, in what proportions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mix {
    Get,
    Set,
    /// `get_fraction` of the operations are Get, the rest Set.
    Ratio {
        get_fraction: f64,
    },
    YcsbA,
    YcsbB,
    YcsbC,
    YcsbD,
    YcsbE,
    YcsbF,
    /// 100% Scan of exactly `scan_len_max` items over the ranged model.
    Query,
    /// The preload: Set on each key of 0..keyspace once.
    Load,
}

impl Mix {
    /// The name that `from_str` parses back to this mix.
    pub fn name(&self) -> String {
        match self {
            Mix::Get => "get".into(),
            Mix::Set => "set".into(),
            Mix::Ratio { get_fraction } => format!("mixed:{get_fraction}"),
            Mix::YcsbA => "ycsb-a".into(),
            Mix::YcsbB => "ycsb-b".into(),
            Mix::YcsbC => "ycsb-c".into(),
            Mix::YcsbD => "ycsb-d".into(),
            Mix::YcsbE => "ycsb-e".into(),
            Mix::YcsbF => "ycsb-f".into(),
            Mix::Query => "query".into(),
            Mix::Load => "load".into(),
        }
    }

    /// True when the data must be laid out ranged (partition + position, see
    /// [`RANGE_PARTITION_KEYS`]): YCSB E, whose scans read consecutive keys.
    pub fn uses_ranges(&self) -> bool {
        matches!(self, Mix::YcsbE | Mix::Query)
    }

    /// YCSB's request distribution for this mix: latest for D, zipfian(0.99) otherwise.
    pub fn default_dist(&self) -> KeyDist {
        match self {
            Mix::YcsbD => KeyDist::Latest {
                theta: DEFAULT_ZIPFIAN_THETA,
            },
            _ => KeyDist::Zipfian {
                theta: DEFAULT_ZIPFIAN_THETA,
            },
        }
    }

    /// The two operation kinds and the probability of the first.
    fn proportions(&self) -> (OpKind, OpKind, f64) {
        match *self {
            Mix::Get | Mix::YcsbC => (OpKind::Get, OpKind::Get, 1.0),
            Mix::Set | Mix::Load => (OpKind::Set, OpKind::Set, 1.0),
            Mix::Ratio { get_fraction } => (OpKind::Get, OpKind::Set, get_fraction),
            Mix::YcsbA => (OpKind::Get, OpKind::Update, 0.5),
            Mix::YcsbB => (OpKind::Get, OpKind::Update, 0.95),
            Mix::YcsbD => (OpKind::Get, OpKind::Insert, 0.95),
            Mix::YcsbE => (OpKind::Scan, OpKind::Insert, 0.95),
            Mix::YcsbF => (OpKind::Get, OpKind::ReadModifyWrite, 0.5),
            Mix::Query => (OpKind::Scan, OpKind::Scan, 1.0),
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Mix {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Mix, SpecError> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "get" => Mix::Get,
            "set" => Mix::Set,
            "ycsb-a" => Mix::YcsbA,
            "ycsb-b" => Mix::YcsbB,
            "ycsb-c" => Mix::YcsbC,
            "ycsb-d" => Mix::YcsbD,
            "ycsb-e" => Mix::YcsbE,
            "ycsb-f" => Mix::YcsbF,
            "query" => Mix::Query,
            "load" => Mix::Load,
            other => match other.strip_prefix("mixed:") {
                Some(fraction) => {
                    let get_fraction = parse_fraction(fraction)
                        .ok_or_else(|| SpecError::BadGetFraction(s.to_string()))?;
                    Mix::Ratio { get_fraction }
                }
                None => return Err(SpecError::UnknownMix(s.to_string())),
            },
        })
    }
}

/// How keys are drawn from the key space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    Uniform,
    /// YCSB's scrambled zipfian: popularity follows rank^-θ, ranks spread over the key space.
    Zipfian {
        theta: f64,
    },
    /// YCSB's skewed latest: the newest key minus a zipfian(θ) offset.
    Latest {
        theta: f64,
    },
    /// `hot_op_fraction` of the operations go to the first `hot_fraction` of the keys.
    Hotspot {
        hot_fraction: f64,
        hot_op_fraction: f64,
    },
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform => write!(f, "uniform"),
            KeyDist::Zipfian { theta } => write!(f, "zipfian:{theta}"),
            KeyDist::Latest { theta } => write!(f, "latest:{theta}"),
            KeyDist::Hotspot {
                hot_fraction,
                hot_op_fraction,
            } => write!(f, "hotspot:{hot_fraction}:{hot_op_fraction}"),
        }
    }
}

impl FromStr for KeyDist {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<KeyDist, SpecError> {
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let theta = |args: &[&str]| -> Result<f64, SpecError> {
            match args {
                [] => Ok(DEFAULT_ZIPFIAN_THETA),
                [t] => t
                    .parse::<f64>()
                    .ok()
                    .filter(|t| *t > 0.0 && *t < 1.0)
                    .ok_or_else(|| SpecError::BadTheta(s.to_string())),
                _ => Err(SpecError::BadTheta(s.to_string())),
            }
        };
        match name {
            "uniform" if args.is_empty() => Ok(KeyDist::Uniform),
            "zipfian" => Ok(KeyDist::Zipfian {
                theta: theta(&args)?,
            }),
            "latest" => Ok(KeyDist::Latest {
                theta: theta(&args)?,
            }),
            "hotspot" => {
                let bad = || SpecError::BadHotspot(s.to_string());
                let (hot_fraction, hot_op_fraction) = match args[..] {
                    [] => (DEFAULT_HOT_FRACTION, DEFAULT_HOT_OP_FRACTION),
                    [h, o] => (
                        parse_fraction(h).filter(|h| *h > 0.0).ok_or_else(bad)?,
                        parse_fraction(o).ok_or_else(bad)?,
                    ),
                    _ => return Err(bad()),
                };
                Ok(KeyDist::Hotspot {
                    hot_fraction,
                    hot_op_fraction,
                })
            }
            _ => Err(SpecError::UnknownDist(s.to_string())),
        }
    }
}

/// Value sizes for writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSize {
    Fixed(u32),
    /// Uniform in min..=max.
    Range {
        min: u32,
        max: u32,
    },
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSize::Fixed(n) => write!(f, "{n}"),
            ValueSize::Range { min, max } => write!(f, "{min}-{max}"),
        }
    }
}

impl FromStr for ValueSize {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<ValueSize, SpecError> {
        let bad = || SpecError::BadValueSize(s.to_string());
        let bytes = |t: &str| {
            t.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= VALUE_SIZE_MAX_BYTES)
        };
        match s.trim().split_once('-') {
            None => Ok(ValueSize::Fixed(bytes(s).ok_or_else(bad)?)),
            Some((lo, hi)) => {
                let (min, max) = (bytes(lo).ok_or_else(bad)?, bytes(hi).ok_or_else(bad)?);
                if min > max {
                    return Err(bad());
                }
                Ok(ValueSize::Range { min, max })
            }
        }
    }
}

fn parse_fraction(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
}

/// Everything that defines a workload; shared by all engine threads.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    pub mix: Mix,
    /// Keys 0..keyspace exist (after the preload); reads and updates draw from them.
    pub keyspace: u64,
    pub dist: KeyDist,
    pub value: ValueSize,
    /// Scan lengths are uniform in 1..=scan_len_max (YCSB: 100); exactly it for `query`.
    pub scan_len_max: u32,
    /// Thread `t` draws from a generator seeded by (seed, t): a run is reproducible.
    pub seed: u64,
}

impl WorkloadSpec {
    /// Checks what `FromStr` cannot see (the fields may also be built by hand).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.keyspace == 0 {
            return Err(SpecError::EmptyKeyspace);
        }
        if self.scan_len_max == 0 || self.scan_len_max > SCAN_LEN_MAX {
            return Err(SpecError::BadScanLen(self.scan_len_max));
        }
        if let Mix::Ratio { get_fraction } = self.mix
            && !(0.0..=1.0).contains(&get_fraction)
        {
            return Err(SpecError::BadGetFraction(self.mix.name()));
        }
        match self.dist {
            KeyDist::Uniform => {}
            KeyDist::Zipfian { theta } | KeyDist::Latest { theta } => {
                if !(theta > 0.0 && theta < 1.0) {
                    return Err(SpecError::BadTheta(self.dist.to_string()));
                }
            }
            KeyDist::Hotspot {
                hot_fraction,
                hot_op_fraction,
            } => {
                let hot_ok = hot_fraction > 0.0 && hot_fraction <= 1.0;
                if !hot_ok || !(0.0..=1.0).contains(&hot_op_fraction) {
                    return Err(SpecError::BadHotspot(self.dist.to_string()));
                }
            }
        }
        match self.value {
            ValueSize::Fixed(n) if n <= VALUE_SIZE_MAX_BYTES => {}
            ValueSize::Range { min, max } if min <= max && max <= VALUE_SIZE_MAX_BYTES => {}
            _ => return Err(SpecError::BadValueSize(self.value.to_string())),
        }
        Ok(())
    }
}

/// Draws key numbers; for `Latest`, a recency index (see `Workload::recency_key`).
#[derive(Debug, Clone)]
enum KeyChooser {
    Uniform {
        keys: u64,
    },
    Zipfian {
        zipf: Zipfian,
        scrambler: Scrambler,
    },
    /// `zipf.items()` is the number of keys in recency order (preloaded + own inserts).
    Latest {
        zipf: Zipfian,
    },
    Hotspot(Hotspot),
}

impl KeyChooser {
    fn new(dist: KeyDist, keys: u64) -> KeyChooser {
        match dist {
            KeyDist::Uniform => KeyChooser::Uniform { keys },
            KeyDist::Zipfian { theta } => KeyChooser::Zipfian {
                zipf: Zipfian::new(keys, theta),
                scrambler: Scrambler::new(keys),
            },
            KeyDist::Latest { theta } => KeyChooser::Latest {
                zipf: Zipfian::new(keys, theta),
            },
            KeyDist::Hotspot {
                hot_fraction,
                hot_op_fraction,
            } => KeyChooser::Hotspot(Hotspot::new(keys, hot_fraction, hot_op_fraction)),
        }
    }

    #[inline]
    fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.below(*keys),
            KeyChooser::Zipfian { zipf, scrambler } => scrambler.scramble(zipf.sample(rng)),
            KeyChooser::Latest { zipf } => zipf.items() - 1 - zipf.sample(rng),
            KeyChooser::Hotspot(h) => h.sample(rng),
        }
    }

    fn on_insert(&mut self) {
        if let KeyChooser::Latest { zipf } = self {
            zipf.grow();
        }
    }
}

/// One engine thread's operation stream.
#[derive(Debug, Clone)]
pub struct Workload {
    rng: Rng,
    first_kind: OpKind,
    second_kind: OpKind,
    /// `rng.chance(first_threshold)` picks `first_kind`.
    first_threshold: u64,
    chooser: KeyChooser,
    keyspace: u64,
    value_min: u32,
    /// Values are value_min + below(value_span) bytes; span 1 means fixed.
    value_span: u64,
    scan_len_max: u32,
    /// Mix::Query: every scan reads exactly `scan_len_max` items.
    fixed_scan_len: bool,
    thread: u64,
    threads: u64,
    inserted: u64,
    /// Mix::Load only: this thread's slice of 0..keyspace and how far it got.
    load: Option<LoadSlice>,
}

// Each engine thread owns its Workload; it is built on the main thread and moved there.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Workload>();
};

#[derive(Debug, Clone, Copy)]
struct LoadSlice {
    next: u64,
    end: u64,
    total: u64,
}

impl Workload {
    /// Thread `thread` of `threads`. For Mix::Load, yields Set on every key of this thread's
    /// disjoint contiguous slice of 0..keyspace exactly once, in order, then None.
    ///
    /// Panics if `spec` fails [`WorkloadSpec::validate`] or `thread >= threads`: callers
    /// validate user input first.
    pub fn new(spec: &WorkloadSpec, thread: usize, threads: usize) -> Workload {
        if let Err(e) = spec.validate() {
            panic!("invalid workload spec: {e}");
        }
        assert!(
            thread < threads,
            "thread {thread} of {threads}: thread index out of range"
        );
        let (first_kind, second_kind, first_fraction) = spec.mix.proportions();
        let (value_min, value_span) = match spec.value {
            ValueSize::Fixed(n) => (n, 1),
            ValueSize::Range { min, max } => (min, u64::from(max - min) + 1),
        };
        let load = (spec.mix == Mix::Load).then(|| {
            let slice_bound =
                |t: usize| (u128::from(spec.keyspace) * t as u128 / threads as u128) as u64;
            let (start, end) = (slice_bound(thread), slice_bound(thread + 1));
            LoadSlice {
                next: start,
                end,
                total: end - start,
            }
        });
        let mut seed = spec.seed ^ (thread as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
        Workload {
            rng: Rng::new(splitmix64(&mut seed)),
            first_kind,
            second_kind,
            first_threshold: fraction_threshold(first_fraction),
            chooser: KeyChooser::new(spec.dist, spec.keyspace),
            keyspace: spec.keyspace,
            value_min,
            value_span,
            scan_len_max: spec.scan_len_max,
            fixed_scan_len: spec.mix == Mix::Query,
            thread: thread as u64,
            threads: threads as u64,
            inserted: 0,
            load,
        }
    }

    /// The next operation, O(1), no allocation; None only when a finite workload (Load) is
    /// done. (Also available through `Iterator`; the inherent method is the engine's API.)
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Option<Op> {
        if let Some(load) = &mut self.load {
            if load.next == load.end {
                return None;
            }
            let key = load.next;
            load.next += 1;
            let value_len = self.value_len();
            return Some(Op {
                kind: OpKind::Set,
                key,
                value_len,
                scan_len: 0,
            });
        }
        let kind = if self.rng.chance(self.first_threshold) {
            self.first_kind
        } else {
            self.second_kind
        };
        let op = match kind {
            OpKind::Insert => {
                let key = self.keyspace + self.thread + self.inserted * self.threads;
                self.inserted += 1;
                self.chooser.on_insert();
                Op {
                    kind,
                    key,
                    value_len: self.value_len(),
                    scan_len: 0,
                }
            }
            OpKind::Get => Op {
                kind,
                key: self.next_key(),
                value_len: 0,
                scan_len: 0,
            },
            OpKind::Scan => {
                let key = self.next_key();
                let scan_len = if self.fixed_scan_len {
                    self.scan_len_max
                } else {
                    1 + self.rng.below(u64::from(self.scan_len_max)) as u32
                };
                Op {
                    kind,
                    key,
                    value_len: 0,
                    scan_len,
                }
            }
            OpKind::Set | OpKind::Update | OpKind::ReadModifyWrite => Op {
                kind,
                key: self.next_key(),
                value_len: self.value_len(),
                scan_len: 0,
            },
        };
        Some(op)
    }

    /// Total ops this (finite) workload will yield, for a progress bar; None if unbounded.
    pub fn total(&self) -> Option<u64> {
        self.load.map(|l| l.total)
    }

    /// Keys this thread has inserted so far (D, E).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    #[inline]
    fn next_key(&mut self) -> u64 {
        let index = self.chooser.sample(&mut self.rng);
        self.recency_key(index)
    }

    /// Recency index → key: the preloaded keys in order, then this thread's inserts.
    #[inline]
    fn recency_key(&self, index: u64) -> u64 {
        if index < self.keyspace {
            index
        } else {
            self.keyspace + self.thread + (index - self.keyspace) * self.threads
        }
    }

    #[inline]
    fn value_len(&mut self) -> u32 {
        if self.value_span == 1 {
            self.value_min
        } else {
            self.value_min + self.rng.below(self.value_span) as u32
        }
    }
}

impl Iterator for Workload {
    type Item = Op;

    #[inline]
    fn next(&mut self) -> Option<Op> {
        Workload::next(self)
    }
}

/// Appends the key's bytes: "user" + 12 zero-padded digits of a stable hash-free rendering
/// of `key` (e.g. "user000000000042"). Keys of 10^12 and above get as many digits as they
/// need.
pub fn format_key(key: u64, out: &mut Vec<u8>) {
    const U64_DIGITS: usize = 20;
    let mut digits = [b'0'; U64_DIGITS];
    let mut i = U64_DIGITS;
    let mut rest = key;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(b"user");
    out.extend_from_slice(&digits[i.min(U64_DIGITS - KEY_DIGITS)..]);
}

/// Appends `len` deterministic value bytes for `key` (cheap: e.g. a repeated pattern).
///
/// The pattern is 32 printable bytes derived from the key, repeated: values differ per key
/// (a read can be checked against `fill_value` of its key) and cost a few `memcpy`s.
pub fn fill_value(key: u64, len: u32, out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut block = [0u8; 32];
    let mut state = key;
    for chunk in block.chunks_mut(8) {
        let bits = splitmix64(&mut state);
        for (j, b) in chunk.iter_mut().enumerate() {
            *b = ALPHABET[((bits >> (6 * j)) & 63) as usize];
        }
    }
    let len = len as usize;
    out.reserve(len);
    let mut left = len;
    while left >= block.len() {
        out.extend_from_slice(&block);
        left -= block.len();
    }
    out.extend_from_slice(&block[..left]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_mix_scans_exactly_scan_len_items_and_never_writes() {
        let spec = WorkloadSpec {
            mix: "query".parse().unwrap(),
            keyspace: 10_000,
            dist: KeyDist::Uniform,
            value: ValueSize::Fixed(100),
            scan_len_max: 100,
            seed: 7,
        };
        assert!(spec.mix.uses_ranges());
        assert_eq!(spec.mix.name().parse::<Mix>().unwrap(), spec.mix);
        let mut w = Workload::new(&spec, 0, 1);
        for _ in 0..1000 {
            let op = w.next().unwrap();
            assert_eq!((op.kind, op.scan_len), (OpKind::Scan, 100));
            assert!(op.key < 10_000);
        }
    }

    #[test]
    fn op_kind_index_matches_all() {
        for (i, k) in OpKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn format_key_pads_and_extends() {
        let mut out = Vec::new();
        format_key(42, &mut out);
        assert_eq!(out, b"user000000000042");
        out.clear();
        format_key(0, &mut out);
        assert_eq!(out, b"user000000000000");
        out.clear();
        format_key(999_999_999_999, &mut out);
        assert_eq!(out, b"user999999999999");
        out.clear();
        format_key(1_000_000_000_000, &mut out);
        assert_eq!(out, b"user1000000000000");
        out.clear();
        format_key(u64::MAX, &mut out);
        assert_eq!(out, format!("user{}", u64::MAX).as_bytes());
    }

    #[test]
    fn fill_value_is_deterministic_sized_and_key_dependent() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        fill_value(7, 100, &mut a);
        fill_value(7, 100, &mut b);
        fill_value(8, 100, &mut c);
        assert_eq!(a.len(), 100);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(u8::is_ascii_graphic));
        let mut empty = Vec::new();
        fill_value(1, 0, &mut empty);
        assert!(empty.is_empty());
    }
}
