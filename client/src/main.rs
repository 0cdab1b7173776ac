//! `tern`: command-line client for tern (binary protocol).
//!
//! Items, keys and values are DynamoDB JSON (`{"id":{"S":"a"},"n":{"N":"3"}}`). Each
//! command prints one JSON document on stdout (shaped like the DynamoDB API's response);
//! errors go to stderr as `ErrorName: message` and the exit code is non-zero.

use std::process::ExitCode;

mod cluster;

use clap::{Parser, Subcommand};
use serde_json::{Value as Json, json};
use tern_client::{
    Client, ClientConfig, Error, Item, KeyAttr, KeySchema, MembershipChange, Page, QueryRequest,
    ReturnValues, ScalarType, ScanRequest, SortKeyCondition, TableDescription, Value,
};
use tern_protocol::json::{item_from_json, item_to_json, value_from_json};

#[derive(Parser, Debug)]
#[command(name = "tern", version, about = "Command-line client for tern")]
struct Cli {
    /// Any port of a tern node (host:port).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:7000",
        env = "TERN_ENDPOINT"
    )]
    endpoint: String,
    /// Request timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a table: --pk NAME:TYPE [--sk NAME:TYPE], TYPE one of S, N, B.
    CreateTable {
        name: String,
        #[arg(long)]
        pk: String,
        #[arg(long)]
        sk: Option<String>,
    },
    /// List every table.
    ListTables,
    /// Counters of every shard: one JSON object with `total` (sums) and `shards`.
    Stats,
    /// Add a voter to every shard's group: the AZ of a node started empty (`ternd node
    /// --initial-voters ...`) and its first peer port, AZ=IP:PEER_PORT. It catches up
    /// from the leaders (by snapshot when their logs no longer reach back).
    AddVoter { node: String },
    /// Remove a voter (by AZ letter) from every shard's group, e.g. a dead node being
    /// replaced. Remove the dead one first, then add its replacement.
    RemoveVoter { az: char },
    /// A replicated cluster's state: nodes (up or down, pid) and per shard its leader,
    /// term, and each replica's commit/applied index and lag. Asks each node listed.
    Cluster {
        /// The nodes' client endpoints, comma-separated (default: the local three-AZ
        /// cluster `ternd` starts).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "127.0.0.1:7000,127.0.0.1:7100,127.0.0.1:7200"
        )]
        nodes: Vec<String>,
    },
    /// Describe a table.
    DescribeTable { name: String },
    /// Delete a table and all its items.
    DeleteTable { name: String },
    /// Put an item (DynamoDB JSON).
    Put {
        table: String,
        item: String,
        /// Print the item that was replaced.
        #[arg(long)]
        return_old: bool,
    },
    /// Get an item by key (DynamoDB JSON).
    Get {
        table: String,
        key: String,
        /// Strongly consistent read.
        #[arg(long)]
        consistent: bool,
    },
    /// Delete an item by key.
    Delete {
        table: String,
        key: String,
        /// Print the item that was deleted.
        #[arg(long)]
        return_old: bool,
    },
    /// Query one partition, optionally with one sort-key condition.
    Query {
        table: String,
        /// Partition key value, e.g. '{"S":"user1"}'.
        #[arg(long)]
        pk: String,
        #[arg(long, value_name = "VALUE_JSON", conflicts_with_all = ["sk_lt", "sk_le", "sk_gt", "sk_ge", "sk_between", "sk_begins_with"])]
        sk_eq: Option<String>,
        #[arg(long, value_name = "VALUE_JSON")]
        sk_lt: Option<String>,
        #[arg(long, value_name = "VALUE_JSON")]
        sk_le: Option<String>,
        #[arg(long, value_name = "VALUE_JSON")]
        sk_gt: Option<String>,
        #[arg(long, value_name = "VALUE_JSON")]
        sk_ge: Option<String>,
        #[arg(long, num_args = 2, value_names = ["LOW_JSON", "HIGH_JSON"])]
        sk_between: Option<Vec<String>>,
        #[arg(long, value_name = "VALUE_JSON")]
        sk_begins_with: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Descending sort-key order.
        #[arg(long)]
        reverse: bool,
        /// Continue after this key (the LastEvaluatedKey of the previous page).
        #[arg(long, value_name = "KEY_JSON")]
        start_key: Option<String>,
        /// Follow LastEvaluatedKey until the end and print all items.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        consistent: bool,
    },
    /// Scan a table (or one segment of a parallel scan).
    Scan {
        table: String,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long, value_name = "KEY_JSON")]
        start_key: Option<String>,
        #[arg(long, default_value_t = 0)]
        segment: u32,
        #[arg(long, default_value_t = 1)]
        total_segments: u32,
        /// Follow LastEvaluatedKey until the end and print all items.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        consistent: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(doc) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_json(what: &str, text: &str) -> Result<Json, Error> {
    serde_json::from_str(text).map_err(|e| Error::Invalid(format!("{what} is not valid JSON: {e}")))
}

fn parse_item(what: &str, text: &str) -> Result<Item, Error> {
    Ok(item_from_json(&parse_json(what, text)?)?)
}

fn parse_value(what: &str, text: &str) -> Result<Value, Error> {
    Ok(value_from_json(&parse_json(what, text)?)?)
}

fn parse_key_attr(spec: &str) -> Result<KeyAttr, Error> {
    let (name, ty) = spec.rsplit_once(':').ok_or_else(|| {
        Error::Invalid(format!(
            "key attribute '{spec}' must be NAME:TYPE, e.g. id:S"
        ))
    })?;
    let ty = ScalarType::from_name(ty)
        .ok_or_else(|| Error::Invalid(format!("key type '{ty}' must be S, N or B")))?;
    Ok(KeyAttr {
        name: name.to_owned(),
        ty,
    })
}

fn table_json(t: &TableDescription) -> Json {
    let mut key_schema =
        vec![json!({"AttributeName": t.key_schema.partition.name, "KeyType": "HASH"})];
    let mut defs = vec![
        json!({"AttributeName": t.key_schema.partition.name, "AttributeType": t.key_schema.partition.ty.name()}),
    ];
    if let Some(sk) = &t.key_schema.sort {
        key_schema.push(json!({"AttributeName": sk.name, "KeyType": "RANGE"}));
        defs.push(json!({"AttributeName": sk.name, "AttributeType": sk.ty.name()}));
    }
    json!({
        "TableName": t.name,
        "KeySchema": key_schema,
        "AttributeDefinitions": defs,
        "TableStatus": t.status.name(),
        "ItemCount": t.item_count,
        "TableSizeBytes": t.size_bytes,
        "CreationDateTime": t.creation_time_ms as f64 / 1000.0,
    })
}

fn page_json(items: &[Item], count: u64, scanned: u64, last: Option<&Item>) -> Json {
    let mut doc = json!({
        "Items": items.iter().map(item_to_json).collect::<Vec<_>>(),
        "Count": count,
        "ScannedCount": scanned,
    });
    if let Some(last) = last {
        doc["LastEvaluatedKey"] = item_to_json(last);
    }
    doc
}

/// Runs one page (from `start_key`, DynamoDB JSON), or all pages with `all`, and renders them.
fn pages(
    all: bool,
    start_key: Option<&str>,
    mut next: impl FnMut(Option<Vec<u8>>) -> Result<Page, Error>,
) -> Result<Json, Error> {
    let start = start_key
        .map(|k| parse_item("--start-key", k))
        .transpose()?
        .map(|k| k.encode());
    let mut page = next(start)?;
    if !all {
        return Ok(page_json(
            &page.items,
            page.count as u64,
            page.scanned_count as u64,
            page.last_evaluated_key.as_ref(),
        ));
    }
    let mut items = std::mem::take(&mut page.items);
    let (mut count, mut scanned) = (page.count as u64, page.scanned_count as u64);
    while let Some(last) = page.last_evaluated_key.take() {
        page = next(Some(last.encode()))?;
        count += page.count as u64;
        scanned += page.scanned_count as u64;
        items.append(&mut page.items);
    }
    Ok(page_json(&items, count, scanned, None))
}

fn old_json(old: Option<Item>) -> Json {
    match old {
        Some(item) => json!({"Attributes": item_to_json(&item)}),
        None => json!({}),
    }
}

fn run(cli: Cli) -> Result<Json, Error> {
    let config = ClientConfig {
        timeout: std::time::Duration::from_millis(cli.timeout_ms),
        client_name: "tern-cli".into(),
        ..ClientConfig::default()
    };
    let client_timeout = config.timeout;
    if let Command::Cluster { nodes } = &cli.command {
        return Ok(cluster::status(nodes, client_timeout));
    }
    let mut client = Client::connect_with(&cli.endpoint, config)?;
    let return_values = |old: bool| {
        if old {
            ReturnValues::AllOld
        } else {
            ReturnValues::None
        }
    };
    Ok(match cli.command {
        Command::CreateTable { name, pk, sk } => {
            let schema = KeySchema {
                partition: parse_key_attr(&pk)?,
                sort: sk.as_deref().map(parse_key_attr).transpose()?,
            };
            json!({"TableDescription": table_json(&client.create_table(&name, schema)?)})
        }
        Command::ListTables => json!({"TableNames": client.list_all_tables()?}),
        Command::Stats => stats_json(&client.stats()?),
        Command::AddVoter { node } => {
            let bad = || {
                Error::Invalid(format!(
                    "{node:?}: expected AZ=IP:PEER_PORT, e.g. d=10.0.0.4:7050"
                ))
            };
            let (az, addr) = node.split_once('=').ok_or_else(bad)?;
            let mut chars = az.chars();
            let (Some(az), None) = (chars.next(), chars.next()) else {
                return Err(bad());
            };
            membership_json(&client.change_membership(MembershipChange::AddVoter {
                node: az_node(az)?,
                peer_address: addr.to_owned(),
            })?)
        }
        Command::RemoveVoter { az } => membership_json(
            &client.change_membership(MembershipChange::RemoveVoter { node: az_node(az)? })?,
        ),
        // (Answered before connecting, above; kept for the match to be whole.)
        Command::Cluster { nodes } => cluster::status(&nodes, client_timeout),
        Command::DescribeTable { name } => {
            json!({"Table": table_json(&client.describe_table(&name)?)})
        }
        Command::DeleteTable { name } => {
            json!({"TableDescription": table_json(&client.delete_table(&name)?)})
        }
        Command::Put {
            table,
            item,
            return_old,
        } => {
            let item = parse_item("ITEM", &item)?;
            old_json(client.put_item_bytes(&table, &item.encode(), return_values(return_old))?)
        }
        Command::Get {
            table,
            key,
            consistent,
        } => {
            let key = parse_item("KEY", &key)?;
            match client.get_item(&table, &key, consistent)? {
                Some(item) => json!({"Item": item_to_json(&item)}),
                None => json!({}),
            }
        }
        Command::Delete {
            table,
            key,
            return_old,
        } => {
            let key = parse_item("KEY", &key)?;
            old_json(client.delete_item(&table, &key, return_values(return_old))?)
        }
        Command::Query {
            table,
            pk,
            sk_eq,
            sk_lt,
            sk_le,
            sk_gt,
            sk_ge,
            sk_between,
            sk_begins_with,
            limit,
            reverse,
            start_key,
            all,
            consistent,
        } => {
            let v = |text: &str| parse_value("sort-key value", text);
            let conditions: Vec<SortKeyCondition> = [
                sk_eq.as_deref().map(|t| v(t).map(SortKeyCondition::Eq)),
                sk_lt.as_deref().map(|t| v(t).map(SortKeyCondition::Lt)),
                sk_le.as_deref().map(|t| v(t).map(SortKeyCondition::Le)),
                sk_gt.as_deref().map(|t| v(t).map(SortKeyCondition::Gt)),
                sk_ge.as_deref().map(|t| v(t).map(SortKeyCondition::Ge)),
                sk_begins_with
                    .as_deref()
                    .map(|t| v(t).map(SortKeyCondition::BeginsWith)),
                sk_between
                    .as_deref()
                    .map(|pair| Ok(SortKeyCondition::Between(v(&pair[0])?, v(&pair[1])?))),
            ]
            .into_iter()
            .flatten()
            .collect::<Result<_, Error>>()?;
            if conditions.len() > 1 {
                return Err(Error::Invalid("give at most one sort-key condition".into()));
            }
            let mut req = QueryRequest {
                table,
                partition_key: parse_value("--pk", &pk)?,
                sort_key: conditions.into_iter().next(),
                scan_forward: !reverse,
                limit,
                exclusive_start_key: None,
                consistent_read: consistent,
            };
            pages(all, start_key.as_deref(), |esk| {
                req.exclusive_start_key = esk;
                client.query(&req)
            })?
        }
        Command::Scan {
            table,
            limit,
            start_key,
            segment,
            total_segments,
            all,
            consistent,
        } => {
            let mut req = ScanRequest {
                table,
                limit,
                exclusive_start_key: None,
                segment,
                total_segments,
                consistent_read: consistent,
            };
            pages(all, start_key.as_deref(), |esk| {
                req.exclusive_start_key = esk;
                client.scan(&req)
            })?
        }
    })
}

/// An AZ letter's node id: a is 1, b is 2, ...
fn az_node(az: char) -> Result<u64, Error> {
    if az.is_ascii_lowercase() {
        Ok(az as u64 - 'a' as u64 + 1)
    } else {
        Err(Error::Invalid(format!(
            "an AZ is a lower-case letter, not {az:?}"
        )))
    }
}

/// `{"Shards": [{"Shard": k, "Voters": [node, ...]}]}`.
fn membership_json(resp: &tern_client::MembershipResponse) -> Json {
    json!({"Shards": resp.shards.iter().map(|s| json!({"Shard": s.shard, "Voters": s.voters})).collect::<Vec<_>>()})
}

/// `{"total": {name: sum over shards}, "shards": [{"shard": k, name: value, ...}]}`.
fn stats_json(stats: &tern_client::StatsResponse) -> serde_json::Value {
    let mut total = serde_json::Map::new();
    let mut shards = Vec::new();
    for s in &stats.shards {
        let mut one = serde_json::Map::new();
        one.insert("shard".into(), json!(s.shard));
        for c in &s.counters {
            one.insert(c.name.clone(), json!(c.value));
            let sum = total.get(&c.name).and_then(|v| v.as_u64()).unwrap_or(0);
            total.insert(c.name.clone(), json!(sum + c.value));
        }
        shards.push(serde_json::Value::Object(one));
    }
    json!({"total": total, "shards": shards})
}
