//! Frames: the fixed 32-byte header and the body it describes.
//!
//! Layout (all little-endian), see docs/wire-protocol.md:
//! ```text
//! 0   u32  magic        0x4E524554 ("TERN" as bytes 54 45 52 4E)
//! 4   u8   version      1
//! 5   u8   opcode       Opcode
//! 6   u16  flags        FLAG_*
//! 8   u64  request_id   chosen by the client, echoed in the response
//! 16  u32  body_len     bytes of body after the header
//! 20  u32  body_crc32   CRC32 (IEEE, crc32fast) of the body
//! 24  u32  shard_hint   shard the sender believes owns the key, or NO_SHARD_HINT
//! 28  u32  reserved     0
//! ```
//! Decoding is sans-I/O: hand [`parse_frame`] the bytes received so far; it returns a
//! frame borrowing them, `Ok(None)` when more bytes are needed, or a [`FrameError`] that
//! makes the connection unusable (the peer cannot be resynchronized after it).

use crate::limits::FRAME_BODY_MAX_BYTES;

pub const MAGIC: u32 = u32::from_le_bytes(*b"TERN");
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 32;
pub const NO_SHARD_HINT: u32 = u32::MAX;

/// The frame is a response (set by the server).
pub const FLAG_RESPONSE: u16 = 1 << 0;
/// The response body is an `ErrorResponse`.
pub const FLAG_ERROR: u16 = 1 << 1;
/// GetItem response: the item was found and the body is its encoded bytes.
pub const FLAG_FOUND: u16 = 1 << 2;
/// The request was forwarded from another core (internal; informational).
pub const FLAG_FORWARDED: u16 = 1 << 3;
const FLAGS_KNOWN: u16 = FLAG_RESPONSE | FLAG_ERROR | FLAG_FOUND | FLAG_FORWARDED;

/// Operation codes. Wire values: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Hello = 1,
    CreateTable = 2,
    DeleteTable = 3,
    DescribeTable = 4,
    ListTables = 5,
    PutItem = 6,
    GetItem = 7,
    DeleteItem = 8,
    Query = 9,
    Scan = 10,
    BatchGetItem = 11,
    BatchWriteItem = 12,
    /// Per-shard counters (storage now; cache with the cache).
    Stats = 13,
    /// Adds or removes one voter of every shard's Raft group (a replicated cluster).
    ChangeMembership = 14,
}

impl Opcode {
    pub const ALL: [Opcode; 14] = [
        Opcode::Hello,
        Opcode::CreateTable,
        Opcode::DeleteTable,
        Opcode::DescribeTable,
        Opcode::ListTables,
        Opcode::PutItem,
        Opcode::GetItem,
        Opcode::DeleteItem,
        Opcode::Query,
        Opcode::Scan,
        Opcode::BatchGetItem,
        Opcode::BatchWriteItem,
        Opcode::Stats,
        Opcode::ChangeMembership,
    ];

    pub fn from_u8(raw: u8) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|op| *op as u8 == raw)
    }

    pub fn name(self) -> &'static str {
        match self {
            Opcode::Hello => "Hello",
            Opcode::CreateTable => "CreateTable",
            Opcode::DeleteTable => "DeleteTable",
            Opcode::DescribeTable => "DescribeTable",
            Opcode::ListTables => "ListTables",
            Opcode::PutItem => "PutItem",
            Opcode::GetItem => "GetItem",
            Opcode::DeleteItem => "DeleteItem",
            Opcode::Query => "Query",
            Opcode::Scan => "Scan",
            Opcode::BatchGetItem => "BatchGetItem",
            Opcode::BatchWriteItem => "BatchWriteItem",
            Opcode::Stats => "Stats",
            Opcode::ChangeMembership => "ChangeMembership",
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: Opcode,
    pub flags: u16,
    pub request_id: u64,
    pub body_len: u32,
    pub body_crc32: u32,
    pub shard_hint: u32,
}

const _: () = assert!(HEADER_LEN == 4 + 1 + 1 + 2 + 8 + 4 + 4 + 4 + 4);
const _: () = assert!(FRAME_BODY_MAX_BYTES < u32::MAX as usize);

/// Why a byte stream is not a valid frame. Every variant but `UnknownOpcode` ends the
/// connection: the stream cannot be trusted past it. An unknown opcode in an otherwise
/// valid header is a whole frame of a kind this side does not know: it is answered and
/// skipped ([`FrameError::skippable_len`]), so a newer client can probe an older server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("bad magic {0:#010x}: not a tern binary protocol frame")]
    BadMagic(u32),
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    #[error(
        "unknown operation code {opcode}: this server knows opcodes 1 to {}",
        Opcode::ALL.len()
    )]
    UnknownOpcode {
        opcode: u8,
        request_id: u64,
        /// Header and body: what to skip to reach the next frame.
        frame_len: usize,
    },
    #[error("unknown flag bits {0:#06x}")]
    UnknownFlags(u16),
    #[error("reserved header field is {0}, must be 0")]
    Reserved(u32),
    #[error("frame body of {0} bytes exceeds the maximum of {FRAME_BODY_MAX_BYTES}")]
    TooLarge(u32),
    #[error("body CRC32 mismatch: header says {expected:#010x}, body has {actual:#010x}")]
    BadCrc {
        expected: u32,
        actual: u32,
        /// The header was valid: the error reply names the request.
        opcode: Opcode,
        request_id: u64,
    },
}

impl FrameError {
    /// For an error that does not end the stream, the bytes of the frame to skip (once
    /// that many are buffered) before parsing the next one.
    pub fn skippable_len(&self) -> Option<usize> {
        match self {
            FrameError::UnknownOpcode { frame_len, .. } => Some(*frame_len),
            _ => None,
        }
    }

    /// The opcode byte and request id an error reply should carry: the request's when its
    /// header could be read, else opcode 1 (Hello) and request id 0.
    pub fn reply_to(&self) -> (u8, u64) {
        match self {
            FrameError::UnknownOpcode {
                opcode, request_id, ..
            } => (*opcode, *request_id),
            FrameError::BadCrc {
                opcode, request_id, ..
            } => (*opcode as u8, *request_id),
            _ => (Opcode::Hello as u8, 0),
        }
    }
}

impl Header {
    /// Writes the header into `out[..HEADER_LEN]`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        write_header(out, self.opcode as u8, self);
    }

    /// Decodes and checks a header (everything but the body CRC). The opcode is checked
    /// last, so `UnknownOpcode` means every other field is valid (and the frame can be
    /// skipped).
    pub fn read(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if bytes[4] != VERSION {
            return Err(FrameError::BadVersion(bytes[4]));
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::UnknownFlags(flags & !FLAGS_KNOWN));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[8..16]);
        let request_id = u64::from_le_bytes(id);
        let body_len = u32_at(16);
        if body_len as usize > FRAME_BODY_MAX_BYTES {
            return Err(FrameError::TooLarge(body_len));
        }
        let reserved = u32_at(28);
        if reserved != 0 {
            return Err(FrameError::Reserved(reserved));
        }
        let opcode = Opcode::from_u8(bytes[5]).ok_or(FrameError::UnknownOpcode {
            opcode: bytes[5],
            request_id,
            frame_len: HEADER_LEN + body_len as usize,
        })?;
        Ok(Header {
            opcode,
            flags,
            request_id,
            body_len,
            body_crc32: u32_at(20),
            shard_hint: u32_at(24),
        })
    }
}

/// The header bytes of `h`, with `opcode` as the opcode byte.
fn write_header(out: &mut [u8; HEADER_LEN], opcode: u8, h: &Header) {
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4] = VERSION;
    out[5] = opcode;
    out[6..8].copy_from_slice(&h.flags.to_le_bytes());
    out[8..16].copy_from_slice(&h.request_id.to_le_bytes());
    out[16..20].copy_from_slice(&h.body_len.to_le_bytes());
    out[20..24].copy_from_slice(&h.body_crc32.to_le_bytes());
    out[24..28].copy_from_slice(&h.shard_hint.to_le_bytes());
    out[28..32].copy_from_slice(&0u32.to_le_bytes());
}

/// A whole frame, borrowing its body from the receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub header: Header,
    pub body: &'a [u8],
}

/// Parses one frame from the front of `buf`.
///
/// Returns `Ok(Some((frame, consumed)))`, `Ok(None)` when `buf` holds only part of a frame
/// (the caller keeps the bytes and reads more), or the error that ends the connection.
/// A header is rejected as soon as it is complete, before its body arrives, so an
/// oversized or garbage frame never makes the server buffer its claimed length.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some((frame, used)) = parse_frame_without_crc(buf)? else {
        return Ok(None);
    };
    let actual = crc32fast::hash(frame.body);
    if actual != frame.header.body_crc32 {
        return Err(FrameError::BadCrc {
            expected: frame.header.body_crc32,
            actual,
            opcode: frame.header.opcode,
            request_id: frame.header.request_id,
        });
    }
    Ok(Some((frame, used)))
}

/// [`parse_frame`] without the body CRC check: every header check, none of the body's.
///
/// Only for a peer that need not trust the bytes (the load generator's fake server, which
/// must cost as little as possible per request). Servers and clients use `parse_frame`.
pub fn parse_frame_without_crc(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        check_partial_header(buf)?;
        return Ok(None);
    };
    let header = Header::read(head)?;
    let total = HEADER_LEN + header.body_len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            header,
            body: &buf[HEADER_LEN..total],
        },
        total,
    )))
}

/// Checks what has arrived of a header before all 32 bytes have: the magic and the
/// version. A peer that is not speaking this protocol (an HTTP client on a binary port)
/// is refused at once rather than left waiting for bytes it will never send.
pub fn check_partial_header(buf: &[u8]) -> Result<(), FrameError> {
    let magic = MAGIC.to_le_bytes();
    let n = buf.len().min(magic.len());
    if buf[..n] != magic[..n] {
        let mut got = [0u8; 4];
        got[..n].copy_from_slice(&buf[..n]);
        return Err(FrameError::BadMagic(u32::from_le_bytes(got)));
    }
    match buf.get(4) {
        Some(&v) if v != VERSION => Err(FrameError::BadVersion(v)),
        _ => Ok(()),
    }
}

/// How many bytes the frame starting at `buf` occupies, once its header is complete
/// (`Ok(None)` before that). Lets a receiver size a reassembly buffer. A frame with an
/// unknown opcode has a length too (it is skipped whole).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match buf.first_chunk::<HEADER_LEN>() {
        None => check_partial_header(buf).map(|()| None),
        Some(head) => match Header::read(head) {
            Ok(h) => Ok(Some(HEADER_LEN + h.body_len as usize)),
            Err(e) => e.skippable_len().map(Some).ok_or(e),
        },
    }
}

/// Appends one frame (header + the concatenation of `body_parts`) to `out`.
///
/// Taking the body in parts lets a reply be a header plus existing item bytes without
/// first assembling them elsewhere.
pub fn write_frame(
    out: &mut Vec<u8>,
    opcode: Opcode,
    flags: u16,
    request_id: u64,
    shard_hint: u32,
    body_parts: &[&[u8]],
) {
    write_frame_raw(out, opcode as u8, flags, request_id, shard_hint, body_parts)
}

/// [`write_frame`] of a one-part body whose CRC32 the caller already has (a cached
/// item's): the body is copied, not hashed. A wrong `crc` makes the peer refuse the frame.
pub fn write_frame_with_body_crc(
    out: &mut Vec<u8>,
    opcode: Opcode,
    flags: u16,
    request_id: u64,
    shard_hint: u32,
    body: &[u8],
    crc: u32,
) {
    debug_assert_eq!(crc, crc32fast::hash(body), "a stale body CRC");
    let frame = FrameHead {
        opcode: opcode as u8,
        flags,
        request_id,
        shard_hint,
    };
    write_frame_parts(out, frame, &[body], body.len(), crc);
}

/// [`write_frame`] with the opcode as a byte: for the reply to an opcode this build does
/// not know, which echoes it.
pub fn write_frame_raw(
    out: &mut Vec<u8>,
    opcode: u8,
    flags: u16,
    request_id: u64,
    shard_hint: u32,
    body_parts: &[&[u8]],
) {
    let body_len: usize = body_parts.iter().map(|p| p.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    for part in body_parts {
        crc.update(part);
    }
    let frame = FrameHead {
        opcode,
        flags,
        request_id,
        shard_hint,
    };
    write_frame_parts(out, frame, body_parts, body_len, crc.finalize());
}

/// The header fields a writer chooses (length and CRC come from the body).
struct FrameHead {
    opcode: u8,
    flags: u16,
    request_id: u64,
    shard_hint: u32,
}

/// Appends the header and then `body_parts` (`body_len` bytes in all, CRC32 `crc`).
fn write_frame_parts(
    out: &mut Vec<u8>,
    frame: FrameHead,
    body_parts: &[&[u8]],
    body_len: usize,
    crc: u32,
) {
    assert!(
        body_len <= FRAME_BODY_MAX_BYTES,
        "frame body {body_len} over the maximum"
    );
    let header = Header {
        // Only `write_header`'s `opcode` byte is written; this field is not.
        opcode: Opcode::Hello,
        flags: frame.flags,
        request_id: frame.request_id,
        body_len: body_len as u32,
        body_crc32: crc,
        shard_hint: frame.shard_hint,
    };
    let mut head = [0u8; HEADER_LEN];
    write_header(&mut head, frame.opcode, &header);
    out.reserve(HEADER_LEN + body_len);
    out.extend_from_slice(&head);
    for part in body_parts {
        out.extend_from_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::GetItem, 0, 42, 3, &[body]);
        out
    }

    #[test]
    fn round_trip_and_partial_input() {
        let bytes = frame_bytes(b"hello body");
        for cut in 0..bytes.len() {
            assert!(
                parse_frame(&bytes[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let (frame, used) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame.header.opcode, Opcode::GetItem);
        assert_eq!(frame.header.request_id, 42);
        assert_eq!(frame.header.shard_hint, 3);
        assert_eq!(frame.body, b"hello body");
    }

    #[test]
    fn pipelined_frames_parse_one_after_another() {
        let mut bytes = frame_bytes(b"one");
        bytes.extend(frame_bytes(b"second"));
        let (first, used) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(first.body, b"one");
        let (second, used2) = parse_frame(&bytes[used..]).unwrap().unwrap();
        assert_eq!(second.body, b"second");
        assert_eq!(used + used2, bytes.len());
    }

    #[test]
    fn a_known_body_crc_writes_the_same_frame() {
        let body = b"an item's archived bytes";
        let mut known = Vec::new();
        write_frame_with_body_crc(
            &mut known,
            Opcode::GetItem,
            FLAG_RESPONSE | FLAG_FOUND,
            7,
            NO_SHARD_HINT,
            body,
            crc32fast::hash(body),
        );
        let mut hashed = Vec::new();
        write_frame(
            &mut hashed,
            Opcode::GetItem,
            FLAG_RESPONSE | FLAG_FOUND,
            7,
            NO_SHARD_HINT,
            &[body],
        );
        assert_eq!(known, hashed);
        // A stale CRC is the reader's to refuse, never silently accepted.
        let mut stale = hashed.clone();
        let last = stale.len() - 1;
        stale[last] ^= 1;
        assert!(parse_frame(&stale).is_err());
    }

    #[test]
    fn corrupt_frames_are_rejected() {
        let good = frame_bytes(b"payload");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(parse_frame(&bad), Err(FrameError::BadMagic(_))));
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(parse_frame(&bad).unwrap_err(), FrameError::BadVersion(9));
        let mut bad = good.clone();
        bad[5] = 200;
        assert_eq!(
            parse_frame(&bad).unwrap_err(),
            FrameError::UnknownOpcode {
                opcode: 200,
                request_id: 42,
                frame_len: good.len()
            }
        );
        // Skippable: its length is known, and the error names the request.
        assert_eq!(frame_len(&bad).unwrap(), Some(good.len()));
        assert_eq!(
            parse_frame(&bad).unwrap_err().skippable_len(),
            Some(good.len())
        );
        assert_eq!(parse_frame(&bad).unwrap_err().reply_to(), (200, 42));
        let mut bad = good.clone();
        bad[7] = 0x80;
        assert!(matches!(
            parse_frame(&bad),
            Err(FrameError::UnknownFlags(_))
        ));
        let mut bad = good.clone();
        bad[28] = 1;
        assert_eq!(parse_frame(&bad).unwrap_err(), FrameError::Reserved(1));
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = parse_frame(&bad).unwrap_err();
        assert!(matches!(e, FrameError::BadCrc { .. }));
        assert_eq!(e.reply_to(), (Opcode::GetItem as u8, 42));
        assert_eq!(e.skippable_len(), None);
        // An unreadable header is answered as request 0.
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(parse_frame(&bad).unwrap_err().reply_to(), (1, 0));
    }

    #[test]
    fn a_partial_header_is_refused_as_soon_as_its_magic_or_version_is_wrong() {
        let good = frame_bytes(b"x");
        for cut in 0..HEADER_LEN {
            assert!(parse_frame(&good[..cut]).unwrap().is_none(), "cut {cut}");
            assert_eq!(frame_len(&good[..cut]).unwrap(), None);
        }
        assert!(matches!(
            parse_frame(b"GET / HTTP/1.1\r\n"),
            Err(FrameError::BadMagic(_))
        ));
        assert!(matches!(parse_frame(b"TX"), Err(FrameError::BadMagic(_))));
        assert!(matches!(frame_len(b"G"), Err(FrameError::BadMagic(_))));
        assert_eq!(
            parse_frame(b"TERN\x02").unwrap_err(),
            FrameError::BadVersion(2)
        );
    }

    #[test]
    fn a_raw_opcode_is_written_as_given() {
        let mut out = Vec::new();
        write_frame_raw(
            &mut out,
            250,
            FLAG_RESPONSE | FLAG_ERROR,
            7,
            NO_SHARD_HINT,
            &[b"x"],
        );
        assert_eq!(out[5], 250);
        assert!(matches!(
            parse_frame(&out),
            Err(FrameError::UnknownOpcode {
                opcode: 250,
                request_id: 7,
                ..
            })
        ));
        // Everything but the opcode byte is what `write_frame` writes.
        let mut known = Vec::new();
        let flags = FLAG_RESPONSE | FLAG_ERROR;
        write_frame(&mut known, Opcode::Scan, flags, 7, NO_SHARD_HINT, &[b"x"]);
        out[5] = Opcode::Scan as u8;
        assert_eq!(out, known);
    }

    #[test]
    fn without_crc_skips_only_the_body_check() {
        let mut bytes = frame_bytes(b"payload");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::BadCrc { .. })
        ));
        let (frame, used) = parse_frame_without_crc(&bytes).unwrap().unwrap();
        assert_eq!((frame.body.len(), used), (7, bytes.len()));
        assert!(
            parse_frame_without_crc(&bytes[..bytes.len() - 1])
                .unwrap()
                .is_none()
        );
        bytes[0] = b'X';
        assert!(matches!(
            parse_frame_without_crc(&bytes),
            Err(FrameError::BadMagic(_))
        ));
    }

    #[test]
    fn oversized_header_is_rejected_before_the_body_arrives() {
        let mut bytes = frame_bytes(b"");
        let huge = (FRAME_BODY_MAX_BYTES as u32) + 1;
        bytes[16..20].copy_from_slice(&huge.to_le_bytes());
        assert_eq!(
            parse_frame(&bytes[..HEADER_LEN]).unwrap_err(),
            FrameError::TooLarge(huge)
        );
        let exact = FRAME_BODY_MAX_BYTES as u32;
        bytes[16..20].copy_from_slice(&exact.to_le_bytes());
        assert!(parse_frame(&bytes).unwrap().is_none());
        assert_eq!(
            frame_len(&bytes).unwrap(),
            Some(HEADER_LEN + FRAME_BODY_MAX_BYTES)
        );
    }
}
