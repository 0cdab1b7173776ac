//! Classic LRU over the slab: an intrusive doubly-linked list through each entry's
//! `prev`/`next` slab indices, most recently used at the head. O(1) per operation.
//! The baseline S3-FIFO is measured against.

use crate::slab::{NIL, Queue, Slab};

pub(crate) struct Lru {
    /// Most recently used.
    head: u32,
    /// Least recently used: the next victim.
    tail: u32,
}

impl Lru {
    pub fn new() -> Self {
        Lru {
            head: NIL,
            tail: NIL,
        }
    }

    pub fn admit<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        slab.get_mut(index).queue = Queue::Lru;
        self.push_front(slab, index);
    }

    pub fn hit<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        if self.head != index {
            self.unlink(slab, index);
            self.push_front(slab, index);
        }
    }

    pub fn detach<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        self.unlink(slab, index);
    }

    /// The least recently used entry, unlinked (the caller removes it).
    pub fn victim<V, R>(&mut self, slab: &mut Slab<V, R>) -> Option<u32> {
        let tail = self.tail;
        if tail == NIL {
            return None;
        }
        self.unlink(slab, tail);
        Some(tail)
    }

    pub fn clear(&mut self) {
        *self = Lru::new();
    }

    fn push_front<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        let old_head = self.head;
        let entry = slab.get_mut(index);
        entry.prev = NIL;
        entry.next = old_head;
        if old_head == NIL {
            self.tail = index;
        } else {
            slab.get_mut(old_head).prev = index;
        }
        self.head = index;
    }

    fn unlink<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        let entry = slab.get_mut(index);
        let (prev, next) = (entry.prev, entry.next);
        entry.prev = NIL;
        entry.next = NIL;
        if prev == NIL {
            self.head = next;
        } else {
            slab.get_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            slab.get_mut(next).prev = prev;
        }
    }

    pub fn check_invariants<V, R>(&self, slab: &Slab<V, R>) {
        let mut count = 0;
        let mut prev = NIL;
        let mut at = self.head;
        while at != NIL {
            let entry = slab.try_get(at).expect("LRU list links a free slot");
            assert_eq!(entry.queue, Queue::Lru, "LRU list holds a non-LRU entry");
            assert_eq!(entry.prev, prev, "LRU back link");
            count += 1;
            assert!(count <= slab.live(), "LRU list has a cycle");
            prev = at;
            at = entry.next;
        }
        assert_eq!(self.tail, prev, "LRU tail");
        assert_eq!(count, slab.live(), "LRU list length");
    }
}
