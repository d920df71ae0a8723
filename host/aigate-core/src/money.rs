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
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(b - b'0')))
            .ok_or(MoneyError::Overflow)?;
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
        assert_eq!(
            Money::checked_sum([Money::from_nanos(1), Money::from_nanos(2)]),
            Ok(Money::from_nanos(3))
        );
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
