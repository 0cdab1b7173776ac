//! A replicated shard in the server: the shard's Raft group (`tern_replica::Group`, the
//! sans-I/O driver the simulations run) driven by the shard's executor.
//!
//! * **Writes** are proposed here (`Core::replicate`), on the leader only; the reply
//!   waits for the proposal to resolve: applied (after a quorum made it durable and this
//!   replica applied it), lost (another leader's entry took its index: never applied,
//!   retryable) or unknown (a snapshot overtook it, or it timed out: "outcome unknown").
//!   Every replica writes its cache through when it applies an entry, so the cache
//!   stays right on followers too, and the catalog follows applied DDL.
//! * **Followers** pass writes to the leader over the peer connection (a whole client
//!   frame, answered with a whole reply frame); a frame that arrives from a peer is
//!   never passed on again: a replica that stopped leading meanwhile answers
//!   `ServiceUnavailable`, which clients retry.
//! * **ConsistentRead** is Raft's read index from any replica (`Core::read_barrier`): a
//!   follower asks the leader for its commit index, the leader confirms its leadership
//!   with a heartbeat round, and the read runs here once this replica has applied
//!   through that index. Eventually consistent reads are served by every replica from
//!   its cache and store.
//! * **The driver task** runs `Group::drive` whenever something happened (a tick, peer
//!   messages, a proposal, a finished group commit): several proposals that arrive in one
//!   executor turn share one Ready, one append and one sync.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use tern_protocol::frame::{FLAG_FORWARDED, Opcode, write_frame};
use tern_protocol::{ApiError, ErrorCode};
use tern_replica::peer::{Envelope, Payload};
use tern_replica::{Group, Progress, Resolution, SharedStore};
use tern_storage::format::EntryData;
use tern_storage::glommio_disk::GlommioDisk;
use tern_storage::store::{Applied, Store};

use super::{Core, Outcome};
use crate::cache::CachedItem;
use crate::peers::Peers;
use crate::reply;
use crate::shard::{Shard, store_error};

/// The replica's clock: one Raft tick. Election timeouts are 10–20 ticks
/// (`tern_replica::replica::ELECTION_TICKS`), heartbeats every 2.
pub const RAFT_TICK_MS: u64 = 50;
/// How long a follower waits for a leader to be known before answering
/// `ServiceUnavailable` (about two election timeouts).
pub const LEADER_WAIT_MS: u64 = 2_500;
/// A proposal or a request passed to the leader not resolved by then is "outcome unknown".
pub const PROPOSAL_TIMEOUT_MS: u64 = 10_000;
/// One read-index attempt (a leader change loses it; it is asked again) and the total.
pub const READ_INDEX_ATTEMPT_MS: u64 = 500;
pub const READ_INDEX_TIMEOUT_MS: u64 = 5_000;
/// How often a leader checks whether its shard's preferred leader could take over.
pub const LEADER_BALANCE_TICKS: u64 = 20;

const _: () = assert!(READ_INDEX_ATTEMPT_MS < READ_INDEX_TIMEOUT_MS);
// A follower waits out at least two of the longest election timeouts (2E ticks) for a
// leader, and a proposal's timeout is longer still.
const _: () =
    assert!(LEADER_WAIT_MS >= 2 * 2 * tern_replica::replica::ELECTION_TICKS as u64 * RAFT_TICK_MS);
const _: () = assert!(PROPOSAL_TIMEOUT_MS > LEADER_WAIT_MS);

/// How one shard replicates.
#[derive(Debug, Clone)]
pub struct ReplSettings {
    /// This node's replica id (1-based; the AZ's index + 1).
    pub node: u64,
    /// The group's voters when it starts from nothing.
    pub voters: Vec<u64>,
    /// Election-timeout seed (any value; distinct per node keeps elections apart).
    pub seed: u64,
}

/// The store inside the shard, lent to the replica's log one call at a time.
#[derive(Clone)]
pub struct ShardStore(pub Rc<RefCell<Shard>>);

impl SharedStore<GlommioDisk> for ShardStore {
    fn get(&self) -> Ref<'_, Store<GlommioDisk>> {
        Ref::map(self.0.borrow(), |s| &s.store)
    }

    fn get_mut(&self) -> RefMut<'_, Store<GlommioDisk>> {
        RefMut::map(self.0.borrow_mut(), |s| &mut s.store)
    }
}

/// A value one task waits for and another provides.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

type Waiter<T> = Rc<RefCell<Slot<T>>>;

fn waiter<T>() -> Waiter<T> {
    Rc::new(RefCell::new(Slot {
        value: None,
        waker: None,
    }))
}

fn fill<T>(w: &Waiter<T>, value: T) {
    let mut s = w.borrow_mut();
    s.value = Some(value);
    if let Some(waker) = s.waker.take() {
        waker.wake();
    }
}

/// Waits for `w` to be filled, at most `ms`.
async fn wait_for<T>(w: &Waiter<T>, ms: u64) -> Option<T> {
    let filled = std::future::poll_fn(|cx| {
        let mut s = w.borrow_mut();
        match s.value.take() {
            Some(v) => Poll::Ready(Some(v)),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    });
    futures_lite::future::or(filled, async {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        None
    })
    .await
}

/// What an applied proposal did, for its reply.
#[derive(Debug)]
pub struct Done {
    /// Its effect (`None` if the entry had been applied before its resolution reached us).
    pub effect: Option<Applied>,
    /// The item it replaced, when asked for (ReturnValues=ALL_OLD).
    pub old: Option<Vec<u8>>,
}

/// A proposal submitted, to wait on ([`Repl::resolution`]).
pub(super) struct Submitted(u64, Waiter<Result<Done, ApiError>>);

struct Proposal {
    want_old: bool,
    done: Waiter<Result<Done, ApiError>>,
}

struct Read {
    /// The index to have applied, once the leader told it.
    index: Option<u64>,
    done: Waiter<()>,
}

/// A shard's replication state (one per replicated core).
pub struct Repl {
    node: u64,
    shard: u32,
    group: RefCell<Group<GlommioDisk, ShardStore>>,
    peers: RefCell<Option<Rc<Peers>>>,
    next_token: Cell<u64>,
    proposals: RefCell<HashMap<u64, Proposal>>,
    reads: RefCell<HashMap<u64, Read>>,
    forwards: RefCell<HashMap<u64, Waiter<Vec<u8>>>>,
    /// Something happened that the driver must look at.
    kicked: Cell<bool>,
    driver: Cell<Option<Waker>>,
    /// The store failed under the driver: nothing more is proposed.
    failed: RefCell<Option<ApiError>>,
    ticks: Cell<u64>,
}

pub(super) fn not_leader(shard: u32, leader: u64) -> ApiError {
    let who = if leader == 0 {
        "no leader is elected yet".to_owned()
    } else {
        format!("its leader is node {leader}")
    };
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        format!(
            "shard {shard}: this replica does not lead the shard ({who}); the request was not applied: retry"
        ),
    )
}

pub use tern_protocol::error::OUTCOME_UNKNOWN;

fn outcome_unknown(shard: u32, why: &str) -> ApiError {
    ApiError::internal(format!(
        "{OUTCOME_UNKNOWN}: shard {shard}: {why}; the write may or may not have been applied"
    ))
}

impl Repl {
    pub fn open(shard: u32, store: ShardStore, s: &ReplSettings) -> Result<Repl, raft::Error> {
        Ok(Repl {
            node: s.node,
            shard,
            group: RefCell::new(Group::open(s.node, store, &s.voters, s.seed)?),
            peers: RefCell::new(None),
            next_token: Cell::new(1),
            proposals: RefCell::new(HashMap::new()),
            reads: RefCell::new(HashMap::new()),
            forwards: RefCell::new(HashMap::new()),
            kicked: Cell::new(true),
            driver: Cell::new(None),
            failed: RefCell::new(None),
            ticks: Cell::new(0),
        })
    }

    pub fn set_peers(&self, peers: Rc<Peers>) {
        *self.peers.borrow_mut() = Some(peers);
    }

    pub fn peers(&self) -> Option<Rc<Peers>> {
        self.peers.borrow().clone()
    }

    fn token(&self) -> u64 {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    /// Proposes through `propose` (given the group and the proposal's token) and returns
    /// what to wait on for its resolution.
    pub(super) fn submit(
        &self,
        want_old: bool,
        propose: impl FnOnce(
            &mut Group<GlommioDisk, ShardStore>,
            u64,
        ) -> Result<(), tern_replica::ProposeError>,
    ) -> Result<Submitted, ApiError> {
        if let Some(e) = self.failed.borrow().clone() {
            return Err(e);
        }
        let token = self.token();
        let proposed = propose(&mut self.group.borrow_mut(), token);
        match proposed {
            Ok(()) => {
                let done = waiter();
                self.proposals.borrow_mut().insert(
                    token,
                    Proposal {
                        want_old,
                        done: done.clone(),
                    },
                );
                Ok(Submitted(token, done))
            }
            Err(tern_replica::ProposeError::NotLeader { leader }) => {
                Err(not_leader(self.shard, leader))
            }
            Err(tern_replica::ProposeError::Dropped) => Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "shard {}: the leader refused the proposal for now (a leadership transfer or a membership change under way); it was not applied: retry",
                    self.shard
                ),
            )),
        }
    }

    /// Waits for a submitted proposal's resolution (bounded: "outcome unknown" after
    /// `PROPOSAL_TIMEOUT_MS`).
    pub(super) async fn resolution(
        &self,
        Submitted(token, done): Submitted,
    ) -> Result<Done, ApiError> {
        match wait_for(&done, PROPOSAL_TIMEOUT_MS).await {
            Some(r) => r,
            None => {
                self.proposals.borrow_mut().remove(&token);
                Err(outcome_unknown(
                    self.shard,
                    &format!("no quorum confirmed it within {PROPOSAL_TIMEOUT_MS} ms"),
                ))
            }
        }
    }

    /// The group's voters as this replica knows them.
    pub fn voters(&self) -> Vec<u64> {
        self.group.borrow().replica().voters()
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Wakes the driver.
    pub fn kick(&self) {
        self.kicked.set(true);
        if let Some(w) = self.driver.take() {
            w.wake();
        }
    }

    pub fn is_leader(&self) -> bool {
        self.group.borrow().replica().is_leader()
    }

    /// (leader known here, term).
    pub fn leader(&self) -> (u64, u64) {
        self.group.borrow().replica().leader()
    }

    /// Counters for Stats (and `tern cluster`): term, leader, indexes, and on a leader
    /// each replica's matched index.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let g = self.group.borrow();
        let r = g.replica();
        let (leader, term) = r.leader();
        let store = g.store().get();
        let mut out = vec![
            ("RaftNode".to_owned(), self.node),
            ("ProcessId".to_owned(), u64::from(std::process::id())),
            ("RaftTerm".to_owned(), term),
            ("RaftLeader".to_owned(), leader),
            ("RaftIsLeader".to_owned(), u64::from(r.is_leader())),
            ("RaftCommit".to_owned(), r.commit()),
            ("RaftApplied".to_owned(), store.raft_applied()),
            ("RaftLastIndex".to_owned(), r.last_index()),
            ("RaftFirstIndex".to_owned(), store.raft_first()),
        ];
        let status = r.status();
        if let Some(prs) = status.progress {
            let mut ids: Vec<(u64, u64)> = prs.iter().map(|(id, p)| (*id, p.matched)).collect();
            ids.sort_unstable();
            for (id, matched) in ids {
                out.push((format!("RaftMatched{id}"), matched));
            }
        }
        for v in r.voters() {
            out.push((format!("RaftVoter{v}"), 1));
        }
        if let Some(p) = self.peers() {
            let s = p.stats();
            out.extend([
                ("PeerSentMessages".to_owned(), s.sent_messages),
                ("PeerReceivedMessages".to_owned(), s.received_messages),
                ("PeerDroppedMessages".to_owned(), s.dropped_messages),
                ("PeerHandshakesFailed".to_owned(), s.handshakes_failed),
                ("PeerConnections".to_owned(), s.connections),
            ]);
        }
        out
    }
}

impl Core {
    pub(super) fn repl(&self) -> Option<&Repl> {
        self.repl.as_ref()
    }

    /// Whether a consistent read must pass a read barrier first.
    pub(super) fn needs_barrier(&self, consistent: bool) -> bool {
        consistent && self.repl.is_some() && !self.via.get().barrier_done
    }

    /// Proposes store operations (`EntryData` bytes) and waits for each to resolve.
    /// `want_old`: capture the item each replaced.
    pub(super) async fn replicate(
        &self,
        entries: Vec<Vec<u8>>,
        want_old: bool,
    ) -> Vec<Result<Done, ApiError>> {
        let Some(repl) = self.repl() else {
            return entries
                .iter()
                .map(|_| {
                    Err(ApiError::internal(
                        "replicate on a shard that does not replicate",
                    ))
                })
                .collect();
        };
        let waits: Vec<_> = entries
            .into_iter()
            .map(|data| repl.submit(want_old, |g, token| g.propose(token, data)))
            .collect();
        repl.kick();
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(match w {
                Err(e) => Err(e),
                Ok(w) => repl.resolution(w).await,
            });
        }
        out
    }

    /// Waits until this replica has applied everything committed before the call
    /// (Raft's read index): a read after it is linearizable.
    pub(super) async fn read_barrier(&self) -> Result<(), ApiError> {
        let Some(repl) = self.repl() else {
            return Ok(());
        };
        let attempts = READ_INDEX_TIMEOUT_MS / READ_INDEX_ATTEMPT_MS;
        for _ in 0..attempts {
            if let Some(e) = repl.failed.borrow().clone() {
                return Err(e);
            }
            let token = repl.token();
            let done = waiter();
            repl.reads.borrow_mut().insert(
                token,
                Read {
                    index: None,
                    done: done.clone(),
                },
            );
            repl.group.borrow_mut().read_index(token);
            repl.kick();
            if wait_for(&done, READ_INDEX_ATTEMPT_MS).await.is_some() {
                return Ok(());
            }
            // Lost with a leader change (or no leader yet): ask again.
            repl.reads.borrow_mut().remove(&token);
        }
        let (leader, _) = repl.leader();
        Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "shard {}: a consistent read could not confirm the shard's leader within {READ_INDEX_TIMEOUT_MS} ms ({})",
                repl.shard,
                if leader == 0 {
                    "no leader elected".to_owned()
                } else {
                    format!("last known leader: node {leader}")
                }
            ),
        ))
    }

    /// In a replicated shard that this replica does not lead: the outcome that passes
    /// the request (`opcode`, `id`, `body`) to the leader. `None`: execute here.
    pub(super) fn leader_route(
        self: &Rc<Self>,
        opcode: Opcode,
        id: u64,
        body: &[u8],
    ) -> Result<Option<Outcome>, ApiError> {
        let Some(repl) = self.repl() else {
            return Ok(None);
        };
        if repl.is_leader() {
            return Ok(None);
        }
        if self.via.get().peer {
            return Err(not_leader(repl.shard, repl.leader().0));
        }
        let mut frame = Vec::with_capacity(body.len() + 32);
        write_frame(&mut frame, opcode, FLAG_FORWARDED, id, repl.shard, &[body]);
        let core = self.clone();
        Ok(Some(Outcome::Later(Box::pin(async move {
            match core.to_leader(frame).await {
                Ok(reply) => reply,
                Err(e) => reply::frame_to_vec(opcode, id, Err(e)),
            }
        }))))
    }

    /// Sends a whole request frame to the shard's leader and returns its reply frame.
    pub(super) async fn to_leader(self: &Rc<Self>, frame: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        let Some(repl) = self.repl() else {
            return Err(ApiError::internal(
                "a request for the shard's leader on a shard that does not replicate",
            ));
        };
        let peers = repl.peers().ok_or_else(|| not_leader(repl.shard, 0))?;
        // A leader that is unknown (an election) or unreachable (it died, and the
        // others have not noticed yet) is waited out for a while: a new one is elected
        // within an election timeout or two.
        let reachable =
            |leader: u64| leader != 0 && (leader == repl.node || peers.connected(leader));
        let mut leader = repl.leader().0;
        for _ in 0..LEADER_WAIT_MS / RAFT_TICK_MS {
            if reachable(leader) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(RAFT_TICK_MS)).await;
            leader = repl.leader().0;
        }
        if leader == 0 {
            return Err(not_leader(repl.shard, 0));
        }
        if leader == repl.node {
            // Elected here meanwhile: run it as the leader runs a frame a peer passed it
            // (a DDL part is this shard's only — as a client's CreateTable it would take
            // the DDL lock its coordinator holds).
            return Ok(self.run_peer_frame(&frame).await);
        }
        if !peers.connected(leader) {
            return Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "shard {}: node {leader} leads the shard but is not connected; the request was not sent: retry",
                    repl.shard
                ),
            ));
        }
        let id = repl.token();
        let done = waiter();
        repl.forwards.borrow_mut().insert(id, done.clone());
        let sent = peers.send_envelope(
            leader,
            Envelope {
                shard: repl.shard,
                body: Payload::Request { id, frame },
            },
        );
        if !sent {
            repl.forwards.borrow_mut().remove(&id);
            return Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "shard {}: the queue to node {leader} is full; the request was not sent: retry",
                    repl.shard
                ),
            ));
        }
        // Waited for in ticks: a leader that dies with the request (its connection drops)
        // is given up on at once instead of at the timeout — the client hears "outcome
        // unknown" in a moment and retries what is safe to retry against the next leader.
        let deadline = std::time::Instant::now() + Duration::from_millis(PROPOSAL_TIMEOUT_MS);
        loop {
            if let Some(reply) = wait_for(&done, RAFT_TICK_MS).await {
                return Ok(reply);
            }
            let why = if !peers.connected(leader) {
                format!("the connection to node {leader}, its leader, dropped before it answered")
            } else if std::time::Instant::now() >= deadline {
                format!("node {leader}, its leader, did not answer within {PROPOSAL_TIMEOUT_MS} ms")
            } else {
                continue;
            };
            repl.forwards.borrow_mut().remove(&id);
            return Err(outcome_unknown(repl.shard, &why));
        }
    }

    /// A batch of envelopes from peer node `from`.
    pub fn on_peer_batch(self: &Rc<Self>, from: u64, batch: Vec<Envelope>) {
        let Some(repl) = self.repl() else { return };
        let mut stepped = false;
        for e in batch {
            if e.shard != repl.shard {
                // Each core's peer connection carries its own shard only.
                tracing::warn!(
                    "shard {}: node {from} sent a message for shard {}; dropped",
                    repl.shard,
                    e.shard
                );
                continue;
            }
            match e.body {
                Payload::Raft(msg) => {
                    repl.group.borrow_mut().step(msg);
                    stepped = true;
                }
                Payload::Request { id, frame } => {
                    let core = self.clone();
                    glommio::spawn_local(async move {
                        let reply = core.run_peer_frame(&frame).await;
                        if let Some(peers) = core.repl().and_then(Repl::peers) {
                            peers.send_envelope(
                                from,
                                Envelope {
                                    shard: e.shard,
                                    body: Payload::Response { id, frame: reply },
                                },
                            );
                        }
                    })
                    .detach();
                }
                Payload::Response { id, frame } => {
                    if let Some(w) = repl.forwards.borrow_mut().remove(&id) {
                        fill(&w, frame);
                    }
                }
            }
        }
        if stepped {
            repl.kick();
        }
    }

    /// One tick of the replica's clock (and, now and then, leadership balancing).
    pub fn repl_tick(&self) {
        let Some(repl) = self.repl() else { return };
        let n = repl.ticks.get() + 1;
        repl.ticks.set(n);
        let mut g = repl.group.borrow_mut();
        g.tick();
        if n.is_multiple_of(LEADER_BALANCE_TICKS) && g.replica().is_leader() {
            // Leaders spread over the AZs: shard k prefers the k-th voter.
            let voters = g.replica().voters();
            let preferred = voters[repl.shard as usize % voters.len()];
            if preferred != repl.node {
                let last = g.replica().last_index();
                let caught_up = g
                    .replica()
                    .status()
                    .progress
                    .and_then(|p| p.get(preferred).map(|pr| pr.matched >= last))
                    .unwrap_or(false);
                if caught_up {
                    g.transfer_leader(preferred);
                }
            }
        }
        drop(g);
        repl.kick();
    }

    /// Waits until the driver has something to do.
    pub async fn repl_work(&self) {
        let Some(repl) = self.repl() else {
            return std::future::pending().await;
        };
        std::future::poll_fn(|cx| {
            if repl.kicked.replace(false) {
                Poll::Ready(())
            } else {
                repl.driver.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Performs the group's work and what follows from it: messages out, the cache and
    /// catalog written through for applied entries, proposals and reads answered.
    pub fn repl_drive(&self) {
        let Some(repl) = self.repl() else { return };
        if repl.failed.borrow().is_some() {
            return;
        }
        let progress = repl.group.borrow_mut().drive();
        let mut p = match progress {
            Ok(p) => p,
            Err(e) => {
                let err = store_error(
                    repl.shard,
                    tern_storage::store::StoreError::Poisoned(e.to_string()),
                );
                tracing::error!(
                    "shard {}: the Raft log failed: {e}. The shard stops replicating; restart the node to recover from its log and its peers.",
                    repl.shard
                );
                *repl.failed.borrow_mut() = Some(err.clone());
                for (_, p) in repl.proposals.borrow_mut().drain() {
                    fill(&p.done, Err(err.clone()));
                }
                return;
            }
        };
        // Moved out, not copied: appends carry the entries' data.
        let messages = std::mem::take(&mut p.messages);
        if let Some(peers) = repl.peers() {
            for m in messages {
                peers.send(m.to, repl.shard, m);
            }
        }
        if p.snapshot.is_some() {
            self.catalog_replaced();
        }
        for cc in &p.conf_changes {
            self.membership_applied(repl, cc);
        }
        for a in &p.applied {
            self.written_through(a);
        }
        self.resolve(repl, &p);
        for (token, index) in &p.reads {
            if let Some(r) = repl.reads.borrow_mut().get_mut(token) {
                r.index = Some(*index);
            }
        }
        let applied = self.shard.borrow().store.raft_applied();
        repl.reads.borrow_mut().retain(|_, r| match r.index {
            Some(i) if i <= applied => {
                fill(&r.done, ());
                false
            }
            _ => true,
        });
        if p.needs_flush {
            self.kick_flusher();
        }
    }

    fn resolve(&self, repl: &Repl, p: &Progress) {
        for r in &p.resolved {
            let (token, result) = match *r {
                Resolution::Applied { token, index } => {
                    let Some(prop) = repl.proposals.borrow().get(&token).map(|p| p.want_old) else {
                        continue;
                    };
                    let effect = p
                        .applied
                        .binary_search_by_key(&index, |a| a.index)
                        .ok()
                        .map(|i| p.applied[i].effect.clone());
                    (token, self.done(repl.shard, effect, prop))
                }
                Resolution::Lost { token } => (
                    token,
                    Err(ApiError::new(
                        ErrorCode::ServiceUnavailable,
                        format!(
                            "shard {}: the leader changed before the write committed; it was not applied: retry",
                            repl.shard
                        ),
                    )),
                ),
                Resolution::Unknown { token } => (
                    token,
                    Err(outcome_unknown(
                        repl.shard,
                        "this replica caught up from a snapshot before the write's fate was known here",
                    )),
                ),
            };
            if let Some(prop) = repl.proposals.borrow_mut().remove(&token) {
                fill(&prop.done, result);
            }
        }
    }

    /// An applied proposal's reply material.
    fn done(&self, shard: u32, effect: Option<Applied>, want_old: bool) -> Result<Done, ApiError> {
        let old = match (&effect, want_old) {
            (
                Some(Applied::Put { old: Some(s), .. } | Applied::Delete { old: Some(s), .. }),
                true,
            ) => {
                let sh = self.shard.borrow();
                Some(
                    sh.store
                        .item_at(*s)
                        .map(<[u8]>::to_vec)
                        .map_err(|e| store_error(shard, e))?,
                )
            }
            _ => None,
        };
        Ok(Done { effect, old })
    }

    /// A membership change applied here: the peer transport learns a new member's
    /// address (its first peer port, from the change's context; this shard's is that
    /// plus the shard index) or forgets a removed one.
    fn membership_applied(&self, repl: &Repl, cc: &raft::eraftpb::ConfChangeV2) {
        use raft::eraftpb::ConfChangeType;
        let Some(peers) = repl.peers() else { return };
        for c in &cc.changes {
            match c.get_change_type() {
                ConfChangeType::AddNode => {
                    let addr = std::str::from_utf8(&cc.context)
                        .ok()
                        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                        .and_then(|a| {
                            let port =
                                u16::try_from(a.port() as usize + repl.shard as usize).ok()?;
                            Some(std::net::SocketAddr::new(a.ip(), port))
                        });
                    match addr {
                        Some(addr) => peers.add_peer(c.node_id, addr),
                        None if c.node_id == repl.node => {}
                        None => tracing::warn!(
                            "shard {}: voter {} was added without a usable peer address; give it to this node with --peers",
                            repl.shard,
                            c.node_id
                        ),
                    }
                    tracing::info!("shard {}: node {} is a voter now", repl.shard, c.node_id);
                }
                ConfChangeType::RemoveNode => {
                    peers.remove_peer(c.node_id);
                    if c.node_id == repl.node {
                        tracing::warn!(
                            "shard {}: this node was removed from the shard's group",
                            repl.shard
                        );
                    } else {
                        tracing::info!("shard {}: node {} was removed", repl.shard, c.node_id);
                    }
                }
                ConfChangeType::AddLearnerNode => {}
            }
        }
    }

    /// The cache and catalog take an applied entry's effect (on every replica).
    fn written_through(&self, a: &tern_replica::AppliedEntry) {
        let data = || EntryData::decode(&a.data).ok();
        match &a.effect {
            Applied::Put { table, slot, .. } => {
                if let Some(d) = data() {
                    let cached = CachedItem::written(*slot, d.value);
                    self.cache
                        .borrow_mut()
                        .wrote(*table, d.key, cached, d.value);
                }
            }
            Applied::Delete { table, .. } => {
                if let Some(d) = data() {
                    let cached = CachedItem::absent(None);
                    self.cache.borrow_mut().wrote(*table, d.key, cached, &[]);
                }
            }
            Applied::CreateTable {
                table,
                result: Ok(()),
            } => {
                let name = self.shard.borrow_mut().table_applied(*table);
                if let Some(name) = name {
                    self.cache.borrow_mut().table_added(&name, *table);
                }
            }
            Applied::DeleteTable {
                table,
                existed: true,
            } => {
                self.shard.borrow_mut().table_removed(*table);
                self.cache.borrow_mut().table_dropped(*table);
            }
            _ => {}
        }
    }

    /// A snapshot replaced the store's state: the catalog is read again and every cached
    /// entry dropped.
    fn catalog_replaced(&self) {
        let (old, new) = self.shard.borrow_mut().reload_catalog();
        let mut cache = self.cache.borrow_mut();
        for id in old {
            cache.table_dropped(id);
        }
        for (name, id) in new {
            cache.table_added(&name, id);
        }
    }
}

/// Drives a replicated shard's group until the executor ends.
pub async fn run_driver(core: Rc<Core>) {
    loop {
        core.repl_work().await;
        core.repl_drive();
        // Let the transport and the flusher run between drives under load.
        glommio::yield_if_needed().await;
    }
}

/// Ticks a replicated shard's group.
pub async fn run_ticker(core: Weak<Core>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(RAFT_TICK_MS)).await;
        match core.upgrade() {
            Some(c) => c.repl_tick(),
            None => return,
        }
    }
}
