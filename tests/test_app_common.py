"""Shared fixtures of the app tests (imported by test_app.py and test_app_browser.py).

Philadelphia 2024 is ingested once per test session (module-level cache, so
both modules share one store), with one user per role.
"""

from __future__ import annotations

import re

import pytest

from rtcc_geo.auth import Users

PASSWORD = "test-password-1"
USERS = {"chief": "commander", "ana": "analyst", "plan": "planner", "vic": "viewer", "temp": "viewer"}
_CACHE: dict = {}


def csrf_of(html: str) -> str:
    """The CSRF token of a log-in form page."""
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the log-in form"
    return m.group(1)


def login_post(client, user: str, password: str, next_: str = "/"):
    """What a browser does: fetch the form (CSRF cookie + field), post it back."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": user, "password": password, "next": next_, "csrf_token": token})


def _ingest(shared_data, root):
    from rtcc_geo.config import load_agency
    from rtcc_geo.ingest.pipeline import ingest_files
    from rtcc_geo.store.embedded import EmbeddedStore

    store = EmbeddedStore(root)
    files = sorted((shared_data / "philadelphia").glob("incidents_2024_*.csv"))
    assert len(files) == 12
    ingest_files("philadelphia", files, store, agency=load_agency("philadelphia"))
    users = Users(store)
    for name, role in USERS.items():
        users.add(name, PASSWORD, role)
    return store


@pytest.fixture(scope="session")
def philly_store(shared_data, tmp_path_factory):
    if "store" not in _CACHE:
        _CACHE["store"] = _ingest(shared_data, tmp_path_factory.mktemp("app_philly"))
    return _CACHE["store"]


@pytest.fixture(scope="session")
def philly_app(philly_store):
    if "app" not in _CACHE:
        from rtcc_geo.app import create_app

        _CACHE["app"] = create_app(philly_store, source="philadelphia", secret_key="test-secret", warm=False)
    return _CACHE["app"]
