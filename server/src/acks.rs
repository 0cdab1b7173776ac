//! Replies that wait for the log: one queue per shard, drained after every flush.
//!
//! A durable write (and a read of a record not yet durable) has its reply frame built at
//! once; the frame is then parked here with the log position it waits for and the
//! connection it goes to, instead of in a task with a boxed future and a waker each. When
//! the flusher (or the transport's ring, see `net::uring`) reports a flush, the shard
//! moves every frame whose position is durable into its connection's deferred buffer
//! ([`ConnCtx::finish_deferred`]), which wakes the transport once per connection. In
//! steady state nothing here allocates: the frames share one byte arena and the entries
//! one ring buffer, both reused.
//!
//! Invariants: positions in the queue never decrease (a reply that waits for an earlier
//! position than the last one queued waits for the later one instead: never early, at
//! most one flush late, and in practice the same flush); an entry leaves only when its
//! position is durable, or with an error when the store failed.

use std::collections::VecDeque;
use std::rc::Rc;

use tern_protocol::ApiError;
use tern_protocol::frame::Opcode;
use tern_storage::store::LogPos;

use crate::reply;
use crate::service::ConnCtx;

/// Arena bytes already released beyond which the arena is compacted (when the queue is
/// not empty; an empty queue resets it at no cost).
const ARENA_COMPACT_BYTES: usize = 1 << 20;

struct Pending {
    pos: LogPos,
    conn: Rc<ConnCtx>,
    /// The frame: `len` bytes at absolute arena offset `start` (minus `base`).
    start: u64,
    len: u32,
    opcode: Opcode,
    id: u64,
}

/// The shard's replies waiting for durability.
#[derive(Default)]
pub struct AckQueue {
    queue: VecDeque<Pending>,
    bytes: Vec<u8>,
    /// Absolute offset of `bytes[0]`.
    base: u64,
}

impl AckQueue {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Parks `frame` for `conn` until `pos` is durable. The caller has counted it in
    /// the connection's in-flight requests (`ConnCtx::begin_deferred`).
    pub fn push(&mut self, conn: &Rc<ConnCtx>, pos: LogPos, frame: &[u8], opcode: Opcode, id: u64) {
        let pos = self.queue.back().map_or(pos, |last| last.pos.max(pos));
        let start = self.base + self.bytes.len() as u64;
        self.bytes.extend_from_slice(frame);
        self.queue.push_back(Pending {
            pos,
            conn: conn.clone(),
            start,
            len: u32::try_from(frame.len()).expect("a reply frame is bounded by the frame limit"),
            opcode,
            id,
        });
    }

    /// Delivers every reply whose position is at or below `durable`; returns how many.
    pub fn release(&mut self, durable: LogPos) -> usize {
        let mut n = 0;
        while let Some(front) = self.queue.front() {
            if front.pos > durable {
                break;
            }
            let p = self.queue.pop_front().expect("front exists");
            let at = (p.start - self.base) as usize;
            p.conn.finish_deferred(&self.bytes[at..at + p.len as usize]);
            n += 1;
        }
        self.reclaim();
        n
    }

    /// The store failed: every waiting reply becomes `error`.
    pub fn fail_all(&mut self, error: &ApiError) {
        for p in self.queue.drain(..) {
            p.conn
                .finish_deferred(&reply::frame_to_vec(p.opcode, p.id, Err(error.clone())));
        }
        self.reclaim();
    }

    fn reclaim(&mut self) {
        match self.queue.front() {
            None => {
                self.base += self.bytes.len() as u64;
                self.bytes.clear();
            }
            Some(front) => {
                let done = (front.start - self.base) as usize;
                if done >= ARENA_COMPACT_BYTES && done * 2 >= self.bytes.len() {
                    self.bytes.drain(..done);
                    self.base = front.start;
                }
            }
        }
    }

    /// The queue's invariants (tests and debug builds).
    pub fn check_invariants(&self) {
        let mut last = LogPos(0);
        let mut end = self.base;
        for p in &self.queue {
            assert!(p.pos >= last, "ack positions decrease");
            assert!(p.start >= end, "ack frames overlap");
            last = p.pos;
            end = p.start + p.len as u64;
        }
        assert!(
            end <= self.base + self.bytes.len() as u64,
            "an ack frame past the arena"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Wakeup;

    fn conn(id: u64) -> Rc<ConnCtx> {
        ConnCtx::new(id, Wakeup::new())
    }

    fn taken(c: &ConnCtx) -> Vec<u8> {
        let mut out = Vec::new();
        c.take_deferred(&mut out);
        out
    }

    #[test]
    fn releases_in_position_order_and_never_early() {
        let (a, b) = (conn(1), conn(2));
        let mut q = AckQueue::default();
        for (c, pos, frame) in [(&a, 10, b"a1"), (&b, 20, b"b1"), (&a, 30, b"a2")] {
            c.begin_deferred();
            q.push(c, LogPos(pos), frame, Opcode::PutItem, pos);
            q.check_invariants();
        }
        assert_eq!(q.release(LogPos(9)), 0);
        assert_eq!(q.release(LogPos(20)), 2);
        assert_eq!(taken(&a), b"a1");
        assert_eq!(taken(&b), b"b1");
        assert_eq!(a.in_flight(), 1);
        assert_eq!(q.release(LogPos(30)), 1);
        assert_eq!(taken(&a), b"a2");
        assert!(q.is_empty());
        assert_eq!(q.bytes.len(), 0, "an empty queue resets its arena");
    }

    #[test]
    fn an_earlier_position_behind_a_later_one_waits_for_the_later() {
        let a = conn(1);
        let mut q = AckQueue::default();
        a.begin_deferred();
        q.push(&a, LogPos(50), b"w", Opcode::PutItem, 1);
        a.begin_deferred();
        q.push(&a, LogPos(40), b"r", Opcode::GetItem, 2);
        q.check_invariants();
        assert_eq!(q.release(LogPos(45)), 0);
        assert_eq!(q.release(LogPos(50)), 2);
        assert_eq!(taken(&a), b"wr");
    }

    #[test]
    fn failure_answers_everyone_with_the_error() {
        let a = conn(1);
        let mut q = AckQueue::default();
        for i in 0..3 {
            a.begin_deferred();
            q.push(&a, LogPos(i), b"ok", Opcode::PutItem, i);
        }
        q.fail_all(&ApiError::internal("disk gone"));
        assert_eq!(a.in_flight(), 0);
        let out = taken(&a);
        let mut rest = &out[..];
        let mut frames = 0;
        while let Ok(Some((f, used))) = tern_protocol::frame::parse_frame(rest) {
            assert!(f.header.flags & tern_protocol::frame::FLAG_ERROR != 0);
            assert_eq!(f.header.request_id, frames);
            rest = &rest[used..];
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert!(rest.is_empty());
    }

    #[test]
    fn the_arena_is_compacted_while_replies_keep_coming() {
        let a = conn(1);
        let mut q = AckQueue::default();
        let frame = vec![7u8; 4096];
        for i in 0..2_000u64 {
            a.begin_deferred();
            q.push(&a, LogPos(i), &frame, Opcode::PutItem, i);
            if i >= 8 {
                q.release(LogPos(i - 8));
                let _ = taken(&a);
            }
            q.check_invariants();
        }
        assert!(
            q.bytes.len() <= 2 * ARENA_COMPACT_BYTES + 9 * frame.len(),
            "arena kept {} bytes",
            q.bytes.len()
        );
    }
}
