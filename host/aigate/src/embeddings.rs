//! `POST /v1/embeddings`: OpenAI's embeddings API, through the pipeline every inbound API
//! shares (`chat.rs`: scope, plan, price check, idempotency, limits, the attempt loop of
//! `router.rs`, one usage record per attempt).
//!
//! What differs from chat is the plugin call: `build-embeddings-request` and
//! `parse-embeddings-response` (contract 0.3), offered only by plugins whose `capabilities`
//! say `embeddings`; a model whose deployments have none is a 400 before anything is held.
//! The plugin returns floats; the host writes them as the client asked (`encoding_format`:
//! JSON numbers, or base64 of little-endian float32, which the OpenAI SDKs ask for by
//! default). Metered and priced per input token; limits reserve the input estimate (about
//! four characters a token) and settle on the provider's count.

use std::sync::Arc;

use aigate_plugins::canonical::{EmbeddingsRequest, EmbeddingsResponse, Usage};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::auth::{Authed, Tenant};
use crate::chat::{self, Admission, Admitted, Asked, Failed, Meter, Metered};
use crate::codec::json;
use crate::error::ApiError;
use crate::metering::Outcome;
use crate::router;
use crate::routing::{Candidate, Route};
use crate::server::AppState;
use crate::upstream;

/// The ledger's name for this API.
pub const API: &str = "embeddings";

/// At most this many inputs in one request (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// How the client wants the vectors written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

/// A validated embeddings request.
#[derive(Debug)]
pub struct Parsed {
    pub model: String,
    pub fallbacks: Vec<String>,
    pub input: Vec<String>,
    pub dimensions: Option<u32>,
    pub encoding: Encoding,
    pub user: Option<String>,
}

/// Parses and validates a body (UTF-8 JSON). Every error is a 400 naming the field.
pub fn parse(body: &str) -> Result<Parsed, ApiError> {
    json::decode_conforming(body, parse_object, |value| json::conforms::<CreateEmbeddingRequest>(value))
}

fn parse_object(map: &Map<String, Value>) -> Result<Parsed, ApiError> {
    const KNOWN: [&str; 6] = ["model", "input", "dimensions", "encoding_format", "user", "fallbacks"];
    if let Some(key) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid_param(
            key,
            format!("Unrecognized request argument `{key}`. Embeddings take: {}.", KNOWN.join(", ")),
        ));
    }
    let encoding = match map.get("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(s)) if s == "float" => Encoding::Float,
        Some(Value::String(s)) if s == "base64" => Encoding::Base64,
        Some(_) => {
            return Err(ApiError::invalid_param("encoding_format", "`encoding_format` is `float` or `base64`."));
        }
    };
    let user = match map.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid_param("user", "`user` must be a string.")),
    };
    Ok(Parsed {
        model: json::model(map)?,
        fallbacks: json::fallbacks(map)?,
        input: input(map)?,
        dimensions: json::count(map, "dimensions", false)?,
        encoding,
        user,
    })
}

/// `input`: one text, or a list of 1 to [`MAX_INPUTS`] texts, none empty.
fn input(map: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let texts = match map.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Some(Value::Array(items)) if items.iter().any(|i| i.is_number() || i.is_array()) => {
            return Err(ApiError::invalid_param(
                "input",
                "Token arrays are not accepted here: providers tokenize differently. Send the text instead.",
            ));
        }
        None | Some(Value::Null) => return Err(ApiError::invalid_param("input", "`input` is required.")),
        Some(_) => {
            return Err(ApiError::invalid_param("input", "`input` is a string or a list of strings."));
        }
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!("`input` holds 1 to {MAX_INPUTS} texts; this one holds {}.", texts.len()),
        ));
    }
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(ApiError::invalid_param("input", format!("`input[{i}]` is empty: every text needs content.")));
    }
    Ok(texts)
}

/// The estimate limits reserve and a call without the provider's count is metered with:
/// about four characters a token.
fn estimate_tokens(input: &[String]) -> u32 {
    let chars: usize = input.iter().map(String::len).sum();
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

/// A deployment can serve embeddings when its plugin says so.
fn serves_embeddings(candidate: &Candidate) -> Result<(), ApiError> {
    let plugin = &candidate.route.plugin;
    if plugin.capabilities().embeddings {
        return Ok(());
    }
    Err(ApiError::invalid_param(
        "model",
        format!(
            "Model `{}:{}` cannot make embeddings: the `{}` plugin ({} for contract {}) serves chat only. \
             Use an embeddings model such as `openai:text-embedding-3-small` or `qwen:text-embedding-v4`.",
            candidate.route.provider,
            candidate.route.upstream_model,
            plugin.name(),
            plugin.version(),
            plugin.contract_version()
        ),
    ))
}

/// Creates embeddings of one text or a list of texts, with a model whose provider serves them.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", security(("api_key" = [])),
    request_body = CreateEmbeddingRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this call safe: the first answer is replayed.")),
    responses((status = 200, description = "The vectors, in input order.", body = EmbeddingList),
        crate::openapi::OpenAiErrors))]
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut response = match handle(state.clone(), tenant.clone(), headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    chat::count_request(&state, API, &tenant, &mut response, started);
    response
}

async fn handle(
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    chat::require_json(&headers)?;
    let bytes = chat::read_body(&headers, body, state.config.max_body_bytes).await?;
    let text = chat::utf8(&bytes)?;
    let parsed = parse(text)?;
    let estimate = estimate_tokens(&parsed.input);
    let asked =
        Asked { endpoint: ("POST", "/v1/embeddings"), body: text, model: &parsed.model, fallbacks: &parsed.fallbacks };
    let admission = Admission::begin(&state, &tenant, &headers, asked, false, estimate, serves_embeddings).await?;
    let Admission { plan, guard, headers: admitted } = match admission {
        Admitted::Replay(response) => return Ok(response),
        Admitted::Proceed(admission) => admission,
    };
    let key = guard.idempotency_key().map(str::to_owned);
    let call = Call {
        deadline: started + state.upstream.config.total_timeout,
        request_id: crate::request_id::of(&headers),
        client_request_id: crate::request_id::client_of(&headers),
        state: state.clone(),
        tenant,
        parsed,
        estimate,
        started,
    };
    let attempts = router::run(&plan, &state.health, &state.config.routing, call.deadline, |c, n| {
        let span = crate::telemetry::attempt_span(&crate::telemetry::AttemptSpan {
            operation: "embeddings",
            provider: &c.route.provider,
            model: &c.route.upstream_model,
            max_tokens: None,
            temperature: None,
        });
        tracing::Instrument::instrument(call.attempt(c.route, n, key.clone(), span.clone()), span)
    });
    let mut response = tokio::select! {
        outcome = attempts => match outcome {
            Ok(((mut response, tokens), served)) => {
                chat::provider_headers(&mut response, &served);
                chat::settle(&state, guard, response, tokens, true).await
            }
            Err(e) => {
                let store = e.is_final();
                chat::settle(&state, guard, e.into_response(), 0, store).await
            }
        },
        // Past the shutdown deadline: dropping the attempt meters it, dropping the guard releases.
        _ = state.stop_calls.cancelled() => ApiError::shutting_down().into_response(),
    };
    chat::ratelimit_headers(&mut response, admitted);
    Ok(response)
}

/// One admitted embeddings call.
struct Call {
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    request_id: String,
    client_request_id: Option<String>,
    parsed: Parsed,
    estimate: u32,
    started: Instant,
    deadline: Instant,
}

impl Call {
    /// One provider call: the encoded answer and its tokens, or the failure with its usage
    /// record open.
    async fn attempt(
        &self,
        route: Route,
        attempt: u32,
        idempotency_key: Option<String>,
        span: tracing::Span,
    ) -> Result<(Response, u32), Failed> {
        let state = &self.state;
        let request = EmbeddingsRequest {
            model: route.upstream_model.clone(),
            input: self.parsed.input.clone(),
            dimensions: self.parsed.dimensions,
            user: self.parsed.user.clone(),
        };
        let mut instance = route.plugin.instantiate().await.map_err(|f| chat::fault_error(&f))?;
        let http_request = match instance.build_embeddings_request(route.base_url.as_str(), &request).await {
            Ok(Ok(r)) => r,
            Ok(Err(pe)) => {
                return Err(ApiError::from_provider(&route.provider, &route.settings.api_key_env, &pe).into());
            }
            Err(fault) => return Err(chat::fault_error(&fault).into()),
        };
        let upstream_request = state.upstream.prepare(&route.target(), route.plugin.name(), http_request)?;
        let who = Metered {
            state,
            tenant: &self.tenant,
            request_id: &self.request_id,
            client_request_id: self.client_request_id.as_deref(),
            api: API,
            started: self.started,
        };
        let meter = Meter::open(who, &route, attempt, false, idempotency_key, span);
        let failed = |error: ApiError, meter: Meter| Failed { error, meter: Some(meter), outcome: Outcome::Failed };

        let upstream_response = match state.upstream.send(&route.provider, upstream_request, self.deadline).await {
            Ok(r) => r,
            Err(e) => return Err(failed(e, meter)),
        };
        let status = upstream_response.status();
        let retry_after = upstream::retry_after(upstream_response.headers());
        let http_response = match state.upstream.read(&route.provider, upstream_response, self.deadline).await {
            Ok(r) => r,
            Err(e) => return Err(failed(e, meter)),
        };
        let parsed = match instance.parse_embeddings_response(&http_response).await {
            Ok(p) => p,
            Err(fault) => return Err(failed(chat::fault_error(&fault), meter)),
        };
        let answer = match parsed {
            Ok(answer) if status.is_success() => answer,
            Ok(_) => {
                let message = format!(
                    "Plugin `{}` turned a failed provider response (HTTP {status}) into a success.",
                    route.plugin.name()
                );
                return Err(failed(ApiError::plugin_fault(message), meter));
            }
            Err(pe) => {
                let err = ApiError::from_provider(&route.provider, &route.settings.api_key_env, &pe);
                let err = upstream::transient_by_status(err, status, retry_after);
                return Err(Failed { error: err, meter: Some(meter), outcome: Outcome::ProviderError });
            }
        };
        if answer.embeddings.len() != self.parsed.input.len() {
            let message = format!(
                "Plugin `{}` returned {} embeddings for {} inputs.",
                route.plugin.name(),
                answer.embeddings.len(),
                self.parsed.input.len()
            );
            return Err(failed(ApiError::plugin_fault(message), meter));
        }
        Ok(self.answer(&route, answer, meter))
    }

    /// Meters a successful call and writes the client's answer.
    fn answer(&self, route: &Route, answer: EmbeddingsResponse, mut meter: Meter) -> (Response, u32) {
        // The provider's count, else the estimate: an embeddings call is never free.
        let usage = answer.usage.unwrap_or(Usage {
            prompt_tokens: self.estimate,
            completion_tokens: 0,
            total_tokens: self.estimate,
            cached_tokens: None,
            reasoning_tokens: None,
        });
        let charge = meter.finish(Outcome::Completed, 200, Some(usage), None);
        let answered = if answer.model.is_empty() { route.upstream_model.as_str() } else { answer.model.as_str() };
        let body = encode(&answer.embeddings, &route.public_model(answered), &usage, self.parsed.encoding);
        let mut response = (StatusCode::OK, body).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(charge) = charge
            && let Ok(v) = HeaderValue::from_str(&format!("{} {}", charge.billed, charge.currency))
        {
            h.insert("x-aigate-cost", v);
        }
        (response, usage.total_tokens)
    }
}

/// OpenAI's embeddings response: a list of `embedding` objects in input order.
pub fn encode(vectors: &[Vec<f32>], model: &str, usage: &Usage, encoding: Encoding) -> Vec<u8> {
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| Embedding {
            object: "embedding",
            index,
            embedding: match encoding {
                Encoding::Float => Vector::Float(vector),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            },
        })
        .collect();
    let body = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage { prompt_tokens: usage.prompt_tokens, total_tokens: usage.total_tokens },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

// ---- the published wire types -----------------------------------------------------------------
//
// What the OpenAPI document (`openapi.rs`) says this API takes and answers: `parse` checks every
// body it accepts against `CreateEmbeddingRequest`, and `encode` writes `EmbeddingList`.

/// The body of `POST /v1/embeddings`. Other fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by serde and the schema only
pub struct CreateEmbeddingRequest<'a> {
    /// A model the key may call whose provider serves embeddings.
    #[schema(example = "qwen:text-embedding-v4", min_length = 1)]
    model: &'a str,
    #[serde(borrow)]
    input: EmbeddingInput<'a>,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    dimensions: Option<u32>,
    encoding_format: Option<EncodingFormat>,
    user: Option<&'a str>,
    /// The gateway's own: models to try in order when the requested one fails.
    #[schema(max_items = 8)]
    fallbacks: Option<Vec<&'a str>>,
}

/// One text, or 1 to 2048 texts; none empty (token arrays are refused).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum EmbeddingInput<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CreateEmbeddingResponse)]
pub struct EmbeddingList<'a> {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    data: Vec<Embedding<'a>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize, ToSchema)]
struct Embedding<'a> {
    #[schema(value_type = String, pattern = "^embedding$")]
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

/// The vector: numbers, or base64 of little-endian float32 (`encoding_format: base64`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum Vector<'a> {
    #[schema(value_type = Vec<f64>)]
    Float(#[serde(serialize_with = "widened")] &'a [f32]),
    Base64(String),
}

/// Each float widened to f64 exactly (`0.4853515625`), as the provider's number was read, not
/// the shortest f32 text (`0.48535156`), which a client parsing f64 would read as another value.
fn widened<S: serde::Serializer>(vector: &&[f32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(vector.iter().map(|&x| f64::from(x)))
}

#[derive(Serialize, ToSchema)]
struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn input_is_a_text_or_a_list_of_texts() {
        let one = parse(r#"{"model":"openai:text-embedding-3-small","input":"hi"}"#).unwrap();
        assert_eq!(one.input, vec!["hi"]);
        assert_eq!(one.encoding, Encoding::Float);
        let many = parse(r#"{"model":"m:x","input":["a","b"],"dimensions":256,"encoding_format":"base64"}"#).unwrap();
        assert_eq!(many.input, vec!["a", "b"]);
        assert_eq!(many.dimensions, Some(256));
        assert_eq!(many.encoding, Encoding::Base64);
    }

    #[test]
    fn bad_inputs_are_400s_naming_the_field() {
        for (body, param) in [
            (r#"{"model":"m:x"}"#, "input"),
            (r#"{"model":"m:x","input":[]}"#, "input"),
            (r#"{"model":"m:x","input":[""]}"#, "input"),
            (r#"{"model":"m:x","input":[1,2,3]}"#, "input"),
            (r#"{"model":"m:x","input":[[1,2]]}"#, "input"),
            (r#"{"model":"m:x","input":{"a":1}}"#, "input"),
            (r#"{"model":"m:x","input":"a","encoding_format":"int8"}"#, "encoding_format"),
            (r#"{"model":"m:x","input":"a","dimensions":0}"#, "dimensions"),
            (r#"{"model":"m:x","input":"a","user":5}"#, "user"),
            (r#"{"model":"m:x","input":"a","temperature":1}"#, "temperature"),
            (r#"{"input":"a"}"#, "model"),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        }
        let too_many =
            format!(r#"{{"model":"m:x","input":{}}}"#, serde_json::to_string(&vec!["a"; MAX_INPUTS + 1]).unwrap());
        assert_eq!(parse(&too_many).unwrap_err().param.as_deref(), Some("input"));
    }

    #[test]
    fn base64_is_little_endian_float32() {
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 0,
            total_tokens: 3,
            cached_tokens: None,
            reasoning_tokens: None,
        };
        let body = encode(&[vec![1.0, -0.5]], "openai:e", &usage, Encoding::Base64);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-0.5f32).to_le_bytes()].concat());
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(v["object"], "list");
        let floats: Value = serde_json::from_slice(&encode(&[vec![0.25]], "m", &usage, Encoding::Float)).unwrap();
        assert_eq!(floats["data"][0], json!({"object": "embedding", "index": 0, "embedding": [0.25]}));
    }
}
