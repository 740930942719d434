"""Place names from the data itself: normalised block addresses and the most
frequent ones in an area.

Portals publish block-level addresses ("1500 BLOCK MARKET ST") but spell the
same place several ways: case ("5500 BLOCK Tulip St"), spacing around
intersections ("N 42ND ST  & MARKET ST"), suffix forms (AV / AVE / AVENUE).
:func:`normalise_block` maps them to one spelling; ingest applies it once
(:mod:`rtcc_geo.ingest.validate`), stores the result in ``block`` and keeps the
published text in ``extras.block_raw`` wherever the two differ.

Normal form
-----------
* upper case, leading/trailing blanks removed, runs of blanks collapsed;
* an intersection's ``&`` (or ``AND`` between two street names is left alone)
  written ``" & "``;
* the street-type word that ends a street name (before the end of the text,
  ``&``, ``/`` or a comma) in its USPS standard abbreviation
  (:data:`SUFFIXES`): AVENUE / AV -> AVE, STREET / STR -> ST, LANE / LA -> LN,
  BOULEVARD -> BLVD ...; only at the end of a name, so "LA SALLE ST" keeps
  its "LA";
* "BLK" -> "BLOCK".

:func:`top_places` names an area (cells or a district) by its most frequent
normalised block addresses; the map's tooltips, the what-changed list and the
briefing use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Street-type words -> USPS Publication 28 standard abbreviation.
SUFFIXES: dict[str, str] = {
    "AVENUE": "AVE", "AV": "AVE", "AVE": "AVE",
    "STREET": "ST", "STR": "ST", "ST": "ST",
    "ROAD": "RD", "RD": "RD",
    "BOULEVARD": "BLVD", "BLVD": "BLVD", "BOUL": "BLVD",
    "LANE": "LN", "LA": "LN", "LN": "LN",
    "DRIVE": "DR", "DR": "DR",
    "PLACE": "PL", "PL": "PL",
    "TERRACE": "TER", "TERR": "TER", "TER": "TER",
    "COURT": "CT", "CT": "CT",
    "CIRCLE": "CIR", "CIR": "CIR",
    "PARKWAY": "PKWY", "PKY": "PKWY", "PKWY": "PKWY",
    "SQUARE": "SQ", "SQ": "SQ",
    "PLAZA": "PLZ", "PLZ": "PLZ",
    "HIGHWAY": "HWY", "HWY": "HWY",
    "TRAIL": "TRL", "TRL": "TRL",
    "EXPRESSWAY": "EXPY", "EXPY": "EXPY",
    "BRIDGE": "BRG", "BRG": "BRG",
    "ALLEY": "ALY", "ALY": "ALY",
    "CRESCENT": "CRES", "CRES": "CRES",
}

_SUFFIX_AT_END = re.compile(r"\b(" + "|".join(sorted(SUFFIXES, key=len, reverse=True)) + r")\b(?=\s*(?:$|&|/|,))")


def normalise_block(block: pd.Series) -> pd.Series:
    """The normal form of block addresses (see the module doc); nulls and blanks -> null.

    >>> normalise_block(pd.Series(["5500 BLOCK Tulip St", "5500  BLOCK TULIP STREET", "N 42nd St  & Market Av"])).tolist()
    ['5500 BLOCK TULIP ST', '5500 BLOCK TULIP ST', 'N 42ND ST & MARKET AVE']
    """
    s = block.astype("string")
    # A few thousand distinct spellings per file, mostly the same from file to
    # file: each is normalised once per process, then spread back to the rows.
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    texts = uniq.tolist()
    norm = np.array([_SEEN.get(t) for t in texts] + [None], dtype=object)
    fresh = {t: _normalise_one(t) for t, v in zip(texts, norm[:-1].tolist()) if v is None}
    if fresh:
        norm[:-1] = [fresh.get(t, v) for t, v in zip(texts, norm[:-1].tolist())]
        if len(_SEEN) > _SEEN_MAX:
            _SEEN.clear()
        _SEEN.update(fresh)
    norm[:-1][norm[:-1] == ""] = None  # blank -> null
    import pyarrow as pa

    at = pa.array(norm.tolist(), type=pa.large_string()).take(pa.array(np.where(codes < 0, len(texts), codes)))
    return pd.Series(pd.arrays.ArrowStringArray(at), index=s.index)


#: Normalised spellings seen by this process (bounded: cleared past _SEEN_MAX).
_SEEN: dict[str, str] = {}
_SEEN_MAX = 1 << 20


def _normalise_one(text: str) -> str:
    t = " ".join(str(text).upper().split())
    t = re.sub(r"\s*&\s*", " & ", t)
    t = re.sub(r"\bBLK\b", "BLOCK", t)
    t = _SUFFIX_AT_END.sub(lambda m: SUFFIXES[m.group(1)], t)
    return t.strip()


def top_places(store, query, cells: Sequence[int] | None = None, res: int | None = None,
               district: str | None = None, n: int = 3):
    """The ``n`` most frequent block addresses of the incidents matching ``query``
    restricted to ``cells`` (H3 ids at ``res``; ``res`` read from the first cell
    when not given) or to ``district``.

    Returns a frame ``block, n, share`` (share of the area's incidents that have
    an address), most frequent first, ties by address; empty when the area has
    no incident with an address. Addresses are the normalised ones stored at
    ingest, so spellings of one place are counted together.
    """
    from .store.base import Query

    if not isinstance(query, Query):
        raise TypeError("query must be a store Query")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    q = query
    if cells is not None:
        cells = tuple(int(c) for c in cells)
        if not cells:
            raise ValueError("cells is empty")
        q = q.with_(cells=cells, cells_res=res)
    if district is not None:
        q = q.with_(districts=(str(district),))
    blocks = store.incidents(q, columns=["block"])["block"].dropna()
    return _rank(blocks, n)


def top_places_by_cell(store, query, res: int, n: int = 3) -> dict[int, list[str]]:
    """``{cell: [its n most frequent block addresses]}`` for every cell at ``res``
    with an addressed incident matching ``query``, in one pass over the store
    (for tooltips and lists of many cells)."""
    from .store.embedded import cell_column

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cols = ["block"] + [c for c in _h3_cols()]
    df = store.incidents(query.with_(geolocated=True), columns=cols)
    df = df[df["block"].notna()]
    if not len(df):
        return {}
    c = rank_by_cell(cell_column(df, res), df["block"].to_numpy(), n)
    return {int(k): v["block"].tolist() for k, v in c.groupby("cell", sort=False)}


def rank_by_cell(cells: np.ndarray, blocks: np.ndarray, n: int) -> pd.DataFrame:
    """Per cell, its ``n`` most frequent block addresses: columns ``cell``, ``block``,
    ``n`` (incidents), ``rank`` (0 = most frequent), by cell; ties by address, so
    every caller (tooltips, lists, the briefing) names a cell the same way."""
    g = pd.DataFrame({"cell": np.asarray(cells, dtype=np.int64), "block": blocks})
    c = g.groupby(["cell", "block"], sort=False).size().rename("n").reset_index()
    c = c.sort_values(["cell", "n", "block"], ascending=[True, False, True], kind="mergesort")
    c["rank"] = c.groupby("cell", sort=False).cumcount()
    return c[c["rank"] < n].reset_index(drop=True)


def _h3_cols() -> list[str]:
    from .schema import DEFAULT_RESOLUTIONS, h3_column

    return [h3_column(r) for r in DEFAULT_RESOLUTIONS]


def _rank(blocks: pd.Series, n: int) -> pd.DataFrame:
    if not len(blocks):
        return pd.DataFrame({"block": pd.Series(dtype="string"), "n": pd.Series(dtype="int64"),
                             "share": pd.Series(dtype="float64")})
    c = blocks.astype("string").value_counts().rename_axis("block").rename("n").reset_index()
    c = c.sort_values(["n", "block"], ascending=[False, True], kind="mergesort").head(n)
    c["n"] = c["n"].astype("int64")
    c["share"] = c["n"] / float(len(blocks))
    return c.reset_index(drop=True).astype({"block": "string"})


def describe(places: pd.DataFrame, limit: int = 2) -> str:
    """A short label, e.g. "1500 BLOCK MARKET ST, 1600 BLOCK MARKET ST" ("" when none)."""
    return ", ".join(places["block"].head(limit).astype(str).tolist()) if len(places) else ""


__all__ = ["SUFFIXES", "describe", "normalise_block", "rank_by_cell", "top_places", "top_places_by_cell"]
