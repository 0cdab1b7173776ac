//! tern: requests encoded by the generator (through its templates) decode with
//! tern-protocol to exactly the intended request, go to the shard owning the key, and
//! replies are recognised (found, not found, error, split).

use tern_loadgen::proto::tern::{RANGES_TABLE, TABLE, Tern, parse_reply};
use tern_loadgen::proto::{KeyModel, Match, Outcome, Parse, ProtoError, Protocol};
use tern_loadgen::workload::{Op, OpKind, fill_value, format_key};
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_FOUND, FLAG_RESPONSE, HEADER_LEN, NO_SHARD_HINT, Opcode, parse_frame,
    write_frame,
};
use tern_protocol::keys::{KeyRef, partition_hash, partition_of};
use tern_protocol::limits::PARTITION_COUNT;
use tern_protocol::messages::{
    ErrorResponse, GetItemRequest, HelloResponse, PutItemRequest, QueryRequest, ReturnValues,
    ShardInfo, SortKeyCondition, decode, encode,
};
use tern_protocol::{ErrorCode, Item, Number, Value};

const SHARDS: u32 = 3;

fn topology() -> HelloResponse {
    HelloResponse {
        node_id: "test".into(),
        protocol_version: 1,
        shared_port: 7000,
        shards: (0..SHARDS)
            .map(|k| ShardInfo {
                shard: k,
                core: k,
                port: 7001 + k as u16,
            })
            .collect(),
        // Interleaved, not contiguous: routing must use the map, not a range.
        partition_map: (0..PARTITION_COUNT).map(|p| (p * 7 + 1) % SHARDS).collect(),
    }
}

fn tern(model: KeyModel) -> Tern {
    Tern::from_topology("127.0.0.1:7000".parse().unwrap(), &topology())
        .unwrap()
        .with_model(model)
}

fn op(kind: OpKind, key: u64, value_len: u32, scan_len: u32) -> Op {
    Op {
        kind,
        key,
        value_len,
        scan_len,
    }
}

fn key_text(key: u64) -> String {
    let mut k = Vec::new();
    format_key(key, &mut k);
    String::from_utf8(k).unwrap()
}

fn value(key: u64, len: u32) -> Vec<u8> {
    let mut v = Vec::new();
    fill_value(key, len, &mut v);
    v
}

fn owner(table: &str, pk: &str) -> u32 {
    let map = topology().partition_map;
    map[partition_of(partition_hash(table, KeyRef::S(pk))) as usize]
}

/// Encodes `op` twice (template path and full path) after some other ops, checks both
/// are the same frame, and returns it with the shard the op was routed to.
fn encode_both(p: &mut Tern, op: Op, id: u64) -> (Vec<u8>, usize) {
    let shard = p.route(&op);
    let mut fast = Vec::new();
    p.encode(&op, id, &mut fast);
    let mut full = Vec::new();
    p.encode_full(&op, id, &mut full);
    assert_eq!(fast, full, "template and full encoding differ for {op:?}");
    (fast, shard)
}

#[test]
fn get_and_put_decode_to_the_intended_requests() {
    let mut p = tern(KeyModel::Point);
    for (i, key) in [0u64, 1, 42, 999_999, 123_456_789_012, 1_000_000_000_000]
        .into_iter()
        .enumerate()
    {
        let id = 1000 + i as u64;
        let (bytes, shard) = encode_both(&mut p, op(OpKind::Get, key, 0, 0), id);
        let (f, used) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(f.header.opcode, Opcode::GetItem);
        assert_eq!(f.header.request_id, id);
        assert_eq!(shard as u32, owner(TABLE, &key_text(key)));
        assert_eq!(f.header.shard_hint, shard as u32);
        let req: GetItemRequest = decode(f.body).unwrap();
        assert_eq!(req.table, TABLE);
        assert!(!req.consistent_read);
        assert_eq!(
            Item::decode(&req.key).unwrap(),
            Item::from_attrs([("pk".to_owned(), Value::S(key_text(key)))])
        );

        for (kind, len) in [
            (OpKind::Set, 100),
            (OpKind::Update, 0),
            (OpKind::Insert, 1000),
            (OpKind::Set, 33),
        ] {
            let (bytes, shard) = encode_both(&mut p, op(kind, key, len, 0), id);
            let (f, _) = parse_frame(&bytes).unwrap().unwrap();
            assert_eq!(f.header.opcode, Opcode::PutItem);
            assert_eq!(f.header.shard_hint, shard as u32);
            let req: PutItemRequest = decode(f.body).unwrap();
            assert_eq!(req.table, TABLE);
            assert_eq!(req.return_values, ReturnValues::None);
            assert_eq!(
                Item::decode(&req.item).unwrap(),
                Item::from_attrs([
                    ("pk".to_owned(), Value::S(key_text(key))),
                    ("v".to_owned(), Value::B(value(key, len))),
                ])
            );
        }
    }
}

#[test]
fn ranged_model_and_scans_decode_to_the_intended_requests() {
    let mut p = tern(KeyModel::Ranged);
    for key in [0u64, 63, 64, 130, 64 * 1000 + 7, 10_000_000_000] {
        let part = format!("p{}", key / 64);
        let pos = Number::parse(&(key % 64).to_string()).unwrap();
        let shard = owner(RANGES_TABLE, &part);

        let (bytes, routed) = encode_both(&mut p, op(OpKind::Insert, key, 64, 0), 7);
        assert_eq!(routed as u32, shard);
        let (f, _) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(f.header.opcode, Opcode::PutItem);
        let req: PutItemRequest = decode(f.body).unwrap();
        assert_eq!(req.table, RANGES_TABLE);
        assert_eq!(
            Item::decode(&req.item).unwrap(),
            Item::from_attrs([
                ("pk".to_owned(), Value::S(part.clone())),
                ("sk".to_owned(), Value::N(pos.clone())),
                ("k".to_owned(), Value::S(key_text(key))),
                ("v".to_owned(), Value::B(value(key, 64))),
            ])
        );

        for scan_len in [1, 10, 100] {
            let (bytes, routed) = encode_both(&mut p, op(OpKind::Scan, key, 0, scan_len), 8);
            assert_eq!(routed as u32, shard);
            let (f, _) = parse_frame(&bytes).unwrap().unwrap();
            assert_eq!(f.header.opcode, Opcode::Query);
            assert_eq!(f.header.shard_hint, shard);
            let q: QueryRequest = decode(f.body).unwrap();
            assert_eq!(
                q,
                QueryRequest {
                    table: RANGES_TABLE.into(),
                    partition_key: Value::S(part.clone()),
                    sort_key: Some(SortKeyCondition::Ge(Value::N(pos.clone()))),
                    scan_forward: true,
                    limit: Some(scan_len),
                    exclusive_start_key: None,
                    consistent_read: false,
                }
            );
        }

        let (bytes, _) = encode_both(&mut p, op(OpKind::Get, key, 0, 0), 9);
        let (f, _) = parse_frame(&bytes).unwrap().unwrap();
        let req: GetItemRequest = decode(f.body).unwrap();
        assert_eq!(req.table, RANGES_TABLE);
        assert_eq!(
            Item::decode(&req.key).unwrap(),
            Item::from_attrs([
                ("pk".to_owned(), Value::S(part.clone())),
                ("sk".to_owned(), Value::N(pos.clone())),
            ])
        );
    }
}

#[test]
fn routing_spreads_keys_over_every_shard() {
    let mut p = tern(KeyModel::Point);
    let mut per_shard = [0u32; SHARDS as usize];
    for key in 0..3000 {
        let shard = p.route(&op(OpKind::Get, key, 0, 0));
        assert_eq!(shard as u32, owner(TABLE, &key_text(key)));
        per_shard[shard] += 1;
    }
    assert!(per_shard.iter().all(|n| *n > 700), "{per_shard:?}");
    assert_eq!(p.endpoints().len(), SHARDS as usize);
    assert_eq!(
        p.endpoints()[2],
        "127.0.0.1:7003".parse::<std::net::SocketAddr>().unwrap()
    );
}

#[test]
fn a_topology_with_a_bad_partition_map_is_refused() {
    let mut bad = topology();
    bad.partition_map[5] = SHARDS;
    assert!(Tern::from_topology("127.0.0.1:1".parse().unwrap(), &bad).is_err());
    let mut short = topology();
    short.partition_map.truncate(10);
    assert!(Tern::from_topology("127.0.0.1:1".parse().unwrap(), &short).is_err());
}

fn reply(opcode: Opcode, flags: u16, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, flags, id, NO_SHARD_HINT, &[body]);
    out
}

#[test]
fn replies_found_missing_error() {
    let item = Item::from_attrs([("pk".to_owned(), Value::S("user000000000001".into()))]).encode();
    let error = encode(&ErrorResponse {
        code: ErrorCode::ResourceNotFoundException as u16,
        message: "Requested resource not found".into(),
    });
    let cases = [
        (
            reply(Opcode::GetItem, FLAG_RESPONSE | FLAG_FOUND, 5, &item),
            Outcome::Ok,
        ),
        (reply(Opcode::GetItem, FLAG_RESPONSE, 6, &[]), Outcome::Miss),
        (reply(Opcode::PutItem, FLAG_RESPONSE, 7, &[]), Outcome::Ok),
        (
            reply(Opcode::Query, FLAG_RESPONSE | FLAG_ERROR, 8, &error),
            Outcome::Error,
        ),
    ];
    let mut stream = Vec::new();
    for (bytes, _) in &cases {
        stream.extend_from_slice(bytes);
    }
    let mut at = 0;
    for (i, (bytes, outcome)) in cases.iter().enumerate() {
        let Parse::Reply(r) = parse_reply(&stream[at..]).unwrap() else {
            panic!("reply {i} incomplete");
        };
        assert_eq!(r.matched, Match::Id(5 + i as u64));
        assert_eq!(r.outcome, *outcome);
        assert_eq!(r.consumed, bytes.len());
        at += r.consumed;
    }
    let p = tern(KeyModel::Point);
    assert_eq!(
        p.describe_error(&cases[3].0),
        "ResourceNotFoundException: Requested resource not found"
    );
}

#[test]
fn split_replies_need_exactly_their_length() {
    let item = vec![7u8; 300];
    let bytes = reply(Opcode::GetItem, FLAG_RESPONSE | FLAG_FOUND, 77, &item);
    for cut in 0..bytes.len() {
        match parse_reply(&bytes[..cut]).unwrap() {
            Parse::Incomplete { needed } if cut < HEADER_LEN => assert_eq!(needed, HEADER_LEN),
            Parse::Incomplete { needed } => assert_eq!(needed, bytes.len(), "cut {cut}"),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    let Parse::Reply(r) = parse_reply(&bytes).unwrap() else {
        panic!("whole reply incomplete");
    };
    assert_eq!((r.matched, r.consumed), (Match::Id(77), bytes.len()));
}

#[test]
fn requests_and_garbage_are_not_replies() {
    let request = reply(Opcode::GetItem, 0, 1, &[]);
    assert!(matches!(
        parse_reply(&request),
        Err(ProtoError::NotAResponse(0))
    ));
    let mut garbage = reply(Opcode::GetItem, FLAG_RESPONSE, 1, &[]);
    garbage[0] = b'X';
    assert!(matches!(parse_reply(&garbage), Err(ProtoError::Frame(_))));
}
