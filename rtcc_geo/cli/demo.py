"""``rtcc-geo demo``: build a demo data set into the embedded store, compute, serve the map."""

from __future__ import annotations

import argparse
import time

from .common import UserError, add_json_arg, emit_json, progress_enabled
from .serve import add_server_args, serve_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="build a demo data set (synthetic city, or a real extract) and serve the map",
        description=(
            "Build a demo data set into the embedded store (no database server needed), run the "
            "analyses on it and serve the commander map. The synthetic city is seeded and needs "
            "nothing but this package; --real loads the public extracts from ../shared/data."
        ),
    )
    p.add_argument(
        "--store", metavar="DIR", default="var/demo", help="embedded store directory to build (default: var/demo)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic city (default 0)")
    p.add_argument("--start", default="2024-01-01", help="first local day of the synthetic stream")
    p.add_argument("--end", default="2025-01-01", help="day after the last (exclusive)")
    p.add_argument(
        "--real",
        choices=["philadelphia", "vancouver", "chicago"],
        default=None,
        help="load this city's real extract from ../shared/data instead of the synthetic city",
    )
    p.add_argument("--no-serve", action="store_true", help="build and compute only; do not start the web app")
    p.add_argument("--host", default="127.0.0.1", help="address the app listens on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port of the app (default 8050)")
    add_server_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..store.embedded import EmbeddedStore

    store = EmbeddedStore(args.store)
    t0 = time.time()
    if args.real:
        summary = _load_real(args.real, store)
    else:
        from .. import synth

        city = synth.SyntheticCity(seed=args.seed, start=args.start, end=args.end)
        summary = synth.build_demo(store, city, progress=progress_enabled())
    summary["store"] = str(store.root)
    summary["seconds"] = round(time.time() - t0, 2)
    if args.json:
        emit_json(summary)
    else:
        print(
            f"demo data: {summary['read']} incidents read, {summary['loaded']} loaded "
            f"into {store.root} ({summary['seconds']} s)"
        )
    if args.no_serve:
        return 0
    return serve_store(
        store, host=args.host, port=args.port, workers=args.workers, threads=args.threads, timeout=args.timeout
    )


def _load_real(city: str, store) -> dict:
    from ..config import shared_data_dir
    from ..ingest.pipeline import ingest_files

    d = shared_data_dir() / {"chicago": "chicago_sample"}.get(city, city)
    files = sorted(d.glob("*.csv"))
    if not files:
        raise UserError(f"no CSV files in {d}; set RTCC_SHARED_DATA to the folder holding the extracts")
    s = ingest_files(city, files, store, progress=progress_enabled())  # copies the agency preset into the store
    return s.as_dict()
