//! proptest: random interleavings of writes, item reads, Queries, Scans, clock advances,
//! TTL changes and table drops against a `BTreeMap` "store", with a budget small enough
//! that evictions are the common case. Every hit must equal what the store holds at that
//! moment (no stale read, ever), and the cache's invariants must hold after every step.
//! Run for both policies.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use proptest::prelude::*;
use tern_cache::{CacheConfig, CacheStats, Lookup, Policy, ResultKind, ShardCache, Span, Ttls};

type Rows = Vec<(Vec<u8>, u64)>;
type Cache = ShardCache<u64, Rows>;
type Store = BTreeMap<(u32, Vec<u8>), u64>;

const TABLES: u32 = 2;

/// The bytes an item entry keeps inline for `version` of an item: lengths vary (some
/// repeat, so overwrites in place and with a new block both happen), contents name the
/// version.
fn blob(version: Option<u64>) -> Vec<u8> {
    version.map_or_else(Vec::new, |v| vec![v as u8; (v % 13) as usize])
}
const PARTITIONS: u8 = 3;
const SORT_KEYS: u8 = 8;

#[derive(Debug, Clone)]
enum Op {
    Put {
        table: u32,
        key: Vec<u8>,
        bytes: usize,
    },
    Delete {
        table: u32,
        key: Vec<u8>,
    },
    /// `recheck`: after a fill, the same lookup must hit (when the entry was admissible).
    Get {
        table: u32,
        key: Vec<u8>,
        bytes: usize,
        recheck: bool,
    },
    Query {
        table: u32,
        partition: u8,
        lower: Option<(u8, bool)>,
        upper: Option<(u8, bool)>,
        bytes: usize,
    },
    Scan {
        table: u32,
        every: u8,
        bytes: usize,
    },
    Advance(u64),
    SetTtls {
        table: u32,
        ttls: Option<(u64, u64)>,
    },
    DropTable(u32),
}

/// The caller's partition hash of a key: a function of its first byte (the partition).
fn partition_hash(partition: u8) -> u64 {
    u64::from(partition).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    (0..PARTITIONS, 0..SORT_KEYS).prop_map(|(p, s)| vec![p, s])
}

fn table() -> impl Strategy<Value = u32> {
    1..=TABLES
}

fn bound() -> impl Strategy<Value = Option<(u8, bool)>> {
    proptest::option::of((0..SORT_KEYS, any::<bool>()))
}

fn ttl() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(20), Just(100), Just(300)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        15 => (table(), key(), 0usize..200).prop_map(|(table, key, bytes)| Op::Put { table, key, bytes }),
        6 => (table(), key()).prop_map(|(table, key)| Op::Delete { table, key }),
        30 => (table(), key(), 0usize..200, any::<bool>())
            .prop_map(|(table, key, bytes, recheck)| Op::Get { table, key, bytes, recheck }),
        15 => (table(), 0..PARTITIONS, bound(), bound(), 0usize..600)
            .prop_map(|(table, partition, lower, upper, bytes)| Op::Query { table, partition, lower, upper, bytes }),
        6 => (table(), 0u8..3, 0usize..600).prop_map(|(table, every, bytes)| Op::Scan { table, every, bytes }),
        9 => (0u64..40).prop_map(Op::Advance),
        2 => (table(), proptest::option::of((ttl(), ttl()))).prop_map(|(table, ttls)| Op::SetTtls { table, ttls }),
        1 => table().prop_map(Op::DropTable),
    ]
}

fn full_key_bound(partition: u8, bound: Option<(u8, bool)>) -> Bound<Vec<u8>> {
    match bound {
        None => Bound::Unbounded,
        Some((sort, true)) => Bound::Included(vec![partition, sort]),
        Some((sort, false)) => Bound::Excluded(vec![partition, sort]),
    }
}

fn bound_code(bound: Option<(u8, bool)>) -> [u8; 2] {
    match bound {
        None => [0, 0],
        Some((sort, true)) => [1, sort],
        Some((sort, false)) => [2, sort],
    }
}

/// The store's items of one partition within the span's range, in key order.
fn query(store: &Store, table: u32, span: &Span, partition: u8) -> Rows {
    store
        .iter()
        .filter(|((t, k), _)| *t == table && k[0] == partition && span.contains(k))
        .map(|((_, k), v)| (k.clone(), *v))
        .collect()
}

fn scan(store: &Store, table: u32, every: u8) -> Rows {
    store
        .iter()
        .filter(|((t, k), _)| *t == table && k[1] % (every + 1) == 0)
        .map(|((_, k), v)| (k.clone(), *v))
        .collect()
}

/// The model's side: the store, the TTLs in force, and for every entry the cache may
/// hold the latest expiry it can have (fills set it; writes may refresh an item's). A hit
/// at or past that time is an expired entry served.
struct Model {
    store: Store,
    global: (u64, u64),
    overrides: HashMap<u32, (u64, u64)>,
    item_expiry: HashMap<(u32, Vec<u8>), u64>,
    result_expiry: HashMap<(u32, Vec<u8>), u64>,
}

impl Model {
    fn ttls(&self, table: u32) -> (u64, u64) {
        self.overrides.get(&table).copied().unwrap_or(self.global)
    }

    fn check_item_fresh(&self, table: u32, key: &[u8], now_ms: u64) {
        let expiry = self
            .item_expiry
            .get(&(table, key.to_vec()))
            .copied()
            .unwrap_or(0);
        assert!(
            now_ms < expiry,
            "expired item {table}/{key:?} served at {now_ms}"
        );
    }

    fn check_result_fresh(&self, table: u32, request: &[u8], now_ms: u64) {
        let expiry = self
            .result_expiry
            .get(&(table, request.to_vec()))
            .copied()
            .unwrap_or(0);
        assert!(
            now_ms < expiry,
            "expired result {table}/{request:?} served at {now_ms}"
        );
    }
}

fn run(
    policy: Policy,
    budget_bytes: usize,
    item_ttl_ms: u64,
    query_ttl_ms: u64,
    ops: &[Op],
) -> CacheStats {
    let mut cache = Cache::new(CacheConfig {
        budget_bytes,
        policy,
        item_ttl_ms,
        query_ttl_ms,
    });
    let mut m = Model {
        store: Store::new(),
        global: (item_ttl_ms, query_ttl_ms),
        overrides: HashMap::new(),
        item_expiry: HashMap::new(),
        result_expiry: HashMap::new(),
    };
    let mut now_ms = 0u64;
    let mut version = 0u64;
    for op in ops {
        match op.clone() {
            Op::Put { table, key, bytes } => {
                version += 1;
                m.store.insert((table, key.clone()), version);
                let b = blob(Some(version));
                cache.write_item_inline(
                    table,
                    partition_hash(key[0]),
                    &key,
                    Some(version),
                    &b,
                    bytes.max(b.len()),
                    now_ms,
                );
                m.item_expiry.insert((table, key), now_ms + m.ttls(table).0);
            }
            Op::Delete { table, key } => {
                m.store.remove(&(table, key.clone()));
                cache.write_item(table, partition_hash(key[0]), &key, None, 0, now_ms);
                m.item_expiry.insert((table, key), now_ms + m.ttls(table).0);
            }
            Op::Get {
                table,
                key,
                bytes,
                recheck,
            } => {
                let stored = m.store.get(&(table, key.clone())).copied();
                match cache.get_item_ref(table, &key, now_ms) {
                    Lookup::Hit((cached, entry)) => {
                        assert_eq!(cached, stored, "stale item {table}/{key:?}");
                        assert_eq!(
                            cache.item_blob(entry),
                            Some(&blob(stored)[..]),
                            "stale inline bytes {table}/{key:?}"
                        );
                        m.check_item_fresh(table, &key, now_ms);
                    }
                    Lookup::Bypass => assert_eq!(m.ttls(table).0, 0, "Bypass of an enabled cache"),
                    Lookup::Miss => {
                        assert_ne!(m.ttls(table).0, 0, "Miss from a disabled cache");
                        let b = blob(stored);
                        let bytes = bytes.max(b.len());
                        cache.fill_item_inline(table, &key, stored, &b, bytes, now_ms);
                        m.item_expiry
                            .insert((table, key.clone()), now_ms + m.ttls(table).0);
                        let admissible =
                            Cache::item_charge_bytes(key.len(), bytes) <= cache.max_entry_bytes();
                        if recheck && admissible {
                            assert_eq!(
                                cache.get_item(table, &key, now_ms),
                                Lookup::Hit(stored),
                                "fill lost"
                            );
                        }
                    }
                }
            }
            Op::Query {
                table,
                partition,
                lower,
                upper,
                bytes,
            } => {
                let span = Span {
                    partition: partition_hash(partition),
                    lower: full_key_bound(partition, lower),
                    upper: full_key_bound(partition, upper),
                };
                let mut request = vec![b'Q', partition];
                request.extend(bound_code(lower));
                request.extend(bound_code(upper));
                let expected = query(&m.store, table, &span, partition);
                match cache.get_result(ResultKind::Query, table, &request[1..], now_ms) {
                    Lookup::Hit(rows) => {
                        assert_eq!(rows, &expected, "stale Query {table}/{request:?}");
                        m.check_result_fresh(table, &request, now_ms);
                    }
                    Lookup::Bypass => assert_eq!(m.ttls(table).1, 0, "Bypass of an enabled cache"),
                    Lookup::Miss => {
                        cache.fill_result(
                            ResultKind::Query,
                            table,
                            &request[1..],
                            span,
                            expected,
                            bytes,
                            now_ms,
                        );
                        m.result_expiry
                            .insert((table, request), now_ms + m.ttls(table).1);
                    }
                }
            }
            Op::Scan {
                table,
                every,
                bytes,
            } => {
                let expected = scan(&m.store, table, every);
                let request = [b'S', every];
                match cache.get_result(ResultKind::Scan, table, &request[1..], now_ms) {
                    Lookup::Hit(rows) => {
                        assert_eq!(rows, &expected, "stale Scan {table}/{every}");
                        m.check_result_fresh(table, &request, now_ms);
                    }
                    Lookup::Bypass => assert_eq!(m.ttls(table).1, 0, "Bypass of an enabled cache"),
                    Lookup::Miss => {
                        let span = Span::partition(0);
                        cache.fill_result(
                            ResultKind::Scan,
                            table,
                            &request[1..],
                            span,
                            expected,
                            bytes,
                            now_ms,
                        );
                        m.result_expiry
                            .insert((table, request.to_vec()), now_ms + m.ttls(table).1);
                    }
                }
            }
            Op::Advance(ms) => now_ms += ms,
            Op::SetTtls { table, ttls } => {
                let old = m.ttls(table);
                match ttls {
                    Some(t) => m.overrides.insert(table, t),
                    None => m.overrides.remove(&table),
                };
                let new = m.ttls(table);
                // A shorter TTL drops the table's entries of that cache.
                if new.0 < old.0 {
                    m.item_expiry.retain(|(t, _), _| *t != table);
                }
                if new.1 < old.1 {
                    m.result_expiry.retain(|(t, _), _| *t != table);
                }
                cache.set_table_ttls(
                    table,
                    ttls.map(|(item_ms, query_ms)| Ttls { item_ms, query_ms }),
                );
            }
            Op::DropTable(table) => {
                m.store.retain(|(t, _), _| *t != table);
                m.overrides.remove(&table);
                m.item_expiry.retain(|(t, _), _| *t != table);
                m.result_expiry.retain(|(t, _), _| *t != table);
                cache.drop_table(table);
            }
        }
        cache.check_invariants();
    }
    cache.stats()
}

fn budget() -> impl Strategy<Value = usize> {
    6_000usize..16_000
}

fn global_ttl() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(60), Just(300), Just(10_000)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn s3fifo_never_serves_a_stale_read(
        budget in budget(),
        item_ttl in global_ttl(),
        query_ttl in global_ttl(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        run(Policy::S3Fifo, budget, item_ttl, query_ttl, &ops);
    }

    #[test]
    fn lru_never_serves_a_stale_read(
        budget in budget(),
        item_ttl in global_ttl(),
        query_ttl in global_ttl(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        run(Policy::Lru, budget, item_ttl, query_ttl, &ops);
    }
}

/// The model run is only meaningful if the cache hits, evicts, expires and invalidates:
/// a long run of the same op mix (deterministic seed) must show all of it, per policy.
#[test]
fn the_op_mix_exercises_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let ops: Vec<Op> = (0..3_000)
        .map(|_| op().new_tree(&mut runner).expect("an op").current())
        .collect();
    for policy in [Policy::S3Fifo, Policy::Lru] {
        let s = run(policy, 8_000, 1_000, 300, &ops);
        assert!(
            s.item_hits > 0 && s.query_hits > 0 && s.scan_hits > 0,
            "{policy:?}: {s:?}"
        );
        assert!(s.evictions > 0 && s.expirations > 0, "{policy:?}: {s:?}");
        assert!(
            s.result_invalidations > 0 && s.item_updates > 0,
            "{policy:?}: {s:?}"
        );
        println!(
            "{policy:?}: {s:?}, FIXED_OVERHEAD {}",
            Cache::FIXED_OVERHEAD
        );
    }
}
