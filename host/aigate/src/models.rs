//! `GET /v1/models` and `GET /v1/models/{id}`.
//!
//! Each provider is asked for its live list (through its plugin, with the
//! models timeout), filtered to the models this gateway allows. A provider
//! whose list fails (5xx, timeout, unreachable) falls back to its allowlist
//! (config `models`, or the plugin's own list), so the endpoint keeps
//! answering; the response header `x-aigate-models-fallback` names those
//! providers. A plugin without a models endpoint (`build_models_request`
//! returns none) is no failure: its allowlist is its list, with no header and
//! no warning.
//!
//! Live lists are cached per provider ([`ModelsCache`]) for
//! `upstream.models_cache_ms`, a failed one for at most 5 s, and refreshed by
//! one request at a time: clients listing models do not call providers on
//! every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aigate_plugins::LoadedPlugin;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::routing::Route;
use crate::server::AppState;

#[derive(Serialize, ToSchema)]
#[schema(as = Model)]
struct ModelObject {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ListModelsResponse)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelObject>,
}

struct ProviderModels {
    provider: String,
    models: Vec<String>,
    fallback: bool,
}

type Listed = Result<Option<Vec<String>>, String>;

/// One provider's last live list and when it was fetched; the async lock is held by the one
/// request refreshing it.
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Listed)>>>;

/// How long a failed list is kept at most, so a provider that recovers is seen soon.
const FAILED_LIST_TTL: Duration = Duration::from_secs(5);

/// Live model lists per provider; see the module docs.
#[derive(Debug, Default)]
pub struct ModelsCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl ModelsCache {
    fn slot(&self, provider: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(provider) {
            return slot.clone();
        }
        slots.entry(provider.to_owned()).or_default().clone()
    }
}

/// The provider's live list from the cache, fetching it when it is older than the TTL (one
/// fetch at a time per provider: others wait for it and share its answer).
async fn cached_models(state: &AppState, route: &Route) -> Listed {
    let ttl = state.config.upstream.models_cache;
    let slot = state.models.slot(&route.provider);
    let mut held = slot.lock().await;
    if let Some((at, listed)) = held.as_ref() {
        let ttl = if listed.is_ok() { ttl } else { ttl.min(FAILED_LIST_TTL) };
        if at.elapsed() < ttl {
            return listed.clone();
        }
    }
    let listed = live_models(state, route).await;
    *held = Some((Instant::now(), listed.clone()));
    listed
}

/// The provider's live list; `Ok(None)` when its plugin has no models endpoint.
async fn live_models(state: &AppState, route: &Route) -> Result<Option<Vec<String>>, String> {
    let deadline = Instant::now() + state.upstream.config.models_timeout;
    let mut instance = route.plugin.instantiate().await.map_err(|e| e.to_string())?;
    let Some(request) = instance.build_models_request(route.base_url.as_str()).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let request = state.upstream.prepare(&route.target(), route.plugin.name(), request).map_err(|e| e.message)?;
    let work = async {
        let response = state.upstream.send(&route.provider, request, deadline).await.map_err(|e| e.message)?;
        state.upstream.read(&route.provider, response, deadline).await.map_err(|e| e.message)
    };
    let response = tokio::time::timeout_at(deadline, work).await.map_err(|_| "timed out".to_owned())??;
    match instance.parse_models(&response).await.map_err(|e| e.to_string())? {
        Ok(models) => Ok(Some(models.into_iter().map(|m| m.id).collect())),
        Err(pe) => Err(format!("HTTP {}: {}", pe.status, pe.message)),
    }
}

async fn provider_models(
    state: &AppState,
    plugins: &HashMap<String, Arc<LoadedPlugin>>,
    provider: String,
) -> Option<ProviderModels> {
    let route = state.providers.route_to(plugins, &provider, "").ok()?;
    let allowed = state.providers.allowed_models(&route);
    let fallback_list =
        || allowed.clone().unwrap_or_else(|| route.plugin.info().models.iter().map(|m| m.id.clone()).collect());
    let (models, fallback) = match cached_models(state, &route).await {
        Ok(None) => (fallback_list(), false),
        Ok(Some(live)) => {
            let models = match &allowed {
                None => live,
                Some(allowed) => live.into_iter().filter(|m| allowed.contains(m)).collect(),
            };
            (models, false)
        }
        Err(reason) => {
            tracing::warn!(%provider, "models list unavailable, serving the allowlist: {reason}");
            (fallback_list(), true)
        }
    };
    Some(ProviderModels { provider, models, fallback })
}

async fn all_models(state: &AppState) -> (Vec<ModelObject>, Vec<String>) {
    let plugins = state.registry.plugins();
    let names = state.providers.names(&plugins);
    let lists = futures_util::future::join_all(names.into_iter().map(|p| provider_models(state, &plugins, p))).await;
    let mut data = Vec::new();
    let mut fallbacks = Vec::new();
    for list in lists.into_iter().flatten() {
        if list.fallback {
            fallbacks.push(list.provider.clone());
        }
        for m in list.models {
            data.push(ModelObject {
                id: format!("{}:{m}", list.provider),
                object: "model",
                created: 0,
                owned_by: list.provider.clone(),
            });
        }
    }
    let table = state.providers.table();
    for (alias, target) in &table.aliases {
        if let Some(t) = data.iter().find(|m| &m.id == target) {
            let owned_by = t.owned_by.clone();
            data.push(ModelObject { id: alias.clone(), object: "model", created: 0, owned_by });
        }
    }
    // A route is listed when one of its deployments' providers is served here.
    for (name, route) in &table.routes {
        if route.deployments.iter().any(|d| data.iter().any(|m| m.owned_by == d.provider)) {
            data.push(ModelObject { id: name.clone(), object: "model", created: 0, owned_by: "aigate".to_owned() });
        }
    }
    (data, fallbacks)
}

/// The models this key may call: providers' models, aliases and routes.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("api_key" = [])),
    responses((status = 200, description = "The models.", body = ModelList), crate::openapi::OpenAiErrors))]
pub async fn list(State(state): State<Arc<AppState>>, Authed(tenant): Authed) -> Response {
    let (mut data, fallbacks) = all_models(&state).await;
    // Only what this key may call.
    data.retain(|m| tenant.may_call(&m.id));
    let mut response = Json(ModelList { object: "list", data }).into_response();
    if !fallbacks.is_empty()
        && let Ok(v) = HeaderValue::from_str(&fallbacks.join(","))
    {
        response.headers_mut().insert("x-aigate-models-fallback", v);
    }
    response
}

/// One model this key may call.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai", security(("api_key" = [])),
    params(("model" = String, Path, description = "The model's id, e.g. `qwen:qwen-plus`.")),
    responses((status = 200, description = "The model.", body = ModelObject), crate::openapi::OpenAiErrors))]
pub async fn get(State(state): State<Arc<AppState>>, Authed(tenant): Authed, Path(id): Path<String>) -> Response {
    let (data, _) = all_models(&state).await;
    match data.into_iter().find(|m| m.id == id && tenant.may_call(&m.id)) {
        Some(m) => Json(m).into_response(),
        None => ApiError::model_not_found(format!("Model `{id}` is not served here; GET /v1/models lists the models."))
            .into_response(),
    }
}
