-- 001: core tables of the PostGIS store.
--
-- Every object is created unqualified, so it lands in the first schema of
-- search_path (tests isolate themselves with options=-csearch_path=<schema>,public).
-- PostGIS types and functions are found through search_path (normally public).
-- Key and grouping text columns use COLLATE "C": byte order (= code-point order
-- in UTF-8, the order pandas sorts in) and memcmp comparisons, several times
-- cheaper in the primary key and GROUP BY than a locale's strcoll.

CREATE TABLE sources (
    name      text COLLATE "C" PRIMARY KEY,
    timezone  text NOT NULL            -- IANA zone, used for every local-time figure
);

CREATE TABLE incidents (
    -- No FK to sources: write_incidents checks the sources once per batch, and a
    -- per-row RI trigger would cost more than the whole COPY.
    source         text COLLATE "C" NOT NULL,
    id             text COLLATE "C" NOT NULL,
    occurred_from  timestamptz      NOT NULL,
    occurred_to    timestamptz,
    reported_at    timestamptz,
    time_known     boolean          NOT NULL DEFAULT true,
    offense_raw    text,
    offense_code   text,
    category       text COLLATE "C",
    lon            double precision,
    lat            double precision,
    block          text,
    district       text COLLATE "C",
    extras         jsonb,           -- source-specific columns (NULL kept as NULL, like the embedded store)
    h3_r7          bigint,
    h3_r8          bigint,
    h3_r9          bigint,
    h3_r10         bigint,
    -- Built in SQL from lon/lat, so it can never disagree with them.
    geom           geometry(Point, 4326)
                   GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED,
    PRIMARY KEY (source, id)
);

CREATE INDEX incidents_geom_gist        ON incidents USING gist (geom);
CREATE INDEX incidents_h3_r7            ON incidents (h3_r7);
CREATE INDEX incidents_h3_r8            ON incidents (h3_r8);
CREATE INDEX incidents_h3_r9            ON incidents (h3_r9);
CREATE INDEX incidents_h3_r10           ON incidents (h3_r10);
CREATE INDEX incidents_source_occurred  ON incidents (source, occurred_from);
CREATE INDEX incidents_category         ON incidents (category);

CREATE TABLE quarantine (
    source      text COLLATE "C" NOT NULL,
    file        text COLLATE "C" NOT NULL,
    row_number  bigint  NOT NULL,      -- 1-based data row within file (header excluded)
    reason      text    NOT NULL,
    detail      text,
    raw         jsonb,                 -- the input row, so nothing is lost
    PRIMARY KEY (source, file, row_number)
);

CREATE INDEX quarantine_reason ON quarantine (source, reason);

-- One row per ingest run of one file: what was read, loaded, quarantined.
CREATE TABLE ingest_log (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,
    file         text        NOT NULL,
    checksum     text,
    read         bigint      NOT NULL,
    loaded       bigint      NOT NULL,
    quarantined  bigint      NOT NULL,
    duplicates   bigint      NOT NULL DEFAULT 0,
    by_reason    jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- Derived tables written by Store.put_table live in real tables rtcc_t_<name>;
-- this catalogue keeps each column's pandas dtype so get_table returns it unchanged.
CREATE TABLE rtcc_tables (
    name        text        PRIMARY KEY,
    tbl         text        NOT NULL UNIQUE,  -- the physical table, rtcc_t_<name> (hashed if long)
    columns     jsonb       NOT NULL,  -- [{"name": ..., "dtype": ...}, ...] in order
    n_rows      bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
