//! Single-item operations, batches and routing.

use std::net::SocketAddr;
use std::time::Duration;

use tern_client::{
    BatchGetItemRequest, BatchWriteItemRequest, Connection, ErrorCode, Item, KeysAndAttributes,
    ReturnValues, ScalarType, TableWriteRequests, Value, WriteRequest,
};
use tern_protocol::frame::{FLAG_FOUND, FLAG_RESPONSE, NO_SHARD_HINT, Opcode, write_frame};
use tern_protocol::messages::{GetItemRequest, PutItemRequest, encode};

use crate::harness::*;

#[test]
fn put_get_delete_with_return_values() {
    for net in NET_MODES {
        let server = Server::start(2, net);
        let mut c = server.client();
        c.create_table("tab1", schema(("id", ScalarType::S), None))
            .unwrap();
        let v1 = item(&[
            ("id", s("a")),
            ("v", n(1)),
            ("tags", Value::Ss(vec!["x".into(), "y".into()])),
        ]);
        let v2 = item(&[("id", s("a")), ("v", n(2))]);
        let key = item(&[("id", s("a"))]);

        assert_eq!(c.get_item("tab1", &key, false).unwrap(), None);
        assert_eq!(
            c.put_item_bytes("tab1", &v1.encode(), ReturnValues::AllOld)
                .unwrap(),
            None
        );
        assert_eq!(c.get_item("tab1", &key, false).unwrap(), Some(v1.clone()));
        assert_eq!(c.get_item("tab1", &key, true).unwrap(), Some(v1.clone()));
        assert_eq!(
            c.put_item_bytes("tab1", &v2.encode(), ReturnValues::AllOld)
                .unwrap(),
            Some(v1.clone()),
            "ALL_OLD returns the replaced item"
        );
        assert_eq!(
            c.put_item_bytes("tab1", &v1.encode(), ReturnValues::None)
                .unwrap(),
            None
        );
        assert_eq!(
            c.delete_item("tab1", &key, ReturnValues::AllOld).unwrap(),
            Some(v1)
        );
        assert_eq!(
            c.delete_item("tab1", &key, ReturnValues::AllOld).unwrap(),
            None
        );
        assert_eq!(c.get_item("tab1", &key, false).unwrap(), None);
    }
}

#[test]
fn get_returns_the_exact_bytes_that_were_put() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("raw", schema(("id", ScalarType::B), None))
        .unwrap();
    for i in 0..20u8 {
        let it = item(&[
            ("id", Value::B(vec![i, 0, 255])),
            ("blob", Value::B(vec![i; 100 + i as usize])),
            (
                "nested",
                Value::M(
                    item(&[(
                        "k",
                        Value::L(vec![n(i as i64), Value::Null, Value::Bool(true)]),
                    )])
                    .attrs,
                ),
            ),
        ]);
        let sent = it.encode();
        c.put_item_bytes("raw", &sent, ReturnValues::None).unwrap();
        let key = item(&[("id", Value::B(vec![i, 0, 255]))]).encode();
        let got = c
            .get_item_bytes("raw", &key, false)
            .unwrap()
            .expect("found");
        assert_eq!(
            got, sent,
            "the item travels as one encoding: byte-identical"
        );
    }
}

#[test]
fn every_shard_port_serves_every_key_by_forwarding() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("fwd", schema(("id", ScalarType::S), None))
        .unwrap();
    let timeout = Duration::from_secs(10);
    // Write through each shard's own port for keys it does not own, read through the other.
    let mut ports = server.shard_ports.clone();
    ports.push(server.shared_port);
    let mut owners = std::collections::HashSet::new();
    for i in 0..40 {
        let it = item(&[("id", s(&format!("k{i}"))), ("i", n(i))]);
        let bytes = it.encode();
        owners.insert(c.shard_for("fwd", &bytes).unwrap());
        let put_port = ports[i as usize % ports.len()];
        let get_port = ports[(i as usize + 1) % ports.len()];
        let mut conn =
            Connection::connect(SocketAddr::from(([127, 0, 0, 1], put_port)), timeout).unwrap();
        let mut frame = Vec::new();
        let body = encode(&PutItemRequest {
            table: "fwd".into(),
            item: bytes.clone(),
            return_values: ReturnValues::None,
        });
        write_frame(&mut frame, Opcode::PutItem, 0, 7, NO_SHARD_HINT, &[&body]);
        conn.send(&frame).unwrap();
        let reply = conn.recv().unwrap().into_result().unwrap();
        assert_eq!(reply.header.request_id, 7);

        let mut conn =
            Connection::connect(SocketAddr::from(([127, 0, 0, 1], get_port)), timeout).unwrap();
        let key = item(&[("id", s(&format!("k{i}")))]).encode();
        let body = encode(&GetItemRequest {
            table: "fwd".into(),
            key,
            consistent_read: false,
        });
        let mut frame = Vec::new();
        write_frame(&mut frame, Opcode::GetItem, 0, 8, 0, &[&body]);
        conn.send(&frame).unwrap();
        let reply = conn.recv().unwrap().into_result().unwrap();
        assert_eq!(reply.header.flags, FLAG_RESPONSE | FLAG_FOUND);
        assert_eq!(reply.body, bytes);
    }
    assert_eq!(owners.len(), 2, "the keys spread over both shards");
}

#[test]
fn pipelined_requests_all_answered_by_id() {
    for net in NET_MODES {
        let server = Server::start(2, net);
        let mut c = server.client();
        c.create_table("pipe", schema(("id", ScalarType::N), None))
            .unwrap();
        let mut p = c.pipeline();
        for i in 0..2000 {
            p.put_item("pipe", &item(&[("id", n(i)), ("sq", n(i * i))]))
                .unwrap();
        }
        let puts = p.run().unwrap();
        assert_eq!(puts.len(), 2000);
        assert!(puts.iter().all(|r| r.is_ok()));
        let mut p = c.pipeline();
        for i in 0..2000 {
            p.get_item("pipe", &item(&[("id", n(i))])).unwrap();
        }
        let gets = p.run().unwrap();
        for (i, r) in gets.into_iter().enumerate() {
            let it = tern_client::reply_item(&r.unwrap())
                .unwrap()
                .expect("found");
            assert_eq!(it.get("sq"), Some(&n((i * i) as i64)));
        }
    }
}

#[test]
fn batches_span_shards() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("bat1", schema(("id", ScalarType::S), None))
        .unwrap();
    c.create_table(
        "bat2",
        schema(("pk", ScalarType::N), Some(("sk", ScalarType::S))),
    )
    .unwrap();
    let puts: Vec<WriteRequest> = (0..20)
        .map(|i| WriteRequest::Put(item(&[("id", s(&format!("x{i}"))), ("v", n(i))]).encode()))
        .collect();
    let puts2: Vec<WriteRequest> = (0..5)
        .map(|i| WriteRequest::Put(item(&[("pk", n(i)), ("sk", s("a")), ("w", n(i))]).encode()))
        .collect();
    let resp = c
        .batch_write(&BatchWriteItemRequest {
            tables: vec![
                TableWriteRequests {
                    table: "bat1".into(),
                    requests: puts,
                },
                TableWriteRequests {
                    table: "bat2".into(),
                    requests: puts2,
                },
            ],
        })
        .unwrap();
    assert!(resp.unprocessed_items.is_empty());

    let keys: Vec<Vec<u8>> = (0..30)
        .map(|i| item(&[("id", s(&format!("x{i}")))]).encode())
        .collect();
    let resp = c
        .batch_get(&BatchGetItemRequest {
            tables: vec![
                KeysAndAttributes {
                    table: "bat1".into(),
                    keys,
                    consistent_read: false,
                },
                KeysAndAttributes {
                    table: "bat2".into(),
                    keys: vec![item(&[("pk", n(3)), ("sk", s("a"))]).encode()],
                    consistent_read: true,
                },
            ],
        })
        .unwrap();
    assert!(resp.unprocessed_keys.is_empty());
    let b1 = resp
        .responses
        .iter()
        .find(|t| t.table == "bat1")
        .expect("b1 items");
    let mut got: Vec<i64> = b1
        .items
        .iter()
        .map(|b| match Item::decode(b).unwrap().get("v") {
            Some(Value::N(num)) => num.as_str().parse().unwrap(),
            other => panic!("v is {other:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>(), "x20..x29 do not exist");
    let b2 = resp
        .responses
        .iter()
        .find(|t| t.table == "bat2")
        .expect("b2 items");
    assert_eq!(b2.items.len(), 1);

    // Deletes in a batch.
    let dels: Vec<WriteRequest> = (0..10)
        .map(|i| WriteRequest::Delete(item(&[("id", s(&format!("x{i}")))]).encode()))
        .collect();
    c.batch_write(&BatchWriteItemRequest {
        tables: vec![TableWriteRequests {
            table: "bat1".into(),
            requests: dels,
        }],
    })
    .unwrap();
    assert_eq!(c.describe_table("bat1").unwrap().item_count, 10);
}

#[test]
fn batch_limits_and_duplicates_are_validation_errors() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("lim", schema(("id", ScalarType::N), None))
        .unwrap();
    let too_many: Vec<WriteRequest> = (0..26)
        .map(|i| WriteRequest::Put(item(&[("id", n(i))]).encode()))
        .collect();
    let err = c
        .batch_write(&BatchWriteItemRequest {
            tables: vec![TableWriteRequests {
                table: "lim".into(),
                requests: too_many,
            }],
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ValidationException), "{err}");
    let exactly: Vec<WriteRequest> = (0..25)
        .map(|i| WriteRequest::Put(item(&[("id", n(i))]).encode()))
        .collect();
    c.batch_write(&BatchWriteItemRequest {
        tables: vec![TableWriteRequests {
            table: "lim".into(),
            requests: exactly,
        }],
    })
    .unwrap();
    let dup = vec![
        WriteRequest::Put(item(&[("id", n(1))]).encode()),
        WriteRequest::Delete(item(&[("id", n(1))]).encode()),
    ];
    let err = c
        .batch_write(&BatchWriteItemRequest {
            tables: vec![TableWriteRequests {
                table: "lim".into(),
                requests: dup,
            }],
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ValidationException), "{err}");

    let keys: Vec<Vec<u8>> = (0..101).map(|i| item(&[("id", n(i))]).encode()).collect();
    let err = c
        .batch_get(&BatchGetItemRequest {
            tables: vec![KeysAndAttributes {
                table: "lim".into(),
                keys,
                consistent_read: false,
            }],
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ValidationException), "{err}");
    let keys: Vec<Vec<u8>> = (0..100).map(|i| item(&[("id", n(i))]).encode()).collect();
    let resp = c
        .batch_get(&BatchGetItemRequest {
            tables: vec![KeysAndAttributes {
                table: "lim".into(),
                keys,
                consistent_read: false,
            }],
        })
        .unwrap();
    assert_eq!(
        resp.responses.iter().map(|t| t.items.len()).sum::<usize>(),
        25
    );
    // A bad key anywhere rejects the whole batch.
    let bad = vec![
        item(&[("id", n(1))]).encode(),
        item(&[("id", s("wrong type"))]).encode(),
    ];
    let err = c
        .batch_get(&BatchGetItemRequest {
            tables: vec![KeysAndAttributes {
                table: "lim".into(),
                keys: bad,
                consistent_read: false,
            }],
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ValidationException), "{err}");
}
