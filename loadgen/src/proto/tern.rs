//! tern's binary protocol, shard-aware, encoded with tern-protocol.
//!
//! # Mapping of operations
//!
//! | op | point model: table `usertable` (pk "pk" S) | ranged model (YCSB E): table `usertable_ranges` (pk "pk" S, sk "sk" N) |
//! |---|---|---|
//! | Get | GetItem {pk: S key} | GetItem {pk: S "p<part>", sk: N pos} |
//! | Set, Update, Insert (and the preload) | PutItem {pk: S key, v: B value} | PutItem {pk: S "p<part>", sk: N pos, k: S key, v: B value} |
//! | ReadModifyWrite | GetItem, then PutItem of the same key (the engine chains them) | same, ranged |
//! | Scan | Query `usertable_ranges` pk = "p<part>", sk ≥ pos, Limit scan_len | same |
//!
//! key = `workload::format_key`, value = `workload::fill_value`; key `k` of the ranged
//! model is in partition `part = k / RANGE_PARTITION_KEYS` at position
//! `pos = k % RANGE_PARTITION_KEYS`. Items and request bodies are tern-protocol's own
//! encodings (`Item::encode`, `messages::encode`): nothing here re-implements the codec.
//!
//! # Routing
//!
//! Setup says Hello to the target, which answers with the node's topology: every shard's
//! port and the partition map. An op goes to the shard owning
//! `partition_map[partition_of(partition_hash(table, pk))]`, on a connection to that
//! shard's own port, with the shard in the frame's shard hint: the server never forwards.
//!
//! # Cheap encoding: request templates
//!
//! Every request of one *shape* (GetItem with a 16-byte key; PutItem with a 16-byte key
//! and a 100-byte value; ...) has the same rkyv layout: only the bytes of the key, the
//! value and the numbers differ. The first op of a shape encodes the request with
//! tern-protocol three times, with different field contents, and finds where each field's
//! bytes lie by comparing the encodings (the result is verified against a fourth
//! encoding). Every later op of that shape copies the template, writes its key (and the
//! value straight from `fill_value`) into place, computes the body's CRC32 and writes the
//! header: no allocation, no serializer, one pass over the bytes (a GetItem's CRC is
//! even updated from the template's, a table lookup per key byte: see `CrcPatch`). A
//! shape whose fields
//! cannot be located (never seen with rkyv's layout) falls back to encoding each request
//! in full.
//!
//! # Replies
//!
//! Matched by request id ([`Match::Id`]). An error frame is an error; a GetItem reply
//! without `FLAG_FOUND` is a successful miss; anything else succeeded. A reply's header is
//! checked by tern-protocol's `Header::read`; its body is neither decoded nor CRC-checked
//! (see [`parse_reply`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tern_protocol::frame::{
    self, FLAG_ERROR, FLAG_FOUND, FLAG_RESPONSE, HEADER_LEN, Header, NO_SHARD_HINT, Opcode,
};
use tern_protocol::keys::{KeyRef, partition_hash, partition_of};
use tern_protocol::limits::PARTITION_COUNT;
use tern_protocol::messages::{
    CreateTableRequest, ErrorResponse, GetItemRequest, HelloRequest, HelloResponse, PutItemRequest,
    QueryRequest, ReturnValues, SortKeyCondition, TableRequest, TableResponse, decode, encode,
};
use tern_protocol::{ErrorCode, Item, KeyAttr, KeySchema, Number, ScalarType, Value};

use super::{KeyModel, Match, Outcome, Parse, ProtoError, Protocol, Reply, push_decimal};
use crate::workload::{Op, OpKind, RANGE_PARTITION_KEYS, fill_value, format_key};

/// The point-model table.
pub const TABLE: &str = "usertable";
/// The ranged-model table (YCSB E).
pub const RANGES_TABLE: &str = "usertable_ranges";
/// Partition key attribute of both tables.
pub const PK: &str = "pk";
/// Sort key attribute of the ranged table.
pub const SK: &str = "sk";
/// Value attribute.
pub const VALUE: &str = "v";
/// Ranged items also carry the YCSB key.
pub const KEY: &str = "k";

/// Most fields a template patches.
const FIELDS_MAX: usize = 4;
/// Most request templates one thread keeps (shapes differ by value length and scan
/// length; past this, requests are encoded in full).
const TEMPLATES_MAX: usize = 16 * 1024;

/// The key schema of [`TABLE`].
pub fn table_schema() -> KeySchema {
    KeySchema {
        partition: KeyAttr {
            name: PK.into(),
            ty: ScalarType::S,
        },
        sort: None,
    }
}

/// The key schema of [`RANGES_TABLE`].
pub fn ranges_table_schema() -> KeySchema {
    KeySchema {
        partition: KeyAttr {
            name: PK.into(),
            ty: ScalarType::S,
        },
        sort: Some(KeyAttr {
            name: SK.into(),
            ty: ScalarType::N,
        }),
    }
}

/// A small, fast hasher for the template index (keys are packed u64 shapes).
#[derive(Default, Clone, Copy)]
struct ShapeHasher(u64);

impl Hasher for ShapeHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 31)
    }
}

/// What a request template's field holds; decides the filler bytes used to locate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    /// UTF-8 text (an S value).
    Text,
    /// Canonical number text (an N value) of integer digits.
    Digits,
    /// Raw bytes (a B value).
    Bytes,
}

impl FieldKind {
    fn filler(self, variant: usize, len: usize) -> Vec<u8> {
        let byte = match (self, variant) {
            (FieldKind::Text, 0) => b'a',
            (FieldKind::Text, 1) => b'b',
            (FieldKind::Text, _) => b'c',
            (FieldKind::Digits, 0) => b'1',
            (FieldKind::Digits, 1) => b'2',
            (FieldKind::Digits, _) => b'3',
            (FieldKind::Bytes, 0) => 0xAA,
            (FieldKind::Bytes, 1) => 0x55,
            (FieldKind::Bytes, _) => 0x0F,
        };
        vec![byte; len]
    }
}

/// A whole request frame for one shape with the byte ranges of its variable fields.
#[derive(Debug, Clone)]
struct Template {
    opcode: Opcode,
    /// Header (left zero, written per request) and body.
    frame: Vec<u8>,
    /// Per field: its bytes in `frame`. Empty for fields of length 0.
    fields: [Range<usize>; FIELDS_MAX],
    field_count: usize,
    /// The field filled by `fill_value` (written in sequence, not patched).
    bulk: Option<usize>,
    /// Updates the body CRC from the template's instead of recomputing it (GetItem).
    crc: Option<CrcPatch>,
}

/// CRC-32 is affine over XOR: for bodies `a` and `b` of one length,
/// `crc(a) ^ crc(b) = lin(a ^ b)` where `lin` is linear, so it is a sum of per-byte
/// terms. With `tables[k][v]` = `lin` of byte `v` at the k-th patched position (zeros
/// elsewhere), a request's CRC is the template's CRC XOR one table entry per patched
/// byte: ~16 loads for a GetItem instead of hashing its whole body.
#[derive(Debug, Clone)]
struct CrcPatch {
    base_crc: u32,
    /// The template's bytes at the patched positions, fields in order.
    base: Vec<u8>,
    tables: Box<[[u32; 256]]>,
}

/// Most patched bytes a CRC patch covers (a table of 1 KiB each).
const CRC_PATCH_BYTES_MAX: usize = 32;

impl CrcPatch {
    /// The patch for `body` whose variable bytes are `fields` (offsets into `body`).
    fn new(body: &[u8], fields: &[Range<usize>]) -> CrcPatch {
        let zeros = vec![0u8; body.len()];
        let crc_zeros = crc32fast::hash(&zeros);
        let mut probe = zeros;
        let mut base = Vec::new();
        let mut tables = Vec::new();
        for offset in fields.iter().flat_map(|r| r.clone()) {
            base.push(body[offset]);
            let mut bit_terms = [0u32; 8];
            for (bit, term) in bit_terms.iter_mut().enumerate() {
                probe[offset] = 1 << bit;
                *term = crc32fast::hash(&probe) ^ crc_zeros;
            }
            probe[offset] = 0;
            let mut table = [0u32; 256];
            for (v, entry) in table.iter_mut().enumerate() {
                *entry = (0..8)
                    .filter(|bit| v & (1 << bit) != 0)
                    .fold(0, |acc, bit| acc ^ bit_terms[bit]);
            }
            tables.push(table);
        }
        CrcPatch {
            base_crc: crc32fast::hash(body),
            base,
            tables: tables.into_boxed_slice(),
        }
    }

    /// The CRC of the template's body with `values` (fields in order) patched in.
    #[inline]
    fn crc(&self, values: &[&[u8]]) -> u32 {
        let mut crc = self.base_crc;
        let mut k = 0;
        for value in values {
            for &byte in *value {
                crc ^= self.tables[k][usize::from(byte ^ self.base[k])];
                k += 1;
            }
        }
        debug_assert_eq!(k, self.base.len());
        crc
    }
}

impl Template {
    /// Locates the fields of `make`'s encoding (see the module docs). `None` when a field
    /// cannot be located as one run of bytes or the result does not reproduce `make`.
    fn build(
        opcode: Opcode,
        kinds: &[FieldKind],
        lens: &[usize],
        bulk: Option<usize>,
        make: impl Fn(&[Vec<u8>]) -> Vec<u8>,
    ) -> Option<Template> {
        assert!(kinds.len() == lens.len() && kinds.len() <= FIELDS_MAX);
        let fill = |variant: usize| -> Vec<Vec<u8>> {
            kinds
                .iter()
                .zip(lens)
                .map(|(k, &l)| k.filler(variant, l))
                .collect()
        };
        let base_values = fill(0);
        let base = make(&base_values);
        let mut fields: [Range<usize>; FIELDS_MAX] = Default::default();
        for i in 0..kinds.len() {
            if lens[i] == 0 {
                continue;
            }
            let mut values = base_values.clone();
            values[i] = kinds[i].filler(1, lens[i]);
            let alt = make(&values);
            if alt.len() != base.len() {
                return None;
            }
            let first = base.iter().zip(&alt).position(|(a, b)| a != b)?;
            let last = base.iter().zip(&alt).rposition(|(a, b)| a != b)?;
            if last + 1 - first != lens[i] {
                return None;
            }
            fields[i] = HEADER_LEN + first..HEADER_LEN + last + 1;
        }
        for i in 0..kinds.len() {
            for j in i + 1..kinds.len() {
                let (a, b) = (&fields[i], &fields[j]);
                if !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end {
                    return None;
                }
            }
        }
        let mut frame = vec![0u8; HEADER_LEN];
        frame.extend_from_slice(&base);
        let template = Template {
            opcode,
            frame,
            fields,
            field_count: kinds.len(),
            bulk,
            crc: None,
        };
        // Verify with contents of a third kind.
        let check = fill(2);
        let expected = make(&check);
        let mut got = template.frame.clone();
        for (i, value) in check.iter().enumerate() {
            got[template.fields[i].clone()].copy_from_slice(value);
        }
        if got[HEADER_LEN..] != expected[..] {
            return None;
        }
        let mut template = template;
        let patched: usize = lens.iter().sum();
        if opcode == Opcode::GetItem && bulk.is_none() && patched <= CRC_PATCH_BYTES_MAX {
            let in_body: Vec<Range<usize>> = template.fields[..kinds.len()]
                .iter()
                .map(|r| r.start - HEADER_LEN..r.end - HEADER_LEN)
                .collect();
            let patch = CrcPatch::new(&template.frame[HEADER_LEN..], &in_body);
            let values: Vec<&[u8]> = check.iter().map(Vec::as_slice).collect();
            if patch.crc(&values) == crc32fast::hash(&expected) {
                template.crc = Some(patch);
            }
        }
        Some(template)
    }

    /// Appends a request: the template with `values` patched in (the bulk field's slot in
    /// `values` is ignored: `fill_value(bulk_key, len)` writes it).
    #[inline]
    fn emit(
        &self,
        out: &mut Vec<u8>,
        request_id: u64,
        shard: u32,
        values: &[&[u8]],
        bulk_key: u64,
    ) {
        debug_assert_eq!(values.len(), self.field_count);
        let start = out.len();
        match self.bulk {
            Some(b) => {
                let range = self.fields[b].clone();
                out.extend_from_slice(&self.frame[..range.start]);
                let before = out.len();
                fill_value(bulk_key, range.len() as u32, out);
                assert_eq!(
                    out.len() - before,
                    range.len(),
                    "fill_value wrote a value of the wrong length"
                );
                out.extend_from_slice(&self.frame[range.end..]);
            }
            None => out.extend_from_slice(&self.frame),
        }
        for (i, value) in values.iter().enumerate() {
            if Some(i) == self.bulk {
                continue;
            }
            let range = self.fields[i].clone();
            out[start + range.start..start + range.end].copy_from_slice(value);
        }
        let body_crc32 = match &self.crc {
            Some(patch) => patch.crc(values),
            None => crc32fast::hash(&out[start + HEADER_LEN..]),
        };
        write_header(out, start, self.opcode, request_id, shard, body_crc32);
    }
}

/// Writes the header of the frame starting at `out[start]` whose body is the rest of `out`.
#[inline]
fn write_header(
    out: &mut [u8],
    start: usize,
    opcode: Opcode,
    request_id: u64,
    shard: u32,
    body_crc32: u32,
) {
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    let header = Header {
        opcode,
        flags: 0,
        request_id,
        body_len,
        body_crc32,
        shard_hint: shard,
    };
    let head: &mut [u8; HEADER_LEN] = (&mut out[start..start + HEADER_LEN])
        .try_into()
        .expect("header slice is HEADER_LEN bytes");
    header.write(head);
}

/// The request shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Shape {
    Get = 1,
    Put = 2,
    RangeGet = 3,
    RangePut = 4,
    Query = 5,
}

/// The strings of one op: its key and, for the ranged model, partition and position.
#[derive(Debug, Clone, Default)]
struct OpText {
    key: Vec<u8>,
    part: Vec<u8>,
    pos: Vec<u8>,
}

/// tern after setup: the shard endpoints, the partition map, per-thread templates.
#[derive(Debug, Clone)]
pub struct Tern {
    endpoints: Vec<SocketAddr>,
    partition_map: Arc<[u32]>,
    model: KeyModel,
    templates: Vec<Template>,
    index: HashMap<u64, usize, BuildHasherDefault<ShapeHasher>>,
    /// Shapes whose template could not be built: encoded in full.
    untemplated: HashMap<u64, (), BuildHasherDefault<ShapeHasher>>,
    memo: Option<(u64, usize)>,
    text: OpText,
    /// (key, ranged, shard) of the last routed op: `text` holds its strings.
    routed: Option<(u64, bool, u32)>,
    /// The one shard owning every partition, if so: no hashing needed.
    only_shard: Option<u32>,
    /// Nodes of a replicated cluster given as the target (`a,b,c`): `endpoints` holds
    /// each node's shard ports in turn, and ops go to the nodes in rotation (any node
    /// takes any request: reads are served there, writes passed to the shard's leader).
    nodes: usize,
    next_node: usize,
}

impl std::fmt::Debug for ShapeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShapeHasher")
    }
}

/// Says Hello to `target`: the open setup connection, its address, its topology.
fn hello(
    target: &str,
    timeout: Duration,
) -> anyhow::Result<(SetupConn, SocketAddr, HelloResponse)> {
    let addr = super::resolve(target)?;
    let mut setup = SetupConn::open(addr, timeout)?;
    let hello = encode(&HelloRequest {
        client_name: "tern-loadgen".into(),
    });
    let body = setup
        .call(Opcode::Hello, &hello)
        .with_context(|| format!("Hello to {addr} (learning the topology)"))?;
    let topology: HelloResponse =
        decode(&body).map_err(|e| anyhow::anyhow!("undecodable Hello reply from {addr}: {e}"))?;
    Ok((setup, addr, topology))
}

impl Tern {
    /// Says Hello to `target`, learns the topology and creates the tables `model` needs
    /// when they are missing (checking the key schema of existing ones).
    /// A comma-separated target (`host:a,host:b,host:c`) names the nodes of one
    /// replicated cluster: setup goes through the first, and ops rotate over all.
    pub fn connect(target: &str, model: KeyModel, timeout: Duration) -> anyhow::Result<Tern> {
        let mut targets = target.split(',').map(str::trim).filter(|t| !t.is_empty());
        let first = targets.next().context("an empty target")?;
        let mut tern = Tern::connect_one(first, model, timeout)?;
        for other in targets {
            let (_, addr, topology) = hello(other, timeout)?;
            let node = Tern::from_topology(addr, &topology)?;
            if node.partition_map != tern.partition_map {
                bail!("{addr} has another partition map than {first}: not one cluster");
            }
            tern.endpoints.extend(node.endpoints);
            tern.nodes += 1;
        }
        Ok(tern)
    }

    fn connect_one(target: &str, model: KeyModel, timeout: Duration) -> anyhow::Result<Tern> {
        let (mut setup, addr, topology) = hello(target, timeout)?;
        let tern = Tern::from_topology(addr, &topology)?;
        setup.ensure_table(TABLE, &table_schema())?;
        if model == KeyModel::Ranged {
            setup.ensure_table(RANGES_TABLE, &ranges_table_schema())?;
        }
        Ok(Tern { model, ..tern })
    }

    /// A protocol for a known topology, without contacting anyone (tests, benchmarks).
    /// Shard ports are on `addr`'s host.
    pub fn from_topology(addr: SocketAddr, topology: &HelloResponse) -> anyhow::Result<Tern> {
        if topology.shards.is_empty() {
            bail!("{addr}: Hello lists no shards");
        }
        if topology.partition_map.len() != PARTITION_COUNT as usize {
            bail!(
                "{addr}: Hello's partition map has {} entries, this build expects {PARTITION_COUNT}",
                topology.partition_map.len()
            );
        }
        if let Some(bad) = topology
            .partition_map
            .iter()
            .find(|s| **s as usize >= topology.shards.len())
        {
            bail!("{addr}: Hello's partition map names shard {bad}, which does not exist");
        }
        let endpoints = topology
            .shards
            .iter()
            .map(|s| SocketAddr::new(addr.ip(), s.port))
            .collect();
        let first = topology.partition_map[0];
        let only_shard = topology
            .partition_map
            .iter()
            .all(|s| *s == first)
            .then_some(first);
        Ok(Tern {
            endpoints,
            only_shard,
            partition_map: topology.partition_map.clone().into(),
            model: KeyModel::Point,
            templates: Vec::new(),
            index: HashMap::default(),
            untemplated: HashMap::default(),
            memo: None,
            text: OpText::default(),
            routed: None,
            nodes: 1,
            next_node: 0,
        })
    }

    /// The same protocol addressing the other key model.
    pub fn with_model(mut self, model: KeyModel) -> Tern {
        self.model = model;
        self.routed = None;
        self
    }

    fn is_ranged(&self, kind: OpKind) -> bool {
        kind == OpKind::Scan || self.model == KeyModel::Ranged
    }

    /// Renders `op`'s strings into `self.text` and returns its shard.
    fn prepare(&mut self, op: &Op) -> u32 {
        let ranged = self.is_ranged(op.kind);
        if let Some((key, r, shard)) = self.routed
            && key == op.key
            && r == ranged
        {
            return shard;
        }
        let text = &mut self.text;
        text.key.clear();
        format_key(op.key, &mut text.key);
        if ranged {
            text.part.clear();
            text.part.push(b'p');
            push_decimal(&mut text.part, op.key / RANGE_PARTITION_KEYS);
            text.pos.clear();
            push_decimal(&mut text.pos, op.key % RANGE_PARTITION_KEYS);
        }
        let shard = match self.only_shard {
            Some(shard) => shard,
            None => {
                let hash = if ranged {
                    partition_hash(RANGES_TABLE, KeyRef::S(ascii(&text.part)))
                } else {
                    partition_hash(TABLE, KeyRef::S(ascii(&text.key)))
                };
                self.partition_map[partition_of(hash) as usize]
            }
        };
        self.routed = Some((op.key, ranged, shard));
        shard
    }

    fn shape_of(&self, op: &Op) -> (Shape, u32) {
        let ranged = self.is_ranged(op.kind);
        match (op.kind, ranged) {
            (OpKind::Scan, _) => (Shape::Query, op.scan_len.max(1)),
            (OpKind::Get | OpKind::ReadModifyWrite, false) => (Shape::Get, 0),
            (OpKind::Get | OpKind::ReadModifyWrite, true) => (Shape::RangeGet, 0),
            (OpKind::Set | OpKind::Update | OpKind::Insert, false) => (Shape::Put, op.value_len),
            (OpKind::Set | OpKind::Update | OpKind::Insert, true) => {
                (Shape::RangePut, op.value_len)
            }
        }
    }

    fn shape_key(&self, shape: Shape, wide: u32) -> u64 {
        let t = &self.text;
        let small = |n: usize| n.min(255) as u64;
        let (a, b, c) = match shape {
            Shape::Get | Shape::Put => (small(t.key.len()), 0, 0),
            Shape::RangeGet | Shape::Query => (small(t.part.len()), small(t.pos.len()), 0),
            Shape::RangePut => (small(t.part.len()), small(t.pos.len()), small(t.key.len())),
        };
        (shape as u64) << 56 | a << 48 | b << 40 | c << 32 | u64::from(wide)
    }

    /// The template for a shape, built on first use; `None` when it cannot be templated.
    fn template(&mut self, shape: Shape, wide: u32) -> Option<usize> {
        let key = self.shape_key(shape, wide);
        if let Some((k, i)) = self.memo
            && k == key
        {
            return Some(i);
        }
        if let Some(&i) = self.index.get(&key) {
            self.memo = Some((key, i));
            return Some(i);
        }
        if self.untemplated.contains_key(&key) || self.templates.len() >= TEMPLATES_MAX {
            return None;
        }
        let t = &self.text;
        let built = match shape {
            Shape::Get => Template::build(
                Opcode::GetItem,
                &[FieldKind::Text],
                &[t.key.len()],
                None,
                |f| get_body(TABLE, point_key(&f[0])),
            ),
            Shape::Put => Template::build(
                Opcode::PutItem,
                &[FieldKind::Text, FieldKind::Bytes],
                &[t.key.len(), wide as usize],
                Some(1),
                |f| put_body(TABLE, point_item(&f[0], &f[1])),
            ),
            Shape::RangeGet => Template::build(
                Opcode::GetItem,
                &[FieldKind::Text, FieldKind::Digits],
                &[t.part.len(), t.pos.len()],
                None,
                |f| get_body(RANGES_TABLE, ranged_key(&f[0], &f[1])),
            ),
            Shape::RangePut => Template::build(
                Opcode::PutItem,
                &[
                    FieldKind::Text,
                    FieldKind::Digits,
                    FieldKind::Text,
                    FieldKind::Bytes,
                ],
                &[t.part.len(), t.pos.len(), t.key.len(), wide as usize],
                Some(3),
                |f| put_body(RANGES_TABLE, ranged_item(&f[0], &f[1], &f[2], &f[3])),
            ),
            Shape::Query => Template::build(
                Opcode::Query,
                &[FieldKind::Text, FieldKind::Digits],
                &[t.part.len(), t.pos.len()],
                None,
                |f| query_body(&f[0], &f[1], wide),
            ),
        };
        match built {
            Some(template) => {
                let i = self.templates.len();
                self.templates.push(template);
                self.index.insert(key, i);
                self.memo = Some((key, i));
                Some(i)
            }
            None => {
                self.untemplated.insert(key, ());
                None
            }
        }
    }

    /// Encodes `op` in full with tern-protocol (the reference the templates reproduce).
    pub fn encode_full(&mut self, op: &Op, request_id: u64, out: &mut Vec<u8>) {
        let shard = self.prepare(op);
        let (shape, wide) = self.shape_of(op);
        let t = &self.text;
        let value = || {
            let mut v = Vec::with_capacity(op.value_len as usize);
            fill_value(op.key, op.value_len, &mut v);
            v
        };
        let (opcode, body) = match shape {
            Shape::Get => (Opcode::GetItem, get_body(TABLE, point_key(&t.key))),
            Shape::Put => (
                Opcode::PutItem,
                put_body(TABLE, point_item(&t.key, &value())),
            ),
            Shape::RangeGet => (
                Opcode::GetItem,
                get_body(RANGES_TABLE, ranged_key(&t.part, &t.pos)),
            ),
            Shape::RangePut => (
                Opcode::PutItem,
                put_body(RANGES_TABLE, ranged_item(&t.part, &t.pos, &t.key, &value())),
            ),
            Shape::Query => (Opcode::Query, query_body(&t.part, &t.pos, wide)),
        };
        frame::write_frame(out, opcode, 0, request_id, shard, &[&body]);
    }
}

/// `bytes` as text: loadgen strings are ASCII (digits and letters).
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("loadgen keys are ASCII")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn number(bytes: &[u8]) -> Number {
    Number::parse(&String::from_utf8_lossy(bytes)).expect("positions are canonical integers")
}

fn point_key(key: &[u8]) -> Item {
    Item::from_attrs([(PK.to_owned(), Value::S(text(key)))])
}

fn point_item(key: &[u8], value: &[u8]) -> Item {
    Item::from_attrs([
        (PK.to_owned(), Value::S(text(key))),
        (VALUE.to_owned(), Value::B(value.to_vec())),
    ])
}

fn ranged_key(part: &[u8], pos: &[u8]) -> Item {
    Item::from_attrs([
        (PK.to_owned(), Value::S(text(part))),
        (SK.to_owned(), Value::N(number(pos))),
    ])
}

fn ranged_item(part: &[u8], pos: &[u8], key: &[u8], value: &[u8]) -> Item {
    Item::from_attrs([
        (PK.to_owned(), Value::S(text(part))),
        (SK.to_owned(), Value::N(number(pos))),
        (KEY.to_owned(), Value::S(text(key))),
        (VALUE.to_owned(), Value::B(value.to_vec())),
    ])
}

fn get_body(table: &str, key: Item) -> Vec<u8> {
    encode(&GetItemRequest {
        table: table.into(),
        key: key.encode(),
        consistent_read: false,
    })
}

fn put_body(table: &str, item: Item) -> Vec<u8> {
    encode(&PutItemRequest {
        table: table.into(),
        item: item.encode(),
        return_values: ReturnValues::None,
    })
}

fn query_body(part: &[u8], pos: &[u8], limit: u32) -> Vec<u8> {
    encode(&QueryRequest {
        table: RANGES_TABLE.into(),
        partition_key: Value::S(text(part)),
        sort_key: Some(SortKeyCondition::Ge(Value::N(number(pos)))),
        scan_forward: true,
        limit: Some(limit),
        exclusive_start_key: None,
        consistent_read: false,
    })
}

impl Protocol for Tern {
    const IN_ORDER: bool = false;

    fn name(&self) -> &'static str {
        "tern"
    }

    fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    #[inline]
    fn route(&mut self, op: &Op) -> usize {
        let shard = self.prepare(op) as usize;
        if self.nodes == 1 {
            return shard;
        }
        self.next_node = (self.next_node + 1) % self.nodes;
        self.next_node * (self.endpoints.len() / self.nodes) + shard
    }

    fn encode(&mut self, op: &Op, request_id: u64, out: &mut Vec<u8>) {
        debug_assert!(
            op.kind != OpKind::ReadModifyWrite,
            "the engine splits read-modify-write"
        );
        let shard = self.prepare(op);
        let (shape, wide) = self.shape_of(op);
        let Some(i) = self.template(shape, wide) else {
            return self.encode_full(op, request_id, out);
        };
        let template = &self.templates[i];
        let t = &self.text;
        match shape {
            Shape::Get => template.emit(out, request_id, shard, &[&t.key], op.key),
            Shape::Put => template.emit(out, request_id, shard, &[&t.key, &[]], op.key),
            Shape::RangeGet | Shape::Query => {
                template.emit(out, request_id, shard, &[&t.part, &t.pos], op.key)
            }
            Shape::RangePut => template.emit(
                out,
                request_id,
                shard,
                &[&t.part, &t.pos, &t.key, &[]],
                op.key,
            ),
        }
    }

    #[inline]
    fn parse(&mut self, buf: &[u8]) -> Result<Parse, ProtoError> {
        parse_reply(buf)
    }

    fn describe_error(&self, reply: &[u8]) -> String {
        match frame::parse_frame(reply) {
            Ok(Some((f, _))) => error_text(f.body),
            Ok(None) => "incomplete error frame".into(),
            Err(e) => e.to_string(),
        }
    }
}

/// Recognises the reply frame at the front of `buf` (see the module docs).
///
/// The header is checked by tern-protocol (`Header::read`: magic, version, opcode, flags,
/// size); the body's CRC32 is not: the generator never reads a reply body, and computing
/// it would cost as much as the rest of the reply path (tern's own client and tests check
/// it). A frame whose body is not all here yet is incomplete with its exact length.
#[inline]
pub fn parse_reply(buf: &[u8]) -> Result<Parse, ProtoError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Parse::Incomplete { needed: HEADER_LEN });
    };
    let header = Header::read(head)?;
    let consumed = HEADER_LEN + header.body_len as usize;
    if buf.len() < consumed {
        return Ok(Parse::Incomplete { needed: consumed });
    }
    let flags = header.flags;
    if flags & FLAG_RESPONSE == 0 {
        return Err(ProtoError::NotAResponse(flags));
    }
    let outcome = if flags & FLAG_ERROR != 0 {
        Outcome::Error
    } else if header.opcode == Opcode::GetItem && flags & FLAG_FOUND == 0 {
        Outcome::Miss
    } else {
        Outcome::Ok
    };
    Ok(Parse::Reply(Reply {
        matched: Match::Id(header.request_id),
        outcome,
        consumed,
    }))
}

/// "ErrorName: message" of an error response body.
pub fn error_text(body: &[u8]) -> String {
    match decode::<ErrorResponse>(body) {
        Ok(e) => {
            let name = ErrorCode::from_u16(e.code).map_or("UnknownError", |c| c.name());
            format!("{name}: {}", e.message)
        }
        Err(e) => format!("undecodable error response: {e}"),
    }
}

/// The blocking connection setup uses (Hello, tables).
struct SetupConn {
    addr: SocketAddr,
    stream: TcpStream,
    next_id: u64,
    buf: Vec<u8>,
}

impl SetupConn {
    fn open(addr: SocketAddr, timeout: Duration) -> anyhow::Result<SetupConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to the tern node at {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(SetupConn {
            addr,
            stream,
            next_id: 1,
            buf: Vec::new(),
        })
    }

    /// Sends one request and returns the body of its successful reply; an error reply is
    /// an `Err` naming DynamoDB's error.
    fn call(&mut self, opcode: Opcode, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.try_call(opcode, body)?
            .map_err(|(name, message)| anyhow::anyhow!("{name}: {message}"))
    }

    /// Like `call`, but an error reply is `Ok(Err((name, message)))`.
    fn try_call(
        &mut self,
        opcode: Opcode,
        body: &[u8],
    ) -> anyhow::Result<Result<Vec<u8>, (String, String)>> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = Vec::new();
        frame::write_frame(&mut req, opcode, 0, id, NO_SHARD_HINT, &[body]);
        let addr = self.addr;
        self.stream
            .write_all(&req)
            .with_context(|| format!("sending {} to {addr}", opcode.name()))?;
        self.buf.clear();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((f, _)) = frame::parse_frame(&self.buf)
                .with_context(|| format!("{addr} answered {} with a bad frame", opcode.name()))?
            {
                if f.header.request_id != id || f.header.flags & FLAG_RESPONSE == 0 {
                    bail!(
                        "{addr} answered {} with request id {} (expected {id})",
                        opcode.name(),
                        f.header.request_id
                    );
                }
                if f.header.flags & FLAG_ERROR != 0 {
                    let e: ErrorResponse = decode(f.body)
                        .map_err(|e| anyhow::anyhow!("undecodable error reply from {addr}: {e}"))?;
                    let name = ErrorCode::from_u16(e.code).map_or("UnknownError", |c| c.name());
                    return Ok(Err((name.to_owned(), e.message)));
                }
                return Ok(Ok(f.body.to_vec()));
            }
            let n = self.stream.read(&mut chunk).with_context(|| {
                format!(
                    "waiting for {addr}'s reply to {} (is it a tern node?)",
                    opcode.name()
                )
            })?;
            if n == 0 {
                bail!(
                    "{addr} closed the connection instead of answering {}",
                    opcode.name()
                );
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Creates `name` with `schema`, or checks that the existing table has that schema.
    fn ensure_table(&mut self, name: &str, schema: &KeySchema) -> anyhow::Result<()> {
        let create = encode(&CreateTableRequest {
            name: name.into(),
            key_schema: schema.clone(),
        });
        match self.try_call(Opcode::CreateTable, &create)? {
            Ok(_) => Ok(()),
            Err((code, _)) if code == ErrorCode::ResourceInUseException.name() => {
                let body = self
                    .call(
                        Opcode::DescribeTable,
                        &encode(&TableRequest { name: name.into() }),
                    )
                    .with_context(|| format!("describing the existing table {name}"))?;
                let table: TableResponse = decode(&body)
                    .map_err(|e| anyhow::anyhow!("undecodable DescribeTable reply: {e}"))?;
                if &table.table.key_schema != schema {
                    bail!(
                        "table {name} exists with key schema {:?}; tern-loadgen needs {:?}: \
                         delete the table or use another node",
                        table.table.key_schema,
                        schema
                    );
                }
                Ok(())
            }
            Err((code, message)) => bail!("CreateTable {name}: {code}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::messages::ShardInfo;

    fn tern() -> Tern {
        let topology = HelloResponse {
            node_id: "t".into(),
            protocol_version: 1,
            shared_port: 1,
            shards: vec![ShardInfo {
                shard: 0,
                core: 0,
                port: 1,
            }],
            partition_map: vec![0; PARTITION_COUNT as usize],
        };
        Tern::from_topology("127.0.0.1:1".parse().unwrap(), &topology).unwrap()
    }

    fn op(kind: OpKind, key: u64, value_len: u32) -> Op {
        Op {
            kind,
            key,
            value_len,
            scan_len: 0,
        }
    }

    #[test]
    fn get_templates_patch_their_crc_and_match_full_encoding() {
        let mut t = tern();
        for key in (0..2000u64).map(|k| k * 7_919_993) {
            for o in [op(OpKind::Get, key, 0), op(OpKind::Set, key, 100)] {
                let (mut fast, mut full) = (Vec::new(), Vec::new());
                t.encode(&o, key ^ 5, &mut fast);
                t.encode_full(&o, key ^ 5, &mut full);
                assert_eq!(fast, full, "{o:?}");
            }
        }
        let get = &t.templates[t.index[&t.shape_key(Shape::Get, 0)]];
        assert!(get.crc.is_some(), "GetItem templates patch their CRC");
        let put = t
            .templates
            .iter()
            .find(|x| x.opcode == Opcode::PutItem)
            .unwrap();
        assert!(put.crc.is_none(), "a value is hashed, not patched");
    }
}
