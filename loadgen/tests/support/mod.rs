//! Helpers shared by the engine tests: workload specs, run configs, a Redis process.
//!
//! The fake servers themselves are `tern_loadgen::fake` (the CLI's `fake-server` uses them
//! too, to measure the generator's capacity).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tern_loadgen::engine::{RunConfig, RunLength};
use tern_loadgen::proto::ProtocolKind;
use tern_loadgen::report::Report;
use tern_loadgen::workload::{KeyDist, Mix, OpKind, ValueSize, WorkloadSpec};

/// Load tests of one binary run one at a time: they measure rates and latencies, and
/// two runs sharing the 2 CPUs would disturb each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A uniform workload over `keys` keys, 100-byte values, scans of up to 10.
pub fn spec(mix: Mix, keys: u64) -> WorkloadSpec {
    WorkloadSpec {
        mix,
        keyspace: keys,
        dist: KeyDist::Uniform,
        value: ValueSize::Fixed(100),
        scan_len_max: 10,
        seed: 7,
    }
}

/// A quiet closed-loop run of exactly `ops` operations, no warm-up.
pub fn ops_run(target: &str, protocol: ProtocolKind, spec: WorkloadSpec, ops: u64) -> RunConfig {
    let mut c = RunConfig::new(target, protocol, spec);
    c.length = RunLength::Ops(ops);
    c.warmup = Duration::ZERO;
    c.connections = 4;
    c.depth = 8;
    c.quiet = true;
    c
}

/// Completed operations of one kind in a report.
pub fn ops_of(report: &Report, kind: OpKind) -> u64 {
    report
        .per_op
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, s)| s.ops)
}

/// Failed operations of one kind in a report.
pub fn errors_of(report: &Report, kind: OpKind) -> u64 {
    report
        .per_op
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, s)| s.errors)
}

/// `redis-server` on PATH, if any.
pub fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// A redis-server on an ephemeral port, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start(binary: &PathBuf) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redis.ping() {
                return redis;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Sends one command (inline form) and returns the raw reply's first line.
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
