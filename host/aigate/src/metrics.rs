//! Prometheus metrics: one [`Metrics`] per gateway (an explicit `prometheus::Registry`, no
//! global recorder, so gateways in one process, the tests' among them, never mix), rendered
//! in the text format by `GET /metrics` (`server.rs`).
//!
//! **Bounded cardinality.** Every label takes values from a set the operator controls: APIs and
//! outcomes are fixed words, providers come from config and loaded plugins, models are the ones
//! a provider's allowlist, its plugin's model list or a route names ([`Metrics::model_label`]);
//! anything a client typed that is not among them is counted as [`OTHER`]. Error codes used as
//! labels are the gateway's own.
//!
//! Counters that live elsewhere (the plugin runtime's, the usage writer's) are read when the
//! registry is rendered, not copied on the request path.

use std::time::Duration;

use aigate_plugins::PluginRegistry;
use aigate_store::UsageWriter;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::routing::Route;

/// The label of a model no configuration names.
pub const OTHER: &str = "other";

/// The label of a request that reached no provider.
pub const NONE: &str = "none";

/// Histogram buckets from 100 µs to 60 s, in seconds.
const BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
    60.0,
];

/// The gateway's metrics. Cheap to clone handles; `Arc` it once.
pub struct Metrics {
    registry: Registry,
    /// `api`, `provider`, `model`, `status_class`.
    pub requests: IntCounterVec,
    /// `api`, `provider`, `model`: until the answer's headers (a stream's first content).
    pub request_duration: HistogramVec,
    /// `provider`, `model`, `outcome` (`ok`, `retryable`: another attempt followed, `error`).
    pub attempts: IntCounterVec,
    /// `api`: calls answered by a later tier than the first (a fallback model).
    pub fallbacks: IntCounterVec,
    /// `provider`, `model`: one attempt, from its start to its last byte.
    pub provider_duration: HistogramVec,
    /// `provider`, `model`.
    pub time_to_first_token: HistogramVec,
    /// `provider`, `model`, `type` (`input`, `output`): the billable tokens the provider
    /// reported (OpenTelemetry's `gen_ai.client.token.usage`).
    pub tokens: IntCounterVec,
    /// `currency`: billed cost in currency units.
    pub billed_cost: CounterVec,
    /// `kind`: the refusal's error code (`rate_limit_exceeded`, `budget_exceeded`, …).
    pub limit_refusals: IntCounterVec,
    /// `outcome`: `claimed`, `replayed`, `in_progress`, `mismatch`.
    pub idempotency: IntCounterVec,
    /// `store`: `database`, `redis`, `memory`: errors a request saw.
    pub store_errors: IntCounterVec,
    plugin_instantiations: IntCounterVec,
    plugin_faults: IntCounterVec,
    plugin_info: GaugeVec,
    plugin_reloads: IntCounterVec,
    usage_queue_depth: IntGauge,
    usage_spooled: IntGauge,
    /// One render at a time: the counters copied from elsewhere are brought up to their totals
    /// by read-then-add, which two concurrent scrapes would do twice.
    rendering: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable(name, &e));
    register(registry, Box::new(c.clone()), name);
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels).unwrap_or_else(|e| unreachable(name, &e));
    register(registry, Box::new(h.clone()), name);
    h
}

fn register(registry: &Registry, collector: Box<dyn prometheus::core::Collector>, name: &str) {
    if let Err(e) = registry.register(collector) {
        unreachable(name, &e);
    }
}

/// The metric definitions are constants: an invalid one is a bug caught by the first test.
#[allow(clippy::panic, reason = "static metric definitions; every test constructs them")]
fn unreachable(name: &str, e: &prometheus::Error) -> ! {
    panic!("metric {name} is defined wrongly: {e}")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let plugin_info = GaugeVec::new(
            Opts::new("aigate_plugin_info", "Loaded plugins (value 1), by name, version, contract and sha256."),
            &["plugin", "version", "contract", "hash"],
        )
        .unwrap_or_else(|e| unreachable("aigate_plugin_info", &e));
        register(&r, Box::new(plugin_info.clone()), "aigate_plugin_info");
        let billed_cost = CounterVec::new(
            Opts::new("aigate_billed_cost_total", "Billed cost of the calls, in units of the currency."),
            &["currency"],
        )
        .unwrap_or_else(|e| unreachable("aigate_billed_cost_total", &e));
        register(&r, Box::new(billed_cost.clone()), "aigate_billed_cost_total");
        let usage_queue_depth = IntGauge::new("aigate_usage_queue_depth", "Usage records waiting for the writer.")
            .unwrap_or_else(|e| unreachable("aigate_usage_queue_depth", &e));
        register(&r, Box::new(usage_queue_depth.clone()), "aigate_usage_queue_depth");
        let usage_spooled = IntGauge::new(
            "aigate_usage_spooled_batches",
            "Batches of usage records in the disk spool, waiting for the database.",
        )
        .unwrap_or_else(|e| unreachable("aigate_usage_spooled_batches", &e));
        register(&r, Box::new(usage_spooled.clone()), "aigate_usage_spooled_batches");
        Metrics {
            requests: counter(
                &r,
                "aigate_requests_total",
                "Requests answered, by inbound API, provider, model and status class.",
                &["api", "provider", "model", "status_class"],
            ),
            request_duration: histogram(
                &r,
                "aigate_request_duration_seconds",
                "Time to the answer's headers (a stream's first content).",
                &["api", "provider", "model"],
            ),
            attempts: counter(
                &r,
                "aigate_provider_attempts_total",
                "Provider calls by outcome: ok, retryable (another attempt followed), error.",
                &["provider", "model", "outcome"],
            ),
            fallbacks: counter(
                &r,
                "aigate_fallbacks_total",
                "Calls answered by a fallback model (a later tier of the plan).",
                &["api"],
            ),
            provider_duration: histogram(
                &r,
                "aigate_provider_duration_seconds",
                "One provider call, from its start to its last byte.",
                &["provider", "model"],
            ),
            time_to_first_token: histogram(
                &r,
                "aigate_time_to_first_token_seconds",
                "Time from the request to a stream's first content.",
                &["provider", "model"],
            ),
            tokens: counter(
                &r,
                "aigate_tokens_total",
                "Billable tokens the providers reported, input and output (gen_ai.client.token.usage).",
                &["provider", "model", "type"],
            ),
            billed_cost,
            limit_refusals: counter(
                &r,
                "aigate_limit_refusals_total",
                "Requests refused by rate limits, budgets or stream slots, by error code.",
                &["kind"],
            ),
            idempotency: counter(
                &r,
                "aigate_idempotency_total",
                "Idempotency-Key outcomes: claimed, replayed, in_progress, mismatch.",
                &["outcome"],
            ),
            store_errors: counter(
                &r,
                "aigate_store_errors_total",
                "Database and Redis errors seen by requests.",
                &["store"],
            ),
            plugin_instantiations: counter(
                &r,
                "aigate_plugin_instantiations_total",
                "Plugin instances created (one per call, one per stream).",
                &["plugin"],
            ),
            plugin_faults: counter(
                &r,
                "aigate_plugin_faults_total",
                "Plugin faults by kind (trap, timeout, out_of_memory, malformed, busy, ...).",
                &["plugin", "kind"],
            ),
            plugin_info,
            plugin_reloads: counter(
                &r,
                "aigate_plugin_reloads_total",
                "Plugin file changes applied (ok) or refused (failed).",
                &["result"],
            ),
            usage_queue_depth,
            usage_spooled,
            rendering: std::sync::Mutex::new(()),
            registry: r,
        }
        .with_zeros()
    }

    /// Series of fixed label sets start at 0, so dashboards and alerts see them before the
    /// first event.
    fn with_zeros(self) -> Self {
        for store in ["database", "redis", "memory"] {
            self.store_errors.with_label_values(&[store]);
        }
        for kind in
            ["rate_limit_exceeded", "budget_exceeded", "budget_currency_mismatch", "concurrent_streams_exceeded"]
        {
            self.limit_refusals.with_label_values(&[kind]);
        }
        for outcome in ["claimed", "replayed", "in_progress", "mismatch"] {
            self.idempotency.with_label_values(&[outcome]);
        }
        for api in ["chat_completions", "messages", "responses", "embeddings"] {
            self.fallbacks.with_label_values(&[api]);
        }
        for result in ["ok", "failed"] {
            self.plugin_reloads.with_label_values(&[result]);
        }
        self
    }

    /// The model's label: the route's model when configuration or the plugin names it, else
    /// [`OTHER`] (a provider open to any model must not let clients mint series).
    pub fn model_label(route: &Route) -> &str {
        if route.named { &route.upstream_model } else { OTHER }
    }

    /// Counts one provider call that ended: its outcome, duration, first token, tokens, cost.
    pub fn attempt(&self, ended: &AttemptEnded<'_>) {
        let labels = [ended.provider, ended.model];
        self.attempts.with_label_values(&[ended.provider, ended.model, ended.outcome]).inc();
        self.provider_duration.with_label_values(&labels).observe(ended.duration.as_secs_f64());
        if let Some(ttft) = ended.time_to_first_token {
            self.time_to_first_token.with_label_values(&labels).observe(ttft.as_secs_f64());
        }
        if let Some((input, output)) = ended.tokens {
            self.tokens.with_label_values(&[ended.provider, ended.model, "input"]).inc_by(input);
            self.tokens.with_label_values(&[ended.provider, ended.model, "output"]).inc_by(output);
        }
        if let Some((currency, amount)) = ended.billed
            && amount > 0.0
        {
            self.billed_cost.with_label_values(&[currency]).inc_by(amount);
        }
    }

    /// Counts one answered request.
    pub fn request(&self, api: &str, served: Option<(&str, &str)>, status: u16, duration: Duration) {
        let (provider, model) = served.unwrap_or((NONE, NONE));
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[api, provider, model, class]).inc();
        self.request_duration.with_label_values(&[api, provider, model]).observe(duration.as_secs_f64());
    }

    /// The text exposition, with the gauges of the plugin registry and the usage writer read now.
    pub fn render(&self, plugins: &PluginRegistry, usage: Option<&UsageWriter>) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.plugin_info.reset();
        for status in plugins.statuses() {
            if let (Some(name), Some(version), Some(contract), Some(hash)) =
                (&status.name, &status.version, &status.contract_version, &status.hash)
            {
                self.plugin_info.with_label_values(&[name, version, contract, hash]).set(1.0);
            }
        }
        let runtime = plugins.counters();
        for (plugin, counts) in &runtime.per_plugin {
            set_counter(&self.plugin_instantiations, &[plugin], counts.instantiations);
            for (kind, n) in &counts.faults {
                set_counter(&self.plugin_faults, &[plugin, kind], *n);
            }
        }
        set_counter(&self.plugin_reloads, &["ok"], runtime.reloads_ok);
        set_counter(&self.plugin_reloads, &["failed"], runtime.reloads_failed);
        if let Some(writer) = usage {
            self.usage_queue_depth.set(i64::try_from(writer.queue_len()).unwrap_or(i64::MAX));
            self.usage_spooled.set(i64::try_from(writer.spool_files()).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        // Encoding our own metric families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Brings a counter up to a total kept elsewhere (counters only grow, so `inc_by` the gap).
fn set_counter(counter: &IntCounterVec, labels: &[&str], total: u64) {
    let c = counter.with_label_values(labels);
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// What [`Metrics::attempt`] records of one provider call.
#[derive(Debug)]
pub struct AttemptEnded<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// `ok`, `retryable`, `error`.
    pub outcome: &'static str,
    pub duration: Duration,
    pub time_to_first_token: Option<Duration>,
    /// Input and output tokens.
    pub tokens: Option<(u64, u64)>,
    /// Currency and amount in its units.
    pub billed: Option<(&'a str, f64)>,
}
