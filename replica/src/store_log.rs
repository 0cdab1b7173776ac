//! The production Raft log: a shard's [`Store`] in replicated mode (the storage log is
//! the Raft log, `tern_storage::store::raft`), seen through raft-rs's `Storage` and the
//! replica's [`ReplicaLog`].
//!
//! A raft-rs `Entry` and a store record map one to one:
//! * a normal entry with data is a store operation; its data is
//!   `tern_storage::format::EntryData` (what the shard's write seam proposes), and it
//!   becomes the Put / Delete / CreateTable / DeleteTable record it describes;
//! * any other entry (a new leader's empty entry, a configuration change) is a RaftEntry
//!   record whose value is the entry type ‖ its data.
//!
//! The store is shared with the shard that applies committed entries and serves reads
//! (`Rc<RefCell<_>>`, one executor thread): every method here borrows it only for its
//! own duration, so the driver must not hold a borrow across a replica call.

use std::cell::{Ref, RefCell, RefMut};
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use tern_storage::disk::Disk;
use tern_storage::format::{self, EntryData, RecordKind};
use tern_storage::store::{Store, StoreError};

use crate::log::{LogError, ReplicaLog};

/// How a replica's log reaches the store it shares with its shard: borrowed for the
/// duration of one call, never across a replica call. `Rc<RefCell<Store>>` in the
/// tests; the server lends the store inside its shard state.
pub trait SharedStore<D: Disk>: Clone {
    fn get(&self) -> Ref<'_, Store<D>>;
    fn get_mut(&self) -> RefMut<'_, Store<D>>;
}

impl<D: Disk> SharedStore<D> for Rc<RefCell<Store<D>>> {
    fn get(&self) -> Ref<'_, Store<D>> {
        self.borrow()
    }

    fn get_mut(&self) -> RefMut<'_, Store<D>> {
        self.borrow_mut()
    }
}

/// A replica's log over its shard's store.
pub struct StoreLog<D: Disk + Clone, S: SharedStore<D> = Rc<RefCell<Store<D>>>> {
    store: S,
    _disk: std::marker::PhantomData<D>,
    /// The group's voters when the store has never recorded a configuration (a new
    /// group: every node starts with the same list).
    voters: Vec<u64>,
}

impl<D: Disk + Clone, S: SharedStore<D>> StoreLog<D, S> {
    /// `store` must be a replicated store (`StoreConfig::replicated`).
    pub fn new(store: S, voters: &[u64]) -> StoreLog<D, S> {
        assert!(
            store.get().is_replicated(),
            "a Raft log needs a replicated store"
        );
        StoreLog {
            store,
            _disk: std::marker::PhantomData,
            voters: voters.to_vec(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}

/// The record a raft-rs entry becomes, as entry data; `scratch` holds the bytes of a
/// RaftEntry record's value.
fn entry_data<'a>(e: &'a Entry, scratch: &'a mut Vec<u8>) -> Result<EntryData<'a>, LogError> {
    if !e.context.is_empty() {
        return Err(LogError(format!("entry {} carries a context", e.index)));
    }
    if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
        return EntryData::decode(&e.data)
            .map_err(|bad| LogError(format!("entry {}: not a store operation ({bad})", e.index)));
    }
    scratch.clear();
    scratch.push(e.get_entry_type() as u8);
    scratch.extend_from_slice(&e.data);
    Ok(EntryData {
        kind: RecordKind::RaftEntry,
        table_id: 0,
        size_bytes: 0,
        key: &[],
        value: scratch,
    })
}

/// The raft-rs entry a store entry record is.
fn raft_entry(index: u64, term: u64, d: &EntryData<'_>) -> Result<Entry, StoreError> {
    let mut e = Entry {
        index,
        term,
        ..Entry::default()
    };
    if d.kind == RecordKind::RaftEntry {
        let (&ty, data) = d
            .value
            .split_first()
            .ok_or_else(|| StoreError::BadEntry(format!("entry {index}: an empty RaftEntry")))?;
        let ty = match ty {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            other => {
                return Err(StoreError::BadEntry(format!(
                    "entry {index}: Raft entry type {other}"
                )));
            }
        };
        e.set_entry_type(ty);
        e.data = data.to_vec().into();
    } else {
        let mut data = Vec::with_capacity(d.encoded_len());
        d.encode(&mut data);
        e.data = data.into();
    }
    Ok(e)
}

fn store_err(e: StoreError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl<D: Disk + Clone, S: SharedStore<D>> ReplicaLog for StoreLog<D, S> {
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut scratch: Vec<Vec<u8>> = vec![Vec::new(); entries.len()];
        let mut batch = Vec::with_capacity(entries.len());
        for (e, s) in entries.iter().zip(scratch.iter_mut()) {
            batch.push((e.term, e.index, entry_data(e, s)?));
        }
        self.store
            .get_mut()
            .append_entries(batch)
            .map(|_| ())
            .map_err(|e| LogError(e.to_string()))
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.store
            .get_mut()
            .set_hard_state(format::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            })
            .map(|_| ())
            .map_err(|e| LogError(e.to_string()))
    }

    fn set_conf_state(&mut self, cs: &ConfState, index: u64) -> Result<(), LogError> {
        // The record's value: the conf-change entry's index, then the ConfState.
        let mut bytes = index.to_le_bytes().to_vec();
        cs.write_to_vec(&mut bytes)
            .map_err(|e| LogError(format!("encoding a configuration: {e}")))?;
        self.store
            .get_mut()
            .set_conf_state(&bytes)
            .map(|_| ())
            .map_err(|e| LogError(e.to_string()))
    }

    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), LogError> {
        let meta = snap.get_metadata();
        let state = tern_storage::store::SnapshotState::decode(&snap.data)
            .map_err(|e| LogError(e.to_string()))?;
        let mut conf = meta.index.to_le_bytes().to_vec();
        meta.get_conf_state()
            .write_to_vec(&mut conf)
            .map_err(|e| LogError(format!("encoding a configuration: {e}")))?;
        self.store
            .get_mut()
            .install_snapshot(meta.index, meta.term, &conf, &state)
            .map(|_| ())
            .map_err(|e| LogError(e.to_string()))
    }

    fn conf_index(&self) -> u64 {
        let store = self.store.get();
        store
            .raft_conf_state()
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

impl<D: Disk + Clone, S: SharedStore<D>> Storage for StoreLog<D, S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let store = self.store.get();
        let hs = store.raft_hard_state();
        let conf = store.raft_conf_state();
        let conf_state = if conf.is_empty() {
            ConfState {
                voters: self.voters.clone(),
                ..ConfState::default()
            }
        } else {
            conf.get(8..)
                .ok_or_else(|| "a configuration record under 8 bytes".to_string())
                .and_then(|b| ConfState::parse_from_bytes(b).map_err(|e| e.to_string()))
                .map_err(|e| {
                    store_err(StoreError::Corrupt(format!(
                        "the recorded configuration: {e}"
                    )))
                })?
        };
        Ok(RaftState::new(
            HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
                ..HardState::default()
            },
            conf_state,
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let store = self.store.get();
        if low < store.raft_first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > store.raft_last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let entries = (low..high).map(|i| {
            let (term, d) = store.raft_entry(i).map_err(store_err)?;
            raft_entry(i, term, &d).map_err(store_err)
        });
        crate::log::within_budget(max_size.into(), entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let store = self.store.get();
        if let Some(t) = store.raft_term(idx) {
            return Ok(t);
        }
        if idx < store.raft_first() {
            Err(raft::Error::Store(StorageError::Compacted))
        } else {
            Err(raft::Error::Store(StorageError::Unavailable))
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.store.get().raft_first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.store.get().raft_last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let store = self.store.get();
        let index = store.raft_applied();
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        if index < request_index || store.snapshot_pending() {
            return Err(unavailable());
        }
        let state = store.snapshot_state().map_err(store_err)?;
        let data = state.encode();
        // One peer frame carries it (chunked transfer is still to come): a larger shard
        // cannot catch a replica up this way yet.
        if data.len() + 4096 > crate::peer::FRAME_BODY_MAX_BYTES {
            return Err(unavailable());
        }
        let term = store.raft_term(index).ok_or_else(unavailable)?;
        drop(store);
        let conf_state = self.initial_state()?.conf_state;
        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        Ok(snap)
    }
}
