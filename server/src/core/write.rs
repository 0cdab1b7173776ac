//! The write seam: the one place an item write (PutItem, DeleteItem, each write of a
//! BatchWriteItem — and UpdateItem and transactions when they come) reaches a shard's
//! state. It appends the record to the shard's log and then updates the cache
//! (write-through), in that order, and says which log position the acknowledgement
//! waits for. Replication proposes here: a write becomes a Raft entry, and what follows
//! the append (the cache, the acknowledgement) happens when the entry is applied.

use tern_storage::glommio_disk::GlommioDisk;
use tern_storage::index::Slot;
use tern_storage::store::{LogPos, Store};

use super::Core;
use crate::cache::CachedItem;
use crate::shard::store_error;
use tern_protocol::ApiError;

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
}
