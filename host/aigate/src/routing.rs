//! Model names to providers: `provider:model`, a bare alias, or a route.
//!
//! A provider is a plugin plus the operator's settings for it (base URL,
//! credential and where it goes, allowed models). Every loaded plugin is a
//! provider of its own name, but only a provider named in config gets a key;
//! config can add more providers on the same plugin (e.g. `deepseek` on the
//! `openai` plugin) or disable one.
//!
//! A request's model becomes a [`Plan`]: tiers of [`Candidate`]s tried in
//! order. A route (`[routes.<name>]`) gives one tier per priority of its
//! deployments, then the tiers of its fallbacks; `provider:model` and an alias
//! are one tier of one candidate; the request's own `fallbacks` add theirs at
//! the end. The attempt loop (`router.rs`) picks within a tier.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;

use aigate_plugins::LoadedPlugin;
use aigate_plugins::canonical::AuthScheme;

use crate::config::{Config, DeploymentConfig, Env, ProviderConfig, Strategy};
use crate::error::ApiError;
use crate::reload::{self, ReloadStatus, RouteTable};
use crate::upstream::Target;

/// Where one request goes. Holds its plugin version for the whole call, so a
/// hot reload never changes the plugin under a request in flight.
#[derive(Debug, Clone)]
pub struct Route {
    pub provider: Arc<str>,
    pub settings: Arc<ProviderConfig>,
    pub plugin: Arc<LoadedPlugin>,
    /// The provider's model name.
    pub upstream_model: String,
    pub base_url: url::Url,
    /// Whether configuration or the plugin names the model (a route's deployment, a
    /// provider's allowlist, the plugin's model list), rather than a client of a provider open
    /// to any model: metrics label only named models (`metrics.rs`).
    pub named: bool,
}

impl Route {
    /// The model name clients see in responses: `provider:model`.
    pub fn public_model(&self, upstream_model: &str) -> String {
        format!("{}:{}", self.provider, upstream_model)
    }

    pub fn target(&self) -> Target<'_> {
        Target {
            provider: &self.provider,
            base_url: &self.base_url,
            auth: &self.plugin.info().auth,
            credential: self.settings.api_key.as_ref(),
            placement: &self.settings.placement,
        }
    }
}

/// One place the request can go: a route to a provider plus what balancing needs.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The deployment's identity across routes and replicas (circuit breaker, latency):
    /// provider, upstream model, origin and key variable.
    pub id: Arc<str>,
    pub route: Route,
    pub weight: u32,
}

/// Candidates of one priority, balanced by `strategy`, retried `retries` rounds.
#[derive(Debug, Clone)]
pub struct Tier {
    /// The model name the client or a route's fallback list used for this tier.
    pub model: Arc<str>,
    pub strategy: Strategy,
    pub retries: u32,
    pub candidates: Vec<Candidate>,
}

/// Where a request may go, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tiers: Vec<Tier>,
}

impl Plan {
    /// Every candidate of every tier.
    pub fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.tiers.iter().flat_map(|t| t.candidates.iter())
    }

    /// Keeps the candidates `keep` accepts; tiers left empty are dropped. Returns the first
    /// refusal when nothing is left.
    pub fn retain(&mut self, mut keep: impl FnMut(&Candidate) -> Result<(), ApiError>) -> Result<(), ApiError> {
        let mut first_refusal = None;
        for tier in &mut self.tiers {
            tier.candidates.retain(|c| match keep(c) {
                Ok(()) => true,
                Err(e) => {
                    first_refusal.get_or_insert(e);
                    false
                }
            });
        }
        self.tiers.retain(|t| !t.candidates.is_empty());
        match (self.tiers.is_empty(), first_refusal) {
            (true, Some(e)) => Err(e),
            (true, None) => Err(ApiError::provider_unavailable("No deployment can serve this model.")),
            _ => Ok(()),
        }
    }
}

fn deployment_id(provider: &str, model: &str, base_url: &url::Url, key_env: &str) -> Arc<str> {
    Arc::from(format!("{provider}:{model}@{base_url}#{key_env}"))
}

/// Settings of every provider, explicit or implied by a plugin, computed once.
pub struct Providers {
    config: Arc<Config>,
    env: Arc<dyn Env + Send + Sync>,
    /// Routes and aliases: swapped whole when the config file changes (`reload.rs`).
    table: ArcSwap<RouteTable>,
    reload: reload::StatusCell,
    implied: RwLock<HashMap<String, Arc<ProviderConfig>>>,
    explicit: HashMap<String, Arc<ProviderConfig>>,
}

impl Providers {
    pub fn new(config: Arc<Config>, env: Arc<dyn Env + Send + Sync>) -> Self {
        let explicit = config.providers.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        let table = ArcSwap::from_pointee(RouteTable::of(&config));
        let reload = std::sync::Mutex::new(ReloadStatus::new(config.source.as_deref()));
        Providers { config, env, table, reload, implied: RwLock::new(HashMap::new()), explicit }
    }

    /// The serving routes and aliases.
    pub fn table(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// Serves `table` from the next request on.
    pub fn set_routes(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    pub fn reload_status(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        reload::lock(&self.reload)
    }

    pub fn settings(&self, provider: &str) -> Arc<ProviderConfig> {
        if let Some(p) = self.explicit.get(provider) {
            return p.clone();
        }
        if let Some(p) = self.implied.read().ok().and_then(|m| m.get(provider).cloned()) {
            return p;
        }
        let p = Arc::new(self.config.provider(provider, self.env.as_ref()));
        if let Ok(mut m) = self.implied.write() {
            m.insert(provider.to_owned(), p.clone());
        }
        p
    }

    /// Provider names: the explicit ones plus one per loaded plugin not
    /// configured under its own name that needs no key (one that does cannot
    /// serve without an entry), enabled only.
    pub fn names(&self, plugins: &HashMap<String, Arc<LoadedPlugin>>) -> Vec<String> {
        let mut names: Vec<String> = self.explicit.iter().filter(|(_, p)| p.enabled).map(|(k, _)| k.clone()).collect();
        for (name, plugin) in plugins {
            if !self.explicit.contains_key(name) && matches!(plugin.info().auth, AuthScheme::None) {
                names.push(name.clone());
            }
        }
        names.sort();
        names
    }

    /// A route to `provider`, without checking a model.
    pub fn route_to(
        &self,
        plugins: &HashMap<String, Arc<LoadedPlugin>>,
        provider: &str,
        upstream_model: &str,
    ) -> Result<Route, ApiError> {
        let settings = self.settings(provider);
        let unknown = || {
            ApiError::model_not_found(format!(
                "Unknown provider `{provider}`. Model names are `provider:model` (e.g. `qwen:qwen-turbo`); GET /v1/models lists them."
            ))
        };
        if !settings.enabled {
            return Err(unknown());
        }
        let Some(plugin) = plugins.get(&settings.plugin) else {
            if self.explicit.contains_key(provider) {
                return Err(ApiError::provider_unavailable(format!(
                    "Provider `{provider}` is configured but its plugin `{}` is not loaded; the operator must check the plugins folder.",
                    settings.plugin
                )));
            }
            return Err(unknown());
        };
        // A plugin's default URL only for a provider with no entry in config, which never
        // gets a key (see `Config::provider`); an entry always has the operator's URL.
        let base_url = match &settings.base_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&plugin.info().default_base_url).map_err(|_| {
                ApiError::plugin_fault(format!("Plugin `{}` declares an invalid default base URL.", settings.plugin))
            })?,
        };
        let named = plugin.info().models.iter().any(|m| m.id == upstream_model)
            || settings.models.as_ref().is_some_and(|list| list.iter().any(|m| m == upstream_model));
        Ok(Route {
            provider: Arc::from(provider),
            settings,
            plugin: plugin.clone(),
            upstream_model: upstream_model.to_owned(),
            base_url,
            named,
        })
    }

    /// The plan for `model` and then each of the request's own `fallbacks`. A route's
    /// deployments whose plugin is not loaded or which lack a key are left out (logged); the
    /// primary model's errors are the client's 404/503, a fallback's a 400 naming it.
    pub fn plan(
        &self,
        plugins: &HashMap<String, Arc<LoadedPlugin>>,
        model: &str,
        request_fallbacks: &[String],
        default_retries: u32,
    ) -> Result<Plan, ApiError> {
        let table = self.table();
        let mut tiers = self.tiers(&table, plugins, model, default_retries)?;
        if let Some(route) = table.routes.get(model) {
            for fallback in &route.fallbacks {
                match self.tiers(&table, plugins, fallback, default_retries) {
                    Ok(more) => tiers.extend(more),
                    Err(e) => tracing::warn!(route = model, fallback, "fallback skipped: {}", e.message),
                }
            }
        }
        for fallback in request_fallbacks {
            let more = self.tiers(&table, plugins, fallback, default_retries).map_err(|e| {
                ApiError::invalid_param("fallbacks", format!("Fallback model `{fallback}`: {}", e.message))
            })?;
            tiers.extend(more);
        }
        // A deployment reached by two paths is tried in its first place only.
        let mut seen = std::collections::HashSet::new();
        for tier in &mut tiers {
            tier.candidates.retain(|c| seen.insert(c.id.clone()));
        }
        tiers.retain(|t| !t.candidates.is_empty());
        Ok(Plan { tiers })
    }

    /// The tiers of one model name (not following a route's fallbacks).
    fn tiers(
        &self,
        table: &RouteTable,
        plugins: &HashMap<String, Arc<LoadedPlugin>>,
        model: &str,
        default_retries: u32,
    ) -> Result<Vec<Tier>, ApiError> {
        let name: Arc<str> = Arc::from(model);
        let Some(route) = table.routes.get(model) else {
            let route = self.resolve_in(table, plugins, model)?;
            let id =
                deployment_id(&route.provider, &route.upstream_model, &route.base_url, &route.settings.api_key_env);
            return Ok(vec![Tier {
                model: name,
                strategy: Strategy::Weighted,
                retries: default_retries,
                candidates: vec![Candidate { id, route, weight: 1 }],
            }]);
        };
        let mut by_priority: std::collections::BTreeMap<u32, Vec<Candidate>> = std::collections::BTreeMap::new();
        let mut first_error = None;
        for d in &route.deployments {
            match self.deployment_route(plugins, d) {
                Ok(r) => {
                    let id = deployment_id(&r.provider, &r.upstream_model, &r.base_url, &r.settings.api_key_env);
                    by_priority.entry(d.priority).or_default().push(Candidate { id, route: r, weight: d.weight });
                }
                Err(e) => {
                    tracing::warn!(route = model, provider = %d.provider, "deployment skipped: {}", e.message);
                    first_error.get_or_insert(e);
                }
            }
        }
        if by_priority.is_empty() {
            return Err(first_error.unwrap_or_else(|| ApiError::provider_unavailable("The route has no deployment.")));
        }
        let retries = route.retries.unwrap_or(default_retries);
        Ok(by_priority
            .into_values()
            .map(|candidates| Tier { model: name.clone(), strategy: route.strategy, retries, candidates })
            .collect())
    }

    /// A route to one configured deployment: its provider's plugin, its own URL and key.
    fn deployment_route(
        &self,
        plugins: &HashMap<String, Arc<LoadedPlugin>>,
        d: &DeploymentConfig,
    ) -> Result<Route, ApiError> {
        let Some(plugin) = plugins.get(&d.settings.plugin) else {
            return Err(ApiError::provider_unavailable(format!(
                "Provider `{}` is configured but its plugin `{}` is not loaded; the operator must check the plugins folder.",
                d.provider, d.settings.plugin
            )));
        };
        let Some(base_url) = d.settings.base_url.clone() else {
            return Err(ApiError::provider_unavailable(format!("Provider `{}` has no base URL.", d.provider)));
        };
        if d.settings.api_key.is_none() && !matches!(plugin.info().auth, AuthScheme::None) {
            return Err(ApiError::provider_not_configured(&d.provider, &d.settings.api_key_env));
        }
        Ok(Route {
            provider: Arc::from(d.provider.as_str()),
            settings: d.settings.clone(),
            plugin: plugin.clone(),
            upstream_model: d.model.clone(),
            base_url,
            named: true,
        })
    }

    /// Models clients may ask `provider` for; `None` means any.
    pub fn allowed_models(&self, route: &Route) -> Option<Vec<String>> {
        match &route.settings.models {
            Some(list) if list.iter().any(|m| m == "*") => None,
            Some(list) => Some(list.clone()),
            None => Some(route.plugin.info().models.iter().map(|m| m.id.clone()).collect()),
        }
    }

    /// Resolves a client's model name to a route, or a 404 that says what to use.
    pub fn resolve(&self, plugins: &HashMap<String, Arc<LoadedPlugin>>, model: &str) -> Result<Route, ApiError> {
        self.resolve_in(&self.table(), plugins, model)
    }

    fn resolve_in(
        &self,
        table: &RouteTable,
        plugins: &HashMap<String, Arc<LoadedPlugin>>,
        model: &str,
    ) -> Result<Route, ApiError> {
        let target = match model.split_once(':') {
            Some(_) => model,
            None => table.aliases.get(model).map(String::as_str).ok_or_else(|| {
                ApiError::model_not_found(format!(
                    "Unknown model `{model}`. Use `provider:model` (e.g. `qwen:qwen-turbo`) or a configured alias; GET /v1/models lists them."
                ))
            })?,
        };
        let Some((provider, upstream_model)) = target.split_once(':') else {
            return Err(ApiError::model_not_found(format!("Unknown model `{model}`.")));
        };
        if upstream_model.is_empty() {
            return Err(ApiError::model_not_found(format!("Model `{model}` names no model after `{provider}:`.")));
        }
        let mut route = self.route_to(plugins, provider, upstream_model)?;
        // An alias is configuration: its target is named whatever the provider's allowlist.
        route.named |= !std::ptr::eq(target, model);
        if let Some(allowed) = self.allowed_models(&route)
            && !allowed.iter().any(|m| m == upstream_model)
        {
            return Err(ApiError::model_not_found(format!(
                "Provider `{provider}` does not serve model `{upstream_model}` here. Allowed: {}.",
                allowed.join(", ")
            )));
        }
        if route.settings.api_key.is_none() && !matches!(route.plugin.info().auth, AuthScheme::None) {
            if !self.explicit.contains_key(provider) {
                return Err(ApiError::provider_not_in_config(provider, &route.settings.api_key_env));
            }
            return Err(ApiError::provider_not_configured(provider, &route.settings.api_key_env));
        }
        Ok(route)
    }
}

/// Keeps secrets out of Debug output.
impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").field("explicit", &self.explicit.keys().collect::<Vec<_>>()).finish()
    }
}
