"""Live path latency: POST an incident -> PostGIS -> NOTIFY -> listener -> engine -> SSE client.

Posts real Philadelphia incidents one request each on an open-loop schedule
(default 50 incidents/s, up to 32 requests in flight) to a feed server on 127.0.0.1 backed by PostGIS, while a
client holds the server-sent-event stream open, and prints the p50/p95/max
delay from sending the POST to the client receiving the incident (goal: p95
< 1 s).

    python bench/live.py [--rate 50] [--seconds 30] [--db URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtcc_geo.config import load_agency, shared_data_dir  # noqa: E402
from rtcc_geo.live.listen import Listener  # noqa: E402
from rtcc_geo.live.replay import load_records  # noqa: E402
from rtcc_geo.store.postgis import PostGISStore  # noqa: E402
from rtcc_geo.live.server import feed_server  # noqa: E402

TOKEN = "bench-token"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0, help="incidents per second (one POST each)")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to post")
    ap.add_argument(
        "--db", default=os.environ.get("RTCC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/rtcc_test")
    )
    args = ap.parse_args()

    import psycopg

    schema = "bench_live_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.db, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    url = f"{args.db}{'&' if '?' in args.db else '?'}options=-csearch_path%3D{schema},public"
    try:
        store = PostGISStore(url)
        store.register_source("philadelphia", load_agency("philadelphia").timezone)
        n = int(args.rate * args.seconds)
        _, recs = load_records("philadelphia", [shared_data_dir() / "philadelphia" / "incidents_2024_07.csv"])
        recs = [r for r in recs if "lon" in r][:n]
        sent: dict[str, float] = {}  # id -> when its POST was sent
        seen: dict[str, float] = {}
        with feed_server(store, "philadelphia", TOKEN) as (base, engine):
            listener = Listener(url, {"philadelphia": engine})
            listener.start()
            listener.ready.wait(10)
            ready = threading.Event()
            done = threading.Event()

            def client():
                # The route the app's map subscribes to.
                with urllib.request.urlopen(f"{base}/api/live/stream", timeout=60) as r:
                    ready.set()
                    event = None
                    for raw in r:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "incidents":
                            now = time.perf_counter()
                            for row in json.loads(line[5:])["rows"]:
                                seen.setdefault(row["id"], now)
                        if done.is_set() and all(i in seen for i in sent):
                            return

            ct = threading.Thread(target=client, daemon=True)
            ct.start()
            ready.wait(10)
            from concurrent.futures import ThreadPoolExecutor

            def post(rec):
                body = json.dumps(rec).encode()
                req = urllib.request.Request(
                    f"{base}/api/feed/philadelphia/incidents",
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
                )
                sent[rec["id"]] = time.perf_counter()
                with urllib.request.urlopen(req, timeout=30) as r:
                    out = json.loads(r.read())
                if not out["loaded"]:
                    sent.pop(rec["id"])  # quarantined: never announced

            # Open loop: each incident is posted at its due time whatever the
            # server's speed (a CAD does not wait for us), one request each.
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=32) as pool:
                futs = []
                for i, rec in enumerate(recs):
                    delay = t0 + i / args.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    futs.append(pool.submit(post, rec))
                for f in futs:
                    f.result()
            achieved = len(recs) / (time.perf_counter() - t0)
            done.set()
            ct.join(15)
            listener.stop()
        lat = np.array([seen[i] - sent[i] for i in sent if i in seen]) * 1000
        missing = len(sent) - len(lat)
        print(
            f"live path at {achieved:.1f} incidents/s (target {args.rate:g}/s) for {args.seconds:g} s, "
            f"{len(sent)} incidents stored, {missing} not seen by the client"
        )
        print(
            f"POST -> client delay: p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
            f"max {lat.max():.1f} ms  (goal p95 < 1000 ms: {'met' if np.percentile(lat, 95) < 1000 else 'NOT met'})"
        )
        return 0 if missing == 0 else 1
    finally:
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    sys.exit(main())
