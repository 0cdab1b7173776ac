//! The slab: every live entry sits in one slot of a `Vec`, addressed by a `u32` index.
//!
//! Freed slots go on a free list and are reused. Each slot carries a generation, bumped
//! whenever its entry is removed, so a queue reference `(index, generation)` taken for
//! an entry that has since been removed is recognised as stale even after the slot
//! holds a new entry.

use crate::limits::ENTRIES_MAX;
use crate::types::ResultKind;

/// "No entry": the end of an LRU list.
pub(crate) const NIL: u32 = u32::MAX;

/// Which list or queue of the eviction policy an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// S3-FIFO's small (probationary) FIFO.
    Small,
    /// S3-FIFO's main FIFO.
    Main,
    /// The LRU list.
    Lru,
}

pub(crate) enum Payload<V, R> {
    /// `None` is a negative entry: the store holds no item under this key.
    Item(Option<V>),
    Result {
        result: R,
        kind: ResultKind,
        /// The span's partition (Query only): with the table, names the registry list.
        partition: u64,
        /// Position in the registry list (`registry`), kept up to date on swap-removes.
        registry_pos: u32,
    },
}

pub(crate) struct Entry<V, R> {
    /// The hash map's hash of the composite key (also the S3-FIFO ghost's).
    pub hash: u64,
    /// The composite key (tag, table, caller's key), then the entry's blob: the item's
    /// bytes for an item entry that keeps them inline (empty otherwise). One heap block,
    /// so a hit touches the key it compares and the bytes it returns together.
    pub data: Box<[u8]>,
    /// Length of the composite key at the front of `data`.
    pub key_len: u32,
    pub payload: Payload<V, R>,
    /// Expired when `now_ms >= expires_at_ms`.
    pub expires_at_ms: u64,
    /// What this entry adds to `bytes_used` (`charge`).
    pub charge_bytes: usize,
    pub table: u32,
    /// LRU list links (unused under S3-FIFO).
    pub prev: u32,
    pub next: u32,
    /// S3-FIFO's 2-bit access frequency, `0..=FREQ_MAX`.
    pub freq: u8,
    pub queue: Queue,
}

impl<V, R> Entry<V, R> {
    /// The composite key.
    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    /// The bytes kept after the key (an item's inline bytes; empty if none).
    pub fn blob(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    pub fn is_item(&self) -> bool {
        matches!(self.payload, Payload::Item(_))
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

pub(crate) struct Slot<V, R> {
    pub generation: u32,
    pub entry: Option<Entry<V, R>>,
}

/// A reference held by a FIFO queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueRef {
    pub index: u32,
    pub generation: u32,
}

pub(crate) struct Slab<V, R> {
    slots: Vec<Slot<V, R>>,
    free: Vec<u32>,
    live: usize,
}

impl<V, R> Slab<V, R> {
    pub fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Number of slots, live or free: indices are below this.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn insert(&mut self, entry: Entry<V, R>) -> u32 {
        assert!(self.live < ENTRIES_MAX, "shard cache entry count limit");
        self.live += 1;
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                assert!(slot.entry.is_none(), "free list holds a live slot");
                slot.entry = Some(entry);
                index
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("bounded by ENTRIES_MAX");
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                index
            }
        }
    }

    pub fn remove(&mut self, index: u32) -> Entry<V, R> {
        let slot = &mut self.slots[index as usize];
        let entry = slot.entry.take().expect("removing a free slot");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        entry
    }

    pub fn get(&self, index: u32) -> &Entry<V, R> {
        self.slots[index as usize]
            .entry
            .as_ref()
            .expect("index of a live entry")
    }

    pub fn get_mut(&mut self, index: u32) -> &mut Entry<V, R> {
        self.slots[index as usize]
            .entry
            .as_mut()
            .expect("index of a live entry")
    }

    pub fn try_get(&self, index: u32) -> Option<&Entry<V, R>> {
        self.slots.get(index as usize)?.entry.as_ref()
    }

    pub fn queue_ref(&self, index: u32) -> QueueRef {
        QueueRef {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    /// The entry a queue reference names, if it is still that entry and still on `queue`.
    pub fn current(&self, r: QueueRef, queue: Queue) -> Option<&Entry<V, R>> {
        let slot = &self.slots[r.index as usize];
        if slot.generation != r.generation {
            return None;
        }
        slot.entry.as_ref().filter(|e| e.queue == queue)
    }

    /// The entry a reference names, if it is still that entry (on any queue).
    pub fn current_any(&self, r: QueueRef) -> Option<&Entry<V, R>> {
        let slot = self.slots.get(r.index as usize)?;
        if slot.generation != r.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    pub fn current_mut(&mut self, r: QueueRef, queue: Queue) -> Option<&mut Entry<V, R>> {
        let slot = &mut self.slots[r.index as usize];
        if slot.generation != r.generation {
            return None;
        }
        slot.entry.as_mut().filter(|e| e.queue == queue)
    }

    /// Indices of live entries matching `keep`, in slot order (O(slots)).
    pub fn indices_where(&self, mut keep: impl FnMut(&Entry<V, R>) -> bool, out: &mut Vec<u32>) {
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(entry) = &slot.entry
                && keep(entry)
            {
                out.push(index as u32);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Entry<V, R>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.entry.as_ref().map(|e| (i as u32, e)))
    }

    pub fn check_invariants(&self) {
        let live = self.slots.iter().filter(|s| s.entry.is_some()).count();
        assert_eq!(live, self.live, "slab live count");
        assert_eq!(self.free.len() + live, self.slots.len(), "free list size");
        let mut seen = vec![false; self.slots.len()];
        for &f in &self.free {
            assert!(
                self.slots[f as usize].entry.is_none(),
                "free list holds a live slot"
            );
            assert!(!seen[f as usize], "slot twice on the free list");
            seen[f as usize] = true;
        }
    }
}
