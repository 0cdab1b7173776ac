//! tern-client: the Rust client of tern's binary protocol.
//!
//! * Shard-aware: [`Client::connect`] says Hello to any node port, learns the shards, their
//!   ports and the partition map, and sends every single-key request straight to the core
//!   that owns the key (one connection per shard, opened on first use).
//! * Pipelined: [`Pipeline`] sends many requests before reading replies, which carry the
//!   request id.
//! * Typed errors ([`Error`]) with the DynamoDB error name; retryable errors are retried
//!   with exponential backoff ([`ClientConfig::retries`]); every read has a timeout.
//!
//! The client is blocking (std sockets): simple to embed, and the load generator has its
//! own io_uring event loop for throughput.
#![forbid(unsafe_code)]

mod connection;
mod error;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use connection::{Connection, RawReply};
pub use error::{Error, Result};
use tern_protocol::frame::{FLAG_FOUND, NO_SHARD_HINT, Opcode, write_frame};
use tern_protocol::keys::{KeyRef, partition_hash, partition_of};
use tern_protocol::limits::FRAME_BODY_MAX_BYTES;
pub use tern_protocol::messages::{
    BatchGetItemRequest, BatchGetItemResponse, BatchWriteItemRequest, BatchWriteItemResponse,
    Counter, HelloResponse, KeysAndAttributes, ListTablesRequest, ListTablesResponse,
    MembershipChange, MembershipRequest, MembershipResponse, PageResponse, QueryRequest,
    ReturnValues, ScanRequest, ShardStats, ShardVoters, SortKeyCondition, StatsRequest,
    StatsResponse, TableDescription, TableItems, TableStatus, TableWriteRequests, WriteRequest,
};
use tern_protocol::messages::{
    CreateTableRequest, DeleteItemRequest, GetItemRequest, HelloRequest, PutItemRequest,
    TableRequest, TableResponse, WriteItemResponse, decode, encode,
};
use tern_protocol::value::access_item;
pub use tern_protocol::{ErrorCode, Item, KeyAttr, KeySchema, Number, ScalarType, Value};

/// Whether applying the request twice leaves the same state as applying it once (so a
/// write of unknown outcome may be retried). Every operation so far: Put and Delete
/// are idempotent, the rest are reads or DDL that refuses a repeat. UpdateItem with
/// arithmetic and conditional writes will not be.
fn idempotent(opcode: Opcode) -> bool {
    match opcode {
        Opcode::Hello
        | Opcode::CreateTable
        | Opcode::DeleteTable
        | Opcode::DescribeTable
        | Opcode::ListTables
        | Opcode::PutItem
        | Opcode::GetItem
        | Opcode::DeleteItem
        | Opcode::Query
        | Opcode::Scan
        | Opcode::BatchGetItem
        | Opcode::BatchWriteItem
        | Opcode::Stats
        | Opcode::ChangeMembership => true,
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Connect, read and write timeout.
    pub timeout: Duration,
    /// How many times a retryable error is retried (0 = never).
    pub retries: u32,
    /// First backoff; doubles per retry.
    pub backoff: Duration,
    /// Requests a pipeline keeps in flight per connection before reading replies.
    pub pipeline_window: usize,
    pub client_name: String,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(20),
            pipeline_window: 256,
            client_name: "tern-client".into(),
        }
    }
}

/// A page of items, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub count: u32,
    pub scanned_count: u32,
    pub last_evaluated_key: Option<Item>,
}

impl Page {
    fn from_response(resp: PageResponse) -> Result<Page> {
        Ok(Page {
            items: resp
                .items
                .iter()
                .map(|b| decode_item(b))
                .collect::<Result<_>>()?,
            count: resp.count,
            scanned_count: resp.scanned_count,
            last_evaluated_key: resp
                .last_evaluated_key
                .as_deref()
                .map(decode_item)
                .transpose()?,
        })
    }
}

fn decode_item(bytes: &[u8]) -> Result<Item> {
    Item::decode(bytes).map_err(|e| Error::Protocol(format!("undecodable item: {e}")))
}

fn decode_body<T>(reply: RawReply) -> Result<T>
where
    T: rkyv::Archive,
    T::Archived: tern_protocol::messages::Checked
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    decode::<T>(&reply.body)
        .map_err(|e| Error::Protocol(format!("undecodable {} reply: {e}", reply.opcode().name())))
}

/// A connection to a tern node.
pub struct Client {
    config: ClientConfig,
    host: std::net::IpAddr,
    topology: HelloResponse,
    /// The connection to the address given to `connect` (any shard may serve anything).
    entry: Connection,
    /// Per shard: a connection to its own port, opened on first use.
    shards: Vec<Option<Connection>>,
    schemas: HashMap<String, KeySchema>,
    next_id: u64,
}

impl Client {
    /// Connects to `endpoint` ("host:port") and learns the topology.
    pub fn connect(endpoint: &str) -> Result<Client> {
        Client::connect_with(endpoint, ClientConfig::default())
    }

    pub fn connect_with(endpoint: &str, config: ClientConfig) -> Result<Client> {
        let addr: SocketAddr = endpoint
            .to_socket_addrs()
            .map_err(|e| Error::Invalid(format!("cannot resolve {endpoint}: {e}")))?
            .next()
            .ok_or_else(|| Error::Invalid(format!("{endpoint} resolves to no address")))?;
        let mut entry = Connection::connect(addr, config.timeout)?;
        let hello = encode(&HelloRequest {
            client_name: config.client_name.clone(),
        });
        let mut frame = Vec::new();
        write_frame(&mut frame, Opcode::Hello, 0, 1, NO_SHARD_HINT, &[&hello]);
        entry.send(&frame)?;
        let topology: HelloResponse = decode_body(entry.recv()?.into_result()?)?;
        if topology
            .partition_map
            .iter()
            .any(|s| *s as usize >= topology.shards.len())
        {
            return Err(Error::Protocol(
                "Hello: partition map names a shard that does not exist".into(),
            ));
        }
        Ok(Client {
            shards: (0..topology.shards.len()).map(|_| None).collect(),
            config,
            host: addr.ip(),
            topology,
            entry,
            schemas: HashMap::new(),
            next_id: 2,
        })
    }

    /// The topology learned at connect time.
    pub fn topology(&self) -> &HelloResponse {
        &self.topology
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The shard owning a table's partition key, from an encoded item or key.
    ///
    /// Only the partition key is needed to route. When it is missing or of the wrong
    /// type, the request goes to the entry connection (`None`) and the server answers
    /// with DynamoDB's own error for the whole item or key.
    pub fn shard_for(&mut self, table: &str, item_or_key: &[u8]) -> Result<Option<u32>> {
        let schema = self.schema(table)?;
        let item = access_item(item_or_key)
            .map_err(|e| Error::Invalid(format!("bad item encoding: {e}")))?;
        let pk = item
            .get(&schema.partition.name)
            .and_then(KeyRef::from_archived)
            .filter(|k| k.scalar_type() == schema.partition.ty);
        Ok(pk.map(|pk| self.shard_of_hash(partition_hash(table, pk))))
    }

    fn shard_of_hash(&self, hash: u64) -> u32 {
        self.topology.partition_map[partition_of(hash) as usize]
    }

    fn connection(&mut self, shard: Option<u32>) -> Result<&mut Connection> {
        let Some(shard) = shard else {
            return Ok(&mut self.entry);
        };
        let idx = shard as usize;
        if self.shards[idx].is_none() {
            let port = self.topology.shards[idx].port;
            self.shards[idx] = Some(Connection::connect(
                SocketAddr::new(self.host, port),
                self.config.timeout,
            )?);
        }
        Ok(self.shards[idx].as_mut().expect("connected above"))
    }

    /// Drops a connection after an error: a late reply must never be taken for another's.
    fn reset(&mut self, shard: Option<u32>) {
        if let Some(s) = shard {
            self.shards[s as usize] = None;
        }
    }

    /// Sends one request and waits for its reply, retrying retryable failures.
    pub fn call(&mut self, shard: Option<u32>, opcode: Opcode, body: &[u8]) -> Result<RawReply> {
        let mut attempt = 0;
        loop {
            let result = self.call_once(shard, opcode, body);
            match result {
                // A write of unknown outcome is sent again only if applying it twice
                // is harmless.
                Err(e)
                    if e.is_retryable()
                        && attempt < self.config.retries
                        && (!e.is_outcome_unknown() || idempotent(opcode)) =>
                {
                    std::thread::sleep(self.config.backoff * 2u32.saturating_pow(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn call_once(&mut self, shard: Option<u32>, opcode: Opcode, body: &[u8]) -> Result<RawReply> {
        let id = self.next_id();
        let frame = request_frame(opcode, id, shard, body)?;
        let result = (|| {
            let conn = self.connection(shard)?;
            conn.send(&frame)?;
            let reply = conn.recv()?;
            if reply.header.request_id != id {
                return Err(Error::Protocol(format!(
                    "reply for request {} while waiting for {id}",
                    reply.header.request_id
                )));
            }
            Ok(reply)
        })();
        if matches!(
            result,
            Err(Error::Io { .. } | Error::Timeout { .. } | Error::Protocol(_))
        ) {
            if shard.is_none() {
                // The entry connection is needed for DDL; reconnect it.
                if let Ok(c) = Connection::connect(
                    SocketAddr::new(self.host, self.topology.shared_port),
                    self.config.timeout,
                ) {
                    self.entry = c;
                }
            }
            self.reset(shard);
        }
        result?.into_result()
    }

    // -------------------------------------------------------------------------------
    // Tables

    pub fn create_table(&mut self, name: &str, key_schema: KeySchema) -> Result<TableDescription> {
        let body = encode(&CreateTableRequest {
            name: name.to_owned(),
            key_schema: key_schema.clone(),
        });
        let resp: TableResponse = decode_body(self.call(None, Opcode::CreateTable, &body)?)?;
        self.schemas.insert(name.to_owned(), key_schema);
        Ok(resp.table)
    }

    pub fn delete_table(&mut self, name: &str) -> Result<TableDescription> {
        let body = encode(&TableRequest {
            name: name.to_owned(),
        });
        self.schemas.remove(name);
        let resp: TableResponse = decode_body(self.call(None, Opcode::DeleteTable, &body)?)?;
        Ok(resp.table)
    }

    pub fn describe_table(&mut self, name: &str) -> Result<TableDescription> {
        let body = encode(&TableRequest {
            name: name.to_owned(),
        });
        let resp: TableResponse = decode_body(self.call(None, Opcode::DescribeTable, &body)?)?;
        self.schemas
            .insert(name.to_owned(), resp.table.key_schema.clone());
        Ok(resp.table)
    }

    /// Counters of every shard of the node.
    pub fn stats(&mut self) -> Result<StatsResponse> {
        decode_body(self.call(None, Opcode::Stats, &encode(&StatsRequest::default()))?)
    }

    /// Adds or removes one voter of every shard's group (a replicated cluster); returns
    /// each shard's voters afterwards.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<MembershipResponse> {
        let body = encode(&MembershipRequest { change });
        decode_body(self.call(None, Opcode::ChangeMembership, &body)?)
    }

    pub fn list_tables(&mut self, req: &ListTablesRequest) -> Result<ListTablesResponse> {
        decode_body(self.call(None, Opcode::ListTables, &encode(req))?)
    }

    /// Every table name, following pages.
    pub fn list_all_tables(&mut self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut req = ListTablesRequest::default();
        loop {
            let page = self.list_tables(&req)?;
            names.extend(page.table_names);
            match page.last_evaluated_table_name {
                Some(last) => req.exclusive_start_table_name = Some(last),
                None => return Ok(names),
            }
        }
    }

    /// The key schema of a table (cached after the first DescribeTable).
    pub fn schema(&mut self, table: &str) -> Result<KeySchema> {
        if let Some(s) = self.schemas.get(table) {
            return Ok(s.clone());
        }
        Ok(self.describe_table(table)?.key_schema)
    }

    // -------------------------------------------------------------------------------
    // Items

    pub fn put_item(&mut self, table: &str, item: &Item) -> Result<()> {
        self.put_item_bytes(table, &item.encode(), ReturnValues::None)
            .map(|_| ())
    }

    /// Puts an already-encoded item; with `ReturnValues::AllOld`, returns the replaced item.
    pub fn put_item_bytes(
        &mut self,
        table: &str,
        item: &[u8],
        return_values: ReturnValues,
    ) -> Result<Option<Item>> {
        let shard = self.shard_for(table, item)?;
        let body = encode(&PutItemRequest {
            table: table.to_owned(),
            item: item.to_vec(),
            return_values,
        });
        let resp: WriteItemResponse = decode_body(self.call(shard, Opcode::PutItem, &body)?)?;
        resp.attributes.as_deref().map(decode_item).transpose()
    }

    pub fn get_item(
        &mut self,
        table: &str,
        key: &Item,
        consistent_read: bool,
    ) -> Result<Option<Item>> {
        self.get_item_bytes(table, &key.encode(), consistent_read)?
            .as_deref()
            .map(decode_item)
            .transpose()
    }

    /// The stored item's encoded bytes, exactly as they were written.
    pub fn get_item_bytes(
        &mut self,
        table: &str,
        key: &[u8],
        consistent_read: bool,
    ) -> Result<Option<Vec<u8>>> {
        let shard = self.shard_for(table, key)?;
        let body = encode(&GetItemRequest {
            table: table.to_owned(),
            key: key.to_vec(),
            consistent_read,
        });
        let reply = self.call(shard, Opcode::GetItem, &body)?;
        Ok((reply.header.flags & FLAG_FOUND != 0).then_some(reply.body))
    }

    pub fn delete_item(
        &mut self,
        table: &str,
        key: &Item,
        return_values: ReturnValues,
    ) -> Result<Option<Item>> {
        let key = key.encode();
        let shard = self.shard_for(table, &key)?;
        let body = encode(&DeleteItemRequest {
            table: table.to_owned(),
            key,
            return_values,
        });
        let resp: WriteItemResponse = decode_body(self.call(shard, Opcode::DeleteItem, &body)?)?;
        resp.attributes.as_deref().map(decode_item).transpose()
    }

    /// One page of a Query (sent to the shard owning the partition key).
    pub fn query(&mut self, req: &QueryRequest) -> Result<Page> {
        let shard = KeyRef::from_value(&req.partition_key)
            .map(|pk| self.shard_of_hash(partition_hash(&req.table, pk)));
        let resp: PageResponse = decode_body(self.call(shard, Opcode::Query, &encode(req))?)?;
        Page::from_response(resp)
    }

    /// One page of a Scan.
    pub fn scan(&mut self, req: &ScanRequest) -> Result<Page> {
        let resp: PageResponse = decode_body(self.call(None, Opcode::Scan, &encode(req))?)?;
        Page::from_response(resp)
    }

    pub fn batch_get(&mut self, req: &BatchGetItemRequest) -> Result<BatchGetItemResponse> {
        decode_body(self.call(None, Opcode::BatchGetItem, &encode(req))?)
    }

    pub fn batch_write(&mut self, req: &BatchWriteItemRequest) -> Result<BatchWriteItemResponse> {
        decode_body(self.call(None, Opcode::BatchWriteItem, &encode(req))?)
    }

    /// Starts a pipeline: queue requests, then [`Pipeline::run`] them.
    pub fn pipeline(&mut self) -> Pipeline<'_> {
        Pipeline {
            client: self,
            ops: Vec::new(),
        }
    }
}

/// Requests sent back to back, replies collected by request id.
///
/// Requests to one shard go on that shard's connection in windows of
/// `ClientConfig::pipeline_window`, so neither side can fill the other's socket buffers
/// while nobody reads. Replies come back in request order, one `Result` each; failures
/// are not retried here.
pub struct Pipeline<'c> {
    client: &'c mut Client,
    /// (shard, request id, frame bytes or why the request cannot be sent)
    ops: Vec<(Option<u32>, u64, Result<Vec<u8>>)>,
}

impl Pipeline<'_> {
    /// Queues a request; returns its index in the results (a request too large to send
    /// gets its error there).
    pub fn push(&mut self, shard: Option<u32>, opcode: Opcode, body: &[u8]) -> usize {
        let id = self.client.next_id();
        let frame = request_frame(opcode, id, shard, body);
        self.ops.push((shard, id, frame));
        self.ops.len() - 1
    }

    pub fn put_item(&mut self, table: &str, item: &Item) -> Result<usize> {
        let bytes = item.encode();
        let shard = self.client.shard_for(table, &bytes)?;
        let body = encode(&PutItemRequest {
            table: table.to_owned(),
            item: bytes,
            return_values: ReturnValues::None,
        });
        Ok(self.push(shard, Opcode::PutItem, &body))
    }

    pub fn get_item(&mut self, table: &str, key: &Item) -> Result<usize> {
        let bytes = key.encode();
        let shard = self.client.shard_for(table, &bytes)?;
        let body = encode(&GetItemRequest {
            table: table.to_owned(),
            key: bytes,
            consistent_read: false,
        });
        Ok(self.push(shard, Opcode::GetItem, &body))
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends everything and returns the replies in request order.
    pub fn run(self) -> Result<Vec<Result<RawReply>>> {
        let Pipeline { client, ops } = self;
        let window = client.config.pipeline_window.max(1);
        let mut results: Vec<Option<Result<RawReply>>> = (0..ops.len()).map(|_| None).collect();
        // Group by connection, keeping each group's order.
        let mut groups: Vec<(Option<u32>, Vec<usize>)> = Vec::new();
        let mut ops = ops;
        for (i, (shard, _, frame)) in ops.iter_mut().enumerate() {
            if frame.is_err() {
                // Never sent: its error is its result.
                let e = std::mem::replace(frame, Ok(Vec::new()));
                results[i] = e.err().map(Err);
                continue;
            }
            match groups.iter_mut().find(|(s, _)| s == shard) {
                Some((_, list)) => list.push(i),
                None => groups.push((*shard, vec![i])),
            }
        }
        for (shard, indexes) in groups {
            for chunk in indexes.chunks(window) {
                let mut bytes = Vec::new();
                let mut by_id = HashMap::with_capacity(chunk.len());
                for &i in chunk {
                    if let Ok(frame) = &ops[i].2 {
                        bytes.extend_from_slice(frame);
                    }
                    by_id.insert(ops[i].1, i);
                }
                let conn = client.connection(shard)?;
                let sent = conn.send(&bytes);
                let outcome = sent.and_then(|()| {
                    while !by_id.is_empty() {
                        let reply = conn.recv()?;
                        let i = by_id.remove(&reply.header.request_id).ok_or_else(|| {
                            Error::Protocol(format!(
                                "reply for unknown request {}",
                                reply.header.request_id
                            ))
                        })?;
                        results[i] = Some(reply.into_result());
                    }
                    Ok(())
                });
                if let Err(e) = outcome {
                    client.reset(shard);
                    return Err(e);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every queued request got a reply"))
            .collect())
    }
}

/// One request frame; `shard` is the owner hint, if known. A body over the protocol's
/// frame limit is refused here: the server would have to close the connection.
fn request_frame(opcode: Opcode, id: u64, shard: Option<u32>, body: &[u8]) -> Result<Vec<u8>> {
    if body.len() > FRAME_BODY_MAX_BYTES {
        return Err(Error::Api {
            code: ErrorCode::ValidationException,
            message: format!(
                "the {} request is {} bytes long, over the protocol's frame limit of {FRAME_BODY_MAX_BYTES}",
                opcode.name(),
                body.len()
            ),
        });
    }
    let mut frame = Vec::with_capacity(32 + body.len());
    write_frame(
        &mut frame,
        opcode,
        0,
        id,
        shard.unwrap_or(NO_SHARD_HINT),
        &[body],
    );
    Ok(frame)
}

/// The item of a GetItem reply, if found.
pub fn reply_item(reply: &RawReply) -> Result<Option<Item>> {
    if reply.header.flags & FLAG_FOUND == 0 {
        return Ok(None);
    }
    decode_item(&reply.body).map(Some)
}
