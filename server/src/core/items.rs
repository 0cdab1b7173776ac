//! Single items: PutItem, GetItem, DeleteItem, and the one read path through the cache.

use std::rc::Rc;

use tern_protocol::ApiError;
use tern_protocol::fastpath;
use tern_protocol::frame::Opcode;
use tern_protocol::messages::*;
use tern_protocol::validate::{check_item_bytes, check_key_bytes, validate_item, validate_key};
use tern_protocol::value::access_item;
use tern_storage::store::LogPos;

use super::write::ItemWrite;
use super::{Core, OpResult, Outcome, WriteAck};
use crate::cache::{CachedItem, ShardCacheState};
use crate::reply;
use crate::shard::{Shard, store_error, table_not_found};

impl Core {
    pub(super) fn put_item(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedPutItemRequest>(body)?;
        let table = req.table.as_str();
        let item_bytes = req.item.as_slice();
        check_item_bytes(item_bytes.len())?;
        let item = access_item(item_bytes)?;
        let mut shard = self.shard.borrow_mut();
        let Shard {
            id: shard_id,
            tables,
            store,
            ..
        } = &mut *shard;
        let t = tables.get(table).ok_or_else(|| table_not_found(table))?;
        let info = validate_item(item, &t.schema)?;
        let (pk, sk) = (info.partition_key, info.sort_key);
        let key = match self.owned_key(table, pk, sk, forwarded)? {
            Ok(key) => key,
            Err(owner) => return Ok(Outcome::Forward(owner)),
        };
        let write = ItemWrite::Put {
            bytes: item_bytes,
            size_bytes: info.size_bytes as u32,
        };
        let ack = WriteAck {
            opcode: Opcode::PutItem,
            id,
            return_values: req.return_values,
        };
        if self.is_replicated() {
            if let Some(to_leader) = self.leader_route(Opcode::PutItem, id, body)? {
                return Ok(to_leader);
            }
            let entry = self.item_entry(store, *shard_id, t.id, &key, write)?;
            return Ok(self.propose_item(ack, entry));
        }
        let written = self.write_item(store, *shard_id, t.id, &key, write)?;
        Ok(self.acknowledge(out, store, ack, written.wait, written.old))
    }

    /// Replies to a single-item write that appended (or waits on) the record ending at
    /// `pos`: the reply (with the replaced item for ALL_OLD) goes once `pos` is durable.
    pub(super) fn acknowledge(
        self: &Rc<Self>,
        out: &mut Vec<u8>,
        store: &tern_storage::store::Store<tern_storage::glommio_disk::GlommioDisk>,
        ack: WriteAck,
        pos: Option<LogPos>,
        old: Option<tern_storage::index::Slot>,
    ) -> Outcome {
        self.kick_flusher();
        let start = out.len();
        let old = match ack.return_values {
            ArchivedReturnValues::AllOld => old.map(|slot| store.item_at(slot)).transpose(),
            ArchivedReturnValues::None => Ok(None),
        };
        match old {
            Ok(old) => self.write_reply(out, ack.opcode, ack.id, ack.return_values, old),
            Err(e) => {
                let e = ApiError::internal(format!(
                    "the write was applied, but the item it replaced cannot be read back: {e}"
                ));
                reply::error(out, ack.opcode, ack.id, &e);
            }
        }
        let wait = pos.filter(|p| !store.is_durable(*p).unwrap_or(false));
        self.when_durable(start, wait)
    }

    pub(super) fn write_reply(
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
    pub(super) fn get_item(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let shard = self.shard.borrow();
        // The common request (a key of scalar attributes) is read by hand, in one pass;
        // anything it declines goes the generic way, which gives every error.
        let fast = fastpath::get_item_request(body).and_then(|req| {
            let (table, t) = shard.tables.get_by_bytes(req.table)?;
            let (pk, sk) = req.key.matching(&t.schema)?;
            Some((table, t, pk, sk, req.consistent_read))
        });
        let (table, t, pk, sk, consistent_read) = match fast {
            Some(fast) => fast,
            None => {
                let req = access::<ArchivedGetItemRequest>(body)?;
                let table = req.table.as_str();
                check_key_bytes(req.key.len())?;
                let key_item = access_item(req.key.as_slice())?;
                let t = shard.table(table)?;
                let (pk, sk) = validate_key(key_item, &t.schema)?;
                (table, t, pk, sk, req.consistent_read)
            }
        };
        let key = match self.owned_key(table, pk, sk, forwarded)? {
            Ok(key) => key,
            Err(owner) => return Ok(Outcome::Forward(owner)),
        };
        if self.needs_barrier(consistent_read) {
            return Ok(self.after_barrier(Opcode::GetItem, id, body));
        }
        let mut cache = self.cache.borrow_mut();
        let (item, wait) = self.read_item(&shard, &mut cache, t.id, &key, consistent_read)?;
        let start = out.len();
        let crc = item.as_ref().and_then(|f| f.crc);
        reply::item(out, id, item.map(|f| f.bytes), crc);
        Ok(self.when_durable(start, wait))
    }

    pub(super) fn delete_item(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedDeleteItemRequest>(body)?;
        let table = req.table.as_str();
        check_key_bytes(req.key.len())?;
        let key_item = access_item(req.key.as_slice())?;
        let mut shard = self.shard.borrow_mut();
        let Shard {
            id: shard_id,
            tables,
            store,
            ..
        } = &mut *shard;
        let t = tables.get(table).ok_or_else(|| table_not_found(table))?;
        let (pk, sk) = validate_key(key_item, &t.schema)?;
        let key = match self.owned_key(table, pk, sk, forwarded)? {
            Ok(key) => key,
            Err(owner) => return Ok(Outcome::Forward(owner)),
        };
        let ack = WriteAck {
            opcode: Opcode::DeleteItem,
            id,
            return_values: req.return_values,
        };
        if self.is_replicated() {
            if let Some(to_leader) = self.leader_route(Opcode::DeleteItem, id, body)? {
                return Ok(to_leader);
            }
            let entry = self.item_entry(store, *shard_id, t.id, &key, ItemWrite::Delete)?;
            return Ok(self.propose_item(ack, entry));
        }
        let written = self.write_item(store, *shard_id, t.id, &key, ItemWrite::Delete)?;
        Ok(self.acknowledge(out, store, ack, written.wait, written.old))
    }

    /// One item through the cache (unless `consistent`), else the store: its bytes and
    /// the position the answer must wait for.
    pub(super) fn read_item<'s>(
        &self,
        shard: &'s Shard,
        cache: &'s mut ShardCacheState,
        table: u32,
        key: &'s [u8],
        consistent: bool,
    ) -> Result<(Option<Found<'s>>, Option<LogPos>), ApiError> {
        let store = &shard.store;
        shard.usable()?;
        let found = |bytes| Found { bytes, crc: None };
        if consistent {
            let (item, wait) = store
                .get(table, key)
                .map_err(|e| store_error(shard.id, e))?;
            return Ok((item.map(|i| found(i.bytes)), wait));
        }
        if let Some((hit, entry)) = cache.get_item(table, key) {
            // (Looked up twice, cheaply: returning the first borrow while the miss path
            // below mutates the cache is the case the borrow checker cannot split.)
            if hit.slot.is_some() && cache.inline_bytes(entry).is_some() {
                let bytes = cache.inline_bytes(entry).unwrap_or_default();
                let found = Found {
                    bytes,
                    crc: Some(hit.crc),
                };
                return Ok((Some(found), store.until_durable(hit.wait)));
            }
            let bytes = match hit.slot {
                None => Some(None),
                Some(slot) => match store.try_item_at(slot) {
                    Some(read) => Some(Some(Found {
                        bytes: read.map_err(|e| store_error(shard.id, e))?,
                        crc: Some(hit.crc),
                    })),
                    None => None,
                },
            };
            if let Some(bytes) = bytes {
                return Ok((bytes, store.until_durable(hit.wait)));
            }
        }
        let (item, wait) = store
            .get(table, key)
            .map_err(|e| store_error(shard.id, e))?;
        let cached = match &item {
            Some(i) => CachedItem::written(i.slot, i.bytes),
            None => CachedItem::absent(wait),
        };
        cache.fill_item(table, key, cached, item.as_ref().map_or(&[], |i| i.bytes));
        Ok((item.map(|i| found(i.bytes)), wait))
    }
}

/// An item read for a reply: its bytes, and their CRC32 when the cache already knew it.
pub(super) struct Found<'s> {
    pub bytes: &'s [u8],
    pub crc: Option<u32>,
}
