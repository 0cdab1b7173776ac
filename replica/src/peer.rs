//! The peer wire protocol between AZ nodes, sans-I/O: a mutual challenge–response on the
//! cluster secret, then MAC'd frames carrying batches of (shard, Raft message).
//!
//! Nothing a peer sends is parsed beyond fixed-size fields until it is authenticated:
//! the handshake messages are fixed-size, and a frame's body — where the protobuf Raft
//! messages are — is decoded only after its MAC verified (protobuf 2's decoder has a
//! recursion advisory; an unauthenticated byte never reaches it). The secret never
//! crosses the wire.
//!
//! ```text
//! acceptor → initiator   HELLO  magic "TERNPEER" ‖ version u16 ‖ acceptor id u64 ‖ nonce_a[32]
//! initiator → acceptor   AUTH   initiator id u64 ‖ nonce_i[32] ‖ HMAC(secret, "tern-peer-1 initiator" ‖ ids ‖ nonces)
//! acceptor → initiator   PROOF  HMAC(secret, "tern-peer-1 acceptor" ‖ ids ‖ nonces)
//! then, each direction:  FRAME  len u32 ‖ body[len] ‖ tag[16]
//!     tag = HMAC(key_dir, seq u64 ‖ len ‖ body)[..16], seq counting frames from 0
//!     key_dir = HMAC(secret, "tern-peer-1 key " ‖ direction ‖ ids ‖ nonces)
//!     body = count u32 ‖ count × { shard u32 ‖ msg_len u32 ‖ protobuf raft Message }
//! ```
//! Both sides pick fresh random nonces, so a recorded handshake or frame is useless on
//! another connection; the sequence number makes a replayed, dropped or reordered frame
//! within a connection fail its MAC. All integers little-endian.

use hmac::{Hmac, Mac};
use protobuf::Message as _;
use raft::eraftpb::Message;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const MAGIC: [u8; 8] = *b"TERNPEER";
pub const VERSION: u16 = 1;
pub const NONCE_LEN: usize = 32;
pub const MAC_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
pub const HELLO_LEN: usize = 8 + 2 + 8 + NONCE_LEN;
pub const AUTH_LEN: usize = 8 + NONCE_LEN + MAC_LEN;
pub const PROOF_LEN: usize = MAC_LEN;

/// The largest frame body: an append carrying the largest log record, with room for
/// the rest of a batch. Larger lengths end the connection before anything is read.
pub const FRAME_BODY_MAX_BYTES: usize = 8 << 20;
/// The most messages one frame carries.
pub const FRAME_MESSAGES_MAX: usize = 4096;
/// The shortest secret a cluster may use.
pub const SECRET_MIN_BYTES: usize = 16;

// One Raft append (its byte budget, plus one entry of any size the log holds) fits a frame.
const _: () = assert!(
    crate::replica::MAX_MSG_BYTES as usize + tern_storage::limits::RECORD_MAX_BYTES + 4096
        <= FRAME_BODY_MAX_BYTES
);

/// Why a peer connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("not a tern peer (bad magic)")]
    BadMagic,
    #[error("peer protocol version {0}, this build speaks {VERSION}")]
    Version(u16),
    #[error("the peer is node {got}, expected node {want}")]
    WrongPeer { want: u64, got: u64 },
    #[error("the peer could not prove the cluster secret")]
    BadProof,
    #[error("a frame of {0} bytes exceeds the peer frame limit")]
    TooLarge(usize),
    #[error("a frame failed its MAC (tampered, replayed or out of order)")]
    BadTag,
    #[error("a malformed frame: {0}")]
    Malformed(String),
}

/// Which way a frame travels: each direction has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    FromInitiator,
    FromAcceptor,
}

/// What both sides derive from the handshake.
#[derive(Clone)]
struct Transcript {
    initiator: u64,
    acceptor: u64,
    nonce_i: [u8; NONCE_LEN],
    nonce_a: [u8; NONCE_LEN],
}

impl Transcript {
    fn mac(&self, secret: &[u8], label: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        m.update(b"tern-peer-1 ");
        m.update(label);
        m.update(&self.initiator.to_le_bytes());
        m.update(&self.acceptor.to_le_bytes());
        m.update(&self.nonce_i);
        m.update(&self.nonce_a);
        m
    }

    fn key(&self, secret: &[u8], dir: Direction) -> [u8; MAC_LEN] {
        let label: &[u8] = match dir {
            Direction::FromInitiator => b"key initiator",
            Direction::FromAcceptor => b"key acceptor",
        };
        self.mac(secret, label).finalize().into_bytes().into()
    }

    fn session(&self, secret: &[u8], we_initiated: bool) -> Session {
        let (send, recv) = if we_initiated {
            (Direction::FromInitiator, Direction::FromAcceptor)
        } else {
            (Direction::FromAcceptor, Direction::FromInitiator)
        };
        Session {
            peer: if we_initiated {
                self.acceptor
            } else {
                self.initiator
            },
            send: FrameKey::new(self.key(secret, send)),
            recv: FrameKey::new(self.key(secret, recv)),
        }
    }
}

fn check_secret(secret: &[u8]) {
    assert!(
        secret.len() >= SECRET_MIN_BYTES,
        "a cluster secret of at least {SECRET_MIN_BYTES} bytes (checked at start-up)"
    );
}

/// The acceptor's side of the handshake.
pub struct Acceptor {
    secret: Vec<u8>,
    id: u64,
    nonce: [u8; NONCE_LEN],
}

impl Acceptor {
    /// `nonce` must be fresh random bytes.
    pub fn new(secret: &[u8], id: u64, nonce: [u8; NONCE_LEN]) -> Acceptor {
        check_secret(secret);
        Acceptor {
            secret: secret.to_vec(),
            id,
            nonce,
        }
    }

    /// The first bytes to send.
    pub fn hello(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&VERSION.to_le_bytes());
        out[10..18].copy_from_slice(&self.id.to_le_bytes());
        out[18..].copy_from_slice(&self.nonce);
        out
    }

    /// The initiator's AUTH: on success, the PROOF to send and the session. `allowed`
    /// says which node ids may connect (the cluster's members).
    pub fn auth(
        &self,
        auth: &[u8; AUTH_LEN],
        allowed: impl Fn(u64) -> bool,
    ) -> Result<([u8; PROOF_LEN], Session), PeerError> {
        let initiator = u64::from_le_bytes(auth[..8].try_into().expect("8"));
        let t = Transcript {
            initiator,
            acceptor: self.id,
            nonce_i: auth[8..8 + NONCE_LEN].try_into().expect("nonce"),
            nonce_a: self.nonce,
        };
        // The MAC first: an unknown id learns nothing more than a wrong secret does.
        t.mac(&self.secret, b"initiator")
            .verify_slice(&auth[8 + NONCE_LEN..])
            .map_err(|_| PeerError::BadProof)?;
        if !allowed(initiator) || initiator == self.id {
            return Err(PeerError::WrongPeer {
                want: 0,
                got: initiator,
            });
        }
        let proof: [u8; PROOF_LEN] = t
            .mac(&self.secret, b"acceptor")
            .finalize()
            .into_bytes()
            .into();
        Ok((proof, t.session(&self.secret, false)))
    }
}

/// The initiator's side of the handshake.
pub struct Initiator {
    secret: Vec<u8>,
    id: u64,
    peer: u64,
    nonce: [u8; NONCE_LEN],
    transcript: Option<Transcript>,
}

impl Initiator {
    /// Connecting as `id` to node `peer`; `nonce` must be fresh random bytes.
    pub fn new(secret: &[u8], id: u64, peer: u64, nonce: [u8; NONCE_LEN]) -> Initiator {
        check_secret(secret);
        Initiator {
            secret: secret.to_vec(),
            id,
            peer,
            nonce,
            transcript: None,
        }
    }

    /// The acceptor's HELLO: the AUTH to send.
    pub fn hello(&mut self, hello: &[u8; HELLO_LEN]) -> Result<[u8; AUTH_LEN], PeerError> {
        if hello[..8] != MAGIC {
            return Err(PeerError::BadMagic);
        }
        let version = u16::from_le_bytes([hello[8], hello[9]]);
        if version != VERSION {
            return Err(PeerError::Version(version));
        }
        let acceptor = u64::from_le_bytes(hello[10..18].try_into().expect("8"));
        if acceptor != self.peer {
            return Err(PeerError::WrongPeer {
                want: self.peer,
                got: acceptor,
            });
        }
        let t = Transcript {
            initiator: self.id,
            acceptor,
            nonce_i: self.nonce,
            nonce_a: hello[18..].try_into().expect("nonce"),
        };
        let mut out = [0u8; AUTH_LEN];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..8 + NONCE_LEN].copy_from_slice(&self.nonce);
        out[8 + NONCE_LEN..]
            .copy_from_slice(&t.mac(&self.secret, b"initiator").finalize().into_bytes());
        self.transcript = Some(t);
        Ok(out)
    }

    /// The acceptor's PROOF: the session.
    pub fn proof(self, proof: &[u8; PROOF_LEN]) -> Result<Session, PeerError> {
        let t = self.transcript.expect("hello() came first");
        t.mac(&self.secret, b"acceptor")
            .verify_slice(proof)
            .map_err(|_| PeerError::BadProof)?;
        Ok(t.session(&self.secret, true))
    }
}

/// One direction's key and frame counter.
struct FrameKey {
    mac: HmacSha256,
    seq: u64,
}

impl FrameKey {
    fn new(key: [u8; MAC_LEN]) -> FrameKey {
        FrameKey {
            mac: HmacSha256::new_from_slice(&key).expect("HMAC takes any key length"),
            seq: 0,
        }
    }

    fn tag(&mut self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac.clone();
        m.update(&self.seq.to_le_bytes());
        m.update(&(body.len() as u32).to_le_bytes());
        m.update(body);
        self.seq += 1;
        let full = m.finalize().into_bytes();
        full[..TAG_LEN].try_into().expect("16 of 32")
    }
}

/// An authenticated connection's framing: batches out, batches in.
pub struct Session {
    peer: u64,
    send: FrameKey,
    recv: FrameKey,
}

/// One message for one shard: Raft's, or a client request forwarded to the shard's
/// leader and its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub shard: u32,
    pub body: Payload,
}

/// What an [`Envelope`] carries. Wire: kind u8, then a Raft message's protobuf, or
/// request id u64 ‖ a whole client frame (`tern_protocol::frame`, CRC'd: the receiver
/// parses it as it parses a client's).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Raft(Message),
    /// A client request a follower passes to the leader; `id` is the follower's.
    Request {
        id: u64,
        frame: Vec<u8>,
    },
    /// The leader's reply frame to request `id`.
    Response {
        id: u64,
        frame: Vec<u8>,
    },
}

const KIND_RAFT: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_RESPONSE: u8 = 3;
/// shard u32 ‖ len u32 ‖ kind u8.
const ENVELOPE_HEADER_LEN: usize = 9;

impl Envelope {
    pub fn raft(shard: u32, msg: Message) -> Envelope {
        Envelope {
            shard,
            body: Payload::Raft(msg),
        }
    }

    /// The bytes this envelope takes in a frame.
    pub fn wire_len(&self) -> usize {
        ENVELOPE_HEADER_LEN
            + match &self.body {
                Payload::Raft(m) => m.compute_size() as usize,
                Payload::Request { frame, .. } | Payload::Response { frame, .. } => 8 + frame.len(),
            }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), PeerError> {
        out.extend_from_slice(&self.shard.to_le_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0u8; 4]);
        match &self.body {
            Payload::Raft(m) => {
                out.push(KIND_RAFT);
                m.write_to_vec(out)
                    .map_err(|err| PeerError::Malformed(format!("encoding a message: {err}")))?;
            }
            Payload::Request { id, frame } | Payload::Response { id, frame } => {
                let kind = if matches!(self.body, Payload::Request { .. }) {
                    KIND_REQUEST
                } else {
                    KIND_RESPONSE
                };
                out.push(kind);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(frame);
            }
        }
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }
}

impl Session {
    /// The node at the other end (authenticated).
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// Appends one frame carrying `batch` to `out`. Batches are built under
    /// `FRAME_BODY_MAX_BYTES` by the caller (`Batcher`); a larger one is a bug.
    pub fn seal(&mut self, batch: &[Envelope], out: &mut Vec<u8>) -> Result<(), PeerError> {
        let start = out.len();
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
        for e in batch {
            if let Err(err) = e.encode(out) {
                out.truncate(start);
                return Err(err);
            }
        }
        let body_len = out.len() - start - 4;
        if body_len > FRAME_BODY_MAX_BYTES || batch.len() > FRAME_MESSAGES_MAX {
            out.truncate(start);
            return Err(PeerError::TooLarge(body_len));
        }
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        let tag = self.send.tag(&out[start + 4..]);
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Takes one whole frame from the front of `buf`: `Ok(None)` until it has all
    /// arrived, then the batch and the bytes it used. The length is checked before
    /// anything is buffered, the tag before anything is parsed.
    pub fn open(&mut self, buf: &[u8]) -> Result<Option<(Vec<Envelope>, usize)>, PeerError> {
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(head.try_into().expect("4")) as usize;
        if len > FRAME_BODY_MAX_BYTES {
            return Err(PeerError::TooLarge(len));
        }
        let Some(frame) = buf.get(..4 + len + TAG_LEN) else {
            return Ok(None);
        };
        let body = &frame[4..4 + len];
        let want = self.recv.tag(body);
        // Constant time: the tag is a MAC.
        let got = &frame[4 + len..];
        if got
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(PeerError::BadTag);
        }
        Ok(Some((parse_body(body)?, frame.len())))
    }
}

/// An authenticated body: the batch it carries.
fn parse_body(body: &[u8]) -> Result<Vec<Envelope>, PeerError> {
    let bad = |what: &str| PeerError::Malformed(what.to_string());
    let count = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize)
        .ok_or_else(|| bad("no message count"))?;
    if count > FRAME_MESSAGES_MAX {
        return Err(bad("too many messages"));
    }
    let mut out = Vec::with_capacity(count);
    let mut rest = &body[4..];
    for _ in 0..count {
        let (Some(shard), Some(len)) = (rest.get(..4), rest.get(4..8)) else {
            return Err(bad("a truncated message header"));
        };
        let shard = u32::from_le_bytes(shard.try_into().expect("4"));
        let len = u32::from_le_bytes(len.try_into().expect("4")) as usize;
        let msg_bytes = rest
            .get(8..8 + len)
            .ok_or_else(|| bad("a truncated message"))?;
        let (&kind, payload) = msg_bytes
            .split_first()
            .ok_or_else(|| bad("no message kind"))?;
        let body = match kind {
            KIND_RAFT => Payload::Raft(
                Message::parse_from_bytes(payload)
                    .map_err(|e| PeerError::Malformed(format!("a Raft message: {e}")))?,
            ),
            KIND_REQUEST | KIND_RESPONSE => {
                let (id, frame) = payload
                    .split_first_chunk::<8>()
                    .ok_or_else(|| bad("a request without its id"))?;
                let (id, frame) = (u64::from_le_bytes(*id), frame.to_vec());
                if kind == KIND_REQUEST {
                    Payload::Request { id, frame }
                } else {
                    Payload::Response { id, frame }
                }
            }
            _ => return Err(bad("an unknown message kind")),
        };
        out.push(Envelope { shard, body });
        rest = &rest[8 + len..];
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the last message"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    const SECRET: &[u8] = b"0123456789abcdef-cluster";

    fn pair(secret_i: &[u8], secret_a: &[u8]) -> Result<(Session, Session), PeerError> {
        let acceptor = Acceptor::new(secret_a, 2, [7; NONCE_LEN]);
        let mut initiator = Initiator::new(secret_i, 1, 2, [9; NONCE_LEN]);
        let auth = initiator.hello(&acceptor.hello())?;
        let (proof, a) = acceptor.auth(&auth, |id| id == 1 || id == 3)?;
        let i = initiator.proof(&proof)?;
        Ok((i, a))
    }

    fn append(shard: u32, bytes: usize) -> Envelope {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgAppend);
        msg.to = 2;
        msg.from = 1;
        msg.term = 7;
        msg.entries = vec![Entry {
            index: 5,
            term: 7,
            data: vec![0xAB; bytes].into(),
            ..Entry::default()
        }]
        .into();
        Envelope::raft(shard, msg)
    }

    #[test]
    fn a_handshake_with_the_secret_authenticates_both_ways_and_frames_round_trip() {
        let (mut i, mut a) = pair(SECRET, SECRET).unwrap();
        assert_eq!((i.peer(), a.peer()), (2, 1));
        let batch = vec![
            append(0, 10),
            append(1, 1000),
            Envelope {
                shard: 1,
                body: Payload::Request {
                    id: 42,
                    frame: b"a client frame".to_vec(),
                },
            },
            Envelope {
                shard: 0,
                body: Payload::Response {
                    id: u64::MAX,
                    frame: Vec::new(),
                },
            },
        ];
        assert!(batch.iter().all(|e| {
            let mut one = Vec::new();
            e.encode(&mut one).unwrap();
            one.len() == e.wire_len()
        }));
        let mut wire = Vec::new();
        i.seal(&batch, &mut wire).unwrap();
        i.seal(&batch[..1], &mut wire).unwrap();
        // Nothing comes out (and no counter moves) until a whole frame is there.
        let first = 4 + u32::from_le_bytes(wire[..4].try_into().unwrap()) as usize + TAG_LEN;
        for cut in 0..first {
            assert_eq!(a.open(&wire[..cut]).unwrap(), None, "cut {cut}");
        }
        let (got, used) = a.open(&wire).unwrap().unwrap();
        assert_eq!(got, batch);
        let (got2, used2) = a.open(&wire[used..]).unwrap().unwrap();
        assert_eq!(got2, batch[..1].to_vec());
        assert_eq!(used + used2, wire.len());
        // And the other way, with the other key.
        let mut back = Vec::new();
        a.seal(&batch, &mut back).unwrap();
        assert_eq!(i.open(&back).unwrap().unwrap().0, batch);
    }

    #[test]
    fn a_wrong_secret_fails_on_both_sides_and_unknown_or_self_ids_are_refused() {
        assert_eq!(
            pair(b"0123456789abcdef-other", SECRET).err(),
            Some(PeerError::BadProof)
        );
        // An acceptor with the wrong secret cannot produce the proof either.
        let acceptor = Acceptor::new(b"0123456789abcdef-other", 2, [7; NONCE_LEN]);
        let mut initiator = Initiator::new(SECRET, 1, 2, [9; NONCE_LEN]);
        let auth = initiator.hello(&acceptor.hello()).unwrap();
        // (the acceptor refuses the initiator's MAC; a forged proof fails at the initiator)
        assert_eq!(
            acceptor.auth(&auth, |_| true).err(),
            Some(PeerError::BadProof)
        );
        assert_eq!(
            initiator.proof(&[0u8; PROOF_LEN]).err(),
            Some(PeerError::BadProof)
        );
        // Members only, and not itself.
        let acceptor = Acceptor::new(SECRET, 2, [7; NONCE_LEN]);
        let mut initiator = Initiator::new(SECRET, 5, 2, [9; NONCE_LEN]);
        let auth = initiator.hello(&acceptor.hello()).unwrap();
        assert!(matches!(
            acceptor.auth(&auth, |id| id <= 3),
            Err(PeerError::WrongPeer { .. })
        ));
        let mut wrong = Initiator::new(SECRET, 1, 3, [9; NONCE_LEN]);
        assert_eq!(
            wrong.hello(&acceptor.hello()).err(),
            Some(PeerError::WrongPeer { want: 3, got: 2 })
        );
        let mut bad = acceptor.hello();
        bad[0] ^= 1;
        assert_eq!(
            Initiator::new(SECRET, 1, 2, [9; NONCE_LEN])
                .hello(&bad)
                .err(),
            Some(PeerError::BadMagic)
        );
    }

    #[test]
    fn tampered_replayed_reordered_or_oversized_frames_are_refused_before_parsing() {
        let (mut i, _) = pair(SECRET, SECRET).unwrap();
        let mut one = Vec::new();
        i.seal(&[append(0, 50)], &mut one).unwrap();
        let mut two = Vec::new();
        i.seal(&[append(0, 60)], &mut two).unwrap();
        // Sessions are deterministic for fixed nonces: each trial gets a fresh twin of
        // the acceptor's.
        let fresh = || pair(SECRET, SECRET).unwrap().1;
        // Every single-bit flip of a frame is caught (length flips may read as "wait
        // for more" or "too large" instead, but never as a message).
        for bit in 0..one.len() * 8 {
            let mut bad = one.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(fresh().open(&bad), Ok(Some(_))),
                "flip of bit {bit} accepted"
            );
        }
        // Out of order, and replayed.
        assert_eq!(fresh().open(&two).err(), Some(PeerError::BadTag));
        let mut s = fresh();
        s.open(&one).unwrap().unwrap();
        assert_eq!(s.open(&one).err(), Some(PeerError::BadTag));
        // A length over the bound ends it before anything is buffered.
        let mut huge = Vec::new();
        huge.extend_from_slice(&((FRAME_BODY_MAX_BYTES + 1) as u32).to_le_bytes());
        assert_eq!(
            fresh().open(&huge).err(),
            Some(PeerError::TooLarge(FRAME_BODY_MAX_BYTES + 1))
        );
        // A frame from another connection (other nonces) fails its tag.
        let acceptor = Acceptor::new(SECRET, 2, [8; NONCE_LEN]);
        let mut initiator = Initiator::new(SECRET, 1, 2, [9; NONCE_LEN]);
        let auth = initiator.hello(&acceptor.hello()).unwrap();
        let (_, mut other) = acceptor.auth(&auth, |_| true).unwrap();
        assert_eq!(other.open(&one).err(), Some(PeerError::BadTag));
    }

    #[test]
    fn an_authenticated_but_malformed_body_is_a_typed_error() {
        // Raw bodies under the real key: authentic, but not batches.
        for body in [
            vec![],
            vec![1, 0, 0, 0],
            vec![1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 2],
            // A message with no kind, an unknown kind, a request without its id.
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9],
            vec![1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 1, 2],
        ] {
            let (mut i, mut a) = pair(SECRET, SECRET).unwrap();
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&body);
            let tag = i.send.tag(&body);
            frame.extend_from_slice(&tag);
            assert!(
                matches!(a.open(&frame), Err(PeerError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    /// Authentic frames with random bodies (a buggy peer) give typed errors or batches,
    /// never a panic; so do random bytes (which fail their tag first).
    #[test]
    fn random_bodies_and_random_bytes_never_panic() {
        let mut rng = tern_storage::sim::SplitMix(0xFEED);
        for round in 0..2000 {
            let len = rng.below(200) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if round % 2 == 0 && len >= 4 {
                // A plausible count, so parsing goes further.
                body[..4].copy_from_slice(&(rng.below(3) as u32).to_le_bytes());
            }
            let (mut i, mut a) = pair(SECRET, SECRET).unwrap();
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&body);
            let tag = i.send.tag(&body);
            frame.extend_from_slice(&tag);
            let _ = a.open(&frame);
            let mut b = pair(SECRET, SECRET).unwrap().1;
            let _ = b.open(&body);
        }
    }
}
