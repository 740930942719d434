"""Offense taxonomy: each source's offense text -> one of :data:`schema.CATEGORIES`.

The mapping is data, not code: ``data/taxonomy/<source>.csv`` with columns

``offense``   the source's offense text (matched case- and space-insensitively)
``detail``    optional finer text (Chicago's ``description``); a row with a
              detail overrides the offense-only row for that pair
``category``  one of ``violent, robbery, burglary, vehicle, theft, property,
              drugs, disorder, other``
``note``      why, where not obvious

Values the file does not list become ``other`` *and are reported* (the
pipeline's summary lists them, the CLI warns) — never silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import DATA_DIR
from ..schema import CATEGORIES

_SEP = "\x1f"


def _norm(s: pd.Series) -> pd.Series:
    return s.astype("string").str.strip().str.upper().str.replace(r"\s+", " ", regex=True).fillna("")


@dataclass(frozen=True)
class Taxonomy:
    path: Path
    by_offense: dict[str, str]
    by_detail: dict[str, str]

    def categorise(self, offense: pd.Series, detail: pd.Series | None = None) -> tuple[pd.Series, dict[str, int]]:
        """Categories for ``offense`` (+ ``detail``), and ``{offense: rows}`` not listed."""
        # A few dozen distinct texts per file: normalise and look up each once.
        if detail is not None and self.by_detail:
            codes, uniq = pd.factorize(
                pd.MultiIndex.from_arrays([offense.astype("string").fillna(_SEP), detail.astype("string").fillna(_SEP)])
            )
            off_u = _norm(pd.Series(uniq.get_level_values(0)).replace(_SEP, pd.NA))
            det_u = _norm(pd.Series(uniq.get_level_values(1)).replace(_SEP, pd.NA))
            cat_u = off_u.map(self.by_offense).astype("object")  # an empty table maps to float NaN
            over = (off_u + _SEP + det_u).map(self.by_detail)
            cat_u = over.where(over.notna(), cat_u)
        else:
            codes, uniq = pd.factorize(offense.astype("string"), use_na_sentinel=False)
            off_u = _norm(pd.Series(uniq, dtype="string"))
            cat_u = off_u.map(self.by_offense).astype("object")
        miss_u = (cat_u.isna() & (off_u != "")).to_numpy(dtype=bool)
        n_u = np.bincount(codes, minlength=len(cat_u))
        unmapped: dict[str, int] = {}
        raw_u = uniq.get_level_values(0) if isinstance(uniq, pd.MultiIndex) else uniq
        for i in np.flatnonzero(miss_u):
            k = str(raw_u[i]).strip()
            unmapped[k] = unmapped.get(k, 0) + int(n_u[i])
        unmapped = dict(sorted(unmapped.items(), key=lambda kv: -kv[1]))
        cats = pa.array(cat_u.fillna("other").tolist(), type=pa.large_string()).take(pa.array(codes))
        return pd.Series(pd.arrays.ArrowStringArray(cats), index=offense.index), unmapped


def taxonomy_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix.lower() == ".csv":
        return p
    return DATA_DIR / "taxonomy" / f"{name_or_path}.csv"


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """Load ``data/taxonomy/<name>.csv`` (or a CSV path) and check it."""
    p = taxonomy_path(name_or_path)
    return _load(str(p.resolve()) if p.exists() else str(p))


@lru_cache(maxsize=32)
def _load(path: str) -> Taxonomy:
    p = Path(path)
    if not p.exists():
        known = sorted(x.stem for x in (DATA_DIR / "taxonomy").glob("*.csv"))
        raise FileNotFoundError(f"no taxonomy file {p}; shipped taxonomies: {known}")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    for c in ("offense", "category"):
        if c not in df.columns:
            raise ValueError(f"{p}: taxonomy needs columns offense,category[,detail,note]; has {list(df.columns)}")
    if "detail" not in df.columns:
        df["detail"] = ""
    df["category"] = df["category"].str.strip().str.lower()
    bad = sorted(set(df["category"]) - set(CATEGORIES))
    if bad:
        raise ValueError(f"{p}: unknown categor(ies) {bad}; use one of {CATEGORIES}")
    off, det = _norm(df["offense"]), _norm(df["detail"])
    plain = det == ""
    dup = off[plain].duplicated(keep=False)
    if dup.any():
        raise ValueError(f"{p}: offense listed twice: {sorted(set(off[plain][dup]))}")
    by_offense = dict(zip(off[plain], df["category"][plain]))
    by_detail = dict(zip((off + _SEP + det)[~plain], df["category"][~plain]))
    return Taxonomy(p, by_offense, by_detail)
