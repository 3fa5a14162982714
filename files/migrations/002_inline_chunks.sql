-- Cheaper uploads (measurements in doc.go and bench/RESULTS.md).
--
-- 1. Keep chunks of up to ~8 KB in the table row instead of TOAST. A 1 MiB
--    TOASTed chunk costs the server one heap insert and one toast-index
--    insert per ~2 KB slice, plus a 1 MiB tuple allocated and zeroed for
--    every row; an inline 8000-byte chunk is one row that COPY writes with
--    batched multi-inserts. Bodies written with larger chunks (the 1 MiB
--    default before this migration) stay TOASTed and remain readable: each
--    body records its own chunk size.
ALTER TABLE files_chunks SET (toast_tuple_target = 8160);

-- 2. Replace the foreign key from chunks to bodies with a trigger. The
--    foreign key checked every inserted chunk with a query of its own (about
--    as much server CPU as storing the chunk); chunks are only ever inserted
--    by Put, in the transaction that creates their body. Deleting a body
--    still deletes its chunks, in the trigger below, and Store.Clean removes
--    chunks whose body was removed behind the package's back.
ALTER TABLE files_chunks DROP CONSTRAINT files_chunks_blob_id_fkey;

CREATE FUNCTION files_delete_chunks() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.storage = 'chunks' THEN
        DELETE FROM files_chunks WHERE blob_id = OLD.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER files_delete_chunks AFTER DELETE ON files_blobs
    FOR EACH ROW EXECUTE FUNCTION files_delete_chunks();

-- TRUNCATE of the bodies takes their chunks along (the foreign key made it
-- fail before).
CREATE FUNCTION files_truncate_chunks() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE files_chunks;
    RETURN NULL;
END $$;
CREATE TRIGGER files_truncate_chunks AFTER TRUNCATE ON files_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION files_truncate_chunks();
