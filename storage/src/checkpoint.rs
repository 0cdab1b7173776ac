//! Index checkpoints: the catalog and every table's index at one log position, so that
//! recovery replays only the log after it (docs/log-format.md, "Checkpoints").
//!
//! Layout (little-endian):
//! ```text
//! header, 64 bytes:
//!   0  magic "TERNCKPT"          8  version u32        12 flags u32 (0)
//!   16 replay_from u64 (LogPos)  24 next_index u64     32 next_table_id u32
//!   36 table_count u32           40 segment_count u32  44 body_len u32
//!   48 body_crc u32              52 zeros[8]           60 header_crc u32 (of 0..60)
//! body:
//!   segment_count × { id u32, end u32 }                   segments present, data end
//!   table_count × { desc_len u32, desc[desc_len]          flatbuffers TableDescriptor
//!                   entry_count u64,
//!                   entry_count × { key_len u16, key, segment u32, offset u32,
//!                                   len u32, size_bytes u32 } }   ascending key order
//!   when flags bit 0 (a replicated store):
//!   applied u64, applied_term u64,        the Raft entry the tables reflect
//!   log_first u64, log_prev_term u64,     the first retained entry, its predecessor's term
//!   hard_state[24], conf_len u32, conf_state[conf_len],
//!   voided_count u32, voided_count × { segment u32, offset u32 }   replaced entry records
//! ```

use crate::catalog::TableDesc;
use crate::format::{CHECKPOINT_MAGIC, FORMAT_VERSION, HardState};
use crate::index::{Index, Loc, Slot};
use crate::store::LogPos;

pub const CHECKPOINT_HEADER_LEN: usize = 64;

/// What a checkpoint holds, decoded.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Replay the log from here (the append position when the checkpoint was taken).
    pub replay_from: LogPos,
    pub next_index: u64,
    pub next_table_id: u32,
    /// (segment id, end of data) of every segment that existed.
    pub segments: Vec<(u32, u32)>,
    pub tables: Vec<(TableDesc, Index)>,
    /// A replicated store's Raft state at the checkpoint.
    pub raft: Option<RaftCheckpoint>,
}

/// Flags bit 0: the body ends with a [`RaftCheckpoint`].
const FLAG_RAFT: u32 = 1;

/// A replicated store's Raft state as a checkpoint records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftCheckpoint {
    /// The tables reflect every entry through this one (and none after).
    pub applied: u64,
    pub applied_term: u64,
    /// The Raft log's first retained entry; the checkpoint's replay point is at or before
    /// its record, so a replay finds every retained entry.
    pub log_first: u64,
    /// The term of entry `log_first - 1`.
    pub log_prev_term: u64,
    pub hard_state: HardState,
    pub conf_state: Vec<u8>,
    /// Entry records that a newer entry at their index replaced.
    pub voided: Vec<(u32, u32)>,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Encodes a checkpoint from borrowed parts (the store's live state).
pub fn encode<'a>(
    replay_from: LogPos,
    next_index: u64,
    next_table_id: u32,
    segments: &[(u32, u32)],
    tables: impl ExactSizeIterator<Item = (&'a TableDesc, &'a Index)>,
    raft: Option<&RaftCheckpoint>,
) -> Vec<u8> {
    let table_count = tables.len() as u32;
    let mut body = Vec::new();
    for &(id, end) in segments {
        put_u32(&mut body, id);
        put_u32(&mut body, end);
    }
    for (desc, index) in tables {
        let d = desc.encode();
        put_u32(&mut body, d.len() as u32);
        body.extend_from_slice(&d);
        body.extend_from_slice(&(index.len() as u64).to_le_bytes());
        for (key, slot) in index.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded) {
            body.extend_from_slice(&(key.len() as u16).to_le_bytes());
            body.extend_from_slice(key);
            put_u32(&mut body, slot.loc.segment);
            put_u32(&mut body, slot.loc.offset);
            put_u32(&mut body, slot.loc.len);
            put_u32(&mut body, slot.size_bytes);
        }
    }
    if let Some(r) = raft {
        for v in [r.applied, r.applied_term, r.log_first, r.log_prev_term] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&r.hard_state.encode());
        put_u32(&mut body, r.conf_state.len() as u32);
        body.extend_from_slice(&r.conf_state);
        put_u32(&mut body, r.voided.len() as u32);
        for &(segment, offset) in &r.voided {
            put_u32(&mut body, segment);
            put_u32(&mut body, offset);
        }
    }
    assert!(
        body.len() <= u32::MAX as usize,
        "checkpoint body over 4 GiB"
    );
    let mut out = Vec::with_capacity(CHECKPOINT_HEADER_LEN + body.len());
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_u32(&mut out, if raft.is_some() { FLAG_RAFT } else { 0 });
    out.extend_from_slice(&replay_from.0.to_le_bytes());
    out.extend_from_slice(&next_index.to_le_bytes());
    put_u32(&mut out, next_table_id);
    put_u32(&mut out, table_count);
    put_u32(&mut out, segments.len() as u32);
    put_u32(&mut out, body.len() as u32);
    put_u32(&mut out, crc32fast::hash(&body));
    out.resize(CHECKPOINT_HEADER_LEN - 4, 0);
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    out.extend_from_slice(&body);
    out
}

/// A cursor over the body that fails instead of panicking on short input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("checkpoint body truncated".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}

/// Decodes and verifies a checkpoint file.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    let mut r = Reader { buf: bytes };
    let header = r.take(CHECKPOINT_HEADER_LEN)?;
    if header[..8] != CHECKPOINT_MAGIC {
        return Err("bad checkpoint magic".into());
    }
    let stored = u32::from_le_bytes(header[60..64].try_into().expect("4"));
    if crc32fast::hash(&header[..60]) != stored {
        return Err("checkpoint header CRC mismatch".into());
    }
    let mut h = Reader {
        buf: &header[8..60],
    };
    let version = h.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "checkpoint version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let flags = h.u32()?;
    if flags & !FLAG_RAFT != 0 {
        return Err(format!("unknown checkpoint flags {flags:#x}"));
    }
    let replay_from = LogPos(h.u64()?);
    let next_index = h.u64()?;
    let next_table_id = h.u32()?;
    let table_count = h.u32()?;
    let segment_count = h.u32()?;
    let body_len = h.u32()? as usize;
    let body_crc = h.u32()?;
    let body = r.take(body_len)?;
    if !r.buf.is_empty() {
        return Err("bytes after the checkpoint body".into());
    }
    if crc32fast::hash(body) != body_crc {
        return Err("checkpoint body CRC mismatch".into());
    }
    let mut r = Reader { buf: body };
    let mut segments = Vec::with_capacity((segment_count as usize).min(body_len / 8));
    for _ in 0..segment_count {
        segments.push((r.u32()?, r.u32()?));
    }
    let mut tables: Vec<(TableDesc, Index)> = Vec::new();
    for _ in 0..table_count {
        let desc_len = r.u32()? as usize;
        let desc = TableDesc::decode(r.take(desc_len)?).map_err(|e| e.to_string())?;
        let count = r.u64()?;
        let mut index = Index::new();
        for _ in 0..count {
            let key_len = r.u16()? as usize;
            let key = r.take(key_len)?;
            if key.len() < 8 {
                return Err("checkpoint entry with a key under 8 bytes".into());
            }
            let loc = Loc {
                segment: r.u32()?,
                offset: r.u32()?,
                len: r.u32()?,
            };
            let size_bytes = r.u32()?;
            if !index.has_room_for(key) {
                return Err(format!(
                    "checkpoint table {} holds more keys than one index can address",
                    desc.name
                ));
            }
            if index.insert(key, Slot { loc, size_bytes }).is_some() {
                return Err("checkpoint lists a key twice".into());
            }
        }
        // Written in ascending table id order; ids are below next_table_id; names unique.
        if let Some((last, _)) = tables.last()
            && desc.table_id <= last.table_id
        {
            return Err(format!(
                "checkpoint lists table id {} after id {}",
                desc.table_id, last.table_id
            ));
        }
        if desc.table_id >= next_table_id {
            return Err(format!(
                "checkpoint table id {} is not below its next table id {next_table_id}",
                desc.table_id
            ));
        }
        if tables.iter().any(|(d, _)| d.name == desc.name) {
            return Err(format!("checkpoint lists table {} twice", desc.name));
        }
        tables.push((desc, index));
    }
    let raft = if flags & FLAG_RAFT != 0 {
        let (applied, applied_term, log_first, log_prev_term) =
            (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let hard_state = HardState::decode(r.take(HardState::ENCODED_LEN)?).expect("24 bytes");
        let conf_len = r.u32()? as usize;
        let conf_state = r.take(conf_len)?.to_vec();
        let voided_count = r.u32()? as usize;
        let mut voided = Vec::with_capacity(voided_count.min(r.buf.len() / 8));
        for _ in 0..voided_count {
            voided.push((r.u32()?, r.u32()?));
        }
        if log_first == 0 || applied + 1 < log_first || hard_state.commit < applied {
            return Err(format!(
                "checkpoint Raft state out of order: applied {applied}, first entry {log_first}, commit {}",
                hard_state.commit
            ));
        }
        Some(RaftCheckpoint {
            applied,
            applied_term,
            log_first,
            log_prev_term,
            hard_state,
            conf_state,
            voided,
        })
    } else {
        None
    };
    if !r.buf.is_empty() {
        return Err("checkpoint body longer than its contents".into());
    }
    Ok(Checkpoint {
        replay_from,
        next_index,
        next_table_id,
        segments,
        tables,
        raft,
    })
}
