-- Tokens expire, record when they were last used, and may be limited to some models.
--
-- Existing tokens get the API's default expiry counted from this migration (`mlops.token_ttl_seconds`, set by
-- the migration runner from MLOPS_API_TOKEN_TTL): none is left without an expiry, and none stops
-- working at the upgrade itself. Revoked tokens expire when they were revoked.

ALTER TABLE api_tokens
    ADD COLUMN expires_at    timestamptz,
    ADD COLUMN last_used_at  timestamptz,               -- written at most once a minute per token
    ADD COLUMN models        text[];                    -- NULL: every model; else only these models

UPDATE api_tokens
   SET expires_at = coalesce(
           revoked_at,
           now() + make_interval(secs => current_setting('mlops.token_ttl_seconds')::double precision)
       );

ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_models_not_empty CHECK (models IS NULL OR cardinality(models) > 0);
