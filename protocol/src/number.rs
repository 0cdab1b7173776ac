//! Exact decimal numbers (DynamoDB's N): parsing, the canonical text form, numeric order,
//! and the order-preserving byte encoding used in index keys.
//!
//! # Canonical text
//!
//! A [`Number`] holds the text DynamoDB returns for a number: plain decimal, never an
//! exponent, no leading zeros (except the single `0` of `0.5`), no trailing fractional
//! zeros, no trailing `.`, no `+`, and zero is `0` (never `-0`). So `"1.0"`, `"1E+0"` and
//! `"001"` all become `"1"`, and two numbers are numerically equal exactly when their
//! canonical texts are byte-equal. Items carry numbers in this form (the encoding
//! invariant checked by `validate`), which makes equality a byte comparison and keeps
//! every reader free of re-parsing.
//!
//! Range (DynamoDB's): at most 38 significant digits; a non-zero magnitude must lie in
//! `[1E-130, 9.9999999999999999999999999999999999999E+125]`. Nothing here ever goes
//! through `f64` except the explicitly lossy [`Number::to_f64`].
//!
//! # Ordered byte encoding ([`encode_ordered`]) — a persisted format
//!
//! Write a non-zero value as `±0.d1 d2 … dn × 10^E` with `d1 ≠ 0` and `dn ≠ 0` (the
//! significant digits, so `n ≤ 38`), and `E` in `-129..=126` for numbers in range.
//!
//! ```text
//! zero      02
//! positive  03  (E + 0x8000) as u16 BE           (d1+1) (d2+1) … (dn+1)     00
//! negative  01  (0xFFFF - (E + 0x8000)) as u16 BE (10-d1) (10-d2) … (10-dn)  FF
//! ```
//!
//! Digit bytes are `1..=10`, so the terminators `00` (positive) and `FF` (negative) sort
//! below and above every digit byte respectively. That makes a shorter digit string sort
//! first among positives (`0.12 < 0.123`) and last among negatives (`-0.12 > -0.123`), and
//! it makes every encoding self-delimiting (no encoding is a proper prefix of another), so
//! more key parts may follow one later. For canonical `a`, `b`:
//! `cmp_canonical(a, b) == encode(a).cmp(&encode(b))` (bytewise). Example: `12.5` →
//! `03 80 02 02 03 06 00`; `-12.5` → `01 7F FD 09 08 05 FF`; `0` → `02`.

use std::cmp::Ordering;
use std::fmt;

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::ApiError;
use crate::limits::{NUMBER_DIGITS_MAX, NUMBER_EXPONENT_MAX, NUMBER_EXPONENT_MIN};

/// A DynamoDB number in canonical text form (see the module docs).
///
/// Built by [`Number::parse`] (any accepted text) or `From<i64>`/`From<u64>`; an archived
/// number received from a client is checked with [`check_canonical`] before it is trusted.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number(String);

/// Longest canonical text: a negative number whose last significant digit is at 10^-130
/// (`-0.` then 130 fractional digits); the longest integer form (126 digits) is shorter.
pub const TEXT_MAX_BYTES: usize = 3 + NUMBER_EXPONENT_MIN.unsigned_abs() as usize;
/// Longest ordered encoding: tag, u16 exponent, one byte per significant digit, end byte.
pub const ORDERED_MAX_BYTES: usize = 1 + 2 + NUMBER_DIGITS_MAX + 1;
const _: () = assert!(TEXT_MAX_BYTES >= 2 + NUMBER_EXPONENT_MAX as usize);

/// Leading byte of the ordered encoding of a negative number.
pub const ORDERED_NEGATIVE: u8 = 0x01;
/// The whole ordered encoding of zero.
pub const ORDERED_ZERO: u8 = 0x02;
/// Leading byte of the ordered encoding of a positive number.
pub const ORDERED_POSITIVE: u8 = 0x03;
/// Terminator after the digits of a positive number (below every digit byte).
const ORDERED_POSITIVE_END: u8 = 0x00;
/// Terminator after the digits of a negative number (above every digit byte).
const ORDERED_NEGATIVE_END: u8 = 0xFF;
/// Bias added to the exponent so it encodes as an unsigned big-endian u16.
const ORDERED_EXPONENT_BIAS: i64 = 0x8000;

/// Longest input text echoed back in an error message.
const ECHO_MAX_CHARS: usize = 64;

/// A number's text, taken apart without allocating: `±0.(digits) × 10^exp10`.
///
/// `mantissa` is the integer digits followed by the fraction digits (two slices of the
/// input); the significant digits are `mantissa[first .. first + count]`.
#[derive(Debug, Clone, Copy)]
struct Sci<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    /// Index (into int ++ frac) of the first non-zero digit.
    first: usize,
    /// Number of significant digits; 0 means the value is zero.
    count: usize,
    /// `E` of `0.d1… × 10^E` (meaningless when `count == 0`).
    exp10: i64,
}

impl<'a> Sci<'a> {
    /// Splits `text` (`[+-]digits[.digits][(e|E)[+-]digits]`, at least one mantissa
    /// digit) into its parts, or `None` if it is not such a text.
    fn scan(text: &'a str) -> Option<Sci<'a>> {
        /// Consumes an optional sign at `b[*i]`; true when it is `-`.
        fn take_sign(b: &[u8], i: &mut usize) -> bool {
            match b.get(*i) {
                Some(b'-') => {
                    *i += 1;
                    true
                }
                Some(b'+') => {
                    *i += 1;
                    false
                }
                _ => false,
            }
        }

        let b = text.as_bytes();
        let mut i = 0;
        let negative = take_sign(b, &mut i);
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int = &b[int_start..i];
        let mut frac: &[u8] = &[];
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac = &b[frac_start..i];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exponent: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let exp_negative = take_sign(b, &mut i);
            let exp_start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                // Saturate far outside any valid exponent: the value is then out of range
                // (or zero) whatever the mantissa, and the arithmetic below cannot overflow.
                exponent = (exponent * 10 + i64::from(b[i] - b'0')).min(1 << 40);
                i += 1;
            }
            if i == exp_start {
                return None;
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if i != b.len() {
            return None;
        }
        let digit = |k: usize| {
            if k < int.len() {
                int[k]
            } else {
                frac[k - int.len()]
            }
        };
        let total = int.len() + frac.len();
        let Some(first) = (0..total).find(|&k| digit(k) != b'0') else {
            return Some(Sci {
                negative,
                int,
                frac,
                first: 0,
                count: 0,
                exp10: 0,
            });
        };
        let last = (first..total)
            .rev()
            .find(|&k| digit(k) != b'0')
            .unwrap_or(first);
        // Digit k has place value 10^(int.len() - 1 - k) × 10^exponent; d1 (at `first`)
        // has place 10^(E - 1) in 0.d1… × 10^E.
        let exp10 = int.len() as i64 - first as i64 + exponent;
        Some(Sci {
            negative,
            int,
            frac,
            first,
            count: last - first + 1,
            exp10,
        })
    }

    fn is_zero(&self) -> bool {
        self.count == 0
    }

    /// The significant digits as ASCII bytes.
    fn digits(&self) -> impl Iterator<Item = u8> + 'a {
        self.int
            .iter()
            .chain(self.frac.iter())
            .skip(self.first)
            .take(self.count)
            .copied()
    }

    /// Checks DynamoDB's digit and magnitude limits.
    fn check_range(&self) -> Result<(), ApiError> {
        check_range(self.count, self.exp10)
    }

    /// Writes the canonical text.
    fn write_canonical(&self, out: &mut String) {
        if self.is_zero() {
            out.push('0');
            return;
        }
        if self.negative {
            out.push('-');
        }
        let n = self.count as i64;
        let e = self.exp10;
        let push_zeros = |out: &mut String, k: i64| {
            for _ in 0..k {
                out.push('0');
            }
        };
        if e <= 0 {
            out.push_str("0.");
            push_zeros(out, -e);
            out.extend(self.digits().map(char::from));
        } else if e < n {
            for (k, d) in self.digits().enumerate() {
                if k as i64 == e {
                    out.push('.');
                }
                out.push(char::from(d));
            }
        } else {
            out.extend(self.digits().map(char::from));
            push_zeros(out, e - n);
        }
    }

    /// Numeric comparison.
    fn cmp(&self, other: &Sci<'_>) -> Ordering {
        let class = |s: &Sci<'_>| match (s.is_zero(), s.negative) {
            (true, _) => 1,
            (false, true) => 0,
            (false, false) => 2,
        };
        match class(self).cmp(&class(other)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        if self.is_zero() {
            return Ordering::Equal;
        }
        // The last significant digit is non-zero, so a digit string that is a proper
        // prefix of another is the smaller magnitude: plain lexicographic order works.
        let magnitude = self
            .exp10
            .cmp(&other.exp10)
            .then_with(|| self.digits().cmp(other.digits()));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Checks DynamoDB's digit and magnitude limits for `count` significant digits and
/// exponent `exp10` (of `0.d1… × 10^E`).
fn check_range(count: usize, exp10: i64) -> Result<(), ApiError> {
    if count == 0 {
        return Ok(());
    }
    if count > NUMBER_DIGITS_MAX {
        return Err(ApiError::validation(
            "Attempting to store more than 38 significant digits in a Number",
        ));
    }
    // In scientific notation d1.d2… × 10^x, x = E - 1.
    let x = exp10 - 1;
    if x > i64::from(NUMBER_EXPONENT_MAX) {
        return Err(ApiError::validation(
            "Number overflow. Attempting to store a number with magnitude larger than supported range",
        ));
    }
    if x < i64::from(NUMBER_EXPONENT_MIN) {
        return Err(ApiError::validation(
            "Number underflow. Attempting to store a number with magnitude smaller than supported range",
        ));
    }
    Ok(())
}

/// The error for text that is not a number at all.
fn not_numeric(text: &str) -> ApiError {
    let shown: String = text.chars().take(ECHO_MAX_CHARS).collect();
    let ellipsis = if text.chars().nth(ECHO_MAX_CHARS).is_some() {
        "..."
    } else {
        ""
    };
    ApiError::validation(format!(
        "The parameter cannot be converted to a numeric value: {shown}{ellipsis}"
    ))
}

impl Number {
    /// Parses a number as DynamoDB accepts it (`[+-]digits[.digits][(e|E)[+-]digits]`,
    /// digits may be empty on one side of the point) and returns it in canonical form.
    ///
    /// Rejects whitespace, `NaN`/`Infinity`, hex, more than 38 significant digits and
    /// magnitudes outside `[1E-130, 9.99…E+125]` with DynamoDB's messages.
    pub fn parse(text: &str) -> Result<Number, ApiError> {
        let sci = Sci::scan(text).ok_or_else(|| not_numeric(text))?;
        sci.check_range()?;
        let mut out = String::with_capacity(text.len().min(192) + 2);
        sci.write_canonical(&mut out);
        debug_assert!(Number::is_canonical(&out), "{text} -> {out}");
        Ok(Number(out))
    }

    /// Whether `text` is exactly what [`Number::parse`] returns for some input: canonical
    /// form and within DynamoDB's digit and magnitude limits. Does not allocate.
    pub fn is_canonical(text: &str) -> bool {
        check_canonical(text).is_ok()
    }

    /// Wraps text the caller knows is canonical (e.g. read from a validated item).
    pub(crate) fn from_canonical_trusted(text: &str) -> Number {
        debug_assert!(Number::is_canonical(text), "not canonical: {text}");
        Number(text.to_owned())
    }

    /// Wraps any text unchecked, to build invalid items in tests.
    #[cfg(test)]
    pub(crate) fn unchecked_for_tests(text: &str) -> Number {
        Number(text.to_owned())
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of significant digits (leading and trailing zeros removed); 0 for zero.
    pub fn significant_digits(&self) -> usize {
        significant_digits(&self.0)
    }

    /// The size DynamoDB counts for this number, in bytes (see [`number_size`]).
    pub fn size_bytes(&self) -> usize {
        number_size(&self.0)
    }

    /// The nearest `f64` (lossy; for display and statistics only, never for storage,
    /// comparison or arithmetic).
    pub fn to_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == "0"
    }
}

impl ArchivedNumber {
    /// The canonical text (as sent; check it with [`check_canonical`] before trusting it).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<i64> for Number {
    fn from(value: i64) -> Number {
        // Integer formatting is already canonical: no leading zeros, no `-0`, ≤ 19 digits.
        Number(value.to_string())
    }
}

impl From<u64> for Number {
    fn from(value: u64) -> Number {
        Number(value.to_string())
    }
}

impl From<i32> for Number {
    fn from(value: i32) -> Number {
        Number::from(i64::from(value))
    }
}

impl From<u32> for Number {
    fn from(value: u32) -> Number {
        Number::from(u64::from(value))
    }
}

impl std::str::FromStr for Number {
    type Err = ApiError;

    fn from_str(text: &str) -> Result<Number, ApiError> {
        Number::parse(text)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for Number {
    /// Numeric order (consistent with `Eq`, since canonical texts are unique).
    fn cmp(&self, other: &Number) -> Ordering {
        cmp_canonical(&self.0, &other.0)
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Checks that `text` is a canonical number within DynamoDB's limits, without allocating
/// on success. The error says what is wrong: not canonical (the client must send numbers
/// the way [`Number::parse`] writes them), too many digits, overflow or underflow.
pub fn check_canonical(text: &str) -> Result<(), ApiError> {
    canonical_size(text).map(|_| ())
}

/// [`check_canonical`] and [`number_size`] in one pass over the text: the size DynamoDB
/// counts for a valid canonical number, or why it is not one.
pub fn canonical_size(text: &str) -> Result<usize, ApiError> {
    let Some((count, exp10)) = canonical_digits(text) else {
        return Err(ApiError::validation(format!(
            "Number {:?} is not in canonical form: items must carry numbers as plain decimals \
             without exponent, '+', leading zeros or trailing fractional zeros \
             (e.g. \"12.5\", \"-0.001\", \"0\"); normalize numbers with Number::parse before encoding",
            text.chars().take(ECHO_MAX_CHARS).collect::<String>()
        )));
    };
    check_range(count, exp10)?;
    Ok(count.div_ceil(2) + 1)
}

/// For text of canonical shape (`-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?`, not `-0`): its
/// significant digit count and the `E` of `0.d1… × 10^E`; `None` for any other text.
/// One pass, the hot path of item validation.
fn canonical_digits(text: &str) -> Option<(usize, i64)> {
    let b = text.as_bytes();
    let (negative, rest) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let point = rest.iter().position(|&c| c == b'.');
    let (int, frac) = match point {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let is_zero_int = match int {
        [] => return None,
        [b'0'] => true,
        [first, tail @ ..] => {
            if !(b'1'..=b'9').contains(first) || !tail.iter().all(u8::is_ascii_digit) {
                return None;
            }
            false
        }
    };
    match frac {
        None if is_zero_int => (!negative).then_some((0, 0)),
        None => {
            let trailing_zeros = int.iter().rev().take_while(|&&c| c == b'0').count();
            Some((int.len() - trailing_zeros, int.len() as i64))
        }
        Some(frac) => {
            let (last, head) = frac.split_last()?;
            if !(b'1'..=b'9').contains(last) || !head.iter().all(u8::is_ascii_digit) {
                return None;
            }
            if is_zero_int {
                let leading_zeros = frac.iter().take_while(|&&c| c == b'0').count();
                Some((frac.len() - leading_zeros, -(leading_zeros as i64)))
            } else {
                Some((int.len() + frac.len(), int.len() as i64))
            }
        }
    }
}

/// Numeric comparison of two canonical numbers, without allocating or converting.
///
/// Meant for canonical input. Any other text still gets a total, consistent order (texts
/// that are not numbers sort after all numbers, bytewise among themselves; numerically
/// equal but differently written texts are ordered bytewise), so sorting never panics.
pub fn cmp_canonical(a: &str, b: &str) -> Ordering {
    match (Sci::scan(a), Sci::scan(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.as_bytes().cmp(b.as_bytes())),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Number of significant digits of a number's text (0 for zero or non-numbers).
pub fn significant_digits(text: &str) -> usize {
    Sci::scan(text).map_or(0, |s| s.count)
}

/// The size DynamoDB counts for a number: `ceil(significant_digits / 2) + 1` bytes
/// (so zero counts 1 byte and a 38-digit number 20).
pub fn number_size(text: &str) -> usize {
    significant_digits(text).div_ceil(2) + 1
}

/// Appends the order-preserving encoding of a canonical number to `out` (format in the
/// module docs). Text that is not a number at all (never the case for validated items)
/// encodes as zero, so this never panics.
pub fn encode_ordered(canonical: &str, out: &mut Vec<u8>) {
    let Some(sci) = Sci::scan(canonical) else {
        debug_assert!(false, "encode_ordered on a non-number: {canonical:?}");
        out.push(ORDERED_ZERO);
        return;
    };
    if sci.is_zero() {
        out.push(ORDERED_ZERO);
        return;
    }
    // Valid numbers have E in -129..=126; clamping only keeps invalid input panic-free.
    let biased = (sci.exp10 + ORDERED_EXPONENT_BIAS).clamp(0, 0xFFFF) as u16;
    if sci.negative {
        out.push(ORDERED_NEGATIVE);
        out.extend_from_slice(&(0xFFFF - biased).to_be_bytes());
        out.extend(sci.digits().map(|d| 10 - (d - b'0')));
        out.push(ORDERED_NEGATIVE_END);
    } else {
        out.push(ORDERED_POSITIVE);
        out.extend_from_slice(&biased.to_be_bytes());
        out.extend(sci.digits().map(|d| d - b'0' + 1));
        out.push(ORDERED_POSITIVE_END);
    }
}

/// Decodes one ordered encoding from the front of `bytes`, returning the canonical text
/// and the number of bytes it used, or `None` if the bytes are not such an encoding.
pub fn decode_ordered(bytes: &[u8]) -> Option<(String, usize)> {
    let (&tag, rest) = bytes.split_first()?;
    let (negative, end) = match tag {
        ORDERED_ZERO => return Some(("0".to_owned(), 1)),
        ORDERED_POSITIVE => (false, ORDERED_POSITIVE_END),
        ORDERED_NEGATIVE => (true, ORDERED_NEGATIVE_END),
        _ => return None,
    };
    let exp_bytes = rest.first_chunk::<2>()?;
    let raw = u16::from_be_bytes(*exp_bytes);
    let biased = if negative { 0xFFFF - raw } else { raw };
    let exp10 = i64::from(biased) - ORDERED_EXPONENT_BIAS;
    let body = &rest[2..];
    let len = body.iter().position(|&c| c == end)?;
    let mut digits = Vec::with_capacity(len);
    for &c in &body[..len] {
        if !(1..=10).contains(&c) {
            return None;
        }
        digits.push(if negative {
            b'0' + (10 - c)
        } else {
            b'0' + (c - 1)
        });
    }
    if digits.first() == Some(&b'0') || digits.last().is_none_or(|&d| d == b'0') {
        return None;
    }
    let sci = Sci {
        negative,
        int: &[],
        frac: &digits,
        first: 0,
        count: digits.len(),
        exp10,
    };
    let mut text = String::with_capacity(len + 8);
    sci.write_canonical(&mut text);
    Some((text, 1 + 2 + len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[track_caller]
    fn check(input: &str, expect: &str) {
        match Number::parse(input) {
            Ok(n) => assert_eq!(n.as_str(), expect, "parse({input:?})"),
            Err(e) => panic!("parse({input:?}) failed: {e}"),
        }
        assert!(
            Number::is_canonical(expect),
            "{expect:?} should be canonical"
        );
    }

    #[track_caller]
    fn check_err(input: &str, message_part: &str) {
        match Number::parse(input) {
            Ok(n) => panic!("parse({input:?}) accepted as {n}"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::ValidationException);
                assert!(
                    e.message.contains(message_part),
                    "parse({input:?}): {:?} lacks {message_part:?}",
                    e.message
                );
            }
        }
    }

    #[test]
    fn canonical_forms() {
        check("0", "0");
        check("-0", "0");
        check("+0.000", "0");
        check("0e999999999999999999999", "0");
        check("1", "1");
        check("1.0", "1");
        check("1.", "1");
        check(".5", "0.5");
        check("+7", "7");
        check("1E+2", "100");
        check("1e2", "100");
        check("1e-3", "0.001");
        check("-0.50", "-0.5");
        check("00012.3400", "12.34");
        check("12.34e1", "123.4");
        check("12.34e2", "1234");
        check("12.34e3", "12340");
        check("12.34e-2", "0.1234");
        check("1200", "1200");
        check("0.000120E3", "0.12");
        check(
            "-123456789012345678901234567890.12345678",
            "-123456789012345678901234567890.12345678",
        );
        check("1E-130", &format!("0.{}1", "0".repeat(129)));
        check("-1E-130", &format!("-0.{}1", "0".repeat(129)));
        check(
            "9.9999999999999999999999999999999999999E+125",
            &format!("{}{}", "9".repeat(38), "0".repeat(88)),
        );
        check(&"9".repeat(38), &"9".repeat(38));
        check(
            &format!("{}e10", "1".repeat(38)),
            &format!("{}{}", "1".repeat(38), "0".repeat(10)),
        );
        // Zeros do not count as significant digits.
        check(
            &format!("000{}000", "1".repeat(38)),
            &format!("{}000", "1".repeat(38)),
        );
        assert_eq!(Number::parse("1.0").unwrap(), Number::parse("1").unwrap());
        assert_eq!(Number::parse("1.0").unwrap().as_str().as_bytes(), b"1");
    }

    #[test]
    fn rejected_inputs() {
        for bad in [
            "",
            " 1",
            "1 ",
            "1 000",
            "-",
            "+",
            ".",
            "-.",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "1..2",
            "--1",
            "+-1",
            "NaN",
            "nan",
            "Infinity",
            "-Infinity",
            "inf",
            "0x10",
            "1_000",
            "1,5",
            "١",
        ] {
            check_err(bad, "cannot be converted to a numeric value");
        }
        check_err(&"1".repeat(39), "more than 38 significant digits");
        check_err(
            &format!("1.{}1", "0".repeat(37)),
            "more than 38 significant digits",
        );
        check_err("1E-131", "underflow");
        check_err("-1E-131", "underflow");
        check_err("0.99E-130", "underflow");
        check_err("1E+126", "overflow");
        check_err("-1E126", "overflow");
        check_err("1e99999999999999999999999", "overflow");
        check_err("1e-99999999999999999999999", "underflow");
        // The echoed text is bounded.
        let long = format!("x{}", "1".repeat(10_000));
        assert!(Number::parse(&long).unwrap_err().message.len() < 200);
    }

    #[test]
    fn canonical_shape_and_range() {
        for good in [
            "0",
            "1",
            "-1",
            "10",
            "0.5",
            "-0.05",
            "120.5",
            "99999999999999999999999999999999999999",
        ] {
            assert!(Number::is_canonical(good), "{good}");
        }
        for bad in [
            "", "-0", "+1", "01", "1.0", "1.", ".5", "0.50", "1e2", "-", "00", "-01", "1.5e0",
            " 1", "0.", "-0.0",
        ] {
            assert!(!Number::is_canonical(bad), "{bad}");
            let e = check_canonical(bad).unwrap_err();
            assert!(e.message.contains("canonical"), "{bad}: {}", e.message);
        }
        assert!(
            check_canonical(&"1".repeat(39))
                .unwrap_err()
                .message
                .contains("38")
        );
        assert!(
            check_canonical(&format!("1{}", "0".repeat(126)))
                .unwrap_err()
                .message
                .contains("overflow")
        );
        assert!(check_canonical(&format!("1{}", "0".repeat(125))).is_ok());
    }

    #[test]
    fn sizes_and_digits() {
        for (text, digits, size) in [
            ("0", 0, 1),
            ("1", 1, 2),
            ("12", 2, 2),
            ("123", 3, 3),
            ("1200", 2, 2),
            ("-0.001", 1, 2),
            ("12.34", 4, 3),
        ] {
            let n = Number::parse(text).unwrap();
            assert_eq!(n.significant_digits(), digits, "{text}");
            assert_eq!(n.size_bytes(), size, "{text}");
        }
        assert_eq!(number_size(&"9".repeat(38)), 20);
    }

    #[test]
    fn integers_convert_canonically() {
        for v in [0i64, 1, -1, 10, -100, i64::MAX, i64::MIN] {
            let n = Number::from(v);
            assert_eq!(n, Number::parse(&v.to_string()).unwrap());
        }
        assert_eq!(Number::from(u64::MAX).as_str(), "18446744073709551615");
        assert_eq!(Number::from(7u64).to_f64(), 7.0);
    }

    #[test]
    fn numeric_order() {
        let sorted = [
            "-1000", "-999.99", "-1", "-0.5", "-0.123", "-0.12", "-0.001", "0", "0.001", "0.12",
            "0.123", "0.5", "1", "1.5", "9", "10", "10.01", "100", "1000",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(cmp_canonical(a, b), i.cmp(&j), "{a} vs {b}");
                let (na, nb) = (Number::parse(a).unwrap(), Number::parse(b).unwrap());
                assert_eq!(na.cmp(&nb), i.cmp(&j));
                let (mut ea, mut eb) = (Vec::new(), Vec::new());
                encode_ordered(a, &mut ea);
                encode_ordered(b, &mut eb);
                assert_eq!(ea.cmp(&eb), i.cmp(&j), "{a} {ea:?} vs {b} {eb:?}");
            }
        }
    }

    #[test]
    fn ordered_encoding_bytes_are_pinned() {
        let enc = |s: &str| {
            let mut out = Vec::new();
            encode_ordered(s, &mut out);
            out
        };
        assert_eq!(enc("0"), [0x02]);
        assert_eq!(enc("12.5"), [0x03, 0x80, 0x02, 0x02, 0x03, 0x06, 0x00]);
        assert_eq!(enc("-12.5"), [0x01, 0x7F, 0xFD, 0x09, 0x08, 0x05, 0xFF]);
        assert_eq!(enc("0.001"), [0x03, 0x7F, 0xFE, 0x02, 0x00]);
        assert_eq!(enc("100"), [0x03, 0x80, 0x03, 0x02, 0x00]);
        for s in [
            "0",
            "12.5",
            "-12.5",
            "0.001",
            "100",
            "-0.0000123",
            "99999999999999999999999999999999999999",
        ] {
            let mut bytes = enc(s);
            let used = bytes.len();
            bytes.extend_from_slice(b"trailing");
            assert_eq!(decode_ordered(&bytes), Some((s.to_owned(), used)));
        }
        assert_eq!(decode_ordered(&[]), None);
        assert_eq!(decode_ordered(&[0x03, 0x80, 0x02]), None);
        assert_eq!(decode_ordered(&[0x03, 0x80, 0x02, 0x01, 0x00]), None);
        assert_eq!(decode_ordered(&[0x07]), None);
    }

    #[test]
    fn garbage_text_orders_totally_without_panicking() {
        assert_eq!(cmp_canonical("1", "abc"), Ordering::Less);
        assert_eq!(cmp_canonical("abc", "abd"), Ordering::Less);
        assert_eq!(cmp_canonical("1.0", "1"), Ordering::Greater);
        assert_eq!(significant_digits("abc"), 0);
    }

    #[test]
    fn the_longest_numbers_meet_the_published_maxima() {
        let tiny = format!("-1.{}E-93", "1".repeat(37));
        let n = Number::parse(&tiny).unwrap();
        assert_eq!(n.as_str().len(), TEXT_MAX_BYTES, "{}", n.as_str());
        let huge = format!("-9.{}E+125", "9".repeat(37));
        let n = Number::parse(&huge).unwrap();
        assert!(n.as_str().len() < TEXT_MAX_BYTES);
        let mut out = Vec::new();
        encode_ordered(n.as_str(), &mut out);
        assert_eq!(out.len(), ORDERED_MAX_BYTES);
    }
}
