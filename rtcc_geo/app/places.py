"""Place names from the data itself: each map cell named by its most frequent block
address and its district, and a search over the store's own addresses.

A hexagon id ("892aacb286fffff") means nothing to a commander; "1500 BLOCK
MARKET ST, district 06" does. The agency's street file has geometry only, so
names come from the incidents' published block addresses. Blocks are compared
after :func:`norm_block` (the normal form ingest stores, :mod:`rtcc_geo.places`), so
"5500 BLOCK Tulip St" and "5500 BLOCK TULIP ST" are one place.

Everything is built once per process from one read of the source's
``block``/``district``/``lon``/``lat``/cell columns; each resolution uses the
incident's own cell at that resolution (H3 children do not nest exactly, so a
roll-up of the finest cell would name some incidents' neighbouring hexagon).
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pandas as pd

from rtcc_geo import grid
from rtcc_geo.schema import h3_column
from rtcc_geo.store.base import Query

_BLOCK = re.compile(r"^\s*\d+\s+BLOCK\s+(?:OF\s+)?", re.IGNORECASE)


def norm_block(s: pd.Series) -> pd.Series:
    """Block addresses in the one normal form ingest stores them in
    (:func:`rtcc_geo.places.normalise_block`); empty -> NA."""
    from rtcc_geo.places import normalise_block

    return normalise_block(s)


def street_of(block: pd.Series) -> pd.Series:
    """The street of a normalised block address ("1500 BLOCK MARKET ST" -> "MARKET ST");
    NA for intersections ("S 15TH ST & MARKET ST") and other forms."""
    s = block.astype("string")
    has = s.str.match(_BLOCK.pattern, case=False) & ~s.str.contains("&", regex=False)
    return s.str.replace(_BLOCK, "", regex=True).where(has.fillna(False))


def district_key(d) -> str:
    """ "06", "6" and " 6 " are one district: the agency's one district normalisation
    (:func:`rtcc_geo.config.norm_district`)."""
    from rtcc_geo.config import norm_district

    return norm_district(d)


def district_label(d) -> str:
    s = str(d).strip()
    return f"district {s.zfill(2)}" if s.isdigit() else s


class Places:
    """Names and search for one source (build with :meth:`for_context`)."""

    def __init__(self, df: pd.DataFrame, res: int, districts=None):
        """``df``: columns ``block``, ``district``, ``lon``, ``lat``, ``cell`` (at ``res``),
        and optionally ``h3_r<k>`` columns (each incident's own cell at coarser resolutions)."""
        self.res = int(res)
        df = df.assign(block=norm_block(df["block"]))
        self.districts = districts
        own = [c for c in df.columns if c.startswith("h3_r") and c != h3_column(res)]
        self._rows = df[["block", "district", "lon", "lat", "cell", *own]].reset_index(drop=True)
        self._names: dict[int, tuple[np.ndarray, list[str]]] = {}
        self._lock = threading.Lock()
        self._index = None

    @classmethod
    def for_context(cls, ctx) -> Places:
        from .context import MAP_RESOLUTIONS

        res = max(MAP_RESOLUTIONS)
        # Located incidents only (not-geolocated rows have no cell), with or without a known time.
        df = ctx.store.incidents(
            Query(source=ctx.source, include_unknown_time=True, geolocated=True),
            columns=["block", "district", "lon", "lat", *(h3_column(r) for r in MAP_RESOLUTIONS)],
        )
        df = df.rename(columns={h3_column(res): "cell"})
        return cls(df, res, ctx.districts)

    def _cells_at(self, rows: pd.DataFrame, res: int) -> np.ndarray:
        """Each row's own cell at ``res`` (its indexed column), else the finest cell rolled up."""
        col = h3_column(res)
        if res != self.res and col in rows.columns:
            return rows[col].to_numpy(np.int64)
        cells = rows["cell"].to_numpy(np.int64)
        return grid.parent(cells, res) if res < self.res else cells

    # --- cell names -----------------------------------------------------------
    def top_blocks(self, res: int, n: int = 1) -> pd.DataFrame:
        """Per cell at ``res``: its ``n`` most frequent block addresses with counts
        (ties broken alphabetically), columns ``cell``, ``block``, ``n``, ``rank``."""
        from rtcc_geo.places import rank_by_cell

        r = self._rows.dropna(subset=["block", "cell"])
        return rank_by_cell(self._cells_at(r, res), r["block"].to_numpy(), n)

    def cell_districts(self, cells: np.ndarray) -> list[str]:
        """The district (polygon containing the cell's centre, else the data's most
        frequent one) of each cell, as a label ("district 06"), "" when unknown."""
        cells = np.asarray(cells, dtype=np.int64)
        out = [""] * len(cells)
        if not len(cells):
            return out
        if self.districts is not None and len(self.districts):
            import shapely

            lat, lon = grid.cell_centres(cells)
            pts = shapely.points(lon, lat)
            polys = self.districts.geometry.values
            names = self.districts["district"].astype(str).tolist()
            tree = shapely.STRtree(polys)
            pi, gi = tree.query(pts, predicate="within")
            for p, g in zip(pi.tolist(), gi.tolist()):
                out[p] = district_label(names[g])
        missing = [i for i, s in enumerate(out) if not s]
        if missing:
            r = self._rows.dropna(subset=["district", "cell"])
            rc = self._cells_at(r, int(grid.resolution(cells[:1])[0]))
            mode = (
                pd.DataFrame({"cell": rc, "d": r["district"].astype(str).to_numpy()})
                .groupby(["cell", "d"])
                .size()
                .rename("n")
                .reset_index()
                .sort_values(["cell", "n"], ascending=[True, False])
                .drop_duplicates("cell")
                .set_index("cell")["d"]
            )
            for i in missing:
                d = mode.get(int(cells[i]))
                if d is not None:
                    out[i] = district_label(d)
        return out

    def names(self, cells: np.ndarray) -> list[str]:
        """One readable name per cell ("1500 BLOCK MARKET ST, district 06"; the district
        alone where no incident carries a block). Cached per cell set."""
        cells = np.asarray(cells, dtype=np.int64)
        if not len(cells):
            return []
        res = int(grid.resolution(cells[:1])[0])
        key = hash(cells.tobytes())
        with self._lock:
            hit = self._names.get(key)
        if hit is not None and np.array_equal(hit[0], cells):
            return hit[1]
        top = self.top_blocks(res, 1).set_index("cell")["block"]
        dists = self.cell_districts(cells)
        blocks = top.reindex(cells).tolist()
        out = [", ".join(x for x in (b if isinstance(b, str) else "", d) if x) for b, d in zip(blocks, dists)]
        with self._lock:
            self._names[key] = (cells, out)
        return out

    # --- search ---------------------------------------------------------------
    def _build_index(self) -> pd.DataFrame:
        r = self._rows.dropna(subset=["block", "lon", "lat"])
        blocks = r.groupby("block").agg(n=("block", "size"), lon=("lon", "median"), lat=("lat", "median")).reset_index()
        d = (
            r.dropna(subset=["district"])
            .groupby(["block", "district"])
            .size()
            .rename("k")
            .reset_index()
            .sort_values(["block", "k"], ascending=[True, False])
            .drop_duplicates("block")
            .set_index("block")["district"]
        )
        blocks["district"] = blocks["block"].map(d).fillna("").astype(str)
        blocks["street"] = street_of(blocks["block"])
        return blocks

    def search(self, text: str, limit: int = 8, blocks: bool = True) -> list[dict]:
        """Places matching ``text`` (case and spacing ignored), best first: districts
        by number or name, whole streets (every block of the street, e.g. "MARKET ST"),
        block addresses. Each: ``label``, ``kind``, ``n`` (incidents), ``bbox``
        ``[west, south, east, north]``. ``blocks=False``: districts and streets only."""
        q = " ".join(str(text or "").upper().split())
        if len(q) < 2 and not q.isdigit():
            return []
        with self._lock:
            if self._index is None:
                self._index = self._build_index()
            idx = self._index
        assert idx is not None
        out: list[dict] = []
        # Districts: "6", "06", "district 6", or a polygon's name.
        m = re.fullmatch(r"(?:DISTRICT|DIST|D)?\s*(\w+)", q)
        if m and self.districts is not None:
            want = district_key(m.group(1))
            for name, geom in zip(self.districts["district"].astype(str), self.districts.geometry):
                if district_key(name) == want:
                    out.append(
                        {
                            "label": district_label(name).capitalize(),
                            "kind": "district",
                            "n": None,
                            "bbox": [round(v, 5) for v in geom.bounds],
                        }
                    )
        if q.isdigit():  # a number is a district, never part of an address
            return out[:limit]
        hit = idx[idx["block"].str.contains(q, regex=False)]
        streets = hit.dropna(subset=["street"])
        streets = streets[streets["street"].str.contains(q, regex=False)]
        if len(streets):
            g = (
                streets.groupby("street")
                .agg(
                    n=("n", "sum"),
                    blocks=("n", "size"),
                    w=("lon", "min"),
                    s=("lat", "min"),
                    e=("lon", "max"),
                    nn=("lat", "max"),
                )
                .reset_index()
            )
            # The exact street first, then by incidents.
            g["exact"] = g["street"] == q
            # A street of one or two blocks is usually a typo in the source ("MARKET ST 2"): after the rest.
            g["real"] = g["blocks"] >= 3
            g = g.sort_values(["exact", "real", "n"], ascending=[False, False, False]).head(3)
            for row in g.itertuples(index=False):
                out.append(
                    {
                        "label": f"{row.street} (whole street, {row.blocks} blocks)",
                        "kind": "street",
                        "n": int(row.n),
                        "bbox": [float(row.w), float(row.s), float(row.e), float(row.nn)],
                    }
                )
        for row in (hit.sort_values("n", ascending=False).head(limit) if blocks else hit.head(0)).itertuples(
            index=False
        ):
            d = f", {district_label(row.district)}" if isinstance(row.district, str) and row.district else ""
            out.append(
                {
                    "label": f"{row.block}{d}",
                    "kind": "block",
                    "n": int(row.n),
                    "bbox": [float(row.lon), float(row.lat), float(row.lon), float(row.lat)],
                }
            )
        return out[:limit]


def camera_for(bbox, width_px: float = 800, height_px: float = 600, max_zoom: float = 16.5) -> dict:
    """Centre and zoom (512-px tiles, Web Mercator) that fit ``bbox`` in a map of
    ``width_px`` x ``height_px`` with a margin; a point gets ``max_zoom``."""
    import math

    w, s, e, n = (float(v) for v in bbox)
    lon, lat = (w + e) / 2, (s + n) / 2

    def y(phi):
        return math.log(math.tan(math.pi / 4 + math.radians(phi) / 2))

    dx = max(e - w, 1e-9) / 360.0
    dy = max(abs(y(n) - y(s)), 1e-9) / (2 * math.pi)
    z = min(math.log2(width_px * 0.8 / 512 / dx), math.log2(height_px * 0.8 / 512 / dy), max_zoom)
    return {"center": {"lat": lat, "lon": lon}, "zoom": round(z, 2)}
