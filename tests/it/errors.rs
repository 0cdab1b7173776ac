//! Well-formed but invalid requests get DynamoDB's error names; the connection stays usable.

use tern_client::{ErrorCode, QueryRequest, ReturnValues, ScalarType, SortKeyCondition, Value};

use crate::harness::*;

/// The error name of a failed call (panics if it succeeded).
fn code<T: std::fmt::Debug>(r: Result<T, tern_client::Error>) -> Option<ErrorCode> {
    r.expect_err("the request should fail").code()
}

#[test]
fn typed_errors_keep_the_connection_usable() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table(
        "errs",
        schema(("id", ScalarType::S), Some(("r", ScalarType::N))),
    )
    .unwrap();

    // Unknown table (client side needs a schema first, so go through raw put of a table we know).
    let err = c.describe_table("nope").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ResourceNotFoundException));
    assert_eq!(
        code(c.put_item("nope", &item(&[("id", s("a"))]))),
        Some(ErrorCode::ResourceNotFoundException)
    );

    // Missing sort key, wrong key type, empty key string, extra attribute in a key.
    assert_eq!(
        code(c.put_item("errs", &item(&[("id", s("a"))]))),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.put_item("errs", &item(&[("id", n(1)), ("r", n(1))]))),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.put_item("errs", &item(&[("id", s("")), ("r", n(1))]))),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.get_item(
            "errs",
            &item(&[("id", s("a")), ("r", n(1)), ("x", n(1))]),
            false
        )),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.get_item("errs", &item(&[("id", s("a"))]), false)),
        Some(ErrorCode::ValidationException)
    );

    // Query: wrong partition-key type, inverted BETWEEN, zero limit.
    let q = |pk: Value, cond: Option<SortKeyCondition>, limit: Option<u32>| QueryRequest {
        table: "errs".into(),
        partition_key: pk,
        sort_key: cond,
        scan_forward: true,
        limit,
        exclusive_start_key: None,
        consistent_read: false,
    };
    assert_eq!(
        code(c.query(&q(n(1), None, None))),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.query(&q(
            s("a"),
            Some(SortKeyCondition::Between(n(5), n(1))),
            None
        ))),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.query(&q(s("a"), Some(SortKeyCondition::Lt(s("x"))), None))),
        Some(ErrorCode::ValidationException)
    );
    assert_eq!(
        code(c.query(&q(s("a"), None, Some(0)))),
        Some(ErrorCode::ValidationException)
    );

    // After all that, the same client still works.
    c.put_item("errs", &item(&[("id", s("a")), ("r", n(1))]))
        .unwrap();
    assert!(
        c.get_item("errs", &item(&[("id", s("a")), ("r", n(1))]), false)
            .unwrap()
            .is_some()
    );
}

/// Builds an item whose DynamoDB size is exactly `size` bytes: id "k" (2+1 bytes) plus a
/// string attribute "p" (1 byte name) of the remaining length.
fn item_of_size(size: usize) -> tern_client::Item {
    let fixed = "id".len() + "k".len() + "p".len();
    item(&[("id", s("k")), ("p", s(&"x".repeat(size - fixed)))])
}

#[test]
fn item_size_limit_is_exact() {
    let server = Server::start(2, "uring");
    let mut c = server.client();
    c.create_table("size", schema(("id", ScalarType::S), None))
        .unwrap();
    let max = 400 * 1024;
    c.put_item_bytes("size", &item_of_size(max).encode(), ReturnValues::None)
        .expect("exactly 400 KB is allowed");
    let err = c
        .put_item_bytes("size", &item_of_size(max + 1).encode(), ReturnValues::None)
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ValidationException), "{err}");
    assert!(
        err.to_string().contains("size"),
        "the message says what is wrong: {err}"
    );
    let got = c
        .get_item("size", &item(&[("id", s("k"))]), false)
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        item_of_size(max),
        "the rejected put did not replace the item"
    );
}

/// A Query's partition key number must be canonical, as numbers in items are: "1.0"
/// would otherwise hash differently from the stored "1" and silently match nothing.
#[test]
fn a_non_canonical_query_partition_key_is_a_validation_error() {
    use tern_protocol::frame::Opcode;
    use tern_protocol::messages::encode;
    let server = Server::start(1, "uring");
    let mut c = server.client();
    c.create_table("numq", schema(("id", ScalarType::N), None))
        .unwrap();
    c.put_item("numq", &item(&[("id", n(1))])).unwrap();
    // The archived S and N values share one layout: encode "1.0" as S, then retag it N.
    let req = QueryRequest {
        table: "numq".into(),
        partition_key: s("1.0"),
        sort_key: None,
        scan_forward: true,
        limit: None,
        exclusive_start_key: None,
        consistent_read: false,
    };
    let mut body = encode(&req);
    let text = b"1.0\xff\xff\xff\xff\xff";
    let at = body
        .windows(9)
        .position(|w| w[0] == 0 && &w[1..] == text)
        .expect("the inline S value");
    body[at] = 1;
    let e = c.call(None, Opcode::Query, &body).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ValidationException), "{e}");
    // The canonical form finds the item.
    let page = c.query(&QueryRequest {
        partition_key: n(1),
        ..req
    });
    assert_eq!(page.unwrap().items.len(), 1);
}
