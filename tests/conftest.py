"""Shared fixtures: real data paths, a real PostGIS database, stores.

Under ``CI=true`` a test that needs PostGIS (or a browser) *fails* when that
part is missing; elsewhere it skips with a message saying how to get it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from rtcc_geo.config import shared_data_dir

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Example stores (rtcc_geo.datasets) built during this run live in a fresh folder, so a
# test never reads a cache an older version of the code wrote. Notebooks run by the
# tests inherit it and share the one ingest.
_OWN_CACHE = None
if "RTCC_CACHE_DIR" not in os.environ:
    _OWN_CACHE = os.environ["RTCC_CACHE_DIR"] = tempfile.mkdtemp(prefix="rtcc-test-cache-")


def pytest_unconfigure(config):
    if _OWN_CACHE:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/rtcc_test"


def missing(what: str, how: str) -> None:
    """Fail under CI, skip elsewhere."""
    msg = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not (d / "philadelphia").is_dir():
        missing("../shared/data", f"expected the real extracts at {d} (set RTCC_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of a PostGIS-enabled database the tests may create schemas in."""
    url = os.environ.get("RTCC_TEST_DATABASE_URL", DEFAULT_PG)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except Exception as e:  # noqa: BLE001 - any failure means "no PostGIS here"
        missing("PostGIS", f"{url}: {e}. Run the README's test command, which installs and starts it.")
    return url


@pytest.fixture()
def pg_url(pg_admin_url: str):
    """A fresh, empty schema per test (dropped after), as a connection URL with
    ``options=-csearch_path=...`` so the store's migrations land there."""
    yield from _schema_url(pg_admin_url)


@pytest.fixture(scope="session")
def pg_session_url(pg_admin_url: str):
    """Like ``pg_url`` but one schema for the whole session (big real loads)."""
    yield from _schema_url(pg_admin_url)


def _schema_url(admin_url: str):
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin_url else "?"
    yield f"{admin_url}{sep}options=-csearch_path%3D{schema},public"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


PHL_APR_JUL = ("incidents_2024_04.csv", "incidents_2024_05.csv", "incidents_2024_06.csv", "incidents_2024_07.csv")


@pytest.fixture(scope="session")
def phl_apr_jul_store(shared_data, tmp_path_factory):
    """April-July 2024 of real Philadelphia incidents in an embedded store, via the ingest
    pipeline; built once per run and shared (read-only) by the forecast and deploy tests."""
    from rtcc_geo.ingest import ingest_files
    from rtcc_geo.store import open_store

    store = open_store(store_dir=tmp_path_factory.mktemp("phl_apr_jul"))
    ingest_files("philadelphia", [shared_data / "philadelphia" / f for f in PHL_APR_JUL], store)
    return store
