//! proptest: random puts, deletes, gets and range queries, with restarts, checkpoints and
//! compactions in between, against a `BTreeMap` model. Every read must equal the model.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::disk::Disk;
use tern_storage::flush::run_job;
use tern_storage::sim::SimDisk;
use tern_storage::store::{Store, StoreConfig};

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, u16),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    Range(Vec<u8>, Vec<u8>, bool),
    Flush,
    Restart,
    Checkpoint,
    Compact,
}

/// Few partitions, several sort keys each: collisions in the prefix are the common case.
fn key() -> impl Strategy<Value = Vec<u8>> {
    (0u64..6, proptest::collection::vec(0u8..4, 0..3)).prop_map(|(p, rest)| {
        let mut k = (p * 0x2F00_0000_0000_0001).to_be_bytes().to_vec();
        k.extend(rest);
        k
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), 0u16..400).prop_map(|(k, n)| Op::Put(k, n)),
        2 => key().prop_map(Op::Delete),
        3 => key().prop_map(Op::Get),
        2 => (key(), key(), any::<bool>()).prop_map(|(a, b, rev)| Op::Range(a, b, rev)),
        2 => Just(Op::Flush),
        1 => Just(Op::Restart),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Compact),
    ]
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

fn value(n: u16) -> Vec<u8> {
    let mut v = n.to_le_bytes().to_vec();
    v.resize(2 + n as usize, n as u8);
    v
}

fn flush(store: &mut Store<SimDisk>, disk: &SimDisk) {
    while let Some(job) = store.next_flush() {
        let r = block_on(run_job(disk, job));
        store.finish_flush(r);
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 4096,
        checkpoint_every_bytes: u64::MAX / 2,
        compact_dead_ratio: 0.2,
        ..StoreConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn store_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..300)) {
        let disk = SimDisk::new();
        let (mut store, _) = Store::open(disk.clone(), config()).unwrap();
        let desc = TableDesc {
            table_id: 0,
            name: "t".into(),
            partition_key: KeyAttrDesc { name: "pk".into(), ty: KeyType::B },
            sort_key: None,
            creation_time_ms: 0,
        };
        let (t, _) = store.create_table(desc).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        // Slots kept outside the index, as the server's item cache keeps them: filled by
        // gets and puts, never told about compaction. `try_item_at` must either give
        // exactly the model's bytes or say the segment is gone.
        let mut kept: BTreeMap<Vec<u8>, tern_storage::index::Slot> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, n) => {
                    let (slot, old) = store.put_slot(t, &k, &value(n), n as u32).unwrap();
                    let old = old.map(|s| store.item_at(s).unwrap().to_vec());
                    kept.insert(k.clone(), slot);
                    prop_assert_eq!(old, model.insert(k, value(n)));
                }
                Op::Delete(k) => {
                    kept.remove(&k);
                    let (_, old) = store.delete(t, &k).unwrap();
                    let old = old.map(|s| store.item_at(s).unwrap().to_vec());
                    prop_assert_eq!(old, model.remove(&k));
                }
                Op::Get(k) => {
                    if let Some(&slot) = kept.get(&k)
                        && let Some(bytes) = store.try_item_at(slot)
                    {
                        prop_assert_eq!(Some(bytes.unwrap().to_vec()), model.get(&k).cloned());
                    }
                    let (item, _) = store.get(t, &k).unwrap();
                    if let Some(i) = &item {
                        kept.insert(k.clone(), i.slot);
                    }
                    prop_assert_eq!(item.map(|i| i.bytes.to_vec()), model.get(&k).cloned());
                }
                Op::Range(a, b, rev) => {
                    let items = store.range(t, Bound::Included(&a), Bound::Excluded(&b)).unwrap();
                    let got: Vec<(Vec<u8>, Vec<u8>)> = if rev {
                        items.rev().map(|i| i.unwrap()).map(|i| (i.key.to_vec(), i.bytes.to_vec())).collect()
                    } else {
                        items.map(|i| i.unwrap()).map(|i| (i.key.to_vec(), i.bytes.to_vec())).collect()
                    };
                    let mut want: Vec<(Vec<u8>, Vec<u8>)> = if a < b {
                        model.range(a.clone()..b.clone()).map(|(k, v)| (k.clone(), v.clone())).collect()
                    } else {
                        Vec::new()
                    };
                    if rev {
                        want.reverse();
                    }
                    prop_assert_eq!(got, want);
                }
                Op::Flush => flush(&mut store, &disk),
                Op::Restart => {
                    flush(&mut store, &disk);
                    drop(store);
                    let (s, report) = Store::open(disk.clone(), config()).unwrap();
                    prop_assert!(report.corruption.is_none(), "{:?}", report);
                    store = s;
                    // Slots do not survive a restart (nor does the server's cache).
                    kept.clear();
                }
                Op::Checkpoint => {
                    let mut job = store.begin_checkpoint();
                    flush(&mut store, &disk);
                    let r = block_on(disk.write_file(&job.file, std::mem::take(&mut job.bytes)));
                    store.checkpoint_written(&job, r);
                }
                Op::Compact => {
                    flush(&mut store, &disk);
                    if let Some(seg) = store.compaction_candidate() {
                        let mut cursor = Some(0);
                        while let Some(at) = cursor {
                            cursor = store.compact_step(seg, at, 300).unwrap();
                        }
                        flush(&mut store, &disk);
                        store.drop_segment(seg).unwrap();
                    }
                }
            }
            store.check_invariants();
            prop_assert_eq!(store.table(t).unwrap().index.len(), model.len());
        }
    }
}
