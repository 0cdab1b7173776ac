//! Stopping and restarting as an operator or a supervisor does: SIGTERM with connections
//! open and replies owed, SIGTERM while the disk has stopped answering, a second signal,
//! and an immediate restart on the same ports right after kill -9 under load.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tern_client::{Client, ClientConfig, ScalarType};
use tern_protocol::frame::{NO_SHARD_HINT, Opcode, parse_frame, write_frame};
use tern_protocol::messages::{HelloRequest, encode};

use crate::harness::*;

fn client(server: &Server, timeout: Duration) -> Client {
    let config = ClientConfig {
        timeout,
        retries: 0,
        ..ClientConfig::default()
    };
    Client::connect_with(&server.endpoint(), config).expect("connect")
}

fn kv(i: usize, round: usize) -> tern_client::Item {
    item(&[("id", s(&format!("k{i}"))), ("round", n(round as i64))])
}

fn key(i: usize) -> tern_client::Item {
    item(&[("id", s(&format!("k{i}")))])
}

/// Every acknowledged write is there: each key holds the round it was last acknowledged
/// with, or a later one (a write that was applied but whose acknowledgement was lost).
fn check_acked(c: &mut Client, acked: &BTreeMap<usize, usize>) {
    for (&i, &round) in acked {
        let got = c.get_item("kvs", &key(i), true).unwrap().expect("present");
        let r = match got.get("round") {
            Some(tern_client::Value::N(n)) => n.as_str().parse::<usize>().unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(r >= round, "item {i}: round {r} < acknowledged {round}");
    }
}

/// A temporary file for a server's stderr, and a reader of what it wrote.
struct Stderr(tempfile::NamedTempFile);

impl Stderr {
    fn new() -> Stderr {
        Stderr(tempfile::NamedTempFile::new().unwrap())
    }
    fn stdio(&self) -> Stdio {
        Stdio::from(self.0.reopen().unwrap())
    }
    fn text(&self) -> String {
        std::fs::read_to_string(self.0.path()).unwrap()
    }
}

/// Writes until a write times out (the disk stalled); returns the acknowledged ones.
fn write_until_stalled(c: &mut Client) -> Vec<usize> {
    let mut acked = Vec::new();
    for i in 0..200 {
        match c.put_item("kvs", &kv(i, 1)) {
            Ok(()) => acked.push(i),
            Err(tern_client::Error::Timeout { .. }) => return acked,
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    panic!("the disk never stalled");
}

/// The disk stops answering (every fdatasync hangs): durable writes wait forever, and so
/// did shutdown — it waited for the log to reach the disk without a bound. Now the node
/// exits in bounded time, says why, exits non-zero, and a restart has every
/// acknowledged write.
#[test]
fn sigterm_stops_in_bounded_time_even_when_the_disk_stops_answering() {
    let data = Rc::new(tempfile::tempdir().unwrap());
    let stderr = Stderr::new();
    let flags = ["--inject-sync-stall-after", "8"];
    let mut server = Server::launch(data.clone(), 2, "uring", 0, &flags, stderr.stdio());
    let mut c = client(&server, Duration::from_secs(2));
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let acked = write_until_stalled(&mut c);
    assert!(
        !acked.is_empty(),
        "some writes were acknowledged before the stall"
    );
    // More connections with replies owed, and idle ones.
    let _idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", server.shared_port)).unwrap())
        .collect();
    let endpoint = server.endpoint();
    let pending = std::thread::spawn(move || {
        let config = ClientConfig {
            timeout: Duration::from_secs(60),
            retries: 0,
            ..ClientConfig::default()
        };
        let mut owed = Client::connect_with(&endpoint, config).unwrap();
        let mut p = owed.pipeline();
        for i in 500..520 {
            p.put_item("kvs", &kv(i, 1)).unwrap();
        }
        p.run().map(|r| r.len())
    });
    std::thread::sleep(Duration::from_millis(200));

    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(40))
        .expect("ternd exits in bounded time even with a stalled disk");
    assert!(
        !status.success(),
        "an unclean stop exits non-zero: {status:?}"
    );
    let log = stderr.text();
    assert!(log.contains("did not reach the disk"), "{log}");
    let _ = pending.join();

    let server = Server::start_in(data, 2, "uring", &[]);
    let mut c = server.client();
    for i in acked {
        assert_eq!(
            c.get_item("kvs", &key(i), true).unwrap(),
            Some(kv(i, 1)),
            "item {i}"
        );
    }
}

/// A second SIGTERM exits at once, whatever the first one is waiting for.
#[test]
fn a_second_signal_exits_at_once() {
    let data = Rc::new(tempfile::tempdir().unwrap());
    let stderr = Stderr::new();
    let flags = ["--inject-sync-stall-after", "8"];
    let mut server = Server::launch(data, 1, "uring", 0, &flags, stderr.stdio());
    let mut c = client(&server, Duration::from_secs(2));
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    write_until_stalled(&mut c);
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("the second signal ends the process");
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
    assert!(
        stderr.text().contains("again, exiting now"),
        "{}",
        stderr.text()
    );
}

/// SIGTERM while clients pipeline writes and others sit idle: a clean, prompt exit, and
/// every acknowledged write survives it.
#[test]
fn sigterm_with_busy_and_idle_connections_stops_cleanly() {
    let server = Server::start(2, "uring");
    server
        .client()
        .create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let _idle: Vec<TcpStream> = (0..100)
        .map(|i| {
            let port = [
                server.shared_port,
                server.shard_ports[0],
                server.shard_ports[1],
            ][i % 3];
            TcpStream::connect(("127.0.0.1", port)).unwrap()
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let endpoint = server.endpoint();
            std::thread::spawn(move || {
                let config = ClientConfig {
                    timeout: Duration::from_secs(10),
                    retries: 0,
                    ..ClientConfig::default()
                };
                let mut c = Client::connect_with(&endpoint, config).unwrap();
                let mut acked = BTreeMap::new();
                for round in 0..10_000usize {
                    let mut p = c.pipeline();
                    for j in 0..16 {
                        p.put_item("kvs", &kv(t * 100 + j, round)).unwrap();
                    }
                    let Ok(replies) = p.run() else { break };
                    let mut all = true;
                    for (j, r) in replies.into_iter().enumerate() {
                        match r {
                            Ok(_) => {
                                acked.insert(t * 100 + j, round);
                            }
                            Err(_) => all = false,
                        }
                    }
                    if !all {
                        break;
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let data = server.data.clone();
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let mut acked = BTreeMap::new();
    for w in writers {
        acked.extend(w.join().unwrap());
    }
    assert!(!acked.is_empty());
    let server = Server::start_in(data, 2, "uring", &[]);
    check_acked(&mut server.client(), &acked);
}

/// A base port with `count` consecutive free ports after it (ternd takes PORT and
/// PORT+1..=PORT+cores).
fn free_ports(count: u16) -> u16 {
    let mut seed = std::process::id() as u64 ^ 0x9E37_79B9;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20_000 + (seed >> 33) as u16 % 30_000;
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range found");
}

/// Sends Hello on a new connection to `port` and waits for the reply.
fn hello(port: u16) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = encode(&HelloRequest {
        client_name: "readiness".into(),
    });
    let mut frame = Vec::new();
    write_frame(&mut frame, Opcode::Hello, 0, 1, NO_SHARD_HINT, &[&body]);
    stream.write_all(&frame).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("port {port}: no Hello reply after ready: {e}"));
        assert!(n > 0, "port {port} closed before replying");
        buf.extend_from_slice(&chunk[..n]);
        if parse_frame(&buf).unwrap().is_some() {
            return;
        }
    }
}

/// kill -9 under write load, then an immediate restart on the same ports and data, five
/// times: the killed process's listening sockets are released by the kernel a moment
/// after its death, so the restart's bind waits for them (it exited at once with
/// "Address already in use"). Once it says it is ready, every port serves.
#[test]
fn an_immediate_restart_after_kill_9_under_load_gets_its_ports() {
    let cores = 2;
    let port = free_ports(cores as u16 + 1);
    let data = Rc::new(tempfile::tempdir().unwrap());
    let mut server = Server::launch(data.clone(), cores, "uring", port, &[], Stdio::inherit());
    server
        .client()
        .create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let mut acked: BTreeMap<usize, usize> = BTreeMap::new();
    for cycle in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let endpoint = server.endpoint();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let config = ClientConfig {
                        timeout: Duration::from_secs(5),
                        retries: 0,
                        ..ClientConfig::default()
                    };
                    let mut done = BTreeMap::new();
                    let Ok(mut c) = Client::connect_with(&endpoint, config) else {
                        return done;
                    };
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = t * 1000 + n % 200;
                        match c.put_item("kvs", &kv(i, cycle * 100_000 + n)) {
                            Ok(()) => {
                                done.insert(i, cycle * 100_000 + n);
                            }
                            Err(_) => break,
                        }
                    }
                    done
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let (data, mut dying) = server.kill9_now();
        stop.store(true, Ordering::Relaxed);
        // At once: no pause between the kill and the restart, the killed process maybe
        // not even gone yet.
        server = Server::launch(data, cores, "uring", port, &[], Stdio::inherit());
        let _ = dying.wait();
        for w in writers {
            for (i, round) in w.join().unwrap() {
                let e = acked.entry(i).or_default();
                *e = (*e).max(round);
            }
        }
        assert_eq!(server.shared_port, port, "cycle {cycle}");
        hello(port);
        for &p in &server.shard_ports {
            hello(p);
        }
    }
    check_acked(&mut server.client(), &acked);
    // And a port held by someone else is still an error, after the retry window.
    let holder = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = holder.local_addr().unwrap().port();
    let data = Rc::new(tempfile::tempdir().unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ternd"))
        .args([
            "--replicas",
            "1",
            "--no-pin",
            "--cores",
            "1",
            "--bind-retry-ms",
            "300",
            "--port",
        ])
        .arg(taken.to_string())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retrying"), "{err}");
    assert!(err.contains("in use"), "{err}");
}
