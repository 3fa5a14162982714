-- tenancy_share_tenant reads a tenant's row FOR SHARE. WithTenantTx calls it
-- in REPEATABLE READ and SERIALIZABLE transactions that may write: their
-- snapshot is taken before the tenant's advisory lock is granted, and the row
-- lock fails with a serialization error when a move (or any other change of
-- the tenant) committed after that snapshot, instead of letting the
-- transaction write under the storage mode it saw. Row locks need UPDATE
-- privilege, which the application role must not have on the tenants table,
-- so the function runs as its owner; it only takes a share lock on one row,
-- which any role may ask for.
--
-- tenancy_enter (002) is no longer called by this version, which scopes a
-- transaction with plain statements (scope.go), measured cheaper; it stays
-- for processes of the previous version during a rolling upgrade.
DO $do$
BEGIN
EXECUTE format($fn$
CREATE FUNCTION %1$I.tenancy_share_tenant(p_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$ SELECT true FROM %1$I.tenancy_tenants WHERE id = p_id FOR SHARE $body$
$fn$, current_schema());
END
$do$;
