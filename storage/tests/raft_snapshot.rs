//! Installing a snapshot on a replica, crash-tested: a follower with its own (partly
//! divergent) history installs a leader's applied state, appends entries after it, and
//! runs its flusher and upkeep lane step by step; a crash at every point must recover
//! either exactly the state before the install (the install never completed; nothing
//! after it was acknowledged) or the installed one — and only the installed one once
//! the install reported itself complete. Plus the snapshot encoding's round trip, and
//! its decoder on damaged input.

use std::collections::BTreeMap;
use std::ops::Bound;

use tern_storage::format::{EntryData, HardState, RecordKind};
use tern_storage::sim::{SimDisk, SplitMix};
use tern_storage::store::{SnapshotState, Store, StoreConfig};

mod common;
use common::{IoLane, desc, flush_all};

type Items = BTreeMap<Vec<u8>, Vec<u8>>;

fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 8192,
        checkpoint_every_bytes: u64::MAX / 2,
        compact_dead_ratio: 0.2,
        replicated: true,
        raft_retained_entries: 10,
        ..StoreConfig::default()
    }
}

fn items(store: &Store<SimDisk>) -> Items {
    if store.table(1).is_err() {
        return Items::new();
    }
    store
        .range(1, Bound::Unbounded, Bound::Unbounded)
        .expect("readable")
        .map(|i| i.expect("record"))
        .map(|i| (i.key.to_vec(), i.bytes.to_vec()))
        .collect()
}

/// A replica that applied `ops` writes (and appended `tail` more, uncommitted, in a
/// later term) after creating table 1; `salt` makes the values its own.
fn replica(ops: u64, tail: u64, salt: u8) -> (SimDisk, Store<SimDisk>) {
    let disk = SimDisk::new();
    let (mut store, _) = Store::open(disk.clone(), config()).unwrap();
    let mut d = desc("alpha");
    d.table_id = 1;
    let create = d.encode();
    let put = common::append_entry;
    put(&mut store, 1, 1, RecordKind::CreateTable, &[], &create);
    for i in 0..ops {
        let key = [&(i % 20).to_be_bytes()[..], b"k"].concat();
        let value = vec![salt.wrapping_add(i as u8); 30 + (i as usize % 50)];
        let kind = if i % 7 == 3 {
            RecordKind::Delete
        } else {
            RecordKind::Put
        };
        let v: &[u8] = if kind == RecordKind::Put { &value } else { &[] };
        put(&mut store, i + 2, 1, kind, &key, v);
    }
    flush_all(&mut store, &disk);
    let commit = ops + 1;
    store
        .set_hard_state(HardState {
            term: 1,
            vote: 1,
            commit,
        })
        .unwrap();
    while store.raft_applied() < commit {
        let e = store.raft_applied() + 1;
        store.apply_entry(e).unwrap();
    }
    for i in 0..tail {
        let key = [&(100 + i).to_be_bytes()[..], b"k"].concat();
        put(
            &mut store,
            commit + 1 + i,
            2,
            RecordKind::Put,
            &key,
            b"uncommitted",
        );
    }
    flush_all(&mut store, &disk);
    (disk, store)
}

#[test]
fn a_snapshot_encodes_round_trip_and_damage_is_a_typed_error() {
    let (_, leader) = replica(80, 0, 1);
    let state = leader.snapshot_state().unwrap();
    assert_eq!(state.tables.len(), 1);
    let bytes = state.encode();
    assert_eq!(SnapshotState::decode(&bytes).unwrap(), state);
    let mut rng = SplitMix(9);
    for cut in 0..bytes.len() {
        assert!(
            SnapshotState::decode(&bytes[..cut]).is_err(),
            "a cut at {cut} decoded"
        );
    }
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(b.len() as u64) as usize;
            b[at] = rng.next_u64() as u8;
        }
        let _ = SnapshotState::decode(&b); // no panic, whatever it says
    }
}

#[test]
fn an_install_is_all_or_nothing_at_every_crash_point() {
    let (_, leader) = replica(120, 0, 1);
    let state = leader.snapshot_state().unwrap();
    let index = leader.raft_applied();
    let term = leader.raft_term(index).unwrap();
    let want = items(&leader);

    // The follower's own state before the install, as recovery finds it.
    let (disk, follower) = replica(30, 4, 50);
    let (before_store, _) = Store::open(disk.crash(&mut SplitMix(1)), config()).unwrap();
    let (before, before_applied) = (items(&before_store), before_store.raft_applied());
    drop(follower);

    let (mut completed, mut discarded, mut kept) = (0, 0, 0);
    for crash_at in 0..60u64 {
        let (disk, mut store) = replica(30, 4, 50);
        store
            .install_snapshot(index, term, b"conf", &state)
            .unwrap();
        assert_eq!(items(&store), want, "the state switches at once");
        assert_eq!(
            (store.raft_first(), store.raft_last(), store.raft_applied()),
            (index + 1, index, index)
        );
        // Entries after the snapshot, as the leader's next appends.
        for i in 0..5 {
            let key = [&(500u64 + i).to_be_bytes()[..], b"k"].concat();
            let data = EntryData {
                kind: RecordKind::Put,
                table_id: 1,
                size_bytes: 1,
                key: &key,
                value: b"n",
            };
            store.append_entries([(term, index + 1 + i, data)]).unwrap();
        }
        let mut io = IoLane::new(2000);
        let mut done_before_crash = false;
        for step in 0..crash_at {
            if step % 2 == 0 {
                io.flush_step(&mut store, &disk);
            } else {
                io.maintenance_step(&mut store, &disk);
            }
            done_before_crash |= !store.snapshot_pending();
            store.check_invariants();
        }
        let image = disk.crash(&mut SplitMix(crash_at));
        let (recovered, report) = Store::open(image, config()).expect("recovery I/O");
        assert!(
            report.corruption.is_none(),
            "crash at {crash_at}: {report:?}"
        );
        recovered.check_invariants();
        if report.discarded_snapshot.is_some() {
            assert!(
                !done_before_crash,
                "crash at {crash_at}: a completed install was discarded"
            );
            assert_eq!(
                items(&recovered),
                before,
                "crash at {crash_at}: not the state before the install"
            );
            assert!(recovered.raft_applied() >= before_applied);
            discarded += 1;
        } else if recovered.raft_applied() >= index {
            assert_eq!(
                items(&recovered)
                    .into_iter()
                    .filter(|(k, _)| k[..8] < 500u64.to_be_bytes()[..])
                    .collect::<Items>(),
                want,
                "crash at {crash_at}: not the installed state"
            );
            assert!(recovered.raft_first() <= index + 1);
            completed += 1;
        } else {
            // The crash came before the install's first records were even written.
            assert!(!done_before_crash);
            assert_eq!(items(&recovered), before, "crash at {crash_at}");
            kept += 1;
        }
    }
    eprintln!(
        "snapshot installs: {completed} completed, {discarded} discarded, {kept} never written"
    );
    assert!(
        completed > 0 && discarded + kept > 0,
        "both outcomes were reached"
    );
}
