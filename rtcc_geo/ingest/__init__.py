"""Reading real crime data into the canonical schema (:mod:`rtcc_geo.schema`).

Readers (one module per source format) turn a file into a
:class:`~rtcc_geo.ingest.base.Batch`; :mod:`~rtcc_geo.ingest.validate` splits
it into canonical incidents (H3-indexed) and quarantined rows, each with one
reason; :mod:`~rtcc_geo.ingest.pipeline` writes both to a store, file by file.
:mod:`~rtcc_geo.ingest.portals` fetches the same files from the live portals.

>>> from rtcc_geo.ingest import read, ingest_files
>>> incidents, quarantine = read("philadelphia", "incidents_2024_03.csv")
>>> summary = ingest_files("philadelphia", files, store)      # doctest: +SKIP
>>> summary.as_dict()["read"] == summary.loaded + summary.quarantined
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .base import Batch, IngestError

READERS = ("philadelphia", "vancouver", "chicago", "generic")


def read_batch(
    fmt: str,
    path: str | Path,
    timezone: str | None = None,
    mapping=None,
    source: str | None = None,
    raw: pd.DataFrame | None = None,
    state: dict | None = None,
) -> Batch:
    """Read one file of format ``fmt`` into a :class:`Batch` (before validation).
    ``raw``: one batch of the file's rows (from :func:`iter_raw`) instead of the
    whole file; ``state``: one dict per file, carried from batch to batch."""
    if fmt == "generic":
        from . import generic

        if mapping is None:
            raise ValueError("format 'generic' needs a mapping file (see data/mappings/)")
        b = generic.read(path, mapping, timezone=timezone, raw=raw, state=state)
    else:
        kw = {"source": source or _reader(fmt).SOURCE, "raw": raw, "state": state}
        if timezone:
            kw["timezone"] = timezone
        b = _reader(fmt).read(path, **kw)
    if raw is not None:
        b.first_row = int(raw.attrs.get("first_row", 0))
    return b


def iter_raw(fmt: str, path: str | Path, mapping=None, batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The raw rows of one file of format ``fmt`` in batches of about ``batch_rows``
    (default ``RTCC_BATCH_ROWS``), for :func:`read_batch` (see :func:`.base.iter_csv_strings`)."""
    from .base import iter_csv_strings

    if fmt == "generic":
        from .generic import Mapping, csv_options, load_mapping

        if mapping is None:
            raise ValueError("format 'generic' needs a mapping file (see data/mappings/)")
        mp = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
        return iter_csv_strings(path, *csv_options(mp), batch_rows=batch_rows)
    return iter_csv_strings(path, _reader(fmt).REQUIRED, fmt, batch_rows=batch_rows)


def _reader(fmt: str):
    if fmt not in READERS or fmt == "generic":
        raise ValueError(f"unknown format {fmt!r}; use one of {READERS}")
    import importlib

    return importlib.import_module(f"{__name__}.{fmt}")


def read(fmt: str, path: str | Path, agency=None, mapping=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate one file: ``(incidents, quarantine)``.

    ``incidents`` is canonical (:func:`rtcc_geo.schema.conform`, H3 indexed at
    the agency's resolutions); ``quarantine`` has
    :data:`rtcc_geo.schema.QUARANTINE_COLUMNS`. Nothing is written anywhere.
    """
    from .generic import Mapping, load_mapping
    from .pipeline import resolve_agency
    from .validate import agency_area, validate

    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    ag = resolve_agency(fmt, agency, mapping)
    src = mapping.source if fmt == "generic" else fmt
    batch = read_batch(fmt, path, timezone=ag.timezone, mapping=mapping, source=src)
    return validate(batch, agency_area(ag, near=[Path(path)]), tuple(ag.resolutions))


def ingest_files(*args, **kw):
    """See :func:`rtcc_geo.ingest.pipeline.ingest_files`."""
    from .pipeline import ingest_files as f

    return f(*args, **kw)


__all__ = ["READERS", "Batch", "IngestError", "read", "read_batch", "iter_raw", "ingest_files"]
