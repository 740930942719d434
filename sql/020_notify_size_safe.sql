-- 020: NOTIFY that can never fail an insert.
--
-- 010 announced rows in chunks of 15; pg_notify refuses a payload of 8000
-- bytes or more, and long ids (multi-byte text above all) could push a chunk
-- over, failing the whole INSERT: a poison record that made the feed answer
-- "503, retry" for ever. Now chunks are cut by size (under 7000 bytes), and a
-- row that alone would not fit turns the batch into a {"bulk": n} note
-- (listeners then reload from the table), so announcing never blocks storing.

CREATE OR REPLACE FUNCTION rtcc_notify_incidents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n       bigint;
    rec     record;
    chunk   text := '';
    rows_in integer := 0;
    prefix  text := '{"schema":' || to_json(current_schema())::text || ',"rows":[';
BEGIN
    SELECT count(*) INTO n FROM new_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n > 500 OR EXISTS (
        SELECT 1 FROM new_rows WHERE octet_length(id) + octet_length(source) > 6000) THEN
        PERFORM pg_notify('rtcc_incidents', json_build_object(
            'schema', current_schema(), 'bulk', n,
            'sources', (SELECT json_agg(DISTINCT source) FROM new_rows))::text);
        RETURN NULL;
    END IF;
    FOR rec IN
        SELECT json_build_object(
                   'id', id, 'source', source, 'occurred_from', occurred_from,
                   'time_known', time_known, 'category', category, 'lon', lon, 'lat', lat,
                   'h3_r7', h3_r7, 'h3_r8', h3_r8, 'h3_r9', h3_r9, 'h3_r10', h3_r10)::text AS j
        FROM new_rows
    LOOP
        IF rows_in > 0 AND octet_length(prefix) + octet_length(chunk) + octet_length(rec.j) + 3 > 7000 THEN
            PERFORM pg_notify('rtcc_incidents', prefix || chunk || ']}');
            chunk := '';
            rows_in := 0;
        END IF;
        chunk := chunk || CASE WHEN rows_in > 0 THEN ',' ELSE '' END || rec.j;
        rows_in := rows_in + 1;
    END LOOP;
    IF rows_in > 0 THEN
        PERFORM pg_notify('rtcc_incidents', prefix || chunk || ']}');
    END IF;
    RETURN NULL;
END
$$;
