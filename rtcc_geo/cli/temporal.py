"""``rtcc-geo temporal`` (signatures, hot-spot hours), ``rtcc-geo emerging`` (EHSA on a
space-time cube) and ``rtcc-geo nearrepeat`` (Knox test)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from .common import (
    UserError,
    add_filter_args,
    add_json_arg,
    add_store_args,
    emit_json,
    progress_enabled,
    query_from_args,
    scope_from_args,
    store_from_args,
)

TEMPORAL_EPILOG = """\
examples:
  rtcc-geo temporal --source philadelphia --from 2024-01-01 --to 2025-01-01
  rtcc-geo temporal --by category --json > signature.json
  rtcc-geo temporal --category burglary --hotspot-profile --res 9

Local time is the source's time zone, DST-correct. Hour-level figures (hour,
hour of week) are aoristic (from/to windows spread over the hours they cover)
and leave out time-unknown rows (date-only records) unless --unknown-time spread;
day-level figures (day of week, month, season) count every incident. See docs/temporal.md.
"""

EMERGING_EPILOG = """\
examples:
  rtcc-geo emerging --source philadelphia --from 2023-01-01 --to 2025-01-01 --res 9 --step week
  rtcc-geo emerging --category burglary --step month --save-cube burglary_month_r9 --json
  rtcc-geo emerging --cube burglary_month_r9 --map ehsa.png --geojson ehsa.geojson

Esri's 17 categories (new, consecutive, intensifying, persistent, diminishing, sporadic,
oscillating, historical hot/cold spots, no pattern). Space-time Gi* per bin (k-ring + the
--time-lag preceding steps), Benjamini-Hochberg FDR over all bins, Mann-Kendall on each
cell's z-score series. The rules are in rtcc_geo/temporal/emerging.py and docs/temporal.md.
"""

NEARREPEAT_EPILOG = """\
examples:
  rtcc-geo nearrepeat --category burglary --from 2023-01-01 --to 2025-01-01
  rtcc-geo nearrepeat --offense "Theft from Vehicle" --space 0 100 200 400 --time 0 7 14 28 --json

Bands are half-open [a, b): a pair exactly 100 m / 7 days apart is in [100, 200) m / [7, 14) d;
the last band of each axis is open-ended (>= last edge). Ratio = observed / expected pairs,
expected = mean over --permutations random re-assignments of the dates (seeded);
p = (1 + #{simulated >= observed}) / (permutations + 1). Cells with p < 0.05 carry a *.
"""


def _filters(p: argparse.ArgumentParser) -> None:
    add_filter_args(p).add_argument(
        "--offense",
        action="append",
        metavar="TEXT",
        help="the source's own offense text, exact (e.g. 'Theft from Vehicle'); repeatable",
    )


def _query(args):
    return query_from_args(args)


def _incidents(store, args, columns, geolocated: bool | None = None):
    """All matching rows at once: for near repeat, whose pairs need every point."""
    q = _query(args).with_(include_unknown_time=True, geolocated=geolocated)
    df = _offense_rows(store.incidents(q, columns=_with_offense(args, columns)), args)
    if args.offense and len(df) == 0:
        raise _no_offense(args)
    return df


def _batches(store, args, columns, geolocated: bool | None = None):
    """The matching rows (``--offense`` applied) in time batches of bounded size
    (:func:`~rtcc_geo.temporal.stream.iter_incidents`), only ``columns`` read.
    Raises :class:`UserError` when no row matches."""
    from ..temporal.stream import iter_incidents

    q = _query(args).with_(include_unknown_time=True, geolocated=geolocated)
    n = 0
    for df in iter_incidents(store, q, _with_offense(args, columns)):
        df = _offense_rows(df, args)
        n += len(df)
        if len(df):
            yield df
    if n == 0:
        if args.offense:
            raise _no_offense(args)
        raise UserError("no incidents match the filters; widen --from/--to or drop --category/--district")


def _with_offense(args, columns) -> list[str]:
    return list(dict.fromkeys(list(columns) + (["offense_raw"] if args.offense else [])))


def _offense_rows(df, args):
    if not args.offense:
        return df
    want = {o.lower() for o in args.offense}
    return df[df["offense_raw"].astype("string").str.lower().isin(want).fillna(False).to_numpy(bool)].reset_index(
        drop=True
    )


def _no_offense(args) -> UserError:
    return UserError(
        f"no incident has offense text {sorted(args.offense)}; check the spelling "
        "(the source's own text, e.g. 'Theft from Vehicle')"
    )


def register(subparsers) -> None:
    # --- temporal -----------------------------------------------------------
    p = subparsers.add_parser(
        "temporal",
        help="temporal signatures in local time: hour, day of week, hour of week, month, season, trend",
        description=(
            "Count incidents by local hour of day, day of week, the 168 hours of the week, month and "
            "season, with a Mann-Kendall / Sen trend on the monthly counts; overall or per category, "
            "district or H3 cell. With --hotspot-profile, also the hours of the week in which each "
            "Gi* hot spot is hotter than the city's own weekly rhythm."
        ),
        epilog=TEMPORAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(p)
    _filters(p)
    p.add_argument(
        "--by",
        choices=("category", "district", "cell"),
        default=None,
        help="one signature per category, district or H3 cell (default: one overall)",
    )
    p.add_argument(
        "--res", type=int, default=9, metavar="N", help="H3 resolution for --by cell / hot spots (default 9)"
    )
    p.add_argument(
        "--unknown-time",
        choices=("exclude", "spread"),
        default="exclude",
        help="time-unknown rows in hour-level figures: exclude (default) or spread over their local day",
    )
    p.add_argument(
        "--hotspot-profile",
        action="store_true",
        help="run Gi* (analytic, FDR) at --res and give each hot spot's hot hours of the week",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="FDR level for --hotspot-profile hours (default 0.05)")
    add_json_arg(p)
    p.set_defaults(func=run_temporal)

    # --- emerging -----------------------------------------------------------
    e = subparsers.add_parser(
        "emerging",
        help="Emerging Hot Spot Analysis (Esri's 17 categories) on an H3 space-time cube",
        description=(
            "Build a space-time cube (H3 cells x day/week/month steps) from the store, or load a "
            "saved one, run space-time Gi* with FDR and Mann-Kendall, and classify every cell as a "
            "new, consecutive, intensifying, persistent, diminishing, sporadic, oscillating or "
            "historical hot or cold spot, or no pattern."
        ),
        epilog=EMERGING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(e)
    _filters(e)
    e.add_argument("--res", type=int, default=9, metavar="N", help="H3 resolution (default 9)")
    e.add_argument("--step", choices=("day", "week", "month"), default="week", help="time step (default week)")
    e.add_argument("--k", type=int, default=1, help="spatial neighbourhood, H3 k-ring (default 1)")
    e.add_argument(
        "--time-lag",
        type=int,
        default=1,
        help="preceding time steps in each bin's neighbourhood (default 1; 0 = same step only)",
    )
    e.add_argument("--alpha", type=float, default=0.05, help="significance for Gi* bins (after FDR) and trends")
    e.add_argument("--no-fdr", action="store_true", help="significant bins from raw p < alpha (not recommended)")
    e.add_argument(
        "--study-area",
        choices=("boundary", "agency", "data", "incidents"),
        default="boundary",
        help="cells: the stored agency boundary's cells plus any with incidents (default; 'agency' "
        "is the same), or only cells with incidents ('data' = 'incidents', 'locations with "
        "data' as ArcGIS; reported in the output)",
    )
    e.add_argument("--cube", metavar="NAME", default=None, help="use the cube saved under NAME instead of building one")
    e.add_argument("--save-cube", metavar="NAME", default=None, help="save the cube in the store under NAME")
    e.add_argument(
        "--save", metavar="NAME", default=None, help="save the per-cell result table in the store under NAME"
    )
    e.add_argument("--geojson", metavar="FILE", default=None, help="write the categories as a GeoJSON of hexagons")
    e.add_argument("--map", metavar="PNG", default=None, help="draw a map of the categories (matplotlib)")
    add_json_arg(e)
    e.set_defaults(func=run_emerging)

    # --- nearrepeat ---------------------------------------------------------
    n = subparsers.add_parser(
        "nearrepeat",
        help="near-repeat Knox test over space x time bands, Monte-Carlo p-values",
        description=(
            "Count pairs of incidents close in space and time, band by band, and compare with "
            "pairs under random re-assignment of the dates (the Near Repeat Calculator's method, "
            "with half-open bands stated exactly)."
        ),
        epilog=NEARREPEAT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(n)
    _filters(n)
    n.add_argument(
        "--space",
        type=float,
        nargs="+",
        default=[0, 100, 200, 400],
        metavar="M",
        help="space band edges in metres, from 0 (default 0 100 200 400)",
    )
    n.add_argument(
        "--time",
        type=float,
        nargs="+",
        default=[0, 7, 14, 28],
        metavar="D",
        help="time band edges in days, from 0 (default 0 7 14 28)",
    )
    n.add_argument("--permutations", type=int, default=999, help="Monte-Carlo permutations (default 999)")
    n.add_argument("--seed", type=int, default=0, help="seed (same seed, same p-values; default 0)")
    n.add_argument(
        "--time-resolution",
        choices=("date", "exact"),
        default="date",
        help="time differences in local calendar days (default, as the NRC) or exact instants",
    )
    add_json_arg(n)
    n.set_defaults(func=run_nearrepeat)


# --- temporal ------------------------------------------------------------------


def run_temporal(args) -> int:
    from ..temporal.signatures import DOW_NAMES, source_tz

    t0 = time.perf_counter()
    store = store_from_args(args)
    try:
        try:
            tz = source_tz(store, args.source)
        except (LookupError, ValueError) as e:
            raise UserError(str(e)) from None
        from ..temporal.signatures import signature_columns, signature_from_batches

        geo = True if args.by == "cell" else None
        try:
            sig = signature_from_batches(
                _batches(store, args, signature_columns(args.by, args.res), geo),
                tz,
                by=args.by,
                res=args.res,
                unknown_time=args.unknown_time,
            )
        except ValueError as e:
            raise UserError(str(e)) from None
        out = {
            "tz": tz,
            "by": args.by,
            "n_incidents": sig.n_incidents,
            "n_time_unknown": sig.n_time_unknown,
            "unknown_time": args.unknown_time,
            "groups": {
                str(g): {
                    "hour": sig.hour.loc[g].round(4).tolist(),
                    "dow": sig.dow.loc[g].round(4).tolist(),
                    "hour_of_week": sig.hour_of_week.loc[g].round(4).tolist(),
                    "month": {str(k.date()): int(v) for k, v in sig.month.loc[g].items()},
                    "season": {k: int(v) for k, v in sig.season.loc[g].items()},
                    "trend": {k: (None if v != v else float(v)) for k, v in sig.trend.loc[g].items()},
                }
                for g in sig.hour.index
            },
        }
        if args.hotspot_profile:
            if args.offense:
                raise UserError("--hotspot-profile finds hot spots by --category; drop --offense")
            out["hotspot_profile"] = _profile(store, args, geo, tz)
    finally:
        store.close()
    out["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        emit_json(out)
        return 0
    w = sys.stdout.write
    w(
        f"{out['n_incidents']:,} incidents ({tz}); {out['n_time_unknown']:,} time-unknown rows left out of "
        "hour-level figures\n"
    )
    for g in list(sig.hour.index)[:20]:
        m = sig.hour_of_week_matrix(g)
        peak = int(np.argmax(sig.hour_of_week.loc[g].to_numpy()))
        tr = sig.trend.loc[g]
        w(
            f"\n== {g}: peak hour of week {DOW_NAMES[peak // 24]} {peak % 24:02d}:00; busiest day "
            f"{DOW_NAMES[int(np.argmax(sig.dow.loc[g].to_numpy()))]}; monthly trend "
            f"{'up' if tr['direction'] > 0 else 'down' if tr['direction'] < 0 else 'none'} "
            f"(MK z {tr['mk_z']:.2f}, Sen {tr['sen_slope']:+.1f}/month)\n"
        )
        w("     " + "".join(f"{h:>5d}" for h in range(0, 24, 3)) + "   (every 3rd hour shown)\n")
        for d in m.index:
            w(f"{d:<5}" + "".join(f"{m.loc[d, h]:>5.0f}" for h in range(0, 24, 3)) + "\n")
    if len(sig.hour.index) > 20:
        w(f"\n... {len(sig.hour.index) - 20} more groups (use --json)\n")
    for h in out.get("hotspot_profile", []):
        w(
            f"hot spot {h['hotspot']} ({h['cells']} cells, {h['incidents']:.0f} incidents): "
            f"hot {h['hot_hours'] or 'no hour beyond the city rhythm'}\n"
        )
    return 0


def _profile(store, args, geolocated, tz):
    from .. import hotspots as hs
    from ..temporal.profile import hotspot_profiles

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gdf = hs.hotspots(store, "gistar", args.res, _query(args), permutations=0, fdr=True)
    hot = gdf.loc[gdf["bin"] > 0, "cell"].to_numpy(np.int64)
    if hot.size == 0:
        return []
    from ..schema import h3_column

    cols = ["occurred_from", "occurred_to", "time_known", h3_column(min(max(args.res, 7), 10))]
    prof = hotspot_profiles(_batches(store, args, cols, geolocated), tz, hot, args.res, alpha=args.alpha)
    return prof.hot_hours.to_dict(orient="records")


# --- emerging -------------------------------------------------------------------


def run_emerging(args) -> int:
    from ..temporal import cube as cubes
    from ..temporal.emerging import CATEGORIES, emerging_hotspots

    if args.k < 1:
        raise UserError("--k must be 1 or more")
    if args.offense:
        raise UserError(
            "--offense is not available for emerging (cubes come from the store's counts by category); use --category"
        )
    if args.time_lag < 0:
        raise UserError("--time-lag must be 0 or more")
    t0 = time.perf_counter()
    store = store_from_args(args)
    try:
        if args.cube:
            try:
                cube = cubes.load_cube(store, args.cube)
            except LookupError as e:
                raise UserError(str(e)) from None
        else:
            q = _query(args)
            scope = scope_from_args(args, store, q)
            cells = scope.study_cells(args.res)
            try:
                cube = cubes.build_cube(scope, args.res, args.step, scope.query, cells=cells)
            except ValueError as e:
                raise UserError(str(e)) from None
        if args.save_cube:
            cubes.save_cube(store, args.save_cube, cube)
        t1 = time.perf_counter()
        try:
            res = emerging_hotspots(cube, k=args.k, time_lag=args.time_lag, alpha=args.alpha, fdr=not args.no_fdr)
        except ValueError as e:
            raise UserError(str(e)) from None
        t2 = time.perf_counter()
        if args.save:
            store.put_table(args.save, res.table)
    finally:
        store.close()
    summary = res.summary()
    out = {
        "res": cube.res,
        "step": cube.step,
        "cells": int(len(cube.cells)),
        "steps": int(len(cube.steps)),
        "first_step": str(cube.steps[0].date()),
        "last_step": str(cube.steps[-1].date()),
        "incidents": float(cube.values.sum()),
        "k": args.k,
        "time_lag": args.time_lag,
        "alpha": args.alpha,
        "fdr": not args.no_fdr,
        "window": cube.window,
        "scope": None if args.cube else scope.describe(),
        "categories": {r.category: int(r.cells) for r in summary.itertuples()},
        "ehsa_seconds": round(t2 - t1, 3),
    }
    if args.geojson:
        from ..export import write_cells

        write_cells(res.table, args.geojson)
        out["geojson"] = args.geojson
    if args.map:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--map needs matplotlib (pip install matplotlib); --geojson works without it") from None
        draw_map(
            res.table,
            args.map,
            title=f"Emerging hot spots, H3 res {cube.res}, {len(cube.steps)} "
            f"{cube.step}s {cube.steps[0].date()} .. {cube.steps[-1].date()}",
        )
        out["map"] = args.map
    out["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        emit_json(out)
        return 0
    w = sys.stdout.write
    w(
        f"EHSA on {out['cells']:,} cells x {out['steps']} {cube.step}s ({out['first_step']} .. {out['last_step']}), "
        f"{out['incidents']:,.0f} incidents, k={args.k}, time lag {args.time_lag}\n"
    )
    if out["scope"]:
        w(f"study area: {out['scope']['study_area']}\n")
    if cube.window and cube.window.get("snapped"):
        w(
            f"window snapped to whole {cube.step}s: {cube.window['from'][:10]} .. {cube.window['to'][:10]} "
            f"(asked {(cube.window['asked_from'] or '')[:10]} .. {(cube.window['asked_to'] or '')[:10]})\n"
        )
    for c in CATEGORIES:
        if out["categories"][c]:
            w(f"  {c:<24}{out['categories'][c]:>8,}\n")
    for k in ("geojson", "map"):
        if k in out:
            w(f"wrote {out[k]}\n")
    return 0


#: Map colours: warm hues for hot-spot categories, cool for cold, each one distinct.
COLOURS = {
    "new hot spot": "#fcbba1",
    "consecutive hot spot": "#fb6a4a",
    "intensifying hot spot": "#e31a1c",
    "persistent hot spot": "#67000d",
    "diminishing hot spot": "#fd8d3c",
    "sporadic hot spot": "#fed976",
    "oscillating hot spot": "#f768a1",
    "historical hot spot": "#8c510a",
    "new cold spot": "#c6dbef",
    "consecutive cold spot": "#6baed6",
    "intensifying cold spot": "#2171b5",
    "persistent cold spot": "#08306b",
    "diminishing cold spot": "#41b6c4",
    "sporadic cold spot": "#c7e9b4",
    "oscillating cold spot": "#9e9ac8",
    "historical cold spot": "#01665e",
    "no pattern detected": "#eeeeee",
}


def draw_map(table, path: str, title: str = "") -> None:
    """Hexagon map of EHSA categories (matplotlib, no basemap: works offline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .. import grid

    gdf = grid.cells_to_geodataframe(table["cell"].to_numpy(), table[["category"]])
    gdf["category"] = gdf["category"].astype(str)
    fig, ax = plt.subplots(figsize=(9, 10), dpi=110)
    gdf.plot(ax=ax, color=gdf["category"].map(COLOURS).fillna("#eeeeee"), linewidth=0)
    present = [c for c in COLOURS if (gdf["category"] == c).any()]
    counts = gdf["category"].value_counts()
    ax.legend(
        handles=[Patch(color=COLOURS[c], label=f"{c} ({counts[c]:,})") for c in present],
        loc="lower right",
        fontsize=8,
        frameon=True,
    )
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- nearrepeat -------------------------------------------------------------------


def run_nearrepeat(args) -> int:
    from ..temporal.nearrepeat import near_repeat
    from ..temporal.signatures import source_tz

    if args.permutations < 1:
        raise UserError("--permutations must be 1 or more (999 is usual)")
    t0 = time.perf_counter()
    store = store_from_args(args)
    try:
        try:
            tz = source_tz(store, args.source)
        except (LookupError, ValueError) as e:
            raise UserError(str(e)) from None
        df = _incidents(
            store, args, ["occurred_from", "time_known", "lon", "lat"], geolocated=True
        )  # near repeat: points
    finally:
        store.close()
    try:
        r = near_repeat(
            df,
            tz,
            args.space,
            args.time,
            permutations=args.permutations,
            seed=args.seed,
            time_resolution=args.time_resolution,
            progress=progress_enabled(),
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    out = {
        "n_events": r.n_events,
        "n_close_pairs": r.n_close_pairs,
        "permutations": r.permutations,
        "seed": r.seed,
        "time_resolution": args.time_resolution,
        "space_bands": r.space_labels,
        "time_bands": r.time_labels,
        "bands": r.long().replace({np.inf: None}).to_dict(orient="records"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if args.json:
        emit_json(out)
        return 0
    w = sys.stdout.write
    w(
        f"Knox test: {r.n_events:,} incidents, {r.n_close_pairs:,} pairs within {r.space_edges[-1]:g} m, "
        f"{r.permutations} permutations (seed {r.seed})\n\nobserved / expected (* p < 0.05):\n"
    )
    w(r.table("ratio").to_string() + "\n\nobserved pairs:\n")
    w(r.table("observed").to_string() + "\n")
    return 0
