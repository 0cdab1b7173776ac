//! Storage index lookups at realistic sizes: GetItem's point lookup and a Query page,
//! with real index keys (hash ‖ pk length ‖ pk), 1 M items of 100 B.

use std::hint::black_box;
use std::ops::Bound;

use criterion::{Criterion, criterion_group, criterion_main};
use tern_protocol::keys::{KeyRef, encode_index_key, partition_hash};
use tern_storage::index::{Index, Loc, Slot};
use tern_storage::{StoredItem, Table};

const ITEMS: u64 = 1_000_000;

fn index_key(i: u64) -> Vec<u8> {
    let pk = format!("user{i:012}");
    let k = KeyRef::S(&pk);
    let mut out = Vec::new();
    encode_index_key(partition_hash("usertable", k), k, None, &mut out);
    out
}

fn bench(c: &mut Criterion) {
    let mut table = Table::new();
    let item = vec![7u8; 100];
    for i in 0..ITEMS {
        table.put(&index_key(i), StoredItem::new(&item, 100));
    }
    // Look-ups in a random order, so the cache sees what a uniform workload gives it.
    let keys: Vec<Vec<u8>> = (0..4096u64)
        .map(|i| index_key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % ITEMS))
        .collect();
    let mut g = c.benchmark_group("storage_1M");
    g.measurement_time(std::time::Duration::from_secs(3));
    let mut n = 0usize;
    g.bench_function("get_hit_random", |b| {
        b.iter(|| {
            n = (n + 1) & 4095;
            black_box(table.get(black_box(&keys[n])).map(|i| i.bytes().len()))
        })
    });
    g.bench_function("get_hit_same_key", |b| {
        b.iter(|| black_box(table.get(black_box(&keys[7])).is_some()))
    });
    g.bench_function("range_100_from_random_start", |b| {
        b.iter(|| {
            n = (n + 1) & 4095;
            let start = keys[n].as_slice();
            black_box(
                table
                    .range(Bound::Included(start), Bound::Unbounded)
                    .take(100)
                    .count(),
            )
        })
    });
    g.finish();
}

/// The same look-ups on the log store's index (key → record location).
fn bench_index(c: &mut Criterion) {
    let mut index = Index::new();
    for i in 0..ITEMS {
        let loc = Loc {
            segment: (i >> 20) as u32,
            offset: i as u32,
            len: 100,
        };
        index.insert(
            &index_key(i),
            Slot {
                loc,
                size_bytes: 100,
            },
        );
    }
    let keys: Vec<Vec<u8>> = (0..4096u64)
        .map(|i| index_key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % ITEMS))
        .collect();
    let mut g = c.benchmark_group("index_1M");
    g.measurement_time(std::time::Duration::from_secs(3));
    let mut n = 0usize;
    g.bench_function("get_hit_random", |b| {
        b.iter(|| {
            n = (n + 1) & 4095;
            black_box(index.get(black_box(&keys[n])).map(|s| s.size_bytes))
        })
    });
    g.bench_function("range_100_from_random_start", |b| {
        b.iter(|| {
            n = (n + 1) & 4095;
            let start = keys[n].as_slice();
            black_box(
                index
                    .range(Bound::Included(start), Bound::Unbounded)
                    .take(100)
                    .count(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_index);
criterion_main!(benches);
