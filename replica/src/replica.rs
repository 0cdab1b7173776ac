//! One replica of a shard's Raft group, driven sans-I/O: the caller ticks it, steps it
//! with peers' messages, proposes writes, and performs what [`Replica::poll`] returns —
//! send these messages, make the log durable through this Ready, apply these committed
//! entries. Production (the shard's executor) and the deterministic simulator
//! (`replica/tests/sim.rs`) run this same code.
//!
//! Persistence is asynchronous (raft-rs `advance_append_async` / `on_persist_ready`, as
//! TiKV's raftstore does): a Ready's entries and hard state go into the log at once and
//! become durable with the next group commit, which covers every Ready that arrived
//! meanwhile. A leader sends its appends before its own copy is durable (Raft thesis
//! §10.2.1); anything a follower or candidate says (votes, append acknowledgements) is
//! held until the Ready that produced it is durable.
//!
//! A proposal is acknowledged when its entry is applied with the term it was proposed
//! in; if another entry took its index (a new leader overrode it), it is reported lost —
//! never applied, so safe to retry.

use std::collections::VecDeque;
use tern_storage::sim::SplitMix;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeV2};
use raft::eraftpb::{Entry, EntryType, Message};
use raft::{Config, GetEntriesContext, RawNode, StateRole};

use crate::log::{LogError, ReplicaLog};

/// Ticks a follower waits without hearing from a leader before it (pre-)campaigns, and
/// between a leader's heartbeats. The driver ticks every `TICK` of its clock.
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 2;
const _: () = assert!(
    HEARTBEAT_TICKS * 3 <= ELECTION_TICKS,
    "heartbeats well within an election timeout"
);

/// raft-rs draws each election timeout from `[min, max)` with the thread's random
/// generator, which no seed controls. It is configured to the one value `2 * E`
/// (`E = ELECTION_TICKS`) instead, and whenever a non-leader's election clock restarts
/// (raft-rs sets it to 0), the replica starts it at `r` drawn from `[0, E)` with its own
/// seeded generator: the timeout is then `2E - r`, in `(E, 2E]` — the usual spread,
/// reproducible from the seed in the simulator.
const TIMEOUT_TICKS: usize = 2 * ELECTION_TICKS;

/// Largest append message, and appends in flight to one follower.
pub const MAX_MSG_BYTES: u64 = 1 << 20;
pub const MAX_INFLIGHT_MSGS: usize = 256;

/// Why a proposal was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica does not lead; `leader` is the one it knows of (0: none).
    NotLeader { leader: u64 },
    /// The leader refused it for now (e.g. a leadership transfer): retry.
    Dropped,
}

/// What became of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Applied at this index.
    Applied { token: u64, index: u64 },
    /// Another entry took its index: it was never applied, and never will be.
    Lost { token: u64 },
    /// A snapshot replaced this replica's log before the proposal's fate was known
    /// here: it may or may not have been applied ("outcome unknown").
    Unknown { token: u64 },
}

/// A committed entry to apply, in index order.
#[derive(Debug, Clone)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    /// The proposal's bytes; empty for a new leader's empty entry and for configuration
    /// changes (which the replica applies itself).
    pub data: Vec<u8>,
}

/// The work a [`Replica::poll`] hands the driver.
#[derive(Debug, Default)]
pub struct Output {
    /// Send now, in order.
    pub messages: Vec<Message>,
    /// Make the log durable through everything appended so far, then call
    /// [`Replica::on_persisted`] with this number.
    pub persist: Option<u64>,
    /// Apply these, then call [`Replica::applied`] with the last index.
    pub committed: Vec<Committed>,
    /// Proposals whose fate the committed entries decided.
    pub resolved: Vec<Resolution>,
    /// A snapshot this Ready installed (its index): the state machine was replaced
    /// wholesale (drop caches); it counts as durable once the log says so.
    pub snapshot: Option<u64>,
    /// Linearizable reads ready: (token, read index). Serve the read once the state
    /// machine has applied through the index.
    pub reads: Vec<(u64, u64)>,
    /// Membership changes applied (in `committed` order), with their context: the
    /// transport learns a new member's address from it.
    pub conf_changes: Vec<ConfChangeV2>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_none()
            && self.committed.is_empty()
            && self.resolved.is_empty()
            && self.reads.is_empty()
            && self.snapshot.is_none()
            && self.conf_changes.is_empty()
    }
}

struct Pending {
    index: u64,
    term: u64,
    token: u64,
}

/// One replica; see the module doc.
pub struct Replica<L: ReplicaLog> {
    node: RawNode<L>,
    /// SplitMix64 state for election timeouts (see `TIMEOUT_TICKS`).
    jitter: SplitMix,
    /// Readies appended but not yet durable, oldest first, with the messages that may be
    /// sent only once they are.
    /// (Ready number, messages held until it is durable, the snapshot index it
    /// installed).
    unpersisted: VecDeque<(u64, Vec<Message>, Option<u64>)>,
    /// Proposals not yet resolved, in index order.
    pending: VecDeque<Pending>,
    /// Proposals found lost when a newer one took their index; reported by `poll`.
    overwritten: Vec<Resolution>,
}

impl<L: ReplicaLog> Replica<L> {
    /// A replica with id `id` over `log` (which holds the group's voters); `applied` is
    /// the index its state machine already holds (0 to be given every committed entry);
    /// `seed` drives its election timeouts (give each process its own).
    pub fn new(id: u64, log: L, applied: u64, seed: u64) -> Result<Replica<L>, raft::Error> {
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            min_election_tick: TIMEOUT_TICKS,
            max_election_tick: TIMEOUT_TICKS + 1,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied,
            max_size_per_msg: MAX_MSG_BYTES,
            max_inflight_msgs: MAX_INFLIGHT_MSGS,
            pre_vote: true,
            check_quorum: true,
            ..Config::default()
        };
        config.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let conf_index = log.conf_index();
        let mut node = RawNode::new(&config, log, &logger)?;
        // Configuration changes applied after the recorded configuration (its record
        // may not have become durable before a crash) are applied again, in order.
        if conf_index < applied {
            let first = node.store().first_index()?.max(conf_index + 1);
            let entries =
                node.store()
                    .entries(first, applied + 1, None, GetEntriesContext::empty(false))?;
            for e in entries {
                if let Some(cc) = conf_change(&e)? {
                    node.apply_conf_change(&cc)?;
                }
            }
        }
        let mut replica = Replica {
            node,
            jitter: SplitMix(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            unpersisted: VecDeque::new(),
            pending: VecDeque::new(),
            overwritten: Vec::new(),
        };
        replica.rejitter();
        Ok(replica)
    }

    /// Gives a non-leader whose election clock just restarted its random head start.
    fn rejitter(&mut self) {
        let raft = &mut self.node.raft;
        if raft.state == StateRole::Leader || raft.election_elapsed != 0 {
            return;
        }
        raft.election_elapsed = self.jitter.below(ELECTION_TICKS as u64) as usize;
    }

    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of (0: none), and the current term.
    pub fn leader(&self) -> (u64, u64) {
        (self.node.raft.leader_id, self.node.raft.term)
    }

    /// raft-rs's view of the group from here (a leader's includes each replica's
    /// progress): for `tern cluster` and for diagnostics.
    pub fn status(&self) -> raft::Status<'_> {
        self.node.status()
    }

    /// The last index in this replica's log.
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// The commit index this replica knows.
    pub fn commit(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    pub fn log(&self) -> &L {
        self.node.store()
    }

    /// One tick of the replica's clock. Frozen while a snapshot install is not durable:
    /// raft-rs would consider campaigning from an applied index the install has already
    /// replaced (the same rule TiKV follows while it applies a snapshot).
    pub fn tick(&mut self) {
        if self.unpersisted.iter().any(|(_, _, snap)| snap.is_some()) {
            return;
        }
        self.node.tick();
        self.rejitter();
    }

    /// A message from a peer. Messages for another group member, from an older term or
    /// otherwise out of place are dropped by Raft; one Raft refuses is dropped here.
    pub fn step(&mut self, msg: Message) {
        // raft-rs refuses local message types and peers it does not know; either is a
        // peer's (or the network's) fault, not ours, and changes nothing.
        let _ = self.node.step(msg);
        self.rejitter();
    }

    /// Proposes `data` as a write; `token` comes back in its [`Resolution`].
    pub fn propose(&mut self, token: u64, data: Vec<u8>) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.node.raft.leader_id,
            });
        }
        let before = self.node.raft.raft_log.last_index();
        if self.node.propose(Vec::new(), data).is_err() {
            return Err(ProposeError::Dropped);
        }
        let index = self.node.raft.raft_log.last_index();
        debug_assert_eq!(index, before + 1, "one proposal, one entry");
        self.track(token, index);
        Ok(())
    }

    /// Asks for a linearizable read (Raft's read index, `ReadOnlyOption::Safe`: the
    /// leader confirms it still leads with a heartbeat round, so no clock is trusted).
    /// On a follower the request goes to the leader. `token` comes back in
    /// [`Output::reads`] with the index to wait for; a read that never comes back (the
    /// leader changed) is retried by the caller.
    pub fn read_index(&mut self, token: u64) {
        self.node.read_index(token.to_le_bytes().to_vec());
    }

    /// Proposes a membership change (add or remove one voter: a simple, non-joint
    /// change); `token` comes back in its [`Resolution`].
    pub fn propose_conf_change(
        &mut self,
        token: u64,
        cc: ConfChangeV2,
    ) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.node.raft.leader_id,
            });
        }
        let before = self.node.raft.raft_log.last_index();
        if self.node.propose_conf_change(Vec::new(), cc).is_err() {
            return Err(ProposeError::Dropped);
        }
        let index = self.node.raft.raft_log.last_index();
        if index == before {
            return Err(ProposeError::Dropped);
        }
        self.track(token, index);
        Ok(())
    }

    /// On a leader: hands leadership to `to` once it is caught up (raft-rs's leader
    /// transfer, which stops taking proposals meanwhile: they return `Dropped`). Anywhere
    /// else: nothing.
    pub fn transfer_leader(&mut self, to: u64) {
        if self.is_leader() && to != self.id() {
            self.node.transfer_leader(to);
        }
    }

    /// The group's voters as this replica knows them.
    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.node.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    /// Tracks a proposal at `index`. Proposals of an earlier term of this replica's
    /// leadership at this index or after were overwritten (another leader's entries
    /// replaced them, and this one now takes the index): they are lost, and `pending`
    /// stays in index order.
    fn track(&mut self, token: u64, index: u64) {
        while self.pending.back().is_some_and(|p| p.index >= index) {
            let p = self.pending.pop_back().expect("back exists");
            self.overwritten.push(Resolution::Lost { token: p.token });
        }
        self.pending.push_back(Pending {
            index,
            term: self.node.raft.term,
            token,
        });
    }

    /// Collects the work Raft has for the driver (see [`Output`]). An error is the log's:
    /// the replica is unusable from then on (the shard stops, as for a failed sync).
    pub fn poll(&mut self) -> Result<Output, LogError> {
        let mut out = Output {
            resolved: std::mem::take(&mut self.overwritten),
            ..Output::default()
        };
        if !self.node.has_ready() {
            return Ok(out);
        }
        let mut rd = self.node.ready();
        out.messages = rd.take_messages();
        for rs in rd.take_read_states() {
            if let Ok(ctx) = <[u8; 8]>::try_from(&rs.request_ctx[..]) {
                out.reads.push((u64::from_le_bytes(ctx), rs.index));
            }
        }
        // A snapshot from the leader replaces the log (this replica was behind the
        // leader's retained log): install it first; proposals it overtook have an
        // unknown fate here.
        let mut snapshot = None;
        if !rd.snapshot().is_empty() {
            let index = rd.snapshot().get_metadata().index;
            self.node.mut_store().apply_snapshot(rd.snapshot())?;
            while self.pending.front().is_some_and(|p| p.index <= index) {
                let p = self.pending.pop_front().expect("front exists");
                out.resolved.push(Resolution::Unknown { token: p.token });
            }
            out.snapshot = Some(index);
            snapshot = Some(index);
        }
        for e in rd.take_committed_entries() {
            self.commit_entry(e, &mut out)?;
        }
        let store = self.node.mut_store();
        store.append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs)?;
        }
        let number = rd.number();
        let held = rd.take_persisted_messages();
        self.node.advance_append_async(rd);
        self.unpersisted.push_back((number, held, snapshot));
        out.persist = Some(number);
        Ok(out)
    }

    /// The log is durable through Ready `number` (and every earlier one): returns the
    /// messages that were waiting for it. Call [`Replica::poll`] after: entries may now
    /// be committed.
    pub fn on_persisted(&mut self, number: u64) -> Vec<Message> {
        let mut msgs = Vec::new();
        let mut installed = None;
        while let Some((n, _, _)) = self.unpersisted.front() {
            if *n > number {
                break;
            }
            let (_, held, snapshot) = self.unpersisted.pop_front().expect("front exists");
            msgs.extend(held);
            installed = snapshot.or(installed);
        }
        self.node.on_persist_ready(number);
        // The state machine is the snapshot's now.
        if let Some(index) = installed {
            self.node.advance_apply_to(index);
        }
        msgs
    }

    /// The state machine holds every entry through `index`.
    pub fn applied(&mut self, index: u64) {
        self.node.advance_apply_to(index);
    }

    fn commit_entry(&mut self, e: Entry, out: &mut Output) -> Result<(), LogError> {
        while let Some(p) = self.pending.front() {
            if p.index > e.index {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            out.resolved
                .push(if p.index == e.index && p.term == e.term {
                    Resolution::Applied {
                        token: p.token,
                        index: e.index,
                    }
                } else {
                    Resolution::Lost { token: p.token }
                });
        }
        // Membership changes are applied by the replica and their configuration
        // recorded; the state machine sees an empty entry.
        let data = match conf_change(&e).map_err(|err| LogError(err.to_string()))? {
            Some(cc) => {
                let cs = self
                    .node
                    .apply_conf_change(&cc)
                    .map_err(|err| LogError(format!("applying a configuration change: {err}")))?;
                self.node.mut_store().set_conf_state(&cs, e.index)?;
                out.conf_changes.push(cc);
                Vec::new()
            }
            None => e.data.to_vec(),
        };
        out.committed.push(Committed {
            index: e.index,
            term: e.term,
            data,
        });
        Ok(())
    }
}

/// The configuration change an entry carries, if it is one.
fn conf_change(e: &Entry) -> Result<Option<ConfChangeV2>, raft::Error> {
    Ok(match e.get_entry_type() {
        EntryType::EntryNormal => None,
        EntryType::EntryConfChange => {
            // A v1 change is one v2 change (raft-rs converts the same way).
            let v1 = ConfChange::parse_from_bytes(&e.data)?;
            let mut single = ConfChangeSingle::default();
            single.set_change_type(v1.get_change_type());
            single.node_id = v1.node_id;
            Some(ConfChangeV2 {
                changes: vec![single].into(),
                context: v1.context,
                ..ConfChangeV2::default()
            })
        }
        EntryType::EntryConfChangeV2 => Some(ConfChangeV2::parse_from_bytes(&e.data)?),
    })
}
