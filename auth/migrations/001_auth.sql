-- auth: users, sessions, one-time tokens, API keys, TOTP recovery codes,
-- brute-force counters and the audit log. Tables holding per-tenant data
-- carry tenant_id (stamped from app.tenant_id) so that row-level security can
-- isolate tenants.

CREATE TABLE auth_users (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    email             text        NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    password_hash     text        NOT NULL,
    email_verified_at timestamptz,
    failed_logins     integer     NOT NULL DEFAULT 0,
    locked_until      timestamptz,
    totp_secret       text,
    totp_enabled_at   timestamptz,
    totp_last_step    bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- One account per e-mail per tenant (NULL tenant = not tenant-scoped).
CREATE UNIQUE INDEX auth_users_email_key
    ON auth_users ((COALESCE(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), email);

CREATE TABLE auth_sessions (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    user_id      uuid        NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    user_agent   text        NOT NULL DEFAULT '',
    ip           inet
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id, created_at);
CREATE INDEX auth_sessions_expires_idx ON auth_sessions (expires_at);
CREATE INDEX auth_sessions_last_seen_idx ON auth_sessions (last_seen_at);

CREATE TABLE auth_tokens (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    user_id    uuid        NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    token_hash bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    email      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX auth_tokens_user_idx ON auth_tokens (user_id, purpose) WHERE used_at IS NULL;
CREATE INDEX auth_tokens_expires_idx ON auth_tokens (expires_at);

CREATE TABLE auth_api_keys (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    user_id      uuid        NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    key_hash     bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    hint         text        NOT NULL,
    scopes       text[]      NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX auth_api_keys_user_idx ON auth_api_keys (user_id, created_at);

CREATE TABLE auth_recovery_codes (
    id        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    user_id   uuid        NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    code_hash bytea       NOT NULL,
    used_at   timestamptz,
    UNIQUE (user_id, code_hash)
);

-- Fixed-window counters for per-IP rate limits (not tenant data).
CREATE TABLE auth_rate_limits (
    key          text        PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL
);
CREATE INDEX auth_rate_limits_window_idx ON auth_rate_limits (window_start);

CREATE TABLE auth_audit (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    at         timestamptz NOT NULL DEFAULT now(),
    event      text        NOT NULL,
    user_id    uuid,
    ip         inet,
    user_agent text        NOT NULL DEFAULT '',
    detail     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX auth_audit_user_idx ON auth_audit (user_id, at);
CREATE INDEX auth_audit_at_idx ON auth_audit (at);
