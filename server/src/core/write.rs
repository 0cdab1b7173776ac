//! The write seam: the one place an item write (PutItem, DeleteItem, each write of a
//! BatchWriteItem — and UpdateItem and transactions when they come) reaches a shard's
//! state. It appends the record to the shard's log and then updates the cache
//! (write-through), in that order, and says which log position the acknowledgement
//! waits for. Replication proposes here: a write becomes a Raft entry, and what follows
//! the append (the cache, the acknowledgement) happens when the entry is applied.

use std::rc::Rc;

use tern_protocol::ApiError;
use tern_protocol::messages::ArchivedReturnValues;
use tern_storage::format::RecordKind;
use tern_storage::glommio_disk::GlommioDisk;
use tern_storage::index::Slot;
use tern_storage::store::{Applied, LogPos, Store};

use super::{Core, Outcome, WriteAck};
use crate::cache::CachedItem;
use crate::reply;
use crate::shard::{entry_bytes, store_error};

/// An item write as the seam takes it: the item's encoded bytes and DynamoDB size, or
/// the key's removal.
#[derive(Debug, Clone, Copy)]
pub(super) enum ItemWrite<'a> {
    Put { bytes: &'a [u8], size_bytes: u32 },
    Delete,
}

/// What a write did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    /// The position the acknowledgement waits for (`None`: nothing was appended — the
    /// delete of an absent key).
    pub wait: Option<LogPos>,
    /// The record the write replaced, for `ReturnValues=ALL_OLD`.
    pub old: Option<Slot>,
}

impl Core {
    /// Applies `write` of `key` (an index key this shard owns) in table `table` (its
    /// shard-local id); see the module doc.
    pub(super) fn write_item(
        &self,
        store: &mut Store<GlommioDisk>,
        shard_id: u32,
        table: u32,
        key: &[u8],
        write: ItemWrite<'_>,
    ) -> Result<Written, ApiError> {
        let (cached, old, bytes) = match write {
            ItemWrite::Put { bytes, size_bytes } => {
                let (slot, old) = store
                    .put_slot(table, key, bytes, size_bytes)
                    .map_err(|e| store_error(shard_id, e))?;
                (CachedItem::written(slot, bytes), old, bytes)
            }
            ItemWrite::Delete => {
                let (wait, old) = store
                    .delete(table, key)
                    .map_err(|e| store_error(shard_id, e))?;
                (CachedItem::absent(wait), old, &[][..])
            }
        };
        self.cache.borrow_mut().wrote(table, key, cached, bytes);
        let wait = Some(cached.wait).filter(|p| *p > LogPos::default());
        Ok(Written { wait, old })
    }

    /// In a replicated shard: the entry that proposes `write` (a Put must have room in
    /// its table's index now; should another write take the room first, the entry
    /// applies as refused on every replica).
    pub(super) fn item_entry(
        &self,
        store: &Store<GlommioDisk>,
        shard_id: u32,
        table: u32,
        key: &[u8],
        write: ItemWrite<'_>,
    ) -> Result<Vec<u8>, ApiError> {
        Ok(match write {
            ItemWrite::Put { bytes, size_bytes } => {
                store
                    .check_room(table, [key])
                    .map_err(|e| store_error(shard_id, e))?;
                entry_bytes(RecordKind::Put, table, size_bytes, key, bytes)
            }
            ItemWrite::Delete => entry_bytes(RecordKind::Delete, table, 0, key, &[]),
        })
    }

    /// In a replicated shard: proposes one item write; the reply goes once it resolves.
    pub(super) fn propose_item(self: &Rc<Self>, ack: WriteAck, entry: Vec<u8>) -> Outcome {
        let core = self.clone();
        let want_old = matches!(ack.return_values, ArchivedReturnValues::AllOld);
        Outcome::Later(Box::pin(async move {
            let done = core
                .replicate(vec![entry], want_old)
                .await
                .pop()
                .expect("one");
            let done = done.and_then(|d| {
                applied_write(core.shard_id(), d.effect.as_ref())?;
                Ok(d)
            });
            match done {
                Ok(d) => {
                    let mut out = Vec::new();
                    core.write_reply(
                        &mut out,
                        ack.opcode,
                        ack.id,
                        ack.return_values,
                        d.old.as_deref(),
                    );
                    out
                }
                Err(e) => reply::frame_to_vec(ack.opcode, ack.id, Err(e)),
            }
        }))
    }
}

/// Whether an applied item write took effect (every replica decided the same).
pub(super) fn applied_write(shard: u32, effect: Option<&Applied>) -> Result<(), ApiError> {
    match effect {
        None | Some(Applied::Put { .. } | Applied::Delete { .. }) => Ok(()),
        Some(Applied::NoTable { .. }) => Err(ApiError::not_found(
            "Requested resource not found: the table was deleted before the write was applied",
        )),
        Some(Applied::Refused { error, .. }) => Err(store_error(shard, error.clone())),
        Some(other) => Err(ApiError::internal(format!(
            "an item write applied as {other:?}"
        ))),
    }
}
