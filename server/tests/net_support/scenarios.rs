//! The transport scenarios, each a function of the mode, run by `net_transport.rs` for
//! both modes and by `net_uring_plain.rs` on a ring without setup flags.

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tern_protocol::frame::{FLAG_ERROR, FLAG_RESPONSE, HEADER_LEN};
use tern_protocol::limits::IN_FLIGHT_PER_CONNECTION_MAX;
use tern_server::net::NetMode;

use super::{
    TICKS_PER_SECOND, TestServer, body_for, connect, is_closed_by_server, read_echoes, read_frame,
    request, shutdown_write, write_all,
};

/// Every scenario, for the test binaries' macros.
#[allow(unused_macros)]
macro_rules! for_each_scenario {
    ($m:ident) => {
        $m!(
            pipelined_requests_are_all_answered_by_id,
            frame_split_byte_by_byte_is_reassembled,
            large_frames_round_trip,
            bad_magic_gets_an_error_frame_then_close_and_others_keep_working,
            many_connections_at_once,
            shared_port_and_shard_port_both_serve,
            deferred_replies_interleave_with_immediate_ones,
            in_flight_bound_pauses_and_resumes,
            close_verdict_flushes_then_closes,
            half_closed_client_still_gets_every_reply,
            shutdown_returns_promptly_with_connections_open,
            idle_server_does_not_spin,
            concurrent_bulk_senders_share_the_receive_buffers,
            oversized_header_is_refused_before_its_body,
            slow_reader_gets_every_reply,
            shutdown_returns_with_a_send_blocked_on_a_full_socket,
        );
    };
}

pub fn pipelined_requests_are_all_answered_by_id(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let mut batch = Vec::new();
    for id in 0..1000u64 {
        batch.extend(request(id, &body_for(id, (id % 97) as usize)));
    }
    write_all(&mut s, &batch);
    let order = read_echoes(&mut s, 1000, |id| body_for(id, (id % 97) as usize));
    // Immediate replies keep request order.
    assert_eq!(order, (0..1000).collect::<Vec<_>>());
    assert_eq!(server.stats.frames.load(Ordering::Relaxed), 1000);
    server.stop().expect("serve returns Ok");
}

pub fn frame_split_byte_by_byte_is_reassembled(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shared_port);
    let mut bytes = request(7, &body_for(7, 100));
    bytes.extend(request(8, &body_for(8, 3)));
    for (i, b) in bytes.iter().enumerate() {
        s.write_all(std::slice::from_ref(b)).unwrap();
        if i % 16 == 0 {
            // Let the server see some of the pieces on their own.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let order = read_echoes(&mut s, 2, |id| body_for(id, if id == 7 { 100 } else { 3 }));
    assert_eq!(order, vec![7, 8]);
    server.stop().unwrap();
}

pub fn large_frames_round_trip(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let sizes = [(1u64, 1024 * 1024), (2, 20 * 1024 * 1024), (3, 5)];
    let mut bytes = Vec::new();
    for (id, len) in sizes {
        bytes.extend(request(id, &body_for(id, len)));
    }
    write_all(&mut s, &bytes);
    let order = read_echoes(&mut s, 3, |id| body_for(id, sizes[id as usize - 1].1));
    assert_eq!(order, vec![1, 2, 3]);
    // The connection is still usable after the big ones.
    write_all(&mut s, &request(4, b"after"));
    read_echoes(&mut s, 1, |_| b"after".to_vec());
    server.stop().unwrap();
}

pub fn bad_magic_gets_an_error_frame_then_close_and_others_keep_working(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut good = connect(server.shard_port);
    write_all(&mut good, &request(1, b"before"));
    read_echoes(&mut good, 1, |_| b"before".to_vec());

    let mut bad = connect(server.shard_port);
    let mut bytes = request(5, b"a valid request first");
    let mut garbage = request(6, b"then garbage");
    garbage[0..4].copy_from_slice(b"HTTP");
    bytes.extend(garbage);
    write_all(&mut bad, &bytes);
    read_echoes(&mut bad, 1, |_| b"a valid request first".to_vec());
    let (header, body) = read_frame(&mut bad).expect("error frame");
    assert_eq!(
        header.flags & (FLAG_RESPONSE | FLAG_ERROR),
        FLAG_RESPONSE | FLAG_ERROR
    );
    let message = String::from_utf8(body).unwrap();
    assert!(
        message.contains("bad magic"),
        "error frame says {message:?}"
    );
    assert!(
        is_closed_by_server(&mut bad),
        "connection closed after the error frame"
    );
    assert_eq!(server.stats.frame_errors.load(Ordering::Relaxed), 1);

    write_all(&mut good, &request(2, b"after"));
    read_echoes(&mut good, 1, |_| b"after".to_vec());
    let mut fresh = connect(server.shard_port);
    write_all(&mut fresh, &request(3, b"fresh"));
    read_echoes(&mut fresh, 1, |_| b"fresh".to_vec());
    server.stop().unwrap();
}

pub fn many_connections_at_once(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut conns: Vec<TcpStream> = (0..200)
        .map(|i| {
            connect(if i % 2 == 0 {
                server.shared_port
            } else {
                server.shard_port
            })
        })
        .collect();
    for round in 0..3u64 {
        for (i, s) in conns.iter_mut().enumerate() {
            let id = round * 1000 + i as u64;
            write_all(s, &request(id, &body_for(id, 64)));
        }
        for (i, s) in conns.iter_mut().enumerate() {
            let order = read_echoes(s, 1, |id| body_for(id, 64));
            assert_eq!(order, vec![round * 1000 + i as u64]);
        }
    }
    assert_eq!(server.stats.frames.load(Ordering::Relaxed), 600);
    server.stop().unwrap();
}

pub fn shared_port_and_shard_port_both_serve(mode: NetMode) {
    let server = TestServer::start(mode);
    for port in [server.shared_port, server.shard_port] {
        let mut s = connect(port);
        write_all(&mut s, &request(port as u64, b"which port"));
        read_echoes(&mut s, 1, |_| b"which port".to_vec());
    }
    server.stop().unwrap();
}

pub fn deferred_replies_interleave_with_immediate_ones(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let body = |id: u64| {
        if id.is_multiple_of(3) {
            format!("defer:{}:{id}", id % 5).into_bytes()
        } else {
            body_for(id, 40)
        }
    };
    let mut bytes = Vec::new();
    for id in 0..300u64 {
        bytes.extend(request(id, &body(id)));
    }
    write_all(&mut s, &bytes);
    let order = read_echoes(&mut s, 300, body);
    let immediate: Vec<u64> = order.iter().copied().filter(|id| id % 3 != 0).collect();
    assert_eq!(
        immediate,
        (0..300).filter(|id| id % 3 != 0).collect::<Vec<_>>()
    );
    let first_deferred = order.iter().position(|id| id % 3 == 0).unwrap();
    assert!(
        first_deferred > 0,
        "a deferred reply cannot overtake the immediate ones sent with it"
    );
    assert_eq!(server.stats.deferred_done.load(Ordering::Relaxed), 100);
    server.stop().unwrap();
}

pub fn in_flight_bound_pauses_and_resumes(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let n = IN_FLIGHT_PER_CONNECTION_MAX as u64 + 300;
    let body = |id: u64| format!("defer:100:{id}").into_bytes();
    let mut bytes = Vec::new();
    for id in 0..n {
        bytes.extend(request(id, &body(id)));
    }
    // Everything is sent before any reply is read.
    write_all(&mut s, &bytes);
    let order = read_echoes(&mut s, n as usize, body);
    assert_eq!(
        order.iter().copied().collect::<HashSet<_>>().len(),
        n as usize
    );
    assert_eq!(
        server.stats.over_bound.load(Ordering::Relaxed),
        0,
        "the transport handed frames to the service past the in-flight bound"
    );
    assert_eq!(
        server.stats.max_in_flight.load(Ordering::Relaxed),
        IN_FLIGHT_PER_CONNECTION_MAX,
        "the bound was reached (all requests arrived within the 100 ms deferral)"
    );
    // The connection reads again after the pause.
    write_all(&mut s, &request(n, b"after the pause"));
    read_echoes(&mut s, 1, |_| b"after the pause".to_vec());
    server.stop().unwrap();
}

pub fn close_verdict_flushes_then_closes(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let mut bytes = request(1, b"one");
    bytes.extend(request(2, b"close please"));
    bytes.extend(request(3, b"never handled"));
    write_all(&mut s, &bytes);
    let order = read_echoes(&mut s, 2, |id| {
        if id == 1 {
            b"one".to_vec()
        } else {
            b"close please".to_vec()
        }
    });
    assert_eq!(order, vec![1, 2]);
    assert!(is_closed_by_server(&mut s));
    assert_eq!(server.stats.frames.load(Ordering::Relaxed), 2);
    server.stop().unwrap();
}

pub fn half_closed_client_still_gets_every_reply(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let body = |id: u64| {
        if id.is_multiple_of(2) {
            format!("defer:20:{id}").into_bytes()
        } else {
            body_for(id, 10)
        }
    };
    let mut bytes = Vec::new();
    for id in 0..10u64 {
        bytes.extend(request(id, &body(id)));
    }
    write_all(&mut s, &bytes);
    shutdown_write(&s);
    let order = read_echoes(&mut s, 10, body);
    assert_eq!(order.len(), 10);
    assert!(
        is_closed_by_server(&mut s),
        "closed once everything owed was sent"
    );
    server.stop().unwrap();
}

pub fn shutdown_returns_promptly_with_connections_open(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect(server.shard_port)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        write_all(s, &request(i as u64, b"hello"));
        read_echoes(s, 1, |_| b"hello".to_vec());
    }
    // One connection with a reply that will not be ready for a long time, one with half a
    // frame sent.
    write_all(&mut conns[0], &request(99, b"defer:60000:slow"));
    write_all(&mut conns[1], &request(100, b"partial")[..20]);
    let port = server.shard_port;
    // `stop` panics if serve does not return within STOP_TIMEOUT.
    server.stop().expect("serve returns Ok");
    for s in &mut conns {
        assert!(is_closed_by_server(s), "connections are closed at shutdown");
    }
    match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
        Ok(_) => panic!("still accepting after shutdown"),
    }
}

pub fn idle_server_does_not_spin(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut conns: Vec<TcpStream> = (0..3).map(|_| connect(server.shard_port)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        write_all(s, &request(i as u64, b"warm up"));
        read_echoes(s, 1, |_| b"warm up".to_vec());
    }
    write_all(&mut conns[0], &request(9, b"defer:60000:owed for a minute"));
    std::thread::sleep(Duration::from_millis(100));
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = server.cpu_ticks() - before;
    // A transport that polls instead of sleeping burns the whole second (100 ticks).
    assert!(
        used * 100 < 20 * TICKS_PER_SECOND,
        "idle {mode} executor used {used} ticks of CPU in one second"
    );
    server.stop().unwrap();
}

/// Many connections streaming at once use more receive buffer space than the provided
/// buffers hold (512 × 16 KiB): receives run out of buffers and must be re-armed.
pub fn concurrent_bulk_senders_share_the_receive_buffers(mode: NetMode) {
    let server = TestServer::start(mode);
    let port = server.shard_port;
    let clients: Vec<_> = (0..32u64)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = connect(port);
                let mut bytes = Vec::new();
                for k in 0..4u64 {
                    let id = c * 100 + k;
                    bytes.extend(request(id, &body_for(id, 512 * 1024 + k as usize)));
                }
                let mut reader = s.try_clone().unwrap();
                let writer = std::thread::spawn(move || write_all(&mut s, &bytes));
                let order = read_echoes(&mut reader, 4, |id| {
                    body_for(id, 512 * 1024 + (id % 100) as usize)
                });
                writer.join().unwrap();
                assert_eq!(order, (0..4).map(|k| c * 100 + k).collect::<Vec<_>>());
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(server.stats.frames.load(Ordering::Relaxed), 128);
    server.stop().unwrap();
}

pub fn oversized_header_is_refused_before_its_body(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let mut header = request(1, b"")[..HEADER_LEN].to_vec();
    header[16..20].copy_from_slice(&(100u32 << 20).to_le_bytes());
    // Only the header is sent: the answer cannot wait for the 100 MiB it announces.
    write_all(&mut s, &header);
    let (reply, body) = read_frame(&mut s).expect("error frame");
    assert_eq!(reply.flags & FLAG_ERROR, FLAG_ERROR);
    let message = String::from_utf8(body).unwrap();
    assert!(message.contains("exceeds the maximum"), "{message}");
    assert!(is_closed_by_server(&mut s));
    server.stop().unwrap();
}

/// A client that reads slowly while sending fast makes replies pile up on the server
/// (past the unsent-bytes bound, so the transport pauses the connection) and still gets
/// every reply.
pub fn slow_reader_gets_every_reply(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    let n = 48u64;
    let len = |id: u64| 512 * 1024 + id as usize;
    let mut bytes = Vec::new();
    for id in 0..n {
        bytes.extend(request(id, &body_for(id, len(id))));
    }
    let mut writer_side = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || write_all(&mut writer_side, &bytes));
    std::thread::sleep(Duration::from_millis(300));
    let mut order = Vec::new();
    for _ in 0..n {
        order.extend(read_echoes(&mut s, 1, |id| body_for(id, len(id))));
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    assert_eq!(order, (0..n).collect::<Vec<_>>());
    server.stop().unwrap();
}

pub fn shutdown_returns_with_a_send_blocked_on_a_full_socket(mode: NetMode) {
    let server = TestServer::start(mode);
    let mut s = connect(server.shard_port);
    // A 16 MiB reply the client never reads: the server's send cannot finish.
    write_all(&mut s, &request(1, &body_for(1, 16 * 1024 * 1024)));
    std::thread::sleep(Duration::from_millis(300));
    server.stop().expect("serve returns Ok");
    // Whatever arrived before the close, the connection ends.
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        match std::io::Read::read(&mut s, &mut sink) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::ConnectionReset), "{e}");
                break;
            }
        }
        assert!(
            total <= 16 * 1024 * 1024 + HEADER_LEN,
            "more bytes than the reply"
        );
    }
}
