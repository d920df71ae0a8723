-- AIGate schema, SQLite edition (the embedded default).
-- Keep in step with ../postgres/0001_tenancy_prices_usage.sql: same tables, columns and meaning.
--
-- Conventions: money is INTEGER nano-units of the row's currency (never REAL);
-- timestamps are TEXT in UTC with a fixed shape, `YYYY-MM-DDTHH:MM:SS.ffffffZ`,
-- so text order is time order; days are TEXT `YYYY-MM-DD` (UTC days).
-- STRICT tables make SQLite refuse values of the wrong type.

CREATE TABLE orgs (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    markup_bps           INTEGER NOT NULL DEFAULT 0 CHECK (markup_bps >= 0),
    monthly_budget_nanos INTEGER CHECK (monthly_budget_nanos >= 0),
    created_at           TEXT    NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs (id),
    name       TEXT    NOT NULL,
    -- First 12 characters of the key, shown in listings and used to revoke.
    prefix     TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the whole key, lowercase hex: the lookup on every request.
    hash       TEXT    NOT NULL UNIQUE,
    created_at TEXT    NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    rpm_limit  INTEGER CHECK (rpm_limit > 0),
    tpm_limit  INTEGER CHECK (tpm_limit > 0)
) STRICT;

CREATE INDEX api_keys_by_org ON api_keys (org_id);

CREATE TABLE price_rules (
    id                                 INTEGER PRIMARY KEY,
    provider                           TEXT    NOT NULL,
    model                              TEXT    NOT NULL,
    -- NULL: the global rule; an org's own rule beats it.
    org_id                             INTEGER REFERENCES orgs (id),
    input_per_million_nanos            INTEGER NOT NULL CHECK (input_per_million_nanos >= 0),
    output_per_million_nanos           INTEGER NOT NULL CHECK (output_per_million_nanos >= 0),
    cached_input_per_million_nanos     INTEGER CHECK (cached_input_per_million_nanos >= 0),
    reasoning_output_per_million_nanos INTEGER CHECK (reasoning_output_per_million_nanos >= 0),
    currency                           TEXT    NOT NULL,
    effective_from                     TEXT    NOT NULL
) STRICT;

-- One rule per (provider, model, org or global, start); also serves the lookup.
CREATE UNIQUE INDEX price_rules_identity
    ON price_rules (provider, model, COALESCE(org_id, 0), effective_from);

-- The ledger: one row per request id (an architecture invariant), the single
-- source of truth for billing. Pruned by age; usage_daily keeps the totals.
CREATE TABLE usage_ledger (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT    NOT NULL UNIQUE,
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
    -- What the provider reported, verbatim (exact decimal text).
    raw_cost_amount   TEXT,
    raw_cost_currency TEXT,
    billed_cost_nanos INTEGER NOT NULL CHECK (billed_cost_nanos >= 0),
    currency          TEXT    NOT NULL,
    created_at        TEXT    NOT NULL
) STRICT;

CREATE INDEX usage_ledger_by_org_time ON usage_ledger (org_id, created_at);
CREATE INDEX usage_ledger_by_time ON usage_ledger (created_at);

-- Daily rollups, kept by upsert-increment in the same transaction as the
-- ledger rows they count, so the two never drift. Usage queries and budgets
-- read these. The currency is part of the key so amounts in different
-- currencies are never added together.
CREATE TABLE usage_daily (
    org_id            INTEGER NOT NULL REFERENCES orgs (id),
    day               TEXT    NOT NULL,
    key_id            INTEGER NOT NULL REFERENCES api_keys (id),
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    currency          TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    billed_cost_nanos INTEGER NOT NULL,
    PRIMARY KEY (org_id, day, key_id, provider, model, currency)
) STRICT, WITHOUT ROWID;
