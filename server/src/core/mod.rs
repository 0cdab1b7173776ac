//! A core's request handling: decode once, route by partition, execute or forward.
//!
//! Every frame that reaches a core goes through [`Core::dispatch`]:
//! * single-key operations (PutItem, GetItem, DeleteItem) and Query find the owning shard
//!   from the partition-key hash; the owner executes at once, any other core forwards the
//!   frame over the mesh (`FLAG_FORWARDED`) and answers when the owner does — a misrouted
//!   request is forwarded, never refused;
//! * DDL (CreateTable, DeleteTable) is serialized on shard 0, which applies it to every
//!   shard before acknowledging;
//! * DescribeTable, Scan and batches that span shards are coordinated by the receiving
//!   core, which asks each shard involved and merges the answers.
//!
//! The operations live by family in submodules, each an `impl Core` block: `tables`
//! (Hello, DDL, DescribeTable, ListTables, Stats), `items` (PutItem, GetItem, DeleteItem and
//! the cached read path), `query_scan`, `batch`; every item write goes through `write`,
//! the one seam replication proposes at; `repl` drives the shard's Raft group and
//! `membership` changes its voters. This module keeps what they share:
//! decoding and routing, forwarding, the durability waits and the transport seam.
//!
//! The GetItem path decodes nothing it does not need: the request body and key are read
//! in place, and the reply is a header plus the stored item bytes, as the client sent them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::sync::Semaphore;
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_FORWARDED, FLAG_RESPONSE, Frame, FrameError, Opcode, parse_frame, write_frame,
};
use tern_protocol::keys::{KeyRef, encode_index_key, partition_hash};
use tern_protocol::messages::*;
use tern_protocol::{ApiError, ErrorCode, KeySchema, ProtocolError};
use tern_storage::store::{LogPos, Mark};

use crate::acks::AckQueue;
use crate::cache::ShardCacheState;
use crate::mesh::{Answer, Call, Mesh};
use crate::reply;
use crate::service::{ConnCtx, Service, Verdict};
use crate::shard::{Shard, store_error};
use crate::topology::{ShardId, Topology};

mod batch;
mod items;
mod membership;
mod query_scan;
mod repl;
mod tables;
mod write;

pub use query_scan::segment_range;
pub use repl::{
    LEADER_WAIT_MS, OUTCOME_UNKNOWN, PROPOSAL_TIMEOUT_MS, RAFT_TICK_MS, ReplSettings, ShardStore,
    run_driver, run_ticker,
};

/// A reply that will be ready later (a frame, as bytes).
pub type LaterReply = Pin<Box<dyn Future<Output = Vec<u8>>>>;

/// What became of a frame.
pub enum Outcome {
    /// The reply is in `out`.
    Done,
    /// Another shard owns the key: forward the frame there.
    Forward(ShardId),
    /// The reply will come from this future.
    Later(LaterReply),
    /// The reply frame is `out[start..]`, but may go only once the log is durable up to
    /// `pos` (a write's acknowledgement, or a read of a record not yet durable): the
    /// caller parks it in the shard's [`AckQueue`] (or awaits [`Core::durable`]).
    Durable { pos: LogPos, start: usize },
    /// The body could not be decoded: an error frame is in `out`; close the connection.
    Malformed,
}

/// What a write's reply says: its operation, request id and ReturnValues.
struct WriteAck {
    opcode: Opcode,
    id: u64,
    return_values: ArchivedReturnValues,
}

/// Why an operation failed.
enum Fail {
    Api(ApiError),
    Malformed(String),
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Fail {
        Fail::Api(e)
    }
}

impl From<ProtocolError> for Fail {
    fn from(e: ProtocolError) -> Fail {
        Fail::Malformed(e.to_string())
    }
}

type OpResult = Result<Outcome, Fail>;

/// Where the frame being dispatched came from, when not straight from a client.
#[derive(Debug, Clone, Copy, Default)]
struct Via {
    /// From a peer node (a follower passed it to this shard's leader): never passed on.
    peer: bool,
    /// A consistent read whose read barrier has passed: read here now.
    barrier_done: bool,
}

/// One core: its shard, its view of the topology and its end of the mesh.
pub struct Core {
    topology: Topology,
    shard: Rc<RefCell<Shard>>,
    mesh: Rc<Mesh>,
    /// Serializes DDL on shard 0.
    ddl_lock: Semaphore,
    /// Reused buffer for index keys on the single-key paths.
    scratch: RefCell<Vec<u8>>,
    /// The encoded `WriteItemResponse { attributes: None }`, built once.
    empty_write_response: Vec<u8>,
    /// Tasks waiting for the log to become durable up to a position, by position: a
    /// flush wakes exactly those it satisfied (and everyone if the store failed).
    durable_waiters: RefCell<BTreeMap<LogPos, Vec<Waker>>>,
    /// Reply frames waiting for the log to be durable up to their position.
    acks: RefCell<AckQueue>,
    /// The flusher task, parked until a write appends to the log.
    flusher: Cell<Option<Waker>>,
    /// The shard's item and query cache (`crate::cache`).
    cache: RefCell<ShardCacheState>,
    /// The shard's replication, when it is one replica of a group (`repl`).
    repl: Option<repl::Repl>,
    /// Where the frame being dispatched came from (set around a dispatch).
    via: Cell<Via>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Core {
    pub fn new(
        topology: Topology,
        mesh: Rc<Mesh>,
        shard: Shard,
        cache: ShardCacheState,
    ) -> Rc<Core> {
        Core::build(topology, mesh, Rc::new(RefCell::new(shard)), cache, None)
    }

    /// A core whose shard is one replica of a Raft group (its store is replicated).
    /// The caller runs [`run_driver`] and [`run_ticker`] and connects the peers
    /// ([`Core::set_peers`]).
    pub fn new_replicated(
        topology: Topology,
        mesh: Rc<Mesh>,
        shard: Shard,
        cache: ShardCacheState,
        settings: &ReplSettings,
    ) -> Result<Rc<Core>, raft::Error> {
        let id = shard.id;
        let shard = Rc::new(RefCell::new(shard));
        let repl = repl::Repl::open(id, ShardStore(shard.clone()), settings)?;
        Ok(Core::build(topology, mesh, shard, cache, Some(repl)))
    }

    fn build(
        topology: Topology,
        mesh: Rc<Mesh>,
        shard: Rc<RefCell<Shard>>,
        mut cache: ShardCacheState,
        repl: Option<repl::Repl>,
    ) -> Rc<Core> {
        for (name, t) in shard.borrow().tables.iter() {
            cache.table_added(name, t.id);
        }
        Rc::new(Core {
            topology,
            shard,
            mesh,
            ddl_lock: Semaphore::new(1),
            scratch: RefCell::new(Vec::with_capacity(256)),
            empty_write_response: encode(&WriteItemResponse { attributes: None }),
            durable_waiters: RefCell::new(BTreeMap::new()),
            acks: RefCell::new(AckQueue::default()),
            flusher: Cell::new(None),
            cache: RefCell::new(cache),
            repl,
            via: Cell::new(Via::default()),
        })
    }

    /// Connects a replicated shard to its peers' transport.
    pub fn set_peers(&self, peers: Rc<crate::peers::Peers>) {
        if let Some(r) = &self.repl {
            r.set_peers(peers);
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.repl.is_some()
    }

    /// The peer transport's receiver: see `repl`.
    pub fn peer_inbox(core: &Rc<Core>) -> crate::peers::Inbox {
        let weak = Rc::downgrade(core);
        Rc::new(move |from, batch| {
            if let Some(core) = weak.upgrade() {
                core.on_peer_batch(from, batch);
            }
        })
    }

    /// The shard's state (store, catalog); for the flusher and maintenance tasks.
    pub fn shard(&self) -> &RefCell<Shard> {
        &self.shard
    }

    /// Wakes the flusher: a write appended to the log.
    pub fn kick_flusher(&self) {
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }

    /// Completes when the shard's store has pending log bytes to flush (the flusher's
    /// wait).
    pub async fn flush_work(&self) {
        std::future::poll_fn(|cx| {
            let shard = self.shard.borrow();
            if shard.store.has_flush_work() {
                Poll::Ready(())
            } else {
                self.flusher.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Completes once nothing appended waits to be written (or the store failed).
    pub async fn drained(&self) {
        self.kick_flusher();
        std::future::poll_fn(|cx| {
            let shard = self.shard.borrow();
            let store = &shard.store;
            if store.failure().is_some() || (!store.has_pending() && !store.flush_in_progress()) {
                Poll::Ready(())
            } else {
                self.wait_for(store.appended_pos(), cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    fn wait_for(&self, pos: LogPos, waker: &Waker) {
        let mut waiters = self.durable_waiters.borrow_mut();
        let list = waiters.entry(pos).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    /// Wakes the tasks whose position a flush made durable and delivers the parked
    /// replies it covers (all of them if the store failed: they get its error).
    pub fn wake_durable_waiters(&self) {
        let shard = self.shard.borrow();
        let failure = shard
            .store
            .failure()
            .map(|e| store_error(shard.id, e.clone()));
        let durable = shard.store.durable_pos();
        let ready = if failure.is_some() {
            self.durable_waiters.take()
        } else {
            let mut waiters = self.durable_waiters.borrow_mut();
            let later = waiters.split_off(&LogPos(durable.0 + 1));
            std::mem::replace(&mut *waiters, later)
        };
        drop(shard);
        {
            let mut acks = self.acks.borrow_mut();
            match &failure {
                Some(e) => acks.fail_all(e),
                None => {
                    acks.release(durable);
                }
            }
        }
        for w in ready.into_values().flatten() {
            w.wake();
        }
        // A group commit may release Raft's held messages and commit entries.
        if let Some(r) = &self.repl {
            r.kick();
        }
    }

    /// Parks the reply frame `frame` for `conn` until `pos` is durable (see `acks`).
    fn park_reply(&self, conn: &Rc<ConnCtx>, pos: LogPos, frame: &[u8], opcode: Opcode, id: u64) {
        conn.begin_deferred();
        self.acks.borrow_mut().push(conn, pos, frame, opcode, id);
        // The flush that covers `pos` may have finished meanwhile, or the store failed.
        let shard = self.shard.borrow();
        if shard.store.failure().is_some() || shard.store.until_durable(pos).is_none() {
            drop(shard);
            self.wake_durable_waiters();
        }
    }

    /// Replies parked until their position is durable.
    pub fn parked_replies(&self) -> usize {
        self.acks.borrow().len()
    }

    /// Completes once the log is durable up to `pos`, or fails when the store failed
    /// before getting there.
    pub async fn durable(&self, pos: LogPos) -> Result<(), ApiError> {
        self.reached(pos, Mark::Durable).await
    }

    /// Completes once `pos` is in the files (`Store::settled_pos`): what checkpoints and
    /// compaction wait for.
    pub async fn settled(&self, pos: LogPos) -> Result<(), ApiError> {
        self.reached(pos, Mark::Settled).await
    }

    /// Waits until the store's `mark` covers `pos` (asking for a sync when waiting for
    /// settled bytes), or fails when the store failed first.
    async fn reached(&self, pos: LogPos, mark: Mark) -> Result<(), ApiError> {
        std::future::poll_fn(|cx| {
            let mut shard = self.shard.borrow_mut();
            match shard.store.reached(pos, mark) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => {
                    if mark == Mark::Settled {
                        shard.store.request_sync();
                        self.kick_flusher();
                    }
                    self.wait_for(pos, cx.waker());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(store_error(shard.id, e))),
            }
        })
        .await
    }

    /// The reply frame written to `out[start..]` may go now, or, if it reveals or
    /// acknowledges a record not yet durable, once `wait` is durable (else an error).
    fn when_durable(&self, start: usize, wait: Option<LogPos>) -> Outcome {
        match wait {
            None => Outcome::Done,
            Some(pos) => Outcome::Durable { pos, start },
        }
    }

    pub fn shard_id(&self) -> ShardId {
        self.mesh.me()
    }

    fn is_me(&self, shard: ShardId) -> bool {
        shard == self.mesh.me()
    }

    /// Where a key goes: `Ok(None)` = here, `Ok(Some(owner))` = forward.
    fn route(&self, hash: u64, forwarded: bool) -> Result<Option<ShardId>, Fail> {
        let owner = self.topology.owner_of_hash(hash);
        if self.is_me(owner) {
            Ok(None)
        } else if forwarded {
            // A forwarded frame is only ever sent to the owner: the partition map changed
            // between the two cores' decisions, which today cannot happen.
            Err(Fail::Api(ApiError::internal(format!(
                "forwarded request reached shard {} but shard {owner} owns its key",
                self.mesh.me()
            ))))
        } else {
            Ok(Some(owner))
        }
    }

    /// Routes a single-key operation: `Ok(Err(owner))` when another shard owns the key,
    /// else the index key, built in the reusable scratch buffer.
    fn owned_key(
        &self,
        table: &str,
        pk: KeyRef<'_>,
        sk: Option<KeyRef<'_>>,
        forwarded: bool,
    ) -> Result<Result<std::cell::RefMut<'_, Vec<u8>>, ShardId>, Fail> {
        let hash = partition_hash(table, pk);
        if let Some(owner) = self.route(hash, forwarded)? {
            return Ok(Err(owner));
        }
        let mut key = self.scratch.borrow_mut();
        key.clear();
        encode_index_key(hash, pk, sk, &mut key);
        Ok(Ok(key))
    }

    /// Handles one frame; see the module doc.
    pub fn dispatch(self: &Rc<Self>, frame: Frame<'_>, out: &mut Vec<u8>) -> Outcome {
        let h = frame.header;
        if h.flags & (FLAG_RESPONSE | FLAG_ERROR) != 0 {
            let e = ApiError::new(
                ErrorCode::SerializationException,
                "a response frame was sent to the server",
            );
            reply::error(out, h.opcode, h.request_id, &e);
            return Outcome::Malformed;
        }
        let forwarded = h.flags & FLAG_FORWARDED != 0;
        let id = h.request_id;
        let body = frame.body;
        let result = match h.opcode {
            Opcode::Hello => self.hello(id, body, out),
            Opcode::CreateTable => self.create_table(id, body),
            Opcode::DeleteTable => self.delete_table(id, body),
            Opcode::DescribeTable => self.describe_table(id, body),
            Opcode::ListTables => self.list_tables(id, body, out),
            Opcode::PutItem => self.put_item(id, body, forwarded, out),
            Opcode::GetItem => self.get_item(id, body, forwarded, out),
            Opcode::DeleteItem => self.delete_item(id, body, forwarded, out),
            Opcode::Query => self.query(id, body, forwarded, out),
            Opcode::Scan => self.scan(id, body),
            Opcode::BatchGetItem => self.batch_get(id, body, forwarded, out),
            Opcode::BatchWriteItem => self.batch_write(id, body, forwarded, out),
            Opcode::Stats => self.stats(id, body),
            Opcode::ChangeMembership => self.change_membership(id, body),
        };
        match result {
            Ok(outcome) => outcome,
            Err(Fail::Api(e)) => {
                reply::error(out, h.opcode, id, &e);
                Outcome::Done
            }
            Err(Fail::Malformed(msg)) => {
                let e = ApiError::new(
                    ErrorCode::SerializationException,
                    format!(
                        "could not decode the {} request body: {msg}",
                        h.opcode.name()
                    ),
                );
                reply::error(out, h.opcode, id, &e);
                Outcome::Malformed
            }
        }
    }

    /// Serves a call from another core.
    pub async fn handle_call(self: Rc<Self>, call: Call) -> Answer {
        match call {
            Call::Frame(bytes) => Answer::Frame(self.run_frame_bytes(&bytes).await),
            Call::CreateTable {
                name,
                schema,
                creation_time_ms,
            } => Answer::Done(
                self.create_table_on_shard(&name, schema, creation_time_ms)
                    .await,
            ),
            Call::DeleteTable(name) => Answer::Done(self.delete_table_on_shard(&name).await),
            Call::TableStats(name) => Answer::Stats(self.shard.borrow().table_stats(&name)),
            Call::ScanRange(range) => Answer::Scan(self.scan_local_durable(&range).await),
            Call::BatchGet {
                tables,
                budget_bytes,
            } => Answer::BatchGet(
                async {
                    if tables.iter().any(|t| t.consistent_read) {
                        self.read_barrier().await?;
                    }
                    self.batch_get_part(&tables, budget_bytes).await
                }
                .await,
            ),
            Call::Stats => Answer::Counters(self.shard_stats()),
            Call::Membership(req) => Answer::Voters(self.membership_on_shard(&req).await),
        }
    }

    /// Creates a table on this shard (and tells the cache its TTLs); returns the
    /// position to wait for.
    fn create_table_here(
        &self,
        name: &str,
        schema: KeySchema,
        creation_time_ms: u64,
    ) -> Result<LogPos, ApiError> {
        let mut shard = self.shard.borrow_mut();
        let pos = shard.create_table(name, schema, creation_time_ms)?;
        let id = shard.table(name)?.id;
        self.cache.borrow_mut().table_added(name, id);
        Ok(pos)
    }

    /// Deletes a table on this shard (and its cache entries); returns the position to
    /// wait for.
    fn delete_table_here(&self, name: &str) -> Result<LogPos, ApiError> {
        let mut shard = self.shard.borrow_mut();
        let id = shard.table(name)?.id;
        let pos = shard.delete_table(name)?;
        self.cache.borrow_mut().table_dropped(id);
        Ok(pos)
    }

    /// Waits until a logged change is durable.
    async fn logged_durable(&self, logged: Result<LogPos, ApiError>) -> Result<(), ApiError> {
        let pos = logged?;
        self.kick_flusher();
        self.durable(pos).await
    }

    /// Executes a whole frame held in `bytes` here and returns the reply frame.
    async fn run_frame_bytes(self: &Rc<Self>, bytes: &[u8]) -> Vec<u8> {
        self.run_frame_bytes_via(bytes, Via::default()).await
    }

    /// A frame a peer node passed to this shard (its leader, it thought).
    async fn run_peer_frame(self: &Rc<Self>, bytes: &[u8]) -> Vec<u8> {
        let via = Via {
            peer: true,
            ..Via::default()
        };
        self.run_frame_bytes_via(bytes, via).await
    }

    /// After a consistent read's barrier: the read (`opcode`, `body`) runs here.
    fn after_barrier(self: &Rc<Self>, opcode: Opcode, id: u64, body: &[u8]) -> Outcome {
        let mut frame = Vec::with_capacity(body.len() + 32);
        write_frame(
            &mut frame,
            opcode,
            FLAG_FORWARDED,
            id,
            self.shard_id(),
            &[body],
        );
        let via = Via {
            barrier_done: true,
            ..self.via.get()
        };
        let core = self.clone();
        Outcome::Later(Box::pin(async move {
            match core.read_barrier().await {
                Ok(()) => core.run_frame_bytes_via(&frame, via).await,
                Err(e) => reply::frame_to_vec(opcode, id, Err(e)),
            }
        }))
    }

    async fn run_frame_bytes_via(self: &Rc<Self>, bytes: &[u8], via: Via) -> Vec<u8> {
        let mut out = Vec::new();
        let frame = match parse_frame(bytes) {
            Ok(Some((frame, _))) => frame,
            Ok(None) | Err(_) => {
                let e = ApiError::internal("a core forwarded an incomplete or corrupt frame");
                reply::error(&mut out, Opcode::Hello, 0, &e);
                return out;
            }
        };
        self.via.set(via);
        let outcome = self.dispatch(frame, &mut out);
        self.via.set(Via::default());
        match outcome {
            Outcome::Done | Outcome::Malformed => out,
            Outcome::Later(fut) => fut.await,
            Outcome::Durable { pos, start } => match self.durable(pos).await {
                Ok(()) => out,
                Err(e) => {
                    out.truncate(start);
                    reply::error(&mut out, frame.header.opcode, frame.header.request_id, &e);
                    out
                }
            },
            Outcome::Forward(owner) => {
                let e = ApiError::internal(format!(
                    "a forwarded request was forwarded again to shard {owner}"
                ));
                reply::error(&mut out, frame.header.opcode, frame.header.request_id, &e);
                out
            }
        }
    }

    /// Forwards a frame to its owner and returns the owner's reply frame.
    async fn forward(
        self: Rc<Self>,
        owner: ShardId,
        frame_bytes: Vec<u8>,
        opcode: Opcode,
        id: u64,
    ) -> Vec<u8> {
        match self.mesh.call(owner, Call::Frame(frame_bytes)).await {
            Ok(Answer::Frame(reply)) => reply,
            Ok(other) => reply::frame_to_vec(
                opcode,
                id,
                Err(ApiError::internal(format!("unexpected answer {other:?}"))),
            ),
            Err(e) => reply::frame_to_vec(opcode, id, Err(e)),
        }
    }
}

/// The body of a reply frame another shard (or node) sent, or the error it carries.
fn reply_body(reply: &[u8]) -> Result<&[u8], ApiError> {
    let (frame, _) = parse_frame(reply)
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::internal("a shard answered with a corrupt frame"))?;
    if frame.header.flags & FLAG_ERROR != 0 {
        let e =
            decode::<ErrorResponse>(frame.body).map_err(|e| ApiError::internal(e.to_string()))?;
        return Err(ApiError::new(
            ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::InternalServerError),
            e.message,
        ));
    }
    Ok(frame.body)
}

/// A core as a [`Service`] for its transport.
pub struct CoreService(pub Rc<Core>);

impl Service for CoreService {
    fn on_frame(&self, conn: &Rc<ConnCtx>, frame: Frame<'_>, out: &mut Vec<u8>) -> Verdict {
        if frame.header.flags & FLAG_FORWARDED != 0 {
            // Only cores forward, over the mesh: from a socket the flag is a client's
            // mistake (and would make the owner refuse a misrouted request).
            let e = ApiError::new(
                ErrorCode::SerializationException,
                "the FORWARDED flag is internal to the server: clients send it as 0",
            );
            reply::error(out, frame.header.opcode, frame.header.request_id, &e);
            return Verdict::Close;
        }
        match self.0.dispatch(frame, out) {
            Outcome::Done => Verdict::Continue,
            Outcome::Malformed => Verdict::Close,
            Outcome::Durable { pos, start } => {
                let h = frame.header;
                self.0
                    .park_reply(conn, pos, &out[start..], h.opcode, h.request_id);
                out.truncate(start);
                Verdict::Continue
            }
            Outcome::Later(fut) => {
                conn.begin_deferred();
                let conn = conn.clone();
                glommio::spawn_local(async move {
                    let reply = fut.await;
                    conn.finish_deferred(&reply);
                })
                .detach();
                Verdict::Continue
            }
            Outcome::Forward(owner) => {
                let h = frame.header;
                let mut bytes = Vec::with_capacity(frame.body.len() + 32);
                write_frame(
                    &mut bytes,
                    h.opcode,
                    h.flags | FLAG_FORWARDED,
                    h.request_id,
                    owner,
                    &[frame.body],
                );
                conn.begin_deferred();
                let conn = conn.clone();
                let core = self.0.clone();
                glommio::spawn_local(async move {
                    let reply = core.forward(owner, bytes, h.opcode, h.request_id).await;
                    conn.finish_deferred(&reply);
                })
                .detach();
                Verdict::Continue
            }
        }
    }

    fn on_frame_error(&self, err: &FrameError, out: &mut Vec<u8>) {
        let (opcode, request_id) = err.reply_to();
        let e = if err.skippable_len().is_some() {
            ApiError::new(ErrorCode::UnknownOperationException, err.to_string())
        } else {
            ApiError::new(
                ErrorCode::SerializationException,
                format!("malformed frame: {err}; closing the connection"),
            )
        };
        reply::error_raw(out, opcode, request_id, &e);
    }
}
