"""Where the embedded store's incident files live: the hive layout and its part files.

::

    incidents/source=<s>/month=<YYYY-MM>/part-<lo>-<hi>.parquet   GeoParquet rows
    keys/source=<s>/month=<YYYY-MM>/upto-<n>.npy                  sorted 64-bit hashes of the month's ids

A part file is written once and never changed. An append adds a part
``part-<n>-<n>`` (``n`` one above the month's highest number); compaction
merges a month's parts into ``part-<lo>-<hi>``, the union of their ranges,
and then deletes them. A part whose range lies inside another's is therefore
dead (already merged) and ignored, so a crash between writing the merged file
and deleting its inputs never shows a row twice: readers and writers agree
on the live set from the names alone.

A month's key index ``upto-<n>.npy`` holds the hashes of every part numbered
up to ``n``. It is written after the part, so a crash in between leaves it
behind the parts, which its name shows (a live part numbered above ``n``):
the next writer adds the missing parts' ids before trusting it.

The layout before issue 16 (``incidents/<source>/<YYYY-MM>.parquet``, one
file per month, H3 roll-ups) is still read, as ``legacy`` parts, until the
first write migrates it (:meth:`EmbeddedStore.migrate`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_PART = re.compile(r"part-(\d+)-(\d+)\.parquet")
_KEYS = re.compile(r"upto-(\d+)\.npy")
_MONTH = re.compile(r"\d{4}-\d{2}")


@dataclass(frozen=True)
class Part:
    """One incident file: its source, UTC month (``YYYY-MM``) and number range."""

    source: str
    month: str
    path: Path
    lo: int = 0
    hi: int = 0
    legacy: bool = False


def month_dir(root: Path, source: str, month: str) -> Path:
    return root / "incidents" / f"source={source}" / f"month={month}"


def part_path(root: Path, source: str, month: str, lo: int, hi: int) -> Path:
    return month_dir(root, source, month) / f"part-{lo:08d}-{hi:08d}.parquet"


def keys_dir(root: Path, source: str, month: str) -> Path:
    return root / "keys" / f"source={source}" / f"month={month}"


def keys_files(root: Path, source: str, month: str) -> list[tuple[int, Path]]:
    """The month's key index files ``(n, path)``, highest ``n`` last."""
    out = []
    for e in _scandir(keys_dir(root, source, month)):
        m = _KEYS.fullmatch(e.name)
        if m:
            out.append((int(m.group(1)), Path(e.path)))
    return sorted(out)


def legacy_keys_path(root: Path, part: Part) -> Path:
    return root / "keys" / part.source / f"{part.month}.npy"


def _scandir(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def month_parts(root: Path, source: str, month: str, live_only: bool = True) -> list[Part]:
    """The month's part files, ordered by number (only the live ones unless ``live_only`` is false)."""
    parts = []
    for e in _scandir(month_dir(root, source, month)):
        m = _PART.fullmatch(e.name)
        if m:
            parts.append(Part(source, month, Path(e.path), int(m.group(1)), int(m.group(2))))
    if not live_only:
        return parts
    return [
        p
        for p in parts
        if not any(o is not p and o.lo <= p.lo and p.hi <= o.hi and (o.lo, o.hi) != (p.lo, p.hi) for o in parts)
    ]


def source_months(root: Path, source: str) -> list[str]:
    """Months that have a directory in the hive layout, sorted."""
    out = []
    for e in _scandir(root / "incidents" / f"source={source}"):
        if e.name.startswith("month=") and _MONTH.fullmatch(e.name[6:]):
            out.append(e.name[6:])
    return out


def legacy_parts(root: Path, source: str) -> list[Part]:
    """Month files of the pre-hive layout still present for ``source``."""
    return [
        Part(source, e.name[:-8], Path(e.path), legacy=True)
        for e in _scandir(root / "incidents" / source)
        if e.name.endswith(".parquet") and _MONTH.fullmatch(e.name[:-8])
    ]


def legacy_sources(root: Path) -> list[str]:
    """Sources with files in the pre-hive layout (``incidents/<source>/``)."""
    return [
        e.name
        for e in _scandir(root / "incidents")
        if e.is_dir() and not e.name.startswith("source=") and legacy_parts(root, e.name)
    ]


def live_parts_by_month(root: Path, source: str) -> dict[str, list[Part]]:
    """:func:`live_parts` grouped by month (sorted)."""
    out: dict[str, list[Part]] = {}
    for p in live_parts(root, source):
        out.setdefault(p.month, []).append(p)
    return out


def live_parts(root: Path, source: str) -> list[Part]:
    """Every live part of ``source``, by month then number; a legacy month file
    counts unless its month was already migrated (a crash mid-migration)."""
    months = source_months(root, source)
    parts: dict[str, list[Part]] = {m: month_parts(root, source, m) for m in months}
    for p in legacy_parts(root, source):
        if not any(q.lo == 0 for q in parts.get(p.month, [])):  # part 0 is the migrated month
            parts.setdefault(p.month, []).append(p)
    return [p for m in sorted(parts) for p in parts[m]]
