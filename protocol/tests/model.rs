//! Property tests: numbers, items, JSON and key ranges checked against simple,
//! independently written reference models.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use proptest::prelude::*;
use tern_protocol::json::{
    archived_item_to_json, item_from_json, item_to_json, value_from_json, value_to_json,
};
use tern_protocol::keys::{self, KeyRef};
use tern_protocol::messages::{self, ArchivedSortKeyCondition, SortKeyCondition};
use tern_protocol::number::{self, cmp_canonical, decode_ordered, encode_ordered};
use tern_protocol::validate::{item_size, validate_item};
use tern_protocol::value::access_item;
use tern_protocol::{Attr, ErrorCode, Item, KeyAttr, KeySchema, Number, ScalarType, Value};

// ---------------------------------------------------------------------------------------
// Numbers

/// A decimal as the reference model sees it: `(-1)^negative × digits × 10^scale`, with
/// `digits` free of leading and trailing zeros (empty for zero).
#[derive(Debug, Clone)]
struct RefDecimal {
    negative: bool,
    digits: String,
    scale: i64,
}

impl RefDecimal {
    fn new(negative: bool, raw_digits: &str, scale: i64) -> RefDecimal {
        let trimmed = raw_digits.trim_start_matches('0');
        let digits = trimmed.trim_end_matches('0');
        let scale = scale + (trimmed.len() - digits.len()) as i64;
        RefDecimal {
            negative: negative && !digits.is_empty(),
            digits: digits.to_owned(),
            scale,
        }
    }

    /// Exponent of the leading digit in d.ddd × 10^x.
    fn sci_exponent(&self) -> i64 {
        self.digits.len() as i64 - 1 + self.scale
    }

    /// What DynamoDB says about it: Ok(canonical text) or the error kind.
    fn expected(&self) -> Result<String, &'static str> {
        if self.digits.is_empty() {
            return Ok("0".to_owned());
        }
        if self.digits.len() > 38 {
            return Err("38 significant digits");
        }
        if self.sci_exponent() > 125 {
            return Err("overflow");
        }
        if self.sci_exponent() < -130 {
            return Err("underflow");
        }
        let mut text = String::new();
        if self.negative {
            text.push('-');
        }
        let n = self.digits.len() as i64;
        if self.scale >= 0 {
            text.push_str(&self.digits);
            text.push_str(&"0".repeat(self.scale as usize));
        } else if n + self.scale > 0 {
            let point = (n + self.scale) as usize;
            text.push_str(&self.digits[..point]);
            text.push('.');
            text.push_str(&self.digits[point..]);
        } else {
            text.push_str("0.");
            text.push_str(&"0".repeat((-(n + self.scale)) as usize));
            text.push_str(&self.digits);
        }
        Ok(text)
    }

    /// The magnitude as fixed-point digits from 10^126 down to 10^-170 (in range only).
    fn fixed(&self) -> Vec<u8> {
        let mut places = vec![b'0'; 126 + 170 + 1];
        let n = self.digits.len() as i64;
        for (i, d) in self.digits.bytes().enumerate() {
            let place = n - 1 - i as i64 + self.scale;
            places[(126 - place) as usize] = d;
        }
        places
    }

    fn cmp(&self, other: &RefDecimal) -> Ordering {
        let sign = |d: &RefDecimal| match (d.digits.is_empty(), d.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        match sign(self).cmp(&sign(other)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let magnitude = self.fixed().cmp(&other.fixed());
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Number text in many spellings, with its reference value.
fn number_text() -> impl Strategy<Value = (String, RefDecimal)> {
    (
        prop_oneof![Just(""), Just("-"), Just("+")],
        "[0-9]{0,22}",
        proptest::option::of("[0-9]{0,22}"),
        proptest::option::of((
            prop_oneof![Just("e"), Just("E")],
            prop_oneof![Just(""), Just("+"), Just("-")],
            0i64..175,
        )),
    )
        .prop_filter("needs a digit", |(_, int, frac, _)| {
            !int.is_empty() || frac.as_ref().is_some_and(|f| !f.is_empty())
        })
        .prop_map(|(sign, int, frac, exp)| {
            let mut text = format!("{sign}{int}");
            let frac_digits = frac.clone().unwrap_or_default();
            if let Some(f) = &frac {
                text.push('.');
                text.push_str(f);
            }
            let mut exponent = 0;
            if let Some((e, exp_sign, value)) = exp {
                text.push_str(&format!("{e}{exp_sign}{value}"));
                exponent = if exp_sign == "-" { -value } else { value };
            }
            let digits = format!("{int}{frac_digits}");
            let decimal =
                RefDecimal::new(sign == "-", &digits, exponent - frac_digits.len() as i64);
            (text, decimal)
        })
}

/// Valid numbers spread over the whole range, with their reference values.
fn valid_number() -> impl Strategy<Value = (Number, RefDecimal)> {
    (
        any::<bool>(),
        "[1-9][0-9]{0,12}|[1-9]{1,3}|[1-9][0-9]{36}[1-9]",
        -170i64..126,
    )
        .prop_filter_map("in range", |(negative, digits, scale)| {
            let decimal = RefDecimal::new(negative, &digits, scale);
            let text = decimal.expected().ok()?;
            Some((Number::parse(&text).ok()?, decimal))
        })
}

fn encoded(canonical: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_ordered(canonical, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_matches_the_reference((text, decimal) in number_text()) {
        match (Number::parse(&text), decimal.expected()) {
            (Ok(n), Ok(expect)) => {
                prop_assert_eq!(n.as_str(), expect.as_str(), "{}", text);
                prop_assert!(Number::is_canonical(n.as_str()));
                prop_assert_eq!(Number::parse(n.as_str()).unwrap(), n.clone());
                prop_assert_eq!(n.significant_digits(), decimal.digits.len());
                let size = decimal.digits.len().div_ceil(2) + 1;
                prop_assert_eq!(number::canonical_size(n.as_str()).unwrap(), size);
                prop_assert_eq!(number::number_size(n.as_str()), size);
            }
            (Err(e), Err(kind)) => {
                prop_assert_eq!(e.code, ErrorCode::ValidationException);
                prop_assert!(e.message.contains(kind), "{}: {} lacks {}", text, e.message, kind);
            }
            (got, expect) => prop_assert!(false, "{}: got {:?}, expected {:?}", text, got, expect),
        }
    }

    #[test]
    fn canonical_means_parse_is_identity(text in "[-+]?[0-9]{0,4}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{1,2})?|[-+0-9.eE]{0,8}") {
        let identity = Number::parse(&text).map(|n| n.as_str() == text).unwrap_or(false);
        prop_assert_eq!(Number::is_canonical(&text), identity, "{}", text);
    }

    #[test]
    fn order_and_encoding_match_the_reference((a, ra) in valid_number(), (b, rb) in valid_number()) {
        let expect = ra.cmp(&rb);
        prop_assert_eq!(cmp_canonical(a.as_str(), b.as_str()), expect, "{} vs {}", a, b);
        prop_assert_eq!(a.cmp(&b), expect);
        prop_assert_eq!(a == b, expect == Ordering::Equal);
        let (ea, eb) = (encoded(a.as_str()), encoded(b.as_str()));
        prop_assert_eq!(ea.cmp(&eb), expect, "{} {:?} vs {} {:?}", a, ea, b, eb);
        // Self-delimiting: no encoding is a proper prefix of another.
        prop_assert!(ea == eb || !(ea.starts_with(&eb) || eb.starts_with(&ea)));
        prop_assert_eq!(decode_ordered(&ea), Some((a.as_str().to_owned(), ea.len())));
    }

    #[test]
    fn small_decimals_order_like_rationals(m1 in -10i64.pow(17)..10i64.pow(17), s1 in 0u32..18,
                                           m2 in -10i64.pow(17)..10i64.pow(17), s2 in 0u32..18) {
        // m / 10^s compared by cross multiplication (< 10^35, fits i128).
        let expect = (i128::from(m1) * 10i128.pow(s2)).cmp(&(i128::from(m2) * 10i128.pow(s1)));
        let a = Number::parse(&format!("{m1}e-{s1}")).unwrap();
        let b = Number::parse(&format!("{m2}.0E-{s2}")).unwrap();
        prop_assert_eq!(a.cmp(&b), expect, "{} vs {}", a, b);
        prop_assert_eq!(encoded(a.as_str()).cmp(&encoded(b.as_str())), expect);
    }

    #[test]
    fn integers_agree_with_parse(v in any::<i64>(), u in any::<u64>()) {
        prop_assert_eq!(Number::from(v), Number::parse(&v.to_string()).unwrap());
        prop_assert_eq!(Number::from(u), Number::parse(&u.to_string()).unwrap());
    }
}

#[test]
fn number_edges() {
    let ok = |s: &str| Number::parse(s).unwrap();
    let err = |s: &str| Number::parse(s).unwrap_err().message;
    ok("1E-130");
    ok("-1E-130");
    assert!(err("1E-131").contains("underflow"));
    ok("9.9999999999999999999999999999999999999E+125");
    assert!(err("1E+126").contains("overflow"));
    assert!(err("10E+125").contains("overflow"));
    ok(&"9".repeat(38));
    assert!(err(&"9".repeat(39)).contains("38 significant digits"));
    assert_eq!(number::number_size(ok(&"9".repeat(38)).as_str()), 20);
}

// ---------------------------------------------------------------------------------------
// Items

fn number_value() -> impl Strategy<Value = Number> {
    (any::<i64>(), 0u32..30).prop_map(|(m, s)| Number::parse(&format!("{m}e-{s}")).unwrap())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,8}".prop_map(Value::S),
        number_value().prop_map(Value::N),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::B),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        // BTreeSet orders String and Vec<u8> bytewise and Number numerically: the
        // encoding's set order.
        proptest::collection::btree_set(".{0,4}", 1..4)
            .prop_map(|s| Value::Ss(s.into_iter().collect())),
        proptest::collection::btree_set(number_value(), 1..4)
            .prop_map(|s| Value::Ns(s.into_iter().collect())),
        proptest::collection::btree_set(proptest::collection::vec(any::<u8>(), 0..4), 1..4)
            .prop_map(|s| Value::Bs(s.into_iter().collect())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::L),
            proptest::collection::btree_map(".{1,6}", inner, 0..6).prop_map(|m| Value::M(
                m.into_iter()
                    .map(|(name, value)| Attr { name, value })
                    .collect()
            )),
        ]
    })
}

fn item() -> impl Strategy<Value = Item> {
    (
        ".{1,12}",
        proptest::collection::btree_map("[a-z]{1,6}", value(), 0..8),
    )
        .prop_map(|(id, attrs)| {
            Item::from_attrs(attrs.into_iter().chain([("id".to_owned(), Value::S(id))]))
        })
}

fn schema_id() -> KeySchema {
    KeySchema {
        partition: KeyAttr {
            name: "id".into(),
            ty: ScalarType::S,
        },
        sort: None,
    }
}

/// DynamoDB's size rules, written again over owned values.
fn reference_size(v: &Value) -> usize {
    let number = |n: &Number| {
        let digits: String = n.as_str().chars().filter(char::is_ascii_digit).collect();
        digits.trim_matches('0').len().div_ceil(2) + 1
    };
    match v {
        Value::S(s) => s.len(),
        Value::N(n) => number(n),
        Value::B(b) => b.len(),
        Value::Bool(_) | Value::Null => 1,
        Value::M(attrs) => {
            3 + attrs
                .iter()
                .map(|a| 1 + a.name.len() + reference_size(&a.value))
                .sum::<usize>()
        }
        Value::L(values) => 3 + values.iter().map(|v| 1 + reference_size(v)).sum::<usize>(),
        Value::Ss(m) => m.iter().map(String::len).sum(),
        Value::Ns(m) => m.iter().map(number).sum(),
        Value::Bs(m) => m.iter().map(Vec::len).sum(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn items_encode_validate_and_decode(item in item()) {
        let bytes = item.encode();
        let archived = access_item(&bytes).unwrap();
        let info = validate_item(archived, &schema_id()).unwrap();
        let expect: usize = item.attrs.iter().map(|a| a.name.len() + reference_size(&a.value)).sum();
        prop_assert_eq!(info.size_bytes, expect);
        prop_assert_eq!(item_size(archived), expect);
        prop_assert_eq!(Item::decode(&bytes).unwrap(), item.clone());
        prop_assert_eq!(
            keys::key_item(&schema_id(), archived).unwrap(),
            Item::from_attrs([("id".to_owned(), item.get("id").unwrap().clone())])
        );
    }

    #[test]
    fn items_round_trip_through_json(item in item()) {
        let json = item_to_json(&item);
        prop_assert_eq!(item_from_json(&json).unwrap(), item.clone());
        let bytes = item.encode();
        prop_assert_eq!(archived_item_to_json(access_item(&bytes).unwrap()), json.clone());
        let text = serde_json::to_string(&json).unwrap();
        let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(item_from_json(&reparsed).unwrap(), item);
    }

    #[test]
    fn values_round_trip_through_json(v in value()) {
        prop_assert_eq!(value_from_json(&value_to_json(&v)).unwrap(), v);
    }
}

// ---------------------------------------------------------------------------------------
// Query ranges over index keys

/// A sort key and how the reference model compares it.
#[derive(Debug, Clone)]
enum Sk {
    S(String),
    B(Vec<u8>),
    /// m / 10^s, and its Number.
    N(i64, u32, Number),
}

impl Sk {
    fn key(&self) -> KeyRef<'_> {
        match self {
            Sk::S(s) => KeyRef::S(s),
            Sk::B(b) => KeyRef::B(b),
            Sk::N(_, _, n) => KeyRef::N(n.as_str()),
        }
    }

    fn value(&self) -> Value {
        self.key().to_value()
    }

    fn cmp(&self, other: &Sk) -> Ordering {
        match (self, other) {
            (Sk::S(a), Sk::S(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Sk::B(a), Sk::B(b)) => a.cmp(b),
            (Sk::N(m1, s1, _), Sk::N(m2, s2, _)) => {
                (i128::from(*m1) * 10i128.pow(*s2)).cmp(&(i128::from(*m2) * 10i128.pow(*s1)))
            }
            _ => unreachable!("one type per test"),
        }
    }

    fn begins_with(&self, prefix: &Sk) -> bool {
        match (self, prefix) {
            (Sk::S(a), Sk::S(b)) => a.as_bytes().starts_with(b.as_bytes()),
            (Sk::B(a), Sk::B(b)) => a.starts_with(b),
            _ => false,
        }
    }
}

fn sort_keys(ty: ScalarType) -> BoxedStrategy<Sk> {
    match ty {
        // Few symbols, so prefixes, equal keys and multi-byte UTF-8 are common.
        ScalarType::S => "[ab\u{e9}\u{ff}]{1,4}".prop_map(Sk::S).boxed(),
        ScalarType::B => proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xFE), Just(0xFF)],
            1..4,
        )
        .prop_map(Sk::B)
        .boxed(),
        ScalarType::N => (-300i64..300, 0u32..3)
            .prop_map(|(m, s)| Sk::N(m, s, Number::parse(&format!("{m}e-{s}")).unwrap()))
            .boxed(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Between,
    BeginsWith,
}

fn range_case(ty: ScalarType) -> impl Strategy<Value = (Vec<(u8, Sk)>, u8, Op, Sk, Sk, u64)> {
    (
        proptest::collection::vec((0u8..4, sort_keys(ty)), 0..60),
        0u8..4,
        prop_oneof![
            Just(Op::Eq),
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge),
            Just(Op::Between),
            Just(Op::BeginsWith)
        ],
        sort_keys(ty),
        sort_keys(ty),
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
    )
}

/// Partition keys that share one hash (the test passes the same hash for all), differ
/// in length or bytes, and are prefixes of one another: only the length field and the
/// bytes keep their ranges apart.
const PARTITION_KEYS: [&str; 4] = ["p", "pa", "p\u{0}", "q"];

fn check_ranges(
    ty: ScalarType,
    (entries, target, op, a, b, hash): (Vec<(u8, Sk)>, u8, Op, Sk, Sk, u64),
) -> Result<(), TestCaseError> {
    let sort = KeyAttr {
        name: "sk".into(),
        ty,
    };
    let mut index = BTreeMap::new();
    for (pk, sk) in &entries {
        let mut key = Vec::new();
        keys::encode_index_key(
            hash,
            KeyRef::S(PARTITION_KEYS[*pk as usize]),
            Some(sk.key()),
            &mut key,
        );
        index.insert(key, (*pk, sk.clone()));
    }
    let condition = match op {
        Op::Eq => SortKeyCondition::Eq(a.value()),
        Op::Lt => SortKeyCondition::Lt(a.value()),
        Op::Le => SortKeyCondition::Le(a.value()),
        Op::Gt => SortKeyCondition::Gt(a.value()),
        Op::Ge => SortKeyCondition::Ge(a.value()),
        Op::Between => SortKeyCondition::Between(a.value(), b.value()),
        Op::BeginsWith => SortKeyCondition::BeginsWith(a.value()),
    };
    let body = messages::encode(&condition);
    let archived = messages::access::<ArchivedSortKeyCondition>(&body).unwrap();
    let mut prefix = Vec::new();
    keys::partition_prefix(
        hash,
        KeyRef::S(PARTITION_KEYS[target as usize]),
        &mut prefix,
    );
    let result = keys::sort_key_range(&prefix, Some(&sort), Some(archived));

    let expect_error = match op {
        Op::Between => a.cmp(&b) == Ordering::Greater,
        Op::BeginsWith => ty == ScalarType::N,
        _ => false,
    };
    if expect_error {
        let e = result.unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::ValidationException);
        return Ok(());
    }
    let (lo, hi) = result.unwrap();
    let mut expected: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (key, (pk, sk)) in &index {
        let hit = match op {
            Op::Eq => sk.cmp(&a) == Ordering::Equal,
            Op::Lt => sk.cmp(&a) == Ordering::Less,
            Op::Le => sk.cmp(&a) != Ordering::Greater,
            Op::Gt => sk.cmp(&a) == Ordering::Greater,
            Op::Ge => sk.cmp(&a) != Ordering::Less,
            Op::Between => sk.cmp(&a) != Ordering::Less && sk.cmp(&b) != Ordering::Greater,
            Op::BeginsWith => sk.begins_with(&a),
        };
        if *pk == target && hit {
            expected.insert(key.clone());
        }
    }
    let got: BTreeSet<Vec<u8>> = index
        .range::<Vec<u8>, (Bound<Vec<u8>>, Bound<Vec<u8>>)>((lo, hi))
        .map(|(k, _)| k.clone())
        .collect();
    prop_assert_eq!(got, expected, "{:?} {:?} {:?}", op, a, b);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn s_ranges_match_brute_force(case in range_case(ScalarType::S)) {
        check_ranges(ScalarType::S, case)?;
    }

    #[test]
    fn b_ranges_match_brute_force(case in range_case(ScalarType::B)) {
        check_ranges(ScalarType::B, case)?;
    }

    #[test]
    fn n_ranges_match_brute_force(case in range_case(ScalarType::N)) {
        check_ranges(ScalarType::N, case)?;
    }

    #[test]
    fn whole_partition_range_is_exact(entries in proptest::collection::vec((0u8..4, sort_keys(ScalarType::B)), 0..60),
                                       target in 0u8..4, hash in prop_oneof![Just(u64::MAX), any::<u64>()]) {
        let mut index = BTreeMap::new();
        for (pk, sk) in &entries {
            let mut key = Vec::new();
            keys::encode_index_key(hash, KeyRef::S(PARTITION_KEYS[*pk as usize]), Some(sk.key()), &mut key);
            index.insert(key, *pk);
        }
        let mut prefix = Vec::new();
        keys::partition_prefix(hash, KeyRef::S(PARTITION_KEYS[target as usize]), &mut prefix);
        let sort = KeyAttr { name: "sk".into(), ty: ScalarType::B };
        let bounds = keys::sort_key_range(&prefix, Some(&sort), None).unwrap();
        let got = index.range::<Vec<u8>, _>(bounds).count();
        let expect = index.values().filter(|pk| **pk == target).count();
        prop_assert_eq!(got, expect);
    }
}
