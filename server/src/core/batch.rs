//! BatchGetItem and BatchWriteItem: split by owner shard, run locally and over the mesh, merged.

use std::collections::HashSet;
use std::rc::Rc;

use tern_protocol::frame::{FLAG_FORWARDED, Opcode, write_frame};
use tern_protocol::keys::{encode_index_key, extract_key, partition_hash};
use tern_protocol::limits::BATCH_GET_RESPONSE_MAX_BYTES;
use tern_protocol::messages::*;
use tern_protocol::requests::{
    check_batch_get_count, check_batch_write_bytes, check_batch_write_count, check_tables_unique,
};
use tern_protocol::validate::{check_item_bytes, check_key_bytes, validate_item, validate_key};
use tern_protocol::value::{ArchivedItem, access_item};
use tern_protocol::{ApiError, KeySchema};
use tern_storage::store::LogPos;

use super::write::ItemWrite;
use super::{Core, Fail, OpResult, Outcome};
use crate::mesh::{Answer, Call};
use crate::page::ITEM_SLOT_BYTES;
use crate::reply;
use crate::shard::{Shard, store_error, table_not_found};
use crate::topology::ShardId;

impl Core {
    pub(super) fn batch_get(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedBatchGetItemRequest>(body)?;
        let total: usize = req.tables.iter().map(|t| t.keys.len()).sum();
        check_batch_get_count(total)?;
        if self.needs_barrier(req.tables.iter().any(|t| t.consistent_read)) {
            return Ok(self.after_barrier(Opcode::BatchGetItem, id, body));
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
                    check_key_bytes(key_bytes.len())?;
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
        // The reply holds at most BATCH_GET_RESPONSE_MAX_BYTES of items in all: this
        // shard's part reads first, then each owner in turn gets what is left; keys past
        // the budget come back as UnprocessedKeys, as DynamoDB returns them.
        let local = std::mem::take(&mut parts[self.shard_id() as usize]);
        let mut response = BatchGetItemResponse::default();
        let (mut budget, local_wait) =
            self.batch_get_local(&local, BATCH_GET_RESPONSE_MAX_BYTES, &mut response)?;
        if parts.iter().all(Vec::is_empty) {
            let start = out.len();
            reply::ok(out, Opcode::BatchGetItem, id, &encode(&response));
            return Ok(self.when_durable(start, local_wait));
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
                    if budget == 0 {
                        response.unprocessed_keys.extend(tables);
                        continue;
                    }
                    let call = Call::BatchGet {
                        tables,
                        budget_bytes: budget,
                    };
                    match core.mesh.call(owner as ShardId, call).await? {
                        Answer::BatchGet(part) => {
                            let (part, left) = part?;
                            budget = left;
                            merge_batch_get(&mut response, part);
                        }
                        other => {
                            return Err(ApiError::internal(format!("unexpected answer {other:?}")));
                        }
                    }
                }
                Ok(encode(&response))
            }
            .await;
            reply::frame_to_vec(Opcode::BatchGetItem, id, result)
        })))
    }

    /// A part of a BatchGetItem that another shard coordinates: read, then answered once
    /// what it read is durable. Returns the response and the budget left.
    pub(super) async fn batch_get_part(
        &self,
        tables: &[KeysAndAttributes],
        budget_bytes: usize,
    ) -> Result<(BatchGetItemResponse, usize), ApiError> {
        let mut response = BatchGetItemResponse::default();
        let (left, wait) = self.batch_get_local(tables, budget_bytes, &mut response)?;
        if let Some(pos) = wait {
            self.durable(pos).await?;
        }
        Ok((response, left))
    }

    /// Reads this shard's part of a BatchGetItem into `response`, items taking at most
    /// `budget_bytes` (each counted with its slot in the item vector); from the first item
    /// that does not fit on, keys go to UnprocessedKeys. Returns the budget left and the
    /// position the reply must wait for.
    fn batch_get_local(
        &self,
        tables: &[KeysAndAttributes],
        budget_bytes: usize,
        response: &mut BatchGetItemResponse,
    ) -> Result<(usize, Option<LogPos>), ApiError> {
        let shard = self.shard.borrow();
        let mut cache = self.cache.borrow_mut();
        let mut wait: Option<LogPos> = None;
        let mut left = budget_bytes;
        let mut full = left == 0;
        for tk in tables {
            let t = shard.table(&tk.table)?;
            let mut items = Vec::new();
            let mut unprocessed = Vec::new();
            let mut key = Vec::new();
            for key_bytes in &tk.keys {
                if full {
                    unprocessed.push(key_bytes.clone());
                    continue;
                }
                let ki = access_item(key_bytes).map_err(|e| ApiError::internal(e.to_string()))?;
                let (pk, sk) = extract_key(&t.schema, ki)?;
                key.clear();
                encode_index_key(partition_hash(&tk.table, pk), pk, sk, &mut key);
                let (item, item_wait) =
                    self.read_item(&shard, &mut cache, t.id, &key, tk.consistent_read)?;
                let Some(super::items::Found { bytes, .. }) = item else {
                    wait = wait.max(item_wait);
                    continue;
                };
                let cost = bytes.len() + ITEM_SLOT_BYTES;
                if cost > left {
                    full = true;
                    unprocessed.push(key_bytes.clone());
                    continue;
                }
                left -= cost;
                wait = wait.max(item_wait);
                items.push(bytes.to_vec());
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
        Ok((left, wait))
    }

    pub(super) fn batch_write(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedBatchWriteItemRequest>(body)?;
        let total: usize = req.tables.iter().map(|t| t.requests.len()).sum();
        check_batch_write_count(total)?;
        // Validate everything before applying anything: a batch with one bad request is
        // rejected whole, as DynamoDB does.
        let request_bytes: usize = req
            .tables
            .iter()
            .flat_map(|t| t.requests.iter())
            .map(|wr| match wr {
                ArchivedWriteRequest::Put(b) | ArchivedWriteRequest::Delete(b) => b.len(),
            })
            .sum();
        check_batch_write_bytes(request_bytes)?;
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
                    if put_size {
                        check_item_bytes(bytes.len())?;
                    } else {
                        check_key_bytes(bytes.len())?;
                    }
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
                            key: if put_size.is_none() {
                                bytes.to_vec()
                            } else {
                                Vec::new()
                            },
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
        // A follower of this shard passes its part (only: the rest belongs to other
        // shards, whose cores decide for themselves) to the shard's leader, as if it
        // were another shard's part.
        if let Some(repl) = self.repl()
            && !local_ops.is_empty()
            && !repl.is_leader()
        {
            if self.via.get().peer {
                return Err(super::repl::not_leader(repl.shard(), repl.leader().0).into());
            }
            let me = self.shard_id() as usize;
            for w in local_ops.drain(..) {
                w.push_into(&mut parts[me]);
            }
        }
        let mut local_wait: Option<LogPos> = None;
        // Replicated: the local writes' entries, proposed together below.
        let mut proposals: Vec<(Vec<u8>, LocalWrite)> = Vec::new();
        if !local_ops.is_empty() {
            let mut shard = self.shard.borrow_mut();
            let Shard {
                id: shard_id,
                tables,
                store,
                ..
            } = &mut *shard;
            // Every put must have room in its table's index before any write applies:
            // the batch is refused whole, never half applied.
            for table in local_ops.iter().map(|w| &w.table) {
                let t = tables.get(table).ok_or_else(|| table_not_found(table))?;
                let keys = local_ops
                    .iter()
                    .filter(|w| &w.table == table && w.put.is_some())
                    .map(|w| w.index_key.as_slice());
                store
                    .check_room(t.id, keys)
                    .map_err(|e| store_error(*shard_id, e))?;
            }
            for w in local_ops {
                let t = tables
                    .get(&w.table)
                    .ok_or_else(|| table_not_found(&w.table))?;
                let write = match &w.put {
                    Some((bytes, size)) => ItemWrite::Put {
                        bytes,
                        size_bytes: *size as u32,
                    },
                    None => ItemWrite::Delete,
                };
                if self.is_replicated() {
                    let entry = self.item_entry(store, *shard_id, t.id, &w.index_key, write)?;
                    proposals.push((entry, w));
                    continue;
                }
                let written = self.write_item(store, *shard_id, t.id, &w.index_key, write)?;
                local_wait = local_wait.max(written.wait);
            }
            self.kick_flusher();
            local_wait = local_wait.filter(|p| !store.is_durable(*p).unwrap_or(false));
        }
        if parts.iter().all(Vec::is_empty) && proposals.is_empty() {
            let start = out.len();
            reply::ok(
                out,
                Opcode::BatchWriteItem,
                id,
                &encode(&BatchWriteItemResponse::default()),
            );
            return Ok(self.when_durable(start, local_wait));
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            if let Some(pos) = local_wait
                && let Err(e) = core.durable(pos).await
            {
                return reply::frame_to_vec(Opcode::BatchWriteItem, id, Err(e));
            }
            let mut response = BatchWriteItemResponse::default();
            if !proposals.is_empty() {
                let (entries, writes): (Vec<_>, Vec<_>) = proposals.into_iter().unzip();
                let results = core.replicate(entries, false).await;
                for (result, w) in results.into_iter().zip(writes) {
                    let applied = result.and_then(|d| {
                        super::write::applied_write(core.shard_id(), d.effect.as_ref())
                    });
                    match applied {
                        Ok(()) => {}
                        // Not applied (a leader change; or, unknown, a Put or Delete that
                        // may be applied twice without harm): back to the client, as
                        // DynamoDB's UnprocessedItems, to send again.
                        Err(e) if e.code.is_retryable() => {
                            w.push_into(&mut response.unprocessed_items);
                        }
                        Err(e) => return reply::frame_to_vec(Opcode::BatchWriteItem, id, Err(e)),
                    }
                }
            }
            for (owner, tables) in parts.into_iter().enumerate() {
                if tables.is_empty() {
                    continue;
                }
                let body = encode(&BatchWriteItemRequest {
                    tables: tables.clone(),
                });
                let part = if core.is_me(owner as ShardId) {
                    // This shard's part, which its leader applies (see above).
                    core.batch_part_to_leader(&body).await
                } else {
                    core.sub_request::<BatchWriteItemResponse>(
                        owner as ShardId,
                        Opcode::BatchWriteItem,
                        &body,
                    )
                    .await
                };
                match part {
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
    pub(super) fn route_batch_entry(
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

    /// This shard's part of a BatchWriteItem, applied by the shard's leader on another
    /// node.
    async fn batch_part_to_leader(
        self: &Rc<Self>,
        body: &[u8],
    ) -> Result<BatchWriteItemResponse, ApiError> {
        let mut frame = Vec::with_capacity(body.len() + 32);
        write_frame(
            &mut frame,
            Opcode::BatchWriteItem,
            FLAG_FORWARDED,
            0,
            self.shard_id(),
            &[body],
        );
        let reply = self.to_leader(frame).await?;
        decode::<BatchWriteItemResponse>(super::reply_body(&reply)?)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Sends a sub-request frame to `owner` and decodes its reply.
    pub(super) async fn sub_request<T>(
        &self,
        owner: ShardId,
        opcode: Opcode,
        body: &[u8],
    ) -> Result<T, ApiError>
    where
        T: rkyv::Archive,
        T::Archived: tern_protocol::messages::Checked
            + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let mut frame = Vec::new();
        write_frame(&mut frame, opcode, FLAG_FORWARDED, 0, owner, &[body]);
        let reply = match self.mesh.call(owner, Call::Frame(frame)).await? {
            Answer::Frame(reply) => reply,
            other => return Err(ApiError::internal(format!("unexpected answer {other:?}"))),
        };
        decode::<T>(super::reply_body(&reply)?).map_err(|e| ApiError::internal(e.to_string()))
    }
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
    /// A delete's encoded key (to hand back unprocessed).
    key: Vec<u8>,
}

impl LocalWrite {
    /// Adds this write, as the request it came in as, to a per-table list (another
    /// shard's part, or the UnprocessedItems handed back).
    fn push_into(self, list: &mut Vec<TableWriteRequests>) {
        let entry = table_entry(
            list,
            &self.table,
            |l: &TableWriteRequests| &l.table,
            || TableWriteRequests {
                table: self.table.clone(),
                requests: Vec::new(),
            },
        );
        entry.requests.push(match self.put {
            Some((bytes, _)) => WriteRequest::Put(bytes),
            None => WriteRequest::Delete(self.key),
        });
    }
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
