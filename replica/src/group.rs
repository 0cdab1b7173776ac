//! One shard's replica, driven over its store: the sans-I/O shard driver that the
//! shard's executor runs in production and the tests run over simulated disks.
//!
//! The caller owns time and I/O: it ticks the group on its clock, steps it with peers'
//! messages, proposes writes, runs the store's flush jobs (the group commit), and after
//! each of those calls [`Group::drive`], then sends the messages it returns, updates the
//! cache for every applied write, and answers the clients whose proposals resolved.
//!
//! `drive` performs every Ready: appends and hard state go into the store at once;
//! "persist through Ready n" becomes "the store's log durable through the position it had
//! then" — one group commit covers every Ready since the last, and the messages Raft
//! holds until persistence (votes, append acknowledgements) go out once it is; committed
//! entries are applied to the store in order (each applies the record already in the
//! log) and reported with their effect.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use raft::eraftpb::Message;
use tern_storage::disk::Disk;
use tern_storage::store::{Applied, LogPos, Store};

use crate::log::LogError;
use crate::replica::{ProposeError, Replica, Resolution};
use crate::store_log::{SharedStore, StoreLog};

/// One applied entry and what it did to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    /// The entry's data (`format::EntryData`; empty for Raft's own entries): the key and
    /// item a cache writes through.
    pub data: Vec<u8>,
    pub effect: Applied,
}

/// What a [`Group::drive`] leaves the caller to do.
#[derive(Debug, Default)]
pub struct Progress {
    /// Send, in order.
    pub messages: Vec<Message>,
    /// Applied to the store, in order: update caches (write-through on every replica).
    pub applied: Vec<AppliedEntry>,
    /// Proposals decided: answer their clients.
    pub resolved: Vec<Resolution>,
    /// A snapshot replaced the store's state (drop caches): its index.
    pub snapshot: Option<u64>,
    /// Linearizable reads whose index is known: (token, index). Answer each once the
    /// store has applied through its index (`Store::raft_applied`).
    pub reads: Vec<(u64, u64)>,
    /// The store holds appended records that must be made durable (run the flusher).
    pub needs_flush: bool,
    /// Membership changes applied, with their context (see [`Output::conf_changes`]).
    ///
    /// [`Output::conf_changes`]: crate::replica::Output::conf_changes
    pub conf_changes: Vec<raft::eraftpb::ConfChangeV2>,
}

/// A shard's replica over its store.
pub struct Group<D: Disk + Clone, S: SharedStore<D> = Rc<RefCell<Store<D>>>> {
    replica: Replica<StoreLog<D, S>>,
    store: S,
    /// Readies appended and not yet durable: (number, log position that makes them so,
    /// whether it installed a snapshot — durable only once the store says the install
    /// is complete).
    persisting: VecDeque<(u64, LogPos, bool)>,
}

impl<D: Disk + Clone, S: SharedStore<D>> Group<D, S> {
    /// Starts replica `id` of a group of `voters` over `store` (a replicated store,
    /// recovered); `seed` drives its election timeouts.
    pub fn open(id: u64, store: S, voters: &[u64], seed: u64) -> Result<Group<D, S>, raft::Error> {
        let applied = store.get().raft_applied();
        let log = StoreLog::new(store.clone(), voters);
        Ok(Group {
            replica: Replica::new(id, log, applied, seed)?,
            store,
            persisting: VecDeque::new(),
        })
    }

    pub fn replica(&self) -> &Replica<StoreLog<D, S>> {
        &self.replica
    }

    /// Asks the leader to hand leadership to `to` (a voter that is caught up).
    pub fn transfer_leader(&mut self, to: u64) {
        self.replica.transfer_leader(to);
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn tick(&mut self) {
        self.replica.tick();
    }

    pub fn step(&mut self, msg: Message) {
        self.replica.step(msg);
    }

    /// Proposes one store operation (`format::EntryData` bytes); `token` comes back in
    /// its resolution.
    pub fn propose(&mut self, token: u64, data: Vec<u8>) -> Result<(), ProposeError> {
        self.replica.propose(token, data)
    }

    /// Asks for a linearizable read; see [`Replica::read_index`].
    pub fn read_index(&mut self, token: u64) {
        self.replica.read_index(token);
    }

    /// Proposes a membership change (one voter added or removed).
    pub fn propose_conf_change(
        &mut self,
        token: u64,
        cc: raft::eraftpb::ConfChangeV2,
    ) -> Result<(), ProposeError> {
        self.replica.propose_conf_change(token, cc)
    }

    /// Performs all the work Raft has (see the module doc). An error is the store's: the
    /// shard stops, as it does for a failed sync.
    pub fn drive(&mut self) -> Result<Progress, LogError> {
        let mut p = Progress::default();
        loop {
            self.release_persisted(&mut p.messages);
            let out = self.replica.poll()?;
            if out.is_empty() {
                break;
            }
            p.messages.extend(out.messages);
            if let Some(n) = out.persist {
                let pos = self.store.get().appended_pos();
                self.persisting.push_back((n, pos, out.snapshot.is_some()));
            }
            p.snapshot = out.snapshot.or(p.snapshot);
            let mut last = None;
            for c in out.committed {
                let effect = self
                    .store
                    .get_mut()
                    .apply_entry(c.index)
                    .map_err(|e| LogError(e.to_string()))?;
                last = Some(c.index);
                p.applied.push(AppliedEntry {
                    index: c.index,
                    term: c.term,
                    data: c.data,
                    effect,
                });
            }
            if let Some(last) = last {
                self.replica.applied(last);
            }
            p.resolved.extend(out.resolved);
            p.reads.extend(out.reads);
            p.conf_changes.extend(out.conf_changes);
        }
        p.needs_flush = !self.persisting.is_empty();
        Ok(p)
    }

    /// Tells the replica about every Ready the store's log now covers.
    fn release_persisted(&mut self, messages: &mut Vec<Message>) {
        let (durable, installing) = {
            let store = self.store.get();
            (store.durable_pos(), store.snapshot_pending())
        };
        let mut last = None;
        while let Some(&(n, pos, snapshot)) = self.persisting.front() {
            if pos > durable || (snapshot && installing) {
                break;
            }
            self.persisting.pop_front();
            last = Some(n);
        }
        if let Some(n) = last {
            messages.extend(self.replica.on_persisted(n));
        }
    }
}
