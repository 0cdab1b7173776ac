//! RESP2 (Redis): the same generator drives Redis, so tern can be measured beside it.
//!
//! # Mapping of operations
//!
//! | op | point model (`usertable`-like) | ranged model (YCSB E) |
//! |---|---|---|
//! | Get | `GET <key>` | `ZSCORE range:<p> <key>` |
//! | Set, Update, Insert (and the preload) | `SET <key> <value>` | `ZADD range:<p> <pos> <key>` |
//! | ReadModifyWrite | `GET <key>`, then `SET <key> <value>` | `ZSCORE`, then `ZADD` |
//! | Scan | — | `ZRANGEBYSCORE range:<p> <pos> +inf LIMIT 0 <scan_len>` |
//!
//! `<key>` is `workload::format_key` ("user000000000042"), `<value>` is
//! `workload::fill_value` of the op's value length, and in the ranged model key `k` is in
//! partition `p = k / RANGE_PARTITION_KEYS` at position `pos = k % RANGE_PARTITION_KEYS`:
//! one sorted set per partition, scored by position, whose members are the keys. A scan
//! stays inside its partition, as tern's Query does. Note the asymmetry: the sorted-set
//! members carry only the key, while tern's ranged items also hold the value, so a Redis
//! scan moves fewer bytes than a tern Query of the same length.
//!
//! # Replies
//!
//! Replies are matched first in, first out ([`Match::Fifo`]). A nil bulk string or nil
//! array (`$-1`, `*-1`: GET or ZSCORE of a missing key) is a successful miss
//! ([`Outcome::Miss`]); an error reply (`-ERR ...`, `-WRONGTYPE ...`) is an error; any
//! other reply (`+OK`, `:1`, a bulk string, an array of any depth) is a success. The
//! parser walks a reply without copying it and reports, for a split reply, the least
//! total length it can already tell ([`Parse::Incomplete`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{
    KeyModel, Match, Outcome, Parse, ProtoError, Protocol, Reply, decimal_len, push_decimal,
};
use crate::workload::{Op, OpKind, RANGE_PARTITION_KEYS, fill_value, format_key};

/// Longest status or error line accepted.
const LINE_MAX_BYTES: usize = 64 * 1024;
/// Longest bulk string accepted (Redis's own `proto-max-bulk-len` default).
const BULK_MAX_BYTES: i64 = 512 * 1024 * 1024;
/// Most elements an array may announce.
const ARRAY_MAX_ELEMENTS: i64 = 1 << 32;

/// RESP after setup: one endpoint.
#[derive(Debug, Clone)]
pub struct Resp {
    endpoints: Vec<SocketAddr>,
    model: KeyModel,
    key: Vec<u8>,
}

impl Resp {
    /// Resolves `target` and checks that it answers `PING` (fails early with a clear
    /// message when nothing listens or the server wants a password).
    pub fn connect(target: &str, model: KeyModel, timeout: Duration) -> anyhow::Result<Resp> {
        let addr = super::resolve(target)?;
        let mut s = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to the RESP server at {addr}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = s
                .read(&mut chunk)
                .with_context(|| format!("waiting for PING's reply from {addr}"))?;
            if n == 0 {
                bail!("{addr} closed the connection instead of answering PING");
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse_reply(&buf) {
                Ok(Parse::Incomplete { .. }) if buf.len() < LINE_MAX_BYTES => continue,
                Ok(Parse::Reply(r)) if r.outcome == Outcome::Ok => break,
                Ok(Parse::Reply(_)) => bail!(
                    "{addr} refused PING: {} (a password or protected mode?)",
                    String::from_utf8_lossy(&buf).trim()
                ),
                _ => bail!("{addr} does not speak RESP (answered PING with {buf:?})"),
            }
        }
        Ok(Resp::new(addr, model))
    }

    /// A protocol for `addr` without contacting it (tests, benchmarks).
    pub fn new(addr: SocketAddr, model: KeyModel) -> Resp {
        Resp {
            endpoints: vec![addr],
            model,
            key: Vec::with_capacity(32),
        }
    }

    fn load_key(&mut self, key: u64) {
        self.key.clear();
        format_key(key, &mut self.key);
    }
}

#[inline]
fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    push_decimal(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

#[inline]
fn bulk_decimal(out: &mut Vec<u8>, n: u64) {
    out.push(b'$');
    push_decimal(out, decimal_len(n) as u64);
    out.extend_from_slice(b"\r\n");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `range:<partition>` as a bulk string.
#[inline]
fn bulk_range_set(out: &mut Vec<u8>, partition: u64) {
    const PREFIX: &[u8] = b"range:";
    out.push(b'$');
    push_decimal(out, (PREFIX.len() + decimal_len(partition)) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(PREFIX);
    push_decimal(out, partition);
    out.extend_from_slice(b"\r\n");
}

impl Protocol for Resp {
    const IN_ORDER: bool = true;

    fn name(&self) -> &'static str {
        "resp"
    }

    fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    #[inline]
    fn route(&mut self, _op: &Op) -> usize {
        0
    }

    fn encode(&mut self, op: &Op, _request_id: u64, out: &mut Vec<u8>) {
        debug_assert!(
            op.kind != OpKind::ReadModifyWrite,
            "the engine splits read-modify-write"
        );
        let partition = op.key / RANGE_PARTITION_KEYS;
        let position = op.key % RANGE_PARTITION_KEYS;
        match (op.kind, self.model) {
            (OpKind::Scan, _) => {
                out.extend_from_slice(b"*7\r\n$13\r\nZRANGEBYSCORE\r\n");
                bulk_range_set(out, partition);
                bulk_decimal(out, position);
                out.extend_from_slice(b"$4\r\n+inf\r\n$5\r\nLIMIT\r\n$1\r\n0\r\n");
                bulk_decimal(out, u64::from(op.scan_len));
            }
            (OpKind::Get | OpKind::ReadModifyWrite, KeyModel::Point) => {
                self.load_key(op.key);
                out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
                bulk(out, &self.key);
            }
            (OpKind::Set | OpKind::Update | OpKind::Insert, KeyModel::Point) => {
                self.load_key(op.key);
                out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
                bulk(out, &self.key);
                out.push(b'$');
                push_decimal(out, u64::from(op.value_len));
                out.extend_from_slice(b"\r\n");
                let before = out.len();
                fill_value(op.key, op.value_len, out);
                assert_eq!(
                    out.len() - before,
                    op.value_len as usize,
                    "fill_value wrote a value of the wrong length"
                );
                out.extend_from_slice(b"\r\n");
            }
            (OpKind::Get | OpKind::ReadModifyWrite, KeyModel::Ranged) => {
                self.load_key(op.key);
                out.extend_from_slice(b"*3\r\n$6\r\nZSCORE\r\n");
                bulk_range_set(out, partition);
                bulk(out, &self.key);
            }
            (OpKind::Set | OpKind::Update | OpKind::Insert, KeyModel::Ranged) => {
                self.load_key(op.key);
                out.extend_from_slice(b"*4\r\n$4\r\nZADD\r\n");
                bulk_range_set(out, partition);
                bulk_decimal(out, position);
                bulk(out, &self.key);
            }
        }
    }

    #[inline]
    fn parse(&mut self, buf: &[u8]) -> Result<Parse, ProtoError> {
        parse_reply(buf)
    }

    fn describe_error(&self, reply: &[u8]) -> String {
        let line = reply.strip_prefix(b"-").unwrap_or(reply);
        let end = line.iter().position(|&b| b == b'\r').unwrap_or(line.len());
        String::from_utf8_lossy(&line[..end]).into_owned()
    }
}

/// The index of the `\r` ending the line that starts at `from`, `Ok(None)` when the line
/// is not complete yet.
#[inline]
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ProtoError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        Some(cr) => {
            let cr = from + cr;
            match buf.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(ProtoError::Resp("CR not followed by LF".into())),
            }
        }
        None if rest.len() > LINE_MAX_BYTES => Err(ProtoError::Resp(format!(
            "line longer than {LINE_MAX_BYTES} bytes"
        ))),
        None => Ok(None),
    }
}

#[inline]
fn parse_int(line: &[u8]) -> Result<i64, ProtoError> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(ProtoError::Resp(format!(
            "bad integer {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtoError::Resp(format!(
                "bad integer {:?}",
                String::from_utf8_lossy(line)
            )));
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(if negative { -n } else { n })
}

/// Recognises the RESP2 reply at the front of `buf` (see the module docs).
pub fn parse_reply(buf: &[u8]) -> Result<Parse, ProtoError> {
    let mut pos = 0;
    // Values still to read: the reply itself plus the announced elements of its arrays.
    let mut remaining: i64 = 1;
    let mut outcome = None;
    while remaining > 0 {
        let Some(&ty) = buf.get(pos) else {
            return Ok(Parse::Incomplete {
                needed: buf.len() + 1,
            });
        };
        let Some(cr) = line_end(buf, pos + 1)? else {
            return Ok(Parse::Incomplete {
                needed: buf.len() + 1,
            });
        };
        let line = &buf[pos + 1..cr];
        let after = cr + 2;
        remaining -= 1;
        let this = match ty {
            b'+' => Outcome::Ok,
            b'-' => Outcome::Error,
            b':' => {
                parse_int(line)?;
                Outcome::Ok
            }
            b'$' => match parse_int(line)? {
                -1 => Outcome::Miss,
                n if (0..=BULK_MAX_BYTES).contains(&n) => {
                    let end = after + n as usize + 2;
                    if buf.len() < end {
                        return Ok(Parse::Incomplete { needed: end });
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(ProtoError::Resp(
                            "bulk string not terminated by CRLF".into(),
                        ));
                    }
                    pos = end;
                    outcome.get_or_insert(Outcome::Ok);
                    continue;
                }
                n => return Err(ProtoError::Resp(format!("bad bulk length {n}"))),
            },
            b'*' => match parse_int(line)? {
                -1 => Outcome::Miss,
                n if (0..=ARRAY_MAX_ELEMENTS).contains(&n) => {
                    remaining += n;
                    Outcome::Ok
                }
                n => return Err(ProtoError::Resp(format!("bad array length {n}"))),
            },
            other => {
                return Err(ProtoError::Resp(format!(
                    "unexpected reply type byte {other:#04x}"
                )));
            }
        };
        outcome.get_or_insert(this);
        pos = after;
    }
    Ok(Parse::Reply(Reply {
        matched: Match::Fifo,
        outcome: outcome.unwrap_or(Outcome::Ok),
        consumed: pos,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(buf: &[u8]) -> Reply {
        match parse_reply(buf).unwrap() {
            Parse::Reply(r) => r,
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    #[test]
    fn scalars() {
        let ok = |buf: &[u8], outcome| {
            assert_eq!(
                reply(buf),
                Reply {
                    matched: Match::Fifo,
                    outcome,
                    consumed: buf.len()
                },
                "{}",
                String::from_utf8_lossy(buf)
            )
        };
        ok(b"+OK\r\n", Outcome::Ok);
        ok(b"-ERR unknown command\r\n", Outcome::Error);
        ok(b":42\r\n", Outcome::Ok);
        ok(b":-7\r\n", Outcome::Ok);
        ok(b"$5\r\nhello\r\n", Outcome::Ok);
        ok(b"$0\r\n\r\n", Outcome::Ok);
        ok(b"$-1\r\n", Outcome::Miss);
        ok(b"*-1\r\n", Outcome::Miss);
        ok(b"*0\r\n", Outcome::Ok);
        ok(b"*2\r\n$1\r\na\r\n$-1\r\n", Outcome::Ok);
        ok(b"*2\r\n*1\r\n:1\r\n$2\r\n\r\n\r\n", Outcome::Ok);
        // Binary-safe: CRLF inside a bulk string is data.
        ok(b"$4\r\n\r\n\r\n\r\n", Outcome::Ok);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            &b"!oops\r\n"[..],
            b"$abc\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b":\r\n",
            b"+OK\rX",
            b"$3\r\nabcXY",
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_split_is_incomplete_with_a_growing_bound() {
        let whole: &[u8] = b"*3\r\n$5\r\nuser1\r\n$-1\r\n*1\r\n:12\r\n";
        for cut in 0..whole.len() {
            match parse_reply(&whole[..cut]).unwrap() {
                Parse::Incomplete { needed } => {
                    assert!(needed > cut && needed <= whole.len(), "cut {cut}: {needed}")
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert_eq!(reply(whole).consumed, whole.len());
    }

    #[test]
    fn pipelined_replies_one_after_another() {
        let buf = b"$3\r\nabc\r\n$-1\r\n-ERR no\r\n+OK\r\n:1\r\n";
        let mut at = 0;
        let mut seen = Vec::new();
        while at < buf.len() {
            let r = reply(&buf[at..]);
            seen.push(r.outcome);
            at += r.consumed;
        }
        assert_eq!(
            seen,
            [
                Outcome::Ok,
                Outcome::Miss,
                Outcome::Error,
                Outcome::Ok,
                Outcome::Ok
            ]
        );
    }

    #[test]
    fn error_description_is_the_line() {
        let p = Resp::new("127.0.0.1:1".parse().unwrap(), KeyModel::Point);
        assert_eq!(
            p.describe_error(b"-WRONGTYPE Operation against a key\r\n"),
            "WRONGTYPE Operation against a key"
        );
    }
}
