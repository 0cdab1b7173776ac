//! RESP: the exact bytes of every command the generator sends, and reply recognition
//! (bulk, nil, error, integer, arrays) including replies split across receive buffers.

use tern_loadgen::proto::resp::{Resp, parse_reply};
use tern_loadgen::proto::{KeyModel, Match, Outcome, Parse, Protocol, Reply};
use tern_loadgen::workload::{Op, OpKind, fill_value};

fn op(kind: OpKind, key: u64, value_len: u32, scan_len: u32) -> Op {
    Op {
        kind,
        key,
        value_len,
        scan_len,
    }
}

fn encode(model: KeyModel, op: Op) -> Vec<u8> {
    let mut p = Resp::new("127.0.0.1:6379".parse().unwrap(), model);
    let mut out = b"previous".to_vec();
    p.encode(&op, 99, &mut out);
    assert!(out.starts_with(b"previous"), "encode appends");
    out.split_off(8)
}

fn check(model: KeyModel, op: Op, expected: &[u8]) {
    let got = encode(model, op);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "{op:?}"
    );
}

#[test]
fn point_commands() {
    check(
        KeyModel::Point,
        op(OpKind::Get, 42, 0, 0),
        b"*2\r\n$3\r\nGET\r\n$16\r\nuser000000000042\r\n",
    );
    let mut set = b"*3\r\n$3\r\nSET\r\n$16\r\nuser000000000007\r\n$40\r\n".to_vec();
    fill_value(7, 40, &mut set);
    set.extend_from_slice(b"\r\n");
    for kind in [OpKind::Set, OpKind::Update, OpKind::Insert] {
        check(KeyModel::Point, op(kind, 7, 40, 0), &set);
    }
    check(
        KeyModel::Point,
        op(OpKind::Set, 1, 0, 0),
        b"*3\r\n$3\r\nSET\r\n$16\r\nuser000000000001\r\n$0\r\n\r\n",
    );
}

#[test]
fn ranged_commands() {
    // Key 130 is partition 2, position 2 (RANGE_PARTITION_KEYS = 64).
    check(
        KeyModel::Ranged,
        op(OpKind::Insert, 130, 100, 0),
        b"*4\r\n$4\r\nZADD\r\n$7\r\nrange:2\r\n$1\r\n2\r\n$16\r\nuser000000000130\r\n",
    );
    check(
        KeyModel::Ranged,
        op(OpKind::Scan, 64 * 1234 + 63, 0, 25),
        b"*7\r\n$13\r\nZRANGEBYSCORE\r\n$10\r\nrange:1234\r\n$2\r\n63\r\n$4\r\n+inf\r\n\
          $5\r\nLIMIT\r\n$1\r\n0\r\n$2\r\n25\r\n",
    );
    check(
        KeyModel::Ranged,
        op(OpKind::Get, 5, 0, 0),
        b"*3\r\n$6\r\nZSCORE\r\n$7\r\nrange:0\r\n$16\r\nuser000000000005\r\n",
    );
    // A scan in the point model still addresses the ranged sets.
    check(
        KeyModel::Point,
        op(OpKind::Scan, 3, 0, 1),
        b"*7\r\n$13\r\nZRANGEBYSCORE\r\n$7\r\nrange:0\r\n$1\r\n3\r\n$4\r\n+inf\r\n\
          $5\r\nLIMIT\r\n$1\r\n0\r\n$1\r\n1\r\n",
    );
}

#[test]
fn routing_is_the_one_endpoint() {
    let mut p = Resp::new("127.0.0.1:6379".parse().unwrap(), KeyModel::Point);
    assert_eq!(p.endpoints().len(), 1);
    for key in [0, 1, 999_999] {
        assert_eq!(p.route(&op(OpKind::Get, key, 0, 0)), 0);
    }
}

fn parse_all(stream: &[u8]) -> Vec<Outcome> {
    let mut at = 0;
    let mut seen = Vec::new();
    while at < stream.len() {
        match parse_reply(&stream[at..]).unwrap() {
            Parse::Reply(Reply {
                matched,
                outcome,
                consumed,
            }) => {
                assert_eq!(matched, Match::Fifo);
                seen.push(outcome);
                at += consumed;
            }
            Parse::Incomplete { needed } => panic!("incomplete at {at}, needs {needed}"),
        }
    }
    seen
}

const REPLIES: &[(&[u8], Outcome)] = &[
    (b"$5\r\nhello\r\n", Outcome::Ok),
    (b"$-1\r\n", Outcome::Miss),
    (b"-ERR wrong number of arguments\r\n", Outcome::Error),
    (b":1\r\n", Outcome::Ok),
    (b"+OK\r\n", Outcome::Ok),
    (
        b"*3\r\n$16\r\nuser000000000001\r\n$16\r\nuser000000000002\r\n$1\r\nx\r\n",
        Outcome::Ok,
    ),
    (b"*0\r\n", Outcome::Ok),
    (b"*-1\r\n", Outcome::Miss),
    (b"*2\r\n*2\r\n:1\r\n:2\r\n-ERR inner\r\n", Outcome::Ok),
];

#[test]
fn reply_kinds() {
    let mut stream = Vec::new();
    for (bytes, _) in REPLIES {
        stream.extend_from_slice(bytes);
    }
    let expected: Vec<Outcome> = REPLIES.iter().map(|(_, o)| *o).collect();
    assert_eq!(parse_all(&stream), expected);
}

/// Replays a reply stream cut into two receive buffers at every position, reassembling
/// the way the engine does: parse in place, keep a partial reply, append at least what the
/// parser says it needs.
#[test]
fn replies_split_across_buffers_reassemble() {
    let mut stream = Vec::new();
    for (bytes, _) in REPLIES {
        stream.extend_from_slice(bytes);
    }
    let expected: Vec<Outcome> = REPLIES.iter().map(|(_, o)| *o).collect();
    for cut in 0..=stream.len() {
        let chunks = [&stream[..cut], &stream[cut..]];
        let mut seen = Vec::new();
        let mut backlog: Vec<u8> = Vec::new();
        for chunk in chunks {
            let mut data = chunk;
            while !backlog.is_empty() && !data.is_empty() {
                match parse_reply(&backlog).unwrap() {
                    Parse::Reply(r) => {
                        seen.push(r.outcome);
                        backlog.drain(..r.consumed);
                    }
                    Parse::Incomplete { needed } => {
                        assert!(needed > backlog.len(), "cut {cut}: no progress");
                        let take = (needed - backlog.len()).min(data.len());
                        backlog.extend_from_slice(&data[..take]);
                        data = &data[take..];
                    }
                }
            }
            while let Ok(Parse::Reply(r)) = parse_reply(&backlog) {
                seen.push(r.outcome);
                backlog.drain(..r.consumed);
            }
            let mut at = 0;
            while at < data.len() {
                match parse_reply(&data[at..]).unwrap() {
                    Parse::Reply(r) => {
                        seen.push(r.outcome);
                        at += r.consumed;
                    }
                    Parse::Incomplete { .. } => {
                        backlog.extend_from_slice(&data[at..]);
                        break;
                    }
                }
            }
        }
        assert!(backlog.is_empty(), "cut {cut}: left {backlog:?}");
        assert_eq!(seen, expected, "cut {cut}");
    }
}

#[test]
fn garbage_is_an_error_not_a_reply() {
    assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
    assert!(parse_reply(b"$3\r\nabcde\r\n").is_err());
    assert!(parse_reply(b"$5\r\nhelloXY").is_err());
}

#[test]
fn error_text_is_reported() {
    let p = Resp::new("127.0.0.1:6379".parse().unwrap(), KeyModel::Point);
    assert_eq!(
        p.describe_error(b"-ERR unknown command 'FOO'\r\n"),
        "ERR unknown command 'FOO'"
    );
}
