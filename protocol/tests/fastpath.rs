//! The GetItem fast path against the generic one (rkyv's validator, then
//! `validate_key`), on valid bodies and on corrupted ones: whatever the fast path
//! accepts, the generic path accepts with the same fields, and every valid key of one or
//! two scalar attributes is accepted (so the fast path is actually taken).

use proptest::prelude::*;
use tern_protocol::fastpath::get_item_request;
use tern_protocol::keys::KeyRef;
use tern_protocol::messages::{ArchivedGetItemRequest, GetItemRequest, access, encode};
use tern_protocol::validate::validate_key;
use tern_protocol::value::access_item;
use tern_protocol::{Item, KeyAttr, KeySchema, Number, ScalarType, Value};

fn name() -> impl Strategy<Value = String> {
    // Short (inline) and long (out-of-line) names, ASCII and not.
    prop_oneof![
        "[a-z]{1,3}",
        "[a-z]{7,12}",
        "[a-zé€]{1,10}",
        Just("pk".to_owned()),
        Just("sk".to_owned()),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop_oneof!["[a-z]{0,3}", "[a-z]{8,20}", "[a-zß]{1,12}"].prop_map(Value::S),
        3 => prop_oneof![
            (-1_000_000i64..1_000_000).prop_map(|n| n.to_string()),
            Just("12.5".to_owned()),
            Just("1234567890.0123456789".to_owned()),
        ]
        .prop_map(|t| Value::N(t.parse::<Number>().unwrap())),
        3 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::B),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => prop::collection::vec(Just(Value::Null), 0..2).prop_map(Value::L),
    ]
}

fn key() -> impl Strategy<Value = Item> {
    prop::collection::btree_map(name(), value(), 0..4).prop_map(Item::from_attrs)
}

fn table() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9_.-]{3,8}", "[a-zA-Z0-9_.-]{9,40}"]
}

fn schema() -> impl Strategy<Value = KeySchema> {
    let ty = prop_oneof![
        Just(ScalarType::S),
        Just(ScalarType::N),
        Just(ScalarType::B)
    ];
    (ty.clone(), prop::option::of(ty)).prop_map(|(p, s)| KeySchema {
        partition: KeyAttr {
            name: "pk".into(),
            ty: p,
        },
        sort: s.map(|ty| KeyAttr {
            name: "sk".into(),
            ty,
        }),
    })
}

/// A way to damage a body: overwrite a byte, nudge a 4-byte little-endian word (offsets
/// and lengths), cut the end, put bytes in front.
#[derive(Debug, Clone)]
enum Damage {
    Byte(usize, u8),
    Nudge(usize, i32),
    Truncate(usize),
    Prefix(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Byte(i, b)),
        (any::<usize>(), -40i32..40).prop_map(|(i, d)| Damage::Nudge(i, d)),
        any::<usize>().prop_map(Damage::Truncate),
        prop::collection::vec(any::<u8>(), 1..9).prop_map(Damage::Prefix),
    ]
}

fn apply(body: &mut Vec<u8>, d: &Damage) {
    let n = body.len();
    match d {
        Damage::Byte(i, b) => body[i % n] = *b,
        Damage::Nudge(i, delta) if n >= 4 => {
            let at = i % (n - 3);
            let w = i32::from_le_bytes(body[at..at + 4].try_into().unwrap());
            body[at..at + 4].copy_from_slice(&w.wrapping_add(*delta).to_le_bytes());
        }
        Damage::Nudge(..) => {}
        Damage::Truncate(i) => body.truncate(i % n),
        Damage::Prefix(p) => {
            body.splice(0..0, p.iter().copied());
        }
    }
}

/// The server's fast path takes `body` when `get_item_request` reads it, its table name
/// is a table's (a table's name is any valid UTF-8 string here) and `matching` accepts its
/// key: then the generic path must accept it with the same fields and the same key.
/// Wherever the generic path accepts a body the fast path reads, both agree on every
/// field and on whether (and how) the key matches `schema`.
fn check_agrees(body: &[u8], schema: &KeySchema) -> Result<(), TestCaseError> {
    let Some(fast) = get_item_request(body) else {
        return Ok(());
    };
    let taken = std::str::from_utf8(fast.table).is_ok() && fast.key.matching(schema).is_some();
    let generic = access::<ArchivedGetItemRequest>(body)
        .map_err(|e| format!("rkyv refuses the body: {e}"))
        .and_then(|req| {
            let item = access_item(req.key.as_slice())
                .map_err(|e| format!("rkyv refuses the key: {e}"))?;
            Ok((req, item))
        });
    let (req, item) = match generic {
        Ok(generic) => generic,
        Err(e) if taken => return Err(TestCaseError::fail(format!("fast path took it, {e}"))),
        Err(_) => return Ok(()),
    };
    prop_assert_eq!(fast.table, req.table.as_bytes());
    prop_assert_eq!(fast.consistent_read, req.consistent_read);
    let generic: Vec<(&[u8], Option<KeyRef<'_>>)> = item
        .attrs
        .iter()
        .map(|a| (a.name.as_bytes(), KeyRef::from_archived(&a.value)))
        .collect();
    let fast_attrs: Vec<(&[u8], Option<KeyRef<'_>>)> = fast
        .key
        .attrs()
        .iter()
        .map(|&(n, v)| (n, Some(v)))
        .collect();
    prop_assert_eq!(fast_attrs, generic);
    prop_assert_eq!(fast.key.matching(schema), validate_key(item, schema).ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn valid_bodies_agree_and_scalar_keys_take_the_fast_path(
        table in table(), key in key(), consistent_read: bool, schema in schema(),
    ) {
        let scalar = key.attrs.len() <= 2 && !key.attrs.is_empty() && key.attrs.iter().all(|a| {
            matches!(a.value, Value::S(_) | Value::N(_) | Value::B(_))
        });
        let body = encode(&GetItemRequest { table, key: key.encode(), consistent_read });
        prop_assert_eq!(get_item_request(&body).is_some(), scalar);
        check_agrees(&body, &schema)?;
    }

    #[test]
    fn damaged_bodies_never_pass_the_fast_path_alone(
        table in table(), key in key(), consistent_read: bool, schema in schema(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let mut body = encode(&GetItemRequest { table, key: key.encode(), consistent_read });
        for d in &damages {
            if !body.is_empty() {
                apply(&mut body, d);
            }
        }
        check_agrees(&body, &schema)?;
    }
}

/// Hand-made layouts from wire-protocol §4.7: a gap before an out-of-line string is
/// accepted by both; the table's bytes placed after the key's (siblings out of order)
/// are refused by both, and so is a short string stored out of line.
#[test]
fn the_window_rule_is_rkyvs() {
    let key = Item::from_attrs([("pk".to_owned(), Value::S("k".into()))]).encode();
    let table = "a-table-name-of-20-b";
    // Layout A: [gap 3][table bytes][key bytes][root]
    // Layout B: [key bytes][table bytes][root]   (table's data after key's: refused)
    let build = |table: &str, table_first: bool, gap: usize| {
        let mut b = vec![0xAA; gap];
        let (t_at, k_at);
        if table_first {
            t_at = b.len();
            b.extend_from_slice(table.as_bytes());
            k_at = b.len();
            b.extend_from_slice(&key);
        } else {
            k_at = b.len();
            b.extend_from_slice(&key);
            t_at = b.len();
            b.extend_from_slice(table.as_bytes());
        }
        let root = b.len();
        let len = table.len() as u32;
        b.extend_from_slice(&(0x80 | (len & 0x3F) | ((len >> 6) << 8)).to_le_bytes());
        b.extend_from_slice(&(t_at as i32 - root as i32).to_le_bytes());
        b.extend_from_slice(&(k_at as i32 - (root as i32 + 8)).to_le_bytes());
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.push(0);
        b
    };
    let ok = build(table, true, 3);
    assert!(access::<ArchivedGetItemRequest>(&ok).is_ok());
    let fast = get_item_request(&ok).expect("a gap is allowed");
    assert_eq!(fast.table, table.as_bytes());
    let swapped = build(table, false, 0);
    assert!(access::<ArchivedGetItemRequest>(&swapped).is_err());
    assert!(get_item_request(&swapped).is_none());
    // A string of 8 bytes or fewer must be inline (§4.3): out of line, both refuse it.
    let short = build("short", true, 0);
    assert!(access::<ArchivedGetItemRequest>(&short).is_err());
    assert!(get_item_request(&short).is_none());
}
