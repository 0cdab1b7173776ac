//! The `tern` CLI against a real node: JSON in, one JSON document out, errors on stderr,
//! non-zero exit codes.

use std::process::Command;

use serde_json::{Value as Json, json};
use tern_server::node::{Node, NodeConfig};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Json {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

fn tern(endpoint: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run tern");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A node on ephemeral ports with its data in a temporary directory (removed when the
/// returned guard drops).
fn start_node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let node = Node::start(&NodeConfig::for_tests(2, "cli-test", dir.path())).expect("start node");
    (node, dir)
}

#[test]
fn cli_tour() {
    let (node, _data) = start_node();
    let ep = format!("127.0.0.1:{}", node.topology.shared_port);
    let ep = ep.as_str();

    let created = tern(
        ep,
        &[
            "create-table",
            "music",
            "--pk",
            "artist:S",
            "--sk",
            "year:N",
        ],
    )
    .json();
    assert_eq!(created["TableDescription"]["TableName"], "music");
    assert_eq!(created["TableDescription"]["TableStatus"], "CREATING");

    // Stats: one object with totals over both shards and one entry per shard. Creating
    // the table wrote (and synced) one catalog record on each shard.
    let stats = tern(ep, &["stats"]).json();
    assert_eq!(stats["shards"].as_array().map(Vec::len), Some(2));
    assert_eq!(stats["shards"][1]["shard"], 1);
    assert_eq!(
        stats["total"]["Tables"], 2,
        "one catalog entry per shard: {stats}"
    );
    assert!(stats["total"]["LogSyncs"].as_u64() >= Some(2), "{stats}");
    assert_eq!(stats["total"]["LogCorruptions"], 0);
    // The cache's counters, under DAX's metric names, in the total and every shard.
    for name in [
        "ItemCacheHits",
        "ItemCacheMisses",
        "QueryCacheHits",
        "QueryCacheMisses",
        "ScanCacheHits",
        "ScanCacheMisses",
        "CacheEvictions",
        "CacheBytes",
        "CacheEntries",
    ] {
        assert!(stats["total"][name].is_u64(), "{name} missing: {stats}");
        assert!(stats["shards"][0][name].is_u64(), "{name} missing: {stats}");
    }
    assert!(
        stats["total"]["CacheBudgetBytes"].as_u64() > Some(0),
        "{stats}"
    );
    assert_eq!(
        created["TableDescription"]["KeySchema"][1],
        json!({"AttributeName": "year", "KeyType": "RANGE"})
    );

    for (artist, year, title) in [
        ("abba", "1974", "Waterloo"),
        ("abba", "1976", "Arrival"),
        ("abba", "1979", "Voulez-Vous"),
        ("queen", "1975", "Opera"),
    ] {
        let item = format!(
            r#"{{"artist":{{"S":"{artist}"}},"year":{{"N":"{year}"}},"title":{{"S":"{title}"}}}}"#
        );
        assert_eq!(tern(ep, &["put", "music", &item]).json(), json!({}));
    }
    let got = tern(
        ep,
        &[
            "get",
            "music",
            r#"{"artist":{"S":"abba"},"year":{"N":"1976.0"}}"#,
        ],
    )
    .json();
    assert_eq!(
        got["Item"]["title"],
        json!({"S": "Arrival"}),
        "1976.0 and 1976 are the same key"
    );
    assert_eq!(
        got["Item"]["year"],
        json!({"N": "1976"}),
        "numbers come back canonical"
    );
    assert_eq!(
        tern(
            ep,
            &[
                "get",
                "music",
                r#"{"artist":{"S":"nobody"},"year":{"N":"1"}}"#
            ]
        )
        .json(),
        json!({})
    );

    let q = tern(
        ep,
        &[
            "query",
            "music",
            "--pk",
            r#"{"S":"abba"}"#,
            "--sk-ge",
            r#"{"N":"1975"}"#,
            "--reverse",
        ],
    )
    .json();
    assert_eq!(q["Count"], 2);
    assert_eq!(q["Items"][0]["title"], json!({"S": "Voulez-Vous"}));
    let q = tern(
        ep,
        &["query", "music", "--pk", r#"{"S":"abba"}"#, "--limit", "1"],
    )
    .json();
    assert_eq!(q["Count"], 1);
    assert_eq!(
        q["LastEvaluatedKey"],
        json!({"artist": {"S": "abba"}, "year": {"N": "1974"}})
    );
    let q = tern(
        ep,
        &[
            "query",
            "music",
            "--pk",
            r#"{"S":"abba"}"#,
            "--limit",
            "1",
            "--all",
        ],
    )
    .json();
    assert_eq!(q["Count"], 3);

    let scan = tern(ep, &["scan", "music", "--limit", "2", "--all"]).json();
    assert_eq!(scan["Count"], 4);
    let d = tern(ep, &["describe-table", "music"]).json();
    assert_eq!(d["Table"]["ItemCount"], 4);
    assert_eq!(d["Table"]["TableStatus"], "ACTIVE");
    assert_eq!(
        tern(ep, &["list-tables"]).json(),
        json!({"TableNames": ["music"]})
    );

    let old = tern(
        ep,
        &[
            "delete",
            "music",
            r#"{"artist":{"S":"queen"},"year":{"N":"1975"}}"#,
            "--return-old",
        ],
    )
    .json();
    assert_eq!(old["Attributes"]["title"], json!({"S": "Opera"}));

    // Errors: stderr names the DynamoDB error, exit code non-zero, stdout empty.
    let r = tern(ep, &["get", "nope", r#"{"id":{"S":"a"}}"#]);
    assert_ne!(r.code, 0);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("ResourceNotFoundException"),
        "{}",
        r.stderr
    );
    let r = tern(
        ep,
        &["put", "music", r#"{"artist":{"N":"1"},"year":{"N":"1"}}"#],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("ValidationException"), "{}", r.stderr);
    let r = tern(ep, &["put", "music", "{not json"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("JSON"), "{}", r.stderr);
    let r = tern(ep, &["create-table", "music", "--pk", "artist:S"]);
    assert!(r.stderr.contains("ResourceInUseException"), "{}", r.stderr);

    assert_eq!(
        tern(ep, &["delete-table", "music"]).json()["TableDescription"]["TableStatus"],
        "DELETING"
    );
    node.shutdown();
    node.join().unwrap();
}

#[test]
fn unreachable_endpoint_is_a_readable_error() {
    let r = tern("127.0.0.1:1", &["list-tables"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
}

#[test]
fn incomplete_keys_get_the_servers_error() {
    let (node, _data) = start_node();
    let ep = format!("127.0.0.1:{}", node.topology.shared_port);
    tern(&ep, &["create-table", "keys", "--pk", "a:S", "--sk", "b:N"]).json();
    let r = tern(&ep, &["get", "keys", r#"{"a":{"S":"x"}}"#]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("ValidationException: The provided key element does not match the schema"),
        "{}",
        r.stderr
    );
    let r = tern(&ep, &["put", "keys", r#"{"b":{"N":"1"}}"#]);
    assert!(r.stderr.contains("Missing the key a"), "{}", r.stderr);
    node.shutdown();
    node.join().unwrap();
}

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let first = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let base = first.local_addr().unwrap().port();
        if base.checked_add(n).is_some()
            && (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no run of {n} free ports");
}

#[test]
fn tern_cluster_reports_nodes_leaders_and_lag() {
    use std::collections::HashMap;
    use tern_server::node::ClusterConfig;
    let peer_ports: Vec<u16> = (0..3).map(|_| free_ports(2)).collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|i| {
            let mut cfg =
                NodeConfig::for_tests(2, &format!("az-{}", ['a', 'b', 'c'][i]), dirs[i].path());
            cfg.storage.store.replicated = true;
            cfg.cluster = Some(ClusterConfig {
                node: i as u64 + 1,
                voters: vec![1, 2, 3],
                peer_host: cfg.host,
                peer_port: peer_ports[i],
                peers: (0..3)
                    .filter(|&j| j != i)
                    .map(|j| {
                        (
                            j as u64 + 1,
                            format!("127.0.0.1:{}", peer_ports[j]).parse().unwrap(),
                        )
                    })
                    .collect::<HashMap<_, _>>(),
                secret: b"a cluster secret for the cli test".to_vec(),
            });
            Some(Node::start(&cfg).expect("start node"))
        })
        .collect();
    let eps: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.as_ref().unwrap().topology.shared_port))
        .collect();
    let all = eps.join(",");
    let cluster = |nodes: &str| tern(&eps[0], &["cluster", "--nodes", nodes]).json();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut doc = cluster(&all);
    while doc["shards"]
        .as_array()
        .is_none_or(|s| s.len() != 2 || s.iter().any(|s| s["leader"].is_null()))
    {
        assert!(std::time::Instant::now() < deadline, "no leaders: {doc}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        doc = cluster(&all);
    }
    let listed = doc["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{doc}");
    for (i, n) in listed.iter().enumerate() {
        assert_eq!(n["up"], true, "{doc}");
        assert_eq!(n["node"], i as u64 + 1, "{doc}");
        assert_eq!(n["name"], format!("az-{}", ['a', 'b', 'c'][i]), "{doc}");
        assert_eq!(n["pid"], std::process::id(), "{doc}");
    }
    for s in doc["shards"].as_array().unwrap() {
        let replicas = s["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 3, "{doc}");
        assert_eq!(
            replicas.iter().filter(|r| r["role"] == "leader").count(),
            1,
            "{doc}"
        );
        for r in replicas {
            for key in ["term", "commit", "applied", "last_index", "lag", "matched"] {
                assert!(r[key].is_u64(), "{key} of {r} in {doc}");
            }
        }
        assert!(s["term"].as_u64() >= Some(1), "{doc}");
    }
    // A stopped node is reported down; the others still answer.
    let stopped = nodes[2].take().unwrap();
    stopped.shutdown();
    stopped.join().expect("stops cleanly");
    let doc = cluster(&all);
    let listed = doc["nodes"].as_array().unwrap();
    assert_eq!(listed[2]["up"], false, "{doc}");
    assert!(listed[2]["error"].is_string(), "{doc}");
    assert_eq!(listed[0]["up"], true, "{doc}");
    assert_eq!(
        doc["shards"][0]["replicas"].as_array().unwrap().len(),
        2,
        "{doc}"
    );
}
