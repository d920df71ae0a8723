//! Usage records: one per provider call (attempt) that reached a provider,
//! whatever its outcome.
//!
//! The request path hands each record to a [`UsageSink`] and moves on. The
//! gateway's sink is [`LedgerSink`]: it logs the record at debug level
//! (target `aigate::usage`: `AIGATE_LOG=info,aigate::usage=debug` shows one
//! line per call; the request log line and the ledger carry the rest) and submits it to the store's batched, durable
//! `UsageWriter` (the ledger is the single source of truth for billing).

use std::time::Duration;

use aigate_core::{KeyId, Money, OrgId};
use aigate_plugins::canonical::{RawCost, Usage};
use aigate_store::{LedgerEntry, UsageWriter};
use time::OffsetDateTime;

use crate::billing::token_usage;

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
    /// The attempt failed and the router made another one (a retry or a
    /// fallback): not counted as a request of its own.
    Retried,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ProviderError => "provider_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Retried => aigate_store::RETRIED,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UsageRecord {
    /// The gateway's id (`request_id::generate`): the ledger key.
    pub request_id: String,
    /// 1 for the request's first provider call, then one more per retry or fallback.
    pub attempt: u32,
    /// The inbound API (`Codec::name`).
    pub api: &'static str,
    /// The client's own id, well-formed, for correlation only.
    pub client_request_id: Option<String>,
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
    pub org_id: OrgId,
    pub key_id: KeyId,
    pub idempotency_key: Option<String>,
    pub billed_cost: Money,
    pub currency: String,
    /// Billed 0 because nothing priced it (see `billing::Charge::unpriced`).
    pub unpriced: bool,
    pub created_at: OffsetDateTime,
}

/// Where usage records go. Must not block: called on the request path.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, record: UsageRecord);

    /// The ledger writer behind the sink, if any (its queue and spool are metrics).
    fn writer(&self) -> Option<&UsageWriter> {
        None
    }
}

/// Logs each record and submits it to the ledger writer.
pub struct LedgerSink {
    pub writer: UsageWriter,
}

impl UsageSink for LedgerSink {
    fn writer(&self) -> Option<&UsageWriter> {
        Some(&self.writer)
    }

    fn record(&self, r: UsageRecord) {
        log(&r);
        let entry = LedgerEntry {
            request_id: r.request_id,
            attempt: r.attempt,
            api: r.api.to_owned(),
            client_request_id: r.client_request_id,
            org_id: r.org_id,
            key_id: r.key_id,
            provider: r.provider,
            model: r.model,
            stream: r.stream,
            usage: r.usage.as_ref().map(token_usage).unwrap_or_default(),
            status: r.status,
            outcome: r.outcome.as_str().to_owned(),
            latency_ms: u64::try_from(r.latency.as_millis()).unwrap_or(u64::MAX),
            ttft_ms: r.time_to_first_token.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            idempotency_key: r.idempotency_key,
            raw_cost: r.raw_cost.map(|c| aigate_store::RawCost { amount: c.amount, currency: c.currency }),
            billed_cost: r.billed_cost,
            currency: r.currency,
            unpriced: r.unpriced,
            created_at: r.created_at,
        };
        // The queue takes it without I/O; when it is full the record is
        // spooled to disk (an fsync) on a blocking thread, never on the
        // async worker serving requests.
        let Err(entry) = self.writer.try_submit(entry) else {
            return;
        };
        let writer = self.writer.clone();
        let spill = move || {
            if let Err(e) = writer.submit(entry) {
                // Only when neither the queue nor the spool can take it: loud.
                tracing::error!(request_id = %e.entry.request_id, "usage record could not be queued nor spooled: {}", e.source);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(spill)),
            Err(_) => spill(),
        }
    }
}

fn log(r: &UsageRecord) {
    {
        let u = r.usage.as_ref();
        tracing::debug!(
            target: "aigate::usage",
            request_id = %r.request_id,
            attempt = r.attempt,
            api = r.api,
            client_request_id = r.client_request_id.as_deref(),
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
            org = r.org_id.0,
            billed = %r.billed_cost,
            currency = %r.currency,
            unpriced = r.unpriced,
            "usage"
        );
    }
}
