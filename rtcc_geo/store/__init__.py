"""Stores: the embedded GeoParquet directory (default) and PostGIS, one API.

>>> from rtcc_geo.store import open_store
>>> store = open_store()                       # embedded, default directory
>>> store = open_store(db="postgresql://127.0.0.1/test")
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import COUNT_KEYS, Query, Store, WriteResult

DEFAULT_STORE_DIR = Path(os.environ.get("RTCC_STORE_DIR", "var/store"))


def open_store(db: str | None = None, store_dir: str | Path | None = None) -> Store:
    """Open the store a command should use.

    ``db`` (or ``$RTCC_DATABASE_URL``) selects PostGIS; otherwise the embedded
    store at ``store_dir`` (or ``$RTCC_STORE_DIR``, default ``var/store``).
    """
    db = db or (None if store_dir else os.environ.get("RTCC_DATABASE_URL"))
    if db:
        from .postgis import PostGISStore

        return PostGISStore(db)
    from .embedded import EmbeddedStore

    return EmbeddedStore(store_dir or DEFAULT_STORE_DIR)


__all__ = ["open_store", "Store", "Query", "WriteResult", "COUNT_KEYS", "DEFAULT_STORE_DIR"]
