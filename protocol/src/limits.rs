//! Every bound of the data model and the protocol, in one place.
//!
//! DynamoDB's published limits where DynamoDB has one; our own otherwise (marked).

/// Largest item, counted as DynamoDB counts it (names + values), in bytes: 400 KB.
pub const ITEM_SIZE_MAX_BYTES: usize = 400 * 1024;
/// Largest partition key value, in bytes.
pub const PARTITION_KEY_MAX_BYTES: usize = 2048;
/// Largest sort key value, in bytes.
pub const SORT_KEY_MAX_BYTES: usize = 1024;
/// Deepest nesting of M and L values.
pub const NESTING_DEPTH_MAX: usize = 32;
/// (tern) Most nested pointers the archive validator follows. An item at the nesting
/// limit needs one per M/L level plus a few (the root's attribute vector, an out-of-line
/// string or binary at the deepest level); anything deeper is rejected before it can
/// exhaust the stack.
pub const ARCHIVE_DEPTH_MAX: usize = NESTING_DEPTH_MAX + 8;
/// Most significant digits of an N value.
pub const NUMBER_DIGITS_MAX: usize = 38;
/// Smallest positive magnitude of an N value is 1E-130.
pub const NUMBER_EXPONENT_MIN: i32 = -130;
/// Largest magnitude of an N value is below 1E+126 (9.9999999999999999999999999999999999999E+125).
pub const NUMBER_EXPONENT_MAX: i32 = 125;
/// Table names: 3..=255 characters of `[a-zA-Z0-9_.-]`.
pub const TABLE_NAME_MIN_LEN: usize = 3;
pub const TABLE_NAME_MAX_LEN: usize = 255;
/// Attribute names: 1..=64 KiB of UTF-8 (key attribute names: 1..=255).
pub const ATTRIBUTE_NAME_MAX_BYTES: usize = 65535;
pub const KEY_ATTRIBUTE_NAME_MAX_BYTES: usize = 255;
/// A Query or Scan page holds at most 1 MB of items (DynamoDB counts item sizes).
pub const PAGE_SIZE_MAX_BYTES: usize = 1024 * 1024;
/// BatchGetItem: at most 100 keys per request.
pub const BATCH_GET_KEYS_MAX: usize = 100;
/// BatchGetItem: at most 16 MB in a response; keys past that come back unprocessed.
pub const BATCH_GET_RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// BatchWriteItem: at most 25 puts/deletes per request.
pub const BATCH_WRITE_ITEMS_MAX: usize = 25;
/// ListTables: at most 100 names per page.
pub const LIST_TABLES_LIMIT_MAX: usize = 100;

/// (tern) Largest frame body accepted: a full BatchWriteItem (25 × 400 KB) plus encoding
/// overhead fits; anything larger is a malformed frame and closes the connection.
pub const FRAME_BODY_MAX_BYTES: usize = 24 * 1024 * 1024;
/// (tern) Most requests one connection may have in flight; past it the server stops
/// reading from that connection until replies drain (backpressure, not an error).
pub const IN_FLIGHT_PER_CONNECTION_MAX: usize = 1024;
/// (tern) Number of partitions the key space (64-bit hash) is cut into.
pub const PARTITION_COUNT: u32 = 1024;
