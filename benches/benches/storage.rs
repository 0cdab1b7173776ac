//! Storage at realistic sizes: GetItem's point lookup and a Query page, with real index
//! keys (hash ‖ pk length ‖ pk), 1 M items of 100 B — through the whole store (index +
//! mmap'd log) and through the index alone.

use std::hint::black_box;
use std::ops::Bound;

use criterion::{Criterion, criterion_group, criterion_main};
use glommio::{LocalExecutorBuilder, Placement};
use tern_protocol::keys::{KeyRef, encode_index_key, partition_hash};
use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::flush::run_job;
use tern_storage::glommio_disk::GlommioDisk;
use tern_storage::index::{Index, Loc, Slot};
use tern_storage::store::{Durability, Store, StoreConfig};

const ITEMS: u64 = 1_000_000;

fn index_key(i: u64) -> Vec<u8> {
    let pk = format!("user{i:012}");
    let k = KeyRef::S(&pk);
    let mut out = Vec::new();
    encode_index_key(partition_hash("usertable", k), k, None, &mut out);
    out
}

/// GetItem's store path end to end: index lookup, then the item bytes as a slice of the
/// mmap'd log (flushed to a real file first), 1 M items of 100 B.
fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    // The store's disk needs a glommio executor (io_uring); criterion runs inside it.
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("executor");
    executor.run(async move {
        let disk = GlommioDisk::open(&path).expect("disk");
        let config = StoreConfig {
            durability: Durability::None,
            checkpoint_every_bytes: u64::MAX / 2,
            ..StoreConfig::default()
        };
        let (mut store, _) = Store::open(disk.clone(), config).expect("open");
        let (t, _) = store.create_table(table_desc()).expect("create");
        let item = vec![7u8; 100];
        for i in 0..ITEMS {
            store.put(t, &index_key(i), &item, 100).expect("put");
            while let Some(job) = store.next_flush() {
                let r = run_job(&disk, job).await;
                store.finish_flush(r);
            }
        }
        let keys: Vec<Vec<u8>> = (0..4096u64)
            .map(|i| index_key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % ITEMS))
            .collect();
        let mut g = c.benchmark_group("store_1M");
        g.measurement_time(std::time::Duration::from_secs(3));
        let mut n = 0usize;
        g.bench_function("get_hit_random", |b| {
            b.iter(|| {
                n = (n + 1) & 4095;
                let (item, _) = store.get(t, black_box(&keys[n])).expect("get");
                black_box(item.map(|i| i.bytes.len()))
            })
        });
        g.bench_function("range_100_from_random_start", |b| {
            b.iter(|| {
                n = (n + 1) & 4095;
                let start = keys[n].as_slice();
                let items = store
                    .range(t, Bound::Included(start), Bound::Unbounded)
                    .expect("range");
                black_box(
                    items
                        .take(100)
                        .map(|i| i.map_or(0, |i| i.bytes.len()))
                        .sum::<usize>(),
                )
            })
        });
        g.finish();
    });
}

fn table_desc() -> TableDesc {
    TableDesc {
        table_id: 0,
        name: "usertable".into(),
        partition_key: KeyAttrDesc {
            name: "ycsb_key".into(),
            ty: KeyType::S,
        },
        sort_key: None,
        creation_time_ms: 0,
    }
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

criterion_group!(benches, bench_store, bench_index);
criterion_main!(benches);
