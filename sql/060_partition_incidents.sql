-- 060: incidents partitioned by month; (source, id) kept unique in incident_keys.
--
-- incidents becomes a table partitioned BY RANGE (occurred_from), one partition
-- per UTC calendar month (incidents_yYYYYmMM) plus a DEFAULT partition that
-- catches any row no month partition takes (so a write can never fail for want
-- of a partition). Writers create the months a batch touches first, through
-- rtcc_create_incident_partition(), which is safe under concurrent writers.
--
-- Why: every index of an unpartitioned table grows with the store, so an
-- append of one month paid for inserting into indexes of every year; now it
-- inserts into one month's small indexes. A time filter scans only the months
-- it covers (partition pruning, at plan time: the store sends constants).
--
-- A partitioned table's unique keys must contain the partition key, and
-- (source, id, occurred_from) would let the same incident re-sent with another
-- time in. So the key lives in incident_keys(source, id), filled by a statement
-- trigger from the rows actually inserted (one set-based INSERT per statement):
-- any insert, by the store or by hand, of a key already stored fails with a
-- unique violation, whatever month it falls in. DELETE and TRUNCATE of
-- incidents remove the keys too; (source, id) cannot be updated. Removing a
-- month by dropping or truncating its partition directly would leave its keys
-- behind (those incidents could not be re-loaded): DELETE instead.
--
-- Indexes are created on the parent, so every partition (present and future)
-- has them: BRIN on occurred_from (rows are written in time order), GiST on
-- geom, a btree per H3 column and on category, and the partial index of the
-- not-geolocated rows. The btree (source, occurred_from) is gone: time is
-- served by pruning + BRIN, and the writer's "any row of this source yet?"
-- probe reads incident_keys.
--
-- The existing rows are moved in place (every row kept, keys included); the
-- H3 columns were already recomputed by the Python step 055_h3_own_cells.

SET LOCAL maintenance_work_mem = '256MB';

ALTER TABLE incidents RENAME TO incidents_unpartitioned;
DROP TRIGGER IF EXISTS incidents_notify ON incidents_unpartitioned;
-- Free the index names for the new table (the old table goes below).
DROP INDEX IF EXISTS incidents_geom_gist, incidents_h3_r7, incidents_h3_r8, incidents_h3_r9, incidents_h3_r10,
    incidents_source_occurred, incidents_category, incidents_not_geolocated;

-- The same columns (collations, NOT NULL, defaults, the generated geom) and
-- CHECK constraints (040's geolocation rule) as the old table; its indexes and
-- primary key are not copied (a partitioned table's unique keys would have to
-- contain occurred_from: see incident_keys).
CREATE TABLE incidents (
    LIKE incidents_unpartitioned INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS
) PARTITION BY RANGE (occurred_from);

CREATE TABLE incidents_default PARTITION OF incidents DEFAULT;

CREATE TABLE incident_keys (
    source  text COLLATE "C" NOT NULL,
    id      text COLLATE "C" NOT NULL
);

-- The partition holding UTC month `month` (any time in the month will do).
CREATE OR REPLACE FUNCTION rtcc_incidents_partition_name(month timestamp)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'incidents_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM') $$;

-- Create the partition of UTC month `month` unless it exists; true if created.
-- Takes the writers' lock (SHARE ROW EXCLUSIVE on incidents) first, so two
-- writers needing the same month create it once: the second one waits, then
-- finds it. Rows of that month already in the DEFAULT partition (written by
-- hand, or before the month existed) are moved into the new partition; the
-- move bypasses the parent's triggers, so their keys stay and nothing is
-- announced again.
CREATE OR REPLACE FUNCTION rtcc_create_incident_partition(month timestamp)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    m      timestamp := date_trunc('month', month);
    lo     timestamptz := m AT TIME ZONE 'UTC';
    hi     timestamptz := (m + interval '1 month') AT TIME ZONE 'UTC';
    part   text := rtcc_incidents_partition_name(m);
    cols   text;
    moved  boolean;
BEGIN
    LOCK TABLE incidents IN SHARE ROW EXCLUSIVE MODE;
    IF to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    SELECT EXISTS (SELECT 1 FROM incidents_default WHERE occurred_from >= lo AND occurred_from < hi) INTO moved;
    IF moved THEN
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
        FROM pg_attribute
        WHERE attrelid = 'incidents'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
        EXECUTE format('CREATE TEMP TABLE rtcc_moved ON COMMIT DROP AS SELECT %s FROM incidents_default '
                       'WHERE occurred_from >= %L AND occurred_from < %L', cols, lo, hi);
        EXECUTE format('DELETE FROM incidents_default WHERE occurred_from >= %L AND occurred_from < %L', lo, hi);
    END IF;
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF incidents FOR VALUES FROM (%L) TO (%L)',
                   current_schema(), part, lo, hi);
    IF moved THEN
        EXECUTE format('INSERT INTO %I.%I (%s) SELECT %s FROM rtcc_moved', current_schema(), part, cols, cols);
        DROP TABLE rtcc_moved;
    END IF;
    RETURN true;
END
$$;

-- Move the rows: one partition per month present, in time order (for BRIN).
SELECT rtcc_create_incident_partition(m)
FROM (SELECT DISTINCT date_trunc('month', occurred_from AT TIME ZONE 'UTC') AS m FROM incidents_unpartitioned) t
ORDER BY m;

INSERT INTO incidents (source, id, occurred_from, occurred_to, reported_at, time_known, offense_raw, offense_code,
                       category, lon, lat, block, district, extras, h3_r7, h3_r8, h3_r9, h3_r10)
SELECT source, id, occurred_from, occurred_to, reported_at, time_known, offense_raw, offense_code,
       category, lon, lat, block, district, extras, h3_r7, h3_r8, h3_r9, h3_r10
FROM incidents_unpartitioned
ORDER BY occurred_from;

INSERT INTO incident_keys (source, id) SELECT source, id FROM incidents_unpartitioned;
ALTER TABLE incident_keys ADD CONSTRAINT incident_keys_pkey PRIMARY KEY (source, id);
DROP TABLE incidents_unpartitioned;

-- Built once over the moved rows (a sorted build, not row-by-row inserts).
CREATE INDEX incidents_occurred_brin    ON incidents USING brin (occurred_from);
CREATE INDEX incidents_geom_gist        ON incidents USING gist (geom);
CREATE INDEX incidents_h3_r7            ON incidents (h3_r7);
CREATE INDEX incidents_h3_r8            ON incidents (h3_r8);
CREATE INDEX incidents_h3_r9            ON incidents (h3_r9);
CREATE INDEX incidents_h3_r10           ON incidents (h3_r10);
CREATE INDEX incidents_category         ON incidents (category);
CREATE INDEX incidents_not_geolocated   ON incidents (source, occurred_from) WHERE lon IS NULL;

-- Keys follow the rows.
CREATE OR REPLACE FUNCTION rtcc_incident_keys_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incident_keys (source, id) SELECT source, id FROM new_rows;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rtcc_incident_keys_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM incident_keys k USING old_rows o WHERE k.source = o.source AND k.id = o.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rtcc_incident_keys_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE incident_keys;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rtcc_incident_keys_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incidents.source and incidents.id cannot be changed (% %): delete and insert instead',
        OLD.source, OLD.id;
END
$$;

-- Named so they run in this order after an insert: keys (a repeated key fails
-- the statement) before notify (010/020's announcement).
CREATE TRIGGER incidents_keys_insert AFTER INSERT ON incidents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rtcc_incident_keys_insert();
CREATE TRIGGER incidents_keys_delete AFTER DELETE ON incidents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rtcc_incident_keys_delete();
CREATE TRIGGER incidents_keys_truncate AFTER TRUNCATE ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION rtcc_incident_keys_truncate();
CREATE TRIGGER incidents_keys_immutable BEFORE UPDATE OF source, id ON incidents
    FOR EACH ROW WHEN (OLD.source IS DISTINCT FROM NEW.source OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION rtcc_incident_keys_immutable();
CREATE TRIGGER incidents_notify AFTER INSERT ON incidents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rtcc_notify_incidents();

ANALYZE incidents;
ANALYZE incident_keys;
