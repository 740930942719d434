"""Benchmark: Gi* with 999 conditional permutations, ours vs esda, same weights, same run.

    .venv/bin/python bench/hotspots.py [--store DIR] [--permutations 999] [--repeat 3]

Data: Philadelphia 2024 (local time) from the embedded store ``--store``
(ingested there from ../shared/data/philadelphia/incidents_2024_*.csv if the
store has no Philadelphia incidents yet). Study area: every H3 cell of the
district boundary plus cells holding incidents; k = 1 ring weights, built
once and handed to both (ours as scipy.sparse, esda as the equivalent
``libpysal.weights.W``). Timed: the statistic, analytic z and the
permutation p-values — ``GiStar(y, w, permutations=P, seed=s)`` against
``esda.G_Local(y, w, transform='B', star=True, permutations=P, seed=s)``.
Each is checked against the other (|Δz| < 1e-9) before timing counts.

Prints one line per resolution with both times and the ratio (goal ≥ 5×),
and whether esda ran with numba (its JIT) or in pure Python.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtcc_geo.config import shared_data_dir  # noqa: E402
from rtcc_geo.hotspots import GiStar, agency_boundary, cell_counts, study_counts  # noqa: E402
from rtcc_geo.hotspots.weights import kring_weights  # noqa: E402
from rtcc_geo.store import open_store  # noqa: E402
from rtcc_geo.store.base import Query  # noqa: E402

Y2024 = Query(source="philadelphia", start="2024-01-01", end="2025-01-01")


def ensure_data(store) -> None:
    if store.count(Query(source="philadelphia")) > 0:
        return
    from rtcc_geo.ingest.pipeline import ingest_files

    files = sorted((shared_data_dir() / "philadelphia").glob("incidents_2024_*.csv"))
    print(f"ingesting {len(files)} Philadelphia 2024 files into the bench store ...", file=sys.stderr)
    ingest_files("philadelphia", files, store)


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=str(ROOT / "var" / "bench_store"), help="embedded store directory")
    ap.add_argument("--permutations", type=int, default=999)
    ap.add_argument("--repeat", type=int, default=5, help="best of N runs (ours); esda runs min(N, 2) times")
    ap.add_argument("--res", type=int, nargs="+", default=[9, 10])
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args(argv)

    import esda

    try:
        import numba  # noqa: F401

        jit = f"numba {numba.__version__}"
    except ImportError:
        jit = "no numba: esda's crand runs as plain Python/numpy"
    warnings.simplefilter("ignore")
    store = open_store(store_dir=args.store)
    ensure_data(store)
    boundary = agency_boundary("philadelphia")
    P = args.permutations
    print(f"esda {esda.__version__} ({jit}); permutations={P}; machine cores: {__import__('os').cpu_count()}")
    for res in args.res:
        cells, y = study_counts(cell_counts(store, res, Y2024), res, boundary)
        w = kring_weights(cells, 1)
        lw = w.to_libpysal()
        t_ours, ours = best_of(lambda y=y, w=w: GiStar(y, w, permutations=P, seed=args.seed), args.repeat)
        t_esda, ref = best_of(
            lambda y=y, lw=lw: esda.G_Local(
                y, lw, transform="B", star=True, permutations=P, seed=args.seed, n_jobs=1, keep_simulations=False
            ),
            min(args.repeat, 2),
        )
        dz = float(np.max(np.abs(ours.Zs - ref.Zs)))
        assert dz < 1e-9, f"z-scores differ by {dz}"
        print(
            f"res {res}: {len(cells):>6,} cells, {int(y.sum()):,} incidents | ours {t_ours:7.3f} s | "
            f"esda {t_esda:7.3f} s | ratio {t_esda / t_ours:6.1f}x (goal >= 5x) | max|dz| {dz:.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
