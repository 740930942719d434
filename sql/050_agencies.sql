-- 050: the agency lives in the store (rtcc-geo agency add), not in the repository.
--
-- One row per agency with its settings (time zone, buffer, bbox, resolutions,
-- district aliases, taxonomy CSV text); its polygons in rtcc_agency_areas:
-- kind 'boundary' (one row, the union), 'district' (key + label) or 'layer'
-- (base-map features, grouped by layer name, properties kept as jsonb).

CREATE TABLE rtcc_agencies (
    name        text COLLATE "C" PRIMARY KEY,
    timezone    text        NOT NULL,
    settings    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    taxonomy    text,                   -- the taxonomy CSV as given (offense,detail,category,note)
    added_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rtcc_agency_areas (
    agency      text COLLATE "C" NOT NULL REFERENCES rtcc_agencies (name) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('boundary', 'district', 'layer')),
    layer       text NOT NULL DEFAULT '',     -- base-layer name (kind = 'layer')
    ord         integer NOT NULL,             -- order within (agency, kind, layer)
    key         text,                         -- district name (kind = 'district')
    label       text,                         -- district display label
    props       jsonb,                        -- base-layer feature properties
    geom        geometry(Geometry, 4326) NOT NULL,
    PRIMARY KEY (agency, kind, layer, ord)
);

CREATE INDEX rtcc_agency_areas_geom ON rtcc_agency_areas USING gist (geom);
