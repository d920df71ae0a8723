-- Keep in step with ../postgres/0004_model_scopes.sql.

-- Model scopes: the model names or patterns (`qwen:*`, `smart`) a key, and
-- every key of an org, may call; comma-separated as `ModelScope::to_text`
-- writes them. NULL: every model.
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
ALTER TABLE orgs ADD COLUMN allowed_models TEXT;
