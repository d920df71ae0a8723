//! Canonical embeddings ↔ OpenAI's Embeddings API (`POST {base}/embeddings`),
//! which DashScope's compatible mode, vLLM and Ollama serve in the same shape.

use serde_json::{Map, Value};

use super::Dialect;
use super::json::{str_field, u32_field};
use crate::errors::INVALID_RESPONSE;
use crate::join_url;
use crate::json::{parse_body, post_json};
use crate::types::{EmbeddingsRequest, EmbeddingsResponse, HttpRequest, HttpResponse, ProviderError, Usage};

impl Dialect {
    /// The `POST {base_url}/embeddings` request for `request`.
    ///
    /// Fails with status 400 only for an empty `input`, which the host never
    /// sends (a request the provider would refuse anyway).
    pub fn build_embeddings_request(
        &self,
        base_url: &str,
        request: &EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = self.embeddings_body(request)?;
        Ok(post_json(join_url(base_url, "embeddings"), Vec::new(), &body))
    }

    /// The JSON body of the Embeddings request for `request`:
    /// `{"model","input":[…],"encoding_format":"float"}`, plus `dimensions`
    /// and `user` when the request has them.
    ///
    /// `input` is always a list, even of one text, so the response always has
    /// one `data` entry per text. `encoding_format` is always `float`: the
    /// contract carries numbers and the host encodes base64 itself when the
    /// client asks for it, so the plugin never decodes a provider's base64.
    pub fn embeddings_body(&self, request: &EmbeddingsRequest) -> Result<Value, ProviderError> {
        if request.input.is_empty() {
            return Err(ProviderError::invalid_request("input must hold at least one text to embed"));
        }
        let mut body = Map::new();
        body.insert("model".into(), Value::String(request.model.clone()));
        body.insert("input".into(), request.input.iter().cloned().map(Value::String).collect());
        if let Some(dimensions) = request.dimensions {
            body.insert("dimensions".into(), dimensions.into());
        }
        body.insert("encoding_format".into(), "float".into());
        if let Some(user) = &request.user {
            body.insert("user".into(), Value::String(user.clone()));
        }
        Ok(Value::Object(body))
    }

    /// The vectors of a provider's embeddings response, in input order, or the
    /// provider's error.
    ///
    /// A non-2xx status is the provider's error, read exactly as
    /// [`Dialect::parse_chat_response`] reads one (same shapes, same retry
    /// rules, same [`Dialect::refine_error`]); so is a 2xx body that holds an
    /// `error` object instead of `data`. The vectors are put in the order of
    /// their `index` (an entry without one takes its position), and the
    /// indices must be exactly `0..n`, each once: a missing or repeated index
    /// would hand the client vectors that belong to other texts.
    ///
    /// A 2xx body that cannot be read (not JSON, no `data` list, no vectors, a
    /// vector that is not a list of numbers or whose length differs from the
    /// others, bad indices) is a non-retryable provider error with status 502
    /// and type [`INVALID_RESPONSE`]: the provider, not the plugin, misbehaved.
    pub fn parse_embeddings_response(&self, response: &HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
        if !(200..300).contains(&response.status) {
            return Err(self.parse_error(response.status, &response.body));
        }
        let value = parse_body(response.status, &response.body)?;
        let Some(data) = value.get("data").and_then(Value::as_array) else {
            return Err(self
                .error_in_json(response.status, &value)
                .unwrap_or_else(|| unreadable("the provider's embeddings response has no `data` list".to_string())));
        };
        if data.is_empty() {
            return Err(unreadable("the provider's embeddings response holds no embeddings".to_string()));
        }
        let embeddings = in_index_order(data)?
            .into_iter()
            .enumerate()
            .map(|(index, entry)| vector(entry, index))
            .collect::<Result<Vec<_>, _>>()?;
        let length = embeddings.first().map_or(0, Vec::len);
        if let Some((odd, vector)) = embeddings.iter().enumerate().find(|(_, v)| v.len() != length) {
            return Err(unreadable(format!(
                "the provider's embeddings differ in length: embedding 0 has {length} numbers, embedding {odd} has {}",
                vector.len()
            )));
        }
        Ok(EmbeddingsResponse {
            model: str_field(&value, "model").unwrap_or_default(),
            embeddings,
            usage: embeddings_usage(value.get("usage")),
        })
    }
}

/// The entries of `data` ordered by their `index`, which must be `0..n`, each
/// exactly once.
fn in_index_order(data: &[Value]) -> Result<Vec<&Value>, ProviderError> {
    let indices = data
        .iter()
        .enumerate()
        .map(|(position, entry)| match entry.get("index") {
            None | Some(Value::Null) => Ok(position),
            Some(index) => index.as_u64().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| {
                unreadable(format!("the provider's data[{position}].index is {index}, not a non-negative integer"))
            }),
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let count = data.len();
    let numbered = || format!("the provider's {count} embeddings are not numbered 0 to {}", count.saturating_sub(1));
    let mut slots: Vec<Option<&Value>> = vec![None; count];
    for (position, (entry, &index)) in data.iter().zip(&indices).enumerate() {
        match slots.get_mut(index) {
            Some(slot) if slot.is_none() => *slot = Some(entry),
            Some(_) => return Err(unreadable(format!("{}: index {index} appears twice", numbered()))),
            None => {
                // With `count` entries and one out of range, some index is missing.
                let missing = (0..count).find(|i| !indices.contains(i)).unwrap_or_default();
                return Err(unreadable(format!(
                    "{}: index {missing} is missing and data[{position}] has index {index}",
                    numbered()
                )));
            }
        }
    }
    // Every slot is filled: `count` distinct indices below `count`.
    slots
        .into_iter()
        .enumerate()
        .map(|(index, slot)| slot.ok_or_else(|| unreadable(format!("{}: index {index} is missing", numbered()))))
        .collect()
}

/// One entry's `embedding`, a list of numbers that each fit an `f32`.
fn vector(entry: &Value, index: usize) -> Result<Vec<f32>, ProviderError> {
    let Some(numbers) = entry.get("embedding").and_then(Value::as_array) else {
        return Err(unreadable(format!(
            "the provider's embedding {index} is not a list of numbers (the gateway asks for encoding_format float)"
        )));
    };
    numbers
        .iter()
        .enumerate()
        .map(|(i, number)| {
            let float = number.as_f64().map(|f| f as f32).filter(|f| f.is_finite());
            float.ok_or_else(|| {
                unreadable(format!("the provider's embedding {index} holds {number} at {i}, not a float32 number"))
            })
        })
        .collect()
}

/// Embeddings usage: input tokens only. A missing count is the other one,
/// since for embeddings both are the input tokens.
fn embeddings_usage(value: Option<&Value>) -> Option<Usage> {
    let usage = value.filter(|v| v.is_object())?;
    let prompt = u32_field(usage, "prompt_tokens");
    let total = u32_field(usage, "total_tokens");
    let prompt_tokens = prompt.or(total).unwrap_or(0);
    Some(Usage {
        prompt_tokens,
        completion_tokens: 0,
        total_tokens: total.unwrap_or(prompt_tokens),
        ..Usage::default()
    })
}

/// A 2xx embeddings response the plugin cannot read.
fn unreadable(message: String) -> ProviderError {
    ProviderError { status: 502, error_type: INVALID_RESPONSE.to_string(), code: None, message, retryable: false }
}
