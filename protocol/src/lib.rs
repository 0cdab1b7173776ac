//! tern-protocol: the data model and the binary protocol of tern. No I/O.
//!
//! * `value`, `number`, `schema`: DynamoDB's data model and the one item encoding.
//! * `validate`: DynamoDB's rules (sizes, limits, key presence) checked on an archived item.
//! * `requests`: DynamoDB's rules on a request's shape (batch counts and bytes, scan segments).
//! * `keys`: the routing hash, index key encoding and Query sort-key ranges.
//! * `json`: the DynamoDB JSON codec.
//! * `frame`: the 32-byte header and sans-I/O frame parsing.
//! * `fastpath`: GetItem's body and key read by hand for the hot path (declines the rest).
//! * `messages`: request and response bodies (rkyv archives, validated once, read in place).
//! * `error`: DynamoDB error names ([`ErrorCode`]) and the user-facing [`ApiError`].
//! * `limits`: every bound, in one place.
#![forbid(unsafe_code)]

pub mod error;
pub mod fastpath;
pub mod frame;
pub mod json;
pub mod keys;
pub mod limits;
pub mod messages;
pub mod number;
pub mod requests;
pub mod schema;
pub mod validate;
pub mod value;

pub use error::{ApiError, ErrorCode};
pub use number::Number;
pub use schema::{KeyAttr, KeySchema, ScalarType};
pub use value::{Attr, Item, Value};

/// Errors of the protocol crate's decoding layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
}
