//! Trivial servers for the engine's tests and for measuring the generator's own capacity
//! (`tern-loadgen fake-server`): they answer every request with a canned reply and count
//! what they saw.
//!
//! Each connection is served by one blocking thread: read everything available, answer
//! every whole request in it, write the replies in one `write`. Replies are canned (a
//! tern reply frame is the canned body, its precomputed CRC and the request id patched
//! into the header; a RESP reply is a constant), so the server spends a few ns per request
//! and the generator, not the server, is what a capacity run measures.
//!
//! * tern: Hello (a topology of `shards` listeners, each a shard, with the server's own
//!   contiguous partition map), CreateTable / DescribeTable (the loadgen tables), GetItem (a
//!   canned item of `value_len` bytes, or not found), PutItem (an empty WriteItemResponse),
//!   Query (one canned item); anything else gets UnknownOperationException.
//! * RESP: PING, GET (a canned value or nil), SET (+OK), ZADD (:1), ZSCORE, ZRANGEBYSCORE
//!   (one member); anything else `-ERR unknown command`.
//!
//! Knobs for tests: every reply batch held back (`reply_delay`), one request's reply
//! stalled (`stall`), misses and errors injected every Nth request, and (tern) a check that
//! every request arrived on the shard its key routes to.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tern_protocol::frame::{
    self, FLAG_ERROR, FLAG_FOUND, FLAG_RESPONSE, HEADER_LEN, Header, NO_SHARD_HINT, Opcode,
};
use tern_protocol::keys::{KeyRef, partition_hash, partition_of};
use tern_protocol::limits::PARTITION_COUNT;
use tern_protocol::messages::{
    ArchivedGetItemRequest, ArchivedPutItemRequest, ArchivedQueryRequest, CreateTableRequest,
    ErrorResponse, HelloResponse, PageResponse, ShardInfo, TableDescription, TableRequest,
    TableResponse, TableStatus, WriteItemResponse, access, decode, encode,
};
use tern_protocol::value::access_item;
use tern_protocol::{ErrorCode, Item, Value};

use crate::proto::ProtocolKind;
use crate::proto::tern::{PK, RANGES_TABLE, VALUE, ranges_table_schema, table_schema};

/// Read buffer of a connection thread.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// How often idle threads look at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a fake server does.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub protocol: ProtocolKind,
    pub host: IpAddr,
    /// The first listener's port (0: ephemeral); shard k listens on `port + k` when set.
    pub port: u16,
    /// tern: shards (listeners) announced in Hello. RESP: always 1.
    pub shards: usize,
    /// Bytes of the value a GET returns.
    pub value_len: usize,
    /// Hold every batch of replies this long before sending it.
    pub reply_delay: Option<Duration>,
    /// Hold the reply to the Nth data request (1-based, over all connections) this long.
    pub stall: Option<(u64, Duration)>,
    /// Every Nth GET (per connection) finds nothing.
    pub miss_every: Option<u64>,
    /// Every Nth data request (per connection) fails.
    pub error_every: Option<u64>,
    /// tern: check that each request's key routes to the shard it arrived on.
    pub check_routing: bool,
    /// tern: check each request's body CRC (costs the server ~20 ns a request; off for
    /// capacity runs).
    pub check_crc: bool,
    /// Pin every server thread to this CPU.
    pub cpu: Option<usize>,
    /// One thread per listener polls all its connections without ever sleeping (it burns
    /// its CPU): no wake-ups, so the generator's sends cost only the TCP work. For
    /// capacity runs; `reply_delay` and `stall` are ignored.
    pub spin: bool,
}

impl FakeConfig {
    pub fn new(protocol: ProtocolKind) -> FakeConfig {
        FakeConfig {
            protocol,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            shards: 1,
            value_len: 100,
            reply_delay: None,
            stall: None,
            miss_every: None,
            error_every: None,
            check_routing: false,
            check_crc: true,
            cpu: None,
            spin: false,
        }
    }
}

/// What a fake server saw.
#[derive(Debug, Default)]
pub struct FakeStats {
    /// Data requests (everything but Hello, table DDL and PING).
    pub requests: AtomicU64,
    pub gets: AtomicU64,
    pub writes: AtomicU64,
    pub scans: AtomicU64,
    /// Setup requests (Hello, CreateTable, DescribeTable, PING).
    pub setup: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    /// tern: requests whose key belongs to another shard, or whose shard hint is wrong.
    pub misrouted: AtomicU64,
    /// Requests seen per shard (tern).
    pub per_shard: [AtomicU64; 8],
    pub connections: AtomicU64,
    /// Most requests one connection had unanswered at once / all connections together.
    pub max_pending_per_conn: AtomicU64,
    pub max_pending_total: AtomicU64,
    pending_total: AtomicU64,
    /// Malformed requests (the connection was closed).
    pub malformed: AtomicU64,
}

impl FakeStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// A running fake server; stopped when dropped.
pub struct FakeServer {
    ports: Vec<u16>,
    stats: Arc<FakeStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    config: FakeConfig,
    stats: Arc<FakeStats>,
    stop: Arc<AtomicBool>,
    ports: Vec<u16>,
    partition_map: Vec<u32>,
    /// Every data request so far (for `stall`).
    counter: AtomicU64,
    canned: Canned,
}

/// Replies built once.
struct Canned {
    item: Vec<u8>,
    item_crc: u32,
    write: Vec<u8>,
    write_crc: u32,
    page: Vec<u8>,
    page_crc: u32,
    resp_value: Vec<u8>,
    resp_range: Vec<u8>,
}

impl FakeServer {
    pub fn start(config: FakeConfig) -> io::Result<FakeServer> {
        let shards = match config.protocol {
            ProtocolKind::Tern => config.shards.clamp(1, 8),
            ProtocolKind::Resp => 1,
        };
        let mut listeners = Vec::with_capacity(shards);
        for k in 0..shards {
            let port = if config.port == 0 {
                0
            } else {
                config.port + k as u16
            };
            let l = TcpListener::bind(SocketAddr::new(config.host, port))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<io::Result<_>>()?;
        let partition_map = (0..u64::from(PARTITION_COUNT))
            .map(|p| (p * shards as u64 / u64::from(PARTITION_COUNT)) as u32)
            .collect();
        let item = Item::from_attrs([
            (PK.to_owned(), Value::S("user000000000000".into())),
            (VALUE.to_owned(), Value::B(vec![b'x'; config.value_len])),
        ])
        .encode();
        let write = encode(&WriteItemResponse { attributes: None });
        let page = encode(&PageResponse {
            items: vec![item.clone()],
            count: 1,
            scanned_count: 1,
            last_evaluated_key: None,
        });
        let mut resp_value = format!("${}\r\n", config.value_len).into_bytes();
        resp_value.extend(std::iter::repeat_n(b'x', config.value_len));
        resp_value.extend_from_slice(b"\r\n");
        let canned = Canned {
            item_crc: crc32fast::hash(&item),
            item,
            write_crc: crc32fast::hash(&write),
            write,
            page_crc: crc32fast::hash(&page),
            page,
            resp_value,
            resp_range: b"*1\r\n$16\r\nuser000000000000\r\n".to_vec(),
        };
        let stats = Arc::new(FakeStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            config,
            stats: stats.clone(),
            stop: stop.clone(),
            ports: ports.clone(),
            partition_map,
            counter: AtomicU64::new(0),
            canned,
        });
        let mut threads = Vec::new();
        for (shard, listener) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fake-accept-{shard}"))
                    .spawn(move || {
                        if shared.config.spin {
                            spin_loop(&shared, listener, shard as u32)
                        } else {
                            accept_loop(&shared, listener, shard as u32)
                        }
                    })?,
            );
        }
        Ok(FakeServer {
            ports,
            stats,
            stop,
            threads,
        })
    }

    /// "127.0.0.1:PORT" of the first listener (the shared port of a tern topology).
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.ports[0])
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn stats(&self) -> &FakeStats {
        &self.stats
    }

    /// Stops accepting, closes every connection and joins the threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, shard: u32) {
    if let Some(cpu) = shared.config.cpu {
        let _ = crate::engine::pin_current_thread(cpu);
    }
    let mut conns = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.stats.connections.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                if let Ok(t) = std::thread::Builder::new()
                    .name(format!("fake-conn-{shard}"))
                    .spawn(move || serve(&shared, stream, shard))
                {
                    conns.push(t);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL_INTERVAL),
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
    for t in conns {
        let _ = t.join();
    }
}

/// A connection of the spinning server.
struct SpinConn {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    out_sent: usize,
    state: ConnState,
}

/// Serves every connection of `listener` from this one thread, never sleeping.
fn spin_loop(shared: &Shared, listener: TcpListener, shard: u32) {
    if let Some(cpu) = shared.config.cpu {
        let _ = crate::engine::pin_current_thread(cpu);
    }
    let mut conns: Vec<SpinConn> = Vec::new();
    let mut turn = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        turn += 1;
        if turn % 64 == 1 || conns.is_empty() {
            while let Ok((stream, _)) = listener.accept() {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                shared.stats.connections.fetch_add(1, Ordering::SeqCst);
                conns.push(SpinConn {
                    stream,
                    buf: vec![0u8; READ_BUFFER_BYTES],
                    filled: 0,
                    out: Vec::with_capacity(READ_BUFFER_BYTES),
                    out_sent: 0,
                    state: ConnState::default(),
                });
            }
            if conns.is_empty() {
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        conns.retain_mut(|c| spin_conn(shared, c, shard));
    }
}

/// One look at a spinning server's connection; false when it is done.
fn spin_conn(shared: &Shared, c: &mut SpinConn, shard: u32) -> bool {
    if c.out_sent < c.out.len() {
        match c.stream.write(&c.out[c.out_sent..]) {
            Ok(n) => c.out_sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        if c.out_sent < c.out.len() {
            return true;
        }
    }
    if c.filled == c.buf.len() {
        c.buf.resize(c.buf.len() * 2, 0);
    }
    let n = match c.stream.read(&mut c.buf[c.filled..]) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
        Err(_) => return false,
    };
    c.filled += n;
    c.out.clear();
    c.out_sent = 0;
    let (used, requests, ok) = match shared.config.protocol {
        ProtocolKind::Tern => {
            answer_tern(shared, &c.buf[..c.filled], &mut c.out, shard, &mut c.state)
        }
        ProtocolKind::Resp => answer_resp(shared, &c.buf[..c.filled], &mut c.out, &mut c.state),
    };
    c.buf.copy_within(used..c.filled, 0);
    c.filled -= used;
    if requests > 0 {
        shared
            .stats
            .max_pending_per_conn
            .fetch_max(requests, Ordering::Relaxed);
    }
    match c.stream.write(&c.out) {
        Ok(n) => c.out_sent = n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(_) => return false,
    }
    if !ok {
        shared.stats.malformed.fetch_add(1, Ordering::SeqCst);
        return false;
    }
    true
}

/// Per-connection counters.
#[derive(Default)]
struct ConnState {
    data_requests: u64,
    gets: u64,
}

fn serve(shared: &Shared, mut stream: TcpStream, shard: u32) {
    if let Some(cpu) = shared.config.cpu {
        let _ = crate::engine::pin_current_thread(cpu);
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(POLL_INTERVAL));
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut filled = 0;
    let mut out = Vec::with_capacity(READ_BUFFER_BYTES);
    let mut state = ConnState::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        filled += n;
        out.clear();
        let (used, requests, ok) = match shared.config.protocol {
            ProtocolKind::Tern => answer_tern(shared, &buf[..filled], &mut out, shard, &mut state),
            ProtocolKind::Resp => answer_resp(shared, &buf[..filled], &mut out, &mut state),
        };
        buf.copy_within(used..filled, 0);
        filled -= used;
        if requests > 0 {
            let stats = &shared.stats;
            stats
                .max_pending_per_conn
                .fetch_max(requests, Ordering::SeqCst);
            let total = stats.pending_total.fetch_add(requests, Ordering::SeqCst) + requests;
            stats.max_pending_total.fetch_max(total, Ordering::SeqCst);
            let first = shared.counter.fetch_add(requests, Ordering::SeqCst) + 1;
            let mut hold = shared.config.reply_delay.unwrap_or_default();
            if let Some((nth, stall)) = shared.config.stall
                && (first..first + requests).contains(&nth)
            {
                hold += stall;
            }
            if !hold.is_zero() {
                std::thread::sleep(hold);
            }
            let wrote = stream.write_all(&out);
            stats.pending_total.fetch_sub(requests, Ordering::SeqCst);
            if wrote.is_err() {
                return;
            }
        } else if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        if !ok {
            shared.stats.malformed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

fn every(n: Option<u64>, count: u64) -> bool {
    n.is_some_and(|n| n > 0 && count.is_multiple_of(n))
}

/// Appends a reply frame whose body's CRC is known.
fn reply_frame(out: &mut Vec<u8>, opcode: Opcode, flags: u16, id: u64, body: &[u8], crc: u32) {
    let header = Header {
        opcode,
        flags: FLAG_RESPONSE | flags,
        request_id: id,
        body_len: body.len() as u32,
        body_crc32: crc,
        shard_hint: NO_SHARD_HINT,
    };
    let mut head = [0u8; HEADER_LEN];
    header.write(&mut head);
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
}

fn reply_error(out: &mut Vec<u8>, opcode: Opcode, id: u64, code: ErrorCode, message: &str) {
    let body = encode(&ErrorResponse {
        code: code as u16,
        message: message.into(),
    });
    reply_frame(out, opcode, FLAG_ERROR, id, &body, crc32fast::hash(&body));
}

/// Answers every whole tern frame of `data`; returns (bytes used, data requests, ok).
fn answer_tern(
    shared: &Shared,
    data: &[u8],
    out: &mut Vec<u8>,
    shard: u32,
    state: &mut ConnState,
) -> (usize, u64, bool) {
    let c = &shared.canned;
    let stats = &shared.stats;
    let mut at = 0;
    let mut requests = 0u64;
    let (mut gets, mut writes, mut scans) = (0u64, 0u64, 0u64);
    let ok = loop {
        let parsed = if shared.config.check_crc {
            frame::parse_frame(&data[at..])
        } else {
            frame::parse_frame_without_crc(&data[at..])
        };
        let (f, used) = match parsed {
            Ok(Some(x)) => x,
            Ok(None) => break true,
            Err(_) => break false,
        };
        at += used;
        let id = f.header.request_id;
        let op = f.header.opcode;
        match op {
            Opcode::Hello => {
                stats.setup.fetch_add(1, Ordering::SeqCst);
                let hello = HelloResponse {
                    node_id: "fake".into(),
                    protocol_version: frame::VERSION,
                    shared_port: shared.ports[0],
                    shards: shared
                        .ports
                        .iter()
                        .enumerate()
                        .map(|(k, &port)| ShardInfo {
                            shard: k as u32,
                            core: k as u32,
                            port,
                        })
                        .collect(),
                    partition_map: shared.partition_map.clone(),
                };
                let body = encode(&hello);
                reply_frame(out, op, 0, id, &body, crc32fast::hash(&body));
                continue;
            }
            Opcode::CreateTable | Opcode::DescribeTable => {
                stats.setup.fetch_add(1, Ordering::SeqCst);
                let name = if op == Opcode::CreateTable {
                    decode::<CreateTableRequest>(f.body).map(|r| r.name)
                } else {
                    decode::<TableRequest>(f.body).map(|r| r.name)
                };
                let Ok(name) = name else {
                    break false;
                };
                let key_schema = if name == RANGES_TABLE {
                    ranges_table_schema()
                } else {
                    table_schema()
                };
                let body = encode(&TableResponse {
                    table: TableDescription {
                        name,
                        key_schema,
                        status: TableStatus::Active,
                        item_count: 0,
                        size_bytes: 0,
                        creation_time_ms: 0,
                    },
                });
                reply_frame(out, op, 0, id, &body, crc32fast::hash(&body));
                continue;
            }
            _ => {}
        }
        requests += 1;
        state.data_requests += 1;
        if shared.config.check_routing
            && !routed_here(shared, op, f.body, shard, f.header.shard_hint)
        {
            stats.misrouted.fetch_add(1, Ordering::SeqCst);
        }
        if every(shared.config.error_every, state.data_requests) {
            stats.errors.fetch_add(1, Ordering::SeqCst);
            reply_error(
                out,
                op,
                id,
                ErrorCode::ValidationException,
                "injected error",
            );
            continue;
        }
        match op {
            Opcode::GetItem => {
                gets += 1;
                state.gets += 1;
                if every(shared.config.miss_every, state.gets) {
                    stats.misses.fetch_add(1, Ordering::SeqCst);
                    reply_frame(out, op, 0, id, &[], crc32fast::hash(&[]));
                } else {
                    reply_frame(out, op, FLAG_FOUND, id, &c.item, c.item_crc);
                }
            }
            Opcode::PutItem => {
                writes += 1;
                reply_frame(out, op, 0, id, &c.write, c.write_crc);
            }
            Opcode::Query => {
                scans += 1;
                reply_frame(out, op, 0, id, &c.page, c.page_crc);
            }
            other => reply_error(
                out,
                other,
                id,
                ErrorCode::UnknownOperationException,
                "the fake server does not do that",
            ),
        }
    };
    stats.requests.fetch_add(requests, Ordering::SeqCst);
    stats.gets.fetch_add(gets, Ordering::SeqCst);
    stats.writes.fetch_add(writes, Ordering::SeqCst);
    stats.scans.fetch_add(scans, Ordering::SeqCst);
    if let Some(counter) = stats.per_shard.get(shard as usize) {
        counter.fetch_add(requests, Ordering::SeqCst);
    }
    (at, requests, ok)
}

/// Whether a tern request's partition key routes to `shard`, and its hint says so.
fn routed_here(shared: &Shared, op: Opcode, body: &[u8], shard: u32, hint: u32) -> bool {
    let routed = |table: &str, pk: Option<KeyRef<'_>>| match pk {
        Some(pk) => {
            let owner = shared.partition_map[partition_of(partition_hash(table, pk)) as usize];
            owner == shard && hint == shard
        }
        None => false,
    };
    match op {
        Opcode::GetItem => access::<ArchivedGetItemRequest>(body).is_ok_and(|r| {
            access_item(r.key.as_slice())
                .is_ok_and(|k| routed(r.table.as_str(), k.get(PK).and_then(KeyRef::from_archived)))
        }),
        Opcode::PutItem => access::<ArchivedPutItemRequest>(body).is_ok_and(|r| {
            access_item(r.item.as_slice())
                .is_ok_and(|k| routed(r.table.as_str(), k.get(PK).and_then(KeyRef::from_archived)))
        }),
        Opcode::Query => access::<ArchivedQueryRequest>(body)
            .is_ok_and(|r| routed(r.table.as_str(), KeyRef::from_archived(&r.partition_key))),
        _ => true,
    }
}

/// (command name, argument count, bytes used).
type RespCommand<'a> = (&'a [u8], usize, usize);

/// The bulk-string arguments of the RESP command at the front of `data`: (command
/// name, its argument count, bytes used); Ok(None) when incomplete.
fn resp_command(data: &[u8]) -> Result<Option<RespCommand<'_>>, ()> {
    let line = |from: usize| -> Result<Option<(usize, usize)>, ()> {
        let Some(cr) = data[from..].iter().position(|&b| b == b'\r') else {
            return Ok(None);
        };
        let cr = from + cr;
        if cr + 1 >= data.len() {
            return Ok(None);
        }
        let text = std::str::from_utf8(&data[from..cr]).map_err(|_| ())?;
        let n: usize = text.parse().map_err(|_| ())?;
        Ok(Some((n, cr + 2)))
    };
    if data.is_empty() {
        return Ok(None);
    }
    if data[0] != b'*' {
        return Err(());
    }
    let Some((args, mut at)) = line(1)? else {
        return Ok(None);
    };
    let mut name: &[u8] = &[];
    for i in 0..args {
        if at >= data.len() {
            return Ok(None);
        }
        if data[at] != b'$' {
            return Err(());
        }
        let Some((len, start)) = line(at + 1)? else {
            return Ok(None);
        };
        let end = start + len + 2;
        if data.len() < end {
            return Ok(None);
        }
        if i == 0 {
            name = &data[start..start + len];
        }
        at = end;
    }
    Ok(Some((name, args, at)))
}

/// Answers every whole RESP command of `data`; returns (bytes used, data requests, ok).
fn answer_resp(
    shared: &Shared,
    data: &[u8],
    out: &mut Vec<u8>,
    state: &mut ConnState,
) -> (usize, u64, bool) {
    let c = &shared.canned;
    let stats = &shared.stats;
    let mut at = 0;
    let mut requests = 0u64;
    let (mut gets, mut writes, mut scans) = (0u64, 0u64, 0u64);
    let ok = loop {
        let (name, _args, used) = match resp_command(&data[at..]) {
            Ok(Some(x)) => x,
            Ok(None) => break true,
            Err(()) => break false,
        };
        at += used;
        if name.eq_ignore_ascii_case(b"PING") {
            stats.setup.fetch_add(1, Ordering::SeqCst);
            out.extend_from_slice(b"+PONG\r\n");
            continue;
        }
        requests += 1;
        state.data_requests += 1;
        if every(shared.config.error_every, state.data_requests) {
            stats.errors.fetch_add(1, Ordering::SeqCst);
            out.extend_from_slice(b"-ERR injected error\r\n");
            continue;
        }
        if name.eq_ignore_ascii_case(b"GET") || name.eq_ignore_ascii_case(b"ZSCORE") {
            gets += 1;
            state.gets += 1;
            if every(shared.config.miss_every, state.gets) {
                stats.misses.fetch_add(1, Ordering::SeqCst);
                out.extend_from_slice(b"$-1\r\n");
            } else if name.eq_ignore_ascii_case(b"GET") {
                out.extend_from_slice(&c.resp_value);
            } else {
                out.extend_from_slice(b"$1\r\n7\r\n");
            }
        } else if name.eq_ignore_ascii_case(b"SET") {
            writes += 1;
            out.extend_from_slice(b"+OK\r\n");
        } else if name.eq_ignore_ascii_case(b"ZADD") {
            writes += 1;
            out.extend_from_slice(b":1\r\n");
        } else if name.eq_ignore_ascii_case(b"ZRANGEBYSCORE") {
            scans += 1;
            out.extend_from_slice(&c.resp_range);
        } else {
            out.extend_from_slice(b"-ERR unknown command\r\n");
        }
    };
    stats.requests.fetch_add(requests, Ordering::SeqCst);
    stats.gets.fetch_add(gets, Ordering::SeqCst);
    stats.writes.fetch_add(writes, Ordering::SeqCst);
    stats.scans.fetch_add(scans, Ordering::SeqCst);
    (at, requests, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_commands_are_delimited() {
        let cmd = b"*2\r\n$3\r\nGET\r\n$4\r\nkey1\r\n";
        for cut in 0..cmd.len() {
            assert_eq!(resp_command(&cmd[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(resp_command(cmd), Ok(Some((&b"GET"[..], 2, cmd.len()))));
        assert!(resp_command(b"GET key\r\n").is_err());
    }
}
