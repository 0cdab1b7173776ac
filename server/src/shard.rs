//! A shard's state: its copy of the catalog and its slice of every table.
//!
//! Owned by exactly one core; reached only from that core's tasks (no locks). Every
//! shard holds every table's descriptor (DDL reaches all shards before it is
//! acknowledged) and the items whose partitions it owns.

use std::collections::HashMap;

use tern_protocol::messages::{TableDescription, TableStatus};
use tern_protocol::{ApiError, KeySchema};
use tern_storage::Table;

/// One table as this shard holds it.
#[derive(Debug)]
pub struct TableState {
    pub schema: KeySchema,
    pub creation_time_ms: u64,
    pub data: Table,
}

#[derive(Debug, Default)]
pub struct Shard {
    tables: HashMap<String, TableState, ahash::RandomState>,
}

pub fn table_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "Requested resource not found: Table: {name} not found"
    ))
}

impl Shard {
    pub fn new() -> Shard {
        Shard::default()
    }

    pub fn table(&self, name: &str) -> Result<&TableState, ApiError> {
        self.tables.get(name).ok_or_else(|| table_not_found(name))
    }

    pub fn table_mut(&mut self, name: &str) -> Result<&mut TableState, ApiError> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| table_not_found(name))
    }

    pub fn has_table(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }

    pub fn create_table(
        &mut self,
        name: &str,
        schema: KeySchema,
        creation_time_ms: u64,
    ) -> Result<(), ApiError> {
        if self.tables.contains_key(name) {
            return Err(ApiError::in_use(format!("Table already exists: {name}")));
        }
        self.tables.insert(
            name.to_owned(),
            TableState {
                schema,
                creation_time_ms,
                data: Table::new(),
            },
        );
        Ok(())
    }

    pub fn delete_table(&mut self, name: &str) -> Result<TableState, ApiError> {
        self.tables
            .remove(name)
            .ok_or_else(|| table_not_found(name))
    }

    /// Table names in ascending order.
    pub fn table_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// (item count, DynamoDB bytes) of this shard's slice of a table.
    pub fn table_stats(&self, name: &str) -> Result<(u64, u64), ApiError> {
        let t = self.table(name)?;
        Ok((t.data.len() as u64, t.data.size_bytes()))
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
