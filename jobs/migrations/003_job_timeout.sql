-- Per-job timeout (InsertOpts.Timeout), in microseconds: NULL uses the
-- worker's or the client's timeout, a negative value means no timeout.
ALTER TABLE jobs ADD COLUMN timeout_us bigint;
