//! DynamoDB's rules, checked on an archived item in place (no decoding, no allocation
//! unless there is an error to report).
//!
//! The server runs [`validate_item`] once on every item a client sends, right after the
//! rkyv structural check (`value::access_item`); from then on everyone may rely on the
//! item encoding invariants (sorted unique names, canonical numbers, sorted unique sets)
//! and on DynamoDB's limits.
//!
//! # Size, as DynamoDB counts it
//!
//! ```text
//! S               UTF-8 bytes
//! N               ceil(significant digits / 2) + 1        (number::number_size)
//! B               bytes
//! BOOL, NULL      1
//! M               3 + Σ (1 + name bytes + value size)     over its entries
//! L               3 + Σ (1 + value size)                  over its elements
//! SS, NS, BS      Σ member sizes
//! item            Σ (name bytes + value size)             over its attributes
//! ```
//!
//! # Nesting depth
//!
//! A top-level attribute's value is at depth 1; the elements of an M or L at depth `d`
//! are at depth `d + 1`. An M or L may sit at depth at most `NESTING_DEPTH_MAX` (32):
//! 32 containers nested in one another pass, 33 fail.

use std::cmp::Ordering;

use crate::error::ApiError;
use crate::keys::{self, KeyRef};
use crate::limits::{
    ATTRIBUTE_NAME_MAX_BYTES, ITEM_ENCODED_MAX_BYTES, ITEM_SIZE_MAX_BYTES,
    KEY_ATTRIBUTE_NAME_MAX_BYTES, KEY_ITEM_ENCODED_MAX_BYTES, NESTING_DEPTH_MAX,
    TABLE_NAME_MAX_LEN, TABLE_NAME_MIN_LEN,
};
use crate::number::{self, ArchivedNumber};
use crate::schema::KeySchema;
use crate::value::{ArchivedAttr, ArchivedItem, ArchivedValue};

/// Longest name echoed back in an error message.
const ECHO_MAX_CHARS: usize = 64;

/// What validation learned about an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemInfo<'a> {
    /// The item's size as DynamoDB counts it (module docs); ≤ `ITEM_SIZE_MAX_BYTES`.
    pub size_bytes: usize,
    /// The partition key value, checked against the schema.
    pub partition_key: KeyRef<'a>,
    /// The sort key value, when the table has one.
    pub sort_key: Option<KeyRef<'a>>,
}

/// The size DynamoDB counts for a value (rules in the module docs).
///
/// Recurses without a depth limit: call it on validated items (validation computes the
/// same number while it checks, see [`ItemInfo::size_bytes`]).
pub fn value_size(v: &ArchivedValue) -> usize {
    match v {
        ArchivedValue::S(s) => s.len(),
        ArchivedValue::N(n) => number::number_size(n.as_str()),
        ArchivedValue::B(b) => b.len(),
        ArchivedValue::Bool(_) | ArchivedValue::Null => 1,
        ArchivedValue::M(attrs) => {
            3 + attrs
                .iter()
                .map(|a| 1 + a.name.len() + value_size(&a.value))
                .sum::<usize>()
        }
        ArchivedValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        ArchivedValue::Ss(members) => members.iter().map(|s| s.len()).sum(),
        ArchivedValue::Ns(members) => members
            .iter()
            .map(|n| number::number_size(n.as_str()))
            .sum(),
        ArchivedValue::Bs(members) => members.iter().map(|b| b.len()).sum(),
    }
}

/// The size DynamoDB counts for an item: Σ (name bytes + value size).
pub fn item_size(item: &ArchivedItem) -> usize {
    item.attrs
        .iter()
        .map(|a| a.name.len() + value_size(&a.value))
        .sum()
}

/// Checks every DynamoDB rule and encoding invariant on an item received for `schema`'s
/// table, and returns its size. The rules: key attributes present, of the schema's types,
/// S/B keys not empty, partition key ≤ 2048 bytes and sort key ≤ 1024 bytes; attribute
/// names (top level and in maps) non-empty, ≤ 65535 bytes, sorted bytewise and unique;
/// nesting depth ≤ 32; numbers canonical, ≤ 38 digits and in range; sets non-empty,
/// sorted and unique (SS and BS bytewise, NS numerically); item size ≤ 400 KB.
/// Non-key S and B values may be empty.
pub fn validate_item<'a>(
    item: &'a ArchivedItem,
    schema: &KeySchema,
) -> Result<ItemInfo<'a>, ApiError> {
    // The walk first: key lookup is a binary search that relies on sorted names.
    let size_bytes = check_attrs(&item.attrs, 1)?;
    let (pk, sk) = keys::extract_key(schema, item)?;
    keys::check_key_values(schema, pk, sk)?;
    if size_bytes > ITEM_SIZE_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "Item size has exceeded the maximum allowed size ({size_bytes} bytes; the limit is \
             {ITEM_SIZE_MAX_BYTES})"
        )));
    }
    Ok(ItemInfo {
        size_bytes,
        partition_key: pk,
        sort_key: sk,
    })
}

/// Checks a key (GetItem, DeleteItem, BatchGet, ExclusiveStartKey): it must hold exactly
/// the schema's key attributes, with the schema's types, and obey the key value rules of
/// [`validate_item`]. Returns the partition and sort key values it found.
pub fn validate_key<'a>(
    key: &'a ArchivedItem,
    schema: &KeySchema,
) -> Result<(KeyRef<'a>, Option<KeyRef<'a>>), ApiError> {
    let mismatch = || ApiError::validation("The provided key element does not match the schema");
    let expected = 1 + usize::from(schema.sort.is_some());
    if key.attrs.len() != expected {
        return Err(mismatch());
    }
    let mut previous: Option<&str> = None;
    for attr in key.attrs.iter() {
        let name = attr.name.as_str();
        if previous.is_some_and(|p| p.as_bytes() >= name.as_bytes()) {
            return Err(mismatch());
        }
        previous = Some(name);
        let schema_attr = if name == schema.partition.name {
            &schema.partition
        } else {
            match &schema.sort {
                Some(sort) if name == sort.name => sort,
                _ => return Err(mismatch()),
            }
        };
        match KeyRef::from_archived(&attr.value) {
            Some(k) if k.scalar_type() == schema_attr.ty => {}
            _ => return Err(mismatch()),
        }
    }
    let (pk, sk) = keys::extract_key(schema, key)?;
    keys::check_key_values(schema, pk, sk)?;
    Ok((pk, sk))
}

/// A name shortened for an error message.
fn echo(name: &str) -> String {
    let mut shown: String = name.chars().take(ECHO_MAX_CHARS).collect();
    if shown.len() < name.len() {
        shown.push_str("...");
    }
    shown
}

/// Checks the entries of an item or map whose values sit at `depth`; returns
/// Σ (name bytes + value size).
fn check_attrs(attrs: &[ArchivedAttr], depth: usize) -> Result<usize, ApiError> {
    let mut size = 0;
    let mut previous: Option<&str> = None;
    for attr in attrs {
        let name = attr.name.as_str();
        if name.is_empty() {
            return Err(ApiError::validation(
                "One or more parameter values were invalid: An attribute name cannot be empty",
            ));
        }
        if name.len() > ATTRIBUTE_NAME_MAX_BYTES {
            return Err(ApiError::validation(format!(
                "One or more parameter values were invalid: Attribute name {} is {} bytes; the \
                 limit is {ATTRIBUTE_NAME_MAX_BYTES}",
                echo(name),
                name.len()
            )));
        }
        if let Some(prev) = previous
            && prev.as_bytes() >= name.as_bytes()
        {
            return Err(ApiError::validation(format!(
                "Attribute names must be sorted bytewise and unique in the item encoding, but {:?} \
                 follows {:?}; build items with Item::from_attrs",
                echo(name),
                echo(prev)
            )));
        }
        previous = Some(name);
        size += name.len() + check_value(&attr.value, depth)?;
    }
    Ok(size)
}

/// DynamoDB's error for an empty set; `kind` is "string", "number" or "binary".
pub(crate) fn empty_set(kind: &str) -> ApiError {
    ApiError::validation(format!(
        "One or more parameter values were invalid: An {kind} set  may not be empty"
    ))
}

/// DynamoDB's error for a set with two equal members; `type_name` is SS, NS or BS.
pub(crate) fn duplicates(type_name: &str) -> ApiError {
    ApiError::validation(format!(
        "One or more parameter values were invalid: Input collection contains duplicates \
         (type {type_name})"
    ))
}

/// DynamoDB's error for M/L nesting deeper than `NESTING_DEPTH_MAX`.
pub(crate) fn too_deep() -> ApiError {
    ApiError::validation("Nesting Levels have exceeded supported limits")
}

/// Checks that set members are strictly increasing under `cmp`.
fn check_set_order<T>(
    members: &[T],
    type_name: &str,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> Result<(), ApiError> {
    for pair in members.windows(2) {
        match cmp(&pair[0], &pair[1]) {
            Ordering::Less => {}
            Ordering::Equal => return Err(duplicates(type_name)),
            Ordering::Greater => {
                return Err(ApiError::validation(format!(
                    "Members of a {type_name} must be sorted (SS and BS bytewise, NS numerically) \
                     in the item encoding"
                )));
            }
        }
    }
    Ok(())
}

/// Checks one value at `depth` (module docs); returns its size.
fn check_value(v: &ArchivedValue, depth: usize) -> Result<usize, ApiError> {
    Ok(match v {
        ArchivedValue::S(s) => s.len(),
        ArchivedValue::N(n) => number::canonical_size(n.as_str())?,
        ArchivedValue::B(b) => b.len(),
        ArchivedValue::Bool(_) | ArchivedValue::Null => 1,
        ArchivedValue::M(attrs) => {
            check_depth(depth)?;
            3 + attrs.len() + check_attrs(attrs, depth + 1)?
        }
        ArchivedValue::L(values) => {
            check_depth(depth)?;
            let mut size = 3;
            for element in values.iter() {
                size += 1 + check_value(element, depth + 1)?;
            }
            size
        }
        ArchivedValue::Ss(members) => {
            if members.is_empty() {
                return Err(empty_set("string"));
            }
            check_set_order(members, "SS", |a, b| a.as_bytes().cmp(b.as_bytes()))?;
            members.iter().map(|s| s.len()).sum()
        }
        ArchivedValue::Ns(members) => {
            if members.is_empty() {
                return Err(empty_set("number"));
            }
            let mut size = 0;
            for n in members.iter() {
                size += number::canonical_size(n.as_str())?;
            }
            check_set_order(members, "NS", |a: &ArchivedNumber, b| {
                number::cmp_canonical(a.as_str(), b.as_str())
            })?;
            size
        }
        ArchivedValue::Bs(members) => {
            if members.is_empty() {
                return Err(empty_set("binary"));
            }
            check_set_order(members, "BS", |a, b| a.as_slice().cmp(b.as_slice()))?;
            members.iter().map(|b| b.len()).sum()
        }
    })
}

fn check_depth(depth: usize) -> Result<(), ApiError> {
    if depth > NESTING_DEPTH_MAX {
        return Err(too_deep());
    }
    Ok(())
}

/// DynamoDB's table-name rule: 3..=255 characters of `[a-zA-Z0-9_.-]`.
pub fn validate_table_name(name: &str) -> Result<(), ApiError> {
    let ok_len = (TABLE_NAME_MIN_LEN..=TABLE_NAME_MAX_LEN).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{}' at 'tableName' failed to satisfy constraint: Member must have length between {TABLE_NAME_MIN_LEN} and {TABLE_NAME_MAX_LEN} and match [a-zA-Z0-9_.-]+",
            echo(name)
        )))
    }
}

/// A key schema's rules: key attribute names of 1..=255 bytes, partition and sort key
/// names distinct.
pub fn validate_key_schema(schema: &KeySchema) -> Result<(), ApiError> {
    let names =
        std::iter::once(&schema.partition.name).chain(schema.sort.as_ref().map(|s| &s.name));
    for name in names {
        if name.is_empty() || name.len() > KEY_ATTRIBUTE_NAME_MAX_BYTES {
            return Err(ApiError::validation(format!(
                "Key attribute names must be 1 to {KEY_ATTRIBUTE_NAME_MAX_BYTES} bytes long, got {} bytes",
                name.len()
            )));
        }
    }
    if schema
        .sort
        .as_ref()
        .is_some_and(|s| s.name == schema.partition.name)
    {
        return Err(ApiError::validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    Ok(())
}

/// An encoded item is at most `ITEM_ENCODED_MAX_BYTES` long (tern's bound on the
/// encoding, beside DynamoDB's 400 KB on its size: see `limits`).
pub fn check_item_bytes(len: usize) -> Result<(), ApiError> {
    if len > ITEM_ENCODED_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "Item size has exceeded the maximum allowed size: its encoding is {len} bytes, the \
             most tern stores is {ITEM_ENCODED_MAX_BYTES} (an item of very many small \
             attributes encodes much larger than its DynamoDB size)"
        )));
    }
    Ok(())
}

/// An encoded key is at most `KEY_ITEM_ENCODED_MAX_BYTES` long: two attributes within
/// the key limits never need more, so a longer blob carries bytes no key has.
pub fn check_key_bytes(len: usize) -> Result<(), ApiError> {
    if len > KEY_ITEM_ENCODED_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "One or more parameter values were invalid: an encoded key of {len} bytes is \
             longer than any valid key ({KEY_ITEM_ENCODED_MAX_BYTES})"
        )));
    }
    Ok(())
}

/// A Query or Scan `Limit`: at least 1 when given; `None` is no limit.
pub fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(usize::MAX),
        Some(0) => Err(ApiError::validation(
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
        )),
        Some(l) => Ok(l as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::limits::{PARTITION_KEY_MAX_BYTES, SORT_KEY_MAX_BYTES};
    use crate::number::Number;
    use crate::schema::{KeyAttr, ScalarType};
    use crate::value::{Attr, Item, Value, access_item};

    fn schema_s() -> KeySchema {
        KeySchema {
            partition: KeyAttr {
                name: "id".into(),
                ty: ScalarType::S,
            },
            sort: None,
        }
    }

    fn schema_s_s() -> KeySchema {
        KeySchema {
            partition: KeyAttr {
                name: "id".into(),
                ty: ScalarType::S,
            },
            sort: Some(KeyAttr {
                name: "sk".into(),
                ty: ScalarType::S,
            }),
        }
    }

    fn item(attrs: Vec<(&str, Value)>) -> Item {
        Item::from_attrs(attrs.into_iter().map(|(n, v)| (n.to_owned(), v)))
    }

    /// The item's DynamoDB size, or why it is invalid.
    fn validate(item: &Item, schema: &KeySchema) -> Result<usize, ApiError> {
        let bytes = item.encode();
        validate_item(access_item(&bytes).unwrap(), schema).map(|info| info.size_bytes)
    }

    #[track_caller]
    fn ok(item: &Item, schema: &KeySchema) -> usize {
        match validate(item, schema) {
            Ok(size) => size,
            Err(e) => panic!("rejected: {e}"),
        }
    }

    #[track_caller]
    fn fails(item: &Item, schema: &KeySchema, message: &str) {
        match validate(item, schema) {
            Ok(size) => panic!("accepted ({size} bytes), expected {message:?}"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::ValidationException);
                assert!(
                    e.message.contains(message),
                    "{:?} lacks {message:?}",
                    e.message
                );
            }
        }
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        let n = |s: &str| Value::N(Number::parse(s).unwrap());
        let it = item(vec![
            ("id", Value::s("abc")),     // 2 + 3
            ("n", n("12.345")),          // 1 + (3 + 1)
            ("b", Value::b(vec![1, 2])), // 1 + 2
            ("t", Value::Bool(true)),    // 1 + 1
            ("z", Value::Null),          // 1 + 1
            (
                "m",
                Value::M(vec![Attr {
                    name: "k".into(),
                    value: Value::s("vv"),
                }]),
            ), // 1 + 3 + (1 + 1 + 2)
            ("l", Value::L(vec![Value::s("x"), Value::Null])), // 1 + 3 + (1 + 1) + (1 + 1)
            ("ss", Value::Ss(vec!["a".into(), "bc".into()])), // 2 + 3
            ("ns", Value::Ns(vec![Number::from(1), Number::from(100)])), // 2 + 2 + 2
            ("bs", Value::Bs(vec![vec![1], vec![2, 3]])), // 2 + 3
        ]);
        let expect = 5 + 5 + 3 + 2 + 2 + 8 + 8 + 5 + 6 + 5;
        assert_eq!(ok(&it, &schema_s()), expect);
        let bytes = it.encode();
        assert_eq!(item_size(access_item(&bytes).unwrap()), expect);
    }

    #[test]
    fn item_size_edge() {
        // "id" + "x" = 3, "d" = 1, so the B value gets the rest of 409600.
        let with_data = |n: usize| item(vec![("id", Value::s("x")), ("d", Value::b(vec![7; n]))]);
        assert_eq!(
            ok(&with_data(ITEM_SIZE_MAX_BYTES - 4), &schema_s()),
            ITEM_SIZE_MAX_BYTES
        );
        fails(
            &with_data(ITEM_SIZE_MAX_BYTES - 3),
            &schema_s(),
            "Item size has exceeded the maximum allowed size",
        );
    }

    #[test]
    fn key_size_edges() {
        let s = schema_s_s();
        let with = |pk: usize, sk: usize| {
            item(vec![
                ("id", Value::s("p".repeat(pk))),
                ("sk", Value::s("s".repeat(sk))),
            ])
        };
        ok(&with(PARTITION_KEY_MAX_BYTES, SORT_KEY_MAX_BYTES), &s);
        fails(
            &with(PARTITION_KEY_MAX_BYTES + 1, 1),
            &s,
            "Size of hashkey has exceeded",
        );
        fails(
            &with(1, SORT_KEY_MAX_BYTES + 1),
            &s,
            "Aggregated size of all range keys",
        );
        // Multi-byte UTF-8 counts bytes, not characters: 512 × "é" is 1024 bytes.
        let accents = |n: usize| item(vec![("id", Value::s("p")), ("sk", Value::s("é".repeat(n)))]);
        ok(&accents(SORT_KEY_MAX_BYTES / 2), &s);
        fails(
            &accents(SORT_KEY_MAX_BYTES / 2 + 1),
            &s,
            "Aggregated size of all range keys",
        );
        // A binary partition key.
        let b = KeySchema {
            partition: KeyAttr {
                name: "id".into(),
                ty: ScalarType::B,
            },
            sort: None,
        };
        ok(
            &item(vec![("id", Value::b(vec![0; PARTITION_KEY_MAX_BYTES]))]),
            &b,
        );
        fails(
            &item(vec![("id", Value::b(vec![0; PARTITION_KEY_MAX_BYTES + 1]))]),
            &b,
            "hashkey",
        );
    }

    fn nested(levels: usize, map: bool) -> Value {
        let mut v = Value::s("leaf");
        for _ in 0..levels {
            v = if map {
                Value::M(vec![Attr {
                    name: "m".into(),
                    value: v,
                }])
            } else {
                Value::L(vec![v])
            };
        }
        v
    }

    #[test]
    fn nesting_depth_edge() {
        for map in [false, true] {
            ok(
                &item(vec![
                    ("id", Value::s("a")),
                    ("deep", nested(NESTING_DEPTH_MAX, map)),
                ]),
                &schema_s(),
            );
            fails(
                &item(vec![
                    ("id", Value::s("a")),
                    ("deep", nested(NESTING_DEPTH_MAX + 1, map)),
                ]),
                &schema_s(),
                "Nesting Levels have exceeded supported limits",
            );
        }
        // An empty container counts as a level too.
        let mut v = Value::L(vec![]);
        for _ in 1..NESTING_DEPTH_MAX {
            v = Value::M(vec![Attr {
                name: "x".into(),
                value: v,
            }]);
        }
        ok(
            &item(vec![("id", Value::s("a")), ("deep", v.clone())]),
            &schema_s(),
        );
        fails(
            &item(vec![("id", Value::s("a")), ("deep", Value::L(vec![v]))]),
            &schema_s(),
            "Nesting Levels",
        );
    }

    #[test]
    fn numbers_must_be_canonical_and_in_range() {
        let n = |s: &str| Value::N(Number::parse(s).unwrap());
        ok(
            &item(vec![
                ("id", Value::s("a")),
                ("n", n("1E-130")),
                ("m", n("-9.9999999999999999999999999999999999999E+125")),
            ]),
            &schema_s(),
        );
        for raw in ["1.0", "01", "1e3", "+1", "-0", " 1", ""] {
            let it = item(vec![
                ("id", Value::s("a")),
                ("n", Value::N(Number::unchecked_for_tests(raw))),
            ]);
            fails(&it, &schema_s(), "canonical");
            let it = item(vec![
                ("id", Value::s("a")),
                ("n", Value::Ns(vec![Number::unchecked_for_tests(raw)])),
            ]);
            fails(&it, &schema_s(), "canonical");
        }
        let big = format!("1{}", "0".repeat(126));
        fails(
            &item(vec![
                ("id", Value::s("a")),
                ("n", Value::N(Number::unchecked_for_tests(&big))),
            ]),
            &schema_s(),
            "overflow",
        );
        let digits = "1".repeat(39);
        fails(
            &item(vec![
                ("id", Value::s("a")),
                ("n", Value::N(Number::unchecked_for_tests(&digits))),
            ]),
            &schema_s(),
            "38 significant digits",
        );
    }

    #[test]
    fn sets_must_be_non_empty_sorted_unique() {
        let with = |v: Value| item(vec![("id", Value::s("a")), ("set", v)]);
        fails(
            &with(Value::Ss(vec![])),
            &schema_s(),
            "An string set  may not be empty",
        );
        fails(
            &with(Value::Ns(vec![])),
            &schema_s(),
            "An number set  may not be empty",
        );
        fails(
            &with(Value::Bs(vec![])),
            &schema_s(),
            "An binary set  may not be empty",
        );
        fails(
            &with(Value::Ss(vec!["a".into(), "a".into()])),
            &schema_s(),
            "Input collection contains duplicates",
        );
        fails(
            &with(Value::Ns(vec![Number::from(1), Number::from(1)])),
            &schema_s(),
            "Input collection contains duplicates",
        );
        fails(
            &with(Value::Bs(vec![vec![1], vec![1]])),
            &schema_s(),
            "Input collection contains duplicates",
        );
        fails(
            &with(Value::Ss(vec!["b".into(), "a".into()])),
            &schema_s(),
            "sorted",
        );
        // NS order is numeric: "9" < "10" although "10" < "9" as text.
        ok(
            &with(Value::Ns(vec![Number::from(9), Number::from(10)])),
            &schema_s(),
        );
        fails(
            &with(Value::Ns(vec![Number::from(10), Number::from(9)])),
            &schema_s(),
            "sorted",
        );
        ok(&with(Value::Bs(vec![vec![], vec![0]])), &schema_s());
        // Sets nested in maps are checked too.
        fails(
            &with(Value::M(vec![Attr {
                name: "x".into(),
                value: Value::Ss(vec![]),
            }])),
            &schema_s(),
            "may not be empty",
        );
    }

    #[test]
    fn names_must_be_sorted_unique_non_empty() {
        let unsorted = Item {
            attrs: vec![
                Attr {
                    name: "id".into(),
                    value: Value::s("a"),
                },
                Attr {
                    name: "b".into(),
                    value: Value::Null,
                },
            ],
        };
        fails(&unsorted, &schema_s(), "sorted bytewise and unique");
        let duplicate = Item {
            attrs: vec![
                Attr {
                    name: "a".into(),
                    value: Value::Null,
                },
                Attr {
                    name: "a".into(),
                    value: Value::Null,
                },
                Attr {
                    name: "id".into(),
                    value: Value::s("a"),
                },
            ],
        };
        fails(&duplicate, &schema_s(), "sorted bytewise and unique");
        let nested_unsorted = item(vec![
            ("id", Value::s("a")),
            (
                "m",
                Value::M(vec![
                    Attr {
                        name: "y".into(),
                        value: Value::Null,
                    },
                    Attr {
                        name: "x".into(),
                        value: Value::Null,
                    },
                ]),
            ),
        ]);
        fails(&nested_unsorted, &schema_s(), "sorted bytewise and unique");
        fails(
            &item(vec![("id", Value::s("a")), ("", Value::Null)]),
            &schema_s(),
            "cannot be empty",
        );
        fails(
            &item(vec![
                ("id", Value::s("a")),
                (
                    "m",
                    Value::M(vec![Attr {
                        name: "".into(),
                        value: Value::Null,
                    }]),
                ),
            ]),
            &schema_s(),
            "cannot be empty",
        );
        let long = "n".repeat(ATTRIBUTE_NAME_MAX_BYTES + 1);
        fails(
            &item(vec![("id", Value::s("a")), (&long, Value::Null)]),
            &schema_s(),
            "limit is 65535",
        );
        ok(
            &item(vec![("id", Value::s("a")), (&long[1..], Value::Null)]),
            &schema_s(),
        );
    }

    #[test]
    fn key_rules() {
        fails(
            &item(vec![("x", Value::Null)]),
            &schema_s(),
            "Missing the key id in the item",
        );
        fails(
            &item(vec![("id", Value::n(1))]),
            &schema_s(),
            "Type mismatch for key id expected: S actual: N",
        );
        fails(
            &item(vec![("id", Value::s(""))]),
            &schema_s(),
            "cannot contain an empty string value. Key: id",
        );
        fails(
            &item(vec![("id", Value::s("a")), ("sk", Value::s(""))]),
            &schema_s_s(),
            "Key: sk",
        );
        // Non-key empty strings and binaries are allowed.
        ok(
            &item(vec![
                ("id", Value::s("a")),
                ("e", Value::s("")),
                ("f", Value::b(vec![])),
            ]),
            &schema_s(),
        );
    }

    fn check_key(key: &Item, schema: &KeySchema) -> Result<(), ApiError> {
        let bytes = key.encode();
        validate_key(access_item(&bytes).unwrap(), schema).map(|_| ())
    }

    #[test]
    fn keys_must_match_the_schema_exactly() {
        let s = schema_s_s();
        check_key(
            &item(vec![("id", Value::s("a")), ("sk", Value::s("b"))]),
            &s,
        )
        .unwrap();
        for bad in [
            item(vec![("id", Value::s("a"))]),
            item(vec![
                ("id", Value::s("a")),
                ("sk", Value::s("b")),
                ("x", Value::Null),
            ]),
            item(vec![("id", Value::s("a")), ("other", Value::s("b"))]),
            item(vec![("id", Value::n(1)), ("sk", Value::s("b"))]),
            item(vec![("id", Value::s("a")), ("sk", Value::Null)]),
            Item {
                attrs: vec![
                    Attr {
                        name: "sk".into(),
                        value: Value::s("b"),
                    },
                    Attr {
                        name: "id".into(),
                        value: Value::s("a"),
                    },
                ],
            },
            Item {
                attrs: vec![
                    Attr {
                        name: "id".into(),
                        value: Value::s("a"),
                    },
                    Attr {
                        name: "id".into(),
                        value: Value::s("a"),
                    },
                ],
            },
        ] {
            let e = check_key(&bad, &s).unwrap_err();
            assert_eq!(
                e.message, "The provided key element does not match the schema",
                "{bad:?}"
            );
        }
        let e =
            check_key(&item(vec![("id", Value::s("")), ("sk", Value::s("b"))]), &s).unwrap_err();
        assert!(e.message.contains("empty string value"), "{}", e.message);
        let e = check_key(
            &item(vec![
                ("id", Value::s("a")),
                ("sk", Value::s("b".repeat(1025))),
            ]),
            &s,
        )
        .unwrap_err();
        assert!(e.message.contains("range keys"), "{}", e.message);
        let n = KeySchema {
            partition: KeyAttr {
                name: "id".into(),
                ty: ScalarType::N,
            },
            sort: None,
        };
        let e = check_key(
            &item(vec![("id", Value::N(Number::unchecked_for_tests("1.0")))]),
            &n,
        )
        .unwrap_err();
        assert!(e.message.contains("canonical"), "{}", e.message);
    }

    #[test]
    fn table_names_follow_dynamodb_rules() {
        assert!(validate_table_name("abc").is_ok());
        assert!(validate_table_name("a-b_c.9").is_ok());
        assert!(validate_table_name("ab").is_err());
        assert!(validate_table_name(&"a".repeat(256)).is_err());
        assert!(validate_table_name("a b c").is_err());
        // A huge name is not echoed whole.
        let e = validate_table_name(&"a b".repeat(100_000)).unwrap_err();
        assert!(e.message.len() < 400, "{}", e.message.len());
    }

    #[test]
    fn the_longest_keys_encode_within_the_key_bound() {
        let long_name = |c: char| c.to_string().repeat(KEY_ATTRIBUTE_NAME_MAX_BYTES);
        let values = [
            (
                Value::S("p".repeat(PARTITION_KEY_MAX_BYTES)),
                Value::S("s".repeat(SORT_KEY_MAX_BYTES)),
            ),
            (
                Value::B(vec![7; PARTITION_KEY_MAX_BYTES]),
                Value::B(vec![8; SORT_KEY_MAX_BYTES]),
            ),
            (
                Value::N(Number::parse(&format!("-1.{}E-93", "1".repeat(37))).unwrap()),
                Value::N(Number::parse(&format!("-9.{}E+125", "9".repeat(37))).unwrap()),
            ),
        ];
        for (pk, sk) in values {
            let key = Item::from_attrs([(long_name('a'), pk), (long_name('b'), sk)]).encode();
            assert!(
                key.len() <= KEY_ITEM_ENCODED_MAX_BYTES,
                "{} > {KEY_ITEM_ENCODED_MAX_BYTES}",
                key.len()
            );
            check_key_bytes(key.len()).unwrap();
        }
        let e = check_key_bytes(KEY_ITEM_ENCODED_MAX_BYTES + 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
    }

    #[test]
    fn the_encoded_item_bound_admits_ordinary_items_and_refuses_pathological_ones() {
        // 400 KB of DynamoDB size in 40-byte attributes: well inside the encoded bound.
        let attrs = (0..10_000).map(|i| (format!("attr{i:06}"), Value::S("x".repeat(30))));
        let ordinary = Item::from_attrs(attrs).encode();
        check_item_bytes(ordinary.len()).unwrap();
        // A list of small numbers (3 DynamoDB bytes, 9 encoded, each): also inside.
        let numbers = Value::L(
            (0..130_000)
                .map(|i| Value::N(((i % 9) as i64).into()))
                .collect(),
        );
        let list = Item::from_attrs([("l".to_owned(), numbers)]).encode();
        check_item_bytes(list.len()).unwrap();
        // 250 k one-byte names with empty values: 250 KB to DynamoDB, 17 bytes each here.
        let tiny = (0..250_000).map(|i| (format!("{i}"), Value::S(String::new())));
        let pathological = Item::from_attrs(tiny).encode();
        let e = check_item_bytes(pathological.len()).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
        assert!(e.message.contains("encoding"), "{}", e.message);
    }
}
