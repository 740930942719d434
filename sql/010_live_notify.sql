-- 010: announce new incidents with LISTEN/NOTIFY (channel rtcc_incidents).
--
-- A statement-level trigger over the inserted rows (transition table), so a
-- bulk COPY + upsert of 300k rows costs one small notification, not 300k:
-- batches of up to 500 rows are announced row by row in chunks of 15 (a
-- NOTIFY payload must stay under 8000 bytes), larger ones as a single
-- {"bulk": n} note that tells listeners to reload from the table.
-- Payloads carry no address: every signed-in role may see the live stream.
-- Only rows actually inserted are announced (ON CONFLICT DO NOTHING skips
-- re-delivered incidents), so at-least-once delivery never double-announces.

CREATE OR REPLACE FUNCTION rtcc_notify_incidents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n      bigint;
    chunk  json;
BEGIN
    SELECT count(*) INTO n FROM new_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n > 500 THEN
        PERFORM pg_notify('rtcc_incidents', json_build_object(
            'schema', current_schema(), 'bulk', n,
            'sources', (SELECT json_agg(DISTINCT source) FROM new_rows))::text);
        RETURN NULL;
    END IF;
    FOR chunk IN
        SELECT json_agg(json_build_object(
                   'id', id, 'source', source, 'occurred_from', occurred_from,
                   'time_known', time_known, 'category', category, 'lon', lon, 'lat', lat,
                   'h3_r7', h3_r7, 'h3_r8', h3_r8, 'h3_r9', h3_r9, 'h3_r10', h3_r10))
        FROM (SELECT *, (row_number() OVER ()) - 1 AS rn FROM new_rows) r
        GROUP BY rn / 15
    LOOP
        PERFORM pg_notify('rtcc_incidents', json_build_object(
            'schema', current_schema(), 'rows', chunk)::text);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER incidents_notify
    AFTER INSERT ON incidents
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rtcc_notify_incidents();
