-- Keep in step with ../sqlite/0002_client_ids_unpriced_budget_currency.sql.

-- The id a client sent in `x-request-id` / `x-client-request-id`, kept for
-- correlation only: NOT unique (the ledger key is `request_id`, always made
-- by the gateway). At most 128 visible ASCII characters; anything else is
-- dropped by the gateway, never a reason to set a row aside.
ALTER TABLE usage_ledger ADD COLUMN client_request_id TEXT;

-- TRUE: the call had tokens but neither a price rule nor a provider-reported
-- cost, and its provider allows unpriced calls: billed 0, reported by usage.
ALTER TABLE usage_ledger ADD COLUMN unpriced BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE usage_daily ADD COLUMN unpriced_requests BIGINT NOT NULL DEFAULT 0;

-- The currency of `monthly_budget_nanos`. NULL (budgets set before this
-- column existed): the gateway's `[billing] currency`.
ALTER TABLE orgs ADD COLUMN monthly_budget_currency TEXT;
