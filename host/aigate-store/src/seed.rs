//! Price files: default price rules kept as data in the repository
//! (`prices/*.toml`), loaded by [`crate::PriceRepo::seed_from_file`].
//!
//! ```toml
//! provider = "qwen"                        # the provider name used in routes
//! currency = "USD"                         # ISO 4217
//! effective_from = "2025-09-01T00:00:00Z"  # RFC 3339, as a string
//!
//! [models.qwen-plus]
//! input = "0.40"             # per million tokens, decimal strings (never floats)
//! output = "1.20"
//! cached_input = "0.08"      # optional: else cached tokens are billed as input
//! reasoning_output = "4.00"  # optional: else reasoning tokens are billed as output
//! ```
//!
//! Every rule of a file is global (`org: None`). Unknown keys, negative or
//! non-numeric prices are errors naming the file and the field.
//!
//! The files in [`SHIPPED`] are compiled into the binary, so `aigate migrate`,
//! `aigate serve` and `aigate prices seed` find them from any directory.
//! Seeding only adds rules for models that have no global rule yet
//! ([`crate::PriceRepo::seed_rules`]): it never overrides an operator.

use std::collections::BTreeMap;
use std::path::Path;

use aigate_core::{Money, PriceRule};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::StoreError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    provider: String,
    currency: String,
    #[serde(with = "time::serde::rfc3339")]
    effective_from: OffsetDateTime,
    models: BTreeMap<String, ModelPrices>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPrices {
    input: Money,
    output: Money,
    cached_input: Option<Money>,
    reasoning_output: Option<Money>,
}

/// Parses a price file's text into validated global rules, by model name.
pub fn parse_price_file(text: &str) -> Result<Vec<PriceRule>, String> {
    let file: PriceFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut rules = Vec::with_capacity(file.models.len());
    for (model, p) in file.models {
        let rule = PriceRule {
            provider: file.provider.clone(),
            model: model.clone(),
            org: None,
            input_per_million: p.input,
            output_per_million: p.output,
            cached_input_per_million: p.cached_input,
            reasoning_output_per_million: p.reasoning_output,
            effective_from: file.effective_from,
            currency: file.currency.clone(),
        };
        rule.validate().map_err(|e| format!("model `{model}`: {e}"))?;
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err("the file defines no [models.<name>] table".into());
    }
    Ok(rules)
}

/// The price files shipped with the gateway: (path in the repository, text).
pub const SHIPPED: &[(&str, &str)] = &[
    ("prices/qwen-intl-usd.toml", include_str!("../../../prices/qwen-intl-usd.toml")),
    ("prices/openai-usd.toml", include_str!("../../../prices/openai-usd.toml")),
    ("prices/anthropic-usd.toml", include_str!("../../../prices/anthropic-usd.toml")),
    // A plugin's list prices live beside it (docs/plugins.md), so it is never billed at zero.
    ("plugins/gemini/prices.toml", include_str!("../../../plugins/gemini/prices.toml")),
];

/// Every rule of the [`SHIPPED`] files.
pub fn shipped_rules() -> Result<Vec<PriceRule>, StoreError> {
    let mut rules = Vec::new();
    for (path, text) in SHIPPED {
        let parsed = parse_price_file(text)
            .map_err(|message| StoreError::PriceFile { path: std::path::PathBuf::from(path), message })?;
        rules.extend(parsed);
    }
    Ok(rules)
}

/// What seeding did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Seeded {
    /// Rules added (their model had no global rule).
    pub added: usize,
    /// Rules of the file not added because their model already had a global rule.
    pub kept: usize,
}

pub(crate) async fn load_price_file(path: &Path) -> Result<Vec<PriceRule>, StoreError> {
    let fail = |message: String| StoreError::PriceFile { path: path.to_path_buf(), message };
    let text = tokio::fs::read_to_string(path).await.map_err(|e| fail(e.to_string()))?;
    parse_price_file(&text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "provider = \"qwen\"\ncurrency = \"USD\"\neffective_from = \"2025-09-01T00:00:00Z\"\n";

    #[test]
    fn the_repository_qwen_file_parses() {
        let text = include_str!("../../../prices/qwen-intl-usd.toml");
        let rules = parse_price_file(text).unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(names, ["qwen-flash", "qwen-max", "qwen-plus", "qwen-turbo", "qwen3-max"]);
        let turbo = rules.iter().find(|r| r.model == "qwen-turbo").unwrap();
        assert_eq!(turbo.input_per_million, Money::parse("0.05").unwrap());
        assert_eq!(turbo.reasoning_output_per_million, Some(Money::parse("0.50").unwrap()));
        assert!(rules.iter().all(|r| r.provider == "qwen" && r.currency == "USD" && r.org.is_none()));
    }

    #[test]
    fn the_shipped_files_price_every_model_of_the_shipped_plugins() {
        let rules = shipped_rules().unwrap();
        let has = |provider: &str, model: &str| rules.iter().any(|r| r.provider == provider && r.model == model);
        for model in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"] {
            assert!(has("openai", model), "openai:{model}");
        }
        for model in ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"] {
            assert!(has("anthropic", model), "anthropic:{model}");
        }
        let sonnet = rules.iter().find(|r| r.model == "claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.input_per_million, Money::parse("3.00").unwrap());
        assert_eq!(sonnet.cached_input_per_million, Some(Money::parse("0.30").unwrap()));
        assert_eq!(sonnet.output_per_million, Money::parse("15.00").unwrap());
        let mini = rules.iter().find(|r| r.model == "gpt-4o-mini").unwrap();
        assert_eq!(mini.cached_input_per_million, Some(Money::parse("0.075").unwrap()));
    }

    #[test]
    fn bad_prices_are_refused_with_the_field() {
        let negative = format!("{HEAD}[models.m]\ninput = \"-0.05\"\noutput = \"1\"\n");
        let err = parse_price_file(&negative).unwrap_err();
        assert!(err.contains("negative") && err.contains("input"), "{err}");

        let text = format!("{HEAD}[models.m]\ninput = \"cheap\"\noutput = \"1\"\n");
        let err = parse_price_file(&text).unwrap_err();
        assert!(err.contains("not a plain decimal"), "{err}");

        let float = format!("{HEAD}[models.m]\ninput = 0.05\noutput = \"1\"\n");
        let err = parse_price_file(&float).unwrap_err();
        assert!(err.contains("floating-point"), "{err}");

        let unknown = format!("{HEAD}[models.m]\ninput = \"1\"\noutput = \"1\"\ncache = \"1\"\n");
        assert!(parse_price_file(&unknown).unwrap_err().contains("cache"));

        let currency = "provider = \"q\"\ncurrency = \"usd\"\neffective_from = \"2025-09-01T00:00:00Z\"\n[models.m]\ninput = \"1\"\noutput = \"1\"\n";
        assert!(parse_price_file(currency).unwrap_err().contains("ISO 4217"));
    }
}
