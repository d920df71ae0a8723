//! Plugins built against contract `aigate:provider@0.1.0`, adapted to the current one.
//!
//! The host implements only the newest contract for real ([`crate::canonical`]); this module is
//! the whole cost of keeping 0.1.x plugins working (the Spin pattern): a second `bindgen!` for the
//! 0.1.0 world and plain conversion functions between its types and the current ones. The
//! request path never matches on versions: [`crate::instance`] picks the bindings once per
//! instance and converts at the boundary.
//!
//! 0.1.0 → 0.2.0 is additive (`choice-delta.refusal`), so every conversion is total: inputs lose
//! nothing a 0.1 plugin could read, outputs gain `None` for what a 0.1 plugin cannot say.

use crate::canonical as new;

mod generated {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../../wit/provider@0.1.0",
        exports: { default: async },
    });
}

/// The (empty) host side of the 0.1.0 `types` interface, which a 0.1 component imports.
pub(crate) use generated::aigate::provider::types as types_interface;
use generated::aigate::provider::types as old;
pub(crate) use generated::{Provider, ProviderPre};

/// The contract version these bindings implement.
pub(crate) const VERSION: &str = "0.1.0";

// ---- host → plugin (current types to 0.1.0) -------------------------------------------------

fn role(role: &new::Role) -> old::Role {
    match role {
        new::Role::System => old::Role::System,
        new::Role::Developer => old::Role::Developer,
        new::Role::User => old::Role::User,
        new::Role::Assistant => old::Role::Assistant,
        new::Role::Tool => old::Role::Tool,
    }
}

fn tool_call(call: &new::ToolCall) -> old::ToolCall {
    old::ToolCall { id: call.id.clone(), name: call.name.clone(), arguments: call.arguments.clone() }
}

fn content(content: &new::MessageContent) -> old::MessageContent {
    match content {
        new::MessageContent::Text(text) => old::MessageContent::Text(text.clone()),
        new::MessageContent::Parts(parts) => old::MessageContent::Parts(
            parts
                .iter()
                .map(|part| match part {
                    new::ContentPart::Text(text) => old::ContentPart::Text(text.clone()),
                    new::ContentPart::Image(image) => {
                        old::ContentPart::Image(old::ImageUrl { url: image.url.clone(), detail: image.detail.clone() })
                    }
                })
                .collect(),
        ),
    }
}

fn message(message: &new::Message) -> old::Message {
    old::Message {
        role: role(&message.role),
        content: message.content.as_ref().map(content),
        name: message.name.clone(),
        tool_calls: message.tool_calls.iter().map(tool_call).collect(),
        tool_call_id: message.tool_call_id.clone(),
        reasoning_content: message.reasoning_content.clone(),
    }
}

/// A canonical request as a 0.1.0 plugin sees it.
pub(crate) fn chat_request(request: &new::ChatRequest) -> old::ChatRequest {
    old::ChatRequest {
        model: request.model.clone(),
        messages: request.messages.iter().map(message).collect(),
        tools: request
            .tools
            .iter()
            .map(|tool| old::FunctionTool {
                name: tool.name.clone(),
                description: tool.description.clone(),
                parameters: tool.parameters.clone(),
                strict: tool.strict,
            })
            .collect(),
        tool_choice: request.tool_choice.as_ref().map(|choice| match choice {
            new::ToolChoice::None => old::ToolChoice::None,
            new::ToolChoice::Auto => old::ToolChoice::Auto,
            new::ToolChoice::Required => old::ToolChoice::Required,
            new::ToolChoice::Function(name) => old::ToolChoice::Function(name.clone()),
        }),
        parallel_tool_calls: request.parallel_tool_calls,
        temperature: request.temperature,
        top_p: request.top_p,
        max_tokens: request.max_tokens,
        stop: request.stop.clone(),
        seed: request.seed,
        n: request.n,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        response_format: request.response_format.as_ref().map(|format| match format {
            new::ResponseFormat::Text => old::ResponseFormat::Text,
            new::ResponseFormat::JsonObject => old::ResponseFormat::JsonObject,
            new::ResponseFormat::JsonSchema(schema) => old::ResponseFormat::JsonSchema(schema.clone()),
        }),
        user: request.user.clone(),
        stream: request.stream,
        extra: request.extra.clone(),
    }
}

/// A provider response as a 0.1.0 plugin sees it.
pub(crate) fn http_response(response: &new::HttpResponse) -> old::HttpResponse {
    old::HttpResponse { status: response.status, headers: response.headers.clone(), body: response.body.clone() }
}

/// An SSE event as a 0.1.0 plugin sees it.
pub(crate) fn sse_event(event: &new::SseEvent) -> old::SseEvent {
    old::SseEvent { event: event.event.clone(), data: event.data.clone() }
}

// ---- plugin → host (0.1.0 results to current types) -----------------------------------------

fn new_role(role: old::Role) -> new::Role {
    match role {
        old::Role::System => new::Role::System,
        old::Role::Developer => new::Role::Developer,
        old::Role::User => new::Role::User,
        old::Role::Assistant => new::Role::Assistant,
        old::Role::Tool => new::Role::Tool,
    }
}

fn model_info(model: old::ModelInfo) -> new::ModelInfo {
    new::ModelInfo { id: model.id, context_window: model.context_window, max_output_tokens: model.max_output_tokens }
}

fn finish_reason(reason: old::FinishReason) -> new::FinishReason {
    match reason {
        old::FinishReason::Stop => new::FinishReason::Stop,
        old::FinishReason::Length => new::FinishReason::Length,
        old::FinishReason::ToolCalls => new::FinishReason::ToolCalls,
        old::FinishReason::ContentFilter => new::FinishReason::ContentFilter,
        old::FinishReason::Other(other) => new::FinishReason::Other(other),
    }
}

fn usage(usage: old::Usage) -> new::Usage {
    new::Usage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens,
        cached_tokens: usage.cached_tokens,
        reasoning_tokens: usage.reasoning_tokens,
    }
}

fn raw_cost(cost: old::RawCost) -> new::RawCost {
    new::RawCost { currency: cost.currency, amount: cost.amount }
}

/// `describe` of a 0.1.0 plugin.
pub(crate) fn plugin_info(info: old::PluginInfo) -> new::PluginInfo {
    new::PluginInfo {
        name: info.name,
        version: info.version,
        contract_version: info.contract_version,
        default_base_url: info.default_base_url,
        auth: match info.auth {
            old::AuthScheme::None => new::AuthScheme::None,
            old::AuthScheme::Bearer => new::AuthScheme::Bearer,
            old::AuthScheme::Header(name) => new::AuthScheme::Header(name),
            old::AuthScheme::Query(name) => new::AuthScheme::Query(name),
        },
        models: info.models.into_iter().map(model_info).collect(),
    }
}

pub(crate) fn http_request(request: old::HttpRequest) -> new::HttpRequest {
    new::HttpRequest { method: request.method, url: request.url, headers: request.headers, body: request.body }
}

pub(crate) fn provider_error(error: old::ProviderError) -> new::ProviderError {
    new::ProviderError {
        status: error.status,
        error_type: error.error_type,
        code: error.code,
        message: error.message,
        retryable: error.retryable,
    }
}

pub(crate) fn chat_response(response: old::ChatResponse) -> new::ChatResponse {
    new::ChatResponse {
        id: response.id,
        created: response.created,
        model: response.model,
        choices: response
            .choices
            .into_iter()
            .map(|choice| new::Choice {
                index: choice.index,
                message: new::ResponseMessage {
                    content: choice.message.content,
                    reasoning_content: choice.message.reasoning_content,
                    tool_calls: choice
                        .message
                        .tool_calls
                        .into_iter()
                        .map(|call| new::ToolCall { id: call.id, name: call.name, arguments: call.arguments })
                        .collect(),
                    refusal: choice.message.refusal,
                },
                finish_reason: choice.finish_reason.map(finish_reason),
            })
            .collect(),
        usage: response.usage.map(usage),
        raw_cost: response.raw_cost.map(raw_cost),
        system_fingerprint: response.system_fingerprint,
    }
}

pub(crate) fn stream_chunk(chunk: old::StreamChunk) -> new::StreamChunk {
    new::StreamChunk {
        id: chunk.id,
        created: chunk.created,
        model: chunk.model,
        choices: chunk
            .choices
            .into_iter()
            .map(|delta| new::ChoiceDelta {
                index: delta.index,
                role: delta.role.map(new_role),
                content: delta.content,
                reasoning_content: delta.reasoning_content,
                tool_calls: delta
                    .tool_calls
                    .into_iter()
                    .map(|call| new::ToolCallDelta {
                        index: call.index,
                        id: call.id,
                        name: call.name,
                        arguments: call.arguments,
                    })
                    .collect(),
                finish_reason: delta.finish_reason.map(finish_reason),
                // 0.1.0 has no streamed refusal.
                refusal: None,
            })
            .collect(),
        usage: chunk.usage.map(usage),
        raw_cost: chunk.raw_cost.map(raw_cost),
    }
}

/// Results of a call: the plugin's value or its provider error, both converted.
pub(crate) fn result<T, U>(
    result: Result<T, old::ProviderError>,
    convert: impl FnOnce(T) -> U,
) -> Result<U, new::ProviderError> {
    result.map(convert).map_err(provider_error)
}

pub(crate) fn chunks(chunks: Vec<old::StreamChunk>) -> Vec<new::StreamChunk> {
    chunks.into_iter().map(stream_chunk).collect()
}

pub(crate) fn models(models: Vec<old::ModelInfo>) -> Vec<new::ModelInfo> {
    models.into_iter().map(model_info).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_0_1_stream_chunk_gains_no_refusal() {
        let chunk = old::StreamChunk {
            id: "c".into(),
            created: 1,
            model: "m".into(),
            choices: vec![old::ChoiceDelta {
                index: 0,
                role: Some(old::Role::Assistant),
                content: Some("hi".into()),
                reasoning_content: None,
                tool_calls: vec![],
                finish_reason: Some(old::FinishReason::Other("end_turn".into())),
            }],
            usage: None,
            raw_cost: None,
        };
        let converted = stream_chunk(chunk);
        let delta = &converted.choices[0];
        assert_eq!(delta.refusal, None);
        assert_eq!(delta.content.as_deref(), Some("hi"));
        assert_eq!(delta.role, Some(new::Role::Assistant));
        assert_eq!(delta.finish_reason, Some(new::FinishReason::Other("end_turn".into())));
    }
}
