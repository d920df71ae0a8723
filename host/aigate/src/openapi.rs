//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, derived by `utoipa` from
//! the wire types the handlers parse and write, so it cannot drift from what is served.
//!
//! - Request bodies: the types the decoders check every accepted body against
//!   (`codec::json::decode_conforming`; `ChatCompletionRequest` and the admin bodies are parsed
//!   straight into theirs).
//! - Answers: the types the encoders serialise (`openai.rs`, `messages.rs`, `responses.rs`,
//!   `embeddings.rs`, `models.rs`, `admin.rs`). Streams are `text/event-stream`; their events
//!   are the chunk types named in each route's description.
//! - Errors: OpenAI's error body on every route but the Anthropic ones, which answer with
//!   Anthropic's (`4XX`/`5XX`: the statuses are listed in `error.rs`).
//!
//! The document is built once, on first request, and served from memory.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AIGate",
        description = "An OpenAI-compatible AI gateway: one API (Chat Completions, Responses, Anthropic Messages, \
                       embeddings) in front of many model providers, with API keys per organisation, limits, \
                       budgets, idempotency, routing with fallbacks and metered billing.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::chat::chat_completions,
        crate::responses::responses,
        crate::messages::messages,
        crate::messages::count_tokens,
        crate::embeddings::embeddings,
        crate::models::list,
        crate::models::get,
        crate::server::health,
        crate::server::live,
        crate::server::ready,
        crate::server::metrics_main,
        openapi_json,
        crate::admin::plugins,
        crate::admin::routes,
        crate::admin::get_keys,
        crate::admin::post_key,
        crate::admin::post_revoke,
        crate::admin::get_prices,
        crate::admin::post_price,
        crate::admin::post_seed,
        crate::admin::get_usage,
        crate::admin::get_request,
        crate::admin::get_requests,
        crate::admin::get_orgs,
        crate::admin::post_org,
    ),
    // The error bodies the `IntoResponses` below refer to by name.
    components(schemas(ErrorBody, crate::messages::ErrorBody, crate::openai::ChunkOut)),
    modifiers(&Security),
    tags(
        (name = "openai", description = "OpenAI-compatible APIs: the key as `Authorization: Bearer`."),
        (name = "anthropic", description = "Anthropic's Messages API: the key as `x-api-key` or `Authorization: Bearer`."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "admin", description = "The admin API: `Authorization: Bearer <AIGATE_ADMIN_TOKEN>`; 404 when no admin token is set."),
    )
)]
pub struct ApiDoc;

/// The security schemes the routes name.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme("api_key", bearer("A gateway API key (`aig_…`)."));
        components.add_security_scheme(
            "anthropic_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A gateway API key (`aig_…`), as Anthropic's clients send theirs.",
            ))),
        );
        components.add_security_scheme("admin_token", bearer("The admin token (`AIGATE_ADMIN_TOKEN`)."));
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static [u8] {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    DOCUMENT.get_or_init(|| ApiDoc::openapi().to_json().map(String::into_bytes).unwrap_or_default())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this gateway.", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// A `4XX` and a `5XX` response with `body` as JSON.
fn error_responses(body: RefOr<utoipa::openapi::schema::Schema>) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let response = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(body.clone())).build())
            .build()
            .into()
    };
    BTreeMap::from([
        (
            "4XX".to_owned(),
            response(
                "The request cannot be served as sent (invalid, unauthenticated, not allowed, unknown model, \
                 over a limit or budget); the message says what to change. Nothing was billed.",
            ),
        ),
        (
            "5XX".to_owned(),
            response(
                "The gateway or the provider failed (provider error or unreachable, plugin fault, deadline, \
                 shutting down); retryable unless the message says otherwise.",
            ),
        ),
    ])
}

fn reference(name: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

/// The errors of the OpenAI-shaped routes: OpenAI's error body.
pub struct OpenAiErrors;

impl IntoResponses for OpenAiErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(reference(&ErrorBody::name()))
    }
}

/// The errors of the admin API: OpenAI's error body too.
pub type AdminErrors = OpenAiErrors;

/// The errors of `/v1/messages*`: Anthropic's error body (an overload is 529).
pub struct AnthropicErrors;

impl IntoResponses for AnthropicErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(reference(&crate::messages::ErrorBody::name()))
    }
}

/// One server-sent event of a `text/event-stream` answer, as Schemathesis and OpenAPI 3.2's
/// `itemSchema` read a stream: its `event` name and its `data` line (JSON text).
fn sse_event(event: &str, data: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let text = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One server-sent event of the stream."))
        .property("event", text(event))
        .property("data", text(data).content_media_type("application/json"))
        .required("data")
        .into()
}

/// The events of a chat completion stream.
pub struct ChatEvents;

impl PartialSchema for ChatEvents {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        sse_event(
            "Absent: every event is a `data:` line.",
            "A `CreateChatCompletionStreamResponse` chunk as JSON; the last event is `[DONE]`.",
        )
    }
}

impl ToSchema for ChatEvents {}

/// The events of a Messages stream.
pub struct MessagesEvents;

impl PartialSchema for MessagesEvents {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        sse_event(
            "`message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`, \
             `message_delta`, `message_stop`, or `error` (an `AnthropicError` body).",
            "The event as JSON, its `type` the event's name.",
        )
    }
}

impl ToSchema for MessagesEvents {}

/// The events of a Responses stream.
pub struct ResponsesEvents;

impl PartialSchema for ResponsesEvents {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        sse_event(
            "`response.created`, `response.in_progress`, `response.output_item.added`, \
             `response.content_part.added`, `response.output_text.delta` and `.done`, \
             `response.function_call_arguments.delta` and `.done`, `response.content_part.done`, \
             `response.output_item.done`, `response.completed` or `response.incomplete` (with the \
             `Response`), or `error`.",
            "The event as JSON with its `type` and an increasing `sequence_number`.",
        )
    }
}

impl ToSchema for ResponsesEvents {}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_builds_as_openapi_3_1() {
        let doc: serde_json::Value = serde_json::from_slice(super::document()).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/v1/chat/completions"]["post"].is_object());
    }
}
