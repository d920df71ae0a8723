//! Routes reloaded without a restart.
//!
//! When the gateway was started from a config file and `plugins.watch` is on, the file's
//! folder is watched (editors and deploy tools replace a file by renaming a new one over it,
//! which a watch on the file itself would lose), like the plugins folder. When the file
//! changes it is read and validated whole, exactly as at start:
//!
//! - valid: its `[routes]` and `[aliases]` replace the serving ones at once; the next request
//!   plans with them, requests in flight keep the plan they made;
//! - invalid (a syntax error, an unknown field, a route naming an unknown provider): the last
//!   good routes keep serving; the error is logged and shown by `GET /admin/routes`.
//!
//! Other sections (providers and their keys, limits, listen address, ...) are read at start
//! only: a change there needs a restart, and the reload says so in the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, Env, RouteConfig};
use crate::server::AppState;

/// What names resolve to, swapped whole by a reload.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub routes: BTreeMap<String, RouteConfig>,
    pub aliases: BTreeMap<String, String>,
}

impl RouteTable {
    pub fn of(config: &Config) -> Self {
        RouteTable { routes: config.routes.clone(), aliases: config.aliases.clone() }
    }
}

/// What `GET /admin/routes` reports about reloads.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReloadStatus {
    /// The watched config file (`null` when the gateway started without one).
    pub source: Option<String>,
    /// When the serving routes were loaded.
    pub loaded_at: String,
    pub reloads: u64,
    /// The last reload's refusal, while the file is still invalid.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl ReloadStatus {
    pub fn new(source: Option<&Path>) -> Self {
        ReloadStatus {
            source: source.map(|p| p.display().to_string()),
            loaded_at: now(),
            reloads: 0,
            last_error: None,
            last_error_at: None,
        }
    }
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

/// Stops watching when dropped.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The link a Kubernetes ConfigMap volume swaps on every update (the atomic writer's `..data`).
const KUBERNETES_DATA_LINK: &str = "..data";

/// How long changes are gathered before the file is read (an editor's save is several events).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches `file` and reloads the routes of `state` when it changes; see the module docs.
pub fn watch(
    state: &Arc<AppState>,
    file: &Path,
    env: Arc<dyn Env + Send + Sync>,
) -> Result<ConfigWatch, notify::Error> {
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (events, mut received) = mpsc::unbounded_channel::<()>();
    let name = file.file_name().map(std::ffi::OsStr::to_os_string);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
            // The file itself, or `..data`: Kubernetes updates a mounted ConfigMap by renaming
            // a new `..data` symlink into place, and the file is a link through it.
            let ours = |p: &PathBuf| {
                let file_name = p.file_name().map(std::ffi::OsStr::to_os_string);
                file_name == name || file_name.as_deref() == Some(std::ffi::OsStr::new(KUBERNETES_DATA_LINK))
            };
            if event.paths.iter().any(ours) {
                let _ = events.send(());
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "config file watcher error"),
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!(file = %file.display(), "watching the config file: [routes] and [aliases] reload on change");
    let weak: Weak<AppState> = Arc::downgrade(state);
    let task = tokio::spawn(async move {
        while received.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while received.try_recv().is_ok() {}
            let Some(state) = weak.upgrade() else { return };
            reload(&state, &file, env.as_ref()).await;
        }
    });
    Ok(ConfigWatch { _watcher: watcher, task })
}

/// Reads and validates `file`; swaps the routes when it is valid, keeps them otherwise.
pub async fn reload(state: &AppState, file: &Path, env: &(dyn Env + Send + Sync)) {
    let loaded = match tokio::fs::read_to_string(file).await {
        Ok(text) => Config::parse_toml(file, &text).and_then(|raw| Config::from_raw(raw, env)),
        Err(e) => Err(crate::config::ConfigError::Read { path: file.to_path_buf(), source: e }),
    };
    match loaded {
        Ok(config) => {
            state.providers.set_routes(RouteTable::of(&config));
            let mut status = state.providers.reload_status();
            status.reloads += 1;
            status.loaded_at = now();
            status.last_error = None;
            status.last_error_at = None;
            tracing::info!(
                file = %file.display(), routes = config.routes.len(), aliases = config.aliases.len(),
                "routes reloaded (sections other than [routes] and [aliases] apply at the next restart)"
            );
        }
        Err(e) => {
            let mut status = state.providers.reload_status();
            status.last_error = Some(e.to_string());
            status.last_error_at = Some(now());
            tracing::warn!(file = %file.display(), "config file refused, the last good routes keep serving: {e}");
        }
    }
}

/// The reload status behind a lock (`Providers` owns it).
pub type StatusCell = Mutex<ReloadStatus>;

pub fn lock(cell: &StatusCell) -> std::sync::MutexGuard<'_, ReloadStatus> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}
