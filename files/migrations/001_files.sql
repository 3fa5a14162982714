-- Content: one row per stored body. Several files share a blob when
-- de-duplication is on (refs counts them).
CREATE TABLE files_blobs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    storage    text NOT NULL DEFAULT 'chunks' CHECK (storage IN ('chunks', 'largeobject')),
    chunk_size integer NOT NULL CHECK (chunk_size > 0),
    size       bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    sha256     bytea CHECK (sha256 IS NULL OR length(sha256) = 32),
    dedup      boolean NOT NULL DEFAULT false,
    refs       integer NOT NULL DEFAULT 1 CHECK (refs >= 0),
    lo_oid     oid,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One body per (tenant, hash) among de-duplicated blobs.
CREATE UNIQUE INDEX files_blobs_dedup_key ON files_blobs (sha256, size, tenant_id)
    NULLS NOT DISTINCT WHERE dedup AND sha256 IS NOT NULL;
CREATE INDEX files_blobs_lo_oid ON files_blobs (lo_oid) WHERE lo_oid IS NOT NULL;

-- The bytes of a 'chunks' blob: chunk n holds bytes [n*chunk_size, (n+1)*chunk_size).
CREATE TABLE files_chunks (
    blob_id   bigint NOT NULL REFERENCES files_blobs (id) ON DELETE CASCADE,
    n         integer NOT NULL CHECK (n >= 0),
    tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    data      bytea NOT NULL,
    PRIMARY KEY (blob_id, n)
);
-- Out of line and uncompressed: no CPU spent compressing bytes that are
-- usually compressed already, and substring() reads only the TOAST slices
-- it needs.
ALTER TABLE files_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Large objects created by this package, so that orphan cleanup never touches
-- large objects that belong to someone else.
CREATE TABLE files_large_objects (
    oid        oid PRIMARY KEY,
    tenant_id  uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The files callers see.
CREATE TABLE files (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    owner        text COLLATE "C" NOT NULL DEFAULT '',
    name         text COLLATE "C" NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    metadata     jsonb NOT NULL DEFAULT '{}',
    blob_id      bigint NOT NULL REFERENCES files_blobs (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_owner_name ON files (owner, name, id);
CREATE INDEX files_name ON files (name, id);
CREATE INDEX files_blob_id ON files (blob_id);

-- Deleting a file releases its blob; the last reference removes the blob
-- (its chunks cascade). This holds for plain SQL deletes too.
CREATE FUNCTION files_release_blob() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
DECLARE
    remaining integer;
BEGIN
    UPDATE files_blobs SET refs = refs - 1 WHERE id = OLD.blob_id RETURNING refs INTO remaining;
    IF remaining = 0 THEN
        DELETE FROM files_blobs WHERE id = OLD.blob_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER files_release_blob AFTER DELETE ON files
    FOR EACH ROW EXECUTE FUNCTION files_release_blob();

-- Deleting a large-object blob unlinks its large object.
CREATE FUNCTION files_unlink_large_object() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.lo_oid IS NOT NULL THEN
        DELETE FROM files_large_objects WHERE oid = OLD.lo_oid;
        PERFORM lo_unlink(OLD.lo_oid)
          FROM pg_largeobject_metadata WHERE oid = OLD.lo_oid;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER files_unlink_large_object AFTER DELETE ON files_blobs
    FOR EACH ROW EXECUTE FUNCTION files_unlink_large_object();
