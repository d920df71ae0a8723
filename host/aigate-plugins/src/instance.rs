//! [`LoadedPlugin`] (compiled and pre-linked, shared), [`PluginInstance`] (one fresh sandbox per
//! request) and [`StreamDecoder`] (one sandbox per stream), plus the per-call limits and the
//! mapping of every failure to a [`PluginFault`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::error::Elapsed;
use wasmtime::component::{ResourceAny, ResourceTable};
use wasmtime::{
    PoolConcurrencyLimitError, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::canonical::{
    self, Capabilities, ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, HttpRequest, HttpResponse,
    ModelInfo, PluginInfo, Provider, ProviderError, ProviderPre, SseEvent, StreamChunk,
};
use crate::error::PluginFault;
use crate::output::CapturedOutput;
use crate::runtime::RuntimeInner;
use crate::validate;
use crate::{compat_0_1, compat_0_2};

/// A plugin that was compiled, pre-linked and validated: everything needed to create instances
/// cheaply. Immutable and shared (`Arc`); the registry swaps whole `LoadedPlugin`s, so a request
/// that holds one (or an instance of one) finishes on that version even while a new one takes
/// over.
pub struct LoadedPlugin {
    info: PluginInfo,
    capabilities: Capabilities,
    counters: Arc<crate::counters::PluginCounters>,
    hash: String,
    source: String,
    loaded_at: OffsetDateTime,
    from_cache: bool,
    pre: AnyPre,
    runtime: Arc<RuntimeInner>,
}

/// A pre-linked component with the bindings of the contract version it exports: the current
/// one, 0.2 (the same types, fewer functions: [`compat_0_2`]), or 0.1 whose values
/// [`compat_0_1`] converts. Chosen once at load time.
pub(crate) enum AnyPre {
    Current(ProviderPre<StoreState>),
    V0_2(compat_0_2::ProviderPre<StoreState>),
    V0_1(compat_0_1::ProviderPre<StoreState>),
}

/// The instantiated counterpart of [`AnyPre`].
enum Bindings {
    Current(Provider),
    V0_2(compat_0_2::Provider),
    V0_1(compat_0_1::Provider),
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("hash", &self.hash)
            .field("source", &self.source)
            .field("loaded_at", &self.loaded_at)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: PluginInfo,
        capabilities: Capabilities,
        hash: String,
        source: String,
        loaded_at: OffsetDateTime,
        from_cache: bool,
        pre: AnyPre,
        runtime: Arc<RuntimeInner>,
    ) -> Self {
        let counters = runtime.counters.of(&info.name);
        LoadedPlugin { info, capabilities, counters, hash, source, loaded_at, from_cache, pre, runtime }
    }

    /// What `capabilities` returned at load time: embeddings, natively spoken inbound APIs
    /// (nothing for a plugin of contract 0.1 or 0.2).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// What `describe` returned when the plugin was loaded (the plugin's static facts).
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The provider name clients use as the model prefix (`qwen`).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The plugin's own version (semver).
    pub fn version(&self) -> &str {
        &self.info.version
    }

    /// The contract version the plugin was built against.
    pub fn contract_version(&self) -> &str {
        &self.info.contract_version
    }

    /// Hex sha256 of the component file's bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where the plugin came from (the file path, or the label given to `load_bytes`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// When this version finished loading.
    pub fn loaded_at(&self) -> OffsetDateTime {
        self.loaded_at
    }

    /// Whether the compiled code came from the cache folder rather than a fresh compile.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// A fresh instance for one request: a new store with its own memory limit, CPU budget and
    /// WASI context, instantiated from the pre-linked component (tens of microseconds with the
    /// pooling allocator).
    ///
    /// Fails with [`PluginFault::Busy`] when every instance slot is in use, or with another
    /// fault if the plugin's start-up code traps or overruns.
    pub async fn instantiate(self: &Arc<Self>) -> Result<PluginInstance, PluginFault> {
        self.counters.instantiated();
        let mut sandbox = Sandbox::new(&self.runtime, &self.pre, &self.info.name).await.inspect_err(|fault| {
            self.counters.fault(fault);
        })?;
        sandbox.counters = Some(Arc::clone(&self.counters));
        Ok(PluginInstance { plugin: Arc::clone(self), sandbox })
    }
}

/// One live instance of a plugin, for one request. Owns its store: nothing a plugin keeps in
/// memory survives into another request.
///
/// Every call is limited by the CPU budget and the wall-clock timeout of
/// [`crate::RuntimeConfig`] and by its memory limit. A call returns `Err(PluginFault)` when the
/// plugin failed (trap, timeout, out of memory, malformed result), and
/// `Ok(Err(ProviderError))` when the plugin worked and reports an error of the provider (or a
/// request it cannot translate). After a fault the instance is poisoned: every further call
/// returns the same fault without entering the plugin again.
pub struct PluginInstance {
    plugin: Arc<LoadedPlugin>,
    sandbox: Sandbox,
}

impl fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin.info.name)
            .field("version", &self.plugin.info.version)
            .field("fault", &self.sandbox.fault)
            .finish_non_exhaustive()
    }
}

/// Run one export call inside the sandbox's limits:
/// `call!(sandbox, |guest, store| current_call, v0_1_call)`, where the second future calls a
/// 0.1.0 plugin and converts its result to the current types ([`compat_0_1`]).
/// A macro rather than a function because the call's future borrows both the bindings and the
/// store, which a closure-returning-future signature cannot express without boxing.
macro_rules! call {
    ($sandbox:expr, |$guest:ident, $store:ident| $current:expr, $v0_1:expr) => {{
        let sandbox: &mut Sandbox = $sandbox;
        sandbox.begin()?;
        let wall = sandbox.runtime.config.wall_timeout;
        let $store = &mut sandbox.store;
        let outcome = match &sandbox.bindings {
            Bindings::Current(bindings) => {
                let $guest = bindings.aigate_provider_adapter();
                tokio::time::timeout(wall, $current).await
            }
            // The 0.2 bindings share the canonical types: the same call, other export indices.
            Bindings::V0_2(bindings) => {
                let $guest = bindings.aigate_provider_adapter();
                tokio::time::timeout(wall, $current).await
            }
            Bindings::V0_1(bindings) => {
                let $guest = bindings.aigate_provider_adapter();
                tokio::time::timeout(wall, $v0_1).await
            }
        };
        sandbox.end(outcome)
    }};
}

/// Like [`call!`], for a function only the current contract has. The caller has checked that
/// the bindings are current; other bindings are a host bug, reported as a fault, never a panic.
macro_rules! call_current {
    ($sandbox:expr, |$guest:ident, $store:ident| $current:expr) => {{
        let sandbox: &mut Sandbox = $sandbox;
        sandbox.begin()?;
        let wall = sandbox.runtime.config.wall_timeout;
        let $store = &mut sandbox.store;
        let outcome = match &sandbox.bindings {
            Bindings::Current(bindings) => {
                let $guest = bindings.aigate_provider_adapter();
                tokio::time::timeout(wall, $current).await
            }
            Bindings::V0_2(_) | Bindings::V0_1(_) => {
                Ok(Err(wasmtime::Error::msg("the host called a function of a newer contract than the plugin's")))
            }
        };
        sandbox.end(outcome)
    }};
}

impl PluginInstance {
    /// The plugin (and version) this instance belongs to.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// Translate a canonical request into the provider's HTTP request. `base_url` is the
    /// operator's configured base URL, or the plugin's `default_base_url`.
    ///
    /// The returned request is checked: the method must be a valid HTTP method, the URL an
    /// absolute http(s) URL, every header name and value valid; anything else is
    /// [`PluginFault::Malformed`].
    pub async fn build_request(
        &mut self,
        base_url: &str,
        request: &ChatRequest,
    ) -> Result<Result<HttpRequest, ProviderError>, PluginFault> {
        let result =
            call!(&mut self.sandbox, |guest, store| guest.call_build_request(store, base_url, request), async {
                let request = compat_0_1::chat_request(request);
                let result = guest.call_build_request(store, base_url, &request).await;
                result.map(|r| compat_0_1::result(r, compat_0_1::http_request))
            })?;
        self.sandbox.check(&result, |r| validate::provider_result(r, validate::http_request))?;
        Ok(result)
    }

    /// Translate the provider's whole response (any status) into a canonical response or the
    /// provider's error.
    pub async fn parse_response(
        &mut self,
        response: &HttpResponse,
    ) -> Result<Result<ChatResponse, ProviderError>, PluginFault> {
        let result = call!(&mut self.sandbox, |guest, store| guest.call_parse_response(store, response), async {
            let response = compat_0_1::http_response(response);
            let result = guest.call_parse_response(store, &response).await;
            result.map(|r| compat_0_1::result(r, compat_0_1::chat_response))
        })?;
        self.sandbox.check(&result, |r| validate::provider_result(r, validate::chat_response))?;
        Ok(result)
    }

    /// The request that lists the provider's models, when the provider has such an endpoint.
    /// Checked like [`PluginInstance::build_request`].
    pub async fn build_models_request(&mut self, base_url: &str) -> Result<Option<HttpRequest>, PluginFault> {
        let result =
            call!(&mut self.sandbox, |guest, store| guest.call_build_models_request(store, base_url), async {
                let result = guest.call_build_models_request(store, base_url).await;
                result.map(|r| r.map(compat_0_1::http_request))
            })?;
        self.sandbox.check(&result, |r| r.as_ref().map_or(Ok(()), validate::http_request))?;
        Ok(result)
    }

    /// Parse the provider's models list (chat models only).
    pub async fn parse_models(
        &mut self,
        response: &HttpResponse,
    ) -> Result<Result<Vec<ModelInfo>, ProviderError>, PluginFault> {
        let result = call!(&mut self.sandbox, |guest, store| guest.call_parse_models(store, response), async {
            let response = compat_0_1::http_response(response);
            let result = guest.call_parse_models(store, &response).await;
            result.map(|r| compat_0_1::result(r, compat_0_1::models))
        })?;
        self.sandbox.check(&result, |r| validate::provider_result(r, |m| validate::models(m)))?;
        Ok(result)
    }

    /// Translate an embeddings request into the provider's HTTP request (contract 0.3). A plugin
    /// without embeddings (its [`LoadedPlugin::capabilities`], or an older contract) gets a 400
    /// provider error without being entered. Checked like [`PluginInstance::build_request`].
    pub async fn build_embeddings_request(
        &mut self,
        base_url: &str,
        request: &EmbeddingsRequest,
    ) -> Result<Result<HttpRequest, ProviderError>, PluginFault> {
        if let Some(error) = self.no_embeddings() {
            return Ok(Err(error));
        }
        let result = call_current!(&mut self.sandbox, |guest, store| guest
            .call_build_embeddings_request(store, base_url, request))?;
        self.sandbox.check(&result, |r| validate::provider_result(r, validate::http_request))?;
        Ok(result)
    }

    /// Translate the provider's embeddings response (any status) into vectors or the provider's
    /// error. The vectors are checked (finite numbers, one length for all); whether there is
    /// one per input is the caller's check, which knows the inputs.
    pub async fn parse_embeddings_response(
        &mut self,
        response: &HttpResponse,
    ) -> Result<Result<EmbeddingsResponse, ProviderError>, PluginFault> {
        if let Some(error) = self.no_embeddings() {
            return Ok(Err(error));
        }
        let result =
            call_current!(&mut self.sandbox, |guest, store| guest.call_parse_embeddings_response(store, response))?;
        self.sandbox.check(&result, |r| validate::provider_result(r, validate::embeddings_response))?;
        Ok(result)
    }

    /// The error for an embeddings call to a plugin that declared none.
    fn no_embeddings(&self) -> Option<ProviderError> {
        (!self.plugin.capabilities.embeddings).then(|| ProviderError {
            status: 400,
            error_type: "invalid_request_error".to_owned(),
            code: Some("embeddings_unsupported".to_owned()),
            message: format!(
                "provider '{}' (plugin {}, contract {}) does not serve embeddings",
                self.plugin.info.name, self.plugin.info.version, self.plugin.info.contract_version
            ),
            retryable: false,
        })
    }

    /// Turn this instance into the decoder of one SSE stream. `model` is the model the request
    /// asked for, as sent upstream. The decoder owns the instance (and its store) until the
    /// stream ends; the stateful guest decoder lives in that store.
    pub async fn stream_decoder(mut self, model: &str) -> Result<StreamDecoder, PluginFault> {
        let handle = call!(
            &mut self.sandbox,
            |guest, store| guest.stream_decoder().call_constructor(store, model),
            guest.stream_decoder().call_constructor(store, model)
        )?;
        Ok(StreamDecoder { plugin: self.plugin, sandbox: self.sandbox, handle })
    }
}

/// The decoder of one provider SSE stream: the plugin's `stream-decoder` resource in an instance
/// of its own. Same limits and poisoning as [`PluginInstance`]; the CPU budget and the
/// wall-clock timeout apply to each `push`/`finish` call, not to the stream as a whole.
///
/// Dropping the decoder drops the store and everything in it; the guest's destructor is not
/// run (there is nothing in a sandbox worth cleaning up).
pub struct StreamDecoder {
    plugin: Arc<LoadedPlugin>,
    sandbox: Sandbox,
    handle: ResourceAny,
}

impl fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("plugin", &self.plugin.info.name)
            .field("version", &self.plugin.info.version)
            .field("fault", &self.sandbox.fault)
            .finish_non_exhaustive()
    }
}

impl StreamDecoder {
    /// Decode one event into zero or more canonical chunks, or the provider's error event.
    pub async fn push(&mut self, event: &SseEvent) -> Result<Result<Vec<StreamChunk>, ProviderError>, PluginFault> {
        let handle = self.handle;
        let result =
            call!(&mut self.sandbox, |guest, store| guest.stream_decoder().call_push(store, handle, event), async {
                let event = compat_0_1::sse_event(event);
                let result = guest.stream_decoder().call_push(store, handle, &event).await;
                result.map(|r| compat_0_1::result(r, compat_0_1::chunks))
            })?;
        self.sandbox.check(&result, |r| validate::provider_result(r, |c| validate::stream_chunks(c)))?;
        Ok(result)
    }

    /// The upstream stream ended: flush whatever the decoder held back.
    pub async fn finish(&mut self) -> Result<Result<Vec<StreamChunk>, ProviderError>, PluginFault> {
        let handle = self.handle;
        let result =
            call!(&mut self.sandbox, |guest, store| guest.stream_decoder().call_finish(store, handle), async {
                let result = guest.stream_decoder().call_finish(store, handle).await;
                result.map(|r| compat_0_1::result(r, compat_0_1::chunks))
            })?;
        self.sandbox.check(&result, |r| validate::provider_result(r, |c| validate::stream_chunks(c)))?;
        Ok(result)
    }

    /// The plugin (and version) decoding this stream.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }
}

/// The clocks plugins see: always the Unix epoch on the wall clock and 0 on the monotonic one,
/// so a plugin can neither fingerprint the host's time nor measure timing (of other tenants'
/// work, or of its own calls, as a side channel).
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The random bytes plugins see, the same in every instance (cycled): a plugin gets no entropy
/// it could use to tell instances, requests or hosts apart. Random-looking (so hash tables
/// still spread), but public: never a secret.
const SANDBOX_RANDOM: [u8; 64] = *b"\x5e\x1f\x8a\x33\xc4\x27\x90\x6b\xd2\x4d\x0e\xb9\x71\xa6\x3c\xf8\
\x12\x85\xe7\x49\x2b\x9c\x60\xd5\x37\xfa\x8e\x04\xbb\x63\x19\xce\
\x94\x2f\x7a\xe1\x58\x0b\xc6\x3d\xa0\x6f\x15\xd8\x82\x47\xec\x39\
\x6d\xb4\x21\x9f\x03\xca\x7e\x50\xe9\x36\x8b\x14\xf5\x2a\xa7\x5c";

/// What `wasi:random/insecure-seed` returns: fixed, like [`SANDBOX_RANDOM`].
const SANDBOX_RANDOM_SEED: u128 = 0x5e1f_8a33_c427_906b_d24d_0eb9_71a6_3cf8;

/// The data of one store: the WASI context, the limiter and the per-call CPU budget.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: CapturedOutput,
    /// Epoch ticks left in the current call's CPU budget.
    ticks_left: u64,
    /// Set by the epoch callback when it stopped the plugin for running out of budget.
    cpu_exhausted: bool,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl canonical::types_interface::Host for StoreState {}
impl compat_0_1::types_interface::Host for StoreState {}

/// [`StoreLimits`] that also remembers whether it refused a memory growth, so the trap that
/// follows (directly, or a Rust allocator abort) is reported as out-of-memory.
struct MemoryLimiter {
    limits: StoreLimits,
    refused_memory: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.refused_memory = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused_memory = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A store with an instantiated plugin and the first fault it hit, if any.
pub(crate) struct Sandbox {
    /// Names the plugin in faults: its name, or the file while it is being loaded.
    label: String,
    runtime: Arc<RuntimeInner>,
    store: Store<StoreState>,
    bindings: Bindings,
    fault: Option<PluginFault>,
    /// Where faults are counted (not while loading).
    counters: Option<Arc<crate::counters::PluginCounters>>,
}

impl Sandbox {
    pub(crate) async fn new(runtime: &Arc<RuntimeInner>, pre: &AnyPre, label: &str) -> Result<Sandbox, PluginFault> {
        let config = &runtime.config;
        let stderr = CapturedOutput::default();
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(Deterministic::new(SANDBOX_RANDOM.to_vec()))
            .insecure_random(Deterministic::new(SANDBOX_RANDOM.to_vec()))
            .insecure_random_seed(SANDBOX_RANDOM_SEED)
            .build();
        let limits =
            StoreLimitsBuilder::new().memory_size(config.memory_limit_bytes).trap_on_grow_failure(true).build();
        let mut store = Store::new(
            &runtime.engine,
            StoreState {
                wasi,
                table: ResourceTable::new(),
                limiter: MemoryLimiter { limits, refused_memory: false },
                stderr,
                ticks_left: runtime.cpu_budget_ticks,
                cpu_exhausted: false,
            },
        );
        store.limiter(|state| &mut state.limiter);
        // Called each time the epoch passes the deadline while the plugin runs: yield to the
        // executor (other requests on this thread keep going) and charge one tick, until the
        // call's budget is spent.
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            if state.ticks_left == 0 {
                state.cpu_exhausted = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);

        let instantiate = async {
            match pre {
                AnyPre::Current(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Current),
                AnyPre::V0_2(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V0_2),
                AnyPre::V0_1(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V0_1),
            }
        };
        let outcome = tokio::time::timeout(config.wall_timeout, instantiate).await;
        let error = match outcome {
            Ok(Ok(bindings)) => {
                return Ok(Sandbox {
                    label: label.to_owned(),
                    runtime: Arc::clone(runtime),
                    store,
                    bindings,
                    fault: None,
                    counters: None,
                });
            }
            Ok(Err(error)) if is_pool_exhausted(&error) => {
                return Err(PluginFault::Busy { plugin: label.to_owned() });
            }
            Ok(Err(error)) => Some(error),
            Err(_elapsed) => None,
        };
        Err(PartialSandbox { label, runtime, store: &store }.classify(error, true))
    }

    /// Call `describe` (at load time).
    pub(crate) async fn describe(&mut self) -> Result<PluginInfo, PluginFault> {
        call!(self, |guest, store| guest.call_describe(store), async {
            guest.call_describe(store).await.map(compat_0_1::plugin_info)
        })
    }

    /// Call `capabilities` (at load time); a plugin of an older contract has none.
    pub(crate) async fn capabilities(&mut self) -> Result<Capabilities, PluginFault> {
        if !matches!(self.bindings, Bindings::Current(_)) {
            return Ok(Capabilities::none());
        }
        call_current!(self, |guest, store| guest.call_capabilities(store))
    }

    /// Refuse to enter a poisoned instance; otherwise give the call a full CPU budget.
    fn begin(&mut self) -> Result<(), PluginFault> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        let budget = self.runtime.cpu_budget_ticks;
        let state = self.store.data_mut();
        state.ticks_left = budget;
        state.cpu_exhausted = false;
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    /// Map the outcome of a call; any failure poisons the sandbox.
    fn end<R>(&mut self, outcome: Result<wasmtime::Result<R>, Elapsed>) -> Result<R, PluginFault> {
        let fault = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => self.partial().classify(Some(error), false),
            Err(_elapsed) => self.partial().classify(None, false),
        };
        self.poison(&fault);
        Err(fault)
    }

    /// Check a returned value against the contract; a violation poisons the sandbox.
    fn check<T>(&mut self, value: &T, rule: impl FnOnce(&T) -> Result<(), String>) -> Result<(), PluginFault> {
        rule(value).map_err(|what| {
            let fault = PluginFault::Malformed { plugin: self.label.clone(), what };
            self.poison(&fault);
            fault
        })
    }

    /// No call enters the plugin again; the fault is counted.
    fn poison(&mut self, fault: &PluginFault) {
        if let Some(counters) = &self.counters {
            counters.fault(fault);
        }
        self.fault = Some(fault.clone());
    }

    fn partial(&self) -> PartialSandbox<'_> {
        PartialSandbox { label: &self.label, runtime: &self.runtime, store: &self.store }
    }
}

/// What fault classification needs, available both before and after instantiation succeeded.
struct PartialSandbox<'a> {
    label: &'a str,
    runtime: &'a RuntimeInner,
    store: &'a Store<StoreState>,
}

impl PartialSandbox<'_> {
    /// Turn a failed call (`None`: the wall-clock timeout fired) into the fault an operator
    /// should see. Order matters: the epoch callback and the limiter know for sure why the
    /// plugin was stopped, the trap code and stderr only hint at it.
    fn classify(&self, error: Option<wasmtime::Error>, instantiating: bool) -> PluginFault {
        let plugin = self.label.to_owned();
        let config = &self.runtime.config;
        let state = self.store.data();
        let Some(error) = error else {
            return PluginFault::WallTimeout { plugin, timeout: config.wall_timeout };
        };
        let trap = error.downcast_ref::<Trap>().copied();
        if state.cpu_exhausted || trap == Some(Trap::Interrupt) {
            return PluginFault::CpuTimeout { plugin, budget: config.cpu_timeout };
        }
        let stderr = state.stderr.message();
        let allocator_abort =
            stderr.as_deref().is_some_and(|s| s.contains("memory allocation of") && s.contains("failed"));
        if state.limiter.refused_memory || allocator_abort {
            return PluginFault::OutOfMemory { plugin, limit: config.memory_limit_bytes };
        }
        let cause = match trap {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        // A Rust panic prints `thread '<unnamed>' (1) panicked at src/lib.rs:3:5: boom`: lead
        // with what the plugin said, keep the trap as the detail.
        let message = match stderr {
            Some(stderr) => {
                let said = stderr.find("panicked at").map_or(stderr.as_str(), |at| &stderr[at..]);
                format!("{said} ({cause})")
            }
            None => cause,
        };
        if instantiating && trap.is_none() {
            PluginFault::Instantiate { plugin, message }
        } else {
            PluginFault::Trap { plugin, message }
        }
    }
}

fn is_pool_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| cause.is::<PoolConcurrencyLimitError>())
}
