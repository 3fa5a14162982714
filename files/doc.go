// Package files stores files in PostgreSQL: next to the rows that refer to
// them, in the same transactions and the same backups, instead of in S3 or
// Cloudinary. It is made for what applications usually upload (avatars,
// invoices, exports, attachments, the odd video) and keeps memory flat
// whatever the file size: nothing is ever read whole into memory.
//
// # Using it
//
//	files.Migrate(ctx, pool)                          // once, at start-up
//	store, _ := files.New(files.Config{MaxSize: 100 << 20, AllowedTypes: []string{"image/*", "application/pdf"}})
//	f, err := store.Put(ctx, pool, r, files.PutOptions{Name: "cv.pdf", Owner: userID})
//	rd, err := store.Get(ctx, pool, f.ID)             // io.ReadSeeker, fetched lazily
//	http.Handle("GET /files/{id}", store.DownloadHandler(files.HandlerConfig{DB: pool, AuthorizeDownload: ...}))
//	http.Handle("POST /files", store.UploadHandler(files.HandlerConfig{DB: pool, AuthorizeUpload: ...}))
//
// Every operation takes a DB: the pool, or your own pgx.Tx, so that storing
// a file and the row that refers to it commit or roll back together.
//
// # Storage design
//
// Three tables (schema "justpg" by default):
//
//   - files: what callers see — id, name, content type, owner, custom JSON
//     metadata, size, SHA-256, timestamps — and the body it points to.
//   - files_blobs: one row per stored body: size, SHA-256, chunk size,
//     storage kind, and a reference count (several files share a body when
//     de-duplication is on).
//   - files_chunks (blob_id, n, data bytea): the bytes, in chunks of
//     Config.ChunkSize (8000 bytes by default), GridFS style. Chunks of
//     that size are stored in the row itself (toast_tuple_target = 8160,
//     one chunk per 8 KB page), uncompressed (STORAGE EXTERNAL: no CPU
//     spent compressing bytes that are almost always compressed already).
//
// Put writes the chunks with one COPY while it reads the caller's
// io.Reader, one chunk buffer at a time, and computes size and SHA-256 on
// the way. (PostgreSQL refuses COPY FROM into a table under row-level
// security; there Put inserts 1 MiB of chunks per statement instead.) Get
// returns a Reader that fetches about 1 MiB of chunks per round trip, only
// when Read needs it, so Seek is free and a Range request reads only the
// chunks it covers. Bodies never change once written, so reads need no
// transaction.
//
// Why chunked rows by default:
//
//   - They stream in both directions with about 1 MiB in memory: the tests
//     stream 200 MiB in and out and assert that the heap grows by less than
//     48 MiB; the benchmark's client peaks at about 20 MiB of RSS for any
//     file size, against several times the file size for a naive single
//     bytea column (whose values are also capped at 1 GB).
//   - They are ordinary rows: row-level security applies (every table has
//     the tenant_id column of the tenancy convention), logical replication
//     copies them (each table has a primary key; a test reads the chunks
//     back from logical decoding), pg_dump and base backups include them,
//     and they are transactional like everything else.
//
// Why 8000-byte inline chunks rather than large TOASTed ones (the first
// version stored 1 MiB chunks): measured with perf on a durable
// PostgreSQL 15, a 1 MiB chunk cost the server 12-18 ms of CPU per MiB,
// mostly allocating and zeroing a fresh 1 MiB tuple for every row and
// then cutting it into ~525 TOAST tuples of 2 KB, each a heap insert and
// an index insert. Inline 8000-byte rows, written by COPY in batched
// multi-inserts, cost 4-5 ms per MiB, and uploads ran 2-6 times faster.
// For the same reason chunks carry no foreign key to their body (it ran
// one check query per 8 KB row, nearly doubling the server's work): a
// trigger deletes a body's chunks with the body, and Store.Clean sweeps
// chunks whose body was removed behind the package's back. Each body
// records its own chunk size, so bodies written with other chunk sizes
// stay readable.
//
// A read window's query has no ORDER BY: on a chunk table without
// statistics the planner answered it with a bitmap scan and an in-memory
// sort of the whole ~1 MiB window, about 3 ms of server CPU per window
// against 0.06 ms for the scan itself. The Reader puts each row at its
// offset and checks every chunk's number and length instead (a missing or
// damaged chunk fails the read with ErrCorrupt).
//
// Measured (bench/files, PostgreSQL 15 in its stock configuration with
// durability on, a 2-core machine shared with other workloads;
// bench/RESULTS.md has the full tables, the command and the method), for
// a 512 MiB file (downloads: first read after the upload / again / after
// dropping the OS page cache):
//
//	                      upload         download              client peak RSS
//	chunks (default)      156-167 MiB/s  329-340 / 367-383 / 428-432   20-21 MiB
//	bare COPY / SELECT    120-134 MiB/s  291-412 / 459-520 / 233-245   19 MiB
//	large objects          71-82 MiB/s    66-67 /  68-72  /  60-73     25-33 MiB
//	naive single bytea      3 MiB/s        7 MiB/s (earlier session)   1760 MiB
//	filesystem + fsync   893-921 MiB/s   2501-2821 / 2493-2969 / 2485-2864   14 MiB
//
// "Bare COPY / SELECT" is PostgreSQL's ceiling on this machine for any
// design: one binary COPY of the same 8000-byte chunks into an unindexed
// table without hashing, and one binary SELECT streaming them back. The
// default reaches it in both directions, and the ceiling itself is only
// 13-15% of the local filesystem's write + fsync and 8-21% of its reads
// (two connections in parallel are not faster for uploads): PostgreSQL writes every uploaded byte twice (to WAL,
// fsynced, then to the table) and spends ~4 ms of server CPU per MiB on
// it, and sending a MiB through the protocol costs it ~3 ms, where the
// filesystem writes once and copies from the page cache for ~0.4 ms per
// MiB. Memory stays flat; throughput is the price of transactions, WAL,
// replication and backups for the bytes.
//
// # Large objects
//
// Config.Storage = LargeObjects stores a body as one PostgreSQL large object
// (written with lo_put, read with lo_get, chunk by chunk as above). Large
// objects hold up to 4 TB, but they have limits that make them an option,
// not the default:
//
//   - pg_largeobject has no row-level security and no tenant column: any
//     role granted access to a large object (or every role, with
//     lo_compat_privileges) reads it by OID, whatever the tenant. Isolation
//     rests on the files row, which RLS does protect.
//   - Logical replication does not replicate large objects (a test shows
//     that logical decoding carries the files rows but not the bytes).
//   - A large object outlives the row that refers to it unless someone
//     unlinks it (orphans). This package unlinks it in a trigger when its
//     body is deleted, records every large object it creates in
//     files_large_objects, and Store.Clean unlinks the ones no body
//     refers to — never large objects created by anyone else.
//   - They were not faster than chunked rows in our measurements.
//
// # Transactions, failures and the janitor
//
// Put runs in one transaction (a savepoint of yours when you pass a
// pgx.Tx): the body row, its chunks and the files row become visible
// together at commit, or not at all. A reader error, a cancelled context, a
// size limit, a lying Content-Length, a client that disconnects, a killed
// connection or a crashed process all end in a rollback, which leaves
// nothing behind; the tests check that every table is empty afterwards.
// Deleting a files row (through Delete or plain SQL) releases its body in a
// trigger; the last reference removes the body and, in another trigger,
// its chunks or its large object.
//
// Orphans can therefore only appear when rows are removed behind the
// package's back: TRUNCATE of the files table, session_replication_role =
// replica (triggers off), or restoring one table without the others.
// Store.Clean, run from a periodic job, removes bodies and large objects
// that nothing references and that are older than a grace period, and
// chunks whose body is gone.
//
// The price of one transaction per upload: a large upload keeps a
// transaction open for its whole duration, which holds back VACUUM's
// horizon for that time, and it writes its size in WAL (plus full-page
// images after a checkpoint). Keep MaxSize to what your application needs.
//
// # De-duplication
//
// With Config.Dedup, identical bodies (same SHA-256 and size, same tenant)
// are stored once and reference-counted. The hash is only known at the end
// of the stream, so a duplicate is written, then dropped in the same
// transaction in favour of the existing body. Concurrency is safe: the
// reference count changes under the body's row lock, and a unique index
// on (sha256, size, tenant_id) makes two concurrent first uploads of the
// same bytes settle on one body. Bodies are never shared across tenants, so
// de-duplication cannot reveal that another tenant holds a file.
//
// # Tenancy
//
// Every table has the column of the tenancy convention,
//
//	tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid
//
// so rows written in a tenant-scoped transaction are stamped, and the
// policies of the tenancy package (USING tenant_id = current tenant) isolate
// tenants in the database: the tests enable such policies under a
// non-superuser role and show that one tenant can neither list, read,
// update nor delete another's
// files. Give the HTTP handlers a HandlerConfig.Scope that opens such a
// transaction.
//
// # HTTP
//
// DownloadHandler is built on http.ServeContent: Range and multi-range
// (multipart/byteranges), If-Range, HEAD, an ETag derived from the SHA-256,
// Last-Modified, and 304 for If-None-Match / If-Modified-Since. It sends
// Content-Disposition with both an ASCII fallback and the exact name as
// RFC 5987 filename*, X-Content-Type-Options: nosniff, and never serves
// HTML, script or any XML type (SVG, XHTML, RSS, any +xml) inline: they
// get "attachment" and a sandbox CSP, as does a type that does not parse. A
// client that goes away cancels the request context, which stops the chunk
// reads.
//
// UploadHandler takes a raw body (name in ?name=, type from Content-Type)
// or a multipart form, which it reads part by part with multipart.Reader —
// no temporary files, no whole-file buffering. A multipart request's files
// are stored in one transaction. Both handlers have an authorization hook.
//
// # Bad input
//
// ValidateName refuses empty names, names over 255 bytes, "." and "..",
// path separators, control characters and bidirectional-text controls
// (which can disguise an extension) instead of silently cleaning them.
// Oversize bodies fail with ErrTooLarge (at once when the size is announced),
// types off the allow-list with ErrTypeNotAllowed (checked on the first 512
// bytes, before anything is written), a body that does not match its
// announced size or checksum with ErrSizeMismatch or ErrChecksumMismatch.
//
// # Limits: when to move to object storage
//
// PostgreSQL is a fine file store for the files of a typical application.
// Move bulk storage to an object store when:
//
//   - the files grow to hundreds of gigabytes or more: every byte is in
//     your backups, WAL archive and replicas, and restore time grows with it;
//   - files are routinely larger than a few GiB, or uploads take long
//     enough that the long transaction matters;
//   - you serve public, cacheable assets to many clients: a CDN in front of
//     an object store beats any application server, and every download
//     here costs database work;
//   - download throughput, rather than convenience and consistency, is the
//     bottleneck: on the benchmark machine the filesystem reads from the
//     page cache many times faster than any PostgreSQL client can.
package files
