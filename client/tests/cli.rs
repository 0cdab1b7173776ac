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
