"""Benchmark: our Emerging Hot Spot Analysis vs a reference built from esda + pymannkendall.

Same cube, same run. The reference is what an analyst would write with the
PySAL stack: ``esda.G_Local`` (Gi*, binary k-ring weights with self, analytic
z) on each time step, Benjamini–Hochberg over all bins with statsmodels
``multipletests``, ``pymannkendall.original_test`` on each cell's z series,
and a plain per-cell Python classifier written from Esri's category text.
Ours runs the same statistic (``time_lag=0, standardise="step"``) so the two
must agree bin for bin and cell for cell; the script checks that and prints
both times and the ratio (goal >= 20x). It also times our default
(Esri-style space-time Gi*: cube-wide statistics, one-step time lag).

Usage::

    rtcc-geo ingest --format philadelphia --store /tmp/phl ../shared/data/philadelphia/incidents_202[34]_*.csv
    python bench/emerging.py --store /tmp/phl [--res 9] [--step week] [--repeat 3]

Weights are built once for both sides, outside the timings (reported apart).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def reference_ehsa(x: np.ndarray, w_lib, alpha: float = 0.05):
    """esda G_Local per step + statsmodels BH + pymannkendall per cell + Python rules.

    ``w_lib`` has a zero diagonal; ``star=True`` makes esda add the self-weight 1.
    """
    import esda
    import pymannkendall as pmk
    from statsmodels.stats.multitest import multipletests

    n, T = x.shape
    z = np.empty((n, T))
    p = np.empty((n, T))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(T):
            g = esda.G_Local(x[:, t], w_lib, transform="B", star=True, permutations=0)
            z[:, t] = g.Zs
            p[:, t] = 2 * g.p_norm
    z = np.nan_to_num(z)
    p = np.where(np.isnan(p), 1.0, p)
    sig = multipletests(p.ravel(), alpha=alpha, method="fdr_bh")[0].reshape(n, T)
    cats = []
    mk_z = np.empty(n)
    for i in range(n):
        r = pmk.original_test(z[i], alpha=alpha)
        mk_z[i] = r.z
        trend = 0 if not r.h else (1 if r.z > 0 else -1)
        cats.append(_classify_one(sig[i] & (z[i] > 0), sig[i] & (z[i] < 0), trend))
    return z, sig, mk_z, np.array(cats, dtype=object)


def _classify_one(hot, cold, trend) -> str:
    """Esri's categories for one location, written out step by step."""
    N = len(hot)
    for side, same, other, up in (("hot", hot, cold, 1), ("cold", cold, hot, -1)):
        share = same.sum() / N
        if same[-1]:
            if share >= 0.9:
                if trend == up:
                    return f"intensifying {side} spot"
                if trend == -up:
                    return f"diminishing {side} spot"
                return f"persistent {side} spot"
            run = 0
            while run < N and same[N - 1 - run]:
                run += 1
            earlier = same[: N - run] | other[: N - run]
            if not earlier.any():
                return f"new {side} spot" if run == 1 else f"consecutive {side} spot"
            if other.any():
                return f"oscillating {side} spot"
            return f"sporadic {side} spot"
    for side, same, other in (("hot", hot, cold), ("cold", cold, hot)):
        if not same[-1] and not other[-1] and same.sum() / N >= 0.9:
            return f"historical {side} spot"
    return "no pattern detected"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--store",
        default=None,
        help="embedded store directory with Philadelphia 2023-2024 "
        "(default: rtcc_geo.datasets.example_store, built once)",
    )
    ap.add_argument("--db", default=None, help="or a PostGIS URL")
    ap.add_argument("--source", default="philadelphia")
    ap.add_argument("--from", dest="start", default="2023-01-02")
    ap.add_argument("--to", dest="end", default="2024-12-30")
    ap.add_argument("--res", type=int, default=9)
    ap.add_argument("--step", default="week")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions of ours (best is reported)")
    a = ap.parse_args()

    from rtcc_geo.cli.temporal import _study_cells
    from rtcc_geo.hotspots.weights import kring_weights
    from rtcc_geo.store import Query, open_store
    from rtcc_geo.temporal.cube import build_cube
    from rtcc_geo.temporal.emerging import CATEGORIES, emerging_hotspots, kring_matrix

    if a.db or a.store:
        store = open_store(db=a.db, store_dir=a.store)
    else:
        from rtcc_geo.datasets import example_store

        print("using the Philadelphia 2023-2024 example store (ingested on first use) ...", flush=True)
        store = example_store("philadelphia", years=(2023, 2024))
    q = Query(source=a.source, start=a.start, end=a.end)
    t0 = time.perf_counter()
    cube = build_cube(store, a.res, a.step, q, cells=_study_cells(store, q, a.res))
    t_cube = time.perf_counter() - t0
    n, T = cube.values.shape
    if cube.values.sum() == 0:
        raise SystemExit(f"no {a.source} incidents between {a.start} and {a.end} in {store!r}: give --store or --db")
    print(
        f"cube: {n:,} cells x {T} {a.step}s, {cube.values.sum():,.0f} incidents "
        f"(built from store.counts in {t_cube:.2f} s)"
    )

    t0 = time.perf_counter()
    W = kring_matrix(cube.cells, 1)
    t_w_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    w_lib = kring_weights(cube.cells, 1).to_libpysal()
    t_w_ref = time.perf_counter() - t0
    print(f"weights (not timed below): ours {t_w_ours:.2f} s, libpysal W {t_w_ref:.2f} s")

    ours_t, ours_cpu = [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ours = emerging_hotspots(cube, w=W, time_lag=0, standardise="step")
        ours_t.append(time.perf_counter() - t0)
        ours_cpu.append(time.process_time() - c0)
    t_ours, cpu_ours = min(ours_t), min(ours_cpu)

    t0, c0 = time.perf_counter(), time.process_time()
    z_ref, sig_ref, mkz_ref, cat_ref = reference_ehsa(cube.values, w_lib)
    t_ref, cpu_ref = time.perf_counter() - t0, time.process_time() - c0

    # Agreement.
    dz = np.abs(ours.gi.z - z_ref).max()
    same_sig = (sig_ref == (ours.gi.hot | ours.gi.cold)).mean()
    dmk = np.abs(ours.mk.z - mkz_ref).max()
    agree = (ours.table["category"].astype(str).to_numpy() == cat_ref).mean()
    print(
        f"agreement: max |z - z_ref| = {dz:.2e}, significant bins identical {100 * same_sig:.3f} %, "
        f"max |MK z - ref| = {dmk:.2e}, categories identical {100 * agree:.2f} % of cells"
    )

    t0 = time.perf_counter()
    esri = emerging_hotspots(cube, w=W, time_lag=1, standardise="cube")
    t_esri = time.perf_counter() - t0

    print(
        f"\nreference (esda G_Local x {T} steps + statsmodels FDR + pymannkendall x {n:,} cells): "
        f"{t_ref:8.3f} s wall, {cpu_ref:8.3f} s CPU"
    )
    print(
        f"ours      (same statistic, vectorised; best of {a.repeat}):                 "
        f"{t_ours:8.3f} s wall, {cpu_ours:8.3f} s CPU"
    )
    print(f"ratio reference / ours: {t_ref / t_ours:,.1f}x wall, {cpu_ref / cpu_ours:,.1f}x CPU  (goal >= 20x)")
    print(f"ours, Esri-style space-time Gi* (cube statistics, time lag 1): {t_esri:.3f} s")

    print("\ncategories (same statistic, ours | reference | Esri-style default):")
    ref_counts = {c: int((cat_ref == c).sum()) for c in CATEGORIES}
    o = ours.summary().set_index("category")["cells"]
    e = esri.summary().set_index("category")["cells"]
    for c in CATEGORIES:
        if o[c] or ref_counts[c] or e[c]:
            print(f"  {c:<24}{o[c]:>7,}{ref_counts[c]:>9,}{e[c]:>9,}")


if __name__ == "__main__":
    main()
