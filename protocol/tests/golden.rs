//! docs/wire-protocol.md's worked example, decoded from the document itself.
//!
//! The hex blocks in the document are the bytes of a PutItem request and of its reply.
//! This test parses them out of the Markdown, decodes them field by field, and checks that
//! encoding the same request today yields exactly the same bytes: the document and the
//! code cannot drift apart.

use tern_protocol::frame::{
    FLAG_RESPONSE, HEADER_LEN, MAGIC, NO_SHARD_HINT, Opcode, VERSION, parse_frame, write_frame,
};
use tern_protocol::messages::{
    ArchivedPutItemRequest, ArchivedReturnValues, PutItemRequest, ReturnValues, WriteItemResponse,
    access, encode,
};
use tern_protocol::value::access_item;
use tern_protocol::{Item, Number, Value};

const DOC: &str = include_str!("../../docs/wire-protocol.md");

/// The bytes of the fenced block that follows the line containing `marker`.
fn hex_block(marker: &str) -> Vec<u8> {
    let start = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in the doc"));
    let rest = &DOC[start..];
    let open = rest
        .find("```text\n")
        .expect("a ```text block after the marker")
        + 8;
    let close = rest[open..].find("```").expect("block end") + open;
    let mut bytes = Vec::new();
    for line in rest[open..close].lines() {
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

fn example_item() -> Item {
    Item::from_attrs([
        ("artist".to_owned(), Value::S("abba".into())),
        ("year".to_owned(), Value::N(Number::parse("1974").unwrap())),
    ])
}

fn example_request() -> Vec<u8> {
    let body = encode(&PutItemRequest {
        table: "music".into(),
        item: example_item().encode(),
        return_values: ReturnValues::None,
    });
    let mut frame = Vec::new();
    write_frame(&mut frame, Opcode::PutItem, 0, 1, 0, &[&body]);
    frame
}

fn example_reply() -> Vec<u8> {
    let body = encode(&WriteItemResponse { attributes: None });
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        Opcode::PutItem,
        FLAG_RESPONSE,
        1,
        NO_SHARD_HINT,
        &[&body],
    );
    frame
}

/// Prints the example in the document's format (run with --ignored --nocapture to
/// regenerate the blocks after a deliberate format change).
#[test]
#[ignore]
fn print_example() {
    for (name, bytes) in [("request", example_request()), ("reply", example_reply())] {
        println!("{name}:");
        for (i, chunk) in bytes.chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            println!("{:04x}  {}", i * 16, hex.join(" "));
        }
    }
}

#[test]
fn the_documented_put_item_request_decodes() {
    let bytes = hex_block("<!-- golden: put-item-request -->");
    assert_eq!(&bytes[0..4], b"TERN");
    assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), MAGIC);
    assert_eq!(bytes[4], VERSION);
    let (frame, used) = parse_frame(&bytes).unwrap().expect("one whole frame");
    assert_eq!(used, bytes.len());
    assert_eq!(frame.header.opcode, Opcode::PutItem);
    assert_eq!(frame.header.request_id, 1);
    assert_eq!(frame.header.shard_hint, 0);
    assert_eq!(frame.header.body_len as usize, bytes.len() - HEADER_LEN);
    let req = access::<ArchivedPutItemRequest>(frame.body).unwrap();
    assert_eq!(req.table.as_str(), "music");
    assert_eq!(req.return_values, ArchivedReturnValues::None);
    let item = access_item(req.item.as_slice()).unwrap();
    assert_eq!(item.attrs.len(), 2);
    assert_eq!(item.attrs[0].name.as_str(), "artist");
    assert_eq!(item.attrs[1].name.as_str(), "year");
    assert_eq!(Item::decode(req.item.as_slice()).unwrap(), example_item());
    assert_eq!(
        bytes,
        example_request(),
        "today's encoder produces the documented bytes"
    );
}

#[test]
fn the_documented_reply_decodes() {
    let bytes = hex_block("<!-- golden: put-item-reply -->");
    let (frame, used) = parse_frame(&bytes).unwrap().expect("one whole frame");
    assert_eq!(used, bytes.len());
    assert_eq!(frame.header.opcode, Opcode::PutItem);
    assert_eq!(frame.header.flags, FLAG_RESPONSE);
    assert_eq!(frame.header.request_id, 1);
    assert_eq!(frame.header.shard_hint, NO_SHARD_HINT);
    assert_eq!(bytes, example_reply());
}
