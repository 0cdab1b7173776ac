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
//! * set members are sorted (bytewise for SS/BS, canonical text for NS) and unique;
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
        let archived = access_item(bytes)?;
        rkyv::deserialize::<Item, rkyv::rancor::Error>(archived)
            .map_err(|e| crate::ProtocolError::InvalidArchive(e.to_string()))
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
pub fn access_item(bytes: &[u8]) -> Result<&ArchivedItem, crate::ProtocolError> {
    rkyv::access::<ArchivedItem, rkyv::rancor::Error>(bytes)
        .map_err(|e| crate::ProtocolError::InvalidArchive(e.to_string()))
}
