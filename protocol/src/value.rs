//! The item data model: DynamoDB's ten attribute types and the one item encoding.
//!
//! An [`Item`] is encoded once, by whoever creates it, as a self-contained rkyv archive
//! (`Item::encode`). Those bytes are what a client sends, what a shard stores (and later
//! logs and caches) and what a read sends back: nobody decodes and re-encodes an item on
//! the way through. Readers look at the archive in place through [`ArchivedItem`] after
//! validating it once (`access_item`).
//!
//! Invariants of an encoded item (checked by `validate`):
//! * attributes are sorted by name (bytewise) and names are unique;
//! * numbers are in canonical text form (see `number`);
//! * set members are sorted (bytewise for SS/BS, numerically for NS) and unique;
//! * DynamoDB's limits hold (size, nesting depth, key sizes).

use rkyv::{Archive, Deserialize, Serialize};

use crate::number::Number;

/// One attribute: a name and its value.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    <__C as rkyv::rancor::Fallible>::Error: rkyv::rancor::Source,
)))]
pub struct Attr {
    pub name: String,
    #[rkyv(omit_bounds)]
    pub value: Value,
}

/// A DynamoDB attribute value.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    <__C as rkyv::rancor::Fallible>::Error: rkyv::rancor::Source,
)))]
pub enum Value {
    S(String),
    N(Number),
    B(Vec<u8>),
    Bool(bool),
    Null,
    /// A map, with the same sorted-unique-names invariant as an item.
    M(#[rkyv(omit_bounds)] Vec<Attr>),
    L(#[rkyv(omit_bounds)] Vec<Value>),
    Ss(Vec<String>),
    Ns(Vec<Number>),
    Bs(Vec<Vec<u8>>),
}

/// An item: attributes sorted by name, names unique.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub attrs: Vec<Attr>,
}

/// The DynamoDB type letter(s) of a value, as they appear in DynamoDB JSON.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::S(_) => "S",
        Value::N(_) => "N",
        Value::B(_) => "B",
        Value::Bool(_) => "BOOL",
        Value::Null => "NULL",
        Value::M(_) => "M",
        Value::L(_) => "L",
        Value::Ss(_) => "SS",
        Value::Ns(_) => "NS",
        Value::Bs(_) => "BS",
    }
}

/// The DynamoDB type letter(s) of an archived value.
pub fn archived_type_name(value: &ArchivedValue) -> &'static str {
    match value {
        ArchivedValue::S(_) => "S",
        ArchivedValue::N(_) => "N",
        ArchivedValue::B(_) => "B",
        ArchivedValue::Bool(_) => "BOOL",
        ArchivedValue::Null => "NULL",
        ArchivedValue::M(_) => "M",
        ArchivedValue::L(_) => "L",
        ArchivedValue::Ss(_) => "SS",
        ArchivedValue::Ns(_) => "NS",
        ArchivedValue::Bs(_) => "BS",
    }
}

impl Item {
    /// Builds an item from attributes in any order, sorting them by name.
    /// Later duplicates replace earlier ones.
    pub fn from_attrs(attrs: impl IntoIterator<Item = (String, Value)>) -> Item {
        let mut map = std::collections::BTreeMap::new();
        for (name, value) in attrs {
            map.insert(name, value);
        }
        Item {
            attrs: map
                .into_iter()
                .map(|(name, value)| Attr { name, value })
                .collect(),
        }
    }

    /// The value of attribute `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attrs
            .binary_search_by(|a| a.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.attrs[i].value)
    }

    /// Encodes the item as a self-contained rkyv archive: the one item encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain owned data into a growable buffer cannot fail.
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing an Item into memory cannot fail")
            .into_vec()
    }

    /// Decodes an encoded item into owned values (client side, tests; never on the
    /// server's read path).
    pub fn decode(bytes: &[u8]) -> Result<Item, crate::ProtocolError> {
        crate::messages::decode::<Item>(bytes)
    }
}

impl ArchivedItem {
    /// The archived value of attribute `name`, if present (binary search).
    pub fn get(&self, name: &str) -> Option<&ArchivedValue> {
        self.attrs
            .binary_search_by(|a| a.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.attrs[i].value)
    }
}

/// Validates the rkyv structure of an encoded item (bounds, pointers, UTF-8, enum tags)
/// and returns a view into it. DynamoDB rules are checked separately by `validate`.
/// Depth-bounded, like every archive access (see `messages::access`).
pub fn access_item(bytes: &[u8]) -> Result<&ArchivedItem, crate::ProtocolError> {
    crate::messages::access::<ArchivedItem>(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::NESTING_DEPTH_MAX;

    /// Hand-builds an item `{"a": L[L[...L[NULL]...]]}` nested `depth` lists deep,
    /// without recursion (rkyv's own serializer would recurse).
    fn nested_list_archive(depth: usize) -> Vec<u8> {
        const VALUE: usize = 9; // tag + 8 bytes (unaligned)
        let mut b = Vec::with_capacity((depth + 1) * VALUE + 32);
        b.push(4); // NULL
        b.extend_from_slice(&[0; 8]);
        for i in 1..=depth {
            // L(vec of 1 element at the previous value): tag 6, i32 rel offset, u32 len.
            let here = i * VALUE;
            let target = (i - 1) * VALUE;
            b.push(6);
            b.extend_from_slice(&((target as i64 - (here as i64 + 1)) as i32).to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
        }
        let top = depth * VALUE;
        // Attr { name: "a" inline, value: copy of the top value re-pointed }.
        let attr = b.len();
        b.push(b'a');
        b.extend_from_slice(&[0xff; 7]);
        if depth == 0 {
            b.push(4);
            b.extend_from_slice(&[0; 8]);
        } else {
            let field = attr + 8 + 1;
            b.push(6);
            b.extend_from_slice(&(((top - VALUE) as i64 - field as i64) as i32).to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
        }
        // Item root: attrs vec -> attr, len 1.
        let root = b.len();
        b.extend_from_slice(&((attr as i64 - root as i64) as i32).to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b
    }

    #[test]
    fn hand_built_archive_matches_the_encoder() {
        let item =
            Item::from_attrs([("a".to_owned(), Value::L(vec![Value::L(vec![Value::Null])]))]);
        let decoded = Item::decode(&nested_list_archive(2)).unwrap();
        assert_eq!(decoded, item);
    }

    #[test]
    fn nesting_at_the_limit_is_accessible() {
        let archive = nested_list_archive(NESTING_DEPTH_MAX);
        assert!(access_item(&archive).is_ok());
    }

    #[test]
    fn absurd_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [NESTING_DEPTH_MAX + 20, 1_000, 200_000] {
            let archive = nested_list_archive(depth);
            let err = access_item(&archive).err().expect("rejected");
            assert!(
                matches!(err, crate::ProtocolError::InvalidArchive(_)),
                "{err:?}"
            );
        }
    }
}
