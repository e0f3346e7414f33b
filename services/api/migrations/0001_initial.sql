-- The platform API's schema: tokens, pipeline runs (trainings and rollbacks) and their events.

CREATE TABLE api_tokens (
    id          text PRIMARY KEY,                 -- the public part of the token (mlops_<id>_<secret>)
    name        text NOT NULL,
    scopes      text[] NOT NULL,
    token_hash  text NOT NULL,                    -- SHA-256 of the whole token; the token itself is never stored
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE runs (
    id                  uuid PRIMARY KEY,         -- derived from (principal, Idempotency-Key)
    kind                text NOT NULL CHECK (kind IN ('training', 'rollback')),
    model               text NOT NULL,
    request             jsonb NOT NULL,           -- what was asked (params, profile / version, alias)
    principal           text NOT NULL,            -- token id, or 'admin'
    idempotency_key     text NOT NULL,
    request_hash        text NOT NULL,
    dag_id              text NOT NULL,
    dag_run_id          text NOT NULL UNIQUE,
    state               text NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed', 'cancelled')),
    airflow_state       text,
    mlflow_run_id       text,
    metrics             jsonb NOT NULL DEFAULT '{}'::jsonb,
    registered_version  text,
    version_aliases     text[] NOT NULL DEFAULT '{}',
    gate                jsonb,
    error               text,
    cancel_requested    boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    UNIQUE (principal, idempotency_key)
);
CREATE INDEX runs_unfinished ON runs (created_at) WHERE state IN ('queued', 'running');
CREATE INDEX runs_listing ON runs (kind, created_at DESC, id DESC);
CREATE INDEX runs_by_model ON runs (kind, model, created_at DESC, id DESC);

-- Every state change and every new fact of a run, in commit order (inserts hold an advisory lock).
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES runs (id),
    kind        text NOT NULL,
    model       text NOT NULL,
    type        text NOT NULL,
    state       text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_run ON events (run_id, id);
