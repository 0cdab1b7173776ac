//! Hit-ratio simulator: one Zipfian key trace, read-through (miss → fill) into S3-FIFO and
//! into LRU under the same byte budget; prints each policy's hit ratio and ns per op.
//!
//! ```text
//! cargo run --release -p tern-cache --example hit_ratio -- \
//!     --keys 1000000 --ops 10000000 --zipf 0.99 --cache-fraction 0.1 --value-bytes 1024
//! ```
//!
//! Options (defaults in brackets): `--keys` [100000], `--ops` [2000000], `--zipf` θ [0.99],
//! `--cache-fraction` of the items the budget holds [0.1], `--value-bytes` charged per item
//! [1024], `--seed` [42], and optionally `--scan-every N --scan-len L`: after every N reads,
//! read L never-seen keys once each (a one-time scan).
//!
//! Keys follow YCSB's `ZipfianGenerator` (Gray et al., "Quickly generating billion-record
//! synthetic databases", SIGMOD'94), *unscrambled*: rank 0 is the most popular key. Hit
//! ratios do not depend on how ranks are labelled, and unscrambled ranks keep the trace
//! exact (YCSB's scrambling hashes ranks modulo the key count, which merges some ranks).

use std::time::Instant;

use tern_cache::{CacheConfig, Lookup, Policy, ShardCache};

type Cache = ShardCache<u64, ()>;

struct Args {
    keys: u64,
    ops: u64,
    zipf: f64,
    cache_fraction: f64,
    value_bytes: usize,
    seed: u64,
    scan_every: u64,
    scan_len: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        keys: 100_000,
        ops: 2_000_000,
        zipf: 0.99,
        cache_fraction: 0.1,
        value_bytes: 1024,
        seed: 42,
        scan_every: 0,
        scan_len: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--keys" => args.keys = value.parse().map_err(|e| bad(&e))?,
            "--ops" => args.ops = value.parse().map_err(|e| bad(&e))?,
            "--zipf" => args.zipf = value.parse().map_err(|e| bad(&e))?,
            "--cache-fraction" => args.cache_fraction = value.parse().map_err(|e| bad(&e))?,
            "--value-bytes" => args.value_bytes = value.parse().map_err(|e| bad(&e))?,
            "--seed" => args.seed = value.parse().map_err(|e| bad(&e))?,
            "--scan-every" => args.scan_every = value.parse().map_err(|e| bad(&e))?,
            "--scan-len" => args.scan_len = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.keys < 2 || !(0.0..1.0).contains(&args.zipf) || args.zipf == 0.0 {
        return Err("need --keys >= 2 and 0 < --zipf < 1".into());
    }
    Ok(args)
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Gray et al.'s Zipfian generator over ranks `0..n` with exponent `theta` (as in YCSB).
struct Zipf {
    n: f64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Self {
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(theta))
                .sum::<f64>()
        };
        let zetan = zeta(n);
        let zeta2 = zeta(2);
        let nf = n as f64;
        Zipf {
            n: nf,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / nf).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n as u64 - 1)
    }
}

/// The trace: Zipfian ranks, with one-time scans (keys from `keys` on) if asked for.
fn trace(args: &Args) -> Vec<u64> {
    let zipf = Zipf::new(args.keys, args.zipf);
    let mut rng = Rng(args.seed);
    let mut next_cold = args.keys;
    let mut out = Vec::with_capacity(args.ops as usize);
    while (out.len() as u64) < args.ops {
        out.push(zipf.next(&mut rng));
        if args.scan_every > 0 && (out.len() as u64).is_multiple_of(args.scan_every) {
            for _ in 0..args.scan_len {
                out.push(next_cold);
                next_cold += 1;
            }
        }
    }
    out.truncate(args.ops as usize);
    out
}

struct Outcome {
    hit_ratio: f64,
    ns_per_op: f64,
    evictions: u64,
    entries: u64,
}

fn run(policy: Policy, budget_bytes: usize, value_bytes: usize, trace: &[u64]) -> Outcome {
    let mut cache = Cache::new(CacheConfig {
        budget_bytes,
        policy,
        item_ttl_ms: u64::MAX / 2,
        query_ttl_ms: u64::MAX / 2,
    });
    let mut hits = 0u64;
    let start = Instant::now();
    for (now_ms, &key) in trace.iter().enumerate() {
        let k = key.to_be_bytes();
        match cache.get_item(1, &k, now_ms as u64) {
            Lookup::Hit(_) => hits += 1,
            Lookup::Miss => cache.fill_item(1, &k, Some(key), value_bytes, now_ms as u64),
            Lookup::Bypass => unreachable!("the item cache is enabled"),
        }
    }
    let elapsed = start.elapsed();
    let stats = cache.stats();
    Outcome {
        hit_ratio: hits as f64 / trace.len() as f64,
        ns_per_op: elapsed.as_nanos() as f64 / trace.len() as f64,
        evictions: stats.evictions,
        entries: stats.entries,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("hit_ratio: {e}");
            std::process::exit(2);
        }
    };
    let entry_bytes = Cache::item_charge_bytes(8, args.value_bytes);
    let entries = (args.keys as f64 * args.cache_fraction) as usize;
    let budget_bytes = entries * entry_bytes;
    println!(
        "keys {} ops {} zipf {} cache-fraction {} value-bytes {}{}",
        args.keys,
        args.ops,
        args.zipf,
        args.cache_fraction,
        args.value_bytes,
        if args.scan_every > 0 {
            format!(
                " scan {} keys every {} reads",
                args.scan_len, args.scan_every
            )
        } else {
            String::new()
        }
    );
    println!(
        "entry charge {entry_bytes} B (FIXED_OVERHEAD {} + 2 x 13 key + {} value), budget {budget_bytes} B = {entries} entries",
        Cache::FIXED_OVERHEAD,
        args.value_bytes
    );
    let start = Instant::now();
    let trace = trace(&args);
    println!("trace generated in {:.1} s", start.elapsed().as_secs_f64());
    for policy in [Policy::S3Fifo, Policy::Lru] {
        let o = run(policy, budget_bytes, args.value_bytes, &trace);
        println!(
            "{:<7} hit ratio {:.4}  {:>6.1} ns/op  evictions {}  entries {}",
            format!("{policy:?}"),
            o.hit_ratio,
            o.ns_per_op,
            o.evictions,
            o.entries
        );
    }
}
