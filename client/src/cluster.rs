//! `tern cluster`: the state of a replicated cluster, from each node's own counters
//! (Stats): which nodes are up, and per shard its leader, term, and each replica's
//! commit and applied index and how far it lags the leader.

use std::time::Duration;

use serde_json::{Value as Json, json};
use tern_client::{Client, ClientConfig};

/// One node as `tern cluster` saw it: its name and, per shard, its counters.
struct Seen {
    address: String,
    node_id: Option<String>,
    shards: Option<Vec<std::collections::HashMap<String, u64>>>,
    error: Option<String>,
}

fn look(address: &str, timeout: Duration) -> Seen {
    let config = ClientConfig {
        timeout,
        retries: 0,
        client_name: "tern-cluster".into(),
        ..ClientConfig::default()
    };
    let result = Client::connect_with(address, config).and_then(|mut c| {
        let name = c.topology().node_id.clone();
        let stats = c.stats()?;
        Ok((name, stats))
    });
    match result {
        Ok((name, stats)) => Seen {
            address: address.to_owned(),
            node_id: Some(name),
            shards: Some(stats.counters_by_shard()),
            error: None,
        },
        Err(e) => Seen {
            address: address.to_owned(),
            node_id: None,
            shards: None,
            error: Some(e.to_string()),
        },
    }
}

/// The JSON document `tern cluster` prints for the nodes at `addresses`.
pub fn status(addresses: &[String], timeout: Duration) -> Json {
    let seen: Vec<Seen> = addresses.iter().map(|a| look(a, timeout)).collect();
    let get = |s: &Seen, k: usize, name: &str| -> Option<u64> {
        s.shards.as_ref()?.get(k)?.get(name).copied()
    };
    let nodes: Vec<Json> = seen
        .iter()
        .map(|s| {
            let mut n = json!({
                "address": s.address,
                "up": s.shards.is_some(),
            });
            if let Some(id) = &s.node_id {
                n["name"] = json!(id);
            }
            if let Some(node) = get(s, 0, "RaftNode") {
                n["node"] = json!(node);
            }
            if let Some(pid) = get(s, 0, "ProcessId") {
                n["pid"] = json!(pid);
            }
            if let Some(e) = &s.error {
                n["error"] = json!(e);
            }
            n
        })
        .collect();
    let shard_count = seen
        .iter()
        .filter_map(|s| s.shards.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    let shards: Vec<Json> = (0..shard_count)
        .map(|k| {
            let leader = seen.iter().find(|s| get(s, k, "RaftIsLeader") == Some(1));
            let leader_last = leader.and_then(|l| get(l, k, "RaftLastIndex"));
            let replicas: Vec<Json> = seen
                .iter()
                .filter(|s| s.shards.is_some())
                .map(|s| {
                    let node = get(s, k, "RaftNode").unwrap_or(0);
                    let applied = get(s, k, "RaftApplied").unwrap_or(0);
                    let mut r = json!({
                        "node": node,
                        "address": s.address,
                        "role": if get(s, k, "RaftIsLeader") == Some(1) { "leader" } else { "follower" },
                        "term": get(s, k, "RaftTerm"),
                        "commit": get(s, k, "RaftCommit"),
                        "applied": applied,
                        "last_index": get(s, k, "RaftLastIndex"),
                    });
                    if let Some(last) = leader_last {
                        r["lag"] = json!(last.saturating_sub(applied));
                    }
                    if let Some(m) = leader.and_then(|l| get(l, k, &format!("RaftMatched{node}"))) {
                        r["matched"] = json!(m);
                    }
                    r
                })
                .collect();
            let mut doc = json!({"shard": k, "replicas": replicas});
            match leader {
                Some(l) => {
                    doc["leader"] = json!(get(l, k, "RaftNode"));
                    doc["term"] = json!(get(l, k, "RaftTerm"));
                    doc["commit"] = json!(get(l, k, "RaftCommit"));
                }
                None => doc["leader"] = Json::Null,
            }
            doc
        })
        .collect();
    json!({"nodes": nodes, "shards": shards})
}
