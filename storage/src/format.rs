//! The on-disk layout of log segments and records (spec: docs/log-format.md).
//!
//! Everything is little-endian. A segment is a preallocated file of `segment_size` bytes:
//! a 64-byte header, then records back to back, then zeros. A record is a 48-byte header,
//! the key, then the value. Its CRC32 (crc32fast, IEEE polynomial) covers every byte of
//! the record after the CRC field, so a record is either whole and intact or rejected.
//!
//! This module is pure (no I/O): encoders append to a buffer, parsers read a slice.

use crate::catalog::TableDesc;

/// Bytes 0..8 of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TERNLOG\0";
/// Bytes 0..8 of every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"TERNCKPT";
/// The layout version this build writes and reads.
/// Version 2 (issue 13) added the Raft entry index to the record header and the Raft
/// record kinds; version 1 logs (single-node builds before replication) are refused with
/// a message naming both versions.
pub const FORMAT_VERSION: u32 = 2;
pub const SEGMENT_HEADER_LEN: usize = 64;
pub const RECORD_HEADER_LEN: usize = 48;
pub use crate::limits::{KEY_MAX_BYTES, RECORD_MAX_BYTES};

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// key = index key, value = the item bytes as the client sent them.
    Put = 1,
    /// key = index key, no value.
    Delete = 2,
    /// no key, value = flatbuffers `TableDescriptor` (catalog.rs).
    CreateTable = 3,
    /// no key, no value; `table_id` names the table.
    DeleteTable = 4,
    /// A Raft entry that is not a store operation (the leader's empty entry, a
    /// configuration change): no key, value = entry type u8 ‖ the entry's data, opaque to
    /// the store.
    RaftEntry = 5,
    /// Raft's hard state: no key, value = [`HardState::encode`]. The last one in log order
    /// is the one in force.
    HardState = 6,
    /// The applied Raft configuration: no key, value opaque to the store (the replica
    /// crate's encoding). The last one in log order is the one in force.
    ConfState = 7,
    /// A snapshot install begins here (always at the start of a segment): no key, value
    /// = index u64 ‖ term u64. A replay that meets one knows the install never completed
    /// (a completed one is covered by a checkpoint past it).
    Snapshot = 8,
}

impl RecordKind {
    /// Whether a record of this kind is one Raft entry (in a replicated store) or one
    /// applied operation (in a single-node store). The others are Raft's own state.
    pub fn is_entry(self) -> bool {
        matches!(
            self,
            RecordKind::Put
                | RecordKind::Delete
                | RecordKind::CreateTable
                | RecordKind::DeleteTable
                | RecordKind::RaftEntry
        )
    }

    pub fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::CreateTable),
            4 => Some(RecordKind::DeleteTable),
            5 => Some(RecordKind::RaftEntry),
            6 => Some(RecordKind::HardState),
            7 => Some(RecordKind::ConfState),
            8 => Some(RecordKind::Snapshot),
            _ => None,
        }
    }
}

/// Record flag: written by compaction, a copy of a live record from an older segment.
pub const FLAG_RELOCATED: u8 = 1;
const FLAGS_KNOWN: u8 = FLAG_RELOCATED;

/// The fields of a record, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: RecordKind,
    pub flags: u8,
    pub table_id: u32,
    /// The Raft term of the entry (0 in a single-node store and on Raft's own records).
    pub term: u64,
    /// Position in the shard's log: every record's index is its predecessor's + 1.
    pub index: u64,
    /// The Raft index of the entry this record is, 0 when it is none (a single-node
    /// store's records, hard state, truncation). A RELOCATED copy keeps its original's.
    pub entry: u64,
    /// The item's DynamoDB size (Put), else 0.
    pub size_bytes: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// A record of `kind` with no flags, term, index or entry: the store fills in what
    /// its log needs when it appends it.
    pub fn op(
        kind: RecordKind,
        table_id: u32,
        size_bytes: u32,
        key: &'a [u8],
        value: &'a [u8],
    ) -> Record<'a> {
        Record {
            kind,
            flags: 0,
            table_id,
            term: 0,
            index: 0,
            entry: 0,
            size_bytes,
            key,
            value,
        }
    }

    /// Bytes this record occupies in a segment.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.len() + self.value.len()
    }
}

/// Appends the encoding of `r` to `out`.
///
/// Panics if the key or the whole record exceeds its bound: callers check sizes first
/// (`check_record_len`), so reaching here with an oversized record is a bug.
pub fn encode_record(r: &Record<'_>, out: &mut Vec<u8>) {
    let len = r.encoded_len();
    assert!(
        r.key.len() <= KEY_MAX_BYTES,
        "record key of {} bytes",
        r.key.len()
    );
    assert!(len <= RECORD_MAX_BYTES, "record of {len} bytes");
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]); // CRC, filled below
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(r.kind as u8);
    out.push(r.flags);
    out.extend_from_slice(&(r.key.len() as u16).to_le_bytes());
    out.extend_from_slice(&r.table_id.to_le_bytes());
    out.extend_from_slice(&r.term.to_le_bytes());
    out.extend_from_slice(&r.index.to_le_bytes());
    out.extend_from_slice(&r.entry.to_le_bytes());
    out.extend_from_slice(&r.size_bytes.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // reserved
    debug_assert_eq!(out.len() - start, RECORD_HEADER_LEN);
    out.extend_from_slice(r.key);
    out.extend_from_slice(r.value);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Why the bytes at some position are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecord {
    /// Fewer bytes than the header, or than the header's length field, remain.
    Truncated,
    /// The length field is below the header size or above `RECORD_MAX_BYTES`.
    BadLength(u32),
    BadCrc {
        stored: u32,
        computed: u32,
    },
    BadKind(u8),
    BadFlags(u8),
    /// Key longer than the record, or a non-zero reserved field.
    BadLayout,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecord::Truncated => write!(f, "truncated record"),
            BadRecord::BadLength(n) => write!(f, "impossible record length {n}"),
            BadRecord::BadCrc { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            BadRecord::BadKind(k) => write!(f, "unknown record kind {k}"),
            BadRecord::BadFlags(x) => write!(f, "unknown record flags {x:#04x}"),
            BadRecord::BadLayout => write!(f, "inconsistent record layout"),
        }
    }
}

/// What is at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole, CRC-checked record.
    Record(Record<'a>),
    /// Zeros where a header would be: the end of the segment's data.
    End,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the record that starts at `buf[0]`. `buf` extends to the end of the segment.
pub fn parse_record(buf: &[u8]) -> Result<Parsed<'_>, BadRecord> {
    if buf.len() < RECORD_HEADER_LEN {
        // The segment's last few bytes: data never goes there (a record needs a header),
        // so zeros are the end and anything else is damage.
        return if buf.iter().all(|&b| b == 0) {
            Ok(Parsed::End)
        } else {
            Err(BadRecord::Truncated)
        };
    }
    let head = &buf[..RECORD_HEADER_LEN];
    if head.iter().all(|&b| b == 0) {
        return Ok(Parsed::End);
    }
    let stored = u32_at(head, 0);
    let len = u32_at(head, 4);
    if (len as usize) < RECORD_HEADER_LEN || len as usize > RECORD_MAX_BYTES {
        return Err(BadRecord::BadLength(len));
    }
    let Some(whole) = buf.get(..len as usize) else {
        return Err(BadRecord::Truncated);
    };
    let computed = crc32fast::hash(&whole[4..]);
    if computed != stored {
        return Err(BadRecord::BadCrc { stored, computed });
    }
    let kind = RecordKind::from_u8(head[8]).ok_or(BadRecord::BadKind(head[8]))?;
    let flags = head[9];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(BadRecord::BadFlags(flags));
    }
    let key_len = u16::from_le_bytes([head[10], head[11]]) as usize;
    if RECORD_HEADER_LEN + key_len > len as usize || u32_at(head, 44) != 0 {
        return Err(BadRecord::BadLayout);
    }
    let body = &whole[RECORD_HEADER_LEN..];
    Ok(Parsed::Record(Record {
        kind,
        flags,
        table_id: u32_at(head, 12),
        term: u64_at(head, 16),
        index: u64_at(head, 24),
        entry: u64_at(head, 32),
        size_bytes: u32_at(head, 40),
        key: &body[..key_len],
        value: &body[key_len..],
    }))
}

/// Raft's hard state as a HardState record holds it: term ‖ vote ‖ commit, u64 each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

impl HardState {
    pub const ENCODED_LEN: usize = 24;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.term.to_le_bytes());
        out[8..16].copy_from_slice(&self.vote.to_le_bytes());
        out[16..].copy_from_slice(&self.commit.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<HardState> {
        (b.len() == Self::ENCODED_LEN).then(|| HardState {
            term: u64_at(b, 0),
            vote: u64_at(b, 8),
            commit: u64_at(b, 16),
        })
    }
}

/// A store operation as a Raft entry's data carries it: the fields of its record that
/// are not the log's own (CRC, length, term, indexes). A follower turns the entry back
/// into the same record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryData<'a> {
    pub kind: RecordKind,
    pub table_id: u32,
    pub size_bytes: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// kind u8 ‖ table_id u32 ‖ size_bytes u32 ‖ key_len u16.
pub const ENTRY_DATA_HEADER_LEN: usize = 11;

impl<'a> EntryData<'a> {
    /// The entry data of an entry record.
    pub fn of(r: &Record<'a>) -> EntryData<'a> {
        EntryData {
            kind: r.kind,
            table_id: r.table_id,
            size_bytes: r.size_bytes,
            key: r.key,
            value: r.value,
        }
    }

    pub fn encoded_len(&self) -> usize {
        ENTRY_DATA_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// Appends the encoding to `out`. Panics on a key over `KEY_MAX_BYTES` (callers
    /// check sizes first, as for records).
    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(
            self.key.len() <= KEY_MAX_BYTES,
            "entry key of {} bytes",
            self.key.len()
        );
        out.push(self.kind as u8);
        out.extend_from_slice(&self.table_id.to_le_bytes());
        out.extend_from_slice(&self.size_bytes.to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
    }

    /// Decodes entry data. Only entry kinds are accepted: Raft's own state never
    /// travels as an entry.
    pub fn decode(b: &'a [u8]) -> Result<EntryData<'a>, BadRecord> {
        if b.len() < ENTRY_DATA_HEADER_LEN {
            return Err(BadRecord::Truncated);
        }
        let kind = RecordKind::from_u8(b[0])
            .filter(|k| k.is_entry())
            .ok_or(BadRecord::BadKind(b[0]))?;
        let key_len = u16::from_le_bytes([b[9], b[10]]) as usize;
        let body = &b[ENTRY_DATA_HEADER_LEN..];
        if key_len > body.len() {
            return Err(BadRecord::BadLayout);
        }
        Ok(EntryData {
            kind,
            table_id: u32_at(b, 1),
            size_bytes: u32_at(b, 5),
            key: &body[..key_len],
            value: &body[key_len..],
        })
    }

    /// The record this entry becomes at Raft position (`term`, `entry`); the store sets
    /// `index` and flags when it appends it.
    pub fn record(&self, term: u64, entry: u64) -> Record<'a> {
        Record {
            term,
            entry,
            ..Record::op(
                self.kind,
                self.table_id,
                self.size_bytes,
                self.key,
                self.value,
            )
        }
    }
}

/// The header at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u32,
    /// The file's length: fixed when the segment is created.
    pub segment_size: u64,
    /// The index the first record of this segment carries (the previous segment's last
    /// index + 1): lets recovery notice records lost from the end of a sealed segment.
    pub first_index: u64,
    /// Every table id allocated before this segment was created is below this: table
    /// ids are never reused, even after the records that named them are compacted away.
    pub next_table_id: u32,
    /// A replicated store's newest Raft entry when this segment was created, and its
    /// term (0 and 0 otherwise): where a replay that begins with this segment starts the
    /// Raft log when no checkpoint says.
    pub last_entry: u64,
    pub last_entry_term: u64,
}

impl SegmentHeader {
    /// Layout: magic[8] ‖ version u32 ‖ segment_id u32 ‖ segment_size u64 ‖
    /// first_index u64 ‖ next_table_id u32 ‖ last_entry u64 ‖ last_entry_term u64 ‖
    /// zeros[8] ‖ crc32 u32 (of bytes 0..60).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&SEGMENT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.segment_id.to_le_bytes());
        out.extend_from_slice(&self.segment_size.to_le_bytes());
        out.extend_from_slice(&self.first_index.to_le_bytes());
        out.extend_from_slice(&self.next_table_id.to_le_bytes());
        out.extend_from_slice(&self.last_entry.to_le_bytes());
        out.extend_from_slice(&self.last_entry_term.to_le_bytes());
        out.resize(start + SEGMENT_HEADER_LEN - 4, 0);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, String> {
        let Some(h) = buf.get(..SEGMENT_HEADER_LEN) else {
            return Err(format!(
                "segment shorter than its {SEGMENT_HEADER_LEN}-byte header"
            ));
        };
        if h[..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let crc = crc32fast::hash(&h[..SEGMENT_HEADER_LEN - 4]);
        if crc != u32_at(h, SEGMENT_HEADER_LEN - 4) {
            return Err("segment header CRC mismatch".into());
        }
        let version = u32_at(h, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        Ok(SegmentHeader {
            segment_id: u32_at(h, 12),
            segment_size: u64_at(h, 16),
            first_index: u64_at(h, 24),
            next_table_id: u32_at(h, 32),
            last_entry: u64_at(h, 36),
            last_entry_term: u64_at(h, 44),
        })
    }
}

/// The file name of segment `id`.
pub fn segment_file_name(id: u32) -> String {
    format!("seg-{id:08}.log")
}

/// The segment id a file name names, if it is a segment's.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The file name of the checkpoint covering the log up to `index`.
pub fn checkpoint_file_name(index: u64) -> String {
    format!("ckpt-{index:020}.idx")
}

pub fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("ckpt-")?.strip_suffix(".idx")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Encodes a CreateTable record's value.
pub fn table_record_value(desc: &TableDesc) -> Vec<u8> {
    desc.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(key: &'a [u8], value: &'a [u8]) -> Record<'a> {
        Record {
            kind: RecordKind::Put,
            flags: 0,
            table_id: 3,
            term: 1,
            index: 42,
            entry: 40,
            size_bytes: 17,
            key,
            value,
        }
    }

    #[test]
    fn records_round_trip_and_zeros_are_the_end() {
        let mut buf = Vec::new();
        let r = sample(b"0123456789", b"item bytes");
        encode_record(&r, &mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        buf.extend_from_slice(&[0u8; 100]);
        assert_eq!(parse_record(&buf), Ok(Parsed::Record(r)));
        assert_eq!(parse_record(&buf[r.encoded_len()..]), Ok(Parsed::End));
        assert_eq!(parse_record(&[0u8; 5]), Ok(Parsed::End));
        assert_eq!(parse_record(&[0u8, 1, 0]), Err(BadRecord::Truncated));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        let r = sample(b"key-key-key", b"value");
        encode_record(&r, &mut buf);
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_record(&bad), Ok(Parsed::Record(_))),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let mut buf = Vec::new();
        let r = sample(b"key-key-key", b"value value");
        encode_record(&r, &mut buf);
        for cut in 1..buf.len() {
            let mut torn = buf[..cut].to_vec();
            torn.resize(buf.len() + 64, 0); // the zeros of a preallocated segment
            assert!(
                !matches!(parse_record(&torn), Ok(Parsed::Record(_))),
                "a record torn at byte {cut} parsed"
            );
        }
    }

    #[test]
    fn segment_headers_round_trip_and_reject_damage() {
        let h = SegmentHeader {
            segment_id: 9,
            segment_size: 1 << 26,
            first_index: 1000,
            next_table_id: 4,
            last_entry: 77,
            last_entry_term: 3,
        };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), SEGMENT_HEADER_LEN);
        assert_eq!(SegmentHeader::decode(&buf), Ok(h));
        buf[20] ^= 1;
        assert!(SegmentHeader::decode(&buf).is_err());
    }

    #[test]
    fn entry_data_round_trips_and_rejects_raft_state_kinds() {
        let r = sample(b"0123456789", b"item bytes");
        let mut data = Vec::new();
        EntryData::of(&r).encode(&mut data);
        assert_eq!(data.len(), EntryData::of(&r).encoded_len());
        let back = EntryData::decode(&data).unwrap();
        assert_eq!(back.record(r.term, r.entry), Record { index: 0, ..r });
        for cut in 0..data.len() {
            // A cut inside the header or the key is refused; inside the value it is
            // a shorter value (the entry's length is Raft's, not ours).
            let ok = EntryData::decode(&data[..cut]);
            assert_eq!(ok.is_ok(), cut >= ENTRY_DATA_HEADER_LEN + 10, "cut {cut}");
        }
        for kind in [RecordKind::HardState, RecordKind::ConfState] {
            let mut bad = data.clone();
            bad[0] = kind as u8;
            assert_eq!(EntryData::decode(&bad), Err(BadRecord::BadKind(kind as u8)));
        }
        let hs = HardState {
            term: 7,
            vote: 2,
            commit: 99,
        };
        assert_eq!(HardState::decode(&hs.encode()), Some(hs));
        assert_eq!(HardState::decode(&hs.encode()[..23]), None);
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(17)), Some(17));
        assert_eq!(parse_segment_file_name("seg-1.log"), None);
        assert_eq!(
            parse_checkpoint_file_name(&checkpoint_file_name(123456)),
            Some(123456)
        );
        assert_eq!(parse_checkpoint_file_name("ckpt-x.idx"), None);
    }
}
