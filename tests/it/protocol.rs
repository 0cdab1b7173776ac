//! Malformed frames: an error frame, that connection closed, everyone else served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tern_client::{ErrorCode, ScalarType};
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_RESPONSE, HEADER_LEN, NO_SHARD_HINT, Opcode, parse_frame, write_frame,
};
use tern_protocol::messages::{ErrorResponse, GetItemRequest, decode, encode};

use crate::harness::*;

/// Reads until EOF (bounded by the read timeout) and returns the frames received.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("server neither answered nor closed the connection: {e}"),
        }
    }
}

fn assert_error_then_close(stream: &mut TcpStream, what: &str) {
    assert_error_frame_only(&read_until_closed(stream), what);
}

/// `bytes` is exactly one SerializationException error frame.
fn assert_error_frame_only(bytes: &[u8], what: &str) {
    let (frame, used) = parse_frame(bytes)
        .unwrap_or_else(|e| panic!("{what}: reply is not a frame: {e}"))
        .unwrap_or_else(|| {
            panic!(
                "{what}: no complete error frame before close ({} bytes)",
                bytes.len()
            )
        });
    assert_eq!(
        frame.header.flags & (FLAG_RESPONSE | FLAG_ERROR),
        FLAG_RESPONSE | FLAG_ERROR,
        "{what}"
    );
    let err = decode::<ErrorResponse>(frame.body).unwrap();
    assert_eq!(
        ErrorCode::from_u16(err.code),
        Some(ErrorCode::SerializationException),
        "{what}: {}",
        err.message
    );
    assert_eq!(used, bytes.len(), "{what}: nothing after the error frame");
}

fn get_frame(table: &str) -> Vec<u8> {
    let key = item(&[("id", s("k"))]).encode();
    let body = encode(&GetItemRequest {
        table: table.into(),
        key,
        consistent_read: false,
    });
    let mut frame = Vec::new();
    write_frame(&mut frame, Opcode::GetItem, 0, 99, NO_SHARD_HINT, &[&body]);
    frame
}

#[test]
fn garbage_frames_close_only_their_connection() {
    for net in NET_MODES {
        let server = Server::start(2, net);
        let mut c = server.client();
        c.create_table("garb", schema(("id", ScalarType::S), None))
            .unwrap();
        c.put_item("garb", &item(&[("id", s("k"))])).unwrap();
        let good = get_frame("garb");

        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0xff;
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0x01;
        let mut oversized = good[..HEADER_LEN].to_vec();
        oversized[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let garbage_body = b"this is not an rkyv archive at all";
        let mut bad_rkyv = Vec::new();
        write_frame(
            &mut bad_rkyv,
            Opcode::GetItem,
            0,
            5,
            NO_SHARD_HINT,
            &[garbage_body],
        );
        let mut bad_opcode = good.clone();
        bad_opcode[5] = 250;

        for (what, bytes) in [
            ("bad magic", bad_magic),
            ("bad crc", bad_crc),
            ("oversized", oversized),
            ("invalid rkyv", bad_rkyv),
            ("unknown opcode", bad_opcode),
        ] {
            for port in [
                server.shared_port,
                server.shard_ports[0],
                server.shard_ports[1],
            ] {
                let mut victim = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut bystander = TcpStream::connect(("127.0.0.1", port)).unwrap();
                // A valid request first on the victim: it is still answered (replies may
                // come in any order: it may have been forwarded to another core).
                victim.write_all(&good).unwrap();
                victim.write_all(&bytes).unwrap();
                let got = read_until_closed(&mut victim);
                let (first, used) = parse_frame(&got).unwrap().expect("a first reply");
                if first.header.request_id == 99 {
                    assert_eq!(first.header.flags & FLAG_ERROR, 0, "{what}");
                    assert_error_frame_only(&got[used..], what);
                } else {
                    let (second, used2) = parse_frame(&got[used..])
                        .unwrap()
                        .expect("the valid request's reply");
                    assert_eq!(second.header.request_id, 99, "{what}");
                    assert_eq!(second.header.flags & FLAG_ERROR, 0, "{what}");
                    assert_error_frame_only(&got[..used], what);
                    assert_eq!(used + used2, got.len(), "{what}: nothing else");
                }
                // The bystander on the same core is unaffected.
                bystander.write_all(&good).unwrap();
                bystander
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                let reply = loop {
                    let n = bystander.read(&mut buf[have..]).unwrap();
                    assert!(n > 0, "{what}: bystander closed");
                    have += n;
                    if let Some((f, _)) = parse_frame(&buf[..have]).unwrap() {
                        break f.header;
                    }
                };
                assert_eq!(reply.request_id, 99);
                assert_eq!(reply.flags & FLAG_ERROR, 0, "{what}");
            }
        }
        // A truncated frame then a half-close: the server drops the connection quietly.
        let mut t = TcpStream::connect(("127.0.0.1", server.shared_port)).unwrap();
        t.write_all(&good[..good.len() / 2]).unwrap();
        t.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = read_until_closed(&mut t);
        // And the server still serves.
        assert!(
            c.get_item("garb", &item(&[("id", s("k"))]), false)
                .unwrap()
                .is_some()
        );
    }
}

#[test]
fn a_response_frame_sent_to_the_server_is_malformed() {
    let server = Server::start(1, "uring");
    let mut stream = TcpStream::connect(("127.0.0.1", server.shared_port)).unwrap();
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        Opcode::Hello,
        FLAG_RESPONSE,
        1,
        NO_SHARD_HINT,
        &[],
    );
    stream.write_all(&frame).unwrap();
    assert_error_then_close(&mut stream, "response frame");
}

#[test]
fn hello_describes_the_topology() {
    let server = Server::start(2, "uring");
    let c = server.client();
    let t = c.topology();
    assert_eq!(t.shared_port, server.shared_port);
    assert_eq!(
        t.shards.iter().map(|s| s.port).collect::<Vec<_>>(),
        server.shard_ports
    );
    assert_eq!(
        t.partition_map.len(),
        tern_protocol::limits::PARTITION_COUNT as usize
    );
    assert!(t.partition_map.contains(&0) && t.partition_map.contains(&1));
}
