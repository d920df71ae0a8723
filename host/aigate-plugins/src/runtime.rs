//! [`PluginRuntime`]: the one wasmtime engine, its linker, the epoch ticker, the compile cache,
//! and loading (compile → pre-link → validate) of plugin components.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::canonical::{self, PluginInfo, ProviderPre};
use crate::compiler::{self, ChildFailure, Compiler};
use crate::error::{LoadError, RuntimeError};
use crate::instance::{AnyPre, LoadedPlugin, Sandbox, StoreState};
use crate::{compat_0_1, compat_0_2, contract_compatible};

/// How often the ticker thread advances the engine's epoch. A plugin's CPU budget is counted in
/// these ticks, so this is also the granularity of [`RuntimeConfig::cpu_timeout`].
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

// What one instance slot of the pool holds. A Rust plugin built for `wasm32-wasip2` has 1 linear
// memory, 2 tables and 3 core instances (the module and the component's shims). A component
// may use up to the `MAX_*` of each (more is refused at load time with wasmtime's message); one
// that uses more than a slot holds simply takes more of the pool, leaving fewer slots for others.
const MEMORIES_PER_SLOT: u32 = 1;
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_SLOT: u32 = 4;
const MAX_TABLES_PER_COMPONENT: u32 = 8;
const CORE_INSTANCES_PER_SLOT: u32 = 8;
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Limits of the plugin sandbox. Every limit applies per instance (that is, per request) or per
/// call, never to a plugin as a whole.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Largest linear memory one instance may grow to. Default 64 MiB. Growing past it traps and
    /// fails the call with [`crate::PluginFault::OutOfMemory`].
    pub memory_limit_bytes: usize,
    /// CPU budget of one call, enforced with epoch interruption. Default 200 ms. Counted in
    /// ticks of a few milliseconds while the plugin runs; a plugin over budget is stopped with
    /// [`crate::PluginFault::CpuTimeout`].
    pub cpu_timeout: Duration,
    /// Wall-clock limit of one call (and of instantiation), enforced with a tokio timeout.
    /// Default 1 s. Catches what epochs cannot: a plugin blocked inside a host call.
    pub wall_timeout: Duration,
    /// Instance slots of the pooling allocator: how many instances (requests and open streams)
    /// may exist at once across all plugins. Default 1000. When they are all taken,
    /// instantiation fails with [`crate::PluginFault::Busy`]. A slot fits a typical Rust plugin
    /// (one linear memory); a plugin with two memories takes two. The pool reserves (but does
    /// not commit) address space up front: about 4 GiB per slot, so that compiled code can skip
    /// bounds checks, so 1000 slots take ~4 TiB of the 128 TiB a 64-bit Linux process has.
    pub max_instances: u32,
    /// Folder for compiled components (`<sha256>-<engine>.cwasm`). `None` compiles every plugin
    /// at every load. With a cache, a restart or a reload of a known file takes a few
    /// milliseconds instead of hundreds.
    ///
    /// Each file ends with an HMAC-SHA256 under a per-installation secret kept beside the
    /// folder, in `<cache_dir>.key` (32 random bytes, created on first use, owner-only). A file
    /// whose MAC does not verify (planted, tampered with, or written by another installation)
    /// is never run: the plugin is compiled from its `.wasm` again, with a warning. Several
    /// gateways may share a folder only if they share the key file.
    pub cache_dir: Option<PathBuf>,
    /// Where a component missing from the cache is compiled: in this process (the default), or
    /// in a child process ([`Compiler::Subprocess`], what the gateway binary uses).
    pub compiler: Compiler,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit_bytes: 64 << 20,
            cpu_timeout: Duration::from_millis(200),
            wall_timeout: Duration::from_secs(1),
            max_instances: 1000,
            cache_dir: None,
            compiler: Compiler::InProcess,
        }
    }
}

/// The plugin runtime: one wasmtime [`Engine`] and one pre-configured [`Linker`] shared by every
/// plugin. Cheap to clone (an `Arc` inside); clones share everything.
///
/// The engine uses the component model, the pooling allocator (instance slots are reserved
/// once, so a fresh instance per request costs tens of microseconds) and epoch interruption
/// (a background thread advances the epoch every few milliseconds; it stops when the runtime
/// and every plugin loaded through it are dropped).
///
/// The linker provides WASI 0.2 with an empty context: no files, no network, no environment, no
/// arguments, closed stdin, stdout discarded and stderr captured (bounded) so a panic message
/// can be reported. A Rust plugin's standard library imports WASI even when it never uses it.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) inner: Arc<RuntimeInner>,
}

/// Shared by the runtime and every plugin loaded through it (so the ticker outlives neither).
pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) config: RuntimeConfig,
    /// `cpu_timeout` in epoch ticks (at least one).
    pub(crate) cpu_budget_ticks: u64,
    /// Identifies the engine settings in cache file names, so a `.cwasm` compiled by another
    /// wasmtime version or configuration is never even tried.
    engine_key: String,
    /// The secret of the cache files' MACs (read or created with the cache folder).
    cache_key: Option<CacheKey>,
    /// Instances and faults per plugin name, for metrics.
    pub(crate) counters: crate::counters::CounterBook,
    _ticker: EpochTicker,
}

impl fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRuntime").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Create the engine, the linker and the epoch ticker, and the cache folder if configured.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine =
            Engine::new(&engine_config(&config)).map_err(|e| RuntimeError::Engine { message: format!("{e:#}") })?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Linker { message: format!("{e:#}") })?;
        // The contract's `types` interface holds only types, but the component still imports it,
        // at the version it was built against: provide every supported one.
        canonical::types_interface::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .and_then(|()| linker.instance(compat_0_2::TYPES_INTERFACE).map(drop))
            .and_then(|()| compat_0_1::types_interface::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| RuntimeError::Linker { message: format!("{e:#}") })?;

        let cache_key = match &config.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| RuntimeError::CacheDir { path: dir.clone(), source })?;
                Some(CacheKey::read_or_create(dir)?)
            }
            None => None,
        };

        let tick_nanos = EPOCH_TICK.as_nanos().max(1);
        let cpu_budget_ticks = u64::try_from(config.cpu_timeout.as_nanos().div_ceil(tick_nanos)).unwrap_or(u64::MAX);
        let engine_key = engine_key(&engine);
        let ticker = EpochTicker::start(engine.clone()).map_err(RuntimeError::Ticker)?;

        Ok(PluginRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                cpu_budget_ticks: cpu_budget_ticks.max(1),
                engine_key,
                cache_key,
                counters: crate::counters::CounterBook::default(),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration the runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Read and load one plugin file. See [`PluginRuntime::load_bytes`].
    pub async fn load(&self, path: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
        let origin = path.display().to_string();
        let bytes = tokio::fs::read(path).await.map_err(|source| LoadError::Read { origin: origin.clone(), source })?;
        self.load_bytes(origin, bytes).await
    }

    /// Load a plugin from its bytes; `origin` (usually the file path) only labels statuses and
    /// errors.
    ///
    /// Steps, each of which can refuse the plugin with a [`LoadError`]:
    /// 1. Compile on a blocking thread (never on the async runtime: it takes hundreds of
    ///    milliseconds), or, with a cache folder, load `<sha256 of the bytes>-<engine>.cwasm`
    ///    when it exists and its MAC verifies (a few milliseconds). A cache file that cannot be
    ///    used is ignored and rewritten.
    /// 2. Pre-link against the host's linker (`InstancePre`): type-checks the component against
    ///    the `aigate:provider` world of the contract version the component exports (0.3.x, 0.2.x
    ///    through [`compat_0_2`], or 0.1.x through the [`compat_0_1`] adapter) once, so each
    ///    request only instantiates.
    /// 3. Validate: instantiate once, call `describe`, and check the facts: the contract version
    ///    must be compatible with [`crate::CONTRACT_VERSION`] (see [`contract_compatible`]), the name a
    ///    lowercase identifier (`[a-z0-9][a-z0-9._-]*`, at most 64 bytes), the version semver,
    ///    the default base URL an absolute http(s) URL.
    pub async fn load_bytes(&self, origin: String, bytes: Vec<u8>) -> Result<Arc<LoadedPlugin>, LoadError> {
        let started = Instant::now();
        let (component, from_cache, hash) = self.compile_or_load(&origin, bytes).await?;

        let pre = self.pre_link(&origin, &component)?;

        let mut sandbox = Sandbox::new(&self.inner, &pre, &origin)
            .await
            .map_err(|fault| LoadError::Describe { origin: origin.clone(), fault })?;
        let info = sandbox.describe().await.map_err(|fault| LoadError::Describe { origin: origin.clone(), fault })?;
        let capabilities =
            sandbox.capabilities().await.map_err(|fault| LoadError::Describe { origin: origin.clone(), fault })?;
        drop(sandbox);
        validate_info(&origin, &info)?;
        crate::validate::capabilities(&capabilities)
            .map_err(|what| LoadError::InvalidInfo { origin: origin.clone(), what })?;
        let exported = match &pre {
            AnyPre::Current(_) => crate::CONTRACT_VERSION,
            AnyPre::V0_2(_) => compat_0_2::VERSION,
            AnyPre::V0_1(_) => compat_0_1::VERSION,
        };
        if !same_minor(&info.contract_version, exported) {
            return Err(LoadError::InvalidInfo {
                origin,
                what: format!(
                    "describe reports contract version {}, but the component exports \
                     aigate:provider/adapter@{exported}",
                    info.contract_version
                ),
            });
        }

        tracing::debug!(
            plugin = %info.name,
            version = %info.version,
            origin = %origin,
            from_cache,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin compiled and validated"
        );
        Ok(Arc::new(LoadedPlugin::new(
            info,
            capabilities,
            hash,
            origin,
            OffsetDateTime::now_utc(),
            from_cache,
            pre,
            Arc::clone(&self.inner),
        )))
    }
}

impl PluginRuntime {
    /// Pre-link the component with the bindings of the contract version it exports (the
    /// current one, or an older one: [`compat_0_2`], [`compat_0_1`]); any other version is refused
    /// with a message naming it and the versions this host accepts.
    fn pre_link(&self, origin: &str, component: &Component) -> Result<AnyPre, LoadError> {
        const ADAPTER: &str = "aigate:provider/adapter@";
        let ty = component.component_type();
        let exported: Vec<String> = ty
            .exports(&self.inner.engine)
            .filter_map(|(name, _)| name.strip_prefix(ADAPTER).map(str::to_owned))
            .collect();
        let contract_error = |message: String| LoadError::Contract { origin: origin.to_owned(), message };
        let version = match exported.as_slice() {
            [version] => version.clone(),
            [] => {
                return Err(contract_error("the component exports no aigate:provider/adapter interface".to_owned()));
            }
            many => {
                return Err(contract_error(format!(
                    "the component exports several adapter versions: {}",
                    many.join(", ")
                )));
            }
        };
        let link = |e: wasmtime::Error| contract_error(format!("{e:#}"));
        let instance_pre = self.inner.linker.instantiate_pre(component).map_err(link)?;
        if same_minor(&version, crate::CONTRACT_VERSION) {
            ProviderPre::new(instance_pre).map(AnyPre::Current).map_err(link)
        } else if same_minor(&version, compat_0_2::VERSION) {
            compat_0_2::ProviderPre::new(instance_pre).map(AnyPre::V0_2).map_err(link)
        } else if same_minor(&version, compat_0_1::VERSION) {
            compat_0_1::ProviderPre::new(instance_pre).map(AnyPre::V0_1).map_err(link)
        } else {
            Err(LoadError::IncompatibleContract { origin: origin.to_owned(), plugin_contract: version })
        }
    }
}

/// Whether two semver texts share major and minor version (the unit the host has bindings for).
fn same_minor(a: &str, b: &str) -> bool {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => a.major == b.major && a.minor == b.minor,
        _ => false,
    }
}

/// Bytes of each linear memory reset with `memset` (kept resident) when its
/// slot is freed: a Rust plugin's stack, data and typical heap fit.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
const DECOMMIT_BATCH: usize = 16;

pub(crate) fn engine_config(config: &RuntimeConfig) -> Config {
    let slots = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_memories(slots.saturating_mul(MEMORIES_PER_SLOT))
        .total_tables(slots.saturating_mul(TABLES_PER_SLOT))
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_SLOT))
        // Every call runs on a fiber (async), so every live instance may need a stack.
        .total_stacks(slots)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        // The limiter traps at the limit; the pool agrees, so no memory can outgrow it even if
        // a future change forgot the limiter.
        .max_memory_size(config.memory_limit_bytes)
        // A fresh instance per request means a slot is freed per request. By
        // default freeing `madvise`s the memory away, so the next request
        // page-faults it back in and every free shoots down TLBs on the other
        // cores (seen in `perf` of `cargo xtask bench`). Resetting the first
        // pages with `memset` instead keeps the hot part of a slot resident;
        // decommits of the rest are batched.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .decommit_batch_size(DECOMMIT_BATCH)
        // Where the kernel has `PAGEMAP_SCAN` (Linux 6.7+), reset only the
        // pages a request wrote instead of `memset`ting all kept-resident
        // bytes: a request touches a small part of them (a Rust plugin's
        // 1 MiB shadow stack sits there untouched), and the memset was the
        // largest item of the gateway's profile under load. Elsewhere it
        // falls back to the memset; either way a freed slot holds nothing of
        // the request that used it (`faults::a_value_written_by_one_request_…`).
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut engine = Config::new();
    engine
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    engine
}

/// A stable text key for the engine's compile settings (wasmtime version, target, flags):
/// sha256 over what [`Engine::precompile_compatibility_hash`] hashes.
fn engine_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};

    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            // Only `write` is used: the digest is read from the inner hasher below.
            0
        }
    }

    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hex::encode(hasher.0.finalize());
    digest[..16].to_owned()
}

/// The per-installation secret of the cache files' MACs.
pub(crate) struct CacheKey([u8; 32]);

/// Length of the HMAC-SHA256 tag at the end of a cache file.
const TAG_LEN: usize = 32;

impl CacheKey {
    /// `<dir>.key`: beside the folder, not in it, so whoever can only write cache files cannot
    /// read it. Created atomically (a temp file hard-linked to the name, so two processes
    /// starting at once agree on one key), readable by the owner only.
    fn read_or_create(dir: &Path) -> Result<Self, RuntimeError> {
        let dir: PathBuf = dir.components().collect();
        let mut name = dir.clone().into_os_string();
        name.push(".key");
        let path = PathBuf::from(name);
        let error = |message: String| RuntimeError::CacheKey { path: path.clone(), message };
        if !path.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| error(format!("no random bytes: {e}")))?;
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let tmp = path.with_file_name(format!(
                ".{}.{}.{}.tmp",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let created = write_private(&tmp, &key).and_then(|()| std::fs::hard_link(&tmp, &path));
            let _ = std::fs::remove_file(&tmp);
            match created {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(error(e.to_string())),
            }
        }
        let bytes = std::fs::read(&path).map_err(|e| error(e.to_string()))?;
        let key = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| error(format!("it holds {} bytes, not 32", bytes.len())))?;
        Ok(CacheKey(key))
    }

    /// The tag of a cache file: over the source's hash, the engine key and the compiled bytes.
    fn tag(&self, hash: &str, engine_key: &str, compiled: &[u8]) -> Hmac<sha2_for_hmac::Sha256> {
        // A 32-byte key is always a valid HMAC key; `new_from_slice` cannot fail here.
        let mut mac = <Hmac<sha2_for_hmac::Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in [hash.as_bytes(), b"\0", engine_key.as_bytes(), b"\0", compiled] {
            mac.update(part);
        }
        mac
    }
}

/// Writes a new file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

impl PluginRuntime {
    /// The compiled component for `bytes`: from the cache when a verified file is there, else
    /// compiled by the configured [`Compiler`] (and written to the cache). Also returns whether
    /// it came from the cache and the bytes' sha256. Nothing here runs on the async workers.
    async fn compile_or_load(&self, origin: &str, bytes: Vec<u8>) -> Result<(Component, bool, String), LoadError> {
        let internal = |e: tokio::task::JoinError| LoadError::Internal {
            origin: origin.to_owned(),
            message: format!("the compile task failed: {e}"),
        };
        let inner = Arc::clone(&self.inner);
        let task_origin = origin.to_owned();
        let (cached, hash, bytes) = tokio::task::spawn_blocking(move || {
            let hash = hex::encode(Sha256::digest(&bytes));
            (from_cache(&inner, &task_origin, &hash), hash, bytes)
        })
        .await
        .map_err(internal)?;
        if let Some(component) = cached {
            return Ok((component, true, hash));
        }

        let inner = Arc::clone(&self.inner);
        let task_origin = origin.to_owned();
        let task_hash = hash.clone();
        let component = match self.inner.config.compiler.clone() {
            Compiler::InProcess => tokio::task::spawn_blocking(move || {
                let component = Component::new(&inner.engine, &bytes)
                    .map_err(|e| LoadError::Compile { origin: task_origin, message: format!("{e:#}") })?;
                if inner.cache_key.is_some() {
                    match component.serialize() {
                        Ok(serialized) => to_cache(&inner, &task_hash, serialized),
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot serialize compiled plugin"),
                    }
                }
                Ok(component)
            })
            .await
            .map_err(internal)??,
            Compiler::Subprocess { program, args, timeout } => {
                let compiled = compiler::compile_in_child(&inner.config, &program, &args, timeout, &bytes)
                    .await
                    .map_err(|failure| match failure {
                        ChildFailure::Refused(message) => LoadError::Compile { origin: origin.to_owned(), message },
                        ChildFailure::Broken(message) => LoadError::Compiler { origin: origin.to_owned(), message },
                    })?;
                tokio::task::spawn_blocking(move || {
                    // SAFETY: `deserialize` runs the machine code in `compiled`, so it must be
                    // a component compiled by wasmtime for this engine configuration. It is the
                    // output of `compiler::child_main`, the configured compiler program (this
                    // gateway's own executable), read from a pipe only it writes to, compiled
                    // with the engine settings passed to it; wasmtime checks the header, its
                    // version and the engine settings and refuses a mismatch.
                    #[allow(unsafe_code)]
                    let component = unsafe { Component::deserialize(&inner.engine, &compiled) };
                    let component = component.map_err(|e| LoadError::Compiler {
                        origin: task_origin,
                        message: format!("its output does not load in this engine: {e:#}"),
                    })?;
                    to_cache(&inner, &task_hash, compiled);
                    Ok(component)
                })
                .await
                .map_err(internal)??
            }
        };
        Ok((component, false, hash))
    }
}

/// The cache file of the component with sha256 `hash` and the key of its MAC, when the runtime
/// has a cache.
fn cache_entry<'a>(inner: &'a RuntimeInner, hash: &str) -> Option<(PathBuf, &'a CacheKey)> {
    let dir = inner.config.cache_dir.as_ref()?;
    let key = inner.cache_key.as_ref()?;
    Some((dir.join(format!("{hash}-{}.cwasm", inner.engine_key)), key))
}

/// The cached compiled form of the component with sha256 `hash`, if a file is there and its MAC
/// verifies. Blocking (file I/O).
fn from_cache(inner: &RuntimeInner, origin: &str, hash: &str) -> Option<Component> {
    let (path, key) = cache_entry(inner, hash)?;
    let file = std::fs::read(&path).ok()?;
    match load_cached(inner, key, hash, &file) {
        Ok(component) => Some(component),
        Err(why) => {
            tracing::warn!(
                file = %path.display(),
                origin,
                "cached compiled plugin not used ({why}); compiling it from its .wasm again"
            );
            None
        }
    }
}

/// Writes `serialized` (a compiled component) to the cache with its MAC. Blocking (file I/O);
/// a failure only warns: the next load compiles again.
fn to_cache(inner: &RuntimeInner, hash: &str, mut serialized: Vec<u8>) {
    let Some((path, key)) = cache_entry(inner, hash) else {
        return;
    };
    let tag = key.tag(hash, &inner.engine_key, &serialized).finalize();
    serialized.extend_from_slice(&tag.into_bytes());
    if let Err(e) = write_cache_file(&path, &serialized) {
        tracing::warn!(file = %path.display(), error = %e, "cannot write plugin cache file");
    }
}

/// A cache file's component, if its MAC verifies; else why not.
fn load_cached(inner: &RuntimeInner, key: &CacheKey, hash: &str, file: &[u8]) -> Result<Component, String> {
    let split = file.len().checked_sub(TAG_LEN).ok_or("too short")?;
    let (compiled, tag) = file.split_at(split);
    key.tag(hash, &inner.engine_key, compiled)
        .verify_slice(tag)
        .map_err(|_| "its MAC does not verify: not written by this installation, or changed since".to_owned())?;
    // SAFETY: `deserialize` runs the machine code in `compiled`, so it must be a component this
    // crate compiled with this engine configuration. It is: the bytes were read into memory
    // (so nobody can change them after the check) and carry a MAC, under this installation's
    // secret, over them, the source's sha256 and the engine key, which only
    // `to_cache` computes, right after compiling. Wasmtime additionally checks the
    // header and the engine settings and refuses a mismatch.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(&inner.engine, compiled) };
    component.map_err(|e| format!("{e:#}"))
}

/// Write atomically: a temp file in the same folder, then rename over the final name. A file
/// that another load may have mapped is replaced as a directory entry, never written into.
fn write_cache_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file_name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Check what `describe` returned.
fn validate_info(origin: &str, info: &PluginInfo) -> Result<(), LoadError> {
    if !contract_compatible(&info.contract_version) {
        return Err(LoadError::IncompatibleContract {
            origin: origin.to_owned(),
            plugin_contract: info.contract_version.clone(),
        });
    }
    let invalid = |what: String| LoadError::InvalidInfo { origin: origin.to_owned(), what };
    if !valid_plugin_name(&info.name) {
        return Err(invalid(format!(
            "name {:?} is not a lowercase identifier ([a-z0-9][a-z0-9._-]*, at most 64 bytes)",
            info.name
        )));
    }
    if let Err(e) = semver::Version::parse(&info.version) {
        return Err(invalid(format!("version {:?} is not semver: {e}", info.version)));
    }
    if let Err(what) = crate::validate::http_url(&info.default_base_url) {
        return Err(invalid(format!("default-base-url: {what}")));
    }
    match &info.auth {
        canonical::AuthScheme::Header(name) => {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(format!("auth header name {name:?} is not a valid header name")));
            }
        }
        canonical::AuthScheme::Query(name) => {
            if name.is_empty() {
                return Err(invalid("auth query parameter name is empty".to_owned()));
            }
        }
        canonical::AuthScheme::None | canonical::AuthScheme::Bearer => {}
    }
    Ok(())
}

/// Plugin names are model prefixes (`qwen:qwen-max`) and registry keys: keep them boring.
fn valid_plugin_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && name.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// Advances the engine epoch every [`EPOCH_TICK`] on a small std thread. Dropping the ticker
/// drops the channel's sender, which wakes the thread and ends it.
struct EpochTicker {
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new().name("aigate-plugin-epoch".to_owned()).spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                engine.increment_epoch();
            }
        })?;
        Ok(EpochTicker { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn plugin_names_are_lowercase_identifiers() {
        for ok in ["qwen", "openai", "open-ai.v2", "a", "x_1"] {
            assert!(valid_plugin_name(ok), "{ok}");
        }
        for bad in ["", "Qwen", "qwen:max", "a/b", "-x", " qwen", &"a".repeat(65)] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
    }

    #[test]
    fn cache_file_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.cwasm");
        write_cache_file(&path, b"one").unwrap();
        write_cache_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temp file left behind: {names:?}");
    }

    #[test]
    fn the_default_configuration_fits_this_machine() {
        // 1000 slots reserve a few TiB of address space; the engine must still come up.
        PluginRuntime::new(RuntimeConfig::default()).unwrap();
    }

    #[test]
    fn engine_key_is_stable_for_one_configuration() {
        let config = RuntimeConfig { max_instances: 2, ..RuntimeConfig::default() };
        let a = Engine::new(&engine_config(&config)).unwrap();
        let b = Engine::new(&engine_config(&config)).unwrap();
        assert_eq!(engine_key(&a), engine_key(&b));
        assert_eq!(engine_key(&a).len(), 16);
    }

    #[test]
    fn contract_version_check_names_the_host_version() {
        let info = PluginInfo {
            name: "x".into(),
            version: "1.0.0".into(),
            contract_version: "0.4.0".into(),
            default_base_url: "https://example.com".into(),
            auth: canonical::AuthScheme::Bearer,
            models: vec![],
        };
        let err = validate_info("x.wasm", &info).unwrap_err();
        assert!(matches!(err, LoadError::IncompatibleContract { .. }), "{err}");
        assert!(err.to_string().contains(crate::CONTRACT_VERSION));
    }
}
