//! What a replica's Raft log must do, and an in-memory one.
//!
//! [`ReplicaLog`] is raft-rs's `Storage` (read entries, terms, the hard state) plus the
//! writes a Ready asks for: append entries — replacing a conflicting suffix — and record
//! the hard state. Both are readable at once and durable later: the driver makes them
//! durable (a group commit of the shard's log in production) and then tells the replica
//! (`Replica::on_persisted`). That is what raft-rs's asynchronous persistence requires
//! (`advance_append_async`: "the updates can be read by raft from the Storage before").
//!
//! [`MemLog`] keeps it all in memory. The deterministic simulator uses it as each
//! replica's log, keeping a clone as the "disk image" taken at each persist, so that a
//! crash loses exactly what was not persisted. The shard's `Store` is the production
//! implementation (`store_log::StoreLog`: the storage log is the Raft log).

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// The log failed (a stopped store, an entry it cannot hold): the replica stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the replica's log failed: {0}")]
pub struct LogError(pub String);

/// A Raft log a replica can drive; see the module doc.
pub trait ReplicaLog: Storage {
    /// Appends `entries` (consecutive indexes): any entry already at or after the first
    /// one's index is replaced — the conflicting suffix a new leader overrides.
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError>;
    /// Records the hard state (term, vote, commit).
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError>;
    /// Records the configuration the conf-change entry at `index` made.
    fn set_conf_state(&mut self, cs: &ConfState, index: u64) -> Result<(), LogError>;
    /// Replaces the log and the state it backs with a leader's snapshot (durable, like
    /// everything else, once the driver says so).
    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), LogError>;
    /// The entry whose configuration `initial_state` returns (0: the group's first).
    /// Conf changes applied after it are applied again when a replica starts.
    fn conf_index(&self) -> u64;
}

/// `Storage::entries`'s size rule, for every log: entries in order while their bytes
/// stay within `max` — and at least one, however large, as the trait requires.
pub(crate) fn within_budget(
    max: Option<u64>,
    entries: impl Iterator<Item = raft::Result<Entry>>,
) -> raft::Result<Vec<Entry>> {
    let max = max.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    let mut size = 0u64;
    for e in entries {
        let e = e?;
        size += e.data.len() as u64 + e.context.len() as u64 + 16;
        if !out.is_empty() && size > max {
            break;
        }
        out.push(e);
    }
    Ok(out)
}

/// A Raft log in memory, with no compacted prefix (first index 1).
#[derive(Debug, Clone)]
pub struct MemLog {
    hard_state: HardState,
    conf_state: ConfState,
    conf_index: u64,
    /// Entries from index 1, consecutive.
    entries: Vec<Entry>,
}

impl MemLog {
    /// An empty log of a group whose voters are `voters`.
    pub fn new(voters: &[u64]) -> MemLog {
        MemLog {
            hard_state: HardState::default(),
            conf_state: ConfState {
                voters: voters.to_vec(),
                ..ConfState::default()
            },
            conf_index: 0,
            entries: Vec::new(),
        }
    }

    /// The hard state last recorded.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Every entry, from index 1.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn last(&self) -> u64 {
        self.entries.len() as u64
    }
}

impl ReplicaLog for MemLog {
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let at = first.index;
        assert!(
            at >= 1 && at <= self.last() + 1,
            "an append leaves no gap: first {at}, last {}",
            self.last()
        );
        assert!(
            at > self.hard_state.commit,
            "a committed entry is never replaced: append at {at}, commit {}",
            self.hard_state.commit
        );
        self.entries.truncate((at - 1) as usize);
        for (k, e) in entries.iter().enumerate() {
            assert_eq!(e.index, at + k as u64, "appended entries are consecutive");
        }
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.hard_state = hs.clone();
        Ok(())
    }

    fn set_conf_state(&mut self, cs: &ConfState, index: u64) -> Result<(), LogError> {
        self.conf_state = cs.clone();
        self.conf_index = index;
        Ok(())
    }

    fn conf_index(&self) -> u64 {
        self.conf_index
    }

    fn apply_snapshot(&mut self, _snap: &Snapshot) -> Result<(), LogError> {
        // Never compacted, so no leader running this code sends one.
        Err(LogError("a memory log takes no snapshots".into()))
    }
}

impl Storage for MemLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < 1 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let slice = &self.entries[(low - 1) as usize..(high - 1) as usize];
        within_budget(max_size.into(), slice.iter().cloned().map(Ok))
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == 0 {
            return Ok(0);
        }
        self.entries
            .get((idx - 1) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Nothing is ever compacted away, so a follower never needs one; the compacted
        // prefix + index checkpoint as a snapshot comes with the Store-backed log.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Entry::default()
        }
    }

    #[test]
    fn append_replaces_the_conflicting_suffix_and_reads_back() {
        let mut log = MemLog::new(&[1, 2, 3]);
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        log.append(&[entry(2, 2)]).unwrap();
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(1).unwrap(), 1);
        assert_eq!(log.term(2).unwrap(), 2);
        assert!(log.term(3).is_err());
        let got = log
            .entries(1, 3, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 2);
        // A size limit still returns one entry.
        let one = log
            .entries(1, 3, 1, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    #[should_panic(expected = "committed entry is never replaced")]
    fn a_committed_entry_is_never_replaced() {
        let mut log = MemLog::new(&[1]);
        log.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        log.set_hard_state(&HardState {
            commit: 2,
            ..HardState::default()
        })
        .unwrap();
        let _ = log.append(&[entry(2, 2)]);
    }
}
