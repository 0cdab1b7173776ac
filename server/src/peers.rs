//! The peer transport: the authenticated connections between AZ nodes that carry every
//! shard's Raft messages (`tern_replica::peer` is the protocol; this is its I/O, on one
//! glommio executor).
//!
//! One connection per pair of nodes: the node with the lower id dials, the other
//! accepts, so there is never a duplicate to arbitrate; either side sends on it.
//! Sending never blocks a shard: [`Peers::send`] queues the message for its node and a
//! writer task batches whatever is queued into one MAC'd frame per write. A queue is
//! bounded (`PEER_QUEUE_MAX_BYTES`); when it is full, new messages are dropped and
//! counted — Raft resends what matters (appends, heartbeats, votes all retry), and a
//! stalled peer must not grow this node's memory. A lost connection is redialled with
//! backoff; messages queued meanwhile wait (up to the bound) for the next one.
//!
//! A connection that does not complete the handshake within
//! `PEER_HANDSHAKE_TIMEOUT_MS`, sends a frame that fails its MAC or bound, or goes
//! silent is closed; the listener goes on serving the others.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::or;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;
use tern_replica::peer::{
    AUTH_LEN, Acceptor, Envelope, FRAME_BODY_MAX_BYTES, FRAME_MESSAGES_MAX, HELLO_LEN, Initiator,
    NONCE_LEN, PROOF_LEN, PeerError, Session, TAG_LEN,
};
use tracing::{debug, warn};

/// Bytes of messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MAX_BYTES: usize = 64 << 20;
/// A handshake (connect, HELLO, AUTH, PROOF) that takes longer is abandoned.
pub const PEER_HANDSHAKE_TIMEOUT_MS: u64 = 3_000;
/// A connection silent this long is closed (Raft heartbeats run far more often).
pub const PEER_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Redial backoff: from the first to the last, doubling.
pub const PEER_REDIAL_MIN_MS: u64 = 50;
pub const PEER_REDIAL_MAX_MS: u64 = 2_000;
/// Read buffer growth step.
const READ_CHUNK_BYTES: usize = 64 << 10;

// A queue holds at least one largest frame's worth; heartbeats fit the idle timeout.
const _: () = assert!(PEER_QUEUE_MAX_BYTES >= FRAME_BODY_MAX_BYTES);
const _: () = assert!(PEER_REDIAL_MIN_MS < PEER_REDIAL_MAX_MS);
const _: () = assert!(PEER_HANDSHAKE_TIMEOUT_MS < PEER_IDLE_TIMEOUT_MS);

/// Where a node's peers are and how they prove themselves.
#[derive(Clone)]
pub struct PeerConfig {
    pub id: u64,
    /// The cluster secret (at least `peer::SECRET_MIN_BYTES`).
    pub secret: Vec<u8>,
    /// Every other member: id → its peer address.
    pub peers: HashMap<u64, SocketAddr>,
}

/// Counters for `tern cluster` and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    pub sent_messages: u64,
    pub received_messages: u64,
    pub dropped_messages: u64,
    pub handshakes_failed: u64,
    pub connections: u64,
}

/// Where received messages go: (from node, its batch).
pub type Inbox = Rc<dyn Fn(u64, Vec<Envelope>)>;

struct Outbox {
    queue: VecDeque<Envelope>,
    bytes: usize,
    /// Wakes the peer's writer.
    ready: Rc<glommio::sync::Semaphore>,
    connected: bool,
}

/// The running transport of one node.
pub struct Peers {
    cfg: PeerConfig,
    /// The members now: `cfg.peers` at start, then as membership changes add and
    /// remove them ([`Peers::add_peer`], [`Peers::remove_peer`]).
    members: RefCell<HashMap<u64, SocketAddr>>,
    outboxes: RefCell<HashMap<u64, Outbox>>,
    stats: Cell<PeerStats>,
    inbox: Inbox,
    tasks: Gate,
    /// Never signalled; closed by [`Peers::close`], which makes every wait on it end.
    closing: glommio::sync::Semaphore,
    closed: Cell<bool>,
}

fn random_nonce() -> io::Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

fn bump(stats: &Cell<PeerStats>, f: impl FnOnce(&mut PeerStats)) {
    let mut s = stats.get();
    f(&mut s);
    stats.set(s);
}

impl Peers {
    /// Starts accepting on `listener` and dialling the peers with higher ids; received
    /// batches go to `inbox`. Runs on the calling glommio executor until [`Peers::close`].
    pub fn start(cfg: PeerConfig, listener: TcpListener, inbox: Inbox) -> io::Result<Rc<Peers>> {
        if cfg.secret.len() < tern_replica::peer::SECRET_MIN_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the cluster secret must have at least {} bytes",
                    tern_replica::peer::SECRET_MIN_BYTES
                ),
            ));
        }
        let outboxes = cfg
            .peers
            .keys()
            .map(|&id| {
                (
                    id,
                    Outbox {
                        queue: VecDeque::new(),
                        bytes: 0,
                        ready: Rc::new(glommio::sync::Semaphore::new(0)),
                        connected: false,
                    },
                )
            })
            .collect();
        let peers = Rc::new(Peers {
            members: RefCell::new(cfg.peers.clone()),
            cfg,
            outboxes: RefCell::new(outboxes),
            stats: Cell::new(PeerStats::default()),
            inbox,
            tasks: Gate::new(),
            closing: glommio::sync::Semaphore::new(0),
            closed: Cell::new(false),
        });
        let p = peers.clone();
        peers.spawn(async move { p.accept_loop(listener).await })?;
        let mut dial: Vec<u64> = peers
            .cfg
            .peers
            .keys()
            .copied()
            .filter(|&id| id > peers.cfg.id)
            .collect();
        dial.sort_unstable();
        for id in dial {
            let p = peers.clone();
            peers.spawn(async move { p.dial_loop(id).await })?;
        }
        Ok(peers)
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) -> io::Result<()> {
        self.tasks
            .spawn(task)
            .map(|t| drop(t.detach()))
            .map_err(io::Error::from)
    }

    pub fn stats(&self) -> PeerStats {
        self.stats.get()
    }

    /// A new member (a membership change added it): queue for it, and dial it if this
    /// node has the lower id. Nothing if it is this node or already a member there.
    pub fn add_peer(self: &Rc<Self>, id: u64, addr: SocketAddr) {
        if id == self.cfg.id || self.is_closing() {
            return;
        }
        if let Some(old) = self.members.borrow_mut().insert(id, addr) {
            // Already a member: its dial loop (if any) reads the address each round.
            if old != addr {
                tracing::warn!("peer {id} moved from {old} to {addr}");
            }
            return;
        }
        self.outboxes
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| Outbox {
                queue: VecDeque::new(),
                bytes: 0,
                ready: Rc::new(glommio::sync::Semaphore::new(0)),
                connected: false,
            });
        if id > self.cfg.id {
            let p = self.clone();
            if let Err(e) = self.spawn(async move { p.dial_loop(id).await }) {
                warn!("peer {id}: could not start dialling it: {e}");
            }
        }
    }

    /// A member removed: nothing more is queued for it, its connection ends, and it is
    /// refused from now on.
    pub fn remove_peer(&self, id: u64) {
        self.members.borrow_mut().remove(&id);
        if let Some(out) = self.outboxes.borrow_mut().remove(&id) {
            out.ready.close();
        }
    }

    /// The members' ids (this node's excluded).
    pub fn members(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.members.borrow().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether an authenticated connection to `peer` is up.
    pub fn connected(&self, peer: u64) -> bool {
        self.outboxes
            .borrow()
            .get(&peer)
            .is_some_and(|o| o.connected)
    }

    /// Queues Raft message `msg` of group `shard` for node `to`; see [`Peers::send_envelope`].
    pub fn send(&self, to: u64, shard: u32, msg: raft::eraftpb::Message) {
        self.send_envelope(to, Envelope::raft(shard, msg));
    }

    /// Queues `e` for node `to`; dropped (and counted) when its queue is full or `to` is
    /// no member. Returns whether it was queued.
    pub fn send_envelope(&self, to: u64, e: Envelope) -> bool {
        let size = e.wire_len();
        let mut boxes = self.outboxes.borrow_mut();
        let Some(out) = boxes.get_mut(&to) else {
            bump(&self.stats, |s| s.dropped_messages += 1);
            return false;
        };
        if out.bytes + size > PEER_QUEUE_MAX_BYTES || size > FRAME_BODY_MAX_BYTES - 8 {
            bump(&self.stats, |s| s.dropped_messages += 1);
            return false;
        }
        out.bytes += size;
        out.queue.push_back(e);
        if out.ready.available() == 0 {
            out.ready.signal(1);
        }
        true
    }

    /// Stops every task and closes every connection.
    pub async fn close(&self) {
        self.closed.set(true);
        self.closing.close();
        for out in self.outboxes.borrow().values() {
            out.ready.close();
        }
        let _ = self.tasks.close().await;
    }

    fn is_closing(&self) -> bool {
        self.closed.get()
    }

    /// `f`, or `None` once the transport closes.
    async fn unless_closed<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        or(async { Some(f.await) }, async {
            let _ = self.closing.acquire(1).await;
            None
        })
        .await
    }

    async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        loop {
            let Some(accepted) = self.unless_closed(listener.accept()).await else {
                return;
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    warn!("peer listener: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(PEER_REDIAL_MIN_MS)).await;
                    continue;
                }
            };
            let p = self.clone();
            let _ = self.spawn(async move {
                let from = stream.peer_addr().ok();
                match p.accept_handshake(stream).await {
                    Ok((session, stream)) => p.serve(session, stream).await,
                    Err(_) if p.is_closing() => {}
                    Err(e) => {
                        bump(&p.stats, |s| s.handshakes_failed += 1);
                        debug!("peer connection from {from:?} refused: {e}");
                    }
                }
            });
        }
    }

    async fn accept_handshake(&self, mut stream: TcpStream) -> io::Result<(Session, TcpStream)> {
        stream.set_nodelay(true)?;
        let acceptor = Acceptor::new(&self.cfg.secret, self.cfg.id, random_nonce()?);
        let peers = &self.members;
        let session = with_timeout(PEER_HANDSHAKE_TIMEOUT_MS, async {
            stream.write_all(&acceptor.hello()).await?;
            let mut auth = [0u8; AUTH_LEN];
            stream.read_exact(&mut auth).await?;
            // Only lower ids dial this node.
            let me = self.cfg.id;
            let (proof, session) = acceptor
                .auth(&auth, |id| id < me && peers.borrow().contains_key(&id))
                .map_err(peer_io)?;
            stream.write_all(&proof).await?;
            Ok(session)
        })
        .await?;
        Ok((session, stream))
    }

    async fn dial_loop(self: Rc<Self>, peer: u64) {
        let mut backoff = PEER_REDIAL_MIN_MS;
        loop {
            // A removed member is dialled no more (and one whose address changed is
            // dialled at the new one).
            let Some(addr) = self.members.borrow().get(&peer).copied() else {
                return;
            };
            let Some(dialled) = self.unless_closed(self.dial(peer, addr)).await else {
                return;
            };
            match dialled {
                Ok((session, stream)) => {
                    backoff = PEER_REDIAL_MIN_MS;
                    self.clone().serve(session, stream).await;
                }
                Err(e) => {
                    bump(&self.stats, |s| s.handshakes_failed += 1);
                    debug!("peer {peer} at {addr}: {e}");
                }
            }
            let pause = glommio::timer::sleep(Duration::from_millis(backoff));
            if self.unless_closed(pause).await.is_none() {
                return;
            }
            backoff = (backoff * 2).min(PEER_REDIAL_MAX_MS);
        }
    }

    async fn dial(&self, peer: u64, addr: SocketAddr) -> io::Result<(Session, TcpStream)> {
        let mut initiator = Initiator::new(&self.cfg.secret, self.cfg.id, peer, random_nonce()?);
        with_timeout(PEER_HANDSHAKE_TIMEOUT_MS, async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut hello = [0u8; HELLO_LEN];
            stream.read_exact(&mut hello).await?;
            let auth = initiator.hello(&hello).map_err(peer_io)?;
            stream.write_all(&auth).await?;
            let mut proof = [0u8; PROOF_LEN];
            stream.read_exact(&mut proof).await?;
            let session = initiator.proof(&proof).map_err(peer_io)?;
            Ok((session, stream))
        })
        .await
    }

    /// Runs an authenticated connection until either side ends it: a writer draining
    /// the peer's queue and this task reading frames.
    async fn serve(self: Rc<Self>, session: Session, stream: TcpStream) {
        let peer = session.peer();
        let ready = {
            let mut boxes = self.outboxes.borrow_mut();
            let Some(out) = boxes.get_mut(&peer) else {
                return;
            };
            if out.connected {
                // One connection per pair; a second is refused.
                return;
            }
            out.connected = true;
            // Wake the writer for whatever queued while disconnected.
            if !out.queue.is_empty() && out.ready.available() == 0 {
                out.ready.signal(1);
            }
            out.ready.clone()
        };
        bump(&self.stats, |s| s.connections += 1);
        debug!("peer {peer}: connected");
        let (mut reader, writer) = futures_lite::io::split(stream);
        let session = Rc::new(RefCell::new(session));
        let done = Rc::new(Cell::new(false));
        let writer = {
            let (p, session, done) = (self.clone(), session.clone(), done.clone());
            glommio::spawn_local(
                async move { p.write_loop(peer, ready, session, writer, done).await },
            )
        };
        let r = self
            .unless_closed(self.read_loop(peer, &session, &mut reader))
            .await;
        done.set(true);
        if let Some(out) = self.outboxes.borrow_mut().get_mut(&peer) {
            out.connected = false;
            // Let the writer see `done`.
            out.ready.signal(1);
        }
        let mut writer = writer.await;
        let _ = writer.close().await;
        debug!("peer {peer}: connection ended: {r:?}");
    }

    async fn read_loop(
        &self,
        peer: u64,
        session: &Rc<RefCell<Session>>,
        reader: &mut ReadHalf<TcpStream>,
    ) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            // Whole frames first.
            loop {
                let opened = session.borrow_mut().open(&buf).map_err(peer_io)?;
                let Some((batch, used)) = opened else { break };
                buf.drain(..used);
                bump(&self.stats, |s| s.received_messages += batch.len() as u64);
                (self.inbox)(peer, batch);
            }
            if buf.len() > 4 + FRAME_BODY_MAX_BYTES + TAG_LEN {
                return Err(peer_io(PeerError::TooLarge(buf.len())));
            }
            let n = with_timeout(PEER_IDLE_TIMEOUT_MS, reader.read(&mut chunk)).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write_loop(
        &self,
        peer: u64,
        ready: Rc<glommio::sync::Semaphore>,
        session: Rc<RefCell<Session>>,
        mut writer: WriteHalf<TcpStream>,
        done: Rc<Cell<bool>>,
    ) -> WriteHalf<TcpStream> {
        let mut frame = Vec::new();
        loop {
            if ready.acquire(1).await.is_err() || done.get() {
                return writer;
            }
            loop {
                let batch = self.take_batch(peer);
                if batch.is_empty() {
                    break;
                }
                frame.clear();
                if let Err(e) = session.borrow_mut().seal(&batch, &mut frame) {
                    warn!("peer {peer}: a batch could not be framed: {e}");
                    continue;
                }
                bump(&self.stats, |s| s.sent_messages += batch.len() as u64);
                let r = writer.write_all(&frame).await;
                if r.is_err() || done.get() {
                    return writer;
                }
            }
        }
    }

    /// Takes queued messages for one frame.
    fn take_batch(&self, peer: u64) -> Vec<Envelope> {
        let mut boxes = self.outboxes.borrow_mut();
        let Some(out) = boxes.get_mut(&peer) else {
            return Vec::new();
        };
        let mut batch = Vec::new();
        let mut bytes = 4usize;
        while let Some(e) = out.queue.front() {
            let size = e.wire_len();
            if !batch.is_empty()
                && (bytes + size > FRAME_BODY_MAX_BYTES || batch.len() >= FRAME_MESSAGES_MAX)
            {
                break;
            }
            bytes += size;
            out.bytes -= size;
            batch.push(out.queue.pop_front().expect("front"));
        }
        batch
    }
}

fn peer_io(e: PeerError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

async fn with_timeout<T>(ms: u64, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    glommio::timer::timeout(Duration::from_millis(ms), async {
        f.await.map_err(glommio::GlommioError::from)
    })
    .await
    .map_err(io::Error::from)
}
