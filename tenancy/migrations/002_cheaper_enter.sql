-- tenancy_enter, cheaper: it runs at the start of every tenant-scoped
-- transaction, so its cost is paid by every request.
--
-- The bypass check asked pg_roles (a view over two catalogs) for rolsuper and
-- rolbypassrls. It now asks PostgreSQL itself whether row-level security
-- applies to the current role, on a table that has it enabled and forced and
-- holds nothing: row_security_active is false exactly for a superuser or a
-- BYPASSRLS role, from the catalog caches. Disabling row-level security on
-- the probe table makes every role look like a bypassing one, so the check
-- fails closed.
CREATE TABLE tenancy_rls_probe (probe boolean);
ALTER TABLE tenancy_rls_probe ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy_rls_probe FORCE ROW LEVEL SECURITY;
REVOKE ALL ON tenancy_rls_probe FROM PUBLIC;

DO $do$
BEGIN
EXECUTE format($fn$
CREATE OR REPLACE FUNCTION %1$I.tenancy_enter(p_id uuid,
    OUT o_found boolean, OUT o_status text, OUT o_deleted boolean,
    OUT o_isolation text, OUT o_schema text, OUT o_bypass boolean)
LANGUAGE plpgsql VOLATILE
AS $body$
DECLARE
    v_settings jsonb;
BEGIN
    o_found := false;
    o_deleted := false;
    o_bypass := NOT pg_catalog.row_security_active(%2$L::pg_catalog.regclass);
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
$fn$, current_schema(), format('%I.tenancy_rls_probe', current_schema()));
END
$do$;
