//! What a call costs: the provider's own reported cost when it gives one,
//! otherwise the price rules, plus the org's markup.
//!
//! Price rules live in memory ([`PriceBook`]), refreshed from the store in
//! the background and after every change made through this gateway, so the
//! hot path never queries the database for a price and a database outage
//! does not stop billing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aigate_core::{Money, OrgId, PriceRule, TokenUsage, pricing};
use aigate_plugins::canonical::{RawCost, Usage};
use aigate_store::{PriceRepo, Store};
use arc_swap::ArcSwap;
use time::OffsetDateTime;

use crate::auth::Tenant;

/// Every price rule, indexed by (provider, model).
#[derive(Default)]
pub struct PriceBook {
    rules: ArcSwap<HashMap<(String, String), Vec<PriceRule>>>,
}

impl PriceBook {
    pub fn replace(&self, rules: Vec<PriceRule>) {
        let mut map: HashMap<(String, String), Vec<PriceRule>> = HashMap::new();
        for rule in rules {
            map.entry((rule.provider.clone(), rule.model.clone())).or_default().push(rule);
        }
        self.rules.store(Arc::new(map));
    }

    pub async fn reload(&self, store: &Store) -> Result<usize, aigate_store::StoreError> {
        let rules = store.list_price_rules().await?;
        let n = rules.len();
        self.replace(rules);
        Ok(n)
    }

    /// The rule in force: the org's own beats the global one; among those,
    /// the latest `effective_from` not after `at`.
    pub fn find(&self, org: OrgId, provider: &str, model: &str, at: OffsetDateTime) -> Option<PriceRule> {
        let rules = self.rules.load();
        let candidates = rules.get(&(provider.to_owned(), model.to_owned()))?;
        let best = |for_org: Option<OrgId>| {
            candidates.iter().filter(|r| r.org == for_org && r.effective_from <= at).max_by_key(|r| r.effective_from)
        };
        best(Some(org)).or_else(|| best(None)).cloned()
    }
}

/// A call's billed cost, in the currency of the rule (or raw cost) used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub billed: Money,
    pub currency: String,
}

pub struct Billing {
    pub prices: PriceBook,
    default_currency: String,
}

pub fn token_usage(u: &Usage) -> TokenUsage {
    TokenUsage {
        prompt: u64::from(u.prompt_tokens),
        completion: u64::from(u.completion_tokens),
        cached: u64::from(u.cached_tokens.unwrap_or(0)),
        reasoning: u64::from(u.reasoning_tokens.unwrap_or(0)),
    }
}

impl Billing {
    pub fn new(default_currency: String) -> Self {
        Billing { prices: PriceBook::default(), default_currency }
    }

    /// Prices a call. Never fails the call: a missing rule bills zero and is
    /// logged, so the operator can add the rule (the ledger keeps the tokens).
    pub fn charge(&self, tenant: &Tenant, provider: &str, model: &str, usage: Option<&Usage>, raw: Option<&RawCost>) -> Charge {
        if let Some(raw) = raw {
            match Money::parse_rounded(&raw.amount).and_then(|m| pricing::apply_markup(m, tenant.markup_bps)) {
                Ok(billed) => return Charge { billed, currency: raw.currency.clone() },
                Err(e) => tracing::warn!(%provider, %model, "unusable raw cost {:?}: {e}; using price rules", raw.amount),
            }
        }
        let Some(usage) = usage else {
            return Charge { billed: Money::ZERO, currency: self.default_currency.clone() };
        };
        match self.prices.find(tenant.org_id, provider, model, OffsetDateTime::now_utc()) {
            Some(rule) => match rule.billed_cost(&token_usage(usage), tenant.markup_bps) {
                Ok(billed) => Charge { billed, currency: rule.currency },
                Err(e) => {
                    tracing::error!(%provider, %model, "cost overflow: {e}");
                    Charge { billed: Money::ZERO, currency: rule.currency }
                }
            },
            None => {
                tracing::warn!(%provider, %model, "no price rule: billed 0 (add one with `aigate prices set`)");
                Charge { billed: Money::ZERO, currency: self.default_currency.clone() }
            }
        }
    }

    /// Reloads the price book every `every` until the process ends.
    pub fn spawn_refresh(self: &Arc<Self>, store: Store, every: Duration) {
        let billing = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = billing.prices.reload(&store).await {
                    tracing::warn!("price rules not refreshed: {e}");
                }
            }
        });
    }
}
