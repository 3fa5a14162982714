-- The example's one per-tenant table. The statements after CREATE TABLE are
-- the output of tenancy.ProtectSQL("notes"), kept in the migration history.
CREATE TABLE notes (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE "notes" ADD COLUMN IF NOT EXISTS tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid;
ALTER TABLE "notes" ALTER COLUMN tenant_id SET DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid;
ALTER TABLE "notes" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "notes" FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS "tenancy_isolation" ON "notes";
CREATE POLICY "tenancy_isolation" ON "notes" AS PERMISSIVE FOR ALL
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
CREATE INDEX IF NOT EXISTS "notes_tenant_id_idx" ON "notes" (tenant_id);
