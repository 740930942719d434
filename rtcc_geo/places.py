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
    "AVENUE": "AVE",
    "AV": "AVE",
    "AVE": "AVE",
    "STREET": "ST",
    "STR": "ST",
    "ST": "ST",
    "ROAD": "RD",
    "RD": "RD",
    "BOULEVARD": "BLVD",
    "BLVD": "BLVD",
    "BOUL": "BLVD",
    "LANE": "LN",
    "LA": "LN",
    "LN": "LN",
    "DRIVE": "DR",
    "DR": "DR",
    "PLACE": "PL",
    "PL": "PL",
    "TERRACE": "TER",
    "TERR": "TER",
    "TER": "TER",
    "COURT": "CT",
    "CT": "CT",
    "CIRCLE": "CIR",
    "CIR": "CIR",
    "PARKWAY": "PKWY",
    "PKY": "PKWY",
    "PKWY": "PKWY",
    "SQUARE": "SQ",
    "SQ": "SQ",
    "PLAZA": "PLZ",
    "PLZ": "PLZ",
    "HIGHWAY": "HWY",
    "HWY": "HWY",
    "TRAIL": "TRL",
    "TRL": "TRL",
    "EXPRESSWAY": "EXPY",
    "EXPY": "EXPY",
    "BRIDGE": "BRG",
    "BRG": "BRG",
    "ALLEY": "ALY",
    "ALY": "ALY",
    "CRESCENT": "CRES",
    "CRES": "CRES",
}

_SUFFIX_AT_END = re.compile(r"\b(" + "|".join(sorted(SUFFIXES, key=len, reverse=True)) + r")\b(?=\s*(?:$|&|/|,))")


def normalise_block(block: pd.Series) -> pd.Series:
    """The normal form of block addresses (see the module doc); nulls and blanks -> null.

    >>> normalise_block(pd.Series(["5500 BLOCK Tulip St", "5500  BLOCK TULIP STREET", "N 42nd St  & Market Av"])).tolist()
    ['5500 BLOCK TULIP ST', '5500 BLOCK TULIP ST', 'N 42ND ST & MARKET AVE']
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    s = block.astype("string")
    arr = pa.array(s.array, type=pa.large_string()) if len(s) else pa.array([], pa.large_string())
    # A few thousand distinct spellings per file, mostly the same from file to
    # file: each is normalised once per process (Arrow dictionary encoding, a
    # cache looked up in Arrow), then spread back to the rows.
    enc = pc.dictionary_encode(arr).combine_chunks() if isinstance(arr, pa.ChunkedArray) else pc.dictionary_encode(arr)
    uniq = enc.dictionary
    norm = _cached_normal_forms(uniq)
    norm = pc.if_else(pc.equal(norm, ""), pa.scalar(None, pa.large_string()), norm)  # blank -> null
    return pd.Series(pd.arrays.ArrowStringArray(norm.take(enc.indices)), index=s.index)


#: Spellings normalised by this process and their normal forms, as two aligned
#: Arrow arrays (bounded: cleared past _SEEN_MAX).
_SEEN: list = []
_SEEN_MAX = 1 << 20


def _cached_normal_forms(uniq):
    """Normal forms of the distinct texts ``uniq`` (an Arrow array): cached ones
    looked up, the rest computed by :func:`_normalise_many` and cached."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # One consistent snapshot: the cache is replaced whole, never changed in place (threads).
    keys, vals = _SEEN or (pa.array([], pa.large_string()), pa.array([], pa.large_string()))
    pos = pc.index_in(uniq, value_set=keys)
    if not pos.null_count:
        return vals.take(pos)
    fresh = pc.is_null(pos).to_numpy(zero_copy_only=False)
    if len(keys) + int(fresh.sum()) > _SEEN_MAX:  # start the cache afresh with these
        norm = _normalise_many(uniq)
        _SEEN[:] = [uniq, norm]
        return norm
    new = uniq.filter(pa.array(fresh))
    at = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    at[fresh] = len(keys) + np.arange(len(new))  # appended after the cached ones
    keys, vals = pa.concat_arrays([keys, new]), pa.concat_arrays([vals, _normalise_many(new)])
    _SEEN[:] = [keys, vals]
    return vals.take(pa.array(at))


def _normalise_many(texts):
    """:func:`_normalise_one` of each of ``texts`` (an Arrow ``large_string`` array,
    no nulls): printable-ASCII texts (nearly all) through Arrow's string kernels
    at once, the rest one by one.

    The two agree on printable ASCII (tested on every real file's blocks):
    there the only blank is the space, RE2's ASCII ``\\b`` is Python's, and
    the street-type lookahead (which RE2 lacks) is matched and put back. Each
    suffix pass writes a standard abbreviation, which maps to itself, so one
    pass per abbreviation equals the single pass over all suffixes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(texts):
        return texts
    plain = pc.match_substring_regex(texts, r"^[\x20-\x7e]*$")
    t = pc.utf8_upper(texts)
    # Each pass runs only on the texts it can change (a literal or one regex screen first).
    t = _where(
        t,
        pc.match_substring_regex(t, "  |^ | $"),
        lambda x: pc.utf8_trim(pc.replace_substring_regex(x, " +", " "), " "),
    )
    t = _where(
        t, pc.match_substring(t, "&"), lambda x: pc.utf8_trim(pc.replace_substring_regex(x, r"\s*&\s*", " & "), " ")
    )
    t = _where(t, pc.match_substring(t, "BLK"), lambda x: pc.replace_substring_regex(x, r"\bBLK\b", "BLOCK"))
    t = _where(t, pc.match_substring_regex(t, _SUFFIX_SCREEN), _suffix_passes)
    if not pc.all(plain).as_py():  # the rest (other blanks, Unicode case rules) in Python
        other = pc.invert(plain)
        t = pc.replace_with_mask(
            t, other, pa.array([_normalise_one(x) for x in texts.filter(other).to_pylist()], type=pa.large_string())
        )
    return t


def _where(t, mask, f):
    """``t`` with ``f`` applied to the values where ``mask`` holds."""
    import pyarrow.compute as pc

    if not pc.any(mask).as_py():
        return t
    return pc.replace_with_mask(t, mask, f(t.filter(mask)))


def _suffix_passes(t):
    import pyarrow.compute as pc

    for abbr, words in _SUFFIX_GROUPS.items():
        t = pc.replace_substring_regex(t, r"\b(" + "|".join(words) + r")\b(\s*(?:$|&|/|,))", abbr + r"\2")
    return t


#: :data:`SUFFIXES` grouped by abbreviation (longest words first, as in the single regex),
#: without the abbreviations themselves (they map to themselves: nothing to replace).
_SUFFIX_GROUPS: dict[str, list[str]] = {}
for _w in sorted(SUFFIXES, key=len, reverse=True):
    if SUFFIXES[_w] != _w:
        _SUFFIX_GROUPS.setdefault(SUFFIXES[_w], []).append(_w)
_SUFFIX_SCREEN = r"\b(" + "|".join(w for ws in _SUFFIX_GROUPS.values() for w in ws) + r")\b\s*(?:$|&|/|,)"


def _normalise_one(text: str) -> str:
    t = " ".join(str(text).upper().split())
    t = re.sub(r"\s*&\s*", " & ", t)
    t = re.sub(r"\bBLK\b", "BLOCK", t)
    t = _SUFFIX_AT_END.sub(lambda m: SUFFIXES[m.group(1)], t)
    return t.strip()


def top_places(
    store, query, cells: Sequence[int] | None = None, res: int | None = None, district: str | None = None, n: int = 3
):
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
        return pd.DataFrame(
            {"block": pd.Series(dtype="string"), "n": pd.Series(dtype="int64"), "share": pd.Series(dtype="float64")}
        )
    c = blocks.astype("string").value_counts().rename_axis("block").rename("n").reset_index()
    c = c.sort_values(["n", "block"], ascending=[False, True], kind="mergesort").head(n)
    c["n"] = c["n"].astype("int64")
    c["share"] = c["n"] / float(len(blocks))
    return c.reset_index(drop=True).astype({"block": "string"})


def describe(places: pd.DataFrame, limit: int = 2) -> str:
    """A short label, e.g. "1500 BLOCK MARKET ST, 1600 BLOCK MARKET ST" ("" when none)."""
    return ", ".join(places["block"].head(limit).astype(str).tolist()) if len(places) else ""


__all__ = ["SUFFIXES", "describe", "normalise_block", "rank_by_cell", "top_places", "top_places_by_cell"]
