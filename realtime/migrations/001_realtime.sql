-- realtime: durable streams, stored large payloads, and the publish functions.
-- Tables are named unqualified; the migration runner sets search_path to the
-- target schema, and the functions capture it with SET search_path FROM CURRENT.

-- One row per channel that keeps an event log (opt-in). last_id is the
-- channel's counter: publishers bump it with UPDATE, so the row lock orders
-- concurrent publishers of one channel by commit and ids become visible in
-- increasing order (a reader that saw id n never later finds an id < n appear).
CREATE TABLE realtime_streams (
    channel    text        PRIMARY KEY,
    last_id    bigint      NOT NULL DEFAULT 0,
    max_age    interval,
    max_len    bigint      CHECK (max_len IS NULL OR max_len > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant_id  uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid
);

CREATE TABLE realtime_events (
    channel    text        NOT NULL,
    id         bigint      NOT NULL,
    payload    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant_id  uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
    PRIMARY KEY (channel, id)
);
CREATE INDEX realtime_events_created_at_idx ON realtime_events (created_at);

-- Payloads too large for NOTIFY (8000 bytes); the notification carries the id.
CREATE TABLE realtime_payloads (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel    text        NOT NULL,
    payload    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant_id  uuid        DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid
);
CREATE INDEX realtime_payloads_created_at_idx ON realtime_payloads (created_at);

-- realtime_publish sends one message. The notification payload is the
-- message itself when it fits and needs no envelope, otherwise an envelope
-- starting with the byte 0x1e:
--   0x1e 'P' payload        a payload that itself starts with 0x1e
--   0x1e 'R' id             a large payload stored in realtime_payloads
--   0x1e 'e' id ':' payload an event of a durable stream
--   0x1e 'E' id             a large event of a durable stream
-- It returns the stream id for durable channels and NULL otherwise.
CREATE FUNCTION realtime_publish(p_channel text, p_payload text) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_id  bigint;
    v_ref bigint;
    v_msg text;
BEGIN
    -- Most channels have no stream: look before taking the row lock.
    IF EXISTS (SELECT 1 FROM realtime_streams WHERE channel = p_channel) THEN
        UPDATE realtime_streams SET last_id = last_id + 1 WHERE channel = p_channel RETURNING last_id INTO v_id;
    END IF;
    IF v_id IS NOT NULL THEN
        INSERT INTO realtime_events (channel, id, payload) VALUES (p_channel, v_id, p_payload);
        v_msg := chr(30) || 'e' || v_id || ':' || p_payload;
        IF octet_length(v_msg) > 7999 THEN
            v_msg := chr(30) || 'E' || v_id;
        END IF;
    ELSIF octet_length(p_payload) > 7999 OR (octet_length(p_payload) > 7997 AND left(p_payload, 1) = chr(30)) THEN
        INSERT INTO realtime_payloads (channel, payload) VALUES (p_channel, p_payload) RETURNING id INTO v_ref;
        v_msg := chr(30) || 'R' || v_ref;
    ELSIF left(p_payload, 1) = chr(30) THEN
        v_msg := chr(30) || 'P' || p_payload;
    ELSE
        v_msg := p_payload;
    END IF;
    PERFORM pg_notify(p_channel, v_msg);
    RETURN v_id;
END
$$;

-- realtime_publish_many sends messages in array order in one statement.
-- When no channel of the batch has a stream and every payload goes out as
-- is, one set-based pg_notify does it (ORDER BY makes PostgreSQL evaluate
-- the volatile pg_notify after sorting, i.e. in array order); otherwise
-- each message goes through realtime_publish.
CREATE FUNCTION realtime_publish_many(p_channels text[], p_payloads text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(array_length(p_channels, 1), 0);
BEGIN
    IF n <> coalesce(array_length(p_payloads, 1), 0) THEN
        RAISE EXCEPTION 'realtime_publish_many: % channels but % payloads', n, coalesce(array_length(p_payloads, 1), 0);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM realtime_streams WHERE channel = ANY (p_channels))
       AND NOT EXISTS (SELECT 1 FROM unnest(p_payloads) AS p
                       WHERE octet_length(p) > 7999 OR left(p, 1) = chr(30)) THEN
        PERFORM pg_notify(c, p)
           FROM unnest(p_channels, p_payloads) WITH ORDINALITY AS t(c, p, i)
          ORDER BY i;
        RETURN;
    END IF;
    FOR i IN 1 .. n LOOP
        PERFORM realtime_publish(p_channels[i], p_payloads[i]);
    END LOOP;
END
$$;

-- realtime_table_change is the row trigger installed by TableChangesSQL.
-- TG_ARGV: [0] channel, [1] key columns and [2] data columns, both as JSON
-- arrays of column names. It publishes
--   {"op": "INSERT"|"UPDATE"|"DELETE", "table": ..., "schema": ..., "key": {...}, "data": {...}}
-- where data holds the chosen columns of the new row (the old row for DELETE).
CREATE FUNCTION realtime_table_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_row  jsonb;
    v_key  jsonb;
    v_data jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_row := to_jsonb(OLD);
    ELSE
        v_row := to_jsonb(NEW);
    END IF;
    SELECT coalesce(jsonb_object_agg(c, v_row -> c), '{}') INTO v_key
      FROM jsonb_array_elements_text(TG_ARGV[1]::jsonb) AS c;
    SELECT coalesce(jsonb_object_agg(c, v_row -> c), '{}') INTO v_data
      FROM jsonb_array_elements_text(TG_ARGV[2]::jsonb) AS c;
    PERFORM realtime_publish(TG_ARGV[0], jsonb_build_object(
        'op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
        'key', v_key, 'data', v_data)::text);
    RETURN NULL;
END
$$;
