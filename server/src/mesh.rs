//! Cross-core calls over glommio's channel mesh.
//!
//! Two full meshes connect the cores: one carries requests ([`Call`]), the other answers
//! ([`Answer`]). They are separate so that the task draining answers never waits on
//! anything: if requests and answers shared channels, two cores whose channels were both
//! full could each block sending an answer to the other, and neither would drain.
//!
//! A call is a token in this core's pending table plus a message; the answer loop fills
//! the pending slot and wakes the caller. Each incoming request runs in its own task, so
//! a slow one (a DDL broadcast) never holds up others.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::channels::channel_mesh::{Receivers, Senders};
use tern_protocol::{ApiError, ErrorCode, KeySchema};

use crate::page::PageBudget;
use crate::topology::ShardId;

/// What one core asks of another.
#[derive(Debug)]
pub enum Call {
    /// A client frame (header + body) the target shard owns; answered with a reply frame.
    Frame(Vec<u8>),
    CreateTable {
        name: String,
        schema: KeySchema,
        creation_time_ms: u64,
    },
    DeleteTable(String),
    /// (item count, bytes) of the target's slice of a table.
    TableStats(String),
    /// One step of a Scan: items of the target's slice in an index-key range.
    ScanRange(ScanRange),
    /// The target's part of a BatchGetItem that another shard coordinates, whose reply
    /// may still take `budget_bytes` of items.
    BatchGet {
        tables: Vec<tern_protocol::messages::KeysAndAttributes>,
        budget_bytes: usize,
    },
    /// The target's counters.
    Stats,
    /// The target's part of a ChangeMembership.
    Membership(tern_protocol::messages::MembershipRequest),
}

/// A Scan step: index keys in `(lower, upper)`, as many as the page's `budget` admits.
#[derive(Debug, Clone)]
pub struct ScanRange {
    pub table: String,
    pub lower: Bound<Vec<u8>>,
    pub upper: Bound<Vec<u8>>,
    pub budget: PageBudget,
    /// ConsistentRead: read the store, bypassing the cache.
    pub consistent: bool,
}

/// What a Scan step found.
#[derive(Debug, Clone)]
pub struct ScanChunk {
    /// (index key, encoded item) in index-key order.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
    /// The range's budget less what `items` took.
    pub left: PageBudget,
    /// True when the range held nothing more after `items`.
    pub exhausted: bool,
}

#[derive(Debug)]
pub enum Answer {
    Frame(Vec<u8>),
    Done(Result<(), ApiError>),
    Stats(Result<(u64, u64), ApiError>),
    Scan(Result<ScanChunk, ApiError>),
    /// A BatchGetItem part and the budget it left.
    BatchGet(Result<(tern_protocol::messages::BatchGetItemResponse, usize), ApiError>),
    Counters(tern_protocol::messages::ShardStats),
    /// A shard's voters after a membership change.
    Voters(Result<Vec<u64>, ApiError>),
}

#[derive(Debug)]
pub struct Request {
    token: u64,
    from: ShardId,
    pub call: Call,
}

#[derive(Debug)]
pub struct Reply {
    token: u64,
    answer: Answer,
}

/// How many messages may wait in one channel of a mesh before senders wait.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// This core's ends of the two meshes and its table of calls awaiting answers.
pub struct Mesh {
    me: ShardId,
    requests: Senders<Request>,
    replies: Senders<Reply>,
    next_token: Cell<u64>,
    pending: RefCell<HashMap<u64, Rc<Slot>, ahash::RandomState>>,
}

#[derive(Default)]
struct Slot {
    answer: RefCell<Option<Answer>>,
    waker: Cell<Option<Waker>>,
}

struct SlotWait(Rc<Slot>);

impl Future for SlotWait {
    type Output = Answer;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.0.answer.borrow_mut().take() {
            Some(a) => Poll::Ready(a),
            None => {
                self.0.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

fn unavailable(to: ShardId) -> ApiError {
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        format!("shard {to} is not reachable (shutting down?); retry"),
    )
}

impl Mesh {
    pub fn new(me: ShardId, requests: Senders<Request>, replies: Senders<Reply>) -> Rc<Mesh> {
        Rc::new(Mesh {
            me,
            requests,
            replies,
            next_token: Cell::new(1),
            pending: RefCell::new(HashMap::default()),
        })
    }

    pub fn me(&self) -> ShardId {
        self.me
    }

    /// Sends `call` to shard `to` and waits for its answer. `to` must not be this core.
    pub async fn call(&self, to: ShardId, call: Call) -> Result<Answer, ApiError> {
        assert_ne!(to, self.me, "a core never calls itself over the mesh");
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let slot = Rc::new(Slot::default());
        self.pending.borrow_mut().insert(token, slot.clone());
        let req = Request {
            token,
            from: self.me,
            call,
        };
        if self.requests.send_to(to as usize, req).await.is_err() {
            self.pending.borrow_mut().remove(&token);
            return Err(unavailable(to));
        }
        Ok(SlotWait(slot).await)
    }

    fn complete(&self, reply: Reply) {
        // An answer whose caller is gone (dropped future) is dropped too.
        if let Some(slot) = self.pending.borrow_mut().remove(&reply.token) {
            *slot.answer.borrow_mut() = Some(reply.answer);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    async fn answer(&self, to: ShardId, token: u64, answer: Answer) {
        // The peer's answer loop never blocks, so this send completes unless the peer is
        // gone, in which case nobody is waiting for the answer.
        let _ = self
            .replies
            .send_to(to as usize, Reply { token, answer })
            .await;
    }
}

/// Spawns the loops that serve this core's side of the meshes: answers complete pending
/// calls; each request runs `handle` in its own task and its answer is sent back.
pub fn spawn_loops<H, F>(
    mesh: Rc<Mesh>,
    mut requests: Receivers<Request>,
    mut replies: Receivers<Reply>,
    handle: H,
) where
    H: Fn(Call) -> F + Clone + 'static,
    F: Future<Output = Answer> + 'static,
{
    for (_peer, rx) in replies.streams() {
        let mesh = mesh.clone();
        glommio::spawn_local(async move {
            while let Some(reply) = rx.recv().await {
                mesh.complete(reply);
            }
        })
        .detach();
    }
    for (_peer, rx) in requests.streams() {
        let mesh = mesh.clone();
        let handle = handle.clone();
        glommio::spawn_local(async move {
            while let Some(req) = rx.recv().await {
                let mesh = mesh.clone();
                let handle = handle.clone();
                glommio::spawn_local(async move {
                    let Request { token, from, call } = req;
                    let answer = handle(call).await;
                    mesh.answer(from, token, answer).await;
                })
                .detach();
            }
        })
        .detach();
    }
}
