//! docs/log-format.md's worked example, decoded from the document itself: the hex blocks
//! are parsed out of the Markdown, decoded field by field, and re-encoded from the same
//! inputs today, so the document and the code cannot drift apart.

use tern_protocol::keys::{KeyRef, encode_index_key, partition_hash};
use tern_protocol::validate::item_size;
use tern_protocol::value::access_item;
use tern_protocol::{Item, Number, Value};
use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::format::{
    Parsed, RECORD_HEADER_LEN, Record, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader,
    encode_record, parse_record,
};

const DOC: &str = include_str!("../../docs/log-format.md");

/// The bytes of the first ```text block after the line containing `marker`.
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
        // "0000  54 45 ...  |comment": an offset, then hex pairs up to '|'.
        let data = line.split('|').next().unwrap_or("");
        for tok in data.split_whitespace().skip(1) {
            bytes.push(u8::from_str_radix(tok, 16).unwrap_or_else(|e| panic!("hex {tok:?}: {e}")));
        }
    }
    bytes
}

fn music() -> TableDesc {
    TableDesc {
        table_id: 1,
        name: "music".into(),
        partition_key: KeyAttrDesc {
            name: "artist".into(),
            ty: KeyType::S,
        },
        sort_key: None,
        creation_time_ms: 1_764_000_000_000,
    }
}

fn abba() -> (Vec<u8>, Vec<u8>) {
    let item = Item::from_attrs([
        ("artist".to_owned(), Value::S("abba".into())),
        ("year".to_owned(), Value::N(Number::parse("1974").unwrap())),
    ]);
    let mut key = Vec::new();
    let pk = KeyRef::S("abba");
    encode_index_key(partition_hash("music", pk), pk, None, &mut key);
    (key, item.encode())
}

fn record(bytes: &[u8]) -> Record<'_> {
    match parse_record(bytes) {
        Ok(Parsed::Record(r)) => {
            assert_eq!(
                r.encoded_len(),
                bytes.len(),
                "the block is exactly one record"
            );
            r
        }
        other => panic!("not a record: {other:?}"),
    }
}

fn encoded(r: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(r, &mut out);
    out
}

#[test]
fn the_segment_header_example_decodes_and_reencodes() {
    let doc = hex_block("Segment header (offset 0");
    assert_eq!(doc.len(), SEGMENT_HEADER_LEN);
    let h = SegmentHeader::decode(&doc).expect("valid header");
    let want = SegmentHeader {
        segment_id: 1,
        segment_size: 64 << 20,
        first_index: 1,
        next_table_id: 1,
        last_entry: 0,
        last_entry_term: 0,
    };
    assert_eq!(h, want);
    let mut again = Vec::new();
    want.encode(&mut again);
    assert_eq!(again, doc);
}

#[test]
fn the_record_examples_decode_and_reencode() {
    let create = hex_block("CreateTable record (offset 64");
    let r = record(&create);
    assert_eq!(
        (
            r.kind,
            r.flags,
            r.table_id,
            r.term,
            r.index,
            r.size_bytes,
            r.key
        ),
        (RecordKind::CreateTable, 0, 1, 1, 1, 0, &[][..])
    );
    assert_eq!(TableDesc::decode(r.value).expect("descriptor"), music());
    assert_eq!(
        encoded(&Record {
            value: &music().encode(),
            ..r
        }),
        create
    );

    let (key, item) = abba();
    let put = hex_block("Put record (offset 200");
    let r = record(&put);
    assert_eq!((r.kind, r.table_id, r.index), (RecordKind::Put, 1, 2));
    assert_eq!(r.key, key.as_slice());
    assert_eq!(
        r.value,
        item.as_slice(),
        "the value is the client's item bytes"
    );
    let size = item_size(access_item(&item).expect("item"));
    assert_eq!(r.size_bytes as usize, size);
    assert_eq!(size, 17, "the document says 17");
    assert_eq!(
        encoded(&Record {
            kind: RecordKind::Put,
            flags: 0,
            table_id: 1,
            term: 1,
            index: 2,
            entry: 0,
            size_bytes: 17,
            key: &key,
            value: &item,
        }),
        put
    );

    let delete = hex_block("Delete record (offset 304");
    let r = record(&delete);
    assert_eq!(
        (r.kind, r.index, r.key, r.value),
        (RecordKind::Delete, 3, key.as_slice(), &[][..])
    );
    assert_eq!(delete.len(), RECORD_HEADER_LEN + key.len());

    // The offsets the document states follow from the lengths.
    assert_eq!(SEGMENT_HEADER_LEN + create.len(), 200);
    assert_eq!(200 + put.len(), 304);
}

/// Prints the worked example's blocks in the document's layout (run with --ignored
/// --nocapture when the format changes, then annotate).
#[test]
#[ignore]
fn print_the_worked_example() {
    let dump = |name: &str, b: &[u8]| {
        println!("{name}");
        for (i, c) in b.chunks(16).enumerate() {
            let hex: Vec<String> = c.iter().map(|x| format!("{x:02x}")).collect();
            println!("{:04x}  {}", i * 16, hex.join(" "));
        }
    };
    let mut h = Vec::new();
    SegmentHeader {
        segment_id: 1,
        segment_size: 64 << 20,
        first_index: 1,
        next_table_id: 1,
        last_entry: 0,
        last_entry_term: 0,
    }
    .encode(&mut h);
    dump("header", &h);
    let v = music().encode();
    let r = Record {
        kind: RecordKind::CreateTable,
        flags: 0,
        table_id: 1,
        term: 1,
        index: 1,
        entry: 0,
        size_bytes: 0,
        key: &[],
        value: &v,
    };
    dump("create", &encoded(&r));
    let (key, item) = abba();
    dump(
        "put",
        &encoded(&Record {
            kind: RecordKind::Put,
            index: 2,
            size_bytes: 17,
            key: &key,
            value: &item,
            ..r
        }),
    );
    dump(
        "delete",
        &encoded(&Record {
            kind: RecordKind::Delete,
            index: 3,
            key: &key,
            value: &[],
            ..r
        }),
    );
}
