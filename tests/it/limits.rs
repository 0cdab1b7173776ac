//! DynamoDB's bounds and tern's own at their edges, through a real `ternd`: a reply never
//! outgrows a frame (BatchGetItem returns UnprocessedKeys instead), a table whose index is
//! full refuses writes with a typed error and keeps serving, and requests past the
//! encoding bounds get ValidationException on a connection that stays usable.

use std::collections::BTreeMap;

use tern_client::{
    BatchGetItemRequest, BatchWriteItemRequest, ErrorCode, Item, KeysAndAttributes, ReturnValues,
    ScalarType, TableWriteRequests, Value, WriteRequest,
};
use tern_protocol::frame::Opcode;
use tern_protocol::limits::{
    BATCH_GET_RESPONSE_MAX_BYTES, ITEM_ENCODED_MAX_BYTES, ITEM_SIZE_MAX_BYTES,
    KEY_ITEM_ENCODED_MAX_BYTES,
};
use tern_protocol::messages::{GetItemRequest, encode};

use crate::harness::*;

fn key(i: usize) -> Item {
    item(&[("id", s(&format!("k{i:03}")))])
}

/// An item of exactly DynamoDB's largest size: "id" + "k000" + "pad" + the padding.
fn big(i: usize) -> Item {
    let pad = ITEM_SIZE_MAX_BYTES - "id".len() - 4 - "pad".len();
    item(&[
        ("id", s(&format!("k{i:03}"))),
        (
            "pad",
            s(&char::from(b'a' + (i % 26) as u8).to_string().repeat(pad)),
        ),
    ])
}

#[test]
fn batch_get_of_100_items_of_400_kb_over_two_shards_stays_within_16_mib() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("big", schema(("id", ScalarType::S), None))
        .unwrap();
    let mut owners = [0usize; 2];
    for i in 0..100 {
        c.put_item("big", &big(i)).unwrap();
        let shard = c.shard_for("big", &key(i).encode()).unwrap().unwrap();
        owners[shard as usize] += 1;
    }
    assert!(
        owners[0] > 0 && owners[1] > 0,
        "keys on both shards: {owners:?}"
    );

    // 40 MB of items asked for at once: each reply carries at most 16 MiB of them and
    // hands the rest back; asking again for what is left gets everything, exactly.
    let mut pending: Vec<Vec<u8>> = (0..100).map(|i| key(i).encode()).collect();
    let mut got: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 10, "no progress: {} keys left", pending.len());
        let resp = c
            .batch_get(&BatchGetItemRequest {
                tables: vec![KeysAndAttributes {
                    table: "big".into(),
                    keys: std::mem::take(&mut pending),
                    consistent_read: false,
                }],
            })
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        let items: Vec<&Vec<u8>> = resp.responses.iter().flat_map(|t| &t.items).collect();
        assert!(!items.is_empty(), "round {rounds} returned nothing");
        let bytes: usize = items.iter().map(|i| i.len() + 8).sum();
        assert!(
            bytes <= BATCH_GET_RESPONSE_MAX_BYTES,
            "round {rounds}: {bytes} bytes of items"
        );
        for bytes in items {
            let it = Item::decode(bytes).unwrap();
            let id = it.get("id").cloned().expect("an id");
            got.insert(
                Item::from_attrs([("id".to_owned(), id)]).encode(),
                bytes.clone(),
            );
        }
        for unprocessed in resp.unprocessed_keys {
            assert_eq!(unprocessed.table, "big");
            pending.extend(unprocessed.keys);
        }
    }
    assert!(
        rounds >= 3,
        "40 MB cannot come back in {rounds} replies of 16 MiB"
    );
    assert_eq!(got.len(), 100);
    for i in 0..100 {
        assert_eq!(got[&key(i).encode()], big(i).encode(), "item {i}");
    }
}

#[test]
fn a_full_index_refuses_new_items_with_limit_exceeded_and_keeps_serving() {
    // Index keys here are 8 (hash) + 2 (length) + 4 ("k000") = 14 bytes: 100 fit in 1400.
    let flags = ["--index-key-bytes-max", "1400"];
    let data = std::rc::Rc::new(tempfile::tempdir().unwrap());
    let server = Server::start_in(data, 1, "uring", &flags);
    let mut c = server.client();
    c.create_table("tiny", schema(("id", ScalarType::S), None))
        .unwrap();
    for i in 0..100 {
        c.put_item("tiny", &key(i)).unwrap();
    }
    let e = c.put_item("tiny", &key(100)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitExceededException), "{e}");
    assert!(e.to_string().contains("index"), "{e}");
    // Nothing of the refused write exists; the rest serves as before.
    assert_eq!(c.get_item("tiny", &key(100), true).unwrap(), None);
    let replaced = item(&[("id", s("k007")), ("v", n(7))]);
    c.put_item("tiny", &replaced).unwrap();
    c.delete_item("tiny", &key(8), ReturnValues::None).unwrap();
    c.put_item("tiny", &key(100)).unwrap();
    assert_eq!(
        c.put_item("tiny", &key(101)).unwrap_err().code(),
        Some(ErrorCode::LimitExceededException)
    );
    // A batch with a new key is refused whole: its write of an existing key is not
    // applied either.
    let batch = BatchWriteItemRequest {
        tables: vec![TableWriteRequests {
            table: "tiny".into(),
            requests: vec![
                WriteRequest::Put(item(&[("id", s("k007")), ("v", n(8))]).encode()),
                WriteRequest::Put(key(101).encode()),
            ],
        }],
    };
    let e = c.batch_write(&batch).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitExceededException), "{e}");
    assert_eq!(
        c.get_item("tiny", &key(7), true).unwrap(),
        Some(replaced.clone())
    );
    drop(c);
    let data = server.data.clone();
    assert!(server.stop().success());

    // A restart recovers every acknowledged write and keeps refusing.
    let server = Server::start_in(data, 1, "uring", &flags);
    let mut c = server.client();
    assert_eq!(c.describe_table("tiny").unwrap().item_count, 100);
    assert_eq!(c.get_item("tiny", &key(7), true).unwrap(), Some(replaced));
    assert_eq!(c.get_item("tiny", &key(8), true).unwrap(), None);
    assert_eq!(c.get_item("tiny", &key(100), true).unwrap(), Some(key(100)));
    assert_eq!(
        c.put_item("tiny", &key(101)).unwrap_err().code(),
        Some(ErrorCode::LimitExceededException)
    );
}

#[test]
fn requests_past_the_encoding_bounds_get_validation_errors_on_a_usable_connection() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("enc", schema(("id", ScalarType::S), None))
        .unwrap();
    let validation = |r: Result<(), tern_client::Error>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(
            e.code(),
            Some(ErrorCode::ValidationException),
            "{what}: {e}"
        );
    };

    // 250 k one-character attribute names with empty values: 250 KB as DynamoDB counts
    // it, over 4 MB encoded.
    let mut attrs: Vec<(String, Value)> = (0..250_000)
        .map(|i| (format!("a{i}"), Value::S(String::new())))
        .collect();
    attrs.push(("id".into(), s("k")));
    let tiny_attrs = Item::from_attrs(attrs);
    assert!(tiny_attrs.encode().len() > ITEM_ENCODED_MAX_BYTES);
    validation(
        c.put_item("enc", &tiny_attrs),
        "an item over the encoded bound",
    );

    // Five items of 3.4 MB encoded each (lists of 380 k empty strings, 380 KB to
    // DynamoDB): each is fine alone, together over BatchWriteItem's 16 MB.
    let list = |i: usize| {
        let l = Value::L((0..380_000).map(|_| Value::S(String::new())).collect());
        item(&[("id", s(&format!("l{i}"))), ("l", l)])
    };
    c.put_item("enc", &list(0)).unwrap();
    let requests: Vec<WriteRequest> = (1..6)
        .map(|i| WriteRequest::Put(list(i).encode()))
        .collect();
    let batch = BatchWriteItemRequest {
        tables: vec![TableWriteRequests {
            table: "enc".into(),
            requests,
        }],
    };
    validation(
        c.batch_write(&batch).map(|_| ()),
        "a BatchWriteItem over 16 MB",
    );
    for i in 1..6 {
        assert_eq!(
            c.get_item("enc", &item(&[("id", s(&format!("l{i}")))]), true)
                .unwrap(),
            None
        );
    }

    // A key blob padded past any real key's size (valid archive, junk in front).
    let mut blob = vec![0xAA; KEY_ITEM_ENCODED_MAX_BYTES];
    blob.extend_from_slice(&key(1).encode());
    let body = encode(&GetItemRequest {
        table: "enc".into(),
        key: blob,
        consistent_read: false,
    });
    validation(
        c.call(None, Opcode::GetItem, &body).map(|_| ()),
        "a padded key",
    );

    // A table name of 20 MB: not found, and the error does not echo it whole.
    let e = c.describe_table(&"t".repeat(20 << 20)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ResourceNotFoundException), "{e}");
    assert!(e.to_string().len() < 1024, "{} bytes", e.to_string().len());

    // The connection and the server still serve.
    c.put_item("enc", &key(1)).unwrap();
    assert_eq!(c.get_item("enc", &key(1), false).unwrap(), Some(key(1)));
    let l0 = item(&[("id", s("l0"))]);
    assert_eq!(c.get_item("enc", &l0, false).unwrap(), Some(list(0)));
}
