"""Helpers for live tests."""

from __future__ import annotations

import time
from contextlib import contextmanager

from rtcc_geo.live import server

TOKEN = "test-token"


@contextmanager
def feed_server(store, source: str, engine_kwargs: dict | None = None):
    with server.feed_server(store, source, TOKEN, engine_kwargs=engine_kwargs) as out:
        yield out


def wait_until(pred, timeout: float = 30.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
