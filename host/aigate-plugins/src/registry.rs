//! [`PluginRegistry`]: the plugins being served, by name, and the folder watcher that reloads
//! them.
//!
//! # Rules
//!
//! - **Files.** Only `*.wasm` files directly in the folder count; hidden files (`.name.wasm`,
//!   editors' and copy tools' temporaries) and sub-folders are ignored.
//! - **Names.** A plugin is served under the name its `describe` returns; the file name does
//!   not matter (`qwen-2025.wasm` may serve `qwen`). A name belongs to one file at a time: a
//!   second file describing a name another file already serves is refused, with an error naming
//!   the owner. When the owner is removed (or changes name) the refused file is retried.
//!   [`PluginRegistry::load_dir`] goes through files in name order, so at start-up the first
//!   file by name wins a conflict, deterministically.
//! - **Reloads.** A changed file is read after it has been quiet for [`DEBOUNCE`], compiled and
//!   validated off the async runtime, and only then swapped in. Content identical to what the
//!   file already serves is skipped. A candidate that fails never replaces the serving version:
//!   the file's status stays `serving` (old version) with `last_error` saying why the new
//!   content was refused. A removed file unloads its plugin.
//! - **Trust.** With a trusted-hash allowlist ([`PluginRegistry::with_trusted_hashes`]), a file
//!   whose content's sha256 is not listed is refused before it is compiled, by
//!   [`PluginRegistry::load_dir`] and by the watcher alike; a version already serving from that
//!   file keeps serving. Without an allowlist every file in the folder loads, so write access
//!   to the folder is then the trust boundary.
//! - **In-flight requests** hold an `Arc<LoadedPlugin>` (or an instance of one), so they finish
//!   on the version they started with.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::instance::LoadedPlugin;
use crate::runtime::PluginRuntime;

/// How long a file must be quiet before it is read: copies and in-place writes arrive as many
/// events, and a half-written file must not be compiled.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The plugins being served, keyed by name, and the status of every plugin file seen.
///
/// Readers ([`PluginRegistry::get`], [`PluginRegistry::plugins`]) are lock-free: the map is
/// behind an `ArcSwap` and every change installs a whole new map. Writers (loads, reloads,
/// unloads) are serialised: one file is synchronised at a time, and the map and the file
/// statuses change together under one short lock that is never held across an `await`.
pub struct PluginRegistry {
    runtime: PluginRuntime,
    plugins: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    files: Mutex<BTreeMap<String, FileState>>,
    /// Serialises file synchronisation (held across the compile).
    sync: tokio::sync::Mutex<()>,
    /// Lowercase hex sha256 of every file content allowed to load; `None` allows everything.
    trusted: Option<HashSet<String>>,
    /// Files loaded and files refused since start, for metrics.
    loads_ok: std::sync::atomic::AtomicU64,
    loads_failed: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plugins = self.plugins.load();
        let mut names: Vec<&String> = plugins.keys().collect();
        names.sort();
        f.debug_struct("PluginRegistry").field("plugins", &names).finish_non_exhaustive()
    }
}

/// What an operator sees about one plugin file (e.g. on an admin endpoint).
///
/// `state` is `"serving"` when the file serves a plugin (the `name`..`loaded_at` fields then
/// describe the version being served) and `"refused"` when it serves nothing. `last_error` is
/// why the file's latest content was refused; with `state == "serving"` it means the previous
/// version kept serving.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PluginStatus {
    /// File name within the plugin folder (`qwen.wasm`).
    pub file: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub contract_version: Option<String>,
    /// Whether the plugin serves embeddings (contract 0.3 `capabilities`).
    pub embeddings: Option<bool>,
    /// Inbound APIs the plugin's provider speaks natively (passed through).
    pub native_apis: Option<Vec<String>>,
    /// Hex sha256 of the served file content.
    pub hash: Option<String>,
    /// RFC 3339.
    pub loaded_at: Option<String>,
    /// `"serving"` or `"refused"`.
    #[schema(value_type = String)]
    pub state: &'static str,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
}

/// Keeps a folder watched; dropping it stops the watcher and its reload task.
pub struct WatchGuard {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchGuard").finish_non_exhaustive()
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct FileState {
    path: PathBuf,
    serving: Option<Arc<LoadedPlugin>>,
    /// Hash of the last refused content, so an unchanged bad file is not recompiled on every
    /// event (a forced retry ignores it).
    refused_hash: Option<String>,
    /// The name this file was refused for because another file serves it.
    conflict: Option<String>,
    last_error: Option<(String, OffsetDateTime)>,
}

impl PluginRegistry {
    /// An empty registry loading through `runtime`.
    pub fn new(runtime: PluginRuntime) -> Arc<Self> {
        Self::with_trusted_hashes(runtime, None::<Vec<String>>)
    }

    /// A registry that loads only files whose content hash (hex sha256, any case) is in
    /// `trusted`; `None` trusts every file in the folder. A file outside the list is refused
    /// without being compiled, and its status says its hash is not trusted.
    pub fn with_trusted_hashes(runtime: PluginRuntime, trusted: Option<impl IntoIterator<Item = String>>) -> Arc<Self> {
        Arc::new(PluginRegistry {
            runtime,
            plugins: ArcSwap::from_pointee(HashMap::new()),
            files: Mutex::new(BTreeMap::new()),
            sync: tokio::sync::Mutex::new(()),
            trusted: trusted.map(|hashes| hashes.into_iter().map(|hash| hash.trim().to_ascii_lowercase()).collect()),
            loads_ok: Default::default(),
            loads_failed: Default::default(),
        })
    }

    /// Whether content with this hash may load.
    fn is_trusted(&self, hash: &str) -> bool {
        self.trusted.as_ref().is_none_or(|trusted| trusted.contains(hash))
    }

    /// The runtime plugins are loaded through.
    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    /// Load every `*.wasm` file in `dir` (not recursive), in file-name order. Refused files are
    /// logged and recorded in [`PluginRegistry::statuses`]; files of `dir` the registry knows
    /// but which are gone are unloaded, so calling this again is a full rescan. Returns how
    /// many files of `dir` serve a plugin afterwards.
    ///
    /// Calling [`PluginRegistry::watch`] first and then this leaves no window in which a change
    /// could be missed; a change seen twice is harmless (identical content is skipped).
    pub async fn load_dir(&self, dir: &Path) -> usize {
        let mut paths = match list_plugin_files(dir).await {
            Ok(paths) => paths,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list the plugin folder");
                return 0;
            }
        };
        // Files known from this folder but no longer listed: synchronising them unloads them.
        let known: Vec<PathBuf> = self
            .lock_files()
            .values()
            .filter(|state| state.path.parent() == Some(dir) && !paths.contains(&state.path))
            .map(|state| state.path.clone())
            .collect();
        paths.extend(known);

        for path in &paths {
            self.sync_path(path.clone(), false).await;
        }
        let files = self.lock_files();
        paths
            .iter()
            .filter_map(|path| file_key(path))
            .filter(|file| files.get(file).is_some_and(|state| state.serving.is_some()))
            .count()
    }

    /// Start serving `dir`: watch it (if `watch`), then load every file in it (see
    /// [`PluginRegistry::load_dir`]). In this order, a file dropped while the first scan runs
    /// is seen by the watcher even when the scan listed the folder before it arrived. Returns
    /// how many files serve a plugin after the scan, and the watch guard.
    pub async fn start(self: &Arc<Self>, dir: &Path, watch: bool) -> Result<(usize, Option<WatchGuard>), RuntimeError> {
        let guard = if watch { Some(self.watch(dir)?) } else { None };
        Ok((self.load_dir(dir).await, guard))
    }

    /// The plugin serving `name`, if any. Hold the returned `Arc` for the whole request.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.load().get(name).cloned()
    }

    /// A snapshot of every plugin being served, by name.
    pub fn plugins(&self) -> Arc<HashMap<String, Arc<LoadedPlugin>>> {
        self.plugins.load_full()
    }

    /// Instances and faults per plugin name, files loaded and refused, since start.
    pub fn counters(&self) -> crate::RuntimeCounts {
        use std::sync::atomic::Ordering::Relaxed;
        crate::RuntimeCounts {
            per_plugin: self.runtime.inner.counters.snapshot(),
            reloads_ok: self.loads_ok.load(Relaxed),
            reloads_failed: self.loads_failed.load(Relaxed),
        }
    }

    /// The status of every plugin file seen (present now), sorted by file name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.lock_files()
            .iter()
            .map(|(file, state)| {
                let serving = state.serving.as_deref();
                PluginStatus {
                    file: file.clone(),
                    name: serving.map(|p| p.name().to_owned()),
                    version: serving.map(|p| p.version().to_owned()),
                    contract_version: serving.map(|p| p.contract_version().to_owned()),
                    embeddings: serving.map(|p| p.capabilities().embeddings),
                    native_apis: serving.map(|p| p.capabilities().native_apis.clone()),
                    hash: serving.map(|p| p.hash().to_owned()),
                    loaded_at: serving.and_then(|p| p.loaded_at().format(&Rfc3339).ok()),
                    state: if serving.is_some() { "serving" } else { "refused" },
                    last_error: state.last_error.as_ref().map(|(message, _)| message.clone()),
                    last_error_at: state.last_error.as_ref().and_then(|(_, at)| at.format(&Rfc3339).ok()),
                }
            })
            .collect()
    }

    /// Watch `dir` (the folder itself, not recursive: watching a file would be lost when a new
    /// version is renamed over it) and reload changed files in a background task, following
    /// the rules in the module documentation. Must be called within a tokio runtime. Dropping
    /// the returned guard stops watching.
    pub fn watch(self: &Arc<Self>, dir: &Path) -> Result<WatchGuard, RuntimeError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RuntimeError::NoAsyncRuntime)?;
        let watch_error = |source| RuntimeError::Watch { dir: dir.to_path_buf(), source };
        let (events, received) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                Ok(event) if is_change(&event.kind) => {
                    for path in event.paths {
                        // Fails only when the reload task is gone, i.e. we are shutting down.
                        let _ = events.send(path);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "plugin folder watcher error"),
            }
        })
        .map_err(watch_error)?;
        watcher.watch(dir, RecursiveMode::NonRecursive).map_err(watch_error)?;
        tracing::info!(dir = %dir.display(), "watching the plugin folder");
        let task = handle.spawn(reload_task(Arc::downgrade(self), dir.to_path_buf(), received));
        Ok(WatchGuard { _watcher: watcher, task })
    }

    fn lock_files(&self) -> MutexGuard<'_, BTreeMap<String, FileState>> {
        // The lock is never held across an await or a call that can panic; a poisoned lock
        // still holds consistent data.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bring one file's status in line with the file system, then retry any file that was
    /// refused for a name that this freed.
    async fn sync_path(&self, path: PathBuf, force: bool) {
        let _one_at_a_time = self.sync.lock().await;
        let mut queue = VecDeque::from([(path, force)]);
        while let Some((path, force)) = queue.pop_front() {
            for name in self.sync_file(&path, force).await {
                let files = self.lock_files();
                let waiting = files.values().filter(|state| state.conflict.as_deref() == Some(&name));
                queue.extend(waiting.map(|state| (state.path.clone(), true)));
            }
        }
    }

    /// Returns the names this freed (unloaded, or replaced by another name).
    async fn sync_file(&self, path: &Path, force: bool) -> Vec<String> {
        let Some(file) = file_key(path) else {
            return Vec::new();
        };
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.unload(&file),
            Err(e) => {
                self.refuse(&file, path, None, None, format!("cannot read {file}: {e}"));
                return Vec::new();
            }
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        {
            let mut files = self.lock_files();
            if let Some(state) = files.get_mut(&file) {
                if state.serving.as_ref().is_some_and(|p| p.hash() == hash) {
                    // Back to what is serving (e.g. a bad file replaced by the good one again),
                    // or the same file dropped in again: nothing to load.
                    if state.last_error.is_none() {
                        tracing::debug!(file, %hash, "plugin file unchanged: this content is already serving");
                    }
                    state.last_error = None;
                    state.refused_hash = None;
                    state.conflict = None;
                    return Vec::new();
                }
                if !force && state.refused_hash.as_deref() == Some(hash.as_str()) {
                    tracing::debug!(file, %hash, "plugin file unchanged: this content was refused already");
                    return Vec::new();
                }
            }
        }
        if !self.is_trusted(&hash) {
            let message = format!(
                "{file} was refused: its sha256 {hash} is not in the trusted plugin hashes \
                 ([plugins] trusted_hashes / AIGATE_TRUSTED_PLUGINS)"
            );
            self.refuse(&file, path, Some(hash), None, message);
            return Vec::new();
        }
        match self.runtime.load_bytes(path.display().to_string(), bytes).await {
            Ok(plugin) => self.install(&file, path, plugin),
            Err(e) => {
                self.refuse(&file, path, Some(hash), None, e.to_string());
                Vec::new()
            }
        }
    }

    fn install(&self, file: &str, path: &Path, plugin: Arc<LoadedPlugin>) -> Vec<String> {
        let mut files = self.lock_files();
        let name = plugin.name().to_owned();
        let owner = files
            .iter()
            .find(|(other, state)| other.as_str() != file && state.serving.as_ref().is_some_and(|p| p.name() == name))
            .map(|(other, _)| other.clone());
        if let Some(owner) = owner {
            let message = format!(
                "{file} describes plugin `{name}`, which {owner} already serves; one name belongs \
                 to one file (remove or rename one of them)"
            );
            drop(files);
            self.refuse(file, path, Some(plugin.hash().to_owned()), Some(name), message);
            return Vec::new();
        }

        let state = files.entry(file.to_owned()).or_default();
        state.path = path.to_path_buf();
        state.last_error = None;
        state.refused_hash = None;
        state.conflict = None;
        let previous = state.serving.replace(Arc::clone(&plugin));
        self.loads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        let mut map = HashMap::clone(&self.plugins.load());
        let mut freed = Vec::new();
        if let Some(previous) = &previous
            && previous.name() != name
        {
            map.remove(previous.name());
            freed.push(previous.name().to_owned());
        }
        map.insert(name.clone(), Arc::clone(&plugin));
        self.plugins.store(Arc::new(map));
        drop(files);

        match previous {
            Some(previous) => tracing::info!(
                file,
                plugin = %name,
                version = %plugin.version(),
                previous_plugin = %previous.name(),
                previous_version = %previous.version(),
                hash = %plugin.hash(),
                "plugin reloaded"
            ),
            None => tracing::info!(
                file,
                plugin = %name,
                version = %plugin.version(),
                hash = %plugin.hash(),
                from_cache = plugin.from_cache(),
                "plugin loaded"
            ),
        }
        freed
    }

    fn refuse(&self, file: &str, path: &Path, hash: Option<String>, conflict: Option<String>, message: String) {
        self.loads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut files = self.lock_files();
        let state = files.entry(file.to_owned()).or_default();
        state.path = path.to_path_buf();
        state.refused_hash = hash;
        state.conflict = conflict;
        state.last_error = Some((one_line(&message), OffsetDateTime::now_utc()));
        match &state.serving {
            Some(serving) => tracing::warn!(
                file,
                plugin = %serving.name(),
                still_serving = %serving.version(),
                reason = %message,
                "plugin file refused; the previous version keeps serving"
            ),
            None => tracing::warn!(file, reason = %message, "plugin file refused"),
        }
    }

    fn unload(&self, file: &str) -> Vec<String> {
        let mut files = self.lock_files();
        let Some(state) = files.remove(file) else {
            return Vec::new();
        };
        let Some(plugin) = state.serving else {
            return Vec::new();
        };
        let name = plugin.name().to_owned();
        let map = self.plugins.load();
        if map.get(&name).is_some_and(|serving| Arc::ptr_eq(serving, &plugin)) {
            let mut map = HashMap::clone(&map);
            map.remove(&name);
            self.plugins.store(Arc::new(map));
        }
        drop(files);
        tracing::info!(file, plugin = %name, version = %plugin.version(), "plugin unloaded");
        vec![name]
    }
}

/// The reload task of one watched folder: debounce per path, then synchronise.
async fn reload_task(registry: Weak<PluginRegistry>, dir: PathBuf, mut events: mpsc::UnboundedReceiver<PathBuf>) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            event = events.recv() => match event {
                Some(path) => {
                    // Rebuild from the folder we watch and the file name, so keys match
                    // `load_dir`'s whatever form the watcher reports paths in.
                    if let Some(file) = file_key(&path) {
                        pending.insert(dir.join(file), Instant::now() + DEBOUNCE);
                    }
                }
                None => return,
            },
            () = tokio::time::sleep_until(next_due.unwrap_or_else(|| Instant::now() + DEBOUNCE)),
                if next_due.is_some() =>
            {
                let now = Instant::now();
                let due: Vec<PathBuf> =
                    pending.iter().filter(|(_, at)| **at <= now).map(|(path, _)| path.clone()).collect();
                for path in due {
                    pending.remove(&path);
                    let Some(registry) = registry.upgrade() else { return };
                    registry.sync_path(path, false).await;
                }
            }
        }
    }
}

/// Events that may mean a file's content or presence changed. Our own reads show up as
/// `Access(Open)` / `Access(Close(Read))` and must not trigger a reload.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Other => true,
    }
}

/// The registry key of a plugin file: its file name, when it is a visible `*.wasm` file.
fn file_key(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    (name.ends_with(".wasm") && name.len() > ".wasm".len() && !name.starts_with('.')).then(|| name.to_owned())
}

async fn list_plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut paths = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if file_key(&path).is_some() && entry.file_type().await?.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// A refusal as `/admin/plugins` shows it: one line, at most [`MAX_SHOWN_ERROR`] bytes. Errors
/// from the component parser span lines and dump bytes one per line (`expected=[\n 0x0,\n …]`);
/// the log keeps the whole text.
fn one_line(message: &str) -> String {
    let mut line = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect::<Vec<_>>()
        .join(" ")
        .replace("[ ", "[")
        .replace(", ]", "]");
    if line.len() > MAX_SHOWN_ERROR {
        let mut end = MAX_SHOWN_ERROR;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// Longest `last_error` shown in `/admin/plugins`.
const MAX_SHOWN_ERROR: usize = 600;

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    #[test]
    fn only_visible_wasm_files_count() {
        assert_eq!(file_key(Path::new("/p/qwen.wasm")).as_deref(), Some("qwen.wasm"));
        for ignored in ["/p/.qwen.wasm", "/p/qwen.wasm.tmp", "/p/.wasm", "/p/qwen", "/p/x.WASM.part"] {
            assert_eq!(file_key(Path::new(ignored)), None, "{ignored}");
        }
    }

    #[test]
    fn own_reads_do_not_count_as_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn a_refusal_is_shown_on_one_line() {
        let parser = "failed to parse WebAssembly module\n\nCaused by:\n    magic header not detected: bad magic number - expected=[\n        0x0,\n        0x61,\n    ] actual=[\n        0x6e,\n    ] (at offset 0x0)";
        assert_eq!(
            one_line(parser),
            "failed to parse WebAssembly module magic header not detected: bad magic number - expected=[0x0, 0x61] actual=[0x6e] (at offset 0x0)"
        );
        let long = "x".repeat(MAX_SHOWN_ERROR * 2);
        assert_eq!(one_line(&long).len(), MAX_SHOWN_ERROR + '…'.len_utf8());
    }
}
