//! Protocol hot-path micro benchmarks: what a shard does to every request before it
//! touches storage.
//!
//! * `frame`: parse a frame (header checks + CRC32 of the body) and validate the rkyv
//!   body (plus, for PutItem, the item blob it carries) — GetItem, PutItem with a ~100 B
//!   and a ~1 KB item.
//! * `validate_item`: DynamoDB's rules on those items (`validate::validate_item`).
//! * `key_path`: key extraction + routing hash + index key encoding.
//! * `number`: parsing to canonical text and the ordered encoding.
//!
//! Run: `cargo bench -p tern-benches --bench protocol`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tern_protocol::frame::{NO_SHARD_HINT, Opcode, parse_frame, write_frame};
use tern_protocol::keys::{self, KeyRef};
use tern_protocol::messages::{
    self, ArchivedGetItemRequest, ArchivedPutItemRequest, GetItemRequest, PutItemRequest,
    ReturnValues,
};
use tern_protocol::validate::validate_item;
use tern_protocol::value::access_item;
use tern_protocol::{Item, KeyAttr, KeySchema, Number, ScalarType, Value};

fn schema() -> KeySchema {
    KeySchema {
        partition: KeyAttr {
            name: "pk".into(),
            ty: ScalarType::S,
        },
        sort: Some(KeyAttr {
            name: "sk".into(),
            ty: ScalarType::N,
        }),
    }
}

/// An item of about `target` bytes as DynamoDB counts them.
fn item(target: usize) -> Item {
    let mut attrs = vec![
        ("pk".to_owned(), Value::s("user#000123")),
        (
            "sk".to_owned(),
            Value::n(Number::parse("1700000000.125").unwrap()),
        ),
        ("name".to_owned(), Value::s("Ada Lovelace")),
        ("age".to_owned(), Value::n(36)),
        ("active".to_owned(), Value::Bool(true)),
        ("email".to_owned(), Value::s("ada@example.com")),
        (
            "tags".to_owned(),
            Value::Ss(vec!["admin".into(), "math".into(), "poet".into()]),
        ),
    ];
    // Pad with a "bio" attribute (3 name bytes + its text) up to the target.
    let size = dynamodb_size(&Item::from_attrs(attrs.clone()));
    if target > size + 3 {
        attrs.push(("bio".to_owned(), Value::s("x".repeat(target - size - 3))));
    }
    Item::from_attrs(attrs)
}

fn dynamodb_size(item: &Item) -> usize {
    let bytes = item.encode();
    tern_protocol::validate::item_size(access_item(&bytes).unwrap())
}

fn key_of(item: &Item) -> Item {
    let bytes = item.encode();
    keys::key_item(&schema(), access_item(&bytes).unwrap()).unwrap()
}

fn frame_of(opcode: Opcode, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, 0, 7, NO_SHARD_HINT, &[body]);
    out
}

fn bench_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let small = item(100);
    let large = item(1024);

    let get = messages::encode(&GetItemRequest {
        table: "users".into(),
        key: key_of(&small).encode(),
        consistent_read: false,
    });
    let get_frame = frame_of(Opcode::GetItem, &get);
    group.bench_function("get_item", |b| {
        b.iter(|| {
            let (frame, _) = parse_frame(black_box(&get_frame)).unwrap().unwrap();
            let req = messages::access::<ArchivedGetItemRequest>(frame.body).unwrap();
            let key = access_item(&req.key).unwrap();
            black_box(key.attrs.len())
        })
    });

    for (name, it) in [("put_item_100B", &small), ("put_item_1KB", &large)] {
        let put = messages::encode(&PutItemRequest {
            table: "users".into(),
            item: it.encode(),
            return_values: ReturnValues::None,
        });
        let put_frame = frame_of(Opcode::PutItem, &put);
        group.bench_function(name, |b| {
            b.iter(|| {
                let (frame, _) = parse_frame(black_box(&put_frame)).unwrap().unwrap();
                let req = messages::access::<ArchivedPutItemRequest>(frame.body).unwrap();
                let item = access_item(&req.item).unwrap();
                black_box(item.attrs.len())
            })
        });
    }
    group.finish();
}

fn bench_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_item");
    let schema = schema();
    for (name, target) in [("100B", 100), ("1KB", 1024)] {
        let bytes = item(target).encode();
        let archived = access_item(&bytes).unwrap();
        let size = validate_item(archived, &schema).unwrap().size_bytes;
        eprintln!(
            "validate_item/{name}: item is {size} bytes (DynamoDB count), {} encoded",
            bytes.len()
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                validate_item(black_box(archived), &schema)
                    .unwrap()
                    .size_bytes
            })
        });
    }
    group.finish();
}

fn bench_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_path");
    let schema = schema();
    let bytes = item(100).encode();
    let archived = access_item(&bytes).unwrap();
    let mut out = Vec::with_capacity(64);
    group.bench_function("extract_hash_encode", |b| {
        b.iter(|| {
            let (pk, sk) = keys::extract_key(&schema, black_box(archived)).unwrap();
            let hash = keys::partition_hash("users", pk);
            out.clear();
            keys::encode_index_key(hash, pk, sk, &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("partition_hash", |b| {
        b.iter(|| keys::partition_hash(black_box("users"), KeyRef::S(black_box("user#000123"))))
    });
    group.finish();
}

fn bench_numbers(c: &mut Criterion) {
    let mut group = c.benchmark_group("number");
    group.bench_function("parse", |b| {
        b.iter(|| Number::parse(black_box("00012345.67800e-2")).unwrap())
    });
    let mut out = Vec::with_capacity(32);
    group.bench_function("encode_ordered", |b| {
        b.iter(|| {
            out.clear();
            tern_protocol::number::encode_ordered(black_box("-123.456"), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_frames, bench_validate, bench_keys, bench_numbers
}
criterion_main!(benches);
