//! Request and response bodies of binary protocol v1.
//!
//! Every body is an rkyv archive of one of these types, chosen by the frame's opcode
//! (requests) or opcode + `FLAG_RESPONSE` (responses). A receiver validates a body once
//! with [`access`] (bytecheck) and then reads it in place.
//!
//! Items and keys travel as `Vec<u8>` blobs holding an encoded [`crate::Item`] (its own
//! rkyv root): the server stores those bytes as they are and sends them back as they are.
//! A key blob is an encoded item holding exactly the table's key attributes.
//!
//! One body is not an archive: a successful GetItem response (`FLAG_FOUND`) carries the
//! item's encoded bytes directly, so a read is a header plus bytes the shard already
//! holds; without `FLAG_FOUND` its body is empty (no such item).

use rkyv::{
    Archive, Deserialize, Serialize, api::high::HighValidator, bytecheck::CheckBytes,
    rancor::Error as RkyvError,
};

/// The error type archives are validated with: what bytecheck found wrong and the trail
/// of fields it was checking (innermost first), so a malformed body is answered with
/// what was wrong where. One pointer wide; it allocates only when validation fails.
#[derive(Debug)]
pub struct ValidationError(Box<ValidationFailure>);

#[derive(Debug)]
struct ValidationFailure {
    message: String,
    trail: Vec<String>,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)?;
        for step in &self.0.trail {
            write!(f, "; {step}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

impl rkyv::rancor::Source for ValidationError {
    fn new<T: std::error::Error + Send + Sync + 'static>(source: T) -> Self {
        ValidationError(Box::new(ValidationFailure {
            message: source.to_string(),
            trail: Vec::new(),
        }))
    }
}

impl rkyv::rancor::Trace for ValidationError {
    fn trace<R>(mut self, trace: R) -> Self
    where
        R: std::fmt::Debug + std::fmt::Display + Send + Sync + 'static,
    {
        // Bounded: the validator's depth limit bounds the trail, this bounds the text.
        if self.0.trail.len() < 2 * ARCHIVE_DEPTH_MAX {
            self.0.trail.push(trace.to_string());
        }
        self
    }
}

/// A validation error's text with the addresses bytecheck reports (`0x00007f…`) made
/// offsets into the archive, which is what a client can act on (and no server address
/// leaks).
fn describe(e: &ValidationError, bytes: &[u8]) -> String {
    let text = e.to_string();
    let base = bytes.as_ptr() as u64;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits = rest[at + 2..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count();
        let token = &rest[at..at + 2 + digits];
        match u64::from_str_radix(&token[2..], 16) {
            Ok(addr) if digits >= 8 && (base..=base + bytes.len() as u64).contains(&addr) => {
                out.push_str(&format!("offset {}", addr - base));
            }
            Ok(_) if digits >= 8 => out.push_str("an address outside the archive"),
            _ => out.push_str(token),
        }
        rest = &rest[at + 2 + digits..];
    }
    out.push_str(rest);
    out
}

use crate::limits::ARCHIVE_DEPTH_MAX;
use crate::{ProtocolError, schema::KeySchema, value::Value};

/// Encodes a body as an rkyv archive.
pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::util::AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                RkyvError,
            >,
        >,
{
    // Serializing owned in-memory values into a growable buffer cannot fail.
    rkyv::to_bytes::<RkyvError>(value)
        .expect("serializing a message into memory cannot fail")
        .into_vec()
}

/// Validates an archive (bytecheck, once) and returns a view into it.
///
/// rkyv's validator recurses once per pointer it follows, so an archive nested deeply
/// enough (a list of a list of ... well under the frame size limit) would overflow the
/// stack and abort the whole process. The validator is therefore bounded to
/// [`ARCHIVE_DEPTH_MAX`] nested pointers: more than any valid item needs, far less than
/// a stack can take. Every body and every item goes through here.
pub fn access<T: Checked>(bytes: &[u8]) -> Result<&T, ProtocolError> {
    // The hot path validates with rkyv's zero-sized `Failure` (every nested check then
    // returns a bare flag: measured ~8 ns less per GetItem frame than with a boxed error);
    // only a body that fails is checked again, for the message that says what and where.
    match validate::<T, rkyv::rancor::Failure>(bytes) {
        Ok(archived) => Ok(archived),
        Err(_) => match validate::<T, ValidationError>(bytes) {
            Err(e) => Err(ProtocolError::InvalidArchive(describe(&e, bytes))),
            // Both validators run the same checks; should they ever disagree, the
            // archive is still refused.
            Ok(_) => Err(ProtocolError::InvalidArchive(
                "the archive failed validation (no detail available)".into(),
            )),
        },
    }
}

/// What every archived body and item type is: checkable with both of `access`'s
/// validators.
pub trait Checked:
    rkyv::Portable
    + for<'a> CheckBytes<HighValidator<'a, rkyv::rancor::Failure>>
    + for<'a> CheckBytes<HighValidator<'a, ValidationError>>
{
}

impl<T> Checked for T where
    T: rkyv::Portable
        + for<'a> CheckBytes<HighValidator<'a, rkyv::rancor::Failure>>
        + for<'a> CheckBytes<HighValidator<'a, ValidationError>>
{
}

/// One validation with error type `E`, depth-bounded (see `access`).
fn validate<T, E>(bytes: &[u8]) -> Result<&T, E>
where
    T: rkyv::Portable + for<'a> CheckBytes<HighValidator<'a, E>>,
    E: rkyv::rancor::Source,
{
    let mut validator = rkyv::validation::Validator::new(
        rkyv::validation::archive::ArchiveValidator::with_max_depth(
            bytes,
            std::num::NonZeroUsize::new(ARCHIVE_DEPTH_MAX),
        ),
        rkyv::validation::shared::SharedValidator::new(),
    );
    rkyv::api::access_with_context::<T, _, E>(bytes, &mut validator)
}

/// Decodes an archived body into owned values (client side, DDL), after [`access`].
pub fn decode<T>(bytes: &[u8]) -> Result<T, ProtocolError>
where
    T: Archive,
    T::Archived: Checked + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<RkyvError>>,
{
    let archived = access::<T::Archived>(bytes)?;
    rkyv::deserialize::<T, RkyvError>(archived)
        .map_err(|e| ProtocolError::InvalidArchive(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Errors

/// Body of every error response (`FLAG_RESPONSE | FLAG_ERROR`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// An `ErrorCode` wire value.
    pub code: u16,
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// Hello: topology

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HelloRequest {
    pub client_name: String,
}

/// One shard of a node: the core that runs it and the port it listens on.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: u32,
    pub core: u32,
    pub port: u16,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HelloResponse {
    pub node_id: String,
    pub protocol_version: u8,
    /// The port every shard accepts on (SO_REUSEPORT); any shard serves any request.
    pub shared_port: u16,
    pub shards: Vec<ShardInfo>,
    /// `partition_map[p]` is the shard owning partition `p` (see `keys::partition_of`).
    pub partition_map: Vec<u32>,
}

// ---------------------------------------------------------------------------------------
// Tables

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub enum TableStatus {
    Creating,
    Active,
    Deleting,
}

impl TableStatus {
    pub fn name(self) -> &'static str {
        match self {
            TableStatus::Creating => "CREATING",
            TableStatus::Active => "ACTIVE",
            TableStatus::Deleting => "DELETING",
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableDescription {
    pub name: String,
    pub key_schema: KeySchema,
    pub status: TableStatus,
    pub item_count: u64,
    /// Sum of item sizes as DynamoDB counts them.
    pub size_bytes: u64,
    pub creation_time_ms: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CreateTableRequest {
    pub name: String,
    pub key_schema: KeySchema,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableRequest {
    pub name: String,
}

/// Response of CreateTable, DeleteTable and DescribeTable.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableResponse {
    pub table: TableDescription,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ListTablesRequest {
    pub exclusive_start_table_name: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListTablesResponse {
    pub table_names: Vec<String>,
    pub last_evaluated_table_name: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Stats

/// Counters of every shard (`shard: None`) or of one.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRequest {
    pub shard: Option<u32>,
}

/// One named counter or gauge. Names are CamelCase like DAX's metrics
/// (e.g. `LogSyncs`, `IndexItems`); new ones can appear in any release.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    pub value: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: u32,
    pub counters: Vec<Counter>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsResponse {
    pub shards: Vec<ShardStats>,
}

impl StatsResponse {
    /// Each shard's counters by name, in shard order.
    pub fn counters_by_shard(&self) -> Vec<std::collections::HashMap<String, u64>> {
        self.shards
            .iter()
            .map(|s| {
                s.counters
                    .iter()
                    .map(|c| (c.name.clone(), c.value))
                    .collect()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Membership (a replicated cluster)

/// One change to every shard's group: add a voter (a node started empty, reachable for
/// its peers at `peer_address` — its first peer port; shard k listens on it + k) or
/// remove one.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    AddVoter { node: u64, peer_address: String },
    RemoveVoter { node: u64 },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MembershipRequest {
    pub change: MembershipChange,
}

/// Each shard's voters once the change is applied there.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShardVoters {
    pub shard: u32,
    pub voters: Vec<u64>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipResponse {
    pub shards: Vec<ShardVoters>,
}

// ---------------------------------------------------------------------------------------
// Items

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub enum ReturnValues {
    #[default]
    None,
    AllOld,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PutItemRequest {
    pub table: String,
    /// The encoded item.
    pub item: Vec<u8>,
    pub return_values: ReturnValues,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GetItemRequest {
    pub table: String,
    /// The encoded key.
    pub key: Vec<u8>,
    pub consistent_read: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DeleteItemRequest {
    pub table: String,
    /// The encoded key.
    pub key: Vec<u8>,
    pub return_values: ReturnValues,
}

/// Response of PutItem and DeleteItem.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WriteItemResponse {
    /// With `ReturnValues::AllOld`: the encoded item that was replaced or deleted.
    pub attributes: Option<Vec<u8>>,
}

// ---------------------------------------------------------------------------------------
// Query and Scan

/// A condition on the sort key (KeyConditionExpression's second half).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum SortKeyCondition {
    Eq(Value),
    Lt(Value),
    Le(Value),
    Gt(Value),
    Ge(Value),
    Between(Value, Value),
    BeginsWith(Value),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    pub table: String,
    pub partition_key: Value,
    pub sort_key: Option<SortKeyCondition>,
    /// true: ascending sort-key order (ScanIndexForward); false: descending.
    pub scan_forward: bool,
    pub limit: Option<u32>,
    /// The encoded key of the last item of the previous page.
    pub exclusive_start_key: Option<Vec<u8>>,
    pub consistent_read: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub table: String,
    pub limit: Option<u32>,
    pub exclusive_start_key: Option<Vec<u8>>,
    /// Parallel scan: this is segment `segment` of `total_segments` (1 = whole table).
    pub segment: u32,
    pub total_segments: u32,
    pub consistent_read: bool,
}

/// Response of Query and Scan: one page.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct PageResponse {
    /// Encoded items, in key order.
    pub items: Vec<Vec<u8>>,
    pub count: u32,
    pub scanned_count: u32,
    /// Present when there may be more: pass it as `exclusive_start_key` to continue.
    pub last_evaluated_key: Option<Vec<u8>>,
}

// ---------------------------------------------------------------------------------------
// Batches

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeysAndAttributes {
    pub table: String,
    /// Encoded keys.
    pub keys: Vec<Vec<u8>>,
    pub consistent_read: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BatchGetItemRequest {
    pub tables: Vec<KeysAndAttributes>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableItems {
    pub table: String,
    pub items: Vec<Vec<u8>>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchGetItemResponse {
    pub responses: Vec<TableItems>,
    /// Keys not read (response size limit); retry them.
    pub unprocessed_keys: Vec<KeysAndAttributes>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum WriteRequest {
    /// An encoded item to put.
    Put(Vec<u8>),
    /// An encoded key to delete.
    Delete(Vec<u8>),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableWriteRequests {
    pub table: String,
    pub requests: Vec<WriteRequest>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BatchWriteItemRequest {
    pub tables: Vec<TableWriteRequests>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchWriteItemResponse {
    /// Writes not applied; retry them.
    pub unprocessed_items: Vec<TableWriteRequests>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Item, Number, schema::KeyAttr, schema::ScalarType};

    #[test]
    fn bodies_round_trip_and_read_in_place() {
        let item = Item::from_attrs([("id".to_owned(), Value::S("a".into()))]).encode();
        let req = PutItemRequest {
            table: "t1".into(),
            item: item.clone(),
            return_values: ReturnValues::AllOld,
        };
        let bytes = encode(&req);
        let view = access::<ArchivedPutItemRequest>(&bytes).unwrap();
        assert_eq!(view.table.as_str(), "t1");
        assert_eq!(view.item.as_slice(), item.as_slice());
        assert_eq!(decode::<PutItemRequest>(&bytes).unwrap(), req);

        let q = QueryRequest {
            table: "t".into(),
            partition_key: Value::N(Number::parse("12").unwrap()),
            sort_key: Some(SortKeyCondition::Between(
                Value::S("a".into()),
                Value::S("b".into()),
            )),
            scan_forward: false,
            limit: Some(5),
            exclusive_start_key: None,
            consistent_read: true,
        };
        assert_eq!(decode::<QueryRequest>(&encode(&q)).unwrap(), q);

        let c = CreateTableRequest {
            name: "tab".into(),
            key_schema: KeySchema {
                partition: KeyAttr {
                    name: "pk".into(),
                    ty: ScalarType::S,
                },
                sort: Some(KeyAttr {
                    name: "sk".into(),
                    ty: ScalarType::N,
                }),
            },
        };
        assert_eq!(decode::<CreateTableRequest>(&encode(&c)).unwrap(), c);
    }

    #[test]
    fn invalid_bodies_say_what_was_wrong_where_in_archive_offsets() {
        let req = PutItemRequest {
            table: "t1".into(),
            item: crate::Item::from_attrs([("id".to_owned(), Value::S("v".repeat(20)))]).encode(),
            return_values: ReturnValues::AllOld,
        };
        let good = encode(&req);
        let n = good.len();
        let message = |bytes: &[u8]| match access::<ArchivedPutItemRequest>(bytes) {
            Err(ProtocolError::InvalidArchive(m)) => m,
            other => panic!("expected an invalid archive, got {:?}", other.is_ok()),
        };
        // A bad enum tag in the last field: named, with the struct and field.
        let mut bad_tag = good.clone();
        bad_tag[n - 1] = 9;
        let m = message(&bad_tag);
        assert!(m.contains("ArchivedReturnValues"), "{m}");
        assert!(m.contains("return_values"), "{m}");
        // A pointer out of the archive: offsets, never addresses.
        let m = message(&[0xff; 64]);
        assert!(m.contains("offset"), "{m}");
        assert!(!m.contains("0x0000"), "{m}");
        let m = message(&good[..n - 3]);
        assert!(!m.contains("0x0000"), "{m}");
    }

    #[test]
    fn garbage_body_is_an_error_not_a_panic() {
        assert!(access::<ArchivedPutItemRequest>(&[1, 2, 3]).is_err());
        assert!(access::<ArchivedPutItemRequest>(&[0xff; 64]).is_err());
        assert!(access::<ArchivedPutItemRequest>(&[]).is_err());
    }
}
