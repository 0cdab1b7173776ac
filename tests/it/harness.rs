//! Starting and stopping a real `ternd` for a test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tern_client::{Client, ClientConfig, Item, KeyAttr, KeySchema, ScalarType, Value};

/// How long a test waits for a starting `ternd`'s readiness line (recovery of a test's
/// small log takes milliseconds; ternd's own startup bound is 30 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `ternd`, killed when dropped, with its data directory (removed when the
/// last `Server` using it is dropped).
pub struct Server {
    child: Option<Child>,
    pub shared_port: u16,
    pub shard_ports: Vec<u16>,
    pub data: Rc<tempfile::TempDir>,
}

impl Server {
    /// Starts `ternd --port 0 --cores N --no-pin --net MODE` on a fresh data directory
    /// and waits until it is ready (every shard serves).
    pub fn start(cores: usize, net: &str) -> Server {
        let data = Rc::new(tempfile::tempdir().expect("data dir"));
        Server::start_in(data, cores, net, &[])
    }

    /// Starts `ternd` on an existing data directory (a restart), with extra arguments.
    pub fn start_in(
        data: Rc<tempfile::TempDir>,
        cores: usize,
        net: &str,
        extra: &[&str],
    ) -> Server {
        Server::launch(data, cores, net, 0, extra, Stdio::inherit())
    }

    /// Starts `ternd --port PORT` (0: ephemeral) with its stderr going to `stderr`.
    pub fn launch(
        data: Rc<tempfile::TempDir>,
        cores: usize,
        net: &str,
        port: u16,
        extra: &[&str],
        stderr: Stdio,
    ) -> Server {
        let dir: &Path = data.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ternd"));
        cmd.args(["--replicas", "1", "--no-pin", "--net", net, "--port"])
            .arg(port.to_string())
            .arg("--cores")
            .arg(cores.to_string())
            .arg("--data-dir")
            .arg(dir)
            // Small segments: less to zero-fill per test node.
            .args(["--segment-size-mib", "8"])
            .args(extra)
            .stderr(stderr);
        Server::spawn(cmd, data, cores)
    }

    /// Runs `cmd` (a `ternd` command line, stderr already chosen) and waits for its
    /// readiness line.
    pub fn spawn(mut cmd: Command, data: Rc<tempfile::TempDir>, cores: usize) -> Server {
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ternd");
        let stdout = child.stdout.take().expect("stdout piped");
        // Bounded: a node that never gets ready fails its test instead of hanging the
        // suite (ternd gives up by itself after STARTUP_SERVING_TIMEOUT_MS; this is the
        // guard should it not).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(read) => read.expect("read ternd stdout"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ternd printed no readiness line within {READY_TIMEOUT:?}");
            }
        };
        let doc: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            panic!("ternd's first line is not the readiness JSON ({e}): {line:?}")
        });
        assert_eq!(doc["event"], "ready", "{line}");
        let shared_port = doc["shared_port"].as_u64().expect("shared_port") as u16;
        let shard_ports: Vec<u16> = doc["shard_ports"]
            .as_array()
            .expect("shard_ports")
            .iter()
            .map(|p| p.as_u64().expect("port") as u16)
            .collect();
        assert_eq!(shard_ports.len(), cores);
        Server {
            child: Some(child),
            shared_port,
            shard_ports,
            data,
        }
    }

    /// SIGKILL, no goodbye: what a crash looks like to the data directory.
    pub fn kill9(mut self) -> Rc<tempfile::TempDir> {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
        self.data.clone()
    }

    /// SIGKILL without waiting for the process to be gone (a supervisor that restarts at
    /// once): returns the data directory and the dying process, to reap later.
    pub fn kill9_now(mut self) -> (Rc<tempfile::TempDir>, Child) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        (self.data.clone(), child)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.shared_port)
    }

    pub fn client(&self) -> Client {
        let config = ClientConfig {
            timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        };
        Client::connect_with(&self.endpoint(), config).expect("connect")
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("ternd did not exit within 10 s of SIGTERM"))
    }

    /// Sends a signal by name (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        // Plain kill(2) is not in std: use the `kill` command.
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {pid}");
    }

    /// Waits up to `timeout` for the process to exit; `None` (and the process killed) if
    /// it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn s(v: &str) -> Value {
    Value::S(v.to_owned())
}

pub fn n(v: i64) -> Value {
    Value::N(v.into())
}

pub fn item(attrs: &[(&str, Value)]) -> Item {
    Item::from_attrs(attrs.iter().map(|(k, v)| (k.to_string(), v.clone())))
}

pub fn schema(pk: (&str, ScalarType), sk: Option<(&str, ScalarType)>) -> KeySchema {
    KeySchema {
        partition: KeyAttr {
            name: pk.0.into(),
            ty: pk.1,
        },
        sort: sk.map(|(name, ty)| KeyAttr {
            name: name.into(),
            ty,
        }),
    }
}

/// Both transports, for tests that must pass on each.
pub const NET_MODES: [&str; 2] = ["uring", "glommio"];
