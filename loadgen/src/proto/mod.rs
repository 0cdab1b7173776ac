//! Wire protocols of the load generator, sans-I/O: requests out, replies in.
//!
//! The engine (`crate::engine`) owns sockets, the ring and time; a [`Protocol`] only turns
//! an [`Op`] into request bytes appended to a connection's send buffer, and recognises
//! whole replies at the front of received bytes, in place. Three steps make a protocol:
//!
//! * **setup** (blocking, once per run, before any engine thread starts): learn the
//!   endpoints and prepare the server — tern says Hello (topology: shard ports and the
//!   partition map) and creates its tables if missing ([`tern::Tern::connect`]); RESP has
//!   nothing to prepare ([`resp::Resp::connect`]).
//! * **route** ([`Protocol::route`]): which endpoint an op must be sent to. tern routes by
//!   `tern_protocol::keys::partition_hash` and the partition map, so every request goes
//!   straight to the core owning its key; RESP has one endpoint.
//! * **encode / parse** ([`Protocol::encode`], [`Protocol::parse`]): the hot path. Replies
//!   say how they are matched to requests ([`Match`]): by request id (tern frames carry
//!   it) or in order (RESP answers a connection's requests first in, first out).
//!
//! Each engine thread works on its own clone of the protocol (no locks; caches such as
//! tern's request templates are per thread).
//!
//! # Adding the DynamoDB HTTP/JSON front door later
//!
//! An `http` protocol fits the same trait without touching the engine: setup checks the
//! endpoint (one `ListTables` POST) and creates the tables with `CreateTable`; route is
//! always endpoint 0 (port 8000; or, shard-aware, per-core HTTP ports if the server ever
//! exposes them); encode appends an HTTP/1.1 `POST /` with `X-Amz-Target:
//! DynamoDB_20120810.GetItem` / `PutItem` / `Query` and a DynamoDB JSON body (built from a
//! per-shape template like tern's, patching key and value; values as base64 `B`); parse
//! finds the end of the headers, reads `Content-Length`, returns [`Parse::Incomplete`] with
//! the exact total until the body is in, then maps the status (200 → ok, or a GetItem body
//! of `{}` → miss; 4xx/5xx → error) with [`Match::Fifo`] (HTTP/1.1 pipelining answers in
//! order). A server that closes the connection after each response is not a pipelining
//! server; run it with `--depth 1`.

pub mod resp;
pub mod tern;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::workload::Op;

/// What a reply says about its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served.
    Ok,
    /// Served, and the key was not there (GetItem without an item, RESP nil): a
    /// successful miss, not an error.
    Miss,
    /// The server refused or failed the request (error frame, RESP `-ERR`).
    Error,
}

/// How a reply finds its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The reply carries the id its request was encoded with.
    Id(u64),
    /// The reply answers the oldest request still in flight on its connection.
    Fifo,
}

/// One whole reply at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub matched: Match,
    pub outcome: Outcome,
    /// Bytes of the buffer the reply occupies.
    pub consumed: usize,
}

/// What the front of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    Reply(Reply),
    /// Only part of a reply. `needed` is a lower bound (> the buffer's length) on the
    /// bytes the whole reply occupies: the receiver reassembles at least that much before
    /// asking again.
    Incomplete {
        needed: usize,
    },
}

/// Bytes that cannot be a reply: the connection cannot be resynchronised after them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    #[error("tern frame: {0}")]
    Frame(#[from] tern_protocol::frame::FrameError),
    #[error("tern frame is not a response (flags {0:#06x})")]
    NotAResponse(u16),
    #[error("RESP: {0}")]
    Resp(String),
}

/// Which data model point operations and scans address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyModel {
    /// One record per key: tern table `usertable` (pk "pk" S), Redis strings.
    Point,
    /// YCSB E's ranged model: key `k` lives in partition `k / RANGE_PARTITION_KEYS` at
    /// position `k % RANGE_PARTITION_KEYS` — tern table `usertable_ranges` (pk "pk" S =
    /// "p<partition>", sk "sk" N = position), Redis sorted set `range:<partition>`.
    Ranged,
}

/// A protocol: how requests are encoded and replies recognised. See the module docs.
pub trait Protocol: Clone + Send + 'static {
    /// Replies come in request order ([`Match::Fifo`]); false: they carry the request id
    /// ([`Match::Id`]).
    const IN_ORDER: bool;

    /// "tern" or "resp".
    fn name(&self) -> &'static str;

    /// The addresses connections may go to; [`Protocol::route`] returns an index into it.
    fn endpoints(&self) -> &[SocketAddr];

    /// The endpoint `op` must be sent to. Called right before [`Protocol::encode`] of the
    /// same op, so an implementation may keep what it computed for the encoding.
    fn route(&mut self, op: &Op) -> usize;

    /// Appends the request for `op` to `out`. `request_id` is echoed by protocols that
    /// match by id. A `ReadModifyWrite` op is never passed: the engine issues it as a
    /// `Get` and then a `Set` of the same key.
    fn encode(&mut self, op: &Op, request_id: u64, out: &mut Vec<u8>);

    /// Recognises the reply at the front of `buf`.
    fn parse(&mut self, buf: &[u8]) -> Result<Parse, ProtoError>;

    /// A human description of an error reply (the bytes [`Protocol::parse`] reported as
    /// [`Outcome::Error`]); called for the first few errors only.
    fn describe_error(&self, reply: &[u8]) -> String;
}

/// The protocols the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolKind {
    /// tern's binary protocol (shard-aware).
    Tern,
    /// RESP2 (Redis).
    Resp,
}

impl ProtocolKind {
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Tern => "tern",
            ProtocolKind::Resp => "resp",
        }
    }
}

impl fmt::Display for ProtocolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProtocolKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ProtocolKind, String> {
        match s.to_ascii_lowercase().as_str() {
            "tern" => Ok(ProtocolKind::Tern),
            "resp" | "redis" => Ok(ProtocolKind::Resp),
            other => Err(format!(
                "unknown protocol {other:?}: use tern or resp (redis)"
            )),
        }
    }
}

/// A protocol after setup, ready to be cloned into engine threads.
#[derive(Debug, Clone)]
pub enum AnyProtocol {
    /// Boxed: the tern protocol's per-thread state is large, and this enum is built once.
    Tern(Box<tern::Tern>),
    Resp(resp::Resp),
}

impl AnyProtocol {
    /// Runs `kind`'s setup against `target` ("host:port"); blocking.
    pub fn connect(
        kind: ProtocolKind,
        target: &str,
        model: KeyModel,
        timeout: std::time::Duration,
    ) -> anyhow::Result<AnyProtocol> {
        Ok(match kind {
            ProtocolKind::Tern => {
                AnyProtocol::Tern(Box::new(tern::Tern::connect(target, model, timeout)?))
            }
            ProtocolKind::Resp => AnyProtocol::Resp(resp::Resp::connect(target, model, timeout)?),
        })
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        match self {
            AnyProtocol::Tern(p) => p.endpoints(),
            AnyProtocol::Resp(p) => p.endpoints(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            AnyProtocol::Tern(p) => p.name(),
            AnyProtocol::Resp(p) => p.name(),
        }
    }
}

/// Resolves "host:port" to its first address.
pub(crate) fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    use anyhow::Context;
    use std::net::ToSocketAddrs;
    target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve target {target:?} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("target {target:?} resolves to no address"))
}

/// Appends the decimal digits of `n`, without allocating.
#[inline]
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Number of decimal digits of `n`.
#[inline]
pub(crate) fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }

    #[test]
    fn protocol_names_parse() {
        assert_eq!("tern".parse::<ProtocolKind>(), Ok(ProtocolKind::Tern));
        assert_eq!("RESP".parse::<ProtocolKind>(), Ok(ProtocolKind::Resp));
        assert_eq!("redis".parse::<ProtocolKind>(), Ok(ProtocolKind::Resp));
        assert!("http".parse::<ProtocolKind>().is_err());
    }
}
