"""Benchmark: many logged-in users clicking the commander filters on the real server.

    .venv/bin/python bench/serve.py [--sessions 50] [--seconds 60] [--store DIR] [--no-attack]

Starts ``rtcc-geo serve`` as a subprocess (gunicorn, its default threads) on a
synthetic month built with ``rtcc-geo demo --no-serve`` (or ``--store``), logs
``--sessions`` users in and has each click filters back to back for
``--seconds`` (POST /_dash-update-component with the commander filter
callback the browser sends: random categories, hours, days, resolution),
while clients connect and hang up beside them (``--no-attack``: without).

Measured in the same run, same server, same requests:

1. **reference**: one session alone, clicking for ``--seconds / 4`` s
   (the callback's own time, no contention): p50 and p95.
2. **load**: every session at once: callbacks answered, p50 / p95 / max,
   the error count (any answer but 200/204, or an exception) and whether
   the server is still up afterwards. On 2 cores p95 grows about with
   sessions / cores x the reference p50: the server queues, it does not fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serve_support import (
    ServeProcess,
    build_store,
    cookie_header,
    hammer,
    login,
    percentile,
    session_pool,
)
from tests.test_serve_attack import hangups


def _stats(out: dict, seconds: float) -> dict:
    lat = out["latencies"]
    return {
        "callbacks": len(lat),
        "per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 1),
        "p95_ms": round(percentile(lat, 95) * 1000, 1),
        "max_ms": round(max(lat) * 1000, 1) if lat else None,
        "errors": len(out["errors"]),
        "error_samples": out["errors"][:3],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--store", type=Path, default=None, help="embedded store with the user chief (default: build one)")
    ap.add_argument("--no-attack", action="store_true", help="no hang-up clients beside the sessions")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    tmp = None
    store = a.store
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="rtcc-bench-serve-")
        store = build_store(Path(tmp.name) / "store")
    result: dict = {"sessions": a.sessions, "seconds": a.seconds, "attack": not a.no_attack}
    with ServeProcess(store) as srv:
        with session_pool(srv.url, 1) as one:
            hammer(one, 3.0, seed=99)  # warm the caches the load will hit
            result["reference_one_session"] = _stats(hammer(one, a.seconds / 4, seed=1), a.seconds / 4)
        stop = threading.Event()
        attacks = [0]

        def attack(cookie: str):
            while not stop.is_set():
                hangups(srv.url, cookie, n=20, parallel=5)
                attacks[0] += 20

        with session_pool(srv.url, a.sessions) as cmds:
            t = threading.Thread(target=attack, args=(cookie_header(cmds[0].s),), daemon=True)
            if not a.no_attack:
                t.start()
            t0 = time.monotonic()
            out = hammer(cmds, a.seconds, seed=2)
            took = time.monotonic() - t0
            stop.set()
            if t.is_alive():
                t.join(60)
        result["load"] = _stats(out, took)
        result["hangup_clients"] = attacks[0]
        chief = login(srv.url, "chief")
        result["up_after"] = srv.alive() and chief.get(srv.url + "/", timeout=30).status_code == 200
        result["server_log_errors"] = [ln for ln in srv.log if "Traceback" in ln or "[ERROR]" in ln]
    if tmp is not None:
        tmp.cleanup()
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        ref, load = result["reference_one_session"], result["load"]
        print(
            f"reference, 1 session:   {ref['callbacks']} callbacks, p50 {ref['p50_ms']} ms, p95 {ref['p95_ms']} ms, "
            f"errors {ref['errors']}"
        )
        print(
            f"load, {a.sessions} sessions x {a.seconds:g} s: {load['callbacks']} callbacks ({load['per_s']}/s), "
            f"p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms, max {load['max_ms']} ms, errors {load['errors']}"
        )
        print(
            f"hang-up clients beside: {result['hangup_clients']}; server up after: {result['up_after']}; "
            f"server log errors: {len(result['server_log_errors'])}"
        )
    return 0 if result["up_after"] and not result["load"]["errors"] and not result["server_log_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
