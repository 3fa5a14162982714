CREATE TABLE quickstart_notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
