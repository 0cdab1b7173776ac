//! Table lifecycle.

use tern_client::{ErrorCode, ListTablesRequest, ScalarType, TableStatus};

use crate::harness::*;

#[test]
fn create_describe_list_delete() {
    for net in NET_MODES {
        let server = Server::start(2, net);
        let mut c = server.client();
        let d = c
            .create_table("users", schema(("id", ScalarType::S), None))
            .unwrap();
        assert_eq!(d.status, TableStatus::Creating);
        assert_eq!(d.name, "users");
        c.create_table(
            "events",
            schema(("pk", ScalarType::S), Some(("ts", ScalarType::N))),
        )
        .unwrap();
        let err = c
            .create_table("users", schema(("id", ScalarType::S), None))
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ResourceInUseException), "{err}");

        for i in 0..50 {
            c.put_item("users", &item(&[("id", s(&format!("u{i}"))), ("n", n(i))]))
                .unwrap();
        }
        let d = c.describe_table("users").unwrap();
        assert_eq!(d.status, TableStatus::Active);
        assert_eq!(d.item_count, 50, "item count sums every shard");
        assert!(d.size_bytes > 0);
        assert_eq!(d.key_schema, schema(("id", ScalarType::S), None));

        assert_eq!(c.list_all_tables().unwrap(), vec!["events", "users"]);
        let page = c
            .list_tables(&ListTablesRequest {
                exclusive_start_table_name: None,
                limit: Some(1),
            })
            .unwrap();
        assert_eq!(page.table_names, vec!["events"]);
        assert_eq!(page.last_evaluated_table_name.as_deref(), Some("events"));

        let d = c.delete_table("users").unwrap();
        assert_eq!(d.status, TableStatus::Deleting);
        assert_eq!(d.item_count, 50);
        let err = c.describe_table("users").unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::ResourceNotFoundException),
            "{err}"
        );
        let err = c.delete_table("users").unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::ResourceNotFoundException),
            "{err}"
        );
        assert_eq!(c.list_all_tables().unwrap(), vec!["events"]);

        // A re-created table starts empty on every shard.
        c.create_table("users", schema(("id", ScalarType::S), None))
            .unwrap();
        assert_eq!(c.describe_table("users").unwrap().item_count, 0);
        assert!(server.stop().success(), "ternd exits cleanly on SIGTERM");
    }
}

#[test]
fn concurrent_creates_of_one_name_yield_one_table() {
    let server = Server::start(2, "uring");
    let endpoint = server.endpoint();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let endpoint = endpoint.clone();
                scope.spawn(move || {
                    let mut c = tern_client::Client::connect(&endpoint).unwrap();
                    c.create_table("race", schema(("id", ScalarType::S), None))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one CreateTable wins: {results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Some(ErrorCode::ResourceInUseException));
    }
}

#[test]
fn invalid_table_definitions_are_validation_errors() {
    let server = Server::start(1, "uring");
    let mut c = server.client();
    for name in ["ab", "has space", &"x".repeat(256)] {
        let err = c
            .create_table(name, schema(("id", ScalarType::S), None))
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::ValidationException),
            "{name}: {err}"
        );
    }
    let err = c
        .create_table(
            "same",
            schema(("id", ScalarType::S), Some(("id", ScalarType::N))),
        )
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ValidationException), "{err}");
}
