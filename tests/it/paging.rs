//! Query and Scan: sort-key conditions, order, limits and paging across shards.

use std::collections::BTreeSet;

use tern_client::{Client, Item, QueryRequest, ScalarType, ScanRequest, SortKeyCondition, Value};

use crate::harness::*;

fn sk_of(it: &Item) -> i64 {
    match it.get("sk") {
        Some(Value::N(num)) => num.as_str().parse().unwrap(),
        other => panic!("sk is {other:?}"),
    }
}

fn query_all(c: &mut Client, mut req: QueryRequest) -> Vec<i64> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = c.query(&req).unwrap();
        out.extend(page.items.iter().map(sk_of));
        match page.last_evaluated_key {
            Some(k) => req.exclusive_start_key = Some(k.encode()),
            None => return out,
        }
    }
    panic!("query did not finish in 1000 pages");
}

#[test]
fn query_conditions_order_limit_and_paging() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table(
        "qry",
        schema(("pk", ScalarType::S), Some(("sk", ScalarType::N))),
    )
    .unwrap();
    let sks: Vec<i64> = (-30..30).collect();
    for p in ["p", "other", "p2"] {
        for &k in &sks {
            c.put_item(
                "qry",
                &item(&[("pk", s(p)), ("sk", n(k)), ("data", s(&format!("{p}{k}")))]),
            )
            .unwrap();
        }
    }
    type Case = (Option<SortKeyCondition>, Box<dyn Fn(i64) -> bool>);
    let cases: Vec<Case> = vec![
        (None, Box::new(|_| true)),
        (Some(SortKeyCondition::Eq(n(5))), Box::new(|k| k == 5)),
        (Some(SortKeyCondition::Lt(n(-3))), Box::new(|k| k < -3)),
        (Some(SortKeyCondition::Le(n(-3))), Box::new(|k| k <= -3)),
        (Some(SortKeyCondition::Gt(n(7))), Box::new(|k| k > 7)),
        (Some(SortKeyCondition::Ge(n(7))), Box::new(|k| k >= 7)),
        (
            Some(SortKeyCondition::Between(n(-10), n(10))),
            Box::new(|k| (-10..=10).contains(&k)),
        ),
        (Some(SortKeyCondition::Eq(n(1000))), Box::new(|_| false)),
    ];
    for (cond, pred) in cases {
        let want: Vec<i64> = sks.iter().copied().filter(|k| pred(*k)).collect();
        for forward in [true, false] {
            for limit in [None, Some(1), Some(7), Some(100)] {
                let req = QueryRequest {
                    table: "qry".into(),
                    partition_key: s("p"),
                    sort_key: cond.clone(),
                    scan_forward: forward,
                    limit,
                    exclusive_start_key: None,
                    consistent_read: false,
                };
                let mut expect = want.clone();
                if !forward {
                    expect.reverse();
                }
                assert_eq!(
                    query_all(&mut c, req),
                    expect,
                    "{cond:?} forward={forward} limit={limit:?}"
                );
            }
        }
    }
    // One page honours Limit and says where to go on.
    let page = c
        .query(&QueryRequest {
            table: "qry".into(),
            partition_key: s("p"),
            sort_key: None,
            scan_forward: true,
            limit: Some(3),
            exclusive_start_key: None,
            consistent_read: false,
        })
        .unwrap();
    assert_eq!(page.count, 3);
    assert_eq!(
        page.items.iter().map(sk_of).collect::<Vec<_>>(),
        vec![-30, -29, -28]
    );
    assert_eq!(
        page.last_evaluated_key,
        Some(item(&[("pk", s("p")), ("sk", n(-28))]))
    );
}

#[test]
fn query_begins_with_on_string_sort_keys() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table(
        "qrys",
        schema(("pk", ScalarType::N), Some(("sk", ScalarType::S))),
    )
    .unwrap();
    for sk in ["a", "ab", "abc", "abd", "b", "ba", "", "\u{ff}x"] {
        if sk.is_empty() {
            continue;
        }
        c.put_item("qrys", &item(&[("pk", n(1)), ("sk", s(sk))]))
            .unwrap();
    }
    let page = c
        .query(&QueryRequest {
            table: "qrys".into(),
            partition_key: n(1),
            sort_key: Some(SortKeyCondition::BeginsWith(s("ab"))),
            scan_forward: true,
            limit: None,
            exclusive_start_key: None,
            consistent_read: false,
        })
        .unwrap();
    let got: Vec<Value> = page
        .items
        .iter()
        .map(|i| i.get("sk").unwrap().clone())
        .collect();
    assert_eq!(got, vec![s("ab"), s("abc"), s("abd")]);
}

fn scan_all(c: &mut Client, limit: Option<u32>, segment: u32, total: u32) -> (Vec<String>, usize) {
    let mut req = ScanRequest {
        table: "scn".into(),
        limit,
        exclusive_start_key: None,
        segment,
        total_segments: total,
        consistent_read: false,
    };
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "scan does not terminate");
        let page = c.scan(&req).unwrap();
        if let Some(l) = limit {
            assert!(page.count <= l);
        }
        ids.extend(page.items.iter().map(|i| match i.get("id") {
            Some(Value::S(s)) => s.clone(),
            other => panic!("{other:?}"),
        }));
        match page.last_evaluated_key {
            Some(k) => req.exclusive_start_key = Some(k.encode()),
            None => return (ids, pages),
        }
    }
}

#[test]
fn scan_pages_cover_every_shard_exactly_once() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("scn", schema(("id", ScalarType::S), None))
        .unwrap();
    let all: BTreeSet<String> = (0..300).map(|i| format!("id{i}")).collect();
    for id in &all {
        c.put_item("scn", &item(&[("id", s(id))])).unwrap();
    }
    for limit in [None, Some(1), Some(13), Some(1000)] {
        let (ids, pages) = scan_all(&mut c, limit, 0, 1);
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), set.len(), "no item twice (limit {limit:?})");
        assert_eq!(set, all, "every item (limit {limit:?})");
        if limit == Some(13) {
            assert!(pages >= 300 / 13);
        }
    }
    for total in [2u32, 3, 8] {
        let mut union = Vec::new();
        for seg in 0..total {
            union.extend(scan_all(&mut c, Some(17), seg, total).0);
        }
        let set: BTreeSet<String> = union.iter().cloned().collect();
        assert_eq!(union.len(), set.len(), "segments are disjoint ({total})");
        assert_eq!(set, all, "segments cover the table ({total})");
    }
}

#[test]
fn pages_stop_at_one_megabyte() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("scn", schema(("id", ScalarType::S), None))
        .unwrap();
    c.create_table(
        "big",
        schema(("pk", ScalarType::S), Some(("sk", ScalarType::N))),
    )
    .unwrap();
    let blob = "x".repeat(100 * 1024);
    for i in 0..25 {
        c.put_item(
            "scn",
            &item(&[("id", s(&format!("big{i}"))), ("blob", s(&blob))]),
        )
        .unwrap();
        c.put_item(
            "big",
            &item(&[("pk", s("p")), ("sk", n(i)), ("blob", s(&blob))]),
        )
        .unwrap();
    }
    let (ids, pages) = scan_all(&mut c, None, 0, 1);
    assert_eq!(ids.len(), 25);
    assert!(
        pages >= 3,
        "25 × 100 KB needs at least three 1 MB pages, got {pages}"
    );
    let page = c
        .query(&QueryRequest {
            table: "big".into(),
            partition_key: s("p"),
            sort_key: None,
            scan_forward: true,
            limit: None,
            exclusive_start_key: None,
            consistent_read: false,
        })
        .unwrap();
    assert!(
        page.count >= 10 && page.count < 25,
        "one page holds about 1 MB: {}",
        page.count
    );
    assert!(page.last_evaluated_key.is_some());
}
