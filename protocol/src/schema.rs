//! Table key schemas: a partition key and an optional sort key, each S, N or B.

use rkyv::{Archive, Deserialize, Serialize};

/// The type of a key attribute.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub enum ScalarType {
    S,
    N,
    B,
}

impl ScalarType {
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::S => "S",
            ScalarType::N => "N",
            ScalarType::B => "B",
        }
    }

    pub fn from_name(name: &str) -> Option<ScalarType> {
        match name {
            "S" => Some(ScalarType::S),
            "N" => Some(ScalarType::N),
            "B" => Some(ScalarType::B),
            _ => None,
        }
    }
}

impl ArchivedScalarType {
    pub fn to_native(self) -> ScalarType {
        match self {
            ArchivedScalarType::S => ScalarType::S,
            ArchivedScalarType::N => ScalarType::N,
            ArchivedScalarType::B => ScalarType::B,
        }
    }
}

/// One key attribute: its name and type.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyAttr {
    pub name: String,
    pub ty: ScalarType,
}

/// A table's primary key: partition (HASH) key and optional sort (RANGE) key.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySchema {
    pub partition: KeyAttr,
    pub sort: Option<KeyAttr>,
}

impl ArchivedKeySchema {
    pub fn to_native(&self) -> KeySchema {
        KeySchema {
            partition: KeyAttr {
                name: self.partition.name.as_str().to_owned(),
                ty: self.partition.ty.to_native(),
            },
            sort: self.sort.as_ref().map(|s| KeyAttr {
                name: s.name.as_str().to_owned(),
                ty: s.ty.to_native(),
            }),
        }
    }
}
