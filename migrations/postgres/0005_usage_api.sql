-- Keep in step with ../sqlite/0005_usage_api.sql.

-- The inbound API a ledger row's request came in through: 'chat_completions',
-- 'messages' (Anthropic) or 'responses'. Rows written before are chat completions.
ALTER TABLE usage_ledger ADD COLUMN api TEXT NOT NULL DEFAULT 'chat_completions';
