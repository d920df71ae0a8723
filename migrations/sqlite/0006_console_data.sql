-- Keep in step with ../postgres/0006_console_data.sql.

-- When a key was last used: the latest `created_at` of its ledger rows,
-- set by the usage writer in the transaction that inserts them and never
-- moved backwards (a re-delivered row changes nothing). NULL: never used
-- (or only before this column existed).
ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;

-- The operator console's recent requests of one key, newest first, read
-- from the index instead of every row of the org.
CREATE INDEX usage_ledger_by_key_time ON usage_ledger (key_id, created_at);

-- The recent requests of one model, in every org or in one, newest first:
-- without these a model with few or no rows walks the ledger by time to fill
-- a page (seen: 0.2 s at a million rows). Two more index entries per ledger
-- row, written in batches by the usage writer.
CREATE INDEX usage_ledger_by_model_time ON usage_ledger (model, created_at);
CREATE INDEX usage_ledger_by_org_model_time ON usage_ledger (org_id, model, created_at);
