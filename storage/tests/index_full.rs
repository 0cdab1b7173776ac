//! A table's index that reaches its key-byte bound refuses new keys with a typed error
//! before anything is appended: the log, the index and recovery stay consistent, keys
//! already present can still be replaced and deleted, and deleting makes room again.
//!
//! The production bound (`limits::KEY_ARENA_LIVE_MAX_BYTES`, ~3.75 GiB of keys) is
//! lowered through `StoreConfig::index_key_bytes_max`; the index's own test
//! (`a_full_arena_refuses_new_keys_before_an_insert_could_fail`) shows that at the real
//! bound no insert can fail.

use tern_storage::sim::{SimDisk, SplitMix};
use tern_storage::store::{Store, StoreConfig, StoreError};

mod common;
use common::{desc, flush_all};

fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 1 << 16,
        index_key_bytes_max: 1000,
        ..StoreConfig::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    // 8-byte hash-like prefix + 12 bytes: 20 bytes a key, so 50 keys fill 1000 bytes.
    let mut k = (u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .to_be_bytes()
        .to_vec();
    k.extend_from_slice(format!("key-{i:08}").as_bytes());
    k
}

#[test]
fn a_full_index_refuses_new_keys_before_appending() {
    let disk = SimDisk::new();
    let (mut store, _) = Store::open(disk.clone(), config()).unwrap();
    let (t, _) = store.create_table(desc("t")).unwrap();
    for i in 0..50 {
        store.put(t, &key(i), b"v", 1).unwrap();
    }
    let before = store.appended_pos();
    let err = store.put(t, &key(50), b"v", 1).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::IndexFull {
                table,
                key_bytes: 1000,
                max: 1000
            } if table == t
        ),
        "{err:?}"
    );
    assert_eq!(
        store.appended_pos(),
        before,
        "nothing appended for a refused write"
    );
    store.check_invariants();
    // A key already present has room; a delete frees room for one more.
    store.put(t, &key(7), b"new", 3).unwrap();
    store.delete(t, &key(8)).unwrap();
    store.put(t, &key(50), b"v", 1).unwrap();
    assert!(matches!(
        store.put(t, &key(51), b"v", 1),
        Err(StoreError::IndexFull { .. })
    ));
    flush_all(&mut store, &disk);
    store.check_invariants();

    // Recovery replays the same 50 keys and applies the bound again.
    let image = disk.crash(&mut SplitMix(1));
    let (mut store, report) = Store::open(image, config()).unwrap();
    assert!(report.corruption.is_none(), "{report:?}");
    assert_eq!(report.items, 50);
    let (k7, k8) = (key(7), key(8));
    let (item, _) = store.get(t, &k7).unwrap();
    assert_eq!(item.unwrap().bytes, b"new");
    assert!(store.get(t, &k8).unwrap().0.is_none());
    assert!(matches!(
        store.put(t, &key(51), b"v", 1),
        Err(StoreError::IndexFull { .. })
    ));
    store.check_invariants();
}
