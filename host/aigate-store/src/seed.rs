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
