//! When a Query or Scan page is full.
//!
//! DynamoDB's rule: a page stops at `Limit` items or once it has read 1 MB of items
//! (counted as DynamoDB counts item sizes, before the item that crosses it: a page may end
//! past 1 MB by one item). tern's own rule on top: a page also stops before its encoded
//! items (each with its 8-byte slot in the page's item vector) would pass
//! `PAGE_ENCODED_MAX_BYTES`, so that every page fits one frame however many tiny
//! attributes its items have. The largest record the log holds always fits an empty page
//! (asserted in `limits`), so every page makes progress.
//!
//! A Scan page is assembled from chunks read on several shards: each chunk gets what the
//! page has left ([`PageBudget`] travels in `mesh::ScanRange`).

use tern_protocol::limits::{PAGE_ENCODED_MAX_BYTES, PAGE_SIZE_MAX_BYTES};

/// Bytes an item costs in a page beyond its encoding: its slot in the item vector.
pub const ITEM_SLOT_BYTES: usize = 8;

/// What a page (or the rest of one) may still take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageBudget {
    /// Items (the request's `Limit`, or no limit).
    pub items: usize,
    /// DynamoDB item size still allowed before the page counts as full.
    pub size_bytes: usize,
    /// Encoded bytes (items plus their slots) still allowed.
    pub encoded_bytes: usize,
}

impl PageBudget {
    /// A whole page of at most `limit` items.
    pub fn page(limit: usize) -> PageBudget {
        PageBudget {
            items: limit,
            size_bytes: PAGE_SIZE_MAX_BYTES,
            encoded_bytes: PAGE_ENCODED_MAX_BYTES,
        }
    }

    /// Whether an item of `encoded_len` bytes may join the page.
    pub fn admits(&self, encoded_len: usize) -> bool {
        self.items > 0 && self.size_bytes > 0 && encoded_len + ITEM_SLOT_BYTES <= self.encoded_bytes
    }

    /// Counts an item that joined the page (after `admits` said it may).
    pub fn take(&mut self, size_bytes: usize, encoded_len: usize) {
        debug_assert!(self.admits(encoded_len));
        self.items -= 1;
        self.size_bytes = self.size_bytes.saturating_sub(size_bytes);
        self.encoded_bytes -= encoded_len + ITEM_SLOT_BYTES;
    }

    /// Whether no item at all can join any more (by count or by DynamoDB size). A budget
    /// with encoded room too small for the next item is found out by reading it.
    pub fn exhausted(&self) -> bool {
        self.items == 0 || self.size_bytes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_size_is_counted_before_the_item_encoded_size_with_it() {
        let mut b = PageBudget::page(3);
        assert!(b.admits(100));
        b.take(PAGE_SIZE_MAX_BYTES - 1, 100);
        // 1 byte of DynamoDB size left: the next item joins whatever its size.
        assert!(b.admits(100) && !b.exhausted());
        b.take(400 * 1024, 100);
        assert!(b.exhausted() && !b.admits(1));

        let mut b = PageBudget::page(usize::MAX);
        let big = PAGE_ENCODED_MAX_BYTES / 2;
        assert!(b.admits(big));
        b.take(10, big);
        assert!(!b.admits(big), "the slots count too");
        assert!(b.admits(big - 2 * ITEM_SLOT_BYTES));
    }
}
