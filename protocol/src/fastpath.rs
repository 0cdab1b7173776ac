//! A hand-written decoder for the hottest request: a GetItem of a key of scalar
//! attributes. Safe code, no allocation, one pass over the bytes.
//!
//! The generic path validates a GetItem body with rkyv's validator, then validates the
//! key blob inside it as an item archive of its own, then walks that item to check it
//! against the key schema: ~800 of the ~2,200 instructions a cached GET cost
//! (`benches/src/bin/get-instructions.rs`, callgrind). This module reads the same bytes
//! by the rules of `docs/wire-protocol.md` §4 (the archive format, and §4.7's window rule
//! for where pointed-to objects may lie, which is rkyv 0.8.18's validator) for exactly
//! one shape: the `GetItemRequest` root, its table name, its key blob, and inside the
//! blob an `Item` of one or two attributes whose values are S, N or B.
//!
//! The contract is one-sided: whatever [`get_item_request`] accepts with a table name
//! that is a table's and a key that [`FastKey::matching`] accepts, `messages::access`,
//! `value::access_item` and `validate::validate_key` accept too, with the same fields (a
//! differential proptest in `protocol/tests/fastpath.rs` checks it on valid and corrupted
//! bodies). The table's and the attributes' names are compared as bytes and never
//! checked for UTF-8: one equal to a known name is valid because the known one is; the
//! key's S and N values are checked, as they are compared with nothing. Anything else —
//! another shape, a malformed archive, a key that does not match the schema — makes it
//! decline (`None`), and the caller takes the generic path, which says what is wrong
//! with the exact error the generic path has always given.

use crate::keys::{KeyRef, check_key_values};
use crate::limits::KEY_ITEM_ENCODED_MAX_BYTES;
use crate::schema::KeySchema;

/// Size of an archived `GetItemRequest`: `table` String (8), `key` Bytes (8), bool (1).
const GET_ITEM_REQUEST_BYTES: usize = 17;
/// Size of an archived `Item` (its `attrs` vector field) and of one `Attr`.
const ITEM_BYTES: usize = 8;
const ATTR_BYTES: usize = 17;
/// A String or a Vec field.
const FIELD_BYTES: usize = 8;
/// An inline string's capacity; an out-of-line one must be longer.
const INLINE_MAX: usize = 8;
/// `Value` tags of the key types (wire-protocol §4.5).
const TAG_S: u8 = 0;
const TAG_N: u8 = 1;
const TAG_B: u8 = 2;

/// A GetItem body read by the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastGetItem<'a> {
    /// The table's name, not checked for UTF-8: it is looked up as bytes, and a name
    /// equal to a table's is valid.
    pub table: &'a [u8],
    pub key: FastKey<'a>,
    pub consistent_read: bool,
}

/// A key item of one or two scalar attributes, in archive order. Names are bytes not
/// checked for UTF-8 ([`FastKey::matching`] compares them with the schema's); values
/// are checked as the generic path checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastKey<'a> {
    attrs: [(&'a [u8], KeyRef<'a>); 2],
    len: usize,
}

impl<'a> FastKey<'a> {
    /// The attributes, in the order the archive holds them.
    pub fn attrs(&self) -> &[(&'a [u8], KeyRef<'a>)] {
        &self.attrs[..self.len]
    }

    /// The partition and sort key values when this key is exactly a valid key of
    /// `schema` (what `validate::validate_key` accepts); `None` otherwise, and then the
    /// generic path gives the error.
    pub fn matching(&self, schema: &KeySchema) -> Option<(KeyRef<'a>, Option<KeyRef<'a>>)> {
        let attrs = self.attrs();
        if attrs.len() != 1 + usize::from(schema.sort.is_some()) {
            return None;
        }
        if attrs.len() == 2 && attrs[0].0 >= attrs[1].0 {
            return None;
        }
        let mut pk = None;
        let mut sk = None;
        for &(name, value) in attrs {
            let (slot, ty) = if name == schema.partition.name.as_bytes() {
                (&mut pk, schema.partition.ty)
            } else {
                let sort = schema.sort.as_ref().filter(|s| s.name.as_bytes() == name)?;
                (&mut sk, sort.ty)
            };
            if value.scalar_type() != ty {
                return None;
            }
            *slot = Some(value);
        }
        let pk = pk?;
        if schema.sort.is_some() && sk.is_none() {
            return None;
        }
        check_key_values(schema, pk, sk).ok()?;
        Some((pk, sk))
    }
}

/// Reads a GetItem body whose key is one or two S/N/B attributes; `None` for anything
/// else (see the module doc).
pub fn get_item_request(body: &[u8]) -> Option<FastGetItem<'_>> {
    let mut whole = Window {
        lo: 0,
        hi: body.len(),
    };
    let root = body.len().checked_sub(GET_ITEM_REQUEST_BYTES)?;
    let mut inner = whole.parent(root, GET_ITEM_REQUEST_BYTES)?;
    let table = string_bytes(body, root, &mut inner)?;
    let key = bytes(body, root + FIELD_BYTES, &mut inner)?;
    let consistent_read = match *body.get(root + 2 * FIELD_BYTES)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    if key.len() > KEY_ITEM_ENCODED_MAX_BYTES {
        return None;
    }
    Some(FastGetItem {
        table,
        key: key_item(key)?,
        consistent_read,
    })
}

/// Reads an item archive of one or two attributes with S, N or B values.
fn key_item(blob: &[u8]) -> Option<FastKey<'_>> {
    let mut whole = Window {
        lo: 0,
        hi: blob.len(),
    };
    let root = blob.len().checked_sub(ITEM_BYTES)?;
    let mut inner = whole.parent(root, ITEM_BYTES)?;
    let (first, n) = vec_field(blob, root)?;
    if !(1..=2).contains(&n) {
        return None;
    }
    let mut elements = inner.parent(first, n * ATTR_BYTES)?;
    let mut key = FastKey {
        attrs: [(&[][..], KeyRef::S("")); 2],
        len: n,
    };
    for (k, slot) in key.attrs.iter_mut().take(n).enumerate() {
        let at = first + k * ATTR_BYTES;
        let name = string_bytes(blob, at, &mut elements)?;
        let payload = at + FIELD_BYTES + 1;
        let value = match *blob.get(at + FIELD_BYTES)? {
            TAG_S => KeyRef::S(string(blob, payload, &mut elements)?),
            TAG_N => KeyRef::N(string(blob, payload, &mut elements)?),
            TAG_B => KeyRef::B(bytes(blob, payload, &mut elements)?),
            _ => return None,
        };
        *slot = (name, value);
    }
    Some(key)
}

/// Where the next pointed-to object may lie (wire-protocol §4.7): `[lo, hi)`.
struct Window {
    lo: usize,
    hi: usize,
}

impl Window {
    /// Claims `[p, p + n)` for an object without pointers of its own: it must lie in the
    /// window, and what is validated next must lie after it.
    fn leaf(&mut self, p: usize, n: usize) -> Option<()> {
        let end = p.checked_add(n)?;
        if p < self.lo || end > self.hi {
            return None;
        }
        self.lo = end;
        Some(())
    }

    /// Claims `[p, p + n)` for an object that holds pointers: returns the window its
    /// pointed-to objects must lie in, `[lo, p)`.
    fn parent(&mut self, p: usize, n: usize) -> Option<Window> {
        let lo = self.lo;
        self.leaf(p, n)?;
        Some(Window { lo, hi: p })
    }
}

/// `field + offset`, where the i32 offset is stored at `offset_at`.
fn target(buf: &[u8], field: usize, offset_at: usize) -> Option<usize> {
    let offset = i32::from_le_bytes(buf.get(offset_at..offset_at + 4)?.try_into().ok()?);
    usize::try_from(field as i64 + i64::from(offset)).ok()
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// A `Vec<T>` field at `at` (inside an already claimed object): the first element's
/// position and the element count.
fn vec_field(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    Some((target(buf, at, at)?, u32_at(buf, at + 4)? as usize))
}

/// A `Vec<u8>` field at `at`: its bytes, claimed in `window`.
fn bytes<'a>(buf: &'a [u8], at: usize, window: &mut Window) -> Option<&'a [u8]> {
    let (p, n) = vec_field(buf, at)?;
    window.leaf(p, n)?;
    buf.get(p..p + n)
}

/// A `String` field at `at`: inline, or out of line and claimed in `window`; UTF-8.
fn string<'a>(buf: &'a [u8], at: usize, window: &mut Window) -> Option<&'a str> {
    std::str::from_utf8(string_bytes(buf, at, window)?).ok()
}

/// A `String` field's bytes, not yet checked for UTF-8.
fn string_bytes<'a>(buf: &'a [u8], at: usize, window: &mut Window) -> Option<&'a [u8]> {
    let field = buf.get(at..at + FIELD_BYTES)?;
    if field[0] & 0xC0 != 0x80 {
        let len = field.iter().position(|&b| b == 0xFF).unwrap_or(INLINE_MAX);
        return Some(&field[..len]);
    }
    let raw = u32_at(buf, at)?;
    let len = ((raw & 0x3F) | ((raw & !0xFF) >> 2)) as usize;
    if len <= INLINE_MAX {
        return None;
    }
    let p = target(buf, at, at + 4)?;
    window.leaf(p, len)?;
    buf.get(p..p + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{GetItemRequest, encode};
    use crate::schema::{KeyAttr, ScalarType};
    use crate::value::{Item, Value};

    fn body(table: &str, key: Item, consistent_read: bool) -> Vec<u8> {
        encode(&GetItemRequest {
            table: table.into(),
            key: key.encode(),
            consistent_read,
        })
    }

    fn schema(sort: Option<(&str, ScalarType)>) -> KeySchema {
        KeySchema {
            partition: KeyAttr {
                name: "pk".into(),
                ty: ScalarType::S,
            },
            sort: sort.map(|(name, ty)| KeyAttr {
                name: name.into(),
                ty,
            }),
        }
    }

    #[test]
    fn reads_inline_and_out_of_line_strings_numbers_and_bytes() {
        let key = Item::from_attrs([
            (
                "pk".to_owned(),
                Value::S("a partition key longer than 8".into()),
            ),
            ("sk".to_owned(), Value::N("12.5".parse().unwrap())),
        ]);
        let b = body("a table name over eight bytes", key, true);
        let got = get_item_request(&b).unwrap();
        assert_eq!(got.table, b"a table name over eight bytes");
        assert!(got.consistent_read);
        assert_eq!(
            got.key.attrs(),
            &[
                (&b"pk"[..], KeyRef::S("a partition key longer than 8")),
                (&b"sk"[..], KeyRef::N("12.5"))
            ]
        );
        let (pk, sk) = got
            .key
            .matching(&schema(Some(("sk", ScalarType::N))))
            .unwrap();
        assert_eq!(pk, KeyRef::S("a partition key longer than 8"));
        assert_eq!(sk, Some(KeyRef::N("12.5")));

        let key = Item::from_attrs([("pk".to_owned(), Value::B(vec![1, 2, 3]))]);
        let b = body("t", key, false);
        let got = get_item_request(&b).unwrap();
        assert_eq!(got.key.attrs(), &[(&b"pk"[..], KeyRef::B(&[1, 2, 3]))]);
        assert!(!got.consistent_read);
    }

    #[test]
    fn declines_what_the_generic_path_must_answer() {
        let s = schema(None);
        let one = |v: Value| Item::from_attrs([("pk".to_owned(), v)]);
        // Not a key shape: a BOOL value, three attributes, no attributes.
        assert!(get_item_request(&body("t", one(Value::Bool(true)), false)).is_none());
        let three = Item::from_attrs(["a", "b", "c"].map(|n| (n.to_owned(), Value::S("x".into()))));
        assert!(get_item_request(&body("t", three, false)).is_none());
        assert!(get_item_request(&body("t", Item::default(), false)).is_none());
        // Decoded, but not this schema's key: wrong name, wrong type, empty value,
        // a sort key the schema lacks, a sort key missing.
        let wrong_name = Item::from_attrs([("other".to_owned(), Value::S("x".into()))]);
        let matches = |item: Item, schema: &KeySchema| {
            let b = body("t", item, false);
            get_item_request(&b).unwrap().key.matching(schema).is_some()
        };
        assert!(!matches(wrong_name, &s));
        assert!(!matches(one(Value::N(1.into())), &s));
        assert!(!matches(one(Value::S(String::new())), &s));
        let two = Item::from_attrs([
            ("pk".to_owned(), Value::S("x".into())),
            ("sk".to_owned(), Value::S("y".into())),
        ]);
        assert!(!matches(two.clone(), &s));
        assert!(matches(two, &schema(Some(("sk", ScalarType::S)))));
        assert!(!matches(
            one(Value::S("x".into())),
            &schema(Some(("sk", ScalarType::S)))
        ));
        // A bool byte that is neither 0 nor 1; a body too short for the root.
        let mut b = body("t", one(Value::S("x".into())), false);
        *b.last_mut().unwrap() = 2;
        assert!(get_item_request(&b).is_none());
        assert!(get_item_request(&b[..10]).is_none());
    }
}
