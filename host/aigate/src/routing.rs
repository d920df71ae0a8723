//! Model names to providers: `provider:model`, or a bare alias from config.
//!
//! A provider is a plugin plus the operator's settings for it (base URL,
//! credential and where it goes, allowed models). Every loaded plugin is a
//! provider of its own name, but only a provider named in config gets a key;
//! config can add more providers on the same plugin (e.g. `deepseek` on the
//! `openai` plugin) or disable one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aigate_plugins::LoadedPlugin;
use aigate_plugins::canonical::AuthScheme;

use crate::config::{Config, Env, ProviderConfig};
use crate::error::ApiError;
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

/// Settings of every provider, explicit or implied by a plugin, computed once.
pub struct Providers {
    config: Arc<Config>,
    env: Arc<dyn Env + Send + Sync>,
    implied: RwLock<HashMap<String, Arc<ProviderConfig>>>,
    explicit: HashMap<String, Arc<ProviderConfig>>,
}

impl Providers {
    pub fn new(config: Arc<Config>, env: Arc<dyn Env + Send + Sync>) -> Self {
        let explicit = config.providers.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        Providers { config, env, implied: RwLock::new(HashMap::new()), explicit }
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
        Ok(Route {
            provider: Arc::from(provider),
            settings,
            plugin: plugin.clone(),
            upstream_model: upstream_model.to_owned(),
            base_url,
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
        let target = match model.split_once(':') {
            Some(_) => model,
            None => self.config.aliases.get(model).map(String::as_str).ok_or_else(|| {
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
        let route = self.route_to(plugins, provider, upstream_model)?;
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
