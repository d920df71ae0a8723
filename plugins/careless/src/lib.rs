//! A test plugin for the conformance checker: it translates a small Gemini-like
//! format and makes, on purpose, every mistake the checker's generic checks
//! exist for (each one "works" against a lenient upstream and was once
//! reported as passing):
//!
//! - the JSON body is sent as `content-type: text/plain`;
//! - the stream URL lacks `?alt=sse`, so the provider would not stream SSE;
//! - the stream decoder never reports usage (streamed calls billed at zero);
//! - `MAX_TOKENS` is mapped to `stop` instead of `length`;
//! - `parse_response` traps on a body that is not JSON (an HTML 502 page).
//!
//! Its fixtures are in `host/aigate/tests/it/fixtures/careless/`. Never shipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aigate_plugin_sdk::json::{str_field, u32_field};
use aigate_plugin_sdk::serde_json::{Value, json};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, Choice, ChoiceDelta, FinishReason, HttpRequest, HttpResponse,
    MessageContent, ModelInfo, PluginInfo, ProviderError, ResponseMessage, SseEvent, StreamChunk, Usage,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, ChunkDecoder, Provider, export_plugin, join_url, plugin_version};

struct Plugin;

fn finish(reason: &str) -> FinishReason {
    match reason {
        // The mistake: Gemini's MAX_TOKENS is OpenAI's `length`.
        "STOP" | "MAX_TOKENS" => FinishReason::Stop,
        other => FinishReason::Other(other.to_string()),
    }
}

fn text_of(candidate: &Value) -> String {
    candidate["content"]["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default()
}

impl Provider for Plugin {
    type Decoder = Decoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "careless".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: "http://localhost:9/v1beta".to_string(),
            auth: AuthScheme::Header("x-goog-api-key".to_string()),
            models: vec![ModelInfo { id: "careless-1".to_string(), context_window: None, max_output_tokens: None }],
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        let contents: Vec<Value> = request
            .messages
            .iter()
            .filter_map(|m| match &m.content {
                Some(MessageContent::Text(text)) => Some(json!({"role": "user", "parts": [{"text": text}]})),
                _ => None,
            })
            .collect();
        let mut body = json!({"contents": contents});
        if let Some(max) = request.max_tokens {
            body["generationConfig"] = json!({"maxOutputTokens": max});
        }
        // The mistake: no `?alt=sse` on the stream URL.
        let method = if request.stream { "streamGenerateContent" } else { "generateContent" };
        Ok(HttpRequest {
            method: "POST".to_string(),
            url: join_url(base_url, &format!("models/{}:{method}", request.model)),
            // The mistake: the body is JSON.
            headers: vec![("content-type".to_string(), "text/plain".to_string())],
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        // The mistake: a proxy's HTML page (or an empty body) traps here.
        let value: Value = aigate_plugin_sdk::serde_json::from_slice(&response.body).unwrap();
        if response.status >= 400 {
            let error = &value["error"];
            return Err(ProviderError {
                status: response.status,
                error_type: str_field(error, "status").unwrap_or_default(),
                code: None,
                message: str_field(error, "message").unwrap_or_default(),
                retryable: response.status >= 500,
            });
        }
        let candidate = &value["candidates"][0];
        let meta = &value["usageMetadata"];
        let prompt = u32_field(meta, "promptTokenCount").unwrap_or(0);
        Ok(ChatResponse {
            id: str_field(&value, "responseId").unwrap_or_default(),
            model: str_field(&value, "modelVersion").unwrap_or_default(),
            choices: vec![Choice {
                message: ResponseMessage { content: Some(text_of(candidate)), ..Default::default() },
                finish_reason: candidate["finishReason"].as_str().map(finish),
                ..Default::default()
            }],
            usage: Some(Usage::new(prompt, u32_field(meta, "candidatesTokenCount").unwrap_or(0))),
            ..Default::default()
        })
    }

    fn stream_decoder(model: String) -> Decoder {
        Decoder { model }
    }
}

/// Decodes one chunk per event; the mistake: `usageMetadata` is dropped.
struct Decoder {
    model: String,
}

impl ChunkDecoder for Decoder {
    fn push(&mut self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        let Ok(value) = aigate_plugin_sdk::serde_json::from_str::<Value>(&event.data) else {
            return Ok(Vec::new());
        };
        let candidate = &value["candidates"][0];
        let delta = ChoiceDelta {
            content: Some(text_of(candidate)).filter(|t| !t.is_empty()),
            finish_reason: candidate["finishReason"].as_str().map(finish),
            ..Default::default()
        };
        Ok(vec![StreamChunk::new(
            str_field(&value, "responseId").unwrap_or_default(),
            0,
            self.model.clone(),
            vec![delta],
        )])
    }

    fn finish(&mut self) -> Result<Vec<StreamChunk>, ProviderError> {
        Ok(Vec::new())
    }
}

export_plugin!(Plugin);
