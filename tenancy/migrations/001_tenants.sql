-- Tenants: one row per customer. Names are unqualified: the migration runner
-- sets search_path to the target schema.
CREATE TABLE tenancy_tenants (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text        NOT NULL UNIQUE
                CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$'),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan        text        NOT NULL DEFAULT '',
    settings    jsonb       NOT NULL DEFAULT '{}'
                CHECK (jsonb_typeof(settings) = 'object'
                       AND (NOT settings ? 'statement_timeout_ms'
                            OR (settings->>'statement_timeout_ms') ~ '^[0-9]{1,9}$')),
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    isolation   text        NOT NULL DEFAULT 'shared' CHECK (isolation IN ('shared', 'dedicated')),
    schema_name text        UNIQUE CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CHECK ((isolation = 'dedicated') = (schema_name IS NOT NULL))
);

CREATE INDEX tenancy_tenants_deleted_idx ON tenancy_tenants (deleted_at) WHERE deleted_at IS NOT NULL;

-- Every access across tenants made through AsAdmin, recorded before it runs.
CREATE TABLE tenancy_admin_access (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL CHECK (actor <> ''),
    reason    text        NOT NULL CHECK (reason <> ''),
    target_tenant uuid,
    db_role   text        NOT NULL DEFAULT current_user
);

-- tenancy_enter scopes the current transaction to one tenant in one round
-- trip. It is VOLATILE plpgsql so that the tenant row is read with a snapshot
-- taken after the shared advisory lock is granted: a tenant being moved
-- between shared and dedicated storage (which holds the lock exclusively) is
-- seen in its new place by every transaction that starts after the move.
-- The body names the tenants table with the schema it is created in, because
-- at run time search_path is the caller's.
DO $do$
BEGIN
EXECUTE format($fn$
CREATE FUNCTION %1$I.tenancy_enter(p_id uuid,
    OUT o_found boolean, OUT o_status text, OUT o_deleted boolean,
    OUT o_isolation text, OUT o_schema text, OUT o_bypass boolean)
LANGUAGE plpgsql VOLATILE
AS $body$
DECLARE
    v_settings jsonb;
BEGIN
    o_found := false;
    o_deleted := false;
    SELECT coalesce(bool_or(r.rolsuper OR r.rolbypassrls), false) INTO o_bypass
      FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
    IF o_bypass THEN
        RETURN;  -- refuse before setting anything
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(
        pg_catalog.hashtextextended('justpg.tenancy:' || p_id::text, 0));
    SELECT true, t.status, t.deleted_at IS NOT NULL, t.isolation, t.schema_name, t.settings
      INTO o_found, o_status, o_deleted, o_isolation, o_schema, v_settings
      FROM %1$I.tenancy_tenants t WHERE t.id = p_id;
    IF NOT FOUND THEN
        o_found := false;
        o_deleted := false;
        RETURN;
    END IF;
    IF o_deleted OR o_status <> 'active' THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('app.tenant_id', p_id::text, true),
        CASE WHEN v_settings ? 'statement_timeout_ms'
             THEN pg_catalog.set_config('statement_timeout', v_settings->>'statement_timeout_ms', true) END,
        CASE WHEN o_isolation = 'dedicated'
             THEN pg_catalog.set_config('search_path',
                 pg_catalog.quote_ident(o_schema) || ', ' || pg_catalog.current_setting('search_path'), true) END;
END
$body$
$fn$, current_schema());
END
$do$;
