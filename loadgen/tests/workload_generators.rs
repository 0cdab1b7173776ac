//! Workload generators: key distributions against theory, mixes, the preload split, parsing.
//! Every sampled test uses a fixed seed, so a failure reproduces exactly.

use std::collections::{BTreeSet, HashMap};

use tern_loadgen::dist::{Rng, Scrambler, Zipfian, zeta};
use tern_loadgen::workload::{
    KeyDist, Mix, Op, OpKind, SpecError, ValueSize, Workload, WorkloadSpec,
};

const SEED: u64 = 0x7e51_2026;

fn spec(mix: Mix, keyspace: u64, dist: KeyDist) -> WorkloadSpec {
    WorkloadSpec {
        mix,
        keyspace,
        dist,
        value: ValueSize::Fixed(100),
        scan_len_max: 100,
        seed: SEED,
    }
}

fn ops(spec: &WorkloadSpec, thread: usize, threads: usize, n: usize) -> Vec<Op> {
    let mut w = Workload::new(spec, thread, threads);
    (0..n).map(|_| w.next().expect("unbounded")).collect()
}

/// Counts of each key among `n` Get keys of a single-threaded Get workload.
fn key_counts(keyspace: u64, dist: KeyDist, n: usize) -> Vec<u64> {
    let mut counts = vec![0u64; keyspace as usize];
    for op in ops(&spec(Mix::Get, keyspace, dist), 0, 1, n) {
        assert_eq!(op.kind, OpKind::Get);
        counts[op.key as usize] += 1;
    }
    counts
}

/// Pearson's χ² of observed counts against probabilities.
fn chi_square(observed: &[u64], probability: impl Fn(usize) -> f64) -> f64 {
    let total: u64 = observed.iter().sum();
    observed
        .iter()
        .enumerate()
        .map(|(i, &o)| {
            let e = probability(i) * total as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// χ² bound for `bins` bins: mean + 6 standard deviations (a correct sampler exceeds it with
/// probability ~1e-9; the seed is fixed anyway).
fn chi_square_bound(bins: usize) -> f64 {
    let df = (bins - 1) as f64;
    df + 6.0 * (2.0 * df).sqrt()
}

fn zipf_rank_counts(n: u64, theta: f64, samples: usize) -> Vec<u64> {
    let z = Zipfian::new(n, theta);
    let mut rng = Rng::new(SEED);
    let mut counts = vec![0u64; n as usize];
    for _ in 0..samples {
        counts[z.sample(&mut rng) as usize] += 1;
    }
    counts
}

#[test]
fn zipfian_samples_follow_grays_distribution() {
    for theta in [0.99, 0.5] {
        let z = Zipfian::new(1000, theta);
        let counts = zipf_rank_counts(1000, theta, 1_000_000);
        let chi2 = chi_square(&counts, |r| z.probability(r as u64));
        assert!(chi2 < chi_square_bound(1000), "θ={theta}: χ²={chi2:.0}");
    }
}

#[test]
fn zipfian_frequencies_match_the_zipf_law() {
    for theta in [0.99, 0.5] {
        let n = 1000u64;
        let counts = zipf_rank_counts(n, theta, 1_000_000);
        let zeta_n = zeta(n, theta);
        let ideal = |rank: usize| 1.0 / ((rank + 1) as f64).powf(theta) / zeta_n;
        let freq = |rank: usize| counts[rank] as f64 / 1e6;
        // Ranks 0 and 1 are exact in Gray's method.
        for rank in 0..2 {
            let rel = freq(rank) / ideal(rank) - 1.0;
            assert!(rel.abs() < 0.02, "θ={theta} rank {rank}: {rel:+.3}");
        }
        // Ranks 2.. are Gray's approximation: at most 17% heavy (rank 2, θ=0.99), converging
        // to the law within a few ranks.
        for rank in 2..10 {
            let rel = freq(rank) / ideal(rank) - 1.0;
            assert!(
                (-0.03..0.20).contains(&rel),
                "θ={theta} rank {rank}: {rel:+.3}"
            );
        }
        // From rank 10 on Gray is within 2% of the law; allow that plus 5σ of sampling noise.
        for rank in 10..50 {
            let rel = freq(rank) / ideal(rank) - 1.0;
            let noise = 5.0 / (ideal(rank) * 1e6).sqrt();
            assert!(rel.abs() < 0.02 + noise, "θ={theta} rank {rank}: {rel:+.3}");
        }
        // The tail's log-log slope is −θ: least squares over ranks 10..1000.
        let points: Vec<(f64, f64)> = (10..n as usize)
            .map(|r| (((r + 1) as f64).ln(), (counts[r] as f64).ln()))
            .collect();
        let m = points.len() as f64;
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / m, sy / m);
        let slope = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum::<f64>()
            / points.iter().map(|(x, _)| (x - mx).powi(2)).sum::<f64>();
        assert!((slope + theta).abs() < 0.03, "θ={theta}: slope {slope:.3}");
    }
}

#[test]
fn scrambled_zipfian_keeps_the_profile_but_moves_the_hot_keys() {
    let n = 1000u64;
    let counts = key_counts(n, KeyDist::Zipfian { theta: 0.99 }, 1_000_000);
    let mut by_count: Vec<(u64, u64)> = counts
        .iter()
        .enumerate()
        .map(|(k, &c)| (c, k as u64))
        .collect();
    by_count.sort_unstable_by(|a, b| b.cmp(a));

    // Same frequency profile: the i-th hottest key has rank i's probability.
    let z = Zipfian::new(n, 0.99);
    for (rank, (count, _)) in by_count.iter().take(10).enumerate() {
        let rel = *count as f64 / 1e6 / z.probability(rank as u64) - 1.0;
        assert!(rel.abs() < 0.03, "rank {rank}: {rel:+.3}");
    }
    let sorted_counts: Vec<u64> = by_count.iter().map(|(c, _)| *c).collect();
    let chi2 = chi_square(&sorted_counts, |r| z.probability(r as u64));
    // Sorting noisy tail counts lowers χ², never raises it for a match; a wrong profile
    // (e.g. YCSB's fnv % n collisions) lands far above.
    assert!(chi2 < chi_square_bound(1000), "χ²={chi2:.0}");

    // Hot keys are spread: the hottest is rank 0's image, and the ten hottest are not 0..10.
    let scrambler = Scrambler::new(n);
    assert_eq!(by_count[0].1, scrambler.scramble(0));
    let hottest: BTreeSet<u64> = by_count.iter().take(10).map(|(_, k)| *k).collect();
    assert_ne!(hottest, (0..10).collect::<BTreeSet<u64>>());
    assert!(
        hottest.iter().filter(|&&k| k < 100).count() <= 3,
        "{hottest:?}"
    );
    assert!(hottest.iter().any(|&k| k >= 500), "{hottest:?}");
    // Every key is still drawn (a bijection; fnv % n would leave ~37% of keys cold).
    assert!(counts.iter().all(|&c| c > 0));
}

#[test]
fn uniform_covers_every_key_evenly() {
    let n = 1000u64;
    let counts = key_counts(n, KeyDist::Uniform, 1_000_000);
    assert!(
        counts.iter().all(|&c| c > 850 && c < 1150),
        "min/max out of range"
    );
    let chi2 = chi_square(&counts, |_| 1.0 / n as f64);
    assert!(chi2 < chi_square_bound(1000), "χ²={chi2:.0}");
}

#[test]
fn hotspot_sends_the_hot_fraction_of_ops_to_the_hot_keys() {
    let n = 1000u64;
    let dist = KeyDist::Hotspot {
        hot_fraction: 0.2,
        hot_op_fraction: 0.8,
    };
    let counts = key_counts(n, dist, 500_000);
    let hot: u64 = counts[..200].iter().sum();
    let hot_share = hot as f64 / 500_000.0;
    assert!((hot_share - 0.8).abs() < 0.005, "{hot_share}");
    // Uniform inside each set: 2000 per hot key, 125 per cold key.
    assert!(counts[..200].iter().all(|&c| (1750..2250).contains(&c)));
    assert!(counts[200..].iter().all(|&c| (70..190).contains(&c)));
}

#[test]
fn latest_favours_this_threads_newest_inserts() {
    let keyspace = 1000u64;
    let mut w = Workload::new(
        &spec(Mix::YcsbD, keyspace, KeyDist::Latest { theta: 0.99 }),
        0,
        1,
    );
    // One thread: inserts are keyspace, keyspace+1, …, so a key's recency is its number.
    let mut newest = keyspace - 1;
    let mut offsets = HashMap::<u64, u64>::new();
    let (mut gets, mut gets_of_inserted) = (0u64, 0u64);
    for _ in 0..200_000 {
        let op = w.next().unwrap();
        match op.kind {
            OpKind::Insert => {
                assert_eq!(op.key, newest + 1, "inserts are consecutive new keys");
                newest = op.key;
            }
            OpKind::Get => {
                assert!(op.key <= newest, "read of a key not yet inserted");
                *offsets.entry(newest - op.key).or_default() += 1;
                gets += 1;
                gets_of_inserted += u64::from(op.key >= keyspace);
            }
            other => panic!("ycsb-d issued {other:?}"),
        }
    }
    assert_eq!(w.inserted(), newest + 1 - keyspace);
    let at = |o: u64| offsets.get(&o).copied().unwrap_or(0);
    // Newest minus a zipfian offset: P(offset 0) = 1/ζ(count), ~0.10–0.13 as count grows
    // from 1000 to ~11000 keys; then strictly decreasing.
    let p0 = at(0) as f64 / gets as f64;
    assert!((0.09..0.14).contains(&p0), "P(newest) = {p0}");
    assert!(at(0) > at(1) && at(1) > at(2) && at(2) > at(5) && at(5) > at(50));
    // Uniform reads over the ~6000 keys existing on average would hit the 0–10000 inserted
    // ones about half the time; latest hits them almost always.
    let share = gets_of_inserted as f64 / gets as f64;
    assert!(share > 0.85, "{share}");
}

#[test]
fn latest_on_several_threads_reads_own_inserts() {
    let keyspace = 500u64;
    let threads = 3;
    let s = spec(Mix::YcsbD, keyspace, KeyDist::Latest { theta: 0.99 });
    for t in 0..threads {
        let mut own_inserts = BTreeSet::new();
        for op in ops(&s, t, threads, 50_000) {
            if op.kind == OpKind::Insert {
                own_inserts.insert(op.key);
            } else if op.key >= keyspace {
                assert!(own_inserts.contains(&op.key), "thread {t} read {}", op.key);
            }
        }
    }
}

#[test]
fn inserts_are_new_keys_disjoint_across_threads() {
    let keyspace = 1000u64;
    let threads = 3;
    let mut all = BTreeSet::new();
    for mix in [Mix::YcsbD, Mix::YcsbE] {
        all.clear();
        for t in 0..threads {
            let inserts: Vec<u64> = ops(&spec(mix, keyspace, KeyDist::Uniform), t, threads, 20_000)
                .into_iter()
                .filter(|op| op.kind == OpKind::Insert)
                .map(|op| op.key)
                .collect();
            assert!(!inserts.is_empty());
            for (i, &k) in inserts.iter().enumerate() {
                assert_eq!(k, keyspace + t as u64 + i as u64 * threads as u64);
                assert!(all.insert(k), "{mix}: key {k} inserted twice");
            }
        }
    }
}

#[test]
fn reads_and_updates_stay_in_the_loaded_keyspace() {
    let keyspace = 777u64;
    for mix in [
        Mix::Get,
        Mix::Set,
        Mix::YcsbA,
        Mix::YcsbB,
        Mix::YcsbE,
        Mix::YcsbF,
    ] {
        for dist in [
            KeyDist::Uniform,
            KeyDist::Zipfian { theta: 0.99 },
            KeyDist::Hotspot {
                hot_fraction: 0.1,
                hot_op_fraction: 0.9,
            },
        ] {
            for op in ops(&spec(mix, keyspace, dist), 1, 2, 20_000) {
                if op.kind != OpKind::Insert {
                    assert!(op.key < keyspace, "{mix} {dist}: {op:?}");
                }
            }
        }
    }
}

#[test]
fn load_yields_each_key_once_across_threads() {
    for (keyspace, threads) in [(1003u64, 4usize), (3, 5), (1, 1), (64, 64)] {
        let s = spec(Mix::Load, keyspace, KeyDist::Uniform);
        let mut all = Vec::new();
        for t in 0..threads {
            let mut w = Workload::new(&s, t, threads);
            let total = w.total().expect("load is finite");
            let mut mine = Vec::new();
            while let Some(op) = w.next() {
                assert_eq!(op.kind, OpKind::Set);
                assert_eq!(op.value_len, 100);
                mine.push(op.key);
            }
            assert_eq!(w.next(), None, "stays done");
            assert_eq!(mine.len() as u64, total);
            assert!(
                mine.windows(2).all(|p| p[1] == p[0] + 1),
                "contiguous, in order"
            );
            all.extend(mine);
        }
        assert_eq!(
            all,
            (0..keyspace).collect::<Vec<_>>(),
            "{keyspace}/{threads}"
        );
    }
    assert_eq!(
        Workload::new(&spec(Mix::YcsbA, 10, KeyDist::Uniform), 0, 1).total(),
        None
    );
}

#[test]
fn mixes_issue_their_ratios() {
    let cases: Vec<(Mix, Vec<(OpKind, f64)>)> = vec![
        (Mix::Get, vec![(OpKind::Get, 1.0)]),
        (Mix::Set, vec![(OpKind::Set, 1.0)]),
        (
            Mix::Ratio { get_fraction: 0.9 },
            vec![(OpKind::Get, 0.9), (OpKind::Set, 0.1)],
        ),
        (Mix::YcsbA, vec![(OpKind::Get, 0.5), (OpKind::Update, 0.5)]),
        (
            Mix::YcsbB,
            vec![(OpKind::Get, 0.95), (OpKind::Update, 0.05)],
        ),
        (Mix::YcsbC, vec![(OpKind::Get, 1.0)]),
        (
            Mix::YcsbD,
            vec![(OpKind::Get, 0.95), (OpKind::Insert, 0.05)],
        ),
        (
            Mix::YcsbE,
            vec![(OpKind::Scan, 0.95), (OpKind::Insert, 0.05)],
        ),
        (
            Mix::YcsbF,
            vec![(OpKind::Get, 0.5), (OpKind::ReadModifyWrite, 0.5)],
        ),
    ];
    let n = 200_000;
    for (mix, expected) in cases {
        let mut counts = HashMap::<OpKind, usize>::new();
        for op in ops(&spec(mix, 1000, KeyDist::Zipfian { theta: 0.99 }), 0, 1, n) {
            *counts.entry(op.kind).or_default() += 1;
            let writes = matches!(
                op.kind,
                OpKind::Set | OpKind::Update | OpKind::Insert | OpKind::ReadModifyWrite
            );
            assert_eq!(op.value_len, if writes { 100 } else { 0 }, "{mix}: {op:?}");
            assert_eq!(op.scan_len > 0, op.kind == OpKind::Scan, "{mix}: {op:?}");
        }
        assert_eq!(counts.len(), expected.len(), "{mix}: {counts:?}");
        for (kind, fraction) in expected {
            let got = counts.get(&kind).copied().unwrap_or(0) as f64 / n as f64;
            assert!((got - fraction).abs() < 0.005, "{mix} {kind:?}: {got}");
        }
    }
}

#[test]
fn scan_lengths_are_uniform_in_range() {
    let mut s = spec(Mix::YcsbE, 1000, KeyDist::Uniform);
    s.scan_len_max = 100;
    let lens: Vec<u32> = ops(&s, 0, 1, 100_000)
        .into_iter()
        .filter(|op| op.kind == OpKind::Scan)
        .map(|op| op.scan_len)
        .collect();
    assert!(lens.iter().all(|l| (1..=100).contains(l)));
    assert!(lens.contains(&1) && lens.contains(&100));
    let mean = lens.iter().map(|&l| f64::from(l)).sum::<f64>() / lens.len() as f64;
    assert!((mean - 50.5).abs() < 0.5, "{mean}");
    s.scan_len_max = 1;
    assert!(
        ops(&s, 0, 1, 1000)
            .iter()
            .all(|op| op.kind != OpKind::Scan || op.scan_len == 1)
    );
}

#[test]
fn value_sizes_cover_the_range() {
    let mut s = spec(Mix::Set, 1000, KeyDist::Uniform);
    s.value = ValueSize::Range { min: 64, max: 1024 };
    let lens: Vec<u32> = ops(&s, 0, 1, 100_000)
        .iter()
        .map(|op| op.value_len)
        .collect();
    assert!(lens.iter().all(|l| (64..=1024).contains(l)));
    assert!(lens.contains(&64) && lens.contains(&1024));
    let mean = lens.iter().map(|&l| f64::from(l)).sum::<f64>() / lens.len() as f64;
    assert!((mean - 544.0).abs() < 5.0, "{mean}");
}

#[test]
fn streams_are_deterministic_per_seed_and_thread() {
    let s = spec(Mix::YcsbA, 10_000, KeyDist::Zipfian { theta: 0.99 });
    assert_eq!(ops(&s, 0, 2, 1000), ops(&s, 0, 2, 1000));
    assert_ne!(ops(&s, 0, 2, 1000), ops(&s, 1, 2, 1000));
    let mut other_seed = s.clone();
    other_seed.seed += 1;
    assert_ne!(ops(&s, 0, 2, 1000), ops(&other_seed, 0, 2, 1000));
}

#[test]
fn large_keyspaces_start_fast_and_stay_in_range() {
    // ζ is O(1) in the key count, so 10^10 keys cost what 10^3 do.
    for dist in [
        KeyDist::Zipfian { theta: 0.99 },
        KeyDist::Latest { theta: 0.99 },
    ] {
        let s = spec(Mix::YcsbB, 10_000_000_000, dist);
        for op in ops(&s, 0, 1, 10_000) {
            if op.kind != OpKind::Insert {
                assert!(op.key < 10_000_000_000);
            }
        }
    }
}

#[test]
fn mix_names_round_trip() {
    for mix in [
        Mix::Get,
        Mix::Set,
        Mix::Ratio { get_fraction: 0.9 },
        Mix::Ratio { get_fraction: 0.0 },
        Mix::Ratio { get_fraction: 1.0 },
        Mix::Ratio {
            get_fraction: 0.123_456_789,
        },
        Mix::YcsbA,
        Mix::YcsbB,
        Mix::YcsbC,
        Mix::YcsbD,
        Mix::YcsbE,
        Mix::YcsbF,
        Mix::Load,
    ] {
        assert_eq!(mix.name().parse::<Mix>(), Ok(mix), "{}", mix.name());
        assert_eq!(mix.uses_ranges(), mix == Mix::YcsbE);
    }
    assert_eq!(
        "mixed:0.9".parse::<Mix>(),
        Ok(Mix::Ratio { get_fraction: 0.9 })
    );
    assert_eq!("YCSB-A".parse::<Mix>(), Ok(Mix::YcsbA));
    assert_eq!(Mix::YcsbD.default_dist(), KeyDist::Latest { theta: 0.99 });
    assert_eq!(Mix::YcsbA.default_dist(), KeyDist::Zipfian { theta: 0.99 });
}

#[test]
fn mix_parse_errors() {
    for bad in ["", "ycsb-g", "ycsb", "gets", "mixed", "mixed:", "mixed:x"] {
        assert!(
            matches!(
                bad.parse::<Mix>(),
                Err(SpecError::UnknownMix(_) | SpecError::BadGetFraction(_))
            ),
            "{bad:?}"
        );
    }
    for bad in ["mixed:1.5", "mixed:-0.1", "mixed:NaN"] {
        assert_eq!(
            bad.parse::<Mix>(),
            Err(SpecError::BadGetFraction(bad.into())),
            "{bad:?}"
        );
    }
    assert_eq!(
        "ycsb-g".parse::<Mix>(),
        Err(SpecError::UnknownMix("ycsb-g".into()))
    );
    let msg = "nope".parse::<Mix>().unwrap_err().to_string();
    assert!(msg.contains("ycsb-a") && msg.contains("mixed:"), "{msg}");
}

#[test]
fn key_dists_round_trip_and_default() {
    let cases = [
        ("uniform", KeyDist::Uniform),
        ("zipfian", KeyDist::Zipfian { theta: 0.99 }),
        ("zipfian:0.9", KeyDist::Zipfian { theta: 0.9 }),
        ("latest", KeyDist::Latest { theta: 0.99 }),
        ("latest:0.5", KeyDist::Latest { theta: 0.5 }),
        (
            "hotspot",
            KeyDist::Hotspot {
                hot_fraction: 0.2,
                hot_op_fraction: 0.8,
            },
        ),
        (
            "hotspot:0.1:0.95",
            KeyDist::Hotspot {
                hot_fraction: 0.1,
                hot_op_fraction: 0.95,
            },
        ),
    ];
    for (text, dist) in cases {
        assert_eq!(text.parse::<KeyDist>(), Ok(dist), "{text}");
        assert_eq!(dist.to_string().parse::<KeyDist>(), Ok(dist), "{dist}");
    }
}

#[test]
fn key_dist_parse_errors() {
    for (text, variant) in [
        ("", "UnknownDist"),
        ("zipf", "UnknownDist"),
        ("uniform:3", "UnknownDist"),
        ("zipfian:1", "BadTheta"),
        ("zipfian:1.2", "BadTheta"),
        ("zipfian:0", "BadTheta"),
        ("zipfian:0.5:1", "BadTheta"),
        ("latest:x", "BadTheta"),
        ("hotspot:0.2", "BadHotspot"),
        ("hotspot:0:0.5", "BadHotspot"),
        ("hotspot:0.2:1.5", "BadHotspot"),
    ] {
        let err = text.parse::<KeyDist>().expect_err(text);
        assert_eq!(format!("{err:?}"), format!("{variant}({text:?})"));
    }
}

#[test]
fn value_sizes_round_trip_and_reject_nonsense() {
    for (text, v) in [
        ("100", ValueSize::Fixed(100)),
        ("0", ValueSize::Fixed(0)),
        ("64-1024", ValueSize::Range { min: 64, max: 1024 }),
        ("5-5", ValueSize::Range { min: 5, max: 5 }),
    ] {
        assert_eq!(text.parse::<ValueSize>(), Ok(v));
        assert_eq!(v.to_string().parse::<ValueSize>(), Ok(v));
    }
    for bad in [
        "",
        "abc",
        "-5",
        "100-50",
        "1-",
        "1-2-3",
        "99999999999",
        "20000000",
    ] {
        assert_eq!(
            bad.parse::<ValueSize>(),
            Err(SpecError::BadValueSize(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn validate_rejects_hand_built_nonsense() {
    let good = spec(Mix::YcsbA, 10, KeyDist::Uniform);
    assert_eq!(good.validate(), Ok(()));
    let mut s = good.clone();
    s.keyspace = 0;
    assert_eq!(s.validate(), Err(SpecError::EmptyKeyspace));
    let mut s = good.clone();
    s.scan_len_max = 0;
    assert_eq!(s.validate(), Err(SpecError::BadScanLen(0)));
    let mut s = good.clone();
    s.dist = KeyDist::Zipfian { theta: 1.0 };
    assert!(matches!(s.validate(), Err(SpecError::BadTheta(_))));
    let mut s = good;
    s.value = ValueSize::Range { min: 9, max: 3 };
    assert!(matches!(s.validate(), Err(SpecError::BadValueSize(_))));
}

#[test]
#[should_panic(expected = "invalid workload spec")]
fn workload_refuses_an_invalid_spec() {
    let mut s = spec(Mix::Get, 10, KeyDist::Uniform);
    s.keyspace = 0;
    Workload::new(&s, 0, 1);
}

/// `cargo test -p tern-loadgen --release --test workload_generators -- --ignored --nocapture`
#[test]
#[ignore = "timing print, not an assertion"]
fn print_next_cost() {
    use std::time::Instant;
    for (name, mix, dist) in [
        ("get uniform", Mix::Get, KeyDist::Uniform),
        ("get zipfian", Mix::Get, KeyDist::Zipfian { theta: 0.99 }),
        ("ycsb-d latest", Mix::YcsbD, KeyDist::Latest { theta: 0.99 }),
        (
            "ycsb-a hotspot",
            Mix::YcsbA,
            KeyDist::Hotspot {
                hot_fraction: 0.2,
                hot_op_fraction: 0.8,
            },
        ),
        (
            "ycsb-e zipfian",
            Mix::YcsbE,
            KeyDist::Zipfian { theta: 0.99 },
        ),
    ] {
        for keyspace in [1_000_000u64, 100_000_000] {
            let started = Instant::now();
            let mut w = Workload::new(&spec(mix, keyspace, dist), 0, 1);
            let setup = started.elapsed();
            let n = 10_000_000u64;
            let started = Instant::now();
            let mut sink = 0u64;
            for _ in 0..n {
                sink = sink.wrapping_add(w.next().unwrap().key);
            }
            let per_op = started.elapsed().as_nanos() as f64 / n as f64;
            std::hint::black_box(sink);
            println!("{name:<16} {keyspace:>11} keys: new {setup:>10.1?}, next {per_op:5.1} ns");
        }
    }
}
