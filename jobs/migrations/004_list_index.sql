-- Admin listing (List) and pruning share one index: jobs of one state in ID
-- order, for keyset pages, with queue, kind and finalized_at checked inside
-- the index (they are key columns after the unique id, so they never change
-- the order; btree tests them on the index entry, without visiting the
-- table). Running jobs are left out: they are few (bounded by the workers of
-- all clients) and found through jobs_running_idx, and leaving them out
-- spares every fetch (available -> running) an entry here. A job therefore
-- gets an entry when it is inserted and when it finishes (or is retried).
-- It replaces jobs_finalized_idx, which served only pruning, so a
-- completion still adds one entry besides the primary key's.
CREATE INDEX jobs_list_idx ON jobs (state, id, queue, kind, finalized_at) WHERE state <> 'running';
DROP INDEX jobs_finalized_idx;
