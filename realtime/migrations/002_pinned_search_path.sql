-- The publish functions and the table-change trigger, with search_path
-- pinned to pg_catalog, pg_temp and every object of this package named with
-- the schema it is created in.
--
-- 001 gave them SET search_path FROM CURRENT, which captured the migration's
-- "<schema>", public. The functions run with the privileges of whoever
-- publishes (or writes a table with a change trigger), so a role allowed to
-- create objects in public (every role before PostgreSQL 15; databases
-- upgraded since keep that grant) could plant there an operator or function
-- that matches a call more closely than the built-in one, such as
-- ||(text, bigint) for "chr(30) || 'e' || v_id", and have it run as the
-- publisher. With only pg_catalog on the path (pg_temp last, never searched
-- for functions or operators) every call resolves to the built-ins.
--
-- The bodies are those of 001 otherwise. format() writes the schema in;
-- a literal % in a body is written %%.
DO $do$
BEGIN
EXECUTE format($fn$
CREATE OR REPLACE FUNCTION %1$I.realtime_publish(p_channel text, p_payload text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    v_id  bigint;
    v_ref bigint;
    v_msg text;
BEGIN
    -- Most channels have no stream: look before taking the row lock.
    IF EXISTS (SELECT 1 FROM %1$I.realtime_streams WHERE channel = p_channel) THEN
        UPDATE %1$I.realtime_streams SET last_id = last_id + 1 WHERE channel = p_channel RETURNING last_id INTO v_id;
    END IF;
    IF v_id IS NOT NULL THEN
        INSERT INTO %1$I.realtime_events (channel, id, payload) VALUES (p_channel, v_id, p_payload);
        v_msg := chr(30) || 'e' || v_id::text || ':' || p_payload;
        IF octet_length(v_msg) > 7999 THEN
            v_msg := chr(30) || 'E' || v_id::text;
        END IF;
    ELSIF octet_length(p_payload) > 7999 OR (octet_length(p_payload) > 7997 AND left(p_payload, 1) = chr(30)) THEN
        INSERT INTO %1$I.realtime_payloads (channel, payload) VALUES (p_channel, p_payload) RETURNING id INTO v_ref;
        v_msg := chr(30) || 'R' || v_ref::text;
    ELSIF left(p_payload, 1) = chr(30) THEN
        v_msg := chr(30) || 'P' || p_payload;
    ELSE
        v_msg := p_payload;
    END IF;
    PERFORM pg_notify(p_channel, v_msg);
    RETURN v_id;
END
$body$
$fn$, current_schema());

EXECUTE format($fn$
CREATE OR REPLACE FUNCTION %1$I.realtime_publish_many(p_channels text[], p_payloads text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    n integer := coalesce(array_length(p_channels, 1), 0);
BEGIN
    IF n <> coalesce(array_length(p_payloads, 1), 0) THEN
        RAISE EXCEPTION 'realtime_publish_many: %% channels but %% payloads', n, coalesce(array_length(p_payloads, 1), 0);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM %1$I.realtime_streams WHERE channel = ANY (p_channels))
       AND NOT EXISTS (SELECT 1 FROM unnest(p_payloads) AS p
                       WHERE octet_length(p) > 7999 OR left(p, 1) = chr(30)) THEN
        PERFORM pg_notify(c, p)
           FROM unnest(p_channels, p_payloads) WITH ORDINALITY AS t(c, p, i)
          ORDER BY i;
        RETURN;
    END IF;
    FOR i IN 1 .. n LOOP
        PERFORM %1$I.realtime_publish(p_channels[i], p_payloads[i]);
    END LOOP;
END
$body$
$fn$, current_schema());

EXECUTE format($fn$
CREATE OR REPLACE FUNCTION %1$I.realtime_table_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
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
    PERFORM %1$I.realtime_publish(TG_ARGV[0], jsonb_build_object(
        'op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
        'key', v_key, 'data', v_data)::text);
    RETURN NULL;
END
$body$
$fn$, current_schema());
END
$do$;
