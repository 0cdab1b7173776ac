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

/// Cluster node `i` (AZ a, b, c, d, ... = id i + 1) of 2 shards in `dir`, its peers
/// being `peers` (index → first peer port), its bootstrap voters `voters`; a Raft log
/// that keeps 16 applied entries, so a node that joins late catches up by snapshot.
fn cluster_node(
    i: usize,
    dir: &std::path::Path,
    peer_ports: &[(usize, u16)],
    voters: &[u64],
) -> Node {
    use tern_server::node::ClusterConfig;
    let az = (b'a' + i as u8) as char;
    let mut cfg = NodeConfig::for_tests(2, &format!("az-{az}"), dir);
    cfg.storage.store.replicated = true;
    cfg.storage.store.raft_retained_entries = 16;
    let me = peer_ports
        .iter()
        .find(|(j, _)| *j == i)
        .expect("own port")
        .1;
    cfg.cluster = Some(ClusterConfig {
        node: i as u64 + 1,
        voters: voters.to_vec(),
        peer_host: cfg.host,
        peer_port: me,
        peers: peer_ports
            .iter()
            .filter(|(j, _)| *j != i)
            .map(|&(j, p)| (j as u64 + 1, format!("127.0.0.1:{p}").parse().unwrap()))
            .collect(),
        secret: b"a cluster secret for the cli test".to_vec(),
    });
    Node::start(&cfg).expect("start node")
}

fn endpoint(n: &Node) -> String {
    format!("127.0.0.1:{}", n.topology.shared_port)
}

/// Polls `tern cluster --nodes NODES` until `done` holds (30 s at most).
fn cluster_until(via: &str, nodes: &str, done: impl Fn(&Json) -> bool) -> Json {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let doc = tern(via, &["cluster", "--nodes", nodes]).json();
        if done(&doc) {
            return doc;
        }
        assert!(std::time::Instant::now() < deadline, "never: {doc}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn leaders_known(doc: &Json) -> bool {
    doc["shards"]
        .as_array()
        .is_some_and(|s| s.len() == 2 && s.iter().all(|s| !s["leader"].is_null()))
}

/// Every listed replica of every shard has applied what its leader committed.
fn caught_up(doc: &Json) -> bool {
    leaders_known(doc)
        && doc["shards"].as_array().unwrap().iter().all(|s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["applied"] == s["commit"])
        })
}

#[test]
fn tern_cluster_reports_nodes_leaders_and_lag() {
    let peer_ports: Vec<(usize, u16)> = (0..3).map(|i| (i, free_ports(2))).collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|i| Some(cluster_node(i, dirs[i].path(), &peer_ports, &[1, 2, 3])))
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

/// Replacing a dead node with an empty one: remove the dead voter, start the new node
/// (knowing the cluster's first voters), add it; it catches up by snapshot (the logs
/// keep 16 entries), serves every write made before, and the group survives losing
/// another of its original nodes afterwards.
#[test]
fn a_dead_node_is_replaced_by_an_empty_one() {
    use tern_client::{Client, Item, KeyAttr, KeySchema, ScalarType, Value};
    let peer_ports: Vec<(usize, u16)> = (0..4).map(|i| (i, free_ports(2))).collect();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|i| {
            Some(cluster_node(
                i,
                dirs[i].path(),
                &peer_ports[..3],
                &[1, 2, 3],
            ))
        })
        .collect();
    let eps: Vec<String> = nodes
        .iter()
        .map(|n| endpoint(n.as_ref().unwrap()))
        .collect();
    cluster_until(&eps[0], &eps.join(","), leaders_known);
    let item = |n: u64| {
        Item::from_attrs([
            ("id".to_owned(), Value::S(format!("k{n}"))),
            ("v".to_owned(), Value::N(n.into())),
        ])
    };
    let key = |n: u64| Item::from_attrs([("id".to_owned(), Value::S(format!("k{n}")))]);
    let mut a = Client::connect(&eps[0]).unwrap();
    a.create_table(
        "repl",
        KeySchema {
            partition: KeyAttr {
                name: "id".into(),
                ty: ScalarType::S,
            },
            sort: None,
        },
    )
    .unwrap();
    for n in 0..100 {
        a.put_item("repl", &item(n)).unwrap();
    }
    // Node c dies for good.
    let c = nodes[2].take().unwrap();
    c.shutdown();
    c.join().unwrap();
    let removed = tern(&eps[0], &["remove-voter", "c"]).json();
    for s in removed["Shards"].as_array().unwrap() {
        assert_eq!(s["Voters"], json!([1, 2]), "{removed}");
    }
    // Writes go on with two voters.
    for n in 100..120 {
        a.put_item("repl", &item(n)).unwrap();
    }
    // Node d starts empty, knowing the first voters and where a and b are.
    let d = cluster_node(
        3,
        dirs[3].path(),
        &[peer_ports[0], peer_ports[1], peer_ports[3]],
        &[1, 2, 3],
    );
    let ep_d = endpoint(&d);
    let added = tern(
        &eps[1],
        &["add-voter", &format!("d=127.0.0.1:{}", peer_ports[3].1)],
    )
    .json();
    for s in added["Shards"].as_array().unwrap() {
        assert_eq!(s["Voters"], json!([1, 2, 4]), "{added}");
    }
    // Retrying is harmless: the voter is there already.
    let again = tern(&eps[0], &["remove-voter", "c"]).json();
    assert_eq!(again["Shards"][0]["Voters"], json!([1, 2, 4]), "{again}");
    let abd = format!("{},{},{ep_d}", eps[0], eps[1]);
    cluster_until(&eps[0], &abd, caught_up);
    // d holds every write, from its own store (eventually consistent reads there).
    let mut dc = Client::connect(&ep_d).unwrap();
    for n in 0..120 {
        let got = dc.get_item("repl", &key(n), false).unwrap();
        assert_eq!(got, Some(item(n)), "k{n} on node d");
    }
    let d_stats = tern(&ep_d, &["stats"]).json();
    assert!(
        d_stats["total"]["RaftFirstIndex"].as_u64() > Some(2),
        "d caught up by snapshot, not by replaying from entry 1: {d_stats}"
    );
    // The new group {a, b, d} survives losing a.
    let a_node = nodes[0].take().unwrap();
    a_node.shutdown();
    a_node.join().unwrap();
    let mut b = Client::connect(&eps[1]).unwrap();
    for n in 120..130 {
        b.put_item("repl", &item(n)).unwrap();
        assert_eq!(dc.get_item("repl", &key(n), true).unwrap(), Some(item(n)));
    }
    drop(d);
}

#[test]
fn membership_changes_need_a_cluster() {
    let (node, _data) = start_node();
    let ep = format!("127.0.0.1:{}", node.topology.shared_port);
    let run = tern(&ep, &["remove-voter", "c"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.starts_with("ValidationException:") && run.stderr.contains("--replicas 1"),
        "{}",
        run.stderr
    );
    let run = tern(&ep, &["add-voter", "d=not-an-address"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.starts_with("ValidationException:"),
        "{}",
        run.stderr
    );
}
