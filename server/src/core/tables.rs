//! Hello, DDL (serialized on shard 0, applied on every shard), DescribeTable, ListTables, Stats.

use std::rc::Rc;

use tern_protocol::frame::{FLAG_FORWARDED, Opcode, write_frame};
use tern_protocol::messages::*;
use tern_protocol::requests::list_tables_limit;
use tern_protocol::validate::{validate_key_schema, validate_table_name};
use tern_protocol::{ApiError, KeySchema};
use tern_storage::store::{Applied, StoreError};

use super::{Core, OpResult, Outcome, now_ms};
use crate::mesh::{Answer, Call};
use crate::reply;
use crate::shard::store_error;
use crate::topology::ShardId;

/// A replicated CreateTable whose table id concurrent creations keep taking gives up
/// after this many proposals.
const DDL_ID_ATTEMPTS: usize = 4;

impl Core {
    pub(super) fn hello(&self, id: u64, body: &[u8], out: &mut Vec<u8>) -> OpResult {
        access::<ArchivedHelloRequest>(body)?;
        reply::ok(out, Opcode::Hello, id, &encode(&self.topology.hello()));
        Ok(Outcome::Done)
    }

    pub(super) fn create_table(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<CreateTableRequest>(body)?;
        validate_table_name(&req.name)?;
        validate_key_schema(&req.key_schema)?;
        if self.via.get().peer {
            // A follower's part of a CreateTable: this shard's group only.
            let core = self.clone();
            return Ok(Outcome::Later(Box::pin(async move {
                let result = core
                    .create_table_on_shard(&req.name, req.key_schema, now_ms())
                    .await
                    .map(|()| Vec::new());
                reply::frame_to_vec(Opcode::CreateTable, id, result)
            })));
        }
        if !self.is_me(0) {
            return Ok(Outcome::Forward(0));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = core.create_table_everywhere(req).await;
            reply::frame_to_vec(Opcode::CreateTable, id, result)
        })))
    }

    pub(super) async fn create_table_everywhere(
        self: &Rc<Self>,
        req: CreateTableRequest,
    ) -> Result<Vec<u8>, ApiError> {
        let _permit = self
            .ddl_lock
            .acquire_permit(1)
            .await
            .map_err(|e| ApiError::internal(format!("DDL lock: {e}")))?;
        let created = now_ms();
        self.create_table_on_shard(&req.name, req.key_schema.clone(), created)
            .await?;
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

    pub(super) fn delete_table(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<TableRequest>(body)?;
        if self.via.get().peer {
            let core = self.clone();
            return Ok(Outcome::Later(Box::pin(async move {
                let result = core
                    .delete_table_on_shard(&req.name)
                    .await
                    .map(|()| Vec::new());
                reply::frame_to_vec(Opcode::DeleteTable, id, result)
            })));
        }
        if !self.is_me(0) {
            return Ok(Outcome::Forward(0));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = core.delete_table_everywhere(req.name).await;
            reply::frame_to_vec(Opcode::DeleteTable, id, result)
        })))
    }

    pub(super) async fn delete_table_everywhere(
        self: &Rc<Self>,
        name: String,
    ) -> Result<Vec<u8>, ApiError> {
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
        self.delete_table_on_shard(&name).await?;
        for shard in 0..self.topology.shard_count() as ShardId {
            if !self.is_me(shard) {
                expect_done(self.mesh.call(shard, Call::DeleteTable(name.clone())).await)?;
            }
        }
        Ok(encode(&TableResponse { table }))
    }

    /// Creates a table on this shard: logged here, or in a replicated shard proposed to
    /// its group (by its leader, to which a follower passes it), and applied by every
    /// replica. Returns once it is durable (and, replicated, applied here).
    pub(super) async fn create_table_on_shard(
        self: &Rc<Self>,
        name: &str,
        schema: KeySchema,
        creation_time_ms: u64,
    ) -> Result<(), ApiError> {
        if self.repl().is_none() {
            let logged = self.create_table_here(name, schema, creation_time_ms);
            return self.logged_durable(logged).await;
        }
        if !self.repl().is_some_and(|r| r.is_leader()) {
            let body = encode(&CreateTableRequest {
                name: name.to_owned(),
                key_schema: schema,
            });
            return self.ddl_to_leader(Opcode::CreateTable, &body).await;
        }
        // The leader picks the table id; an id another in-flight CreateTable took first
        // is refused when applied (every replica decides the same), and retried.
        for _ in 0..DDL_ID_ATTEMPTS {
            let data = {
                let shard = self.shard.borrow();
                if shard.has_table(name) {
                    return Err(ApiError::in_use(format!("Table already exists: {name}")));
                }
                shard.create_table_entry(name, &schema, creation_time_ms)
            };
            let done = self.replicate(vec![data], false).await.pop().expect("one");
            match done?.effect {
                Some(Applied::CreateTable { result: Ok(()), .. }) | None => return Ok(()),
                Some(Applied::CreateTable {
                    result: Err(StoreError::TableIdTaken(_)),
                    ..
                }) => continue,
                Some(Applied::CreateTable { result: Err(e), .. }) => {
                    return Err(store_error(self.shard_id(), e));
                }
                Some(other) => {
                    return Err(ApiError::internal(format!(
                        "a CreateTable entry applied as {other:?}"
                    )));
                }
            }
        }
        Err(ApiError::internal(format!(
            "CreateTable {name}: its table id was taken {DDL_ID_ATTEMPTS} times in a row by concurrent creations: retry"
        )))
    }

    /// Deletes a table (and its items) on this shard; see [`Core::create_table_on_shard`].
    pub(super) async fn delete_table_on_shard(self: &Rc<Self>, name: &str) -> Result<(), ApiError> {
        if self.repl().is_none() {
            let logged = self.delete_table_here(name);
            return self.logged_durable(logged).await;
        }
        if !self.repl().is_some_and(|r| r.is_leader()) {
            let body = encode(&TableRequest {
                name: name.to_owned(),
            });
            return self.ddl_to_leader(Opcode::DeleteTable, &body).await;
        }
        let data = self.shard.borrow().delete_table_entry(name)?;
        let done = self
            .replicate(vec![data], false)
            .await
            .pop()
            .expect("one")?;
        match done.effect {
            Some(Applied::DeleteTable { .. }) | None => Ok(()),
            Some(other) => Err(ApiError::internal(format!(
                "a DeleteTable entry applied as {other:?}"
            ))),
        }
    }

    /// Passes this shard's part of a DDL to its leader, then waits until this replica
    /// has applied it too (so the catalog here shows it before the client hears back).
    async fn ddl_to_leader(self: &Rc<Self>, opcode: Opcode, body: &[u8]) -> Result<(), ApiError> {
        let mut frame = Vec::with_capacity(body.len() + 32);
        write_frame(
            &mut frame,
            opcode,
            FLAG_FORWARDED,
            0,
            self.shard_id(),
            &[body],
        );
        let reply = self.to_leader(frame).await?;
        super::reply_body(&reply)?;
        self.read_barrier().await
    }

    /// (items, bytes) of a table summed over all shards.
    pub(super) async fn table_totals(&self, name: &str) -> Result<(u64, u64), ApiError> {
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

    pub(super) fn describe_table(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
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
    pub(super) fn shard_stats(&self) -> ShardStats {
        let mut stats = self.shard.borrow().stats();
        stats.counters.extend(self.cache.borrow().counters());
        if let Some(r) = self.repl() {
            stats.counters.extend(
                r.counters()
                    .into_iter()
                    .map(|(name, value)| Counter { name, value }),
            );
        }
        stats
    }

    /// Counters of every shard (or one), gathered over the mesh.
    pub(super) fn stats(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
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

    pub(super) fn list_tables(&self, id: u64, body: &[u8], out: &mut Vec<u8>) -> OpResult {
        let req = access::<ArchivedListTablesRequest>(body)?;
        let limit = list_tables_limit(req.limit.as_ref().map(|l| l.to_native() as usize))?;
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
}

fn expect_done(answer: Result<Answer, ApiError>) -> Result<(), ApiError> {
    match answer? {
        Answer::Done(r) => r,
        other => Err(ApiError::internal(format!("unexpected answer {other:?}"))),
    }
}
