-- Keep chunks of up to ~8 KB in the table row instead of TOAST. A 1 MiB
-- TOASTed chunk costs the server one heap insert and one toast-index insert
-- per ~2 KB slice, plus a 1 MiB tuple built and copied in memory; an inline
-- 8000-byte chunk is one row that COPY writes with batched multi-inserts.
-- Measured on a durable PostgreSQL 15: about a third of the server CPU per
-- uploaded MiB (see doc.go). Bodies written with larger chunks (the 1 MiB
-- default before this migration) stay TOASTed and remain readable: each body
-- records its own chunk size.
ALTER TABLE files_chunks SET (toast_tuple_target = 8160);
