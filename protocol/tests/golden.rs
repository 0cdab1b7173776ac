//! docs/wire-protocol.md's worked examples and format claims, checked against the code.
//!
//! Every hex block marked `<!-- golden: NAME -->` in the document is parsed out of the
//! Markdown and checked in both directions: the documented bytes decode to the value
//! written here, and encoding that value today yields exactly the documented bytes. The
//! document and the code cannot drift apart.
//!
//! The other tests pin what the document states about the archive format (string length
//! fields, struct sizes, the object-order rule the validator enforces, what it rejects),
//! about canonical numbers and about the routing hash.

use std::mem::size_of;

use tern_protocol::frame::{
    FLAG_ERROR, FLAG_FOUND, FLAG_RESPONSE, Frame, HEADER_LEN, MAGIC, NO_SHARD_HINT, Opcode,
    VERSION, parse_frame, write_frame,
};
use tern_protocol::keys::{KeyRef, partition_hash, partition_of};
use tern_protocol::limits::ARCHIVE_DEPTH_MAX;
use tern_protocol::messages::*;
use tern_protocol::number::ArchivedNumber;
use tern_protocol::schema::{ArchivedKeyAttr, ArchivedKeySchema, ArchivedScalarType};
use tern_protocol::validate::item_size;
use tern_protocol::value::{ArchivedAttr, ArchivedItem, ArchivedValue, access_item};
use tern_protocol::{Attr, ErrorCode, Item, Number, ProtocolError, Value};

const DOC: &str = include_str!("../../docs/wire-protocol.md");

/// The text of the fenced block that follows the line containing `marker`.
fn block_text(marker: &str) -> &'static str {
    let start = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in the doc"));
    let rest = &DOC[start..];
    let open = rest
        .find("```text\n")
        .expect("a ```text block after the marker")
        + 8;
    let close = rest[open..].find("```").expect("block end") + open;
    &rest[open..close]
}

/// The bytes of the fenced block that follows the line containing `marker`.
fn hex_block(marker: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in block_text(marker).lines() {
        // "0000  54 45 52 4e ...  |comment" : offset, then hex pairs up to '|'.
        let data = line.split('|').next().unwrap_or("");
        for tok in data.split_whitespace().skip(1) {
            bytes.push(
                u8::from_str_radix(tok, 16).unwrap_or_else(|e| panic!("bad hex {tok:?}: {e}")),
            );
        }
    }
    bytes
}

fn golden(name: &str) -> Vec<u8> {
    hex_block(&format!("<!-- golden: {name} -->"))
}

/// Parses `bytes` as exactly one frame and checks its header.
fn one_frame(bytes: &[u8], opcode: Opcode, flags: u16, id: u64, hint: u32) -> Frame<'_> {
    assert_eq!(&bytes[0..4], b"TERN");
    assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), MAGIC);
    assert_eq!(bytes[4], VERSION);
    let (frame, used) = parse_frame(bytes).unwrap().expect("one whole frame");
    assert_eq!(used, bytes.len(), "the block is exactly one frame");
    assert_eq!(frame.header.opcode, opcode);
    assert_eq!(frame.header.flags, flags);
    assert_eq!(frame.header.request_id, id);
    assert_eq!(frame.header.shard_hint, hint);
    assert_eq!(frame.header.body_len as usize, bytes.len() - HEADER_LEN);
    assert_eq!(frame.header.body_crc32, crc32fast::hash(frame.body));
    frame
}

fn frame(opcode: Opcode, flags: u16, id: u64, hint: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, flags, id, hint, &[body]);
    out
}

fn n(text: &str) -> Value {
    Value::N(Number::parse(text).unwrap())
}

// ---------------------------------------------------------------------------------------
// The examples, built with today's encoder.

/// §9.1: the PutItem item.
fn example_item() -> Item {
    Item::from_attrs([
        ("artist".to_owned(), Value::S("abba".into())),
        ("year".to_owned(), n("1974")),
    ])
}

fn example_request() -> Vec<u8> {
    let body = encode(&PutItemRequest {
        table: "music".into(),
        item: example_item().encode(),
        return_values: ReturnValues::None,
    });
    frame(Opcode::PutItem, 0, 1, 0, &body)
}

fn example_reply() -> Vec<u8> {
    let body = encode(&WriteItemResponse { attributes: None });
    frame(Opcode::PutItem, FLAG_RESPONSE, 1, NO_SHARD_HINT, &body)
}

/// §9.2: an out-of-line attribute name and an out-of-line string value.
fn long_string_item() -> Item {
    Item::from_attrs([
        ("artist".to_owned(), Value::S("abba".into())),
        ("song_title".to_owned(), Value::S("Dancing Queen".into())),
    ])
}

/// §9.3: an M holding an L of N, N, BOOL, NULL and SS.
fn nested_item() -> Item {
    Item::from_attrs([
        ("id".to_owned(), Value::S("x".into())),
        (
            "doc".to_owned(),
            Value::M(vec![Attr {
                name: "list".into(),
                value: Value::L(vec![
                    n("1"),
                    n("-0.25"),
                    Value::Bool(true),
                    Value::Null,
                    Value::Ss(vec!["blue".into(), "red".into()]),
                ]),
            }]),
        ),
    ])
}

/// The key `{"artist": "abba", "year": <year>}` of table `music`.
fn music_key(year: &str) -> Item {
    Item::from_attrs([
        ("artist".to_owned(), Value::S("abba".into())),
        ("year".to_owned(), n(year)),
    ])
}

/// The second item of the page, and the GetItem reply.
fn sos_item() -> Item {
    Item::from_attrs([
        ("artist".to_owned(), Value::S("abba".into())),
        ("title".to_owned(), Value::S("SOS".into())),
        ("year".to_owned(), n("1975")),
    ])
}

/// §9.4: Query with BETWEEN, Limit and ExclusiveStartKey.
fn query_request() -> QueryRequest {
    QueryRequest {
        table: "music".into(),
        partition_key: Value::S("abba".into()),
        sort_key: Some(SortKeyCondition::Between(n("1970"), n("1979"))),
        scan_forward: true,
        limit: Some(10),
        exclusive_start_key: Some(music_key("1973").encode()),
        consistent_read: false,
    }
}

fn query_request_frame() -> Vec<u8> {
    frame(Opcode::Query, 0, 2, 0, &encode(&query_request()))
}

/// §9.5: the page: two items and a LastEvaluatedKey.
fn page_response() -> PageResponse {
    PageResponse {
        items: vec![example_item().encode(), sos_item().encode()],
        count: 2,
        scanned_count: 2,
        last_evaluated_key: Some(music_key("1975").encode()),
    }
}

fn page_response_frame() -> Vec<u8> {
    frame(
        Opcode::Query,
        FLAG_RESPONSE,
        2,
        NO_SHARD_HINT,
        &encode(&page_response()),
    )
}

/// §9.6: GetItem of a table that does not exist, and its error reply.
fn get_unknown_table_request() -> GetItemRequest {
    GetItemRequest {
        table: "nosuch".into(),
        key: music_key("1974").encode(),
        consistent_read: false,
    }
}

fn get_unknown_table_request_frame() -> Vec<u8> {
    frame(
        Opcode::GetItem,
        0,
        3,
        0,
        &encode(&get_unknown_table_request()),
    )
}

fn error_response() -> ErrorResponse {
    ErrorResponse {
        code: ErrorCode::ResourceNotFoundException as u16,
        message: "Requested resource not found: Table: nosuch not found".into(),
    }
}

fn error_response_frame() -> Vec<u8> {
    frame(
        Opcode::GetItem,
        FLAG_RESPONSE | FLAG_ERROR,
        3,
        NO_SHARD_HINT,
        &encode(&error_response()),
    )
}

/// §9.7: GetItem and its FOUND reply.
fn get_item_request() -> GetItemRequest {
    GetItemRequest {
        table: "music".into(),
        key: music_key("1975").encode(),
        consistent_read: true,
    }
}

fn get_item_request_frame() -> Vec<u8> {
    frame(Opcode::GetItem, 0, 4, 0, &encode(&get_item_request()))
}

fn get_item_reply_frame() -> Vec<u8> {
    frame(
        Opcode::GetItem,
        FLAG_RESPONSE | FLAG_FOUND,
        4,
        NO_SHARD_HINT,
        &sos_item().encode(),
    )
}

/// Prints every example in the document's format (run with --ignored --nocapture to
/// regenerate the blocks after a deliberate format change; the comments are by hand).
#[test]
#[ignore]
fn print_example() {
    let examples = [
        ("put-item-request", example_request()),
        ("put-item-reply", example_reply()),
        ("long-string-item", long_string_item().encode()),
        ("nested-item", nested_item().encode()),
        ("query-request", query_request_frame()),
        ("page-response", page_response_frame()),
        (
            "get-unknown-table-request",
            get_unknown_table_request_frame(),
        ),
        ("error-response", error_response_frame()),
        ("get-item-request", get_item_request_frame()),
        ("get-item-reply", get_item_reply_frame()),
    ];
    for (name, bytes) in examples {
        println!("<!-- golden: {name} -->");
        for (i, chunk) in bytes.chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            println!("{:04x}  {}", i * 16, hex.join(" "));
        }
    }
    let h = partition_hash("music", KeyRef::S("abba"));
    println!("partition-hash: {h:#018x}, partition {}", partition_of(h));
}

// ---------------------------------------------------------------------------------------
// §9: the golden blocks, both directions.

#[test]
fn the_documented_put_item_request_decodes() {
    let bytes = golden("put-item-request");
    let frame = one_frame(&bytes, Opcode::PutItem, 0, 1, 0);
    let req = access::<ArchivedPutItemRequest>(frame.body).unwrap();
    assert_eq!(req.table.as_str(), "music");
    assert_eq!(req.return_values, ArchivedReturnValues::None);
    let item = access_item(req.item.as_slice()).unwrap();
    assert_eq!(item.attrs.len(), 2);
    assert_eq!(item.attrs[0].name.as_str(), "artist");
    assert_eq!(item.attrs[1].name.as_str(), "year");
    assert_eq!(Item::decode(req.item.as_slice()).unwrap(), example_item());
    assert_eq!(item_size(item), 17, "§5.4's example");
    assert_eq!(
        bytes,
        example_request(),
        "today's encoder produces the documented bytes"
    );
}

#[test]
fn the_documented_reply_decodes() {
    let bytes = golden("put-item-reply");
    let frame = one_frame(&bytes, Opcode::PutItem, FLAG_RESPONSE, 1, NO_SHARD_HINT);
    assert_eq!(
        decode::<WriteItemResponse>(frame.body).unwrap(),
        WriteItemResponse { attributes: None }
    );
    assert_eq!(bytes, example_reply());
}

#[test]
fn the_documented_out_of_line_strings_decode() {
    let bytes = golden("long-string-item");
    let item = access_item(&bytes).unwrap();
    let name = &item.attrs[1].name;
    assert_eq!(name.as_str(), "song_title");
    // The length fields with their marker bits, and the offsets, as the table says.
    assert_eq!(&bytes[0x28..0x30], &[0x8a, 0, 0, 0, 0xd8, 0xff, 0xff, 0xff]);
    assert_eq!(&bytes[0x31..0x39], &[0x8d, 0, 0, 0, 0xd9, 0xff, 0xff, 0xff]);
    match &item.attrs[1].value {
        ArchivedValue::S(s) => assert_eq!(s.as_str(), "Dancing Queen"),
        _ => panic!("attrs[1] is an S"),
    }
    assert_eq!(Item::decode(&bytes).unwrap(), long_string_item());
    assert_eq!(item_size(item), 33);
    assert_eq!(bytes, long_string_item().encode());
}

#[test]
fn the_documented_nested_item_decodes() {
    let bytes = golden("nested-item");
    let item = access_item(&bytes).unwrap();
    assert_eq!(item.attrs[0].name.as_str(), "doc");
    let ArchivedValue::M(entries) = &item.attrs[0].value else {
        panic!("doc is an M");
    };
    let ArchivedValue::L(list) = &entries[0].value else {
        panic!("doc.list is an L");
    };
    assert_eq!(list.len(), 5);
    assert!(matches!(list[2], ArchivedValue::Bool(true)));
    assert!(matches!(list[3], ArchivedValue::Null));
    assert_eq!(Item::decode(&bytes).unwrap(), nested_item());
    assert_eq!(item_size(item), 35);
    assert_eq!(bytes, nested_item().encode());
}

#[test]
fn the_documented_query_request_decodes() {
    let bytes = golden("query-request");
    let frame = one_frame(&bytes, Opcode::Query, 0, 2, 0);
    let req = access::<ArchivedQueryRequest>(frame.body).unwrap();
    assert_eq!(req.table.as_str(), "music");
    assert!(req.scan_forward);
    assert!(!req.consistent_read);
    let ArchivedSortKeyCondition::Between(low, high) = req.sort_key.as_ref().unwrap() else {
        panic!("a BETWEEN condition");
    };
    assert!(matches!(low, ArchivedValue::N(x) if x.as_str() == "1970"));
    assert!(matches!(high, ArchivedValue::N(x) if x.as_str() == "1979"));
    let esk = req.exclusive_start_key.as_ref().unwrap();
    assert_eq!(Item::decode(esk.as_slice()).unwrap(), music_key("1973"));
    assert_eq!(decode::<QueryRequest>(frame.body).unwrap(), query_request());
    // The byte table: the root is the last 53 bytes, starting at body offset 0x2a.
    assert_eq!(frame.body.len() - size_of::<ArchivedQueryRequest>(), 0x2a);
    assert_eq!(bytes, query_request_frame());
}

#[test]
fn the_documented_page_decodes() {
    let bytes = golden("page-response");
    let frame = one_frame(&bytes, Opcode::Query, FLAG_RESPONSE, 2, NO_SHARD_HINT);
    let page = decode::<PageResponse>(frame.body).unwrap();
    assert_eq!(page, page_response());
    assert_eq!(Item::decode(&page.items[0]).unwrap(), example_item());
    assert_eq!(Item::decode(&page.items[1]).unwrap(), sos_item());
    assert_eq!(
        Item::decode(page.last_evaluated_key.as_ref().unwrap()).unwrap(),
        music_key("1975")
    );
    assert_eq!(bytes, page_response_frame());
}

#[test]
fn the_documented_error_response_decodes() {
    let request = golden("get-unknown-table-request");
    let frame = one_frame(&request, Opcode::GetItem, 0, 3, 0);
    assert_eq!(
        decode::<GetItemRequest>(frame.body).unwrap(),
        get_unknown_table_request()
    );
    assert_eq!(request, get_unknown_table_request_frame());

    let bytes = golden("error-response");
    let frame = one_frame(
        &bytes,
        Opcode::GetItem,
        FLAG_RESPONSE | FLAG_ERROR,
        3,
        NO_SHARD_HINT,
    );
    let err = decode::<ErrorResponse>(frame.body).unwrap();
    assert_eq!(err, error_response());
    assert_eq!(
        ErrorCode::from_u16(err.code).map(ErrorCode::name),
        Some("ResourceNotFoundException")
    );
    assert_eq!(bytes, error_response_frame());
}

#[test]
fn the_documented_get_item_and_found_reply_decode() {
    let request = golden("get-item-request");
    let frame = one_frame(&request, Opcode::GetItem, 0, 4, 0);
    let req = access::<ArchivedGetItemRequest>(frame.body).unwrap();
    assert!(req.consistent_read);
    assert_eq!(
        decode::<GetItemRequest>(frame.body).unwrap(),
        get_item_request()
    );
    assert_eq!(request, get_item_request_frame());

    let reply = golden("get-item-reply");
    let frame = one_frame(
        &reply,
        Opcode::GetItem,
        FLAG_RESPONSE | FLAG_FOUND,
        4,
        NO_SHARD_HINT,
    );
    // The body is the item archive itself, not a message.
    assert_eq!(Item::decode(frame.body).unwrap(), sos_item());
    assert_eq!(reply, get_item_reply_frame());
    // Not found: the header alone, CRC of the empty body 0.
    let empty = frame_bytes_not_found();
    assert_eq!(empty.len(), HEADER_LEN);
    assert_eq!(&empty[6..8], &[0x01, 0x00]);
    assert_eq!(&empty[16..24], &[0; 8]);
}

fn frame_bytes_not_found() -> Vec<u8> {
    frame(Opcode::GetItem, FLAG_RESPONSE, 4, NO_SHARD_HINT, &[])
}

/// The value after the last `= ` on the block line starting with `label`.
fn block_value(marker: &str, label: &str) -> &'static str {
    let line = block_text(marker)
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line"));
    line.rsplit("= ").next().unwrap().trim()
}

#[test]
fn the_documented_partition_hash_is_the_routing_hash() {
    let marker = "<!-- golden: partition-hash -->";
    let input = hex_block(marker);
    assert_eq!(input, b"music\0Sabba");
    let hash = partition_hash("music", KeyRef::S("abba"));
    assert_eq!(xxhash_rust::xxh3::xxh3_64(&input), hash);
    let documented = block_value(marker, "xxh3_64");
    assert_eq!(
        u64::from_str_radix(documented.trim_start_matches("0x"), 16).unwrap(),
        hash
    );
    assert_eq!(
        hash, 0x48e4_893c_12e6_1567,
        "pinned: re-routes every key if changed"
    );
    let partition: u32 = block_value(marker, "partition").parse().unwrap();
    assert_eq!(partition_of(hash), partition);
    assert_eq!(partition, (hash >> 54) as u32);
    assert_eq!(partition, 291);
}

// ---------------------------------------------------------------------------------------
// §4: the format rules the document states.

#[test]
fn archived_sizes_match_the_field_tables() {
    let sizes = [
        ("Value", size_of::<ArchivedValue>(), 9),
        ("Attr", size_of::<ArchivedAttr>(), 17),
        ("Item", size_of::<ArchivedItem>(), 8),
        ("Number", size_of::<ArchivedNumber>(), 8),
        ("ScalarType", size_of::<ArchivedScalarType>(), 1),
        ("KeyAttr", size_of::<ArchivedKeyAttr>(), 9),
        ("KeySchema", size_of::<ArchivedKeySchema>(), 19),
        ("ErrorResponse", size_of::<ArchivedErrorResponse>(), 10),
        ("HelloRequest", size_of::<ArchivedHelloRequest>(), 8),
        ("ShardInfo", size_of::<ArchivedShardInfo>(), 10),
        ("HelloResponse", size_of::<ArchivedHelloResponse>(), 27),
        ("TableStatus", size_of::<ArchivedTableStatus>(), 1),
        (
            "TableDescription",
            size_of::<ArchivedTableDescription>(),
            52,
        ),
        (
            "CreateTableRequest",
            size_of::<ArchivedCreateTableRequest>(),
            27,
        ),
        ("TableRequest", size_of::<ArchivedTableRequest>(), 8),
        ("TableResponse", size_of::<ArchivedTableResponse>(), 52),
        (
            "ListTablesRequest",
            size_of::<ArchivedListTablesRequest>(),
            14,
        ),
        (
            "ListTablesResponse",
            size_of::<ArchivedListTablesResponse>(),
            17,
        ),
        ("StatsRequest", size_of::<ArchivedStatsRequest>(), 5),
        ("Counter", size_of::<ArchivedCounter>(), 16),
        ("ShardStats", size_of::<ArchivedShardStats>(), 12),
        ("StatsResponse", size_of::<ArchivedStatsResponse>(), 8),
        (
            "MembershipChange",
            size_of::<ArchivedMembershipChange>(),
            17,
        ),
        (
            "MembershipRequest",
            size_of::<ArchivedMembershipRequest>(),
            17,
        ),
        ("ShardVoters", size_of::<ArchivedShardVoters>(), 12),
        (
            "MembershipResponse",
            size_of::<ArchivedMembershipResponse>(),
            8,
        ),
        ("ReturnValues", size_of::<ArchivedReturnValues>(), 1),
        ("PutItemRequest", size_of::<ArchivedPutItemRequest>(), 17),
        ("GetItemRequest", size_of::<ArchivedGetItemRequest>(), 17),
        (
            "DeleteItemRequest",
            size_of::<ArchivedDeleteItemRequest>(),
            17,
        ),
        (
            "WriteItemResponse",
            size_of::<ArchivedWriteItemResponse>(),
            9,
        ),
        (
            "SortKeyCondition",
            size_of::<ArchivedSortKeyCondition>(),
            19,
        ),
        ("QueryRequest", size_of::<ArchivedQueryRequest>(), 53),
        ("ScanRequest", size_of::<ArchivedScanRequest>(), 31),
        ("PageResponse", size_of::<ArchivedPageResponse>(), 25),
        (
            "KeysAndAttributes",
            size_of::<ArchivedKeysAndAttributes>(),
            17,
        ),
        (
            "BatchGetItemRequest",
            size_of::<ArchivedBatchGetItemRequest>(),
            8,
        ),
        ("TableItems", size_of::<ArchivedTableItems>(), 16),
        (
            "BatchGetItemResponse",
            size_of::<ArchivedBatchGetItemResponse>(),
            16,
        ),
        ("WriteRequest", size_of::<ArchivedWriteRequest>(), 9),
        (
            "TableWriteRequests",
            size_of::<ArchivedTableWriteRequests>(),
            16,
        ),
        (
            "BatchWriteItemRequest",
            size_of::<ArchivedBatchWriteItemRequest>(),
            8,
        ),
        (
            "BatchWriteItemResponse",
            size_of::<ArchivedBatchWriteItemResponse>(),
            8,
        ),
    ];
    for (name, actual, documented) in sizes {
        assert_eq!(actual, documented, "size of {name}");
        if documented > 1 && !["Value", "Attr", "Item", "Number"].contains(&name) {
            assert!(
                DOC.contains(&format!("`{name}` ({documented}")),
                "the doc gives {name} as {documented} bytes"
            );
        }
    }
}

#[test]
fn string_forms_and_length_fields_are_as_documented() {
    let field = |len: usize| {
        let body = encode(&TableRequest {
            name: "x".repeat(len),
        });
        body[body.len() - 8..].to_vec()
    };
    assert_eq!(field(0), [0xff; 8], "empty: all FF");
    assert_eq!(&field(3)[3..], [0xff; 5], "inline, FF-padded");
    assert_eq!(field(8), [b'x'; 8], "8 bytes: inline, no padding");
    for (len, bytes) in [
        (9, "89 00 00 00"),
        (13, "8d 00 00 00"),
        (100, "a4 01 00 00"),
        (300, "ac 04 00 00"),
        (70000, "b0 45 04 00"),
    ] {
        let f = field(len);
        let hex: Vec<String> = f[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.join(" "), bytes, "length field of {len}");
        assert!(
            DOC.contains(&format!("{len} → `{bytes}`")),
            "doc lists {len}"
        );
        // The documented decoding of the length field.
        let raw = u32::from_le_bytes(f[..4].try_into().unwrap());
        assert_eq!(raw & 0xC0, 0x80, "marker bits 10");
        assert_eq!(((raw & 0x3F) | ((raw >> 8) << 6)) as usize, len);
        // The offset is relative to the string field's first byte: the bytes sit right
        // before the field here (the body is the string bytes, then the root).
        assert_eq!(
            i32::from_le_bytes(f[4..].try_into().unwrap()),
            -(len as i32)
        );
    }
}

fn put_i32(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 4].copy_from_slice(&i32::try_from(v).unwrap().to_le_bytes());
}

fn rejected(bytes: &[u8]) -> String {
    match Item::decode(bytes) {
        Err(ProtocolError::InvalidArchive(msg)) => msg,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// §4.7: the validator accepts any layout that respects the order rule (gaps and
/// leading bytes included), and rejects in-bounds, non-overlapping layouts that do not.
#[test]
fn the_validator_enforces_the_documented_object_order() {
    // The §9.2 item: [song_title 10][Dancing Queen 13][attrs 34 @0x17][root 8 @0x39].
    let good = long_string_item().encode();
    assert_eq!(good, golden("long-string-item"));

    // Leading bytes no object claims: accepted.
    let mut lead = vec![0xEE; 5];
    lead.extend_from_slice(&good);
    assert_eq!(Item::decode(&lead).unwrap(), long_string_item());

    // A gap between the string bytes and the attribute vector: accepted.
    let mut gap = good[..0x17].to_vec();
    gap.extend_from_slice(&[0xAB; 4]);
    gap.extend_from_slice(&good[0x17..]);
    put_i32(&mut gap, 0x2c + 4, 0x00 - 0x2c);
    put_i32(&mut gap, 0x35 + 4, 0x0a - 0x35);
    assert_eq!(Item::decode(&gap).unwrap(), long_string_item());

    // Siblings swapped (the value's bytes before the name's): in bounds, disjoint, and
    // rejected, since the name is validated first.
    let mut swapped = good.clone();
    swapped[0..13].copy_from_slice(b"Dancing Queen");
    swapped[13..23].copy_from_slice(b"song_title");
    put_i32(&mut swapped, 0x2c, 13 - 0x28);
    put_i32(&mut swapped, 0x35, -0x31);
    rejected(&swapped);

    // Data after the object that points to it (between the attribute vector and the
    // root): rejected.
    let mut after = b"Dancing Queen".to_vec();
    let attrs_at = after.len();
    after.extend_from_slice(&good[0x17..0x39]);
    let name_at = after.len();
    after.extend_from_slice(b"song_title");
    let root_at = after.len();
    after.extend_from_slice(&good[0x39..]);
    let name_field = attrs_at + 17;
    put_i32(
        &mut after,
        name_field + 4,
        name_at as i64 - name_field as i64,
    );
    put_i32(&mut after, name_field + 13, -((name_field + 9) as i64));
    put_i32(&mut after, root_at, attrs_at as i64 - root_at as i64);
    rejected(&after);

    // Two strings sharing bytes: rejected.
    let twice = Item::from_attrs([
        ("a".to_owned(), Value::S("Dancing Queen".into())),
        ("b".to_owned(), Value::S("Dancing Queen".into())),
    ]);
    let mut shared = twice.encode();
    assert_eq!(Item::decode(&shared).unwrap(), twice);
    let second = 26 + 17 + 9; // attrs at 26; attrs[1].value's string field
    put_i32(&mut shared, second + 4, -(second as i64));
    rejected(&shared);
}

#[test]
fn empty_vectors_must_point_into_the_window() {
    let ok = encode(&BatchGetItemResponse::default());
    // Both empty vectors point at byte 0, the end of the (no) data before the root.
    assert_eq!(
        ok,
        [0, 0, 0, 0, 0, 0, 0, 0, 0xf8, 0xff, 0xff, 0xff, 0, 0, 0, 0]
    );
    assert!(access::<ArchivedBatchGetItemResponse>(&ok).is_ok());
    let mut self_pointing = ok.clone();
    put_i32(&mut self_pointing, 8, 0);
    assert!(access::<ArchivedBatchGetItemResponse>(&self_pointing).is_err());
}

#[test]
fn validation_rejects_what_the_document_lists() {
    let msg = |r: Result<&ArchivedGetItemRequest, ProtocolError>| match r {
        Err(ProtocolError::InvalidArchive(m)) => m,
        Ok(_) => panic!("accepted"),
        Err(e) => panic!("{e:?}"),
    };
    let body = encode(&get_item_request());
    let n = body.len();
    // Shorter than the root.
    msg(access::<ArchivedGetItemRequest>(&body[..10]));
    // A bool byte other than 00/01.
    let mut bad = body.clone();
    bad[n - 1] = 2;
    assert!(msg(access(&bad)).contains("bool"));
    // An offset out of bounds.
    let mut bad = body.clone();
    put_i32(&mut bad, n - 9, 0x7000_0000);
    msg(access(&bad));
    // Invalid UTF-8 in an inline string.
    let mut bad = body.clone();
    bad[n - 17] = 0xc3;
    bad[n - 16] = 0x28;
    assert!(msg(access(&bad)).contains("UTF-8"));
    // A bad enum tag.
    let mut put = encode(&PutItemRequest {
        table: "music".into(),
        item: vec![],
        return_values: ReturnValues::AllOld,
    });
    let last = put.len() - 1;
    put[last] = 7;
    assert!(access::<ArchivedPutItemRequest>(&put).is_err());
    // An out-of-line string of 8 bytes or fewer.
    let mut short = b"abc".to_vec();
    short.extend_from_slice(&[0x83, 0, 0, 0]);
    short.extend_from_slice(&(-3i32).to_le_bytes());
    assert!(access::<ArchivedTableRequest>(&short).is_err());
}

#[test]
fn the_validator_follows_at_most_39_nested_objects() {
    // root + attribute vector + one vector per L level: 2 + depth objects on one chain.
    let nested = |depth: usize| {
        let mut v = Value::Null;
        for _ in 0..depth {
            v = Value::L(vec![v]);
        }
        Item {
            attrs: vec![Attr {
                name: "a".into(),
                value: v,
            }],
        }
        .encode()
    };
    assert_eq!(ARCHIVE_DEPTH_MAX, 40);
    let deepest = ARCHIVE_DEPTH_MAX - 1 - 2;
    assert!(access_item(&nested(deepest)).is_ok());
    assert!(access_item(&nested(deepest + 1)).is_err());
}

/// §5.2's table of inputs and canonical forms.
#[test]
fn canonical_numbers_are_as_documented() {
    for (inputs, canonical) in [
        (&["1.0", "1E+0", "001", "+1"][..], "1"),
        (&["-0", "0.000"][..], "0"),
        (&["1.5e3"][..], "1500"),
        (&["12.50"][..], "12.5"),
        (&["-.5"][..], "-0.5"),
        (&["1e-3"][..], "0.001"),
        (&["5."][..], "5"),
    ] {
        for input in inputs {
            assert_eq!(Number::parse(input).unwrap().as_str(), canonical, "{input}");
        }
        assert!(Number::is_canonical(canonical));
    }
    for refused in ["1E126", "1E-131", &"1".repeat(39)] {
        let e = Number::parse(refused).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
    }
    for not_canonical in ["1.0", "+1", "1e3", "01", "-0", ".5", "5.", "0.50"] {
        assert!(!Number::is_canonical(not_canonical), "{not_canonical}");
    }
}
