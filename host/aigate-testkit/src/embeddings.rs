//! The embeddings endpoint of the mock DashScope (`POST {compatible-mode}/embeddings`,
//! wire-formats 7.3): OpenAI's request and response shape, any model named `text-embedding-…`
//! (DashScope's `text-embedding-v3`/`-v4`; OpenAI's `text-embedding-3-…` too, so the same mock
//! stands in for an OpenAI-compatible server), at most [`MAX_BATCH`] inputs a call.
//!
//! Vectors are deterministic: [`vector`] of each text, [`DEFAULT_DIMENSIONS`] long unless the
//! request asks for `dimensions`. Usage counts [`tokens`]: one per four bytes of each text, at
//! least one. A queued [`Scenario::Error`] answers with that error; other scenarios are ignored.

use serde_json::{Value, json};

use crate::errors::{self, DashScopeError};
use crate::{MockOptions, Scenario};

/// DashScope's batch limit for its embeddings models (wire-formats 7.3).
pub const MAX_BATCH: usize = 10;

/// The length of a vector when the request names no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 1024;

/// The deterministic vector of `text`: `dimensions` numbers in `[-0.5, 0.5)`, exactly
/// representable as `f32`, derived from the text's bytes.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let seed = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..dimensions as u64)
        .map(|i| {
            let bits = crate::server::splitmix64(seed ^ i);
            // 10 bits: k/1024 - 0.5 is exact in f32.
            ((bits % 1024) as f32) / 1024.0 - 0.5
        })
        .collect()
}

/// The tokens the mock reports for `text`.
pub fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// Answers one embeddings request (after auth), following `scenario` for failures.
pub(crate) fn answer(body: &[u8], options: &MockOptions, scenario: Scenario) -> Result<Value, DashScopeError> {
    if let Scenario::Error { status, body } = scenario {
        return Err(DashScopeError { status, body });
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return Err(errors::invalid_parameter("Required body invalid, please check the request body format."));
    };
    let model = match req.get("model") {
        Some(Value::String(m)) if m.starts_with("text-embedding-") || options.extra_models.contains(m) => m.clone(),
        Some(Value::String(m)) => return Err(errors::model_not_found(m)),
        _ => return Err(errors::invalid_parameter("you must provide a model parameter.")),
    };
    let input: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        _ => return Err(errors::invalid_parameter("'input' must be a string or a non-empty list of strings")),
    };
    if input.len() > MAX_BATCH {
        return Err(errors::invalid_parameter(&format!(
            "batch size is invalid, it should not be larger than {MAX_BATCH}."
        )));
    }
    match req.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" => {}
        Some(other) => return Err(errors::invalid_parameter(&format!("encoding_format {other} is not supported"))),
    }
    let dimensions = match req.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(d) => match d.as_u64() {
            Some(n @ (64 | 128 | 256 | 512 | 768 | 1024 | 1536 | 2048)) => n as usize,
            _ => return Err(errors::invalid_parameter(&format!("dimensions {d} is not supported"))),
        },
    };
    let used: u64 = input.iter().map(|t| tokens(t)).sum();
    let data: Vec<Value> = input
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": vector(text, dimensions)}))
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
        "id": "embd-mock",
    }))
}
