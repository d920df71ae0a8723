//! What a call costs: the provider's own reported cost when it gives one,
//! otherwise the price rules, plus the org's markup. Every call is priced or
//! refused: [`Billing::check`] runs before anything is claimed or sent.
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
use crate::config::UnpricedPolicy;
use crate::error::ApiError;
use crate::routing::Route;

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
    /// The call used tokens but neither a price rule nor the provider's
    /// reported cost priced it (its provider allows that): billed 0, and the
    /// ledger row says so, so usage reports can warn.
    pub unpriced: bool,
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

    /// Checked on the request path before any idempotency claim, reservation
    /// or provider call, so bad configuration never costs the client:
    /// - a model no price rule covers is refused when its provider's
    ///   `unpriced` policy is `refuse` (400 `model_not_priced`);
    /// - for an org with a budget, a model priced in another currency than
    ///   the budget's is refused (400 `budget_currency_mismatch`): there are
    ///   no exchange rates, and a budget must count every call it admits.
    pub fn check(&self, tenant: &Tenant, route: &Route) -> Result<(), ApiError> {
        let (provider, model) = (&*route.provider, route.upstream_model.as_str());
        let rule = self.prices.find(tenant.org_id, provider, model, OffsetDateTime::now_utc());
        match (rule, tenant.budget(&self.default_currency)) {
            (None, _) if route.settings.unpriced == UnpricedPolicy::Refuse => {
                Err(ApiError::model_not_priced(provider, model))
            }
            (Some(rule), Some((_, budget_currency))) if rule.currency != budget_currency => {
                Err(ApiError::budget_currency_mismatch(format!(
                    "Organisation `{org}` has a monthly budget in {budget_currency}, but `{provider}:{model}` is priced \
                     in {rule_currency}, which the budget cannot count (there are no exchange rates): nothing was sent \
                     or charged. An operator can price the model in {budget_currency} for this org (`aigate prices set \
                     --provider {provider} --model {model} --currency {budget_currency} --org {org} --input <price> \
                     --output <price>`) or set the budget in {rule_currency}.",
                    org = tenant.org_name,
                    rule_currency = rule.currency,
                )))
            }
            _ => Ok(()),
        }
    }

    /// Prices a call. Never fails the call (it already happened): the
    /// provider's raw cost when it reports one (unless the org's budget
    /// counts another currency), else the price rule in force, else 0
    /// flagged `unpriced` (only reachable when the provider allows it, or
    /// when a rule vanished since [`Billing::check`]), logged so the operator
    /// adds the rule (the ledger keeps the tokens).
    pub fn charge(
        &self,
        tenant: &Tenant,
        provider: &str,
        model: &str,
        usage: Option<&Usage>,
        raw: Option<&RawCost>,
    ) -> Charge {
        let budget_currency = tenant.budget(&self.default_currency).map(|(_, c)| c);
        let currency = budget_currency.unwrap_or(&self.default_currency);
        let zero = |unpriced| Charge { billed: Money::ZERO, currency: currency.to_owned(), unpriced };
        if let Some(raw) = raw {
            if budget_currency.is_some_and(|c| c != raw.currency) {
                tracing::warn!(%provider, %model, "raw cost in {} ignored: the org's budget counts {currency}; using price rules", raw.currency);
            } else {
                match Money::parse_rounded(&raw.amount).and_then(|m| pricing::apply_markup(m, tenant.markup_bps)) {
                    Ok(billed) => return Charge { billed, currency: raw.currency.clone(), unpriced: false },
                    Err(e) => {
                        tracing::warn!(%provider, %model, "unusable raw cost {:?}: {e}; using price rules", raw.amount)
                    }
                }
            }
        }
        let Some(usage) = usage else {
            return zero(false);
        };
        let tokens = token_usage(usage);
        match self.prices.find(tenant.org_id, provider, model, OffsetDateTime::now_utc()) {
            Some(rule) => match rule.billed_cost(&tokens, tenant.markup_bps) {
                Ok(billed) => Charge { billed, currency: rule.currency, unpriced: false },
                Err(e) => {
                    tracing::error!(%provider, %model, "cost overflow: {e}");
                    Charge { billed: Money::ZERO, currency: rule.currency, unpriced: false }
                }
            },
            None if tokens == TokenUsage::default() => zero(false),
            None => {
                tracing::warn!(
                    %provider, %model,
                    "unpriced call billed 0: add a rule with `aigate prices set --provider {provider} --model {model} ...`"
                );
                zero(true)
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
