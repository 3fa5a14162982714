-- Admin listing (List): jobs of one state in ID order, for keyset pages,
-- with queue and kind checked inside the index (they are key columns after
-- the unique id, so they never change the order; btree tests them on the
-- index entry, without visiting the table). Running jobs are left out:
-- they are few (bounded by the workers of all clients) and found through
-- jobs_running_idx, and leaving them out spares every fetch
-- (available -> running) an entry here. A job therefore gets an entry when
-- it is inserted and when it finishes (or is retried), not when it starts.
CREATE INDEX jobs_list_idx ON jobs (state, id, queue, kind) WHERE state <> 'running';
