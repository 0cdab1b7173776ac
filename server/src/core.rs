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
//! The GetItem path decodes nothing it does not need: the request body and key are read
//! in place, and the reply is a header plus the stored item bytes, as the client sent them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::sync::Semaphore;
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_FORWARDED, FLAG_RESPONSE, Frame, FrameError, Opcode, parse_frame, write_frame,
};
use tern_protocol::keys::{
    KeyRef, encode_index_key, extract_key, key_item, partition_hash, partition_hash_range,
    partition_of, partition_prefix, sort_key_range,
};
use tern_protocol::limits::{
    BATCH_GET_KEYS_MAX, BATCH_GET_RESPONSE_MAX_BYTES, BATCH_WRITE_ITEMS_MAX,
    KEY_ATTRIBUTE_NAME_MAX_BYTES, LIST_TABLES_LIMIT_MAX, PAGE_SIZE_MAX_BYTES, PARTITION_COUNT,
    TABLE_NAME_MAX_LEN, TABLE_NAME_MIN_LEN,
};
use tern_protocol::messages::*;
use tern_protocol::validate::{validate_item, validate_key};
use tern_protocol::value::{ArchivedItem, access_item};
use tern_protocol::{ApiError, ErrorCode, KeySchema, ProtocolError};
use tern_storage::store::{ItemRef, LogPos, Mark};

use crate::cache::{CachedItem, ShardCacheState};
use crate::mesh::{Answer, Call, Mesh, ScanChunk, ScanRange};
use crate::reply;
use crate::service::{ConnCtx, Service, Verdict};
use crate::shard::{Shard, store_error, table_not_found};
use crate::topology::{ShardId, Topology};

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

/// One core: its shard, its view of the topology and its end of the mesh.
pub struct Core {
    topology: Topology,
    shard: RefCell<Shard>,
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
    /// The flusher task, parked until a write appends to the log.
    flusher: Cell<Option<Waker>>,
    /// The shard's item and query cache (`crate::cache`).
    cache: RefCell<ShardCacheState>,
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
        mut cache: ShardCacheState,
    ) -> Rc<Core> {
        for (name, t) in &shard.tables {
            cache.table_added(name, t.id);
        }
        Rc::new(Core {
            topology,
            shard: RefCell::new(shard),
            mesh,
            ddl_lock: Semaphore::new(1),
            scratch: RefCell::new(Vec::with_capacity(256)),
            empty_write_response: encode(&WriteItemResponse { attributes: None }),
            durable_waiters: RefCell::new(BTreeMap::new()),
            flusher: Cell::new(None),
            cache: RefCell::new(cache),
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

    /// Wakes the tasks whose position a flush made durable (all of them if the store
    /// failed: they get its error).
    pub fn wake_durable_waiters(&self) {
        let shard = self.shard.borrow();
        let ready = if shard.store.failure().is_some() {
            self.durable_waiters.take()
        } else {
            let durable = shard.store.durable_pos();
            let mut waiters = self.durable_waiters.borrow_mut();
            let later = waiters.split_off(&LogPos(durable.0 + 1));
            std::mem::replace(&mut *waiters, later)
        };
        drop(shard);
        for w in ready.into_values().flatten() {
            w.wake();
        }
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
    fn when_durable(
        self: &Rc<Self>,
        out: &mut Vec<u8>,
        start: usize,
        wait: Option<LogPos>,
        opcode: Opcode,
        id: u64,
    ) -> Outcome {
        let Some(pos) = wait else {
            return Outcome::Done;
        };
        let frame = out.split_off(start);
        let core = self.clone();
        Outcome::Later(Box::pin(async move {
            match core.durable(pos).await {
                Ok(()) => frame,
                Err(e) => reply::frame_to_vec(opcode, id, Err(e)),
            }
        }))
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
            } => {
                let logged = self.create_table_here(&name, schema, creation_time_ms);
                Answer::Done(self.logged_durable(logged).await)
            }
            Call::DeleteTable(name) => {
                let logged = self.delete_table_here(&name);
                Answer::Done(self.logged_durable(logged).await)
            }
            Call::TableStats(name) => Answer::Stats(self.shard.borrow().table_stats(&name)),
            Call::ScanRange(range) => Answer::Scan(self.scan_local_durable(&range).await),
            Call::Stats => Answer::Counters(self.shard_stats()),
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
        let mut out = Vec::new();
        let frame = match parse_frame(bytes) {
            Ok(Some((frame, _))) => frame,
            Ok(None) | Err(_) => {
                let e = ApiError::internal("a core forwarded an incomplete or corrupt frame");
                reply::error(&mut out, Opcode::Hello, 0, &e);
                return out;
            }
        };
        match self.dispatch(frame, &mut out) {
            Outcome::Done | Outcome::Malformed => out,
            Outcome::Later(fut) => fut.await,
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

    // ---------------------------------------------------------------------------------
    // Hello and tables

    fn hello(&self, id: u64, body: &[u8], out: &mut Vec<u8>) -> OpResult {
        access::<ArchivedHelloRequest>(body)?;
        reply::ok(out, Opcode::Hello, id, &encode(&self.topology.hello()));
        Ok(Outcome::Done)
    }

    fn create_table(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<CreateTableRequest>(body)?;
        validate_table_name(&req.name)?;
        validate_key_schema(&req.key_schema)?;
        if !self.is_me(0) {
            return Ok(Outcome::Forward(0));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = core.create_table_everywhere(req).await;
            reply::frame_to_vec(Opcode::CreateTable, id, result)
        })))
    }

    async fn create_table_everywhere(&self, req: CreateTableRequest) -> Result<Vec<u8>, ApiError> {
        let _permit = self
            .ddl_lock
            .acquire_permit(1)
            .await
            .map_err(|e| ApiError::internal(format!("DDL lock: {e}")))?;
        let created = now_ms();
        let logged = self.create_table_here(&req.name, req.key_schema.clone(), created);
        self.logged_durable(logged).await?;
        for shard in 0..self.topology.shard_count() as ShardId {
            if self.is_me(shard) {
                continue;
            }
            let call = Call::CreateTable {
                name: req.name.clone(),
                schema: req.key_schema.clone(),
                creation_time_ms: created,
            };
            expect_done(self.mesh.call(shard, call).await)?;
        }
        let table = self
            .shard
            .borrow()
            .describe(&req.name, TableStatus::Creating, 0, 0)?;
        Ok(encode(&TableResponse { table }))
    }

    fn delete_table(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<TableRequest>(body)?;
        if !self.is_me(0) {
            return Ok(Outcome::Forward(0));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = core.delete_table_everywhere(req.name).await;
            reply::frame_to_vec(Opcode::DeleteTable, id, result)
        })))
    }

    async fn delete_table_everywhere(&self, name: String) -> Result<Vec<u8>, ApiError> {
        let _permit = self
            .ddl_lock
            .acquire_permit(1)
            .await
            .map_err(|e| ApiError::internal(format!("DDL lock: {e}")))?;
        let (items, bytes) = self.table_totals(&name).await?;
        let table = self
            .shard
            .borrow()
            .describe(&name, TableStatus::Deleting, items, bytes)?;
        let logged = self.delete_table_here(&name);
        self.logged_durable(logged).await?;
        for shard in 0..self.topology.shard_count() as ShardId {
            if !self.is_me(shard) {
                expect_done(self.mesh.call(shard, Call::DeleteTable(name.clone())).await)?;
            }
        }
        Ok(encode(&TableResponse { table }))
    }

    /// (items, bytes) of a table summed over all shards.
    async fn table_totals(&self, name: &str) -> Result<(u64, u64), ApiError> {
        let (mut items, mut bytes) = self.shard.borrow().table_stats(name)?;
        for shard in 0..self.topology.shard_count() as ShardId {
            if self.is_me(shard) {
                continue;
            }
            match self
                .mesh
                .call(shard, Call::TableStats(name.to_owned()))
                .await?
            {
                Answer::Stats(r) => {
                    let (i, b) = r?;
                    items += i;
                    bytes += b;
                }
                other => return Err(ApiError::internal(format!("unexpected answer {other:?}"))),
            }
        }
        Ok((items, bytes))
    }

    fn describe_table(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<TableRequest>(body)?;
        self.shard.borrow().table(&req.name)?;
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = async {
                let (items, bytes) = core.table_totals(&req.name).await?;
                let table =
                    core.shard
                        .borrow()
                        .describe(&req.name, TableStatus::Active, items, bytes)?;
                Ok(encode(&TableResponse { table }))
            }
            .await;
            reply::frame_to_vec(Opcode::DescribeTable, id, result)
        })))
    }

    /// This shard's counters (log, index, cache).
    fn shard_stats(&self) -> ShardStats {
        let mut stats = self.shard.borrow().stats();
        stats.counters.extend(self.cache.borrow().counters());
        stats
    }

    /// Counters of every shard (or one), gathered over the mesh.
    fn stats(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<StatsRequest>(body)?;
        let count = self.topology.shard_count() as ShardId;
        let shards: Vec<ShardId> = match req.shard {
            None => (0..count).collect(),
            Some(s) if s < count => vec![s],
            Some(s) => {
                return Err(ApiError::validation(format!(
                    "shard {s} does not exist: this node has {count}"
                ))
                .into());
            }
        };
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = async {
                let mut resp = StatsResponse::default();
                for shard in shards {
                    if core.is_me(shard) {
                        resp.shards.push(core.shard_stats());
                        continue;
                    }
                    match core.mesh.call(shard, Call::Stats).await? {
                        Answer::Counters(s) => resp.shards.push(s),
                        other => {
                            return Err(ApiError::internal(format!("unexpected answer {other:?}")));
                        }
                    }
                }
                Ok(encode(&resp))
            }
            .await;
            reply::frame_to_vec(Opcode::Stats, id, result)
        })))
    }

    fn list_tables(&self, id: u64, body: &[u8], out: &mut Vec<u8>) -> OpResult {
        let req = access::<ArchivedListTablesRequest>(body)?;
        let limit = match req.limit.as_ref().map(|l| l.to_native() as usize) {
            None => LIST_TABLES_LIMIT_MAX,
            Some(l) if (1..=LIST_TABLES_LIMIT_MAX).contains(&l) => l,
            Some(l) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{l}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {LIST_TABLES_LIMIT_MAX}"
                ))
                .into());
            }
        };
        let shard = self.shard.borrow();
        let names = shard.table_names();
        let start = req.exclusive_start_table_name.as_ref().map(|s| s.as_str());
        let mut page: Vec<String> = names
            .iter()
            .filter(|n| start.is_none_or(|s| **n > s))
            .take(limit + 1)
            .map(|s| s.to_string())
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let last = if more { page.last().cloned() } else { None };
        let resp = ListTablesResponse {
            table_names: page,
            last_evaluated_table_name: last,
        };
        reply::ok(out, Opcode::ListTables, id, &encode(&resp));
        Ok(Outcome::Done)
    }

    // ---------------------------------------------------------------------------------
    // Single items

    fn put_item(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedPutItemRequest>(body)?;
        let table = req.table.as_str();
        let item_bytes = req.item.as_slice();
        let item = access_item(item_bytes)?;
        let mut shard = self.shard.borrow_mut();
        let Shard {
            id: shard_id,
            tables,
            store,
        } = &mut *shard;
        let t = tables.get(table).ok_or_else(|| table_not_found(table))?;
        let info = validate_item(item, &t.schema)?;
        let (pk, sk) = (info.partition_key, info.sort_key);
        let key = match self.owned_key(table, pk, sk, forwarded)? {
            Ok(key) => key,
            Err(owner) => return Ok(Outcome::Forward(owner)),
        };
        let (slot, old) = store
            .put_slot(t.id, &key, item_bytes, info.size_bytes as u32)
            .map_err(|e| store_error(*shard_id, e))?;
        let cached = CachedItem::written(slot);
        self.cache
            .borrow_mut()
            .wrote(t.id, &key, cached, item_bytes.len());
        let pos = cached.wait;
        let ack = WriteAck {
            opcode: Opcode::PutItem,
            id,
            return_values: req.return_values,
        };
        Ok(self.acknowledge(out, store, ack, Some(pos), old))
    }

    /// Replies to a single-item write that appended (or waits on) the record ending at
    /// `pos`: the reply (with the replaced item for ALL_OLD) goes once `pos` is durable.
    fn acknowledge(
        self: &Rc<Self>,
        out: &mut Vec<u8>,
        store: &tern_storage::store::Store<tern_storage::glommio_disk::GlommioDisk>,
        ack: WriteAck,
        pos: Option<LogPos>,
        old: Option<tern_storage::index::Slot>,
    ) -> Outcome {
        self.kick_flusher();
        let start = out.len();
        let old = old.map(|slot| store.item_at(slot));
        self.write_reply(out, ack.opcode, ack.id, ack.return_values, old);
        let wait = pos.filter(|p| !store.is_durable(*p).unwrap_or(false));
        self.when_durable(out, start, wait, ack.opcode, ack.id)
    }

    fn write_reply(
        &self,
        out: &mut Vec<u8>,
        opcode: Opcode,
        id: u64,
        return_values: ArchivedReturnValues,
        old: Option<&[u8]>,
    ) {
        match (return_values, old) {
            (ArchivedReturnValues::AllOld, Some(old)) => {
                let resp = WriteItemResponse {
                    attributes: Some(old.to_vec()),
                };
                reply::ok(out, opcode, id, &encode(&resp));
            }
            _ => reply::ok(out, opcode, id, &self.empty_write_response),
        }
    }

    /// The hot read path: no allocation, no decode of the stored item (unless the item
    /// is not durable yet, and the reply must wait).
    fn get_item(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedGetItemRequest>(body)?;
        let table = req.table.as_str();
        let key_item = access_item(req.key.as_slice())?;
        let shard = self.shard.borrow();
        let t = shard.table(table)?;
        let (pk, sk) = validate_key(key_item, &t.schema)?;
        let key = match self.owned_key(table, pk, sk, forwarded)? {
            Ok(key) => key,
            Err(owner) => return Ok(Outcome::Forward(owner)),
        };
        let (item, wait) = self.read_item(&shard, t.id, &key, req.consistent_read)?;
        let start = out.len();
        reply::item(out, id, item);
        Ok(self.when_durable(out, start, wait, Opcode::GetItem, id))
    }

    fn delete_item(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedDeleteItemRequest>(body)?;
        let table = req.table.as_str();
        let key_item = access_item(req.key.as_slice())?;
        let mut shard = self.shard.borrow_mut();
        let Shard {
            id: shard_id,
            tables,
            store,
        } = &mut *shard;
        let t = tables.get(table).ok_or_else(|| table_not_found(table))?;
        let (pk, sk) = validate_key(key_item, &t.schema)?;
        let key = match self.owned_key(table, pk, sk, forwarded)? {
            Ok(key) => key,
            Err(owner) => return Ok(Outcome::Forward(owner)),
        };
        let (wait, old) = store
            .delete(t.id, &key)
            .map_err(|e| store_error(*shard_id, e))?;
        self.cache
            .borrow_mut()
            .wrote(t.id, &key, CachedItem::absent(wait), 0);
        let ack = WriteAck {
            opcode: Opcode::DeleteItem,
            id,
            return_values: req.return_values,
        };
        Ok(self.acknowledge(out, store, ack, wait, old))
    }

    // ---------------------------------------------------------------------------------
    // Query and Scan

    fn query(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedQueryRequest>(body)?;
        let table = req.table.as_str();
        let shard = self.shard.borrow();
        let t = shard.table(table)?;
        let schema = &t.schema;
        let limit = page_limit(req.limit.as_ref().map(|l| l.to_native()))?;
        let pk = KeyRef::from_archived(&req.partition_key)
            .filter(|k| k.scalar_type() == schema.partition.ty)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "One or more parameter values were invalid: Condition parameter type does not match schema type for key {}",
                    schema.partition.name
                ))
            })?;
        let hash = partition_hash(table, pk);
        if let Some(owner) = self.route(hash, forwarded)? {
            return Ok(Outcome::Forward(owner));
        }
        shard.usable()?;
        // The whole request body is the cache key (ConsistentRead reads bypass it).
        let cached = !req.consistent_read;
        if cached && let Some((body, wait)) = self.cache.borrow_mut().get_page(t.id, body) {
            let start = out.len();
            reply::ok(out, Opcode::Query, id, body);
            let wait = shard.store.until_durable(wait);
            return Ok(self.when_durable(out, start, wait, Opcode::Query, id));
        }
        let mut prefix = Vec::new();
        partition_prefix(hash, pk, &mut prefix);
        let (mut lower, mut upper) =
            sort_key_range(&prefix, schema.sort.as_ref(), req.sort_key.as_ref())?;
        if let Some(esk) = req.exclusive_start_key.as_ref() {
            let start = access_item(esk.as_slice())?;
            let (spk, ssk) = validate_key(start, schema)?;
            if spk != pk {
                return Err(ApiError::validation(
                    "The provided starting key is invalid: its partition key does not match the query's",
                )
                .into());
            }
            let mut start_key = Vec::new();
            encode_index_key(hash, spk, ssk, &mut start_key);
            if req.scan_forward {
                lower = tighter_lower(lower, start_key);
            } else {
                upper = tighter_upper(upper, start_key);
            }
        }
        let range = shard
            .store
            .range(t.id, as_ref_bound(&lower), as_ref_bound(&upper))
            .map_err(|e| store_error(shard.id, e))?;
        let mut page = PageResponse::default();
        let mut size = 0usize;
        let mut last: Option<&[u8]> = None;
        let mut last_key: Option<&[u8]> = None;
        let mut max_end = LogPos::default();
        let mut iter: Box<dyn Iterator<Item = ItemRef<'_>>> = if req.scan_forward {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let mut more = false;
        for item in iter.by_ref() {
            if page.items.len() >= limit || size >= PAGE_SIZE_MAX_BYTES {
                more = true;
                break;
            }
            size += item.size_bytes as usize;
            max_end = max_end.max(item.end);
            page.items.push(item.bytes.to_vec());
            last = Some(item.bytes);
            last_key = Some(item.key);
        }
        page.count = page.items.len() as u32;
        page.scanned_count = page.count;
        if let (true, Some(last)) = (more, last) {
            page.last_evaluated_key = Some(key_item(schema, access_item(last)?)?.encode());
        }
        let last_key: Option<Vec<u8>> = last_key.filter(|_| more).map(<[u8]>::to_vec);
        drop(iter);
        let start = out.len();
        let encoded = encode(&page);
        reply::ok(out, Opcode::Query, id, &encoded);
        let wait = shard.store.range_wait(t.id, max_end);
        if cached {
            // The page depends on the keys it read up to its last item when it stopped
            // early, on the whole condition's range otherwise (an insert anywhere in it
            // would change the page or its LastEvaluatedKey).
            let (mut lower, mut upper) = (lower, upper);
            if let Some(k) = last_key {
                if req.scan_forward {
                    upper = Bound::Included(k);
                } else {
                    lower = Bound::Included(k);
                }
            }
            self.cache.borrow_mut().fill_page(
                t.id,
                body,
                &prefix,
                (lower, upper),
                encoded,
                wait.unwrap_or_default(),
            );
        }
        Ok(self.when_durable(out, start, wait, Opcode::Query, id))
    }

    fn scan(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<ScanRequest>(body)?;
        let schema = self.shard.borrow().table(&req.table)?.schema.clone();
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = core.scan_coordinated(req, schema).await;
            reply::frame_to_vec(Opcode::Scan, id, result.map(|p| encode(&p)))
        })))
    }

    /// Walks the segment's hash range in order, one run of same-owner partitions at a time.
    async fn scan_coordinated(
        &self,
        req: ScanRequest,
        schema: KeySchema,
    ) -> Result<PageResponse, ApiError> {
        if req.total_segments == 0 || req.total_segments > 1_000_000 {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{}' at 'totalSegments' failed to satisfy constraint: Member must have value between 1 and 1000000",
                req.total_segments
            )));
        }
        if req.segment >= req.total_segments {
            return Err(ApiError::validation(format!(
                "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {} is not less than TotalSegments: {}",
                req.segment, req.total_segments
            )));
        }
        let limit = page_limit(req.limit)?;
        let (seg_lo, seg_hi) = segment_range(req.segment, req.total_segments);
        let mut lower = Bound::Included(seg_lo.to_be_bytes().to_vec());
        let mut pos = seg_lo;
        if let Some(esk) = &req.exclusive_start_key {
            let start = access_item(esk).map_err(|e| {
                ApiError::validation(format!("The provided starting key is invalid: {e}"))
            })?;
            let (pk, sk) = validate_key(start, &schema)?;
            let hash = partition_hash(&req.table, pk);
            if hash < seg_lo || hash > seg_hi {
                return Err(ApiError::validation(
                    "The provided starting key is invalid: it does not belong to this Segment",
                ));
            }
            let mut key = Vec::new();
            encode_index_key(hash, pk, sk, &mut key);
            lower = Bound::Excluded(key);
            pos = hash;
        }
        let mut page = PageResponse::default();
        let mut size = 0usize;
        loop {
            let first = partition_of(pos);
            let owner = self.topology.partition_map[first as usize];
            let mut last = first;
            while last + 1 < PARTITION_COUNT
                && self.topology.partition_map[(last + 1) as usize] == owner
                && partition_hash_range(last + 1).0 <= seg_hi
            {
                last += 1;
            }
            let run_hi = partition_hash_range(last).1.min(seg_hi);
            let upper = match run_hi.checked_add(1) {
                Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            let range = ScanRange {
                table: req.table.clone(),
                lower,
                upper,
                limit: limit - page.items.len(),
                budget_bytes: PAGE_SIZE_MAX_BYTES - size,
                consistent: req.consistent_read,
            };
            let chunk = if self.is_me(owner) {
                self.scan_local_durable(&range).await?
            } else {
                match self.mesh.call(owner, Call::ScanRange(range)).await? {
                    Answer::Scan(r) => r?,
                    other => {
                        return Err(ApiError::internal(format!("unexpected answer {other:?}")));
                    }
                }
            };
            size += chunk.size_bytes;
            let exhausted = chunk.exhausted;
            page.items
                .extend(chunk.items.into_iter().map(|(_, item)| item));
            let segment_done = run_hi >= seg_hi;
            let page_full = page.items.len() >= limit || size >= PAGE_SIZE_MAX_BYTES;
            if !exhausted || (page_full && !segment_done) {
                if let Some(last) = page.items.last() {
                    page.last_evaluated_key = Some(
                        key_item(
                            &schema,
                            access_item(last).map_err(|e| ApiError::internal(e.to_string()))?,
                        )?
                        .encode(),
                    );
                }
                break;
            }
            if segment_done {
                break;
            }
            pos = run_hi + 1;
            lower = Bound::Included(pos.to_be_bytes().to_vec());
        }
        page.count = page.items.len() as u32;
        page.scanned_count = page.count;
        Ok(page)
    }

    /// One Scan step over this shard's slice, answered once what it read is durable.
    async fn scan_local_durable(&self, range: &ScanRange) -> Result<ScanChunk, ApiError> {
        let (chunk, wait) = self.scan_local(range)?;
        if let Some(pos) = wait {
            self.durable(pos).await?;
        }
        Ok(chunk)
    }

    /// One Scan step over this shard's slice, and the position it must wait for.
    fn scan_local(&self, range: &ScanRange) -> Result<(ScanChunk, Option<LogPos>), ApiError> {
        let shard = self.shard.borrow();
        let t = shard.table(&range.table)?;
        shard.usable()?;
        if !range.consistent
            && let Some((chunk, wait)) = self.cache.borrow_mut().get_chunk(t.id, range)
        {
            return Ok((chunk, shard.store.until_durable(wait)));
        }
        let mut chunk = ScanChunk {
            exhausted: true,
            ..ScanChunk::default()
        };
        let mut max_end = LogPos::default();
        let items = shard
            .store
            .range(t.id, as_ref_bound(&range.lower), as_ref_bound(&range.upper))
            .map_err(|e| store_error(shard.id, e))?;
        for item in items {
            if chunk.items.len() >= range.limit || chunk.size_bytes >= range.budget_bytes {
                chunk.exhausted = false;
                break;
            }
            chunk.size_bytes += item.size_bytes as usize;
            max_end = max_end.max(item.end);
            chunk.items.push((item.key.to_vec(), item.bytes.to_vec()));
        }
        let wait = shard.store.range_wait(t.id, max_end);
        if !range.consistent {
            self.cache
                .borrow_mut()
                .fill_chunk(t.id, range, &chunk, wait.unwrap_or_default());
        }
        Ok((chunk, wait))
    }

    // ---------------------------------------------------------------------------------
    // Batches

    fn batch_get(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedBatchGetItemRequest>(body)?;
        let total: usize = req.tables.iter().map(|t| t.keys.len()).sum();
        if total == 0 || total > BATCH_GET_KEYS_MAX {
            return Err(ApiError::validation(format!(
                "Too many items requested for the BatchGetItem call: {total} keys, must be between 1 and {BATCH_GET_KEYS_MAX}"
            ))
            .into());
        }
        // Per owner shard: per table, the keys it owns.
        let mut parts: Vec<Vec<KeysAndAttributes>> = vec![Vec::new(); self.topology.shard_count()];
        {
            let shard = self.shard.borrow();
            check_tables_unique(req.tables.iter().map(|t| t.table.as_str()))?;
            for tk in req.tables.iter() {
                let table = tk.table.as_str();
                let t = shard.table(table)?;
                let mut seen = HashSet::new();
                for key_bytes in tk.keys.iter() {
                    let key = access_item(key_bytes.as_slice())?;
                    validate_key(key, &t.schema)?;
                    let (owner, _) =
                        self.route_batch_entry(table, &t.schema, key, forwarded, &mut seen)?;
                    let entry = table_entry(
                        &mut parts[owner as usize],
                        table,
                        |l: &KeysAndAttributes| &l.table,
                        || KeysAndAttributes {
                            table: table.to_owned(),
                            keys: Vec::new(),
                            consistent_read: tk.consistent_read,
                        },
                    );
                    entry.keys.push(key_bytes.as_slice().to_vec());
                }
            }
        }
        let local = std::mem::take(&mut parts[self.shard_id() as usize]);
        let (mut response, local_wait) = self.batch_get_local(&local)?;
        if parts.iter().all(Vec::is_empty) {
            let start = out.len();
            reply::ok(out, Opcode::BatchGetItem, id, &encode(&response));
            return Ok(self.when_durable(out, start, local_wait, Opcode::BatchGetItem, id));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = async {
                if let Some(pos) = local_wait {
                    core.durable(pos).await?;
                }
                for (owner, tables) in parts.into_iter().enumerate() {
                    if tables.is_empty() {
                        continue;
                    }
                    let body = encode(&BatchGetItemRequest { tables });
                    let part: BatchGetItemResponse = core
                        .sub_request(owner as ShardId, Opcode::BatchGetItem, &body)
                        .await?;
                    merge_batch_get(&mut response, part);
                }
                Ok(encode(&response))
            }
            .await;
            reply::frame_to_vec(Opcode::BatchGetItem, id, result)
        })))
    }

    /// This shard's part of a BatchGetItem, and the position its reply must wait for.
    fn batch_get_local(
        &self,
        tables: &[KeysAndAttributes],
    ) -> Result<(BatchGetItemResponse, Option<LogPos>), ApiError> {
        let shard = self.shard.borrow();
        let mut response = BatchGetItemResponse::default();
        let mut wait: Option<LogPos> = None;
        let mut size = 0usize;
        for tk in tables {
            let t = shard.table(&tk.table)?;
            let mut items = Vec::new();
            let mut unprocessed = Vec::new();
            let mut key = Vec::new();
            for key_bytes in &tk.keys {
                if size >= BATCH_GET_RESPONSE_MAX_BYTES {
                    unprocessed.push(key_bytes.clone());
                    continue;
                }
                let ki = access_item(key_bytes).map_err(|e| ApiError::internal(e.to_string()))?;
                let (pk, sk) = extract_key(&t.schema, ki)?;
                key.clear();
                encode_index_key(partition_hash(&tk.table, pk), pk, sk, &mut key);
                let (item, item_wait) = self.read_item(&shard, t.id, &key, tk.consistent_read)?;
                wait = wait.max(item_wait);
                if let Some(bytes) = item {
                    size += bytes.len();
                    items.push(bytes.to_vec());
                }
            }
            if !items.is_empty() {
                response.responses.push(TableItems {
                    table: tk.table.clone(),
                    items,
                });
            }
            if !unprocessed.is_empty() {
                response.unprocessed_keys.push(KeysAndAttributes {
                    table: tk.table.clone(),
                    keys: unprocessed,
                    consistent_read: tk.consistent_read,
                });
            }
        }
        Ok((response, wait))
    }

    /// One item through the cache (unless `consistent`), else the store: its bytes and
    /// the position the answer must wait for.
    fn read_item<'s>(
        &self,
        shard: &'s Shard,
        table: u32,
        key: &'s [u8],
        consistent: bool,
    ) -> Result<(Option<&'s [u8]>, Option<LogPos>), ApiError> {
        let store = &shard.store;
        shard.usable()?;
        if consistent {
            let (item, wait) = store
                .get(table, key)
                .map_err(|e| store_error(shard.id, e))?;
            return Ok((item.map(|i| i.bytes), wait));
        }
        let mut cache = self.cache.borrow_mut();
        if let Some(hit) = cache.get_item(table, key) {
            let bytes = match hit.slot {
                None => Some(None),
                Some(slot) => store.try_item_at(slot).map(Some),
            };
            if let Some(bytes) = bytes {
                return Ok((bytes, store.until_durable(hit.wait)));
            }
        }
        let (item, wait) = store
            .get(table, key)
            .map_err(|e| store_error(shard.id, e))?;
        let cached = match &item {
            Some(i) => CachedItem::written(i.slot),
            None => CachedItem::absent(wait),
        };
        cache.fill_item(
            table,
            key,
            cached,
            item.as_ref().map_or(0, |i| i.bytes.len()),
        );
        Ok((item.map(|i| i.bytes), wait))
    }

    fn batch_write(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedBatchWriteItemRequest>(body)?;
        let total: usize = req.tables.iter().map(|t| t.requests.len()).sum();
        if total == 0 || total > BATCH_WRITE_ITEMS_MAX {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must have between 1 and {BATCH_WRITE_ITEMS_MAX} write requests, got {total}"
            ))
            .into());
        }
        // Validate everything before applying anything: a batch with one bad request is
        // rejected whole, as DynamoDB does.
        let mut parts: Vec<Vec<TableWriteRequests>> = vec![Vec::new(); self.topology.shard_count()];
        let mut local_ops: Vec<LocalWrite> = Vec::new();
        {
            let shard = self.shard.borrow();
            check_tables_unique(req.tables.iter().map(|t| t.table.as_str()))?;
            for tw in req.tables.iter() {
                let table = tw.table.as_str();
                let t = shard.table(table)?;
                let mut seen = HashSet::new();
                for wr in tw.requests.iter() {
                    let (bytes, put_size) = match wr {
                        ArchivedWriteRequest::Put(b) => (b.as_slice(), true),
                        ArchivedWriteRequest::Delete(b) => (b.as_slice(), false),
                    };
                    let item = access_item(bytes)?;
                    let put_size = if put_size {
                        Some(validate_item(item, &t.schema)?.size_bytes)
                    } else {
                        validate_key(item, &t.schema)?;
                        None
                    };
                    let (owner, index_key) =
                        self.route_batch_entry(table, &t.schema, item, forwarded, &mut seen)?;
                    if self.is_me(owner) {
                        local_ops.push(LocalWrite {
                            table: table.to_owned(),
                            index_key,
                            put: put_size.map(|size| (bytes.to_vec(), size)),
                        });
                        continue;
                    }
                    let entry = table_entry(
                        &mut parts[owner as usize],
                        table,
                        |l: &TableWriteRequests| &l.table,
                        || TableWriteRequests {
                            table: table.to_owned(),
                            requests: Vec::new(),
                        },
                    );
                    entry.requests.push(match put_size {
                        Some(_) => WriteRequest::Put(bytes.to_vec()),
                        None => WriteRequest::Delete(bytes.to_vec()),
                    });
                }
            }
        }
        let mut local_wait: Option<LogPos> = None;
        if !local_ops.is_empty() {
            let mut shard = self.shard.borrow_mut();
            let Shard {
                id: shard_id,
                tables,
                store,
            } = &mut *shard;
            for w in local_ops {
                let t = tables
                    .get(&w.table)
                    .ok_or_else(|| table_not_found(&w.table))?;
                let (cached, len) = match w.put {
                    Some((bytes, size)) => {
                        let (slot, _) = store
                            .put_slot(t.id, &w.index_key, &bytes, size as u32)
                            .map_err(|e| store_error(*shard_id, e))?;
                        (CachedItem::written(slot), bytes.len())
                    }
                    None => {
                        let (wait, _) = store
                            .delete(t.id, &w.index_key)
                            .map_err(|e| store_error(*shard_id, e))?;
                        (CachedItem::absent(wait), 0)
                    }
                };
                self.cache
                    .borrow_mut()
                    .wrote(t.id, &w.index_key, cached, len);
                local_wait = local_wait.max(Some(cached.wait).filter(|p| *p > LogPos::default()));
            }
            self.kick_flusher();
            local_wait = local_wait.filter(|p| !store.is_durable(*p).unwrap_or(false));
        }
        if parts.iter().all(Vec::is_empty) {
            let start = out.len();
            reply::ok(
                out,
                Opcode::BatchWriteItem,
                id,
                &encode(&BatchWriteItemResponse::default()),
            );
            return Ok(self.when_durable(out, start, local_wait, Opcode::BatchWriteItem, id));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            if let Some(pos) = local_wait
                && let Err(e) = core.durable(pos).await
            {
                return reply::frame_to_vec(Opcode::BatchWriteItem, id, Err(e));
            }
            let mut response = BatchWriteItemResponse::default();
            for (owner, tables) in parts.into_iter().enumerate() {
                if tables.is_empty() {
                    continue;
                }
                let body = encode(&BatchWriteItemRequest {
                    tables: tables.clone(),
                });
                match core
                    .sub_request::<BatchWriteItemResponse>(
                        owner as ShardId,
                        Opcode::BatchWriteItem,
                        &body,
                    )
                    .await
                {
                    Ok(part) => response.unprocessed_items.extend(part.unprocessed_items),
                    // The owner could not be reached: its writes were not applied, so the
                    // client gets them back to retry, as DynamoDB's UnprocessedItems.
                    Err(_) => response.unprocessed_items.extend(tables),
                }
            }
            reply::frame_to_vec(Opcode::BatchWriteItem, id, Ok(encode(&response)))
        })))
    }

    /// Routes one item or key of a batch: its index key, which must not repeat within
    /// its table (`seen`), and the shard owning it.
    fn route_batch_entry(
        &self,
        table: &str,
        schema: &KeySchema,
        item: &ArchivedItem,
        forwarded: bool,
        seen: &mut HashSet<Vec<u8>>,
    ) -> Result<(ShardId, Vec<u8>), Fail> {
        let (pk, sk) = extract_key(schema, item)?;
        let hash = partition_hash(table, pk);
        let mut index_key = Vec::new();
        encode_index_key(hash, pk, sk, &mut index_key);
        if !seen.insert(index_key.clone()) {
            return Err(
                ApiError::validation("Provided list of item keys contains duplicates").into(),
            );
        }
        let owner = self.route(hash, forwarded)?.unwrap_or(self.shard_id());
        Ok((owner, index_key))
    }

    /// Sends a sub-request frame to `owner` and decodes its reply.
    async fn sub_request<T>(
        &self,
        owner: ShardId,
        opcode: Opcode,
        body: &[u8],
    ) -> Result<T, ApiError>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let mut frame = Vec::new();
        write_frame(&mut frame, opcode, FLAG_FORWARDED, 0, owner, &[body]);
        let reply = match self.mesh.call(owner, Call::Frame(frame)).await? {
            Answer::Frame(reply) => reply,
            other => return Err(ApiError::internal(format!("unexpected answer {other:?}"))),
        };
        let (frame, _) = parse_frame(&reply)
            .ok()
            .flatten()
            .ok_or_else(|| ApiError::internal("a shard answered with a corrupt frame"))?;
        if frame.header.flags & FLAG_ERROR != 0 {
            let e = decode::<ErrorResponse>(frame.body)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            return Err(ApiError::new(
                ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::InternalServerError),
                e.message,
            ));
        }
        decode::<T>(frame.body).map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// Fails when a table appears twice in a batch's RequestItems.
fn check_tables_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ApiError::validation(format!(
                "Table {name} appears twice in RequestItems"
            )));
        }
    }
    Ok(())
}

/// The entry for `table` at the end of a per-owner list, appended when the list ends
/// with another table's entry (batches are grouped table by table).
fn table_entry<'a, T>(
    list: &'a mut Vec<T>,
    table: &str,
    name_of: impl Fn(&T) -> &str,
    new: impl FnOnce() -> T,
) -> &'a mut T {
    if list.last().is_none_or(|l| name_of(l) != table) {
        list.push(new());
    }
    list.last_mut().expect("an entry was just ensured")
}

/// A validated write of a BatchWriteItem that this shard owns.
struct LocalWrite {
    table: String,
    index_key: Vec<u8>,
    /// The encoded item and its DynamoDB size, or None for a delete.
    put: Option<(Vec<u8>, usize)>,
}

fn merge_batch_get(into: &mut BatchGetItemResponse, part: BatchGetItemResponse) {
    for ti in part.responses {
        match into.responses.iter_mut().find(|r| r.table == ti.table) {
            Some(r) => r.items.extend(ti.items),
            None => into.responses.push(ti),
        }
    }
    into.unprocessed_keys.extend(part.unprocessed_keys);
}

fn expect_done(answer: Result<Answer, ApiError>) -> Result<(), ApiError> {
    match answer? {
        Answer::Done(r) => r,
        other => Err(ApiError::internal(format!("unexpected answer {other:?}"))),
    }
}

fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(usize::MAX),
        Some(0) => Err(ApiError::validation(
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
        )),
        Some(l) => Ok(l as usize),
    }
}

/// Inclusive hash bounds of parallel-scan segment `segment` of `total`.
pub fn segment_range(segment: u32, total: u32) -> (u64, u64) {
    assert!(segment < total);
    let span = 1u128 << 64;
    let lo = (segment as u128 * span / total as u128) as u64;
    let hi = ((segment as u128 + 1) * span / total as u128 - 1) as u64;
    (lo, hi)
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The tighter of a lower bound and "strictly after `key`".
fn tighter_lower(lower: Bound<Vec<u8>>, key: Vec<u8>) -> Bound<Vec<u8>> {
    match &lower {
        Bound::Included(l) | Bound::Excluded(l) if *l > key => lower,
        _ => Bound::Excluded(key),
    }
}

/// The tighter of an upper bound and "strictly before `key`".
fn tighter_upper(upper: Bound<Vec<u8>>, key: Vec<u8>) -> Bound<Vec<u8>> {
    match &upper {
        Bound::Included(u) | Bound::Excluded(u) if *u < key => upper,
        _ => Bound::Excluded(key),
    }
}

fn validate_table_name(name: &str) -> Result<(), ApiError> {
    let ok_len = (TABLE_NAME_MIN_LEN..=TABLE_NAME_MAX_LEN).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length between {TABLE_NAME_MIN_LEN} and {TABLE_NAME_MAX_LEN} and match [a-zA-Z0-9_.-]+"
        )))
    }
}

fn validate_key_schema(schema: &KeySchema) -> Result<(), ApiError> {
    let names =
        std::iter::once(&schema.partition.name).chain(schema.sort.as_ref().map(|s| &s.name));
    for name in names {
        if name.is_empty() || name.len() > KEY_ATTRIBUTE_NAME_MAX_BYTES {
            return Err(ApiError::validation(format!(
                "Key attribute names must be 1 to {KEY_ATTRIBUTE_NAME_MAX_BYTES} bytes long, got {} bytes",
                name.len()
            )));
        }
    }
    if schema
        .sort
        .as_ref()
        .is_some_and(|s| s.name == schema.partition.name)
    {
        return Err(ApiError::validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    Ok(())
}

/// A core as a [`Service`] for its transport.
pub struct CoreService(pub Rc<Core>);

impl Service for CoreService {
    fn on_frame(&self, conn: &Rc<ConnCtx>, frame: Frame<'_>, out: &mut Vec<u8>) -> Verdict {
        match self.0.dispatch(frame, out) {
            Outcome::Done => Verdict::Continue,
            Outcome::Malformed => Verdict::Close,
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
        let e = ApiError::new(
            ErrorCode::SerializationException,
            format!("malformed frame: {err}; closing the connection"),
        );
        reply::error(out, Opcode::Hello, 0, &e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_tile_the_hash_space() {
        for total in [1u32, 2, 3, 7, 1000] {
            let mut next = 0u64;
            for s in 0..total {
                let (lo, hi) = segment_range(s, total);
                assert_eq!(lo, next);
                assert!(hi >= lo);
                next = hi.wrapping_add(1);
            }
            assert_eq!(segment_range(total - 1, total).1, u64::MAX);
        }
    }

    #[test]
    fn start_key_bounds_tighten_only() {
        let k = |b: &[u8]| b.to_vec();
        assert_eq!(
            tighter_lower(Bound::Included(k(b"b")), k(b"c")),
            Bound::Excluded(k(b"c"))
        );
        assert_eq!(
            tighter_lower(Bound::Included(k(b"d")), k(b"c")),
            Bound::Included(k(b"d"))
        );
        assert_eq!(
            tighter_upper(Bound::Excluded(k(b"z")), k(b"c")),
            Bound::Excluded(k(b"c"))
        );
        assert_eq!(
            tighter_upper(Bound::Excluded(k(b"a")), k(b"c")),
            Bound::Excluded(k(b"a"))
        );
        assert_eq!(
            tighter_upper(Bound::Unbounded, k(b"c")),
            Bound::Excluded(k(b"c"))
        );
    }

    #[test]
    fn table_names_follow_dynamodb_rules() {
        assert!(validate_table_name("abc").is_ok());
        assert!(validate_table_name("a-b_c.9").is_ok());
        assert!(validate_table_name("ab").is_err());
        assert!(validate_table_name(&"a".repeat(256)).is_err());
        assert!(validate_table_name("a b c").is_err());
    }
}
