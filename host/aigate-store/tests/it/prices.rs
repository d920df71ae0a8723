//! Price rules: precedence, validation, the seed file.

use std::path::Path;

use aigate_core::{Money, MoneyError, OrgId, PriceRule, TokenUsage};
use aigate_store::{OrgRepo, PriceRepo, Seeded, Store, StoreError};
use time::{Duration, OffsetDateTime};

use crate::store_suite;
use crate::support::{money, org_name};

fn rule(model: &str, org: Option<OrgId>, input: &str, from: OffsetDateTime) -> PriceRule {
    PriceRule {
        provider: "qwen".into(),
        model: model.into(),
        org,
        input_per_million: money(input),
        output_per_million: money("1.20"),
        cached_input_per_million: None,
        reasoning_output_per_million: Some(money("4")),
        effective_from: from,
        currency: "USD".into(),
    }
}

async fn org_rule_beats_global_and_latest_wins(store: &Store) {
    let a = store.create_org(&org_name("a")).await.unwrap().id;
    let b = store.create_org(&org_name("b")).await.unwrap().id;
    let t0 = time::macros::datetime!(2025-01-01 00:00 UTC);
    let t1 = t0 + Duration::days(30);
    store.upsert_price_rule(&rule("qwen-plus", None, "0.40", t0)).await.unwrap();
    store.upsert_price_rule(&rule("qwen-plus", None, "0.50", t1)).await.unwrap();
    store.upsert_price_rule(&rule("qwen-plus", Some(a), "0.30", t0)).await.unwrap();

    let input = |r: Option<PriceRule>| r.map(|r| r.input_per_million);
    let later = t1 + Duration::days(1);
    // An org's own rule beats even a newer global one.
    assert_eq!(
        input(store.effective_price_rule(Some(a), "qwen", "qwen-plus", later).await.unwrap()),
        Some(money("0.30"))
    );
    // Others get the latest global rule in effect.
    assert_eq!(
        input(store.effective_price_rule(Some(b), "qwen", "qwen-plus", later).await.unwrap()),
        Some(money("0.50"))
    );
    assert_eq!(input(store.effective_price_rule(None, "qwen", "qwen-plus", later).await.unwrap()), Some(money("0.50")));
    let between = t0 + Duration::days(3);
    assert_eq!(
        input(store.effective_price_rule(Some(b), "qwen", "qwen-plus", between).await.unwrap()),
        Some(money("0.40"))
    );
    // Effective from the instant itself.
    assert_eq!(input(store.effective_price_rule(Some(b), "qwen", "qwen-plus", t1).await.unwrap()), Some(money("0.50")));
    // Nothing before the first rule, nothing for another model or provider.
    assert_eq!(
        store.effective_price_rule(Some(b), "qwen", "qwen-plus", t0 - Duration::seconds(1)).await.unwrap(),
        None
    );
    assert_eq!(store.effective_price_rule(Some(a), "qwen", "qwen-max", later).await.unwrap(), None);
    assert_eq!(store.effective_price_rule(Some(a), "openai", "qwen-plus", later).await.unwrap(), None);

    // The rule comes back whole.
    let got = store.effective_price_rule(Some(a), "qwen", "qwen-plus", later).await.unwrap().unwrap();
    assert_eq!(got, rule("qwen-plus", Some(a), "0.30", t0));
}

async fn upsert_replaces_the_same_rule(store: &Store) {
    let t0 = time::macros::datetime!(2025-01-01 00:00 UTC);
    store.upsert_price_rule(&rule("qwen-turbo", None, "0.05", t0)).await.unwrap();
    store.upsert_price_rule(&rule("qwen-turbo", None, "0.06", t0)).await.unwrap();
    let all = store.list_price_rules().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].input_per_million, money("0.06"));
}

async fn negative_or_malformed_prices_are_refused(store: &Store) {
    let t0 = time::macros::datetime!(2025-01-01 00:00 UTC);
    let mut bad = rule("qwen-turbo", None, "0.05", t0);
    bad.output_per_million = Money::from_nanos(-5);
    let err = store.upsert_price_rule(&bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("negative"), "{err}");

    let mut bad = rule("qwen-turbo", None, "0.05", t0);
    bad.currency = "dollars".into();
    assert!(matches!(store.upsert_price_rule(&bad).await.unwrap_err(), StoreError::Invalid { .. }));
    // Non-numeric and negative text never becomes Money at all.
    assert!(matches!(Money::parse("abc"), Err(MoneyError::NotANumber(_))));
    assert!(matches!(Money::parse("-0.05"), Err(MoneyError::Negative(_))));
    assert!(matches!(Money::parse("1e-3"), Err(MoneyError::NotANumber(_))));
    assert!(store.list_price_rules().await.unwrap().is_empty());
}

async fn seeds_qwen_prices_from_the_repository_file(store: &Store) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prices/qwen-intl-usd.toml");
    assert_eq!(store.seed_from_file(&file).await.unwrap(), Seeded { added: 5, kept: 0 });
    assert_eq!(store.seed_from_file(&file).await.unwrap(), Seeded { added: 0, kept: 5 }, "idempotent");
    let all = store.list_price_rules().await.unwrap();
    assert_eq!(all.len(), 5);

    let now = OffsetDateTime::now_utc();
    let turbo = store.effective_price_rule(None, "qwen", "qwen-turbo", now).await.unwrap().unwrap();
    assert_eq!(turbo.input_per_million, money("0.05"));
    assert_eq!(turbo.output_per_million, money("0.20"));
    // 1M prompt tokens (200k cached) + 1M completion tokens (100k reasoning):
    // 0.8 × 0.05 + 0.2 × 0.01 + 0.9 × 0.20 + 0.1 × 0.50 = 0.272 USD
    let usage = TokenUsage { prompt: 1_000_000, completion: 1_000_000, cached: 200_000, reasoning: 100_000 };
    assert_eq!(turbo.cost(&usage), Ok(money("0.272")));

    let missing = store.seed_from_file(Path::new("/nonexistent/prices.toml")).await.unwrap_err();
    assert!(matches!(missing, StoreError::PriceFile { .. }), "{missing:?}");
}

/// Seeding adds the shipped list prices, but never over a rule an operator
/// set, whatever its date: a model with a global rule is left alone.
async fn seeding_never_overrides_an_operator_rule(store: &Store) {
    let long_ago = time::macros::datetime!(2020-01-01 00:00 UTC);
    let mine = rule("gpt-4o", None, "9.99", long_ago);
    let mine = PriceRule { provider: "openai".into(), ..mine };
    store.upsert_price_rule(&mine).await.unwrap();
    let seeded = store.seed_shipped().await.unwrap();
    assert_eq!(seeded.kept, 1, "{seeded:?}");
    assert!(seeded.added >= 11, "qwen, openai and anthropic models: {seeded:?}");
    let now = OffsetDateTime::now_utc();
    let gpt = store.effective_price_rule(None, "openai", "gpt-4o", now).await.unwrap().unwrap();
    assert_eq!(gpt.input_per_million, money("9.99"), "the operator's rule is still in force");
    let sonnet = store.effective_price_rule(None, "anthropic", "claude-sonnet-4-5", now).await.unwrap().unwrap();
    assert_eq!((sonnet.input_per_million, sonnet.output_per_million), (money("3.00"), money("15.00")));
    assert_eq!(store.seed_shipped().await.unwrap().added, 0, "idempotent");
}

store_suite!(
    seeding_never_overrides_an_operator_rule,
    org_rule_beats_global_and_latest_wins,
    upsert_replaces_the_same_rule,
    negative_or_malformed_prices_are_refused,
    seeds_qwen_prices_from_the_repository_file,
);
