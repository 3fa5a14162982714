-- The application's own tables. Every one of them holds one workspace's
-- rows and carries the tenancy convention's tenant_id column; the app
-- protects every such table (its own and the justpg packages') with
-- tenancy.Protect at start-up, so these statements do not repeat it.
CREATE TABLE public.members (
    user_id    uuid        PRIMARY KEY,
    tenant_id  uuid        NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    handle     text        NOT NULL CHECK (handle ~ '^[a-z0-9][a-z0-9._-]{0,31}$'),
    role       text        NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, handle)
);

CREATE TABLE public.notes (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid        NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    author_id  uuid        NOT NULL REFERENCES public.members (user_id),
    title      text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body       text        NOT NULL DEFAULT '' CHECK (length(body) <= 20000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_tenant_updated_idx ON public.notes (tenant_id, updated_at DESC, id DESC);

CREATE TABLE public.attachments (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid        NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    note_id       bigint      NOT NULL REFERENCES public.notes (id) ON DELETE CASCADE,
    file_id       uuid        NOT NULL,
    name          text        NOT NULL,
    -- The name's words ("q3-report.pdf" -> "q3 report pdf"), which search
    -- indexes: the text-search parser reads a whole file name as one token.
    -- (Not a generated column: search's own generated column reads it.)
    name_words    text        NOT NULL,
    content_type  text        NOT NULL,
    size          bigint      NOT NULL,
    -- What the upload's job made of it: a thumbnail (another file) for an
    -- image, a preview for text. status: pending, ready, none (nothing to
    -- make), failed.
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'none', 'failed')),
    thumb_file_id uuid,
    preview       text,
    job_id        bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_tenant_note_idx ON public.attachments (tenant_id, note_id, id);

CREATE TABLE public.digests (
    tenant_id  uuid        NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    day        date        NOT NULL,
    notes      int         NOT NULL,
    files      int         NOT NULL,
    summary    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);
