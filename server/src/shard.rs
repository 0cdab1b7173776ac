//! A shard's state: its durable store (log, indexes, catalog) and the catalog in protocol
//! terms.
//!
//! Owned by exactly one core; reached only from that core's tasks (no locks). Every
//! shard holds every table's descriptor (DDL reaches all shards before it is
//! acknowledged, and each shard logs it in its own log) and the items whose partitions
//! it owns.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

use tern_protocol::limits::TABLE_NAME_MAX_LEN;
use tern_protocol::messages::{Counter, ShardStats, TableDescription, TableStatus};
use tern_protocol::{ApiError, ErrorCode, KeyAttr, KeySchema, ScalarType};
use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::format::{EntryData, RecordKind};
use tern_storage::glommio_disk::{DiskFailpoints, GlommioDisk};
use tern_storage::store::{LogPos, RecoveryReport, Store, StoreConfig, StoreError};

/// One table as this shard knows it.
#[derive(Debug)]
pub struct TableState {
    /// The id the store's records carry (shard-local).
    pub id: u32,
    pub schema: KeySchema,
    pub creation_time_ms: u64,
}

/// A table's name as the catalog's map key. It hashes and compares as bytes, so a name
/// straight off the wire is looked up before (and without) any UTF-8 check: a name that
/// equals a stored one is valid UTF-8 because the stored one is.
#[derive(Debug, PartialEq, Eq)]
struct TableName(String);

impl Hash for TableName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for TableName {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The tables a shard knows, by name.
#[derive(Debug, Default)]
pub struct Tables(HashMap<TableName, TableState, ahash::RandomState>);

impl Tables {
    pub fn get(&self, name: &str) -> Option<&TableState> {
        self.0.get(name.as_bytes())
    }

    /// Looks a table up by a name not yet known to be UTF-8; returns the stored name.
    pub fn get_by_bytes(&self, name: &[u8]) -> Option<(&str, &TableState)> {
        self.0.get_key_value(name).map(|(n, t)| (n.0.as_str(), t))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name.as_bytes())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &TableState)> {
        self.0.iter().map(|(n, t)| (n.0.as_str(), t))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn insert(&mut self, name: String, t: TableState) {
        self.0.insert(TableName(name), t);
    }

    fn remove(&mut self, name: &str) {
        self.0.remove(name.as_bytes());
    }
}

impl FromIterator<(String, TableState)> for Tables {
    fn from_iter<I: IntoIterator<Item = (String, TableState)>>(iter: I) -> Self {
        Tables(iter.into_iter().map(|(n, t)| (TableName(n), t)).collect())
    }
}

pub struct Shard {
    pub id: u32,
    pub tables: Tables,
    pub store: Store<GlommioDisk>,
    /// What recovery did when the shard opened (for its counters).
    pub recovery: RecoveryReport,
}

pub fn table_not_found(name: &str) -> ApiError {
    // A name no table can have is echoed only in part.
    let shown: String = name.chars().take(TABLE_NAME_MAX_LEN).collect();
    let cut = if shown.len() < name.len() { "..." } else { "" };
    ApiError::not_found(format!(
        "Requested resource not found: Table: {shown}{cut} not found"
    ))
}

fn key_type(t: ScalarType) -> KeyType {
    match t {
        ScalarType::S => KeyType::S,
        ScalarType::N => KeyType::N,
        ScalarType::B => KeyType::B,
    }
}

fn scalar_type(t: KeyType) -> ScalarType {
    match t {
        KeyType::S => ScalarType::S,
        KeyType::N => ScalarType::N,
        KeyType::B => ScalarType::B,
    }
}

fn attr_desc(a: &KeyAttr) -> KeyAttrDesc {
    KeyAttrDesc {
        name: a.name.clone(),
        ty: key_type(a.ty),
    }
}

fn attr(a: &KeyAttrDesc) -> KeyAttr {
    KeyAttr {
        name: a.name.clone(),
        ty: scalar_type(a.ty),
    }
}

fn table_state(d: &TableDesc) -> TableState {
    TableState {
        id: d.table_id,
        schema: KeySchema {
            partition: attr(&d.partition_key),
            sort: d.sort_key.as_ref().map(attr),
        },
        creation_time_ms: d.creation_time_ms,
    }
}

/// A store operation as a Raft entry's data (`format::EntryData`).
pub fn entry_bytes(
    kind: RecordKind,
    table_id: u32,
    size_bytes: u32,
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let data = EntryData {
        kind,
        table_id,
        size_bytes,
        key,
        value,
    };
    let mut out = Vec::with_capacity(data.encoded_len());
    data.encode(&mut out);
    out
}

/// The API error a store failure becomes. Item too large for a log record reads like
/// DynamoDB's item-size error; a stopped or corrupt shard is an internal error naming it.
pub fn store_error(shard: u32, e: StoreError) -> ApiError {
    match e {
        StoreError::TooLarge(_) => {
            ApiError::validation("Item size has exceeded the maximum allowed size")
        }
        StoreError::NoTable(id) => ApiError::internal(format!(
            "shard {shard}: table id {id} is in the catalog but not in the store"
        )),
        StoreError::TableExists(name) => ApiError::in_use(format!("Table already exists: {name}")),
        StoreError::KeyTooLong(len) => ApiError::validation(format!(
            "One or more parameter values were invalid: a key of {len} bytes is longer than the log can store"
        )),
        StoreError::IndexFull { key_bytes, max, .. } => ApiError::new(
            ErrorCode::LimitExceededException,
            format!(
                "shard {shard}: this table's index on the shard holds {key_bytes} bytes of keys and can hold at most {max}; the item was not written. Delete items, or spread the table over more shards (--cores)"
            ),
        ),
        // A CreateTable that raced another for its table id: retrying assigns a new one.
        e @ StoreError::TableIdTaken(_) => ApiError::new(
            ErrorCode::InternalServerError,
            format!("shard {shard}: {e}"),
        ),
        e @ (StoreError::Poisoned(_) | StoreError::Corrupt(_) | StoreError::BadEntry(_)) => {
            ApiError::new(
                ErrorCode::InternalServerError,
                format!("shard {shard}: {e}"),
            )
        }
    }
}

impl Shard {
    /// Opens (recovering) the shard's store in `dir`.
    pub fn open(
        id: u32,
        dir: &Path,
        config: StoreConfig,
        failpoints: DiskFailpoints,
    ) -> std::io::Result<(Shard, RecoveryReport)> {
        let disk = GlommioDisk::open(dir)?;
        disk.set_failpoints(failpoints);
        let (store, report) = Store::open(disk, config)?;
        let tables = store
            .tables()
            .map(|t| (t.desc.name.clone(), table_state(&t.desc)))
            .collect();
        let shard = Shard {
            id,
            tables,
            store,
            recovery: report.clone(),
        };
        Ok((shard, report))
    }

    /// `Ok` unless the store stopped (failed sync) or found corruption: then the shard
    /// answers nothing, from the store or from its cache.
    pub fn usable(&self) -> Result<(), ApiError> {
        self.store
            .check_usable()
            .map_err(|e| store_error(self.id, e))
    }

    pub fn table(&self, name: &str) -> Result<&TableState, ApiError> {
        self.tables.get(name).ok_or_else(|| table_not_found(name))
    }

    pub fn has_table(&self, name: &str) -> bool {
        self.tables.contains(name)
    }

    /// Logs the table's creation; returns the position to wait for before acknowledging.
    pub fn create_table(
        &mut self,
        name: &str,
        schema: KeySchema,
        creation_time_ms: u64,
    ) -> Result<LogPos, ApiError> {
        if self.tables.contains(name) {
            return Err(ApiError::in_use(format!("Table already exists: {name}")));
        }
        let desc = TableDesc {
            table_id: 0,
            name: name.to_owned(),
            partition_key: attr_desc(&schema.partition),
            sort_key: schema.sort.as_ref().map(attr_desc),
            creation_time_ms,
        };
        let (id, pos) = self
            .store
            .create_table(desc)
            .map_err(|e| store_error(self.id, e))?;
        self.tables.insert(
            name.to_owned(),
            TableState {
                id,
                schema,
                creation_time_ms,
            },
        );
        Ok(pos)
    }

    /// The entry a replicated shard's leader proposes to create a table (its id: the next
    /// free one in the applied state).
    pub fn create_table_entry(
        &self,
        name: &str,
        schema: &KeySchema,
        creation_time_ms: u64,
    ) -> Vec<u8> {
        let desc = TableDesc {
            table_id: self.store.next_table_id(),
            name: name.to_owned(),
            partition_key: attr_desc(&schema.partition),
            sort_key: schema.sort.as_ref().map(attr_desc),
            creation_time_ms,
        };
        entry_bytes(
            RecordKind::CreateTable,
            desc.table_id,
            0,
            &[],
            &desc.encode(),
        )
    }

    /// The entry a replicated shard's leader proposes to delete a table.
    pub fn delete_table_entry(&self, name: &str) -> Result<Vec<u8>, ApiError> {
        let id = self.table(name)?.id;
        Ok(entry_bytes(RecordKind::DeleteTable, id, 0, &[], &[]))
    }

    /// A replicated CreateTable was applied: the catalog learns table `id` from the
    /// store. Returns its name.
    pub fn table_applied(&mut self, id: u32) -> Option<String> {
        let desc = &self.store.table(id).ok()?.desc;
        let name = desc.name.clone();
        let state = table_state(desc);
        self.tables.insert(name.clone(), state);
        Some(name)
    }

    /// A replicated DeleteTable was applied.
    pub fn table_removed(&mut self, id: u32) {
        let name = self
            .tables
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.to_owned());
        if let Some(name) = name {
            self.tables.remove(&name);
        }
    }

    /// A snapshot replaced the store's state: the catalog is read again. Returns the
    /// ids it had and the (name, id) it has now.
    pub fn reload_catalog(&mut self) -> (Vec<u32>, Vec<(String, u32)>) {
        let old = self.tables.iter().map(|(_, t)| t.id).collect();
        self.tables = self
            .store
            .tables()
            .map(|t| (t.desc.name.clone(), table_state(&t.desc)))
            .collect();
        let new = self
            .tables
            .iter()
            .map(|(n, t)| (n.to_owned(), t.id))
            .collect();
        (old, new)
    }

    /// Logs the table's deletion with all its items; returns the position to wait for.
    pub fn delete_table(&mut self, name: &str) -> Result<LogPos, ApiError> {
        let id = self.table(name)?.id;
        let pos = self
            .store
            .delete_table(id)
            .map_err(|e| store_error(self.id, e))?;
        self.tables.remove(name);
        Ok(pos)
    }

    /// Table names in ascending order.
    pub fn table_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tables.iter().map(|(n, _)| n).collect();
        names.sort_unstable();
        names
    }

    /// (item count, DynamoDB bytes) of this shard's slice of a table.
    pub fn table_stats(&self, name: &str) -> Result<(u64, u64), ApiError> {
        let id = self.table(name)?.id;
        let t = self.store.table(id).map_err(|e| store_error(self.id, e))?;
        Ok((t.index.len() as u64, t.index.size_bytes()))
    }

    /// This shard's counters and gauges (see docs/operations.md for their meaning).
    pub fn stats(&self) -> ShardStats {
        let s = self.store.stats();
        let items: u64 = self.store.tables().map(|t| t.index.len() as u64).sum();
        let counters = [
            ("LogClientBytes", s.client_bytes),
            ("LogRelocatedBytes", s.relocated_bytes),
            ("LogWrittenBytes", s.written_bytes),
            ("LogFlushes", s.flushes),
            ("LogSyncs", s.syncs),
            ("LogSegments", self.store.segments().len() as u64),
            ("LogSegmentsCreated", s.segments_created),
            ("LogSegmentsCompacted", s.segments_compacted),
            ("LogCheckpoints", s.checkpoints),
            ("LogCorruptions", s.corruptions),
            (
                "LogStopped",
                u64::from(matches!(
                    self.store.failure(),
                    Some(StoreError::Poisoned(_))
                )),
            ),
            (
                "RecoveryFromCheckpoint",
                u64::from(self.recovery.checkpoint.is_some()),
            ),
            ("RecoveryRecordsReplayed", self.recovery.records_replayed),
            ("IndexItems", items),
            ("IndexHeapBytes", self.store.index_heap_bytes() as u64),
            ("Tables", self.tables.len() as u64),
        ];
        ShardStats {
            shard: self.id,
            counters: counters
                .into_iter()
                .map(|(name, value)| Counter {
                    name: name.to_owned(),
                    value,
                })
                .collect(),
        }
    }

    /// The description of a table with the given totals.
    pub fn describe(
        &self,
        name: &str,
        status: TableStatus,
        item_count: u64,
        size_bytes: u64,
    ) -> Result<TableDescription, ApiError> {
        let t = self.table(name)?;
        Ok(TableDescription {
            name: name.to_owned(),
            key_schema: t.schema.clone(),
            status,
            item_count,
            size_bytes,
            creation_time_ms: t.creation_time_ms,
        })
    }
}
