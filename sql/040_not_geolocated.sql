-- 040: incidents that are not geolocated (rtcc_geo.schema, "Not-geolocated incidents").
--
-- An incident with a district and a valid time but no usable point is loaded
-- with lon = lat = NULL (so the generated geom is NULL) and every H3 column
-- = 0 (rtcc_geo.schema.NO_CELL, no valid H3 index): it counts in CompStat,
-- time profiles, district tables and staffing, and spatial queries leave it out
-- with "lon IS NOT NULL". The constraint keeps the three markers in step, and
-- the partial index serves the non-spatial counts of the ungeolocated few.

ALTER TABLE incidents ADD CONSTRAINT incidents_geolocated_consistent CHECK (
    (lon IS NULL) = (lat IS NULL)
    AND (lon IS NULL) = (h3_r7 = 0) AND (lon IS NULL) = (h3_r8 = 0)
    AND (lon IS NULL) = (h3_r9 = 0) AND (lon IS NULL) = (h3_r10 = 0)
);

CREATE INDEX incidents_not_geolocated ON incidents (source, occurred_from) WHERE lon IS NULL;
