-- Admin listing and pruning: one partial index per listed state instead of
-- jobs_list_idx, which held every state but running in one btree. Its
-- entries of a state went into the middle of the index, each insert
-- descending from the root through text comparisons. In a per-state index
-- the leading state is the same for every entry, so a new job's entry (a
-- new, nearly always highest id) is appended to the index's rightmost page
-- through btree's fast path, without a descent. The key keeps the shape of
-- jobs_list_idx: (state, id) lets List ask for "(state, id) > (s, cursor)",
-- which only these indexes return in order (the primary key cannot), and
-- queue, kind and finalized_at (after the unique id, so they never change
-- the order) are tested on the index entries. A job still gets one entry
-- when it is inserted and one when it finishes (or is retried); running jobs
-- stay out (jobs_running_idx finds them). The predicates are written as the
-- range "state >= s AND state <= s" rather than "state = s": a query that
-- says "state = s" lets the planner treat the state as a constant and walk
-- the primary key in id order, filtering on every row; a query that repeats
-- the range (so its predicate is proved) keeps the state as a sort key that
-- only these indexes deliver.
CREATE INDEX jobs_available_list_idx ON jobs (state, id, queue, kind) WHERE state >= 'available' AND state <= 'available';
CREATE INDEX jobs_completed_list_idx ON jobs (state, id, queue, kind, finalized_at) WHERE state >= 'completed' AND state <= 'completed';
CREATE INDEX jobs_cancelled_list_idx ON jobs (state, id, queue, kind, finalized_at) WHERE state >= 'cancelled' AND state <= 'cancelled';
CREATE INDEX jobs_discarded_list_idx ON jobs (state, id, queue, kind, finalized_at) WHERE state >= 'discarded' AND state <= 'discarded';
DROP INDEX jobs_list_idx;
