//! Keys: reading an item's primary key, the routing hash, the index key encoding and the
//! index-key ranges of a Query.
//!
//! # Routing hash ([`partition_hash`]) — clients compute it too
//!
//! `xxh3_64` (xxhash-rust, default seed and secret) over the byte string
//!
//! ```text
//! table name (UTF-8)  0x00  type tag (b'S' | b'N' | b'B')  key bytes
//! ```
//!
//! where key bytes are the UTF-8 of an S key, the canonical text of an N key (see
//! `number`) and the raw bytes of a B key. Table names never contain 0x00, so the string
//! is unambiguous. The top `log2(PARTITION_COUNT)` bits of the hash pick the partition
//! ([`partition_of`]).
//!
//! # Index key ([`encode_index_key`]) — a persisted format
//!
//! ```text
//! hash (u64 BE)  pk length (u16 BE)  pk bytes  sort key
//! ```
//!
//! pk bytes as in the hash; the sort key is the raw bytes of an S or B sort key and
//! `number::encode_ordered` of an N sort key (absent without a sort key). Index keys so
//! sort by hash, then partition key, then sort key in DynamoDB's order (S by UTF-8 bytes,
//! B by bytes, N numerically). The length field makes the partition prefix
//! ([`partition_prefix`]) exact: no other partition key's index keys start with it, so a
//! Query is one contiguous range ([`sort_key_range`]).

use std::ops::Bound;

use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

use crate::error::ApiError;
use crate::limits::{PARTITION_COUNT, PARTITION_KEY_MAX_BYTES, SORT_KEY_MAX_BYTES};
use crate::messages::ArchivedSortKeyCondition;
use crate::number::{self, Number};
use crate::schema::{KeyAttr, KeySchema, ScalarType};
use crate::value::{ArchivedItem, ArchivedValue, Item, Value, archived_type_name};

const _: () = assert!(PARTITION_COUNT.is_power_of_two());
/// Bits of the hash that pick the partition.
const PARTITION_BITS: u32 = PARTITION_COUNT.trailing_zeros();
const _: () = assert!(PARTITION_BITS <= 32);
// N keys: their canonical text (partition key bytes) and ordered form (sort key bytes)
// are within the S/B key bounds, so INDEX_KEY_MAX_BYTES covers every key type.
const _: () = assert!(number::TEXT_MAX_BYTES <= PARTITION_KEY_MAX_BYTES);
const _: () = assert!(number::ORDERED_MAX_BYTES <= SORT_KEY_MAX_BYTES);
const _: () = assert!(
    INDEX_KEY_HEADER_BYTES + PARTITION_KEY_MAX_BYTES + SORT_KEY_MAX_BYTES
        == crate::limits::INDEX_KEY_MAX_BYTES
);
// The pk length is written as a u16.
const _: () = assert!(PARTITION_KEY_MAX_BYTES <= u16::MAX as usize);
/// Bytes of an index key before the partition key bytes.
pub const INDEX_KEY_HEADER_BYTES: usize = 8 + 2;
/// Hash input up to this length is assembled on the stack (a table name ≤ 255 bytes and a
/// key ≤ 256 bytes fit); longer input is hashed incrementally. Both give the same hash.
const HASH_STACK_BYTES: usize = 520;
/// The buffer for typical keys (short table name and key).
const HASH_SMALL_BYTES: usize = 96;

/// A borrowed scalar key value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    S(&'a str),
    /// Canonical number text.
    N(&'a str),
    B(&'a [u8]),
}

impl<'a> KeyRef<'a> {
    /// The key view of an archived S, N or B value; `None` for other types.
    pub fn from_archived(value: &'a ArchivedValue) -> Option<KeyRef<'a>> {
        match value {
            ArchivedValue::S(s) => Some(KeyRef::S(s.as_str())),
            ArchivedValue::N(n) => Some(KeyRef::N(n.as_str())),
            ArchivedValue::B(b) => Some(KeyRef::B(b.as_slice())),
            _ => None,
        }
    }

    /// The key view of an S, N or B value; `None` for other types.
    pub fn from_value(value: &'a Value) -> Option<KeyRef<'a>> {
        match value {
            Value::S(s) => Some(KeyRef::S(s)),
            Value::N(n) => Some(KeyRef::N(n.as_str())),
            Value::B(b) => Some(KeyRef::B(b)),
            _ => None,
        }
    }

    /// The key's type.
    pub fn scalar_type(self) -> ScalarType {
        match self {
            KeyRef::S(_) => ScalarType::S,
            KeyRef::N(_) => ScalarType::N,
            KeyRef::B(_) => ScalarType::B,
        }
    }

    /// The bytes that identify the key (UTF-8, canonical number text, raw bytes): what the
    /// hash and the index key's partition part are made of.
    pub fn as_bytes(self) -> &'a [u8] {
        match self {
            KeyRef::S(s) | KeyRef::N(s) => s.as_bytes(),
            KeyRef::B(b) => b,
        }
    }

    /// The type tag byte of the hash input.
    fn type_tag(self) -> u8 {
        match self {
            KeyRef::S(_) => b'S',
            KeyRef::N(_) => b'N',
            KeyRef::B(_) => b'B',
        }
    }

    /// The size DynamoDB counts for this key value (bytes; number size for N).
    pub fn size_bytes(self) -> usize {
        match self {
            KeyRef::S(s) => s.len(),
            KeyRef::N(n) => number::number_size(n),
            KeyRef::B(b) => b.len(),
        }
    }

    /// An owned value (for LastEvaluatedKey and clients).
    pub fn to_value(self) -> Value {
        match self {
            KeyRef::S(s) => Value::S(s.to_owned()),
            KeyRef::N(n) => Value::N(Number::from_canonical_trusted(n)),
            KeyRef::B(b) => Value::B(b.to_vec()),
        }
    }
}

/// Convenience constructors for scalar values (clients, tests).
impl Value {
    /// An S value.
    pub fn s(text: impl Into<String>) -> Value {
        Value::S(text.into())
    }

    /// An N value from an integer or a [`Number`].
    pub fn n(number: impl Into<Number>) -> Value {
        Value::N(number.into())
    }

    /// A B value.
    pub fn b(bytes: impl Into<Vec<u8>>) -> Value {
        Value::B(bytes.into())
    }
}

/// DynamoDB's error for a key attribute missing from an item.
fn missing_key(name: &str) -> ApiError {
    ApiError::validation(format!(
        "One or more parameter values were invalid: Missing the key {name} in the item"
    ))
}

/// Reads one key attribute of `item`, checking presence and type.
fn key_attr<'a>(item: &'a ArchivedItem, attr: &KeyAttr) -> Result<KeyRef<'a>, ApiError> {
    let value = item
        .get(&attr.name)
        .ok_or_else(|| missing_key(&attr.name))?;
    match KeyRef::from_archived(value) {
        Some(key) if key.scalar_type() == attr.ty => Ok(key),
        _ => Err(ApiError::validation(format!(
            "One or more parameter values were invalid: Type mismatch for key {} expected: {} actual: {}",
            attr.name,
            attr.ty.name(),
            archived_type_name(value)
        ))),
    }
}

/// The partition key and (if the schema has one) the sort key of an item, checking that
/// they are present and of the schema's types. Sizes and emptiness are checked by
/// [`check_key_values`].
pub fn extract_key<'a>(
    schema: &KeySchema,
    item: &'a ArchivedItem,
) -> Result<(KeyRef<'a>, Option<KeyRef<'a>>), ApiError> {
    let pk = key_attr(item, &schema.partition)?;
    let sk = match &schema.sort {
        Some(attr) => Some(key_attr(item, attr)?),
        None => None,
    };
    Ok((pk, sk))
}

/// Checks one key value against DynamoDB's rules: numbers canonical and in range, S and B
/// not empty, at most `max_bytes` (DynamoDB's size count).
fn check_key_value(name: &str, key: KeyRef<'_>, is_partition: bool) -> Result<(), ApiError> {
    let size = match key {
        KeyRef::N(n) => number::canonical_size(n)?,
        KeyRef::S("") => {
            return Err(ApiError::validation(format!(
                "One or more parameter values are not valid. The AttributeValue for a key attribute \
                 cannot contain an empty string value. Key: {name}"
            )));
        }
        KeyRef::B([]) => {
            return Err(ApiError::validation(format!(
                "One or more parameter values are not valid. The AttributeValue for a key attribute \
                 cannot contain an empty binary value. Key: {name}"
            )));
        }
        KeyRef::S(s) => s.len(),
        KeyRef::B(b) => b.len(),
    };
    if is_partition && size > PARTITION_KEY_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum \
             size limit of {PARTITION_KEY_MAX_BYTES} bytes (key {name} is {size} bytes)"
        )));
    }
    if !is_partition && size > SORT_KEY_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "One or more parameter values were invalid: Aggregated size of all range keys has \
             exceeded the size limit of {SORT_KEY_MAX_BYTES} bytes (key {name} is {size} bytes)"
        )));
    }
    Ok(())
}

/// Checks the key values [`extract_key`] returned: S/B not empty, N canonical and in
/// range, partition key ≤ `PARTITION_KEY_MAX_BYTES`, sort key ≤ `SORT_KEY_MAX_BYTES`.
pub fn check_key_values(
    schema: &KeySchema,
    pk: KeyRef<'_>,
    sk: Option<KeyRef<'_>>,
) -> Result<(), ApiError> {
    check_key_value(&schema.partition.name, pk, true)?;
    if let (Some(attr), Some(sk)) = (&schema.sort, sk) {
        check_key_value(&attr.name, sk, false)?;
    }
    Ok(())
}

/// The routing hash of a partition key: stable across builds, machines and languages
/// (clients compute it to route requests). The exact byte string hashed is in the module
/// docs. Does not allocate for table name + key up to 512 bytes.
pub fn partition_hash(table: &str, pk: KeyRef<'_>) -> u64 {
    let total = table.len() + 2 + pk.as_bytes().len();
    // Two buffer sizes: zeroing 520 bytes costs more than hashing a typical short key.
    if total <= HASH_SMALL_BYTES {
        hash_in::<HASH_SMALL_BYTES>(table, pk, total)
    } else if total <= HASH_STACK_BYTES {
        hash_in::<HASH_STACK_BYTES>(table, pk, total)
    } else {
        let mut hasher = Xxh3Default::new();
        hasher.update(table.as_bytes());
        hasher.update(&[0x00, pk.type_tag()]);
        hasher.update(pk.as_bytes());
        hasher.digest()
    }
}

/// One-shot hash of the key's byte string assembled in an `N`-byte stack buffer
/// (`total <= N`).
fn hash_in<const N: usize>(table: &str, pk: KeyRef<'_>, total: usize) -> u64 {
    let key = pk.as_bytes();
    let mut buf = [0u8; N];
    let (name, rest) = buf.split_at_mut(table.len());
    name.copy_from_slice(table.as_bytes());
    rest[0] = 0x00;
    rest[1] = pk.type_tag();
    rest[2..2 + key.len()].copy_from_slice(key);
    xxh3_64(&buf[..total])
}

/// The partition (`0..PARTITION_COUNT`) a hash falls in: its top bits, so each partition
/// is one contiguous hash range and one contiguous range of index keys.
pub fn partition_of(hash: u64) -> u32 {
    // checked_shr: with a single partition the shift would be by 64.
    hash.checked_shr(64 - PARTITION_BITS).unwrap_or(0) as u32
}

/// The inclusive hash range `(first, last)` of partition `p`.
///
/// Panics if `p >= PARTITION_COUNT` (partition numbers come from the partition map, never
/// from a client).
pub fn partition_hash_range(p: u32) -> (u64, u64) {
    assert!(p < PARTITION_COUNT, "partition {p} out of range");
    let first = u64::from(p).checked_shl(64 - PARTITION_BITS).unwrap_or(0);
    let last = first | u64::MAX.checked_shr(PARTITION_BITS).unwrap_or(0);
    (first, last)
}

/// Appends the partition part of an index key: `hash BE ++ pk length u16 BE ++ pk bytes`.
///
/// Panics if the key is longer than `PARTITION_KEY_MAX_BYTES` (validated keys never are).
pub fn partition_prefix(hash: u64, pk: KeyRef<'_>, out: &mut Vec<u8>) {
    let key = pk.as_bytes();
    assert!(
        key.len() <= PARTITION_KEY_MAX_BYTES,
        "partition key of {} bytes was not validated",
        key.len()
    );
    out.reserve(INDEX_KEY_HEADER_BYTES + key.len());
    out.extend_from_slice(&hash.to_be_bytes());
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
}

/// Appends the sort part of an index key: raw bytes for S and B, the ordered encoding
/// for N.
pub fn encode_sort_key(sk: KeyRef<'_>, out: &mut Vec<u8>) {
    match sk {
        KeyRef::S(s) => out.extend_from_slice(s.as_bytes()),
        KeyRef::B(b) => out.extend_from_slice(b),
        KeyRef::N(n) => number::encode_ordered(n, out),
    }
}

/// Appends a whole index key (format in the module docs).
///
/// Panics if the partition key is longer than `PARTITION_KEY_MAX_BYTES`.
pub fn encode_index_key(hash: u64, pk: KeyRef<'_>, sk: Option<KeyRef<'_>>, out: &mut Vec<u8>) {
    partition_prefix(hash, pk, out);
    if let Some(sk) = sk {
        encode_sort_key(sk, out);
    }
}

/// The hash at the front of an index key. A key shorter than 8 bytes (never produced by
/// [`encode_index_key`]) reads as if padded with zero bytes, so this cannot panic.
pub fn decode_index_key_hash(key: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    let n = key.len().min(8);
    raw[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(raw)
}

/// Splits an index key into (hash, partition key bytes, encoded sort key), or `None` if
/// it is too short for its own length field.
pub fn split_index_key(key: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let head = key.first_chunk::<INDEX_KEY_HEADER_BYTES>()?;
    let hash = decode_index_key_hash(head);
    let pk_len = usize::from(u16::from_be_bytes([head[8], head[9]]));
    let rest = &key[INDEX_KEY_HEADER_BYTES..];
    if rest.len() < pk_len {
        return None;
    }
    let (pk, sk) = rest.split_at(pk_len);
    Some((hash, pk, sk))
}

/// The smallest byte string greater than every string that starts with `prefix`, or
/// `None` if there is none (`prefix` is empty or all 0xFF).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut next = prefix[..=last].to_vec();
    next[last] += 1;
    Some(next)
}

/// Bounds over whole index keys (usable with `BTreeMap::range`; the start never lies
/// after the end).
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The key view of a key-condition operand (a Query's partition key value, or a sort-key
/// condition's operand), checked against the key attribute's type; numbers must be
/// canonical, as in items.
pub fn condition_operand<'a>(
    attr: &KeyAttr,
    value: &'a ArchivedValue,
) -> Result<KeyRef<'a>, ApiError> {
    match KeyRef::from_archived(value) {
        Some(key) if key.scalar_type() == attr.ty => {
            if let KeyRef::N(n) = key {
                number::check_canonical(n)?;
            }
            Ok(key)
        }
        _ => Err(ApiError::validation(format!(
            "One or more parameter values were invalid: Condition parameter type does not match \
             schema type (key {} is {}, operand is {})",
            attr.name,
            attr.ty.name(),
            archived_type_name(value)
        ))),
    }
}

/// The index-key bounds a Query of one partition scans.
///
/// `prefix` is the partition's [`partition_prefix`]; `sort` the table's sort key (if
/// any); `cond` the sort-key half of the KeyConditionExpression. Without a condition the
/// range is every key starting with `prefix`. With one, the operand must have the sort
/// key's type; `BETWEEN a AND b` needs `a <= b`; `begins_with` works on S and B only.
pub fn sort_key_range(
    prefix: &[u8],
    sort: Option<&KeyAttr>,
    cond: Option<&ArchivedSortKeyCondition>,
) -> Result<KeyRange, ApiError> {
    let partition_start = || Bound::Included(prefix.to_vec());
    let after = |key: &[u8]| match prefix_successor(key) {
        Some(next) => Bound::Excluded(next),
        None => Bound::Unbounded,
    };
    let Some(cond) = cond else {
        return Ok((partition_start(), after(prefix)));
    };
    let Some(sort) = sort else {
        return Err(ApiError::validation(
            "Query key condition not supported: the table has no sort key, so the \
             KeyConditionExpression may only test the partition key",
        ));
    };
    let key = |value: &ArchivedValue| -> Result<Vec<u8>, ApiError> {
        let sk = condition_operand(sort, value)?;
        let mut out = Vec::with_capacity(prefix.len() + sk.as_bytes().len() + 4);
        out.extend_from_slice(prefix);
        encode_sort_key(sk, &mut out);
        Ok(out)
    };
    Ok(match cond {
        ArchivedSortKeyCondition::Eq(v) => {
            let k = key(v)?;
            (Bound::Included(k.clone()), Bound::Included(k))
        }
        ArchivedSortKeyCondition::Lt(v) => (partition_start(), Bound::Excluded(key(v)?)),
        ArchivedSortKeyCondition::Le(v) => (partition_start(), Bound::Included(key(v)?)),
        ArchivedSortKeyCondition::Gt(v) => (Bound::Excluded(key(v)?), after(prefix)),
        ArchivedSortKeyCondition::Ge(v) => (Bound::Included(key(v)?), after(prefix)),
        ArchivedSortKeyCondition::Between(low, high) => {
            let (low, high) = (key(low)?, key(high)?);
            // Same prefix, and the sort encodings order as DynamoDB does.
            if low > high {
                return Err(ApiError::validation(
                    "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to \
                     be greater than or equal to lower bound",
                ));
            }
            (Bound::Included(low), Bound::Included(high))
        }
        ArchivedSortKeyCondition::BeginsWith(v) => {
            if sort.ty == ScalarType::N {
                return Err(ApiError::validation(
                    "Invalid KeyConditionExpression: Incorrect operand type for operator or \
                     function; operator or function: begins_with, operand type: N",
                ));
            }
            let k = key(v)?;
            let end = after(&k);
            (Bound::Included(k), end)
        }
    })
}

/// The owned item holding only the key attributes of `item` (LastEvaluatedKey).
pub fn key_item(schema: &KeySchema, item: &ArchivedItem) -> Result<Item, ApiError> {
    let (pk, sk) = extract_key(schema, item)?;
    let mut attrs = vec![(schema.partition.name.clone(), pk.to_value())];
    if let (Some(attr), Some(sk)) = (&schema.sort, sk) {
        attrs.push((attr.name.clone(), sk.to_value()));
    }
    Ok(Item::from_attrs(attrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::messages::{self, SortKeyCondition};
    use crate::value::access_item;

    fn schema(pk: ScalarType, sk: Option<ScalarType>) -> KeySchema {
        KeySchema {
            partition: KeyAttr {
                name: "pk".into(),
                ty: pk,
            },
            sort: sk.map(|ty| KeyAttr {
                name: "sk".into(),
                ty,
            }),
        }
    }

    #[test]
    fn hash_values_are_pinned() {
        // Golden values: changing them re-routes every stored key. Never update casually.
        // Cross-checked against the reference C xxHash (Python `xxhash.xxh3_64_intdigest`).
        assert_eq!(
            partition_hash("users", KeyRef::S("alice")),
            0x727d_7c5b_e046_0cc0
        );
        assert_eq!(
            partition_hash("orders", KeyRef::N("12.5")),
            0xbdd0_51d7_cb10_0799
        );
        assert_eq!(
            partition_hash("blobs", KeyRef::B(&[0, 1, 2, 0xFF])),
            0x1775_b39c_64ff_5b14
        );
        // The byte string is exactly table 0x00 tag key.
        assert_eq!(
            partition_hash("users", KeyRef::S("alice")),
            xxh3_64(b"users\0Salice")
        );
        // Type is part of the identity.
        assert_ne!(
            partition_hash("t", KeyRef::S("1")),
            partition_hash("t", KeyRef::N("1"))
        );
    }

    #[test]
    fn stack_and_streaming_hash_paths_agree() {
        for table in ["tbl".to_owned(), "t".repeat(255)] {
            let mut lens = vec![0, 20, 300, 2048];
            for boundary in [HASH_SMALL_BYTES, HASH_STACK_BYTES] {
                let fits = boundary.saturating_sub(table.len() + 2);
                lens.extend([fits.saturating_sub(1), fits, fits + 1]);
            }
            for len in lens {
                let key: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut whole = table.as_bytes().to_vec();
                whole.extend_from_slice(&[0, b'B']);
                whole.extend_from_slice(&key);
                assert_eq!(
                    partition_hash(&table, KeyRef::B(&key)),
                    xxh3_64(&whole),
                    "table {} len {len}",
                    table.len()
                );
            }
        }
    }

    #[test]
    fn partitions_cover_the_hash_space() {
        assert_eq!(partition_of(0), 0);
        assert_eq!(partition_of(u64::MAX), PARTITION_COUNT - 1);
        let (first, _) = partition_hash_range(0);
        assert_eq!(first, 0);
        let (_, last) = partition_hash_range(PARTITION_COUNT - 1);
        assert_eq!(last, u64::MAX);
        for p in [0, 1, 17, PARTITION_COUNT - 2] {
            let (lo, hi) = partition_hash_range(p);
            let (next_lo, _) = partition_hash_range(p + 1);
            assert_eq!(hi + 1, next_lo);
            assert_eq!(partition_of(lo), p);
            assert_eq!(partition_of(hi), p);
        }
    }

    #[test]
    fn index_key_layout() {
        let mut out = Vec::new();
        encode_index_key(
            0x0102030405060708,
            KeyRef::S("ab"),
            Some(KeyRef::N("-12.5")),
            &mut out,
        );
        assert_eq!(
            out,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 0, 2, b'a', b'b', 0x01, 0x7F, 0xFD, 0x09, 0x08, 0x05, 0xFF
            ]
        );
        assert_eq!(decode_index_key_hash(&out), 0x0102030405060708);
        assert_eq!(decode_index_key_hash(&[1]), 0x0100000000000000);
        let (hash, pk, sk) = split_index_key(&out).unwrap();
        assert_eq!((hash, pk), (0x0102030405060708, &b"ab"[..]));
        assert_eq!(sk, &out[12..]);
        assert_eq!(split_index_key(&out[..11]), None);
        let mut prefix = Vec::new();
        partition_prefix(0x0102030405060708, KeyRef::S("ab"), &mut prefix);
        assert!(out.starts_with(&prefix));
    }

    #[test]
    fn prefix_successor_handles_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[]), None);
    }

    fn item(attrs: Vec<(&str, Value)>) -> Vec<u8> {
        Item::from_attrs(attrs.into_iter().map(|(n, v)| (n.to_owned(), v))).encode()
    }

    #[track_caller]
    fn extract_err(schema: &KeySchema, bytes: &[u8], message: &str) {
        let archived = access_item(bytes).unwrap();
        let err = extract_key(schema, archived)
            .and_then(|(pk, sk)| check_key_values(schema, pk, sk))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationException);
        assert!(
            err.message.contains(message),
            "{:?} lacks {message:?}",
            err.message
        );
    }

    #[test]
    fn key_extraction_and_errors() {
        let s = schema(ScalarType::S, Some(ScalarType::N));
        let bytes = item(vec![
            ("pk", Value::s("a")),
            ("sk", Value::n(5)),
            ("x", Value::Null),
        ]);
        let archived = access_item(&bytes).unwrap();
        let (pk, sk) = extract_key(&s, archived).unwrap();
        assert_eq!((pk, sk), (KeyRef::S("a"), Some(KeyRef::N("5"))));
        let key = key_item(&s, archived).unwrap();
        assert_eq!(
            key,
            Item::from_attrs([
                ("pk".to_owned(), Value::s("a")),
                ("sk".to_owned(), Value::n(5))
            ])
        );

        extract_err(
            &s,
            &item(vec![("sk", Value::n(5))]),
            "Missing the key pk in the item",
        );
        extract_err(
            &s,
            &item(vec![("pk", Value::s("a"))]),
            "Missing the key sk in the item",
        );
        extract_err(
            &s,
            &item(vec![("pk", Value::n(1)), ("sk", Value::n(5))]),
            "Type mismatch for key pk expected: S actual: N",
        );
        extract_err(
            &s,
            &item(vec![("pk", Value::s("a")), ("sk", Value::Bool(true))]),
            "Type mismatch for key sk expected: N actual: BOOL",
        );
        extract_err(
            &s,
            &item(vec![("pk", Value::s("")), ("sk", Value::n(5))]),
            "cannot contain an empty string value. Key: pk",
        );
        let b = schema(ScalarType::B, None);
        extract_err(
            &b,
            &item(vec![("pk", Value::b(vec![]))]),
            "empty binary value. Key: pk",
        );
    }

    fn cond(c: SortKeyCondition) -> Vec<u8> {
        messages::encode(&c)
    }

    fn range(sort: Option<ScalarType>, c: SortKeyCondition) -> Result<KeyRange, ApiError> {
        let attr = sort.map(|ty| KeyAttr {
            name: "sk".into(),
            ty,
        });
        let bytes = cond(c);
        let archived = messages::access::<ArchivedSortKeyCondition>(&bytes).unwrap();
        sort_key_range(b"P", attr.as_ref(), Some(archived))
    }

    #[test]
    fn ranges_for_each_operator() {
        use Bound::*;
        assert_eq!(
            sort_key_range(b"P", None, None).unwrap(),
            (Included(b"P".to_vec()), Excluded(b"Q".to_vec()))
        );
        assert_eq!(
            sort_key_range(&[7, 0xFF], None, None).unwrap(),
            (Included(vec![7, 0xFF]), Excluded(vec![8]))
        );
        assert_eq!(sort_key_range(&[0xFF], None, None).unwrap().1, Unbounded);
        let s = Some(ScalarType::S);
        assert_eq!(
            range(s, SortKeyCondition::Eq(Value::s("a"))).unwrap(),
            (Included(b"Pa".to_vec()), Included(b"Pa".to_vec()))
        );
        assert_eq!(
            range(s, SortKeyCondition::Lt(Value::s("a"))).unwrap(),
            (Included(b"P".to_vec()), Excluded(b"Pa".to_vec()))
        );
        assert_eq!(
            range(s, SortKeyCondition::Ge(Value::s("a"))).unwrap(),
            (Included(b"Pa".to_vec()), Excluded(b"Q".to_vec()))
        );
        assert_eq!(
            range(s, SortKeyCondition::BeginsWith(Value::s("a"))).unwrap(),
            (Included(b"Pa".to_vec()), Excluded(b"Pb".to_vec()))
        );
        assert_eq!(
            range(
                Some(ScalarType::B),
                SortKeyCondition::BeginsWith(Value::b(vec![0xFF]))
            )
            .unwrap(),
            (Included(b"P\xFF".to_vec()), Excluded(b"Q".to_vec()))
        );
    }

    #[track_caller]
    fn range_err(sort: Option<ScalarType>, c: SortKeyCondition, message: &str) {
        let err = range(sort, c).unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationException);
        assert!(
            err.message.contains(message),
            "{:?} lacks {message:?}",
            err.message
        );
    }

    #[test]
    fn range_errors() {
        range_err(
            Some(ScalarType::N),
            SortKeyCondition::Between(Value::n(5), Value::n(4)),
            "BETWEEN operator requires upper bound to be greater than or equal to lower bound",
        );
        range_err(
            Some(ScalarType::S),
            SortKeyCondition::Between(Value::s("b"), Value::s("a")),
            "BETWEEN",
        );
        range_err(
            Some(ScalarType::N),
            SortKeyCondition::BeginsWith(Value::n(5)),
            "operator or function: begins_with, operand type: N",
        );
        range_err(
            Some(ScalarType::S),
            SortKeyCondition::Eq(Value::n(5)),
            "Condition parameter type does not match schema type",
        );
        range_err(
            Some(ScalarType::S),
            SortKeyCondition::BeginsWith(Value::b(vec![1])),
            "Condition parameter type does not match schema type",
        );
        range_err(None, SortKeyCondition::Eq(Value::s("a")), "no sort key");
        // Equal bounds are fine.
        assert!(
            range(
                Some(ScalarType::N),
                SortKeyCondition::Between(Value::n(5), Value::n(5))
            )
            .is_ok()
        );
    }
}
