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

from pathlib import Path

import pandas as pd

from .base import Batch, IngestError

READERS = ("philadelphia", "vancouver", "chicago", "generic")


def read_batch(
    fmt: str, path: str | Path, timezone: str | None = None, mapping=None, source: str | None = None
) -> Batch:
    """Read one file of format ``fmt`` into a :class:`Batch` (before validation)."""
    if fmt == "generic":
        from . import generic

        if mapping is None:
            raise ValueError("format 'generic' needs a mapping file (see data/mappings/)")
        return generic.read(path, mapping, timezone=timezone)
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {READERS}")
    import importlib

    mod = importlib.import_module(f"{__name__}.{fmt}")
    kw = {"source": source or mod.SOURCE}
    if timezone:
        kw["timezone"] = timezone
    return mod.read(path, **kw)


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


__all__ = ["READERS", "Batch", "IngestError", "read", "read_batch", "ingest_files"]
