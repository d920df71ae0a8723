-- Keep in step with ../postgres/0003_usage_attempts.sql.

-- One ledger row per provider call: a request the router retried or sent to
-- a fallback has a row per attempt, so `request_id` alone is no longer
-- unique; `(request_id, attempt)` is. Every attempt but the last has outcome
-- 'retried' and is not counted in `usage_daily.requests`.
--
-- SQLite cannot drop the column's UNIQUE constraint: the table is rebuilt
-- (same columns and indexes, plus `attempt`).
CREATE TABLE usage_ledger_v3 (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT    NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    org_id            INTEGER NOT NULL REFERENCES orgs (id),
    key_id            INTEGER NOT NULL REFERENCES api_keys (id),
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    stream            INTEGER NOT NULL CHECK (stream IN (0, 1)),
    prompt_tokens     INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens     INTEGER NOT NULL CHECK (cached_tokens >= 0),
    reasoning_tokens  INTEGER NOT NULL CHECK (reasoning_tokens >= 0),
    status            INTEGER NOT NULL,
    outcome           TEXT    NOT NULL,
    latency_ms        INTEGER NOT NULL CHECK (latency_ms >= 0),
    ttft_ms           INTEGER CHECK (ttft_ms >= 0),
    idempotency_key   TEXT,
    raw_cost_amount   TEXT,
    raw_cost_currency TEXT,
    billed_cost_nanos INTEGER NOT NULL CHECK (billed_cost_nanos >= 0),
    currency          TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    client_request_id TEXT,
    unpriced          INTEGER NOT NULL DEFAULT 0 CHECK (unpriced IN (0, 1)),
    UNIQUE (request_id, attempt)
) STRICT;

INSERT INTO usage_ledger_v3 (id, request_id, attempt, org_id, key_id, provider, model, stream, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, status, outcome, latency_ms, ttft_ms, idempotency_key,
    raw_cost_amount, raw_cost_currency, billed_cost_nanos, currency, created_at, client_request_id, unpriced)
SELECT id, request_id, 1, org_id, key_id, provider, model, stream, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, status, outcome, latency_ms, ttft_ms, idempotency_key,
    raw_cost_amount, raw_cost_currency, billed_cost_nanos, currency, created_at, client_request_id, unpriced
FROM usage_ledger;

DROP TABLE usage_ledger;
ALTER TABLE usage_ledger_v3 RENAME TO usage_ledger;

CREATE INDEX usage_ledger_by_org_time ON usage_ledger (org_id, created_at);
CREATE INDEX usage_ledger_by_time ON usage_ledger (created_at);
