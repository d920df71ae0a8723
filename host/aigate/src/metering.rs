//! Usage records: one per call that reached a provider, whatever its outcome.
//!
//! This is the seam the billing ledger plugs into. Today the sink writes a
//! structured log line (target `aigate::usage`); the store-backed ledger
//! replaces it without touching the request path.

use std::time::Duration;

use aigate_plugins::canonical::{RawCost, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered and the answer was delivered.
    Completed,
    /// The provider answered with an error (before or inside a stream).
    ProviderError,
    /// The client went away during a stream; tokens produced so far are metered.
    Cancelled,
    /// The call failed in transport or in the plugin after the provider was called.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ProviderError => "provider_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub request_id: String,
    pub provider: String,
    pub model: String,
    pub stream: bool,
    pub outcome: Outcome,
    /// HTTP status the client got (200 for a stream that started).
    pub status: u16,
    pub usage: Option<Usage>,
    pub raw_cost: Option<RawCost>,
    pub latency: Duration,
    /// Streams: time until the first chunk with content.
    pub time_to_first_token: Option<Duration>,
}

/// Where usage records go. Must not block: called on the request path.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, record: UsageRecord);
}

/// Writes each record as one structured log event.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogUsageSink;

impl UsageSink for LogUsageSink {
    fn record(&self, r: UsageRecord) {
        let u = r.usage.as_ref();
        tracing::info!(
            target: "aigate::usage",
            request_id = %r.request_id,
            provider = %r.provider,
            model = %r.model,
            stream = r.stream,
            outcome = r.outcome.as_str(),
            status = r.status,
            prompt_tokens = u.map(|u| u.prompt_tokens),
            completion_tokens = u.map(|u| u.completion_tokens),
            cached_tokens = u.and_then(|u| u.cached_tokens),
            reasoning_tokens = u.and_then(|u| u.reasoning_tokens),
            raw_cost = r.raw_cost.as_ref().map(|c| format!("{} {}", c.amount, c.currency)),
            latency_ms = r.latency.as_millis() as u64,
            ttft_ms = r.time_to_first_token.map(|d| d.as_millis() as u64),
            "usage"
        );
    }
}
