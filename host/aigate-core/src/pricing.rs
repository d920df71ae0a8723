//! Price rules and the one rounding rule of billing.
//!
//! # The rounding rule
//!
//! Prices are kept per million tokens, in [`Money`] (nano-units). The cost of
//! one request is computed per *component*: the tokens billed at one price.
//! With every optional price set there are four components:
//!
//! | component            | tokens                         | price                         |
//! |----------------------|--------------------------------|-------------------------------|
//! | uncached input       | `prompt − cached`              | `input_per_million`           |
//! | cached input         | `cached`                       | `cached_input_per_million`    |
//! | non-reasoning output | `completion − reasoning`       | `output_per_million`          |
//! | reasoning output     | `reasoning`                    | `reasoning_output_per_million`|
//!
//! When the cached (reasoning) price is not set, cached (reasoning) tokens are
//! simply part of the input (output) component: there is then one component
//! for all prompt (completion) tokens, so no extra rounding happens.
//!
//! For each component, `tokens × price_nanos` is computed exactly in `i128`
//! (nano-units per million tokens) and divided by 1,000,000 **rounding half
//! up** to whole nano-units, once. The request's cost is the exact sum of its
//! rounded components. An optional per-org markup in basis points is then
//! applied to that sum, again rounding half up once:
//! `billed = round_half_up(cost × (10_000 + bps) / 10_000)`.
//!
//! Every request's billed cost is therefore an integer number of nano-units,
//! fixed when the request is metered, and stored as such. An org's total is
//! the sum of those integers: no rounding happens when totals are taken, so
//! the total over any period equals the sum of the per-request amounts
//! exactly, however the rows are grouped (ledger, daily rollups, invoices).
//!
//! Cached tokens are a subset of prompt tokens and reasoning tokens a subset
//! of completion tokens (the OpenAI usage shape). A provider reporting more
//! cached than prompt tokens (or more reasoning than completion tokens) has
//! the excess ignored: no token is billed twice.
//!
//! Tiered prices (a whole request billed at the tier its input length falls
//! into, as Alibaba does for several Qwen3 models) are not modelled yet: a
//! rule holds one price per component.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::OrgId;
use crate::money::{Money, MoneyError, div_round_half_up};

/// Tokens of one request, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
    /// Prompt tokens served from the provider's cache (part of `prompt`).
    pub cached: u64,
    /// Completion tokens spent on reasoning (part of `completion`).
    pub reasoning: u64,
}

const TOKENS_PER_MILLION: i128 = 1_000_000;
const BPS_PER_UNIT: i128 = 10_000;

/// Cost of `tokens` at `per_million`, rounded half-up to whole nano-units.
pub fn component_cost(tokens: u64, per_million: Money) -> Result<Money, MoneyError> {
    let exact = i128::from(tokens).checked_mul(i128::from(per_million.nanos())).ok_or(MoneyError::Overflow)?;
    let rounded = div_round_half_up(exact, TOKENS_PER_MILLION);
    i64::try_from(rounded).map(Money::from_nanos).map_err(|_| MoneyError::Overflow)
}

/// `cost` plus a markup of `bps` basis points (1 bps = 0.01 %), rounded
/// half-up once to whole nano-units.
pub fn apply_markup(cost: Money, bps: u32) -> Result<Money, MoneyError> {
    if bps == 0 {
        return Ok(cost);
    }
    let exact = i128::from(cost.nanos()) * (BPS_PER_UNIT + i128::from(bps));
    let rounded = div_round_half_up(exact, BPS_PER_UNIT);
    i64::try_from(rounded).map(Money::from_nanos).map_err(|_| MoneyError::Overflow)
}

/// Prices of one model at one provider, globally (`org: None`) or for one
/// org, from `effective_from` on, in `currency` (ISO 4217, e.g. `USD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PriceRule {
    pub provider: String,
    pub model: String,
    pub org: Option<OrgId>,
    pub input_per_million: Money,
    pub output_per_million: Money,
    /// Price of prompt tokens served from cache; `None`: billed as input.
    pub cached_input_per_million: Option<Money>,
    /// Price of reasoning tokens; `None`: billed as output.
    pub reasoning_output_per_million: Option<Money>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub effective_from: OffsetDateTime,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceRuleError {
    #[error("price rule field `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("price rule field `{field}` is negative ({value}); prices must be zero or more")]
    NegativePrice { field: &'static str, value: Money },
    #[error("provider and model names must not contain NUL characters")]
    Nul,
    #[error("currency `{0}` is not an ISO 4217 code (three capital letters, like `USD`)")]
    Currency(String),
}

impl PriceRule {
    /// Checks what the type cannot: names present, prices not negative, a
    /// three-letter currency. Stores refuse rules that fail this.
    pub fn validate(&self) -> Result<(), PriceRuleError> {
        if self.provider.trim().is_empty() {
            return Err(PriceRuleError::Empty { field: "provider" });
        }
        if self.model.trim().is_empty() {
            return Err(PriceRuleError::Empty { field: "model" });
        }
        if self.provider.contains('\0') || self.model.contains('\0') {
            return Err(PriceRuleError::Nul);
        }
        let prices = [
            ("input_per_million", Some(self.input_per_million)),
            ("output_per_million", Some(self.output_per_million)),
            ("cached_input_per_million", self.cached_input_per_million),
            ("reasoning_output_per_million", self.reasoning_output_per_million),
        ];
        for (field, price) in prices {
            if let Some(value) = price.filter(|p| p.is_negative()) {
                return Err(PriceRuleError::NegativePrice { field, value });
            }
        }
        if !is_currency_code(&self.currency) {
            return Err(PriceRuleError::Currency(self.currency.clone()));
        }
        Ok(())
    }

    /// Cost of one request under this rule, before markup (see the module
    /// docs for the rounding rule). `Overflow` only for absurd prices.
    pub fn cost(&self, usage: &TokenUsage) -> Result<Money, MoneyError> {
        let cached = usage.cached.min(usage.prompt);
        let reasoning = usage.reasoning.min(usage.completion);
        let (input, cached_input) = match self.cached_input_per_million {
            Some(price) => {
                (component_cost(usage.prompt - cached, self.input_per_million)?, component_cost(cached, price)?)
            }
            None => (component_cost(usage.prompt, self.input_per_million)?, Money::ZERO),
        };
        let (output, reasoning_output) = match self.reasoning_output_per_million {
            Some(price) => (
                component_cost(usage.completion - reasoning, self.output_per_million)?,
                component_cost(reasoning, price)?,
            ),
            None => (component_cost(usage.completion, self.output_per_million)?, Money::ZERO),
        };
        Money::checked_sum([input, cached_input, output, reasoning_output])
    }

    /// [`PriceRule::cost`] with the org's markup applied.
    pub fn billed_cost(&self, usage: &TokenUsage, markup_bps: u32) -> Result<Money, MoneyError> {
        apply_markup(self.cost(usage)?, markup_bps)
    }
}

/// Three ASCII capital letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    fn rule() -> PriceRule {
        PriceRule {
            provider: "qwen".into(),
            model: "qwen-plus".into(),
            org: None,
            input_per_million: money("0.40"),
            output_per_million: money("1.20"),
            cached_input_per_million: Some(money("0.08")),
            reasoning_output_per_million: Some(money("4.00")),
            effective_from: OffsetDateTime::UNIX_EPOCH,
            currency: "USD".into(),
        }
    }

    fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> TokenUsage {
        TokenUsage { prompt, completion, cached, reasoning }
    }

    /// Tiny deterministic PRNG (xorshift64*) so the property tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn component_rounds_half_up_once() {
        // 1 token at 0.40/M is 400 nanos, exactly.
        assert_eq!(component_cost(1, money("0.40")), Ok(Money::from_nanos(400)));
        // 1 token at 400 nanos/M = 0.0004 nanos → 0.
        assert_eq!(component_cost(1, money("0.000000400")), Ok(Money::ZERO));
        // 0.5 nano exactly rounds up.
        assert_eq!(component_cost(1, money("0.0005")), Ok(Money::from_nanos(1)));
        // Just below a half rounds down.
        assert_eq!(component_cost(1, money("0.000499999")), Ok(Money::ZERO));
        // 1.5 nanos → 2.
        assert_eq!(component_cost(3, money("0.0005")), Ok(Money::from_nanos(2)));
        // Exact: 1M tokens at the per-million price is the price.
        assert_eq!(component_cost(1_000_000, money("6.40")), Ok(money("6.40")));
        assert_eq!(component_cost(0, money("6.40")), Ok(Money::ZERO));
        assert_eq!(component_cost(u64::MAX, Money::MAX), Err(MoneyError::Overflow));
    }

    #[test]
    fn cost_splits_cached_and_reasoning() {
        // 1000 prompt (200 cached), 500 completion (100 reasoning), per component:
        //   800 × 400_000_000 / 1e6 = 320_000 nanos
        //   200 ×  80_000_000 / 1e6 =  16_000
        //   400 × 1_200_000_000 / 1e6 = 480_000
        //   100 × 4_000_000_000 / 1e6 = 400_000
        assert_eq!(rule().cost(&usage(1000, 500, 200, 100)), Ok(Money::from_nanos(1_216_000)));
    }

    #[test]
    fn unset_prices_fall_back_without_extra_rounding() {
        let mut r = rule();
        r.cached_input_per_million = None;
        r.reasoning_output_per_million = None;
        // All prompt tokens at input, all completion at output.
        assert_eq!(r.cost(&usage(1000, 500, 200, 100)), Ok(Money::from_nanos(400_000 + 600_000)));
        // 1 prompt token + 1 cached at a price of 0.0003/M each would round to 0 twice
        // if split; as one component of 2 tokens it is 0.6 → 1 nano.
        r.input_per_million = money("0.0003");
        r.output_per_million = Money::ZERO;
        assert_eq!(r.cost(&usage(2, 0, 1, 0)), Ok(Money::from_nanos(1)));
    }

    #[test]
    fn over_reported_subsets_are_clamped() {
        let r = rule();
        assert_eq!(r.cost(&usage(100, 10, 500, 50)), r.cost(&usage(100, 10, 100, 10)));
    }

    #[test]
    fn markup_rounds_half_up_once() {
        assert_eq!(apply_markup(Money::from_nanos(1000), 0), Ok(Money::from_nanos(1000)));
        assert_eq!(apply_markup(Money::from_nanos(1000), 1500), Ok(Money::from_nanos(1150)));
        // 1 nano + 50 % = 1.5 → 2.
        assert_eq!(apply_markup(Money::from_nanos(1), 5000), Ok(Money::from_nanos(2)));
        // 1 nano + 49.99 % = 1.4999 → 1.
        assert_eq!(apply_markup(Money::from_nanos(1), 4999), Ok(Money::from_nanos(1)));
        assert_eq!(apply_markup(Money::MAX, 1), Err(MoneyError::Overflow));
        let r = rule();
        let u = usage(1000, 500, 200, 100);
        assert_eq!(r.billed_cost(&u, 1000), Ok(Money::from_nanos(1_337_600)));
    }

    #[test]
    fn totals_are_the_exact_sum_of_per_request_integers() {
        // Property: the org total is the sum of the per-request billed
        // integers, whatever the grouping; and each request's cost is within
        // half a nano per component of the exact rational cost.
        let mut rng = Rng(0xA1B2_C3D4_E5F6_0718);
        let r = rule();
        let mut total = Money::ZERO;
        let mut by_day = [Money::ZERO; 7];
        let mut exact_nanos_per_million: i128 = 0;
        let n = 20_000;
        for i in 0..n {
            let prompt = rng.below(200_000);
            let completion = rng.below(20_000);
            let u = usage(prompt, completion, rng.below(prompt + 1), rng.below(completion + 1));
            let cost = r.cost(&u).unwrap();
            let exact = i128::from(u.prompt - u.cached) * 400_000_000
                + i128::from(u.cached) * 80_000_000
                + i128::from(u.completion - u.reasoning) * 1_200_000_000
                + i128::from(u.reasoning) * 4_000_000_000;
            // Four components, each off by at most half a nano.
            assert!((i128::from(cost.nanos()) * 1_000_000 - exact).abs() <= 2_000_000);
            exact_nanos_per_million += exact;
            total = total.checked_add(cost).unwrap();
            by_day[i % 7] = by_day[i % 7].checked_add(cost).unwrap();
        }
        assert_eq!(Money::checked_sum(by_day).unwrap(), total);
        // And the accumulated rounding stays within the per-component bound.
        assert!((i128::from(total.nanos()) * 1_000_000 - exact_nanos_per_million).abs() <= 2_000_000 * n as i128);
    }

    #[test]
    fn validation_refuses_negative_prices_and_bad_currency() {
        let mut r = rule();
        assert_eq!(r.validate(), Ok(()));
        r.cached_input_per_million = Some(Money::from_nanos(-1));
        assert_eq!(
            r.validate(),
            Err(PriceRuleError::NegativePrice { field: "cached_input_per_million", value: Money::from_nanos(-1) })
        );
        let mut r = rule();
        r.currency = "usd".into();
        assert!(matches!(r.validate(), Err(PriceRuleError::Currency(_))));
        let mut r = rule();
        r.model = " ".into();
        assert_eq!(r.validate(), Err(PriceRuleError::Empty { field: "model" }));
    }
}
