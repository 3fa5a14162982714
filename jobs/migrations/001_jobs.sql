-- jobs: a SKIP LOCKED job queue.
--
-- A job is 'available' (waiting; scheduled_at may be in the future for
-- scheduled jobs and retries), 'running' (fetched by the client named in
-- attempted_by), or finished: 'completed', 'cancelled' or 'discarded'.
CREATE TABLE jobs (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    kind          text        NOT NULL,
    queue         text        NOT NULL DEFAULT 'default',
    state         text        NOT NULL DEFAULT 'available'
                  CHECK (state IN ('available', 'running', 'completed', 'cancelled', 'discarded')),
    priority      smallint    NOT NULL DEFAULT 0 CHECK (priority >= 0),
    args          jsonb       NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    tags          text[]      NOT NULL DEFAULT '{}',
    attempt       integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 25 CHECK (max_attempts >= 1),
    errors        jsonb       NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    attempted_at  timestamptz,
    attempted_by  text,
    finalized_at  timestamptz,
    cancel_requested boolean  NOT NULL DEFAULT false,
    -- unique_key is set for unique jobs and cleared when the job no longer
    -- holds it: on cancel/discard, and on completion unless unique_keep.
    unique_key    text,
    unique_keep   boolean     NOT NULL DEFAULT false
) WITH (fillfactor = 90);

-- The fetch: available jobs of a queue in run order.
CREATE INDEX jobs_fetch_idx ON jobs (queue, priority, scheduled_at, id) WHERE state = 'available';
-- Unique jobs: at most one holder per key.
CREATE UNIQUE INDEX jobs_unique_idx ON jobs (unique_key, tenant_id) NULLS NOT DISTINCT WHERE unique_key IS NOT NULL;
-- Pruning and admin listing of finished jobs.
CREATE INDEX jobs_finalized_idx ON jobs (finalized_at) WHERE finalized_at IS NOT NULL;
-- Running jobs: the rescuer's scan and the global concurrency count. Kept
-- partial (like the fetch index) so that a job's other state changes cost
-- no entry here; admin listing walks the primary key (keyset on id).
CREATE INDEX jobs_running_idx ON jobs (queue, attempted_by) WHERE state = 'running';

-- Live clients; a client's heartbeat renews the lease of every job it runs.
CREATE TABLE jobs_clients (
    id          text        PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Queue controls shared by every client: pause, global concurrency, rate limit.
CREATE TABLE jobs_queues (
    name         text        PRIMARY KEY,
    paused       boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Leader election (a lease renewed by the leader) for maintenance and periodic jobs.
CREATE TABLE jobs_leader (
    name        text        PRIMARY KEY,
    client_id   text        NOT NULL,
    expires_at  timestamptz NOT NULL
);
