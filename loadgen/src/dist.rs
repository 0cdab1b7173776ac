//! Random numbers and key distributions: the samplers behind `workload::KeyDist`.
//!
//! * [`Rng`]: xoshiro256** (Blackman & Vigna), seeded through SplitMix64. Written here instead
//!   of taken from a crate: it is thirty lines, and the sequence a seed produces can never
//!   change under us with a dependency upgrade, so a run is reproducible from its seed.
//! * [`Zipfian`]: YCSB's `ZipfianGenerator`, i.e. Gray et al., "Quickly generating
//!   billion-record synthetic databases" (SIGMOD 1994), with YCSB's constants and branches, so
//!   a given θ and item count draw the same distribution as YCSB. It needs
//!   ζ(n, θ) = Σ_{i=1..n} i^-θ once per item count; see [`zeta`] for how that stays cheap.
//! * [`Scrambler`]: spreads zipfian ranks over the key space like YCSB's
//!   `ScrambledZipfianGenerator`, but with a bijection (see its doc for why).
//! * [`Hotspot`]: YCSB's `HotspotIntegerGenerator`.
//!
//! Gray's method is exact for ranks 0 and 1 and an approximation beyond (it over-weights rank 2
//! by 17% at θ = 0.99 and 10% at θ = 0.5; the tail follows i^-θ). That is YCSB's distribution
//! too, and compatibility with YCSB is why it is used; [`Zipfian::probability`] gives the exact
//! probabilities of what is sampled, and the tests check samples against both.

#![forbid(unsafe_code)]

/// Item counts up to this are summed term by term in [`zeta`]; above it, the terms beyond
/// are replaced by an Euler–Maclaurin expansion whose remainder at this cut-off is below
/// 1e-17 of the sum.
pub const ZETA_EXACT_TERMS: u64 = 1024;

/// xoshiro256**: 256 bits of state, ~1 ns per 64-bit output, passes BigCrush. Not for
/// cryptography.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose sequence is a pure function of `seed` (any value, including 0).
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 spreads the seed over the state; it never yields an all-zero state,
        // which is xoshiro's only forbidden one.
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        debug_assert!(s.iter().any(|&w| w != 0));
        Rng { s }
    }

    /// The next 64 uniformly random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n, unbiased (Lemire's multiply-shift with rejection). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            // Rare (probability n / 2^64): reject the few low products that would bias.
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// True with probability `threshold / 2^53`; see [`fraction_threshold`].
    #[inline]
    pub fn chance(&mut self, threshold: u64) -> bool {
        (self.next_u64() >> 11) < threshold
    }
}

/// The threshold for [`Rng::chance`] that makes it true with probability `fraction`
/// (clamped to [0, 1]); exactly always for 1.0 and never for 0.0.
pub fn fraction_threshold(fraction: f64) -> u64 {
    let scaled = fraction.clamp(0.0, 1.0) * (1u64 << 53) as f64;
    scaled as u64
}

/// One SplitMix64 step: the standard seeder for xoshiro, also a decent 64-bit mixer.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// ζ(n, θ) = Σ_{i=1..n} i^-θ, in O(1) for any n: terms 1..=1024 are summed exactly; above
/// that, Σ_{i=1024..n} is the Euler–Maclaurin expansion (integral, endpoint half-terms and the
/// f' and f''' corrections), whose remainder is ~θ⁵·1024^-(θ+5)/30240 < 1e-17 of the sum.
///
/// So zeta costs ~1024 `powf` (≈10 µs) for 1 M keys and for 100 M keys alike, where YCSB sums
/// all n terms (≈1 s for 100 M) or ships hard-coded constants. Each `Workload` computes its own;
/// nothing needs sharing.
pub fn zeta(n: u64, theta: f64) -> f64 {
    if n <= ZETA_EXACT_TERMS {
        return (1..=n).map(|i| (i as f64).powf(-theta)).sum();
    }
    let m = ZETA_EXACT_TERMS;
    let head: f64 = (1..m).map(|i| (i as f64).powf(-theta)).sum();
    let (mf, nf) = (m as f64, n as f64);
    let f = |x: f64| x.powf(-theta);
    let d1 = |x: f64| -theta * x.powf(-theta - 1.0);
    let d3 = |x: f64| -theta * (theta + 1.0) * (theta + 2.0) * x.powf(-theta - 3.0);
    let integral = (nf.powf(1.0 - theta) - mf.powf(1.0 - theta)) / (1.0 - theta);
    head + integral + (f(mf) + f(nf)) / 2.0 + (d1(nf) - d1(mf)) / 12.0 - (d3(nf) - d3(mf)) / 720.0
}

/// YCSB's zipfian generator over ranks 0..items (rank 0 the most popular), 0 < θ < 1.
/// Sampling is O(1): one uniform draw and, past rank 1, one `powf`.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    /// 1 / (1 - θ).
    alpha: f64,
    zeta_n: f64,
    /// ζ(2, θ) = 1 + 0.5^θ: below `zeta_2 / zeta_n` the sample is rank 1.
    zeta_2: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `items` ranks (≥ 1) with exponent `theta` (0 < θ < 1).
    pub fn new(items: u64, theta: f64) -> Zipfian {
        Zipfian::with_zeta(items, theta, zeta(items, theta))
    }

    /// As `new`, with ζ(items, θ) already known.
    pub fn with_zeta(items: u64, theta: f64, zeta_n: f64) -> Zipfian {
        assert!(items >= 1, "a zipfian needs at least one item");
        assert!(
            theta > 0.0 && theta < 1.0,
            "zipfian θ must be in (0, 1), got {theta}"
        );
        let mut z = Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            zeta_2: 1.0 + 0.5f64.powf(theta),
            eta: 0.0,
        };
        z.eta = z.compute_eta();
        z
    }

    fn compute_eta(&self) -> f64 {
        if self.items <= 2 {
            // Every sample is rank 0 or 1 (the branches before eta); 0 keeps the unreachable
            // third branch finite instead of 0/0.
            return 0.0;
        }
        (1.0 - (2.0 / self.items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta_2 / self.zeta_n)
    }

    /// Number of ranks.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// ζ(items, θ).
    pub fn zeta_n(&self) -> f64 {
        self.zeta_n
    }

    /// One more item (YCSB's incremental zeta for a growing key space, used by `latest`):
    /// one `powf` for ζ and one for η.
    pub fn grow(&mut self) {
        self.items += 1;
        self.zeta_n += (self.items as f64).powf(-self.theta);
        self.eta = self.compute_eta();
    }

    /// A rank in 0..items.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.zeta_2 {
            return 1;
        }
        let rank = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // Float rounding at u → 1 can land exactly on `items`.
        rank.min(self.items - 1)
    }

    /// The exact probability that [`sample`](Self::sample) returns `rank` (Gray's
    /// distribution, not the ideal i^-θ / ζ), from the inverse of the sampling formula.
    pub fn probability(&self, rank: u64) -> f64 {
        if rank >= self.items {
            return 0.0;
        }
        let below = if rank == 0 { 0.0 } else { self.cdf(rank - 1) };
        self.cdf(rank) - below
    }

    /// P(sample ≤ rank).
    fn cdf(&self, rank: u64) -> f64 {
        if rank + 1 >= self.items {
            return 1.0;
        }
        match rank {
            0 => 1.0 / self.zeta_n,
            1 => self.zeta_2 / self.zeta_n,
            _ => {
                // items·(η·u − η + 1)^α < rank + 1  ⇔  u < (((rank+1)/items)^(1/α) − 1 + η) / η
                let r = ((rank + 1) as f64 / self.items as f64).powf(1.0 - self.theta);
                ((r - 1.0 + self.eta) / self.eta).clamp(self.zeta_2 / self.zeta_n, 1.0)
            }
        }
    }
}

/// A fixed pseudo-random permutation of 0..n: where zipfian rank r is stored.
///
/// YCSB's `ScrambledZipfianGenerator` maps a rank with `fnvhash64(rank) % n`. That is not a
/// bijection: about 1/e of the keys are never drawn and hot ranks collide, so the key
/// frequencies stop following zipf(n, θ) (YCSB also draws from a zipfian over 10^10 items
/// before the modulo, which flattens the head: its hottest key gets 3.8% of requests at θ = 0.99
/// where zipf over 1 M keys gives 6.9%). Here the FNV-style multiply/xor-shift rounds form a
/// bijection on the next power of two, and cycle walking (re-applying it until the value is
/// below n, fewer than 2 rounds expected) restricts it to a bijection on 0..n: the frequency
/// profile is exactly zipf(n, θ) and the hot keys land all over the key space.
#[derive(Debug, Clone)]
pub struct Scrambler {
    n: u64,
    mask: u64,
    shift: u32,
}

impl Scrambler {
    /// A permutation of 0..n (n ≥ 1). The same for every thread and every run.
    pub fn new(n: u64) -> Scrambler {
        assert!(n >= 1, "scrambling an empty key space");
        let bits = 64 - (n - 1).leading_zeros();
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        Scrambler {
            n,
            mask,
            shift: bits.div_ceil(2).max(1),
        }
    }

    /// One round over the power-of-two domain: every step (multiply by an odd constant mod
    /// 2^bits, xor with a constant, x ^= x >> s) is invertible there.
    #[inline]
    fn round(&self, mut x: u64) -> u64 {
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        x = (x ^ FNV_OFFSET) & self.mask;
        x = x.wrapping_mul(FNV_PRIME) & self.mask;
        x ^= x >> self.shift;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9) & self.mask;
        x ^= x >> self.shift;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb) & self.mask;
        x ^= x >> self.shift;
        x
    }

    /// The image of `x` (< n), also < n.
    #[inline]
    pub fn scramble(&self, x: u64) -> u64 {
        debug_assert!(x < self.n);
        let mut y = self.round(x);
        while y >= self.n {
            y = self.round(y);
        }
        y
    }
}

/// YCSB's hotspot generator: with probability `hot_op_fraction` a uniform key among the first
/// `hot_fraction` of the keys, otherwise a uniform key among the rest.
#[derive(Debug, Clone)]
pub struct Hotspot {
    hot_keys: u64,
    cold_keys: u64,
    hot_threshold: u64,
}

impl Hotspot {
    /// Over keys 0..n (n ≥ 1); the hot set is the first max(1, ⌊n·hot_fraction⌋) keys.
    pub fn new(n: u64, hot_fraction: f64, hot_op_fraction: f64) -> Hotspot {
        assert!(n >= 1, "a hotspot over an empty key space");
        let hot_keys = ((n as f64 * hot_fraction) as u64).clamp(1, n);
        let cold_keys = n - hot_keys;
        let hot_threshold = if cold_keys == 0 {
            fraction_threshold(1.0)
        } else {
            fraction_threshold(hot_op_fraction)
        };
        Hotspot {
            hot_keys,
            cold_keys,
            hot_threshold,
        }
    }

    /// Size of the hot set.
    pub fn hot_keys(&self) -> u64 {
        self.hot_keys
    }

    /// A key in 0..n.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        if rng.chance(self.hot_threshold) {
            rng.below(self.hot_keys)
        } else {
            self.hot_keys + rng.below(self.cold_keys)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_seed_dependent() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn xoshiro_matches_reference_vector() {
        // Reference xoshiro256** from state {1, 2, 3, 4} (Vigna's C implementation).
        let mut r = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240]);
    }

    #[test]
    fn below_stays_in_range_and_hits_every_value() {
        let mut r = Rng::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn chance_extremes_are_exact() {
        let mut r = Rng::new(3);
        assert!((0..10_000).all(|_| r.chance(fraction_threshold(1.0))));
        assert!((0..10_000).all(|_| !r.chance(fraction_threshold(0.0))));
    }

    #[test]
    fn zeta_expansion_matches_exact_sum() {
        for &theta in &[0.5, 0.8, 0.99, 0.999] {
            for &n in &[1025u64, 5000, 1_000_000] {
                let exact: f64 = (1..=n).map(|i| (i as f64).powf(-theta)).sum();
                let fast = zeta(n, theta);
                let rel = (fast - exact).abs() / exact;
                assert!(rel < 1e-10, "θ={theta} n={n}: {fast} vs {exact} ({rel:e})");
            }
        }
    }

    #[test]
    fn zeta_matches_ycsb_constant_for_ten_billion_items() {
        // YCSB's ScrambledZipfianGenerator hard-codes ζ(10^10, 0.99) = 26.46902820178302.
        let z = zeta(10_000_000_000, 0.99);
        assert!((z - 26.469_028_201_783_02).abs() < 1e-6, "{z}");
    }

    #[test]
    fn zipfian_probabilities_sum_to_one() {
        for &(n, theta) in &[(3u64, 0.99), (10, 0.5), (1000, 0.99), (1000, 0.5)] {
            let z = Zipfian::new(n, theta);
            let total: f64 = (0..n).map(|r| z.probability(r)).sum();
            assert!((total - 1.0).abs() < 1e-9, "n={n} θ={theta}: {total}");
        }
    }

    #[test]
    fn zipfian_tiny_item_counts() {
        let mut r = Rng::new(5);
        let one = Zipfian::new(1, 0.99);
        assert!((0..1000).all(|_| one.sample(&mut r) == 0));
        let two = Zipfian::new(2, 0.99);
        let ones = (0..10_000).filter(|_| two.sample(&mut r) == 1).count();
        // P(1) = 2^-0.99 / (1 + 2^-0.99) ≈ 0.3351
        assert!((3100..3600).contains(&ones), "{ones}");
    }

    #[test]
    fn growing_zipfian_matches_fresh_one() {
        let mut grown = Zipfian::new(2000, 0.99);
        for _ in 0..3000 {
            grown.grow();
        }
        let fresh = Zipfian::new(5000, 0.99);
        assert_eq!(grown.items(), 5000);
        assert!((grown.zeta_n() - fresh.zeta_n()).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-12);
    }

    #[test]
    fn scrambler_is_a_permutation() {
        for n in [1u64, 2, 3, 7, 8, 9, 1000, 1024, 1025, 4097] {
            let s = Scrambler::new(n);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = s.scramble(x);
                assert!(y < n);
                assert!(!seen[y as usize], "n={n}: {y} hit twice");
                seen[y as usize] = true;
            }
        }
    }

    #[test]
    fn scrambler_spreads_the_first_ranks() {
        let s = Scrambler::new(1_000_000);
        let first: Vec<u64> = (0..10).map(|r| s.scramble(r)).collect();
        // Not clustered at the front, and spread over the key space.
        assert!(
            first.iter().filter(|&&k| k < 100_000).count() <= 4,
            "{first:?}"
        );
        let (lo, hi) = (first.iter().min().unwrap(), first.iter().max().unwrap());
        assert!(hi - lo > 500_000, "{first:?}");
    }

    #[test]
    fn hotspot_degenerate_sets() {
        let mut r = Rng::new(9);
        let all_hot = Hotspot::new(10, 1.0, 0.5);
        assert_eq!(all_hot.hot_keys(), 10);
        assert!((0..1000).all(|_| all_hot.sample(&mut r) < 10));
        let tiny = Hotspot::new(3, 0.01, 1.0);
        assert_eq!(tiny.hot_keys(), 1);
        assert!((0..1000).all(|_| tiny.sample(&mut r) == 0));
    }
}
