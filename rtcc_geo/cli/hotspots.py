"""``rtcc-geo hotspots``: Gi*, Local Moran or KDE on H3, written to a file."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from .. import defaults as D
from .common import (
    UserError,
    add_filter_args,
    add_json_arg,
    add_store_args,
    add_study_area_arg,
    emit_json,
    query_from_args,
    scope_from_args,
    store_from_args,
)

EPILOG = """\
examples:
  rtcc-geo hotspots --method gistar --res 9 --from 2024-01-01 --to 2025-01-01 --out hot.geojson
  rtcc-geo hotspots --method lisa --category burglary --district 24 --out lisa.parquet --json
  rtcc-geo hotspots --method kde --res 10 --bandwidth-m 300 --out kde.csv
  rtcc-geo hotspots --method gistar --optimize --concentration --out hot.geojson --json

Gi* bins: +3/+2/+1 hot spot at 99/95/90 %% confidence after Benjamini-Hochberg FDR,
-3..-1 cold spots, 0 not significant. The study area is every cell of the agency
boundary (or of the selected districts), zero-count cells included. See docs/hotspots.md.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "hotspots",
        help="hot spots on H3: Getis-Ord Gi* with FDR bins, Local Moran clusters, or kernel density",
        description=(
            "Find where incidents concentrate more than chance would give, on the H3 grid. "
            "gistar: Getis-Ord Gi* z-scores, permutation p-values, FDR-corrected 99/95/90 %% bins "
            "(as ArcGIS Hot Spot Analysis). lisa: Local Moran's I with HH/LL/HL/LH clusters. "
            "kde: quartic (or Gaussian) kernel density at cell centres. Writes one row per cell."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(p)
    p.add_argument("--method", choices=("gistar", "lisa", "kde"), default="gistar", help="statistic (default: gistar)")
    p.add_argument(
        "--res", type=int, default=D.RES, metavar="N", help="H3 resolution, 7..10 (default 9, cells of about 0.1 km2)"
    )
    add_filter_args(
        p, district_help="district(s) as published (repeat or comma-separate); the study area becomes those districts"
    )
    s = p.add_argument_group("neighbourhood and inference")
    s.add_argument(
        "--k", type=int, default=D.K_RING, help="k-ring neighbourhood size (default 1: the 6 touching cells)"
    )
    s.add_argument(
        "--band-m",
        type=float,
        default=None,
        metavar="M",
        help="distance-band neighbourhood in metres instead of k-rings",
    )
    s.add_argument(
        "--optimize",
        action="store_true",
        help="choose k by incremental spatial autocorrelation (first peak of global Moran's z)",
    )
    s.add_argument(
        "--permutations",
        type=int,
        default=D.PERMUTATIONS,
        help=f"conditional permutations for pseudo p-values (default {D.PERMUTATIONS}; 0 = none)",
    )
    s.add_argument("--seed", type=int, default=D.SEED, help=f"seed of the permutations (default {D.SEED})")
    s.add_argument(
        "--alternative",
        default=D.ALTERNATIVE,
        choices=("two-sided", "folded", "directed", "greater", "lesser", "esda-two-sided", "esda-folded"),
        help="permutation p-value rule: two-sided (default, twice the smaller tail); folded "
        "(= directed, esda's classic p_sim, one-tailed in the data's direction); greater/lesser; "
        "esda-two-sided/esda-folded (esda.significance's rules, for comparison)",
    )
    s.add_argument(
        "--inference",
        default=D.INFERENCE,
        choices=("auto", "sim", "norm"),
        help=f"p-values feeding FDR and bins: analytic normal (norm; ArcGIS), permutation (sim; "
        f"warns when the 99 %% bin is out of reach), auto = sim when --permutations > 0 "
        f"(default {D.INFERENCE}, the map's too)",
    )
    s.add_argument("--alpha", type=float, default=D.ALPHA, help="FDR level for LISA clusters (default 0.05)")
    s.add_argument("--no-fdr", action="store_true", help="bins/clusters from raw p-values (not recommended)")
    s.add_argument(
        "--boundary",
        metavar="FILE",
        default=None,
        help="study-area polygon file (default: the stored agency's boundary, or the --district "
        "polygons); 'incidents' = the same as --study-area incidents",
    )
    add_study_area_arg(s)
    k = p.add_argument_group("kernel density")
    k.add_argument("--kernel", choices=("quartic", "gaussian"), default="quartic", help="KDE kernel (default quartic)")
    k.add_argument(
        "--bandwidth-m",
        type=float,
        default=None,
        metavar="M",
        help="KDE bandwidth in metres (default: ArcGIS's rule of thumb from the data)",
    )
    p.add_argument(
        "--concentration",
        action="store_true",
        help="also report crime concentration (Gini, top 1%%/5%% share of cells and blocks)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="write the table: .csv, .geojson, .parquet (GeoParquet), .gpkg or .shp "
        "(cells as textual H3 ids, with centre lat/lon)",
    )
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..store.base import Query
    from .. import hotspots as hs

    if not 0 <= args.res <= 15:
        raise UserError(f"--res {args.res}: use an H3 resolution the store indexes (7..10)")
    if args.k < 1:
        raise UserError("--k must be 1 or more")
    if args.permutations < 0:
        raise UserError("--permutations must be 0 or more")
    from ..export import FORMATS

    if args.out and not args.out.lower().endswith(tuple(FORMATS)):
        raise UserError(f"--out {args.out}: use a {', '.join(sorted(FORMATS))} file name")
    q = query_from_args(args)
    t0 = time.perf_counter()
    store = store_from_args(args)
    if store.count(Query(source=args.source)) == 0:
        where = f"source {args.source!r} in " if args.source else ""
        store.close()
        raise UserError(
            f"no incidents for {where}{store!r}: load some first, e.g. "
            "'rtcc-geo ingest --format philadelphia FILES' (same --db/--store), or 'rtcc-geo demo'"
        )
    if args.boundary == "incidents":
        args.study_area = "incidents"
    out: dict = {}
    try:
        # One Scope: source, agency, study area and district names resolved once.
        resolved = None if args.boundary not in (None, "incidents") else scope_from_args(args, store, q)
        scope = store if resolved is None else resolved
        boundary = args.boundary if args.boundary not in (None, "incidents") else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            k = args.k
            if args.optimize and args.band_m is None and args.method != "kde":
                sc = hs.optimize_scale(scope, q, res=args.res, boundary=boundary)
                k = sc.k
                out["scale"] = {
                    "k": sc.k,
                    "res": sc.res,
                    "rule": sc.rule,
                    "reason": sc.reason,
                    "table": sc.table.to_dict(orient="records"),
                }
            gdf = hs.hotspots(
                scope,
                args.method,
                args.res,
                q,
                boundary=boundary,
                k=k,
                band_m=args.band_m,
                permutations=args.permutations,
                seed=args.seed,
                alternative=args.alternative,
                alpha=args.alpha,
                inference=args.inference,
                fdr=not args.no_fdr,
                kernel=args.kernel,
                bandwidth_m=args.bandwidth_m,
            )
            if args.concentration:
                rep = hs.concentration_report(scope, args.res, q, boundary=boundary)
                out["concentration"] = {u: c.summary() for u, c in rep.items()}
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        store.close()
    out = {**hs.summary(gdf), **out}
    if resolved is not None:
        out["scope"] = resolved.describe()
    out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if args.out:
        out["out"] = str(hs.export(gdf, args.out))
    out["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        emit_json(out)
    else:
        _print_summary(out, args)
    return 0


def _print_summary(out: dict, args) -> None:
    w = sys.stdout.write
    w(f"{out['method']} on H3 res {out['res']}: {out['n_cells']:,} cells, {out['n_incidents']:,} incidents\n")
    if out.get("study_area"):
        w(f"study area: {out['study_area']}\n")
    if "scale" in out:
        w(f"scale: {out['scale']['reason']}\n")
    if "bins" in out:
        b = out["bins"]
        w(
            f"hot spots: {b['3']} at 99 %, {b['2']} at 95 %, {b['1']} at 90 % | "
            f"cold spots: {b['-3']} / {b['-2']} / {b['-1']} (after FDR)\n"
        )
    if "clusters" in out:
        w("clusters: " + ", ".join(f"{k} {v}" for k, v in out["clusters"].items()) + "\n")
    if "bandwidth_m" in out:
        w(f"bandwidth {out['bandwidth_m']:.0f} m ({out['bandwidth_rule']}), kernel {out['kernel']}\n")
    for u, c in out.get("concentration", {}).items():
        w(
            f"concentration over {c['n_units']:,} {u}s: Gini {c['gini']:.3f}, top 1 % carry "
            f"{100 * c['top1_share']:.1f} %, top 5 % carry {100 * c['top5_share']:.1f} %\n"
        )
    for m in out.get("warnings", []):
        w(f"warning: {m}\n")
    if out.get("out"):
        w(f"wrote {out['out']}\n")
    else:
        w("(no --out given: nothing written)\n")
