-- 002: H3 parent roll-up on BIGINT cell ids, without the h3-pg extension.
--
-- An H3 cell index keeps its resolution in the 4 bits at 52..55 and one 3-bit
-- digit per resolution 1..15 below that (digit r at bits 3*(15-r)); digits
-- finer than the cell's resolution are 7. So the parent at `res` is the cell
-- with the resolution field set to `res` and every digit finer than `res` set
-- to 7: the same bit arithmetic as rtcc_geo.grid.parent, checked against
-- h3.cell_to_parent in tests/test_postgis_store.py.
--
-- NULL when res is finer than the cell (no parent there) or outside 0..15.
-- A plain SQL expression, so the planner inlines it into aggregates.

CREATE OR REPLACE FUNCTION rtcc_h3_parent(cell bigint, res int)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN res BETWEEN 0 AND 15 AND res <= ((cell >> 52) & 15) THEN
            (cell & ~(15::bigint << 52))
            | (res::bigint << 52)
            | ((1::bigint << (3 * (15 - res))) - 1)
    END
$$;
