//! DynamoDB JSON: the attribute value format of DynamoDB's HTTP API and of the CLI.
//!
//! ```text
//! {"S": "text"}   {"N": "12.5"}   {"B": "<base64>"}   {"BOOL": true}   {"NULL": true}
//! {"M": {"name": <value>, ...}}   {"L": [<value>, ...]}
//! {"SS": ["a", ...]}   {"NS": ["1", ...]}   {"BS": ["<base64>", ...]}
//! ```
//!
//! Reading produces values that already satisfy the item encoding invariants (see
//! `validate`): numbers canonical, map entries and items sorted by name, sets sorted (SS
//! and BS bytewise, NS numerically) after empty sets and duplicates are rejected (NS
//! duplicates by value: `"1"` and `"1.0"` are the same member). Writing emits canonical
//! number text and standard base64 (with padding). An archived item is written by walking
//! the archive, without decoding it first.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json};

use crate::error::ApiError;
use crate::limits::NESTING_DEPTH_MAX;
use crate::number::Number;
use crate::validate::{duplicates, empty_set, too_deep};
use crate::value::{ArchivedItem, ArchivedValue, Attr, Item, Value};

/// Reads one DynamoDB JSON attribute value.
pub fn value_from_json(json: &Json) -> Result<Value, ApiError> {
    value_at(json, 1)
}

/// Reads a DynamoDB JSON item: an object mapping attribute names to values.
pub fn item_from_json(json: &Json) -> Result<Item, ApiError> {
    let object = json.as_object().ok_or_else(|| {
        ApiError::validation("An item must be a JSON object mapping attribute names to values")
    })?;
    Ok(Item {
        attrs: attrs_at(object, 1)?,
    })
}

/// Reads map entries whose values sit at `depth`, sorted by name (bytewise).
fn attrs_at(object: &Map<String, Json>, depth: usize) -> Result<Vec<Attr>, ApiError> {
    let mut attrs = object
        .iter()
        .map(|(name, v)| {
            Ok(Attr {
                name: name.clone(),
                value: value_at(v, depth)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // JSON object keys are unique, so this is the strict order validation requires.
    attrs.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(attrs)
}

fn malformed(type_name: &str, expected: &str) -> ApiError {
    ApiError::validation(format!(
        "Invalid DynamoDB JSON: the value of {type_name} must be {expected}"
    ))
}

fn string_of<'a>(json: &'a Json, type_name: &str) -> Result<&'a str, ApiError> {
    json.as_str()
        .ok_or_else(|| malformed(type_name, "a string"))
}

fn array_of<'a>(json: &'a Json, type_name: &str) -> Result<&'a Vec<Json>, ApiError> {
    json.as_array()
        .ok_or_else(|| malformed(type_name, "an array"))
}

fn base64_of(json: &Json, type_name: &str) -> Result<Vec<u8>, ApiError> {
    BASE64.decode(string_of(json, type_name)?).map_err(|e| {
        ApiError::validation(format!(
            "Invalid DynamoDB JSON: {type_name} is not base64: {e}"
        ))
    })
}

/// Sorts set members and rejects an empty set or equal members.
fn into_set<T>(
    mut members: Vec<T>,
    kind: &str,
    type_name: &str,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Result<Vec<T>, ApiError> {
    if members.is_empty() {
        return Err(empty_set(kind));
    }
    members.sort_unstable_by(&cmp);
    if members.windows(2).any(|w| cmp(&w[0], &w[1]).is_eq()) {
        return Err(duplicates(type_name));
    }
    Ok(members)
}

/// Reads a value that sits at `depth` (a top-level attribute value is at depth 1).
fn value_at(json: &Json, depth: usize) -> Result<Value, ApiError> {
    let object = json.as_object().ok_or_else(|| {
        ApiError::validation(
            "Supplied AttributeValue must be a JSON object with exactly one of the supported \
             datatypes (S, N, B, BOOL, NULL, M, L, SS, NS, BS)",
        )
    })?;
    let mut entries = object.iter();
    let (type_name, payload) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => {
            return Err(ApiError::validation(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one \
                 of the supported datatypes",
            ));
        }
    };
    Ok(match type_name.as_str() {
        "S" => Value::S(string_of(payload, "S")?.to_owned()),
        "N" => Value::N(Number::parse(string_of(payload, "N")?)?),
        "B" => Value::B(base64_of(payload, "B")?),
        "BOOL" => Value::Bool(
            payload
                .as_bool()
                .ok_or_else(|| malformed("BOOL", "true or false"))?,
        ),
        "NULL" => match payload.as_bool() {
            Some(true) => Value::Null,
            _ => {
                return Err(ApiError::validation(
                    "One or more parameter values were invalid: Null attribute value types must have \
                     the value of true",
                ));
            }
        },
        "M" => {
            if depth > NESTING_DEPTH_MAX {
                return Err(too_deep());
            }
            let object = payload
                .as_object()
                .ok_or_else(|| malformed("M", "an object"))?;
            Value::M(attrs_at(object, depth + 1)?)
        }
        "L" => {
            if depth > NESTING_DEPTH_MAX {
                return Err(too_deep());
            }
            Value::L(
                array_of(payload, "L")?
                    .iter()
                    .map(|v| value_at(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        "SS" => {
            let members = array_of(payload, "SS")?
                .iter()
                .map(|m| string_of(m, "an SS member").map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Ss(into_set(members, "string", "SS", |a, b| {
                a.as_bytes().cmp(b.as_bytes())
            })?)
        }
        "NS" => {
            let members = array_of(payload, "NS")?
                .iter()
                .map(|m| Number::parse(string_of(m, "an NS member")?))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Ns(into_set(members, "number", "NS", Number::cmp)?)
        }
        "BS" => {
            let members = array_of(payload, "BS")?
                .iter()
                .map(|m| base64_of(m, "a BS member"))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Bs(into_set(members, "binary", "BS", |a, b| a.cmp(b))?)
        }
        other => {
            return Err(ApiError::validation(format!(
                "Supplied AttributeValue has an unknown datatype {other:?}; use one of S, N, B, \
                 BOOL, NULL, M, L, SS, NS, BS"
            )));
        }
    })
}

fn tagged(type_name: &str, payload: Json) -> Json {
    let mut object = Map::with_capacity(1);
    object.insert(type_name.to_owned(), payload);
    Json::Object(object)
}

/// Writes one attribute value as DynamoDB JSON.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::S(s) => tagged("S", Json::String(s.clone())),
        Value::N(n) => tagged("N", Json::String(n.as_str().to_owned())),
        Value::B(b) => tagged("B", Json::String(BASE64.encode(b))),
        Value::Bool(b) => tagged("BOOL", Json::Bool(*b)),
        Value::Null => tagged("NULL", Json::Bool(true)),
        Value::M(attrs) => tagged(
            "M",
            Json::Object(
                attrs
                    .iter()
                    .map(|a| (a.name.clone(), value_to_json(&a.value)))
                    .collect(),
            ),
        ),
        Value::L(values) => tagged("L", Json::Array(values.iter().map(value_to_json).collect())),
        Value::Ss(members) => tagged(
            "SS",
            Json::Array(members.iter().map(|s| Json::String(s.clone())).collect()),
        ),
        Value::Ns(members) => tagged(
            "NS",
            Json::Array(
                members
                    .iter()
                    .map(|n| Json::String(n.as_str().to_owned()))
                    .collect(),
            ),
        ),
        Value::Bs(members) => tagged(
            "BS",
            Json::Array(
                members
                    .iter()
                    .map(|b| Json::String(BASE64.encode(b)))
                    .collect(),
            ),
        ),
    }
}

/// Writes an item as a DynamoDB JSON object.
pub fn item_to_json(item: &Item) -> Json {
    Json::Object(
        item.attrs
            .iter()
            .map(|a| (a.name.clone(), value_to_json(&a.value)))
            .collect(),
    )
}

/// Writes an archived value as DynamoDB JSON, reading the archive in place.
pub fn archived_value_to_json(value: &ArchivedValue) -> Json {
    match value {
        ArchivedValue::S(s) => tagged("S", Json::String(s.as_str().to_owned())),
        ArchivedValue::N(n) => tagged("N", Json::String(n.as_str().to_owned())),
        ArchivedValue::B(b) => tagged("B", Json::String(BASE64.encode(b.as_slice()))),
        ArchivedValue::Bool(b) => tagged("BOOL", Json::Bool(*b)),
        ArchivedValue::Null => tagged("NULL", Json::Bool(true)),
        ArchivedValue::M(attrs) => tagged(
            "M",
            Json::Object(
                attrs
                    .iter()
                    .map(|a| (a.name.as_str().to_owned(), archived_value_to_json(&a.value)))
                    .collect(),
            ),
        ),
        ArchivedValue::L(values) => tagged(
            "L",
            Json::Array(values.iter().map(archived_value_to_json).collect()),
        ),
        ArchivedValue::Ss(members) => tagged(
            "SS",
            Json::Array(
                members
                    .iter()
                    .map(|s| Json::String(s.as_str().to_owned()))
                    .collect(),
            ),
        ),
        ArchivedValue::Ns(members) => tagged(
            "NS",
            Json::Array(
                members
                    .iter()
                    .map(|n| Json::String(n.as_str().to_owned()))
                    .collect(),
            ),
        ),
        ArchivedValue::Bs(members) => tagged(
            "BS",
            Json::Array(
                members
                    .iter()
                    .map(|b| Json::String(BASE64.encode(b.as_slice())))
                    .collect(),
            ),
        ),
    }
}

/// Writes an archived item as a DynamoDB JSON object, reading the archive in place.
pub fn archived_item_to_json(item: &ArchivedItem) -> Json {
    Json::Object(
        item.attrs
            .iter()
            .map(|a| (a.name.as_str().to_owned(), archived_value_to_json(&a.value)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::value::access_item;
    use serde_json::json;

    #[track_caller]
    fn check(input: Json, expect: Value) {
        assert_eq!(value_from_json(&input).unwrap(), expect, "{input}");
    }

    #[track_caller]
    fn check_err(input: Json, message: &str) {
        let e = value_from_json(&input).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
        assert!(
            e.message.contains(message),
            "{input}: {:?} lacks {message:?}",
            e.message
        );
    }

    #[test]
    fn reads_every_type() {
        check(json!({"S": "hi"}), Value::s("hi"));
        check(json!({"S": ""}), Value::s(""));
        check(
            json!({"N": "1.50"}),
            Value::n(Number::parse("1.5").unwrap()),
        );
        check(json!({"N": "-1E2"}), Value::n(-100));
        check(json!({"B": "AAEC/w=="}), Value::b(vec![0, 1, 2, 0xFF]));
        check(json!({"BOOL": false}), Value::Bool(false));
        check(json!({"NULL": true}), Value::Null);
        check(
            json!({"M": {"b": {"N": "2"}, "a": {"S": "x"}}}),
            Value::M(vec![
                Attr {
                    name: "a".into(),
                    value: Value::s("x"),
                },
                Attr {
                    name: "b".into(),
                    value: Value::n(2),
                },
            ]),
        );
        check(
            json!({"L": [{"NULL": true}, {"S": "x"}]}),
            Value::L(vec![Value::Null, Value::s("x")]),
        );
        check(
            json!({"SS": ["b", "a", "B"]}),
            Value::Ss(vec!["B".into(), "a".into(), "b".into()]),
        );
        check(
            json!({"NS": ["10", "9", "-1.5"]}),
            Value::Ns(vec![
                Number::parse("-1.5").unwrap(),
                Number::from(9),
                Number::from(10),
            ]),
        );
        check(
            json!({"BS": ["AQ==", "AA=="]}),
            Value::Bs(vec![vec![0], vec![1]]),
        );
    }

    #[test]
    fn rejects_malformed_values() {
        check_err(json!("x"), "must be a JSON object");
        check_err(json!({}), "is empty");
        check_err(json!({"S": "a", "N": "1"}), "more than one datatypes");
        check_err(json!({"X": "a"}), "unknown datatype");
        check_err(json!({"S": 1}), "S must be a string");
        check_err(json!({"N": 1}), "N must be a string");
        check_err(
            json!({"N": "abc"}),
            "cannot be converted to a numeric value",
        );
        check_err(json!({"N": "1e200"}), "overflow");
        check_err(json!({"B": "!!"}), "not base64");
        check_err(json!({"BOOL": "true"}), "BOOL must be true or false");
        check_err(json!({"NULL": false}), "must have the value of true");
        check_err(json!({"M": []}), "M must be an object");
        check_err(json!({"L": {}}), "L must be an array");
        check_err(json!({"SS": []}), "An string set  may not be empty");
        check_err(json!({"NS": []}), "An number set  may not be empty");
        check_err(json!({"BS": []}), "An binary set  may not be empty");
        check_err(
            json!({"SS": ["a", "a"]}),
            "Input collection contains duplicates",
        );
        check_err(
            json!({"NS": ["1", "1.0"]}),
            "Input collection contains duplicates",
        );
        check_err(
            json!({"BS": ["AA==", "AA=="]}),
            "Input collection contains duplicates",
        );
        check_err(json!({"SS": [1]}), "SS member must be a string");
        check_err(json!({"M": {"a": {"Q": 1}}}), "unknown datatype");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut ok = json!({"S": "leaf"});
        for _ in 0..NESTING_DEPTH_MAX {
            ok = json!({"L": [ok]});
        }
        assert!(value_from_json(&ok).is_ok());
        check_err(
            json!({"M": {"x": ok}}),
            "Nesting Levels have exceeded supported limits",
        );
    }

    #[test]
    fn items_round_trip_through_json_and_archives() {
        let json = json!({
            "id": {"S": "user#1"},
            "age": {"N": "42.0"},
            "tags": {"SS": ["z", "a"]},
            "blob": {"B": "AAEC"},
            "nested": {"M": {"l": {"L": [{"N": "1e1"}, {"BOOL": true}]}}}
        });
        let item = item_from_json(&json).unwrap();
        let names: Vec<_> = item.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["age", "blob", "id", "nested", "tags"]);
        assert_eq!(item.get("age"), Some(&Value::n(42)));
        let written = item_to_json(&item);
        assert_eq!(written["age"], json!({"N": "42"}));
        assert_eq!(
            written["nested"],
            json!({"M": {"l": {"L": [{"N": "10"}, {"BOOL": true}]}}})
        );
        assert_eq!(written["tags"], json!({"SS": ["a", "z"]}));
        assert_eq!(item_from_json(&written).unwrap(), item);
        let bytes = item.encode();
        assert_eq!(archived_item_to_json(access_item(&bytes).unwrap()), written);
        assert!(item_from_json(&json!([1])).is_err());
    }
}
