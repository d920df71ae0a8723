//! `GET {base}/models` and the OpenAI list shape.

use serde_json::Value;

use super::Dialect;
use super::json::{str_field, u32_field};
use crate::join_url;
use crate::types::{HttpRequest, HttpResponse, ModelInfo, ProviderError};

impl Dialect {
    /// The `GET {base_url}/models` request.
    pub fn build_models_request(&self, base_url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".to_string(),
            url: join_url(base_url, "models"),
            headers: vec![("accept".to_string(), "application/json".to_string())],
            body: Vec::new(),
        }
    }

    /// The chat models of an OpenAI-shaped list (`{"object":"list","data":[…]}`,
    /// or a bare array), filtered with [`Dialect::is_chat_model`].
    ///
    /// Limits come from `known` (the plugin's own table, since OpenAI's list
    /// has none) or, failing that, from keys some servers add to each entry
    /// (vLLM's `max_model_len`, `context_length`, `context_window`).
    pub fn parse_models(&self, response: &HttpResponse, known: &[ModelInfo]) -> Result<Vec<ModelInfo>, ProviderError> {
        if !(200..300).contains(&response.status) {
            return Err(self.parse_error(response.status, &response.body));
        }
        let value: Value = serde_json::from_slice(&response.body).map_err(|e| ProviderError {
            status: response.status,
            error_type: crate::errors::INVALID_RESPONSE.to_string(),
            code: None,
            message: format!("the provider's models list is not JSON: {e}"),
            retryable: false,
        })?;
        let entries = match &value {
            Value::Array(entries) => entries.as_slice(),
            other => other.get("data").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(),
        };
        let mut models: Vec<ModelInfo> = Vec::new();
        for entry in entries {
            let Some(id) = str_field(entry, "id").filter(|id| !id.is_empty()) else {
                continue;
            };
            if !(self.is_chat_model)(&id) || models.iter().any(|m| m.id == id) {
                continue;
            }
            let model = match known.iter().find(|m| m.id == id) {
                Some(known) => known.clone(),
                None => ModelInfo {
                    context_window: ["max_model_len", "context_length", "context_window"]
                        .iter()
                        .find_map(|key| u32_field(entry, key)),
                    max_output_tokens: u32_field(entry, "max_output_tokens"),
                    id,
                },
            };
            models.push(model);
        }
        Ok(models)
    }
}
