//! Exact money: a signed count of nano-units (10⁻⁹) of the billing currency.
//!
//! Never floating point. The text form is a plain decimal with up to nine
//! decimals (`"0.000123450"`); that is also how money travels in serde formats
//! (a string, because JSON and TOML numbers are floats to many readers).
//!
//! `i64` nanos cover ±9.2 billion currency units, far beyond any single bill;
//! every operation is checked and reports [`MoneyError::Overflow`] rather than
//! wrapping.

use std::fmt;
use std::str::FromStr;

/// Nano-units per whole currency unit.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// Decimals kept: the text form accepts at most this many significant ones.
pub const DECIMALS: usize = 9;

/// An exact amount in nano-units of a currency (the currency is kept beside it).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("an amount is required, got an empty string")]
    Empty,
    #[error("`{0}` is negative; amounts must be zero or more")]
    Negative(String),
    #[error("`{0}` is not a plain decimal number (write it like `0.05` or `12`)")]
    NotANumber(String),
    #[error("`{0}` has more than {DECIMALS} significant decimals; amounts are kept in nano-units")]
    TooManyDecimals(String),
    #[error("amount out of range (more than ±9.2 billion units)")]
    Overflow,
}

impl Money {
    pub const ZERO: Money = Money(0);
    pub const MAX: Money = Money(i64::MAX);

    pub const fn from_nanos(nanos: i64) -> Money {
        Money(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.0.checked_add(other.0).map(Money).ok_or(MoneyError::Overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.0.checked_sub(other.0).map(Money).ok_or(MoneyError::Overflow)
    }

    /// Sums exactly; `Overflow` if the total leaves the `i64` range.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, MoneyError> {
        items.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }

    /// Parses a plain non-negative decimal: digits, optionally `.` and more
    /// digits. Decimals beyond the ninth are accepted only when they are zeros
    /// (so the value stays exact); anything else is an error, never rounded.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        parse_decimal(text, Excess::Reject)
    }

    /// Like [`Money::parse`], but decimals beyond the ninth are rounded half-up
    /// instead of refused. For amounts reported by others (a provider's raw
    /// cost), where refusing would lose the whole value.
    pub fn parse_rounded(text: &str) -> Result<Money, MoneyError> {
        parse_decimal(text, Excess::RoundHalfUp)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Excess {
    Reject,
    RoundHalfUp,
}

fn parse_decimal(text: &str, excess: Excess) -> Result<Money, MoneyError> {
    if text.is_empty() {
        return Err(MoneyError::Empty);
    }
    let not_a_number = || MoneyError::NotANumber(text.to_owned());
    if let Some(rest) = text.strip_prefix('-') {
        // Say "negative" only when the rest is a number: `-abc` is just not a number.
        return Err(match parse_unsigned(text, rest, excess) {
            Err(MoneyError::Empty | MoneyError::NotANumber(_)) => not_a_number(),
            Ok(_) | Err(_) => MoneyError::Negative(text.to_owned()),
        });
    }
    parse_unsigned(text, text, excess)
}

/// Parses `digits` (the whole of `text`, or `text` after a sign).
fn parse_unsigned(text: &str, digits: &str, excess: Excess) -> Result<Money, MoneyError> {
    let not_a_number = || MoneyError::NotANumber(text.to_owned());
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(not_a_number());
    }
    let frac = frac.unwrap_or("");
    let (kept, extra) = frac.split_at(frac.len().min(DECIMALS));

    let mut nanos: i64 = 0;
    for b in whole.bytes() {
        nanos = nanos.checked_mul(10).and_then(|n| n.checked_add(i64::from(b - b'0'))).ok_or(MoneyError::Overflow)?;
    }
    nanos = nanos.checked_mul(NANOS_PER_UNIT).ok_or(MoneyError::Overflow)?;
    let mut frac_nanos: i64 = 0;
    for b in kept.bytes() {
        frac_nanos = frac_nanos * 10 + i64::from(b - b'0');
    }
    for _ in kept.len()..DECIMALS {
        frac_nanos *= 10;
    }
    nanos = nanos.checked_add(frac_nanos).ok_or(MoneyError::Overflow)?;

    if extra.bytes().any(|b| b != b'0') {
        match excess {
            Excess::Reject => return Err(MoneyError::TooManyDecimals(text.to_owned())),
            Excess::RoundHalfUp => {
                // Half-up on the first dropped digit: `...5xxx` rounds up.
                if extra.as_bytes()[0] >= b'5' {
                    nanos = nanos.checked_add(1).ok_or(MoneyError::Overflow)?;
                }
            }
        }
    }
    Ok(Money(nanos))
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Money, MoneyError> {
        Money::parse(s)
    }
}

impl fmt::Display for Money {
    /// Always nine decimals: `0.000123450`, `-1.500000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = NANOS_PER_UNIT.unsigned_abs();
        write!(f, "{sign}{}.{:09}", abs / unit, abs % unit)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

/// In the OpenAPI document: the decimal text money travels as.
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?[0-9]+(\.[0-9]{1,9})?$"))
            .description(Some("An exact amount: decimal text with up to 9 decimals (e.g. `0.000123450`)."))
            .examples(["0.40"])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount as a decimal string, like \"0.05\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                Err(E::custom(format!(
                    "amount {v} is a floating-point number; write it as a string (\"{v}\") so it stays exact"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                Err(E::custom(format!("amount {v} is a bare number; write it as a string (\"{v}\")")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                Err(E::custom(format!("amount {v} is a bare number; write it as a string (\"{v}\")")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `n / d` rounded half-up (half away from zero for negative `n`); `d > 0`.
pub(crate) fn div_round_half_up(n: i128, d: i128) -> i128 {
    let half = d / 2;
    if n >= 0 { (n + half) / d } else { -((-n + half) / d) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nine_decimals() {
        assert_eq!(Money::from_nanos(123_450).to_string(), "0.000123450");
        assert_eq!(Money::ZERO.to_string(), "0.000000000");
        assert_eq!(Money::from_nanos(1_500_000_000).to_string(), "1.500000000");
        assert_eq!(Money::from_nanos(-1).to_string(), "-0.000000001");
        assert_eq!(Money::MAX.to_string(), "9223372036.854775807");
        assert_eq!(Money::from_nanos(i64::MIN).to_string(), "-9223372036.854775808");
    }

    #[test]
    fn parses_plain_decimals() {
        for (text, nanos) in [
            ("0", 0),
            ("1", 1_000_000_000),
            ("0.05", 50_000_000),
            ("0.000000001", 1),
            ("12.5", 12_500_000_000),
            ("007.10", 7_100_000_000),
            ("0.1000000000000", 100_000_000),
            ("9223372036.854775807", i64::MAX),
        ] {
            assert_eq!(Money::parse(text), Ok(Money::from_nanos(nanos)), "{text}");
        }
    }

    #[test]
    fn round_trips_through_text() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let m = Money::from_nanos((seed >> 1) as i64);
            assert_eq!(Money::parse(&m.to_string()), Ok(m));
        }
        for m in [Money::ZERO, Money::MAX, Money::from_nanos(1), Money::from_nanos(999_999_999)] {
            assert_eq!(Money::parse(&m.to_string()), Ok(m));
        }
    }

    #[test]
    fn rejects_bad_text_clearly() {
        assert_eq!(Money::parse(""), Err(MoneyError::Empty));
        assert_eq!(Money::parse("-1"), Err(MoneyError::Negative("-1".into())));
        assert_eq!(Money::parse("-0.5"), Err(MoneyError::Negative("-0.5".into())));
        for bad in ["abc", "1.", ".5", "1e-3", " 1", "1 ", "+1", "1,5", "0x10", "NaN", "inf", "1.2.3", "--1", "-abc"] {
            assert_eq!(Money::parse(bad), Err(MoneyError::NotANumber(bad.into())), "{bad}");
        }
        assert_eq!(Money::parse("0.0000000001"), Err(MoneyError::TooManyDecimals("0.0000000001".into())));
        assert_eq!(Money::parse("9223372036.854775808"), Err(MoneyError::Overflow));
        assert_eq!(Money::parse("99999999999999999999999"), Err(MoneyError::Overflow));
        let msg = Money::parse("-3").unwrap_err().to_string();
        assert!(msg.contains("negative"), "{msg}");
    }

    #[test]
    fn parse_rounded_rounds_half_up() {
        assert_eq!(Money::parse_rounded("0.0000000014"), Ok(Money::from_nanos(1)));
        assert_eq!(Money::parse_rounded("0.0000000015"), Ok(Money::from_nanos(2)));
        assert_eq!(Money::parse_rounded("0.0000000005"), Ok(Money::from_nanos(1)));
        assert_eq!(Money::parse_rounded("0.0000000004999"), Ok(Money::ZERO));
        assert_eq!(Money::parse_rounded("0.000123"), Ok(Money::from_nanos(123_000)));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Money::MAX.checked_add(Money::from_nanos(1)), Err(MoneyError::Overflow));
        assert_eq!(Money::from_nanos(i64::MIN).checked_sub(Money::from_nanos(1)), Err(MoneyError::Overflow));
        assert_eq!(Money::checked_sum([Money::from_nanos(1), Money::from_nanos(2)]), Ok(Money::from_nanos(3)));
        assert_eq!(Money::checked_sum([Money::MAX, Money::from_nanos(1)]), Err(MoneyError::Overflow));
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let m = Money::from_nanos(50_000_000);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0.050000000\"");
        assert_eq!(serde_json::from_str::<Money>("\"0.05\"").unwrap(), m);
        let float = serde_json::from_str::<Money>("0.05").unwrap_err().to_string();
        assert!(float.contains("floating-point"), "{float}");
        assert!(serde_json::from_str::<Money>("\"-1\"").is_err());
    }

    #[test]
    fn division_rounds_half_up() {
        assert_eq!(div_round_half_up(499_999, 1_000_000), 0);
        assert_eq!(div_round_half_up(500_000, 1_000_000), 1);
        assert_eq!(div_round_half_up(1_499_999, 1_000_000), 1);
        assert_eq!(div_round_half_up(1_500_000, 1_000_000), 2);
        assert_eq!(div_round_half_up(-500_000, 1_000_000), -1);
        assert_eq!(div_round_half_up(0, 1_000_000), 0);
    }
}

/// Property tests: exact round trips and an i128 reference for every decimal
/// the parser may see (the reference never touches floating point).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// What `parse` (or `parse_rounded` with `round`) must answer for the
    /// plain decimal `whole[.frac]`: computed in i128, where no generated
    /// value overflows.
    fn reference(whole: &str, frac: &str, round: bool) -> Result<i64, &'static str> {
        let digits = |s: &str| {
            s.bytes().try_fold(0_i128, |n, b| n.checked_mul(10)?.checked_add(i128::from(b - b'0'))).ok_or("overflow")
        };
        let kept = &frac[..frac.len().min(DECIMALS)];
        let extra = &frac[kept.len()..];
        let padded = digits(kept)? * 10_i128.pow((DECIMALS - kept.len()) as u32);
        let mut nanos = digits(whole)?.checked_mul(i128::from(NANOS_PER_UNIT)).ok_or("overflow")? + padded;
        if nanos > i128::from(i64::MAX) {
            return Err("overflow");
        }
        if extra.bytes().any(|b| b != b'0') {
            if !round {
                return Err("too many decimals");
            }
            if extra.as_bytes()[0] >= b'5' {
                nanos += 1;
            }
        }
        i64::try_from(nanos).map_err(|_| "overflow")
    }

    fn outcome(result: Result<Money, MoneyError>) -> Result<i64, &'static str> {
        match result {
            Ok(m) => Ok(m.nanos()),
            Err(MoneyError::Overflow) => Err("overflow"),
            Err(MoneyError::TooManyDecimals(_)) => Err("too many decimals"),
            Err(MoneyError::Empty) => Err("empty"),
            Err(MoneyError::Negative(_)) => Err("negative"),
            Err(MoneyError::NotANumber(_)) => Err("not a number"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn format_then_parse_is_the_identity(nanos in 0..=i64::MAX) {
            let m = Money::from_nanos(nanos);
            prop_assert_eq!(Money::parse(&m.to_string()), Ok(m));
            prop_assert_eq!(Money::parse_rounded(&m.to_string()), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(&json, &format!("\"{m}\""));
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        }

        #[test]
        fn negative_amounts_format_with_a_sign_and_are_refused(nanos in i64::MIN..0) {
            let text = Money::from_nanos(nanos).to_string();
            prop_assert_eq!(Money::parse(&text), Err(MoneyError::Negative(text.clone())));
            let magnitude = text.strip_prefix('-').unwrap();
            match nanos.checked_neg() {
                Some(abs) => prop_assert_eq!(Money::parse(magnitude), Ok(Money::from_nanos(abs))),
                None => prop_assert_eq!(Money::parse(magnitude), Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn display_is_a_plain_decimal_with_nine_places(nanos in any::<i64>()) {
            let text = Money::from_nanos(nanos).to_string();
            let unsigned = text.strip_prefix('-').unwrap_or(&text);
            prop_assert_eq!(text.starts_with('-'), nanos < 0);
            let (whole, frac) = unsigned.split_once('.').unwrap();
            prop_assert!(!whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()));
            prop_assert!(whole == "0" || !whole.starts_with('0'), "leading zero in {}", text);
            prop_assert!(frac.len() == DECIMALS && frac.bytes().all(|b| b.is_ascii_digit()));
        }

        /// Any plain decimal parses to exactly its value, is refused when it
        /// would need rounding, and is rounded half-up by `parse_rounded`.
        #[test]
        fn plain_decimals_parse_exactly(whole in "[0-9]{1,22}", frac in proptest::option::of("[0-9]{1,14}")) {
            let text = match &frac {
                Some(frac) => format!("{whole}.{frac}"),
                None => whole.clone(),
            };
            let frac = frac.as_deref().unwrap_or("");
            prop_assert_eq!(outcome(Money::parse(&text)), reference(&whole, frac, false), "{}", text);
            prop_assert_eq!(outcome(Money::parse_rounded(&text)), reference(&whole, frac, true), "{}", text);
        }

        /// Float spellings are never read as floats: exponents, signs, inf
        /// and NaN are refused; a short decimal such as `0.1` is exactly
        /// 100000000 nanos, not the nearest binary fraction.
        #[test]
        fn float_text_is_refused_or_read_exactly(f in any::<f64>()) {
            for text in [format!("{f:e}"), format!("{f:E}"), format!("{f:+}"), format!("{f}")] {
                let parsed = outcome(Money::parse(&text));
                match text.split_once('.') {
                    _ if text.contains(['e', 'E', '+', 'i', 'N']) => {
                        prop_assert!(parsed.is_err(), "{} parsed as {:?}", text, parsed);
                    }
                    _ if text.starts_with('-') => prop_assert_eq!(parsed, Err("negative"), "{}", text),
                    Some((whole, frac)) => prop_assert_eq!(parsed, reference(whole, frac, false), "{}", text),
                    None => prop_assert_eq!(parsed, reference(&text, "", false), "{}", text),
                }
            }
        }

        /// Whatever the text, parsing never panics, and it succeeds only on
        /// digits with at most one inner `.`, at the reference value.
        #[test]
        fn only_plain_decimals_are_accepted(
            text in "[-+0-9. eE,_xa]{0,24}|-?[0-9]{0,3}[.]?[0-9]{0,3}[.]?[0-9]{0,2}|\\PC{0,24}",
        ) {
            let parsed = outcome(Money::parse(&text));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let plain = match text.split_once('.') {
                Some((whole, frac)) => Some((whole, frac)).filter(|_| digits(frac)),
                None => Some((text.as_str(), "")),
            }
            .filter(|(whole, _)| digits(whole));
            match plain {
                Some((whole, frac)) => prop_assert_eq!(parsed, reference(whole, frac, false), "{}", text),
                None => prop_assert!(
                    matches!(parsed, Err("not a number" | "negative" | "empty")),
                    "{:?} gave {:?}", text, parsed
                ),
            }
        }

        #[test]
        fn a_number_in_json_is_refused(f in any::<f64>(), n in any::<i64>()) {
            prop_assert!(serde_json::from_str::<Money>(&serde_json::json!(f).to_string()).is_err());
            prop_assert!(serde_json::from_str::<Money>(&n.to_string()).is_err());
        }
    }
}
