//! Exact decimal numbers (DynamoDB's N): placeholder, filled in by the number module work.

use rkyv::{Archive, Deserialize, Serialize};

/// A DynamoDB number in canonical text form.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number(String);

impl Number {
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
