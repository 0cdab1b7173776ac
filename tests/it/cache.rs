//! The DAX-style cache of a real `ternd`: reads are served from it (the counters prove
//! it), writes keep it correct (read-your-writes, precise Query invalidation, Scan
//! invalidation), ConsistentRead bypasses it, TTLs and the byte budget hold.
//!
//! One shard per server, so every counter is that shard's.

use tern_client::{
    Client, Item, QueryRequest, ReturnValues, ScalarType, ScanRequest, SortKeyCondition, Value,
};

use crate::harness::*;

/// The node's total of a counter.
fn counter(c: &mut Client, name: &str) -> u64 {
    c.stats()
        .unwrap()
        .shards
        .iter()
        .flat_map(|s| &s.counters)
        .filter(|k| k.name == name)
        .map(|k| k.value)
        .sum()
}

/// A change in counters across `f`.
fn delta<T>(c: &mut Client, names: &[&str], f: impl FnOnce(&mut Client) -> T) -> (T, Vec<u64>) {
    let before: Vec<u64> = names.iter().map(|n| counter(c, n)).collect();
    let out = f(c);
    let after: Vec<u64> = names.iter().map(|n| counter(c, n)).collect();
    (out, after.iter().zip(before).map(|(a, b)| a - b).collect())
}

fn kv(id: &str, v: i64) -> Item {
    item(&[("id", s(id)), ("v", n(v))])
}

fn key(id: &str) -> Item {
    item(&[("id", s(id))])
}

fn v_of(it: &Option<Item>) -> Option<Value> {
    it.as_ref().and_then(|i| i.get("v").cloned())
}

#[test]
fn item_cache_serves_repeat_reads_and_every_write_shows_at_once() {
    let server = Server::start(1, "uring");
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    c.put_item("kvs", &kv("a", 1)).unwrap();
    let hm = ["ItemCacheHits", "ItemCacheMisses"];

    let (got, d) = delta(&mut c, &hm, |c| {
        c.get_item("kvs", &key("a"), false).unwrap()
    });
    assert_eq!(v_of(&got), Some(n(1)));
    assert_eq!(
        d,
        [1, 0],
        "the write put the item in the cache (DAX's write-through)"
    );
    // A key never written: the first read misses and fills ("not found" is cached too).
    let (got, d) = delta(&mut c, &hm, |c| {
        c.get_item("kvs", &key("never"), false).unwrap()
    });
    assert_eq!(got, None);
    assert_eq!(
        d,
        [0, 1],
        "the first read of an unwritten key fills the cache"
    );
    let (got, d) = delta(&mut c, &hm, |c| {
        c.get_item("kvs", &key("never"), false).unwrap()
    });
    assert_eq!(got, None);
    assert_eq!(d, [1, 0], "the second is a hit");

    // Write-through: the cached entry follows the write; the next read is still a hit.
    c.put_item("kvs", &kv("a", 2)).unwrap();
    let (got, d) = delta(&mut c, &hm, |c| {
        c.get_item("kvs", &key("a"), false).unwrap()
    });
    assert_eq!(v_of(&got), Some(n(2)), "read-your-writes through the cache");
    assert_eq!(d, [1, 0]);
    // The same from a second connection.
    let mut other = server.client();
    assert_eq!(
        v_of(&other.get_item("kvs", &key("a"), false).unwrap()),
        Some(n(2))
    );

    c.delete_item("kvs", &key("a"), ReturnValues::None).unwrap();
    let (got, d) = delta(&mut c, &hm, |c| {
        c.get_item("kvs", &key("a"), false).unwrap()
    });
    assert!(got.is_none(), "a delete shows at once: {got:?}");
    assert_eq!(d, [1, 0], "as a cached 'not found'");

    // Negative entries: a missing key is a miss once, then a hit, until it is written.
    let (_, d) = delta(&mut c, &hm, |c| {
        assert!(c.get_item("kvs", &key("b"), false).unwrap().is_none());
        assert!(c.get_item("kvs", &key("b"), false).unwrap().is_none());
    });
    assert_eq!(d, [1, 1]);
    c.put_item("kvs", &kv("b", 7)).unwrap();
    assert_eq!(
        v_of(&c.get_item("kvs", &key("b"), false).unwrap()),
        Some(n(7))
    );

    // ConsistentRead bypasses the cache: no hit, no miss.
    let (got, d) = delta(&mut c, &hm, |c| c.get_item("kvs", &key("b"), true).unwrap());
    assert_eq!(v_of(&got), Some(n(7)));
    assert_eq!(d, [0, 0]);

    // DeleteTable drops the table's entries; a new table of that name starts empty.
    assert!(counter(&mut c, "ItemCacheEntries") > 0);
    c.delete_table("kvs").unwrap();
    assert_eq!(
        counter(&mut c, "ItemCacheEntries"),
        0,
        "DeleteTable drops its entries"
    );
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    assert!(c.get_item("kvs", &key("b"), false).unwrap().is_none());
}

#[test]
fn batches_go_through_the_item_cache() {
    use tern_client::{
        BatchGetItemRequest, BatchWriteItemRequest, KeysAndAttributes, TableWriteRequests,
        WriteRequest,
    };
    let server = Server::start(1, "uring");
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let write = |vals: i64| BatchWriteItemRequest {
        tables: vec![TableWriteRequests {
            table: "kvs".into(),
            requests: ids
                .iter()
                .map(|id| WriteRequest::Put(kv(id, vals).encode()))
                .collect(),
        }],
    };
    c.batch_write(&write(1)).unwrap();
    let get = BatchGetItemRequest {
        tables: vec![KeysAndAttributes {
            table: "kvs".into(),
            keys: ids.iter().map(|id| key(id).encode()).collect(),
            consistent_read: false,
        }],
    };
    let values = |c: &mut Client| -> Vec<Value> {
        let resp = c.batch_get(&get).unwrap();
        let mut v: Vec<Value> = resp.responses[0]
            .items
            .iter()
            .map(|b| Item::decode(b).unwrap().get("v").cloned().unwrap())
            .collect();
        v.dedup();
        v
    };
    let hm = ["ItemCacheHits", "ItemCacheMisses"];
    // The batch write put every item in the cache: even the first batch read hits.
    let (v, d) = delta(&mut c, &hm, values);
    assert_eq!((v, d), (vec![n(1)], vec![10, 0]));
    let (v, d) = delta(&mut c, &hm, values);
    assert_eq!((v, d), (vec![n(1)], vec![10, 0]));
    c.batch_write(&write(2)).unwrap();
    let (v, d) = delta(&mut c, &hm, values);
    assert_eq!((v, d), (vec![n(2)], vec![10, 0]), "batch writes go through");
}

fn q(sort_key: Option<SortKeyCondition>, limit: Option<u32>, pk: &str) -> QueryRequest {
    QueryRequest {
        table: "qry".into(),
        partition_key: s(pk),
        sort_key,
        scan_forward: true,
        limit,
        exclusive_start_key: None,
        consistent_read: false,
    }
}

fn row(pk: &str, sk: i64, v: i64) -> Item {
    item(&[("pk", s(pk)), ("sk", n(sk)), ("v", n(v))])
}

fn sks_and_vs(c: &mut Client, req: &QueryRequest) -> Vec<(Value, Value)> {
    c.query(req)
        .unwrap()
        .items
        .iter()
        .map(|i| (i.get("sk").cloned().unwrap(), i.get("v").cloned().unwrap()))
        .collect()
}

#[test]
fn query_cache_is_invalidated_by_writes_inside_its_range_only() {
    let server = Server::start(1, "uring");
    let mut c = server.client();
    c.create_table(
        "qry",
        schema(("pk", ScalarType::S), Some(("sk", ScalarType::N))),
    )
    .unwrap();
    for sk in 1..=10 {
        c.put_item("qry", &row("p", sk, 0)).unwrap();
        c.put_item("qry", &row("other", sk, 0)).unwrap();
    }
    let hm = ["QueryCacheHits", "QueryCacheMisses"];
    let between = q(Some(SortKeyCondition::Between(n(3), n(6))), None, "p");

    let (rows, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &between));
    assert_eq!(rows.len(), 4);
    assert_eq!(d, [0, 1]);
    let (_, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &between));
    assert_eq!(d, [1, 0], "the same request is a hit");

    // Writes outside the range, or in another partition, leave it cached.
    c.put_item("qry", &row("p", 8, 1)).unwrap();
    c.put_item("qry", &row("p", 2, 1)).unwrap();
    c.put_item("qry", &row("other", 4, 1)).unwrap();
    let (rows, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &between));
    assert_eq!(d, [1, 0], "writes outside the range do not invalidate");
    assert!(rows.iter().all(|(_, v)| *v == n(0)));

    // A write inside it does, and the next answer has the write.
    c.put_item("qry", &row("p", 4, 9)).unwrap();
    let (rows, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &between));
    assert_eq!(d, [0, 1], "a write inside the range invalidates");
    assert!(rows.contains(&(n(4), n(9))), "{rows:?}");
    // So does a new item inside it, and a delete.
    c.put_item("qry", &row("p", 5, 0)).unwrap(); // an overwrite, same value
    let (_, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &between));
    assert_eq!(d, [0, 1]);
    c.delete_item(
        "qry",
        &item(&[("pk", s("p")), ("sk", n(3))]),
        ReturnValues::None,
    )
    .unwrap();
    let (rows, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &between));
    assert_eq!(d, [0, 1]);
    assert_eq!(rows.len(), 3, "{rows:?}");

    // A page cut short by Limit depends only on the keys up to its last item.
    let first_two = q(None, Some(2), "p"); // sk 1, 2
    let (rows, _) = delta(&mut c, &hm, |c| sks_and_vs(c, &first_two));
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        [n(1), n(2)]
    );
    c.put_item("qry", &row("p", 9, 5)).unwrap();
    let (_, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &first_two));
    assert_eq!(
        d,
        [1, 0],
        "a write past the page's last key does not invalidate it"
    );
    c.put_item("qry", &row("p", 1, 5)).unwrap();
    let (rows, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &first_two));
    assert_eq!(d, [0, 1]);
    assert_eq!(rows[0], (n(1), n(5)));

    // ConsistentRead bypasses the query cache.
    let strong = QueryRequest {
        consistent_read: true,
        ..between.clone()
    };
    let (_, d) = delta(&mut c, &hm, |c| sks_and_vs(c, &strong));
    assert_eq!(d, [0, 0]);
}

#[test]
fn scan_cache_is_dropped_by_any_write_to_its_table() {
    let server = Server::start(1, "uring");
    let mut c = server.client();
    c.create_table("scn", schema(("id", ScalarType::S), None))
        .unwrap();
    c.create_table("oth", schema(("id", ScalarType::S), None))
        .unwrap();
    for i in 0..20 {
        c.put_item("scn", &kv(&format!("k{i}"), i)).unwrap();
    }
    let scan = ScanRequest {
        table: "scn".into(),
        limit: None,
        exclusive_start_key: None,
        segment: 0,
        total_segments: 1,
        consistent_read: false,
    };
    let count = |c: &mut Client| c.scan(&scan).unwrap().items.len();
    let hm = ["ScanCacheHits", "ScanCacheMisses"];
    let (n1, d) = delta(&mut c, &hm, count);
    assert_eq!((n1, d[0]), (20, 0));
    assert!(d[1] >= 1);
    let (n2, d) = delta(&mut c, &hm, count);
    assert_eq!(
        (n2, d[1]),
        (20, 0),
        "a repeat Scan is served from the cache"
    );
    assert!(d[0] >= 1);
    c.put_item("oth", &kv("elsewhere", 1)).unwrap();
    let (_, d) = delta(&mut c, &hm, count);
    assert_eq!(d[1], 0, "a write to another table leaves it");
    c.put_item("scn", &kv("new", 1)).unwrap();
    let (n3, d) = delta(&mut c, &hm, count);
    assert_eq!(n3, 21, "the write shows");
    assert!(d[1] >= 1, "any write to the table invalidates");
}

#[test]
fn ttl_zero_disables_a_cache_and_tables_can_override() {
    let data = std::rc::Rc::new(tempfile::tempdir().unwrap());
    let server = Server::start_in(
        data,
        1,
        "uring",
        &[
            "--item-cache-ttl-ms",
            "0",
            "--table-cache-ttl",
            "hot=60000:0",
        ],
    );
    let mut c = server.client();
    for t in ["hot", "cold"] {
        c.create_table(t, schema(("id", ScalarType::S), None))
            .unwrap();
        c.put_item(t, &kv("a", 1)).unwrap();
    }
    let hm = ["ItemCacheHits", "ItemCacheMisses"];
    let (_, d) = delta(&mut c, &hm, |c| {
        for _ in 0..3 {
            assert_eq!(
                v_of(&c.get_item("cold", &key("a"), false).unwrap()),
                Some(n(1))
            );
        }
    });
    assert_eq!(d, [0, 0], "TTL 0: the item cache is off for this table");
    let (_, d) = delta(&mut c, &hm, |c| {
        for _ in 0..3 {
            assert_eq!(
                v_of(&c.get_item("hot", &key("a"), false).unwrap()),
                Some(n(1))
            );
        }
    });
    assert_eq!(
        d,
        [3, 0],
        "the per-table TTL turns it on (the put filled it)"
    );
}

#[test]
fn the_budget_holds_and_evictions_are_counted() {
    let data = std::rc::Rc::new(tempfile::tempdir().unwrap());
    let server = Server::start_in(data, 1, "uring", &["--cache-size", "256K"]);
    let mut c = server.client();
    c.create_table("kvs", schema(("id", ScalarType::S), None))
        .unwrap();
    let pad = "x".repeat(1000);
    let big = |i: i64| item(&[("id", s(&format!("k{i}"))), ("v", n(i)), ("pad", s(&pad))]);
    for i in 0..1000 {
        c.put_item("kvs", &big(i)).unwrap();
    }
    for round in 0..2 {
        for i in 0..1000 {
            let got = c.get_item("kvs", &key(&format!("k{i}")), false).unwrap();
            assert_eq!(v_of(&got), Some(n(i)), "round {round}");
        }
    }
    let budget = counter(&mut c, "CacheBudgetBytes");
    assert_eq!(budget, 256 << 10);
    assert!(counter(&mut c, "CacheBytes") <= budget);
    assert!(counter(&mut c, "CacheEvictions") > 0);
    let entries = counter(&mut c, "ItemCacheEntries");
    assert!(entries > 0 && entries < 1000, "entries {entries}");
}
