//! tern-storage: what a shard keeps for each table.
//!
//! Today a table is an in-memory ordered index from *index keys* to *item bytes*:
//! * an index key is the byte string built by `tern_protocol::keys::encode_index_key`
//!   (partition-key hash, partition key, sort key in DynamoDB order), so a Query is a
//!   range scan and a Scan walks hash order; storage treats it as opaque bytes;
//! * item bytes are the encoded item exactly as the client sent it: stored as they are and
//!   handed back as a slice, never re-encoded.
//!
//! Durability is not here yet: the segmented log (docs/log-format.md, issue 5) will
//! replace the owned buffers with record locations in mmap'd segments behind the same API.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ops::Bound;

/// One stored item: its encoded bytes and its size as DynamoDB counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    bytes: Box<[u8]>,
    size_bytes: u32,
}

impl StoredItem {
    /// `size_bytes` is the DynamoDB size (names + values), not `bytes.len()`.
    pub fn new(bytes: &[u8], size_bytes: usize) -> StoredItem {
        assert!(size_bytes <= u32::MAX as usize);
        StoredItem {
            bytes: bytes.into(),
            size_bytes: size_bytes as u32,
        }
    }

    /// The encoded item, exactly as written.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes as usize
    }
}

/// The items of one table on one shard, ordered by index key.
#[derive(Debug, Default)]
pub struct Table {
    index: BTreeMap<Box<[u8]>, StoredItem>,
    /// Σ size_bytes of the items held (kept in step with `index`).
    size_bytes: u64,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn get(&self, key: &[u8]) -> Option<&StoredItem> {
        self.index.get(key)
    }

    /// Inserts or replaces; returns the replaced item.
    pub fn put(&mut self, key: &[u8], item: StoredItem) -> Option<StoredItem> {
        self.size_bytes += item.size_bytes as u64;
        let old = self.index.insert(key.into(), item);
        if let Some(old) = &old {
            self.size_bytes -= old.size_bytes as u64;
        }
        old
    }

    /// Removes; returns the removed item.
    pub fn delete(&mut self, key: &[u8]) -> Option<StoredItem> {
        let old = self.index.remove(key);
        if let Some(old) = &old {
            self.size_bytes -= old.size_bytes as u64;
        }
        old
    }

    /// Items with index keys in `(lower, upper)`, ascending; `.rev()` for descending.
    pub fn range<'a>(
        &'a self,
        lower: Bound<&'a [u8]>,
        upper: Bound<&'a [u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a StoredItem)> + 'a {
        // BTreeMap::range panics on inverted or equal-excluded bounds; those ranges are
        // simply empty for us.
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u))
            | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        };
        let iter = (!empty).then(|| self.index.range::<[u8], _>((lower, upper)));
        iter.into_iter().flatten().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Σ of the DynamoDB sizes of the items held.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(n: u8) -> StoredItem {
        StoredItem::new(&[n; 3], n as usize)
    }

    #[test]
    fn put_get_delete_track_size() {
        let mut t = Table::new();
        assert!(t.put(b"a", item(5)).is_none());
        assert_eq!(t.put(b"a", item(7)), Some(item(5)));
        assert!(t.put(b"b", item(1)).is_none());
        assert_eq!(t.size_bytes(), 8);
        assert_eq!(t.get(b"a"), Some(&item(7)));
        assert_eq!(t.delete(b"a"), Some(item(7)));
        assert_eq!(t.delete(b"a"), None);
        assert_eq!(t.size_bytes(), 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn inverted_ranges_are_empty_not_panics() {
        let mut t = Table::new();
        t.put(b"m", item(1));
        assert_eq!(
            t.range(Bound::Included(b"z"), Bound::Included(b"a"))
                .count(),
            0
        );
        assert_eq!(
            t.range(Bound::Excluded(b"m"), Bound::Excluded(b"m"))
                .count(),
            0
        );
        assert_eq!(
            t.range(Bound::Included(b"m"), Bound::Included(b"m"))
                .count(),
            1
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>, u8),
        Delete(Vec<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = proptest::collection::vec(0u8..4, 0..4);
        prop_oneof![
            (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            key.prop_map(Op::Delete),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_btreemap_model(ops in proptest::collection::vec(op(), 0..200),
                                    lo in proptest::collection::vec(0u8..4, 0..3),
                                    hi in proptest::collection::vec(0u8..4, 0..3)) {
            let mut t = Table::new();
            let mut model: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let old = t.put(&k, item(v)).map(|i| i.bytes()[0]);
                        prop_assert_eq!(old, model.insert(k, v));
                    }
                    Op::Delete(k) => {
                        let old = t.delete(&k).map(|i| i.bytes()[0]);
                        prop_assert_eq!(old, model.remove(&k));
                    }
                }
            }
            prop_assert_eq!(t.len(), model.len());
            prop_assert_eq!(t.size_bytes(), model.values().map(|v| *v as u64).sum::<u64>());
            let got: Vec<_> = t.range(Bound::Included(&lo), Bound::Excluded(&hi))
                .map(|(k, v)| (k.to_vec(), v.bytes()[0])).collect();
            let want: Vec<_> = model.iter()
                .filter(|(k, _)| k.as_slice() >= lo.as_slice() && k.as_slice() < hi.as_slice())
                .map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(&got, &want);
            let got_rev: Vec<_> = t.range(Bound::Included(&lo), Bound::Excluded(&hi))
                .rev().map(|(k, v)| (k.to_vec(), v.bytes()[0])).collect();
            let mut want_rev = want;
            want_rev.reverse();
            prop_assert_eq!(got_rev, want_rev);
        }
    }
}
