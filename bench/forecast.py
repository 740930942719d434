"""Forecast backtest on Philadelphia (issue 5, acceptance 2 and 5).

Rolling origin: 26 weekly origins from Monday 2024-07-01 (local), every
model refitted on everything before each origin, H3 res 10, targets
``all``, ``burglary``, ``theft_from_vehicle`` and ``violent_ucr`` (UCR
100-499). Prints the table of mean PAI@1 %, PAI@5 %, PEI*@1 % (plus hit rate
and the 0.5 km² fixed-area scores) per model and target, with the naive
model as the floor, and the wall time of each model's 26-week backtest.

    .venv/bin/python bench/forecast.py                   # everything (~ a few minutes)
    .venv/bin/python bench/forecast.py --targets all --models naive,sepp
    .venv/bin/python bench/forecast.py --markdown docs/forecast_table.md

Data: the real extracts (``$RTCC_SHARED_DATA`` or ../shared/data), loaded
once into an embedded store under ``--store`` (default /tmp/rtcc_bench_store)
and read back through the store API.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtcc_geo.config import shared_data_dir  # noqa: E402
from rtcc_geo.forecast.backtest import backtest, default_models  # noqa: E402
from rtcc_geo.forecast.io import counts_from_store  # noqa: E402

TARGETS = ("all", "burglary", "theft_from_vehicle", "violent_ucr")


def philadelphia_store(store_dir: str | Path, files: list[Path] | None = None):
    """An embedded store holding the Philadelphia extracts (built once, then reused)."""
    from rtcc_geo.store import open_store

    store = open_store(store_dir=store_dir)
    if "philadelphia" in store.sources() and store.count():
        return store
    d = shared_data_dir() / "philadelphia"
    files = files or sorted(d.glob("incidents_*.csv"))
    try:  # the ingest pipeline (reader + validation + H3)
        from rtcc_geo.ingest import ingest_files

        ingest_files("philadelphia", files, store)
        return store
    except ImportError:
        pass
    # Fallback: the reader + minimal validation (coordinates inside the bbox) + H3.
    from rtcc_geo.config import load_agency
    from rtcc_geo.grid import index_points
    from rtcc_geo.ingest import philadelphia as ph
    from rtcc_geo.schema import DEFAULT_RESOLUTIONS, conform, h3_column

    a = load_agency("philadelphia")
    store.register_source("philadelphia", a.timezone)
    for f in files:
        fr = ph.read(f).frame
        x0, y0, x1, y1 = a.bbox
        ok = fr["lon"].between(x0, x1) & fr["lat"].between(y0, y1)
        fr = fr[ok.fillna(False)].drop_duplicates("id").reset_index(drop=True)
        cells = index_points(fr["lat"].to_numpy(), fr["lon"].to_numpy(), DEFAULT_RESOLUTIONS)
        for r, c in cells.items():
            fr[h3_column(r)] = c
        store.write_incidents(conform(fr))
    return store


def _markdown(df: pd.DataFrame) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("RTCC_BENCH_STORE", "/tmp/rtcc_bench_store_v2"))
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--models", default="naive,prospective,stkde,sepp,learned,ensemble")
    p.add_argument("--from", dest="start", default="2024-07-01")
    p.add_argument("--weeks", type=int, default=26)
    p.add_argument("--res", type=int, default=10)
    p.add_argument("--markdown", default=None, help="also write the table as Markdown here")
    p.add_argument("--csv", default=None, help="also write the table as CSV here")
    args = p.parse_args(argv)

    tic = time.perf_counter()
    store = philadelphia_store(args.store)
    print(f"store ready in {time.perf_counter() - tic:.1f}s: {store.count():,} incidents", flush=True)
    start = pd.Timestamp(args.start)
    end = start + pd.Timedelta(weeks=args.weeks)
    names = args.models.split(",")
    tables = []
    for target in args.targets.split(","):
        tic = time.perf_counter()
        c = counts_from_store(store, "philadelphia", target, start=None, end=end, res=args.res)
        load_s = time.perf_counter() - tic
        print(f"\n== {target}: {len(c.hours):,} incidents, {len(c.cells):,} cells, {c.n_days} days "
              f"(loaded in {load_s:.1f}s)", flush=True)
        models = {k: v for k, v in default_models("7d").items() if k in names}
        res = backtest(c, models, start, end, "7d", area_km2=0.5)
        s = res.summary()
        s.insert(0, "target", target)
        floor = s.loc["naive", "pai@1%"] if "naive" in s.index else np.nan
        s["pai@1% / naive"] = s["pai@1%"] / floor
        cols = ["target", "origins", "n", "hit@1%", "pai@1%", "pai@5%", "pei@1%", "pai@0.5km2", "pei@0.5km2",
                "pai@1% / naive", "seconds"]
        print(s[cols].to_string(float_format=lambda x: f"{x:.3f}"), flush=True)
        cal = res.calibration[res.calibration["bin"] == "all"].set_index("model")["ratio"]
        print("calibration observed/predicted (all cells):", " ".join(f"{k}={v:.2f}" for k, v in cal.items()))
        tables.append(s[cols].reset_index())
    out = pd.concat(tables, ignore_index=True)
    print("\n26-week backtest wall time per model (s), summed over targets:")
    print(out.groupby("model", sort=False)["seconds"].sum().to_string(float_format=lambda x: f"{x:.1f}"))
    for t in out["target"].unique():
        sub = out[out["target"] == t].set_index("model")
        best = sub["pai@1%"].idxmax()
        ok = all(sub.loc[best, "pai@1%"] > sub.loc[m, "pai@1%"] for m in ("naive", "prospective") if m in sub.index)
        print(f"{t}: best PAI@1% = {best} ({sub.loc[best, 'pai@1%']:.2f}); beats naive and prospective: {ok}")
    if args.markdown:
        Path(args.markdown).write_text(_markdown(out))
    if args.csv:
        out.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
