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

/// `bytes` is exactly one SerializationException error frame; returns its header.
fn assert_error_frame_only(bytes: &[u8], what: &str) -> tern_protocol::frame::Header {
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
    frame.header
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

        for (what, bytes) in [
            ("bad magic", bad_magic),
            ("bad crc", bad_crc),
            ("oversized", oversized),
            ("invalid rkyv", bad_rkyv),
            // Shorter than a header: refused on its first bytes, not left waiting.
            ("http request", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
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
                let error = if first.header.request_id == 99 && first.header.flags & FLAG_ERROR == 0
                {
                    assert_error_frame_only(&got[used..], what)
                } else {
                    let (second, used2) = parse_frame(&got[used..])
                        .unwrap()
                        .expect("the valid request's reply");
                    assert_eq!(second.header.request_id, 99, "{what}");
                    assert_eq!(second.header.flags & FLAG_ERROR, 0, "{what}");
                    assert_eq!(used + used2, got.len(), "{what}: nothing else");
                    assert_error_frame_only(&got[..used], what)
                };
                // The error names the request when its header was readable.
                let (opcode, id) = match what {
                    "bad crc" => (Opcode::GetItem, 99),
                    "invalid rkyv" => (Opcode::GetItem, 5),
                    _ => (Opcode::Hello, 0),
                };
                assert_eq!((error.opcode, error.request_id), (opcode, id), "{what}");
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

/// Reads whole frames until `n` have arrived (bounded by the read timeout).
fn read_frames(stream: &mut TcpStream, n: usize) -> Vec<(tern_protocol::frame::Header, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut frames = Vec::new();
    while frames.len() < n {
        loop {
            // Raw parse: an echoed unknown opcode is not a frame `parse_frame` accepts.
            if buf.len() < HEADER_LEN {
                break;
            }
            let len = HEADER_LEN + u32::from_le_bytes(buf[16..20].try_into().unwrap()) as usize;
            if buf.len() < len {
                break;
            }
            let mut head = buf[..HEADER_LEN].to_vec();
            let raw_opcode = head[5];
            head[5] = Opcode::Hello as u8;
            let mut header =
                tern_protocol::frame::Header::read(head.as_slice().try_into().unwrap()).unwrap();
            header.opcode = Opcode::from_u8(raw_opcode).unwrap_or(Opcode::Hello);
            frames.push((header, buf[..len].to_vec()));
            buf.drain(..len);
        }
        if frames.len() >= n {
            break;
        }
        let got = stream.read(&mut chunk).expect("a reply");
        assert!(got > 0, "closed after {} of {n} replies", frames.len());
        buf.extend_from_slice(&chunk[..got]);
    }
    frames
}

/// An unknown opcode in a valid header is answered with UnknownOperationException, naming
/// the request and echoing the opcode, and the connection goes on: frames before and after
/// it (whole, split across writes, larger than a receive buffer) are answered.
#[test]
fn an_unknown_opcode_is_answered_and_the_connection_goes_on() {
    for net in NET_MODES {
        let server = Server::start(2, net);
        let mut c = server.client();
        c.create_table("unk", schema(("id", ScalarType::S), None))
            .unwrap();
        c.put_item("unk", &item(&[("id", s("k"))])).unwrap();
        let good = get_frame("unk");
        let unknown = |id: u64, body_len: usize| {
            let mut f = Vec::new();
            write_frame(
                &mut f,
                Opcode::Hello,
                0,
                id,
                NO_SHARD_HINT,
                &[&vec![7u8; body_len]],
            );
            f[5] = 200;
            f
        };
        let mut stream = TcpStream::connect(("127.0.0.1", server.shard_ports[0])).unwrap();
        let mut bytes = good.clone();
        bytes.extend(unknown(1000, 10));
        bytes.extend(&good);
        stream.write_all(&bytes).unwrap();
        // Split: the header now, the rest (60 KB: several receive buffers) later.
        let big = unknown(1001, 60_000);
        stream.write_all(&big[..20]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(&big[20..]).unwrap();
        stream.write_all(&good).unwrap();
        let frames = read_frames(&mut stream, 5);
        let mut unknown_ids = Vec::new();
        let mut good_replies = 0;
        for (h, bytes) in &frames {
            if h.request_id == 99 {
                assert_eq!(h.flags & FLAG_ERROR, 0, "{net}");
                good_replies += 1;
                continue;
            }
            assert_eq!(bytes[5], 200, "{net}: the opcode is echoed");
            assert_eq!(h.flags & FLAG_ERROR, FLAG_ERROR, "{net}");
            let err = decode::<ErrorResponse>(&bytes[HEADER_LEN..]).unwrap();
            assert_eq!(
                ErrorCode::from_u16(err.code),
                Some(ErrorCode::UnknownOperationException),
                "{net}: {}",
                err.message
            );
            assert!(err.message.contains("200"), "{}", err.message);
            unknown_ids.push(h.request_id);
        }
        unknown_ids.sort();
        assert_eq!(unknown_ids, vec![1000, 1001], "{net}");
        assert_eq!(good_replies, 3, "{net}");
    }
}

/// The FORWARDED flag is the server's own: a client frame carrying it is refused (it
/// would have made the owner shard refuse a misrouted request).
#[test]
fn a_client_frame_with_the_forwarded_flag_is_malformed() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("fwd", schema(("id", ScalarType::S), None))
        .unwrap();
    let mut frame = get_frame("fwd");
    frame[6] |= tern_protocol::frame::FLAG_FORWARDED as u8;
    let mut stream = TcpStream::connect(("127.0.0.1", server.shared_port)).unwrap();
    stream.write_all(&frame).unwrap();
    assert_error_then_close(&mut stream, "forwarded flag");
}

/// A body that is not an archive of its request type says what was wrong where (the
/// struct and field, offsets into the body, never server addresses).
#[test]
fn a_malformed_body_is_described() {
    let server = Server::start(1, "uring");
    let mut frame = get_frame("anything");
    let last = frame.len() - 1;
    frame[last] = 7; // GetItemRequest.consistent_read: a bool must be 0 or 1
    let body = frame[HEADER_LEN..].to_vec();
    let mut fixed = Vec::new();
    write_frame(&mut fixed, Opcode::GetItem, 0, 42, NO_SHARD_HINT, &[&body]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.shared_port)).unwrap();
    stream.write_all(&fixed).unwrap();
    let got = read_until_closed(&mut stream);
    let header = assert_error_frame_only(&got, "bad bool");
    assert_eq!((header.opcode, header.request_id), (Opcode::GetItem, 42));
    let (frame, _) = parse_frame(&got).unwrap().unwrap();
    let err = decode::<ErrorResponse>(frame.body).unwrap();
    assert!(err.message.contains("consistent_read"), "{}", err.message);
    assert!(err.message.contains("GetItem"), "{}", err.message);
    assert!(!err.message.contains("0x0000"), "{}", err.message);
}
