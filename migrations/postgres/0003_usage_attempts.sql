-- Keep in step with ../sqlite/0003_usage_attempts.sql.

-- One ledger row per provider call: a request the router retried or sent to
-- a fallback has a row per attempt, so `request_id` alone is no longer
-- unique; `(request_id, attempt)` is. Every attempt but the last has outcome
-- 'retried' and is not counted in `usage_daily.requests`.
ALTER TABLE usage_ledger ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1);
ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_request_id_key;
ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_request_attempt_key UNIQUE (request_id, attempt);
