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
/// (tern) A Query or Scan page also stops at this many bytes of encoded items (each
/// counted with its 8-byte slot in the page's item vector), so a page of many small
/// attributes still fits a frame; it always holds at least one item.
pub const PAGE_ENCODED_MAX_BYTES: usize = 16 * 1024 * 1024;
/// BatchGetItem: at most 100 keys per request.
pub const BATCH_GET_KEYS_MAX: usize = 100;
/// BatchGetItem: at most 16 MB in a response; keys past that come back unprocessed.
/// tern counts encoded item bytes (each with its 8-byte slot in the item vector), which
/// are at least DynamoDB's size, so a response is never larger than DynamoDB's rule
/// allows.
pub const BATCH_GET_RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// BatchWriteItem: at most 25 puts/deletes per request.
pub const BATCH_WRITE_ITEMS_MAX: usize = 25;
/// BatchWriteItem: at most 16 MB of encoded items and keys in one request (DynamoDB:
/// "the total request size exceeds 16 MB" is a ValidationException).
pub const BATCH_WRITE_REQUEST_MAX_BYTES: usize = 16 * 1024 * 1024;

/// (tern) Largest encoded item (`Item::encode`'s bytes). An encoding is larger than the
/// DynamoDB size by the per-attribute overhead of the archive (17 bytes for a one-byte
/// name and an empty value, which DynamoDB counts as 1 byte): an item of a few hundred
/// thousand tiny attributes can be within 400 KB and still encode larger than this. Such
/// items are refused with a ValidationException; every item whose encoding averages
/// under 10 bytes per DynamoDB byte fits. Chosen so that the largest encoded item, the
/// longest index key and a log record header fit one log record
/// (`tern-storage::limits::RECORD_MAX_BYTES`, asserted in tern-server).
pub const ITEM_ENCODED_MAX_BYTES: usize = 4 * 1024 * 1024 - 4 * 1024;
/// (tern) Longest index key: 8-byte hash, 2-byte partition-key length, the partition key,
/// the sort key in its order-preserving form (`keys::encode_index_key`).
pub const INDEX_KEY_MAX_BYTES: usize = 8 + 2 + PARTITION_KEY_MAX_BYTES + SORT_KEY_MAX_BYTES;
/// (tern) Largest encoded key item (two attributes with the longest names and values):
/// the root vector (8) and per attribute its inline parts (17) and out-of-line name.
pub const KEY_ITEM_ENCODED_MAX_BYTES: usize =
    8 + 2 * (17 + KEY_ATTRIBUTE_NAME_MAX_BYTES) + PARTITION_KEY_MAX_BYTES + SORT_KEY_MAX_BYTES;
/// ListTables: at most 100 names per page.
pub const LIST_TABLES_LIMIT_MAX: usize = 100;
/// Scan: a parallel scan has at most 1,000,000 segments.
pub const SCAN_TOTAL_SEGMENTS_MAX: u32 = 1_000_000;

/// (tern) Largest frame body accepted: a full BatchWriteItem (25 × 400 KB) plus encoding
/// overhead fits; anything larger is a malformed frame and closes the connection.
pub const FRAME_BODY_MAX_BYTES: usize = 24 * 1024 * 1024;
/// (tern) Most requests one connection may have in flight; past it the server stops
/// reading from that connection until replies drain (backpressure, not an error).
pub const IN_FLIGHT_PER_CONNECTION_MAX: usize = 1024;
/// (tern) Number of partitions the key space (64-bit hash) is cut into.
pub const PARTITION_COUNT: u32 = 1024;

// The largest request and reply bodies fit a frame (with generous room for the fixed
// parts: table names, vector headers, tags). Replies built by the server are bounded by
// construction (pages, batch responses); requests are checked against these on arrival.
/// Bytes of a body beyond the items and keys it carries: table names, headers, tags.
const BODY_FIXED_MAX_BYTES: usize = 64 * 1024;
// PutItem, and GetItem/PutItem/DeleteItem replies carrying one item.
const _: () = assert!(ITEM_ENCODED_MAX_BYTES + BODY_FIXED_MAX_BYTES <= FRAME_BODY_MAX_BYTES);
// A Query/Scan page: its items, their vector slots and the LastEvaluatedKey.
const _: () = assert!(
    PAGE_ENCODED_MAX_BYTES + KEY_ITEM_ENCODED_MAX_BYTES + BODY_FIXED_MAX_BYTES
        <= FRAME_BODY_MAX_BYTES
);
// A page must be able to hold the largest item, or a Query could never progress.
const _: () = assert!(ITEM_ENCODED_MAX_BYTES + 8 <= PAGE_ENCODED_MAX_BYTES);
// A BatchGetItem reply: its items, and every key back as unprocessed, each under its own
// table entry in the worst case.
const _: () = assert!(
    BATCH_GET_RESPONSE_MAX_BYTES
        + BATCH_GET_KEYS_MAX * (KEY_ITEM_ENCODED_MAX_BYTES + 8 + 2 * (TABLE_NAME_MAX_LEN + 32))
        + BODY_FIXED_MAX_BYTES
        <= FRAME_BODY_MAX_BYTES
);
const _: () = assert!(ITEM_ENCODED_MAX_BYTES + 8 <= BATCH_GET_RESPONSE_MAX_BYTES);
// A BatchWriteItem request (and its UnprocessedItems reply, at most the same writes).
const _: () = assert!(
    BATCH_WRITE_REQUEST_MAX_BYTES
        + BATCH_WRITE_ITEMS_MAX * (9 + 2 * (TABLE_NAME_MAX_LEN + 32))
        + BODY_FIXED_MAX_BYTES
        <= FRAME_BODY_MAX_BYTES
);
const _: () = assert!(ITEM_ENCODED_MAX_BYTES <= BATCH_WRITE_REQUEST_MAX_BYTES);
// A key item holds the longest keys; the index key of the longest keys is what
// INDEX_KEY_MAX_BYTES says (the N forms are far shorter than the S/B bounds).
const _: () = assert!(KEY_ITEM_ENCODED_MAX_BYTES < ITEM_ENCODED_MAX_BYTES);
