-- Per-queue rate limiting: a fixed window shared by every client.
ALTER TABLE jobs_queues
    ADD COLUMN rate_window_start timestamptz,
    ADD COLUMN rate_count        integer NOT NULL DEFAULT 0;
