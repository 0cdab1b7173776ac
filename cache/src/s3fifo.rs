//! S3-FIFO eviction (Yang, Zhang, Qiu, Yue, Vinayak: "FIFO queues are all you need for
//! cache eviction", SOSP'23).
//!
//! * S, the small FIFO: new entries, up to `SMALL_QUEUE_PERCENT` of the budget in bytes.
//! * M, the main FIFO: entries that proved themselves, the rest of the budget.
//! * G, the ghost: key hashes of entries evicted from S unaccessed, at most as many as
//!   there are live entries (the paper sizes G like M, which holds ~90 % of them).
//!
//! A hit only bumps a 2-bit frequency; nothing moves. An entry whose hash is in G goes
//! straight to M, any other to S. To free space: while S holds more than its share (or M
//! is empty), S's oldest entry either moves to M with frequency 0 (if it was accessed at
//! least `PROMOTE_MIN_FREQ` times) or is evicted and remembered in G; otherwise M's
//! oldest entry is reinserted at M's tail with its frequency decremented if it is > 0,
//! or evicted. Expired entries met on the way are dropped whatever their frequency.
//! A one-time scan thus flows through S and G and never touches M.
//!
//! Promotion threshold: libCacheSim's S3FIFO.c and the SOSP'23 artifact default to
//! `move-to-main-threshold=2` (two hits while in S). The authors' description of the
//! algorithm (blog.jasony.me, "FIFO queues are all you need"; s3fifo.com) promotes any
//! entry "reused since insertion", i.e. one hit, as do most production ports. We use 1.
//! In our runs of examples/hit_ratio.rs the two were within 0.6 points of hit ratio of
//! each other: 1 ahead on 1M keys / Zipf 0.99 / 10 % (0.8050 vs 0.8038) and with one-time
//! scans mixed in (0.2441 vs 0.2384), 2 ahead by under 0.1 point at 1 % and at Zipf 0.8.
//! With 1, an item read twice in a row (read, then re-read while still in S) is kept,
//! which is what a read-through cache in front of a store should do.
//!
//! Queues are `VecDeque`s of `(index, generation)`: an entry removed out of FIFO order
//! (invalidation, expiry on lookup, replacement) leaves a dead reference that is skipped
//! when popped, and a queue is compacted once its dead references outnumber its live
//! ones by `QUEUE_GARBAGE_SLACK`. Every operation is O(1) amortized.

use std::collections::{HashMap, VecDeque};

use ahash::RandomState;

use crate::limits::{FREQ_MAX, PROMOTE_MIN_FREQ, QUEUE_GARBAGE_SLACK, SMALL_QUEUE_PERCENT};
use crate::slab::{Queue, QueueRef, Slab};

/// Key hashes of entries recently evicted from S: a FIFO ring plus a map for membership.
///
/// Readmission removes a hash from the map only; its ring slot becomes dead and is
/// dropped when it reaches the ring's head. The map stores the sequence number of the
/// hash's newest ring slot, so popping an older duplicate does not forget a newer one.
/// The ring (dead slots included) is kept at most as long as the cache has live entries.
pub(crate) struct Ghost {
    members: HashMap<u64, u64, RandomState>,
    ring: VecDeque<u64>,
    /// Hashes ever pushed: the ring's head has sequence `pushed - ring.len()`.
    pushed: u64,
}

impl Ghost {
    fn new() -> Self {
        Ghost {
            members: HashMap::with_hasher(RandomState::new()),
            ring: VecDeque::new(),
            pushed: 0,
        }
    }

    fn insert(&mut self, hash: u64) {
        self.members.insert(hash, self.pushed);
        self.ring.push_back(hash);
        self.pushed += 1;
    }

    /// Whether `hash` was remembered; forgets it.
    fn take(&mut self, hash: u64) -> bool {
        self.members.remove(&hash).is_some()
    }

    fn trim(&mut self, max_len: usize) {
        while self.ring.len() > max_len {
            let sequence = self.pushed - self.ring.len() as u64;
            let hash = self.ring.pop_front().expect("ring longer than max_len");
            if self.members.get(&hash) == Some(&sequence) {
                self.members.remove(&hash);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    fn check_invariants(&self) {
        assert!(
            self.members.len() <= self.ring.len(),
            "ghost members without ring slots"
        );
        let head = self.pushed - self.ring.len() as u64;
        for (&hash, &sequence) in &self.members {
            assert!(
                sequence >= head && sequence < self.pushed,
                "ghost member outside the ring"
            );
            assert_eq!(
                self.ring[(sequence - head) as usize],
                hash,
                "ghost sequence mismatch"
            );
        }
    }
}

/// One FIFO queue with its counts.
struct Fifo {
    refs: VecDeque<QueueRef>,
    live: usize,
    dead: usize,
    bytes: usize,
}

impl Fifo {
    fn new() -> Self {
        Fifo {
            refs: VecDeque::new(),
            live: 0,
            dead: 0,
            bytes: 0,
        }
    }

    fn push<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32, queue: Queue) {
        let r = slab.queue_ref(index);
        let entry = slab.get_mut(index);
        entry.queue = queue;
        self.refs.push_back(r);
        self.live += 1;
        self.bytes += entry.charge_bytes;
    }

    fn compact_if_needed<V, R>(&mut self, slab: &Slab<V, R>, queue: Queue) {
        if self.dead > self.live + QUEUE_GARBAGE_SLACK {
            self.refs.retain(|&r| slab.current(r, queue).is_some());
            assert_eq!(
                self.refs.len(),
                self.live,
                "compaction kept a dead reference"
            );
            self.dead = 0;
        }
    }

    fn check_invariants<V, R>(&self, slab: &Slab<V, R>, queue: Queue, seen: &mut [bool]) {
        assert_eq!(
            self.refs.len(),
            self.live + self.dead,
            "{queue:?}: live + dead"
        );
        assert!(
            self.dead <= self.live + QUEUE_GARBAGE_SLACK,
            "{queue:?}: garbage bound"
        );
        let mut live = 0;
        let mut bytes = 0;
        for &r in &self.refs {
            if let Some(entry) = slab.current(r, queue) {
                assert!(!seen[r.index as usize], "{queue:?}: entry referenced twice");
                seen[r.index as usize] = true;
                live += 1;
                bytes += entry.charge_bytes;
            }
        }
        assert_eq!(live, self.live, "{queue:?}: live references");
        assert_eq!(bytes, self.bytes, "{queue:?}: bytes");
    }
}

pub(crate) struct S3Fifo {
    small: Fifo,
    main: Fifo,
    small_target_bytes: usize,
    ghost: Ghost,
}

impl S3Fifo {
    pub fn new(budget_bytes: usize) -> Self {
        let small_target_bytes =
            (budget_bytes as u128 * SMALL_QUEUE_PERCENT as u128 / 100) as usize;
        S3Fifo {
            small: Fifo::new(),
            main: Fifo::new(),
            small_target_bytes,
            ghost: Ghost::new(),
        }
    }

    /// A new entry: to M if its key hash is in the ghost (forgetting it), else to S.
    pub fn admit<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        let readmitted = !self.ghost.members.is_empty() && {
            let hash = slab.get(index).hash;
            self.ghost.take(hash)
        };
        slab.get_mut(index).freq = 0;
        if readmitted {
            self.main.push(slab, index, Queue::Main);
        } else {
            self.small.push(slab, index, Queue::Small);
        }
    }

    pub fn hit<V, R>(&mut self, slab: &mut Slab<V, R>, index: u32) {
        let entry = slab.get_mut(index);
        entry.freq = (entry.freq + 1).min(FREQ_MAX);
    }

    /// The entry at `index` is about to be removed out of FIFO order: its reference
    /// becomes dead.
    pub fn detach<V, R>(&mut self, slab: &Slab<V, R>, index: u32) {
        let entry = slab.get(index);
        let fifo = self.fifo(entry.queue);
        fifo.live -= 1;
        fifo.dead += 1;
        fifo.bytes -= entry.charge_bytes;
    }

    /// The entry at `index` now charges `new` bytes instead of `old`.
    pub fn recharge<V, R>(&mut self, slab: &Slab<V, R>, index: u32, old: usize, new: usize) {
        let fifo = self.fifo(slab.get(index).queue);
        fifo.bytes = fifo.bytes - old + new;
    }

    fn fifo(&mut self, queue: Queue) -> &mut Fifo {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
            Queue::Lru => unreachable!("an LRU entry under S3-FIFO"),
        }
    }

    /// Chooses the next entry to remove to free space and detaches it from the queues
    /// (the caller removes it). `None` only when no entry is live.
    pub fn victim<V, R>(&mut self, slab: &mut Slab<V, R>, now_ms: u64) -> Option<u32> {
        let from_small = self.small.live > 0
            && (self.small.bytes > self.small_target_bytes || self.main.live == 0);
        if from_small && let Some(index) = self.evict_small(slab, now_ms) {
            return Some(index);
        }
        // S was all promoted (or is within its share): M gives up one.
        self.evict_main(slab, now_ms)
    }

    /// Pops S until one entry leaves the cache: accessed ones move to M on the way.
    fn evict_small<V, R>(&mut self, slab: &mut Slab<V, R>, now_ms: u64) -> Option<u32> {
        while let Some(r) = self.small.refs.pop_front() {
            let Some(entry) = slab.current(r, Queue::Small) else {
                self.small.dead -= 1;
                continue;
            };
            self.small.live -= 1;
            self.small.bytes -= entry.charge_bytes;
            if entry.is_expired(now_ms) {
                return Some(r.index);
            }
            if entry.freq >= PROMOTE_MIN_FREQ {
                slab.get_mut(r.index).freq = 0;
                self.main.push(slab, r.index, Queue::Main);
                continue;
            }
            self.ghost.insert(entry.hash);
            return Some(r.index);
        }
        None
    }

    /// Pops M until one entry leaves the cache: accessed ones are reinserted at the tail
    /// with one access fewer (CLOCK with a 2-bit counter).
    fn evict_main<V, R>(&mut self, slab: &mut Slab<V, R>, now_ms: u64) -> Option<u32> {
        while let Some(r) = self.main.refs.pop_front() {
            let Some(entry) = slab.current_mut(r, Queue::Main) else {
                self.main.dead -= 1;
                continue;
            };
            if entry.freq > 0 && !entry.is_expired(now_ms) {
                entry.freq -= 1;
                self.main.refs.push_back(r);
                continue;
            }
            self.main.live -= 1;
            self.main.bytes -= entry.charge_bytes;
            return Some(r.index);
        }
        None
    }

    /// After any removal: bound the queues' garbage and the ghost.
    pub fn after_remove<V, R>(&mut self, slab: &Slab<V, R>) {
        self.small.compact_if_needed(slab, Queue::Small);
        self.main.compact_if_needed(slab, Queue::Main);
        self.ghost.trim(slab.live());
    }

    pub fn clear(&mut self) {
        self.small = Fifo::new();
        self.main = Fifo::new();
        self.ghost = Ghost::new();
    }

    pub fn check_invariants<V, R>(&self, slab: &Slab<V, R>) {
        let mut seen = vec![false; slab.capacity()];
        self.small.check_invariants(slab, Queue::Small, &mut seen);
        self.main.check_invariants(slab, Queue::Main, &mut seen);
        for (index, entry) in slab.iter() {
            assert!(seen[index as usize], "live entry on no queue");
            assert!(entry.freq <= FREQ_MAX, "frequency above FREQ_MAX");
        }
        assert_eq!(
            self.small.live + self.main.live,
            slab.live(),
            "queue live counts"
        );
        assert!(
            self.ghost.len() <= slab.live(),
            "ghost larger than the cache"
        );
        self.ghost.check_invariants();
    }

    #[cfg(test)]
    pub fn ghost_len(&self) -> usize {
        self.ghost.members.len()
    }
}
