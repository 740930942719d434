"""``rtcc-geo forecast``: backtest forecast models on held-out windows, or predict the next one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .common import (
    UserError,
    add_json_arg,
    add_store_args,
    default_source,
    emit_json,
    progress_enabled,
    store_from_args,
)

MODELS = ("naive", "naive365", "seasonal", "prospective", "stkde", "sepp", "learned", "ensemble", "additive")
#: The default model of ``predict`` (additive in its terms, so it can explain itself).
DEFAULT_MODEL = "additive"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "forecast",
        help="forecast crime per H3 cell; backtest models on held-out windows",
        description=(
            "Forecast expected incidents per H3 cell for the next shift/day/week, and prove it: "
            "'backtest' refits each model at every origin (rolling origin, trained only on what came "
            "before) and scores the next window by hit rate, PAI and PEI* at 1 %% / 5 %% of the area and "
            "a fixed km²; 'predict' writes the forecast for one window (--explain: why, term by term). Models: "
            "naive (last 28 days), naive365 (last 365 days), seasonal (same weeks last year), prospective "
            "(Bowers-Johnson-Pease), stkde, sepp (self-exciting, EM), learned (Poisson gradient boosting), "
            "ensemble (learned + stkde + sepp), additive (sum of long-memory, recent, near-repeat, seasonal "
            "and place terms; the default). See docs/forecast.md."
        ),
    )
    sub = p.add_subparsers(dest="forecast_command", metavar="SUBCOMMAND")

    def common(sp):
        add_store_args(sp)
        sp.add_argument("--source", default=None, help="agency/source in the store (default: the store's only source)")
        sp.add_argument(
            "--train-from",
            metavar="DATE",
            default=None,
            help="first local day the models learn from (default: the first incident; required when "
            "a few incidents are dated years before the rest)",
        )
        sp.add_argument(
            "--category",
            default="all",
            help="forecast target: all, all_but_enforcement, violent_ucr (UCR 100-499), "
            "theft_from_vehicle, or a category (burglary, robbery, vehicle, ...). Default: all",
        )
        sp.add_argument("--res", type=int, default=10, help="H3 resolution of the cells (default 10, ~0.015 km²)")
        sp.add_argument(
            "--horizon", default="7d", help="window length: 8h, shift, 1d, day, 7d, week, 2w ... (default 7d)"
        )
        add_json_arg(sp)

    b = sub.add_parser(
        "backtest",
        help="rolling-origin backtest of one or more models",
        description="Refit every model at each origin from --from (step = --step or the horizon) "
        "to --to, score the next --horizon, print mean hit rate / PAI / PEI* per model.",
    )
    common(b)
    b.add_argument(
        "--model",
        default="naive,prospective,stkde,sepp",
        help=f"comma-separated models ({', '.join(MODELS)}) or 'all' (default: naive,prospective,stkde,sepp)",
    )
    b.add_argument("--from", dest="start", required=True, help="first origin (local time), e.g. 2024-07-01")
    b.add_argument("--to", dest="end", required=True, help="origins before this (local time), e.g. 2024-12-30")
    b.add_argument("--step", default=None, help="time between origins (default: the horizon)")
    b.add_argument("--area-km2", type=float, default=0.5, help="fixed flagged area for hit/PAI/PEI* (default 0.5 km²)")
    b.add_argument(
        "--ties",
        choices=("fractional", "cell_id"),
        default="fractional",
        help="tie rule at the cut-off (default fractional = expected value over tie orders)",
    )
    b.add_argument("--scores-csv", metavar="FILE", help="also write the per-origin scores here")
    b.add_argument("--curve-csv", metavar="FILE", help="also write the mean hit-rate-vs-area curve per model here")
    b.set_defaults(func=_backtest)

    q = sub.add_parser(
        "predict",
        help="forecast one window",
        description="Fit on everything before --at and write expected incidents per cell for [--at, --at + --horizon).",
    )
    common(q)
    q.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS, help=f"model (default {DEFAULT_MODEL})")
    q.add_argument("--at", required=True, help="start of the window (local time), e.g. '2024-07-20 16:00'")
    q.add_argument(
        "--out", metavar="FILE", help="write cell,cell_hex,expected,rank as CSV (.csv) or GeoJSON (.geojson)"
    )
    q.add_argument("--top", type=int, default=20, help="how many top cells to print (default 20)")
    q.add_argument(
        "--explain",
        action="store_true",
        help="say why, per cell: the expected incidents each term adds (long memory, recent activity, "
        "near-repeat, seasonality, place; columns contrib_<term>, summing to expected), "
        "p_any (chance of at least one incident) and a 'why' sentence. Additive model only",
    )
    q.set_defaults(func=_predict)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _models(spec: str, horizon: str):
    from ..forecast.backtest import default_models

    names = list(MODELS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in MODELS]
    if bad:
        raise UserError(f"unknown model(s) {bad}; use any of {', '.join(MODELS)} or 'all'")
    allm = default_models(horizon)
    return {n: allm[n] for n in MODELS if n in names}


def _counts(args, end):
    from ..forecast.backtest import parse_horizon
    from ..forecast.data import TARGETS
    from ..forecast.io import counts_from_store

    if args.category not in TARGETS:
        raise UserError(f"unknown --category {args.category!r}; use one of {', '.join(TARGETS)}")
    try:
        parse_horizon(args.horizon)
    except ValueError as e:
        raise UserError(str(e)) from None
    store = store_from_args(args)
    args.source = default_source(store, args.source)
    try:
        c = counts_from_store(store, args.source, args.category, start=args.train_from, end=end, res=args.res)
    except ValueError as e:
        raise UserError(str(e)) from None
    if c.n_events == 0:
        raise UserError(f"no {args.category} incidents for {args.source} before {end}: ingest data first")
    return c


def _backtest(args: argparse.Namespace) -> int:
    from ..forecast.backtest import backtest, parse_horizon

    models = _models(args.model, args.horizon)
    try:
        t0, t1 = pd.Timestamp(args.start), pd.Timestamp(args.end)
    except ValueError as e:
        raise UserError(f"bad --from/--to: {e}") from None
    h = parse_horizon(args.horizon)
    c = _counts(args, t1 + h)
    try:
        r = backtest(
            c, models, t0, t1, h, step=args.step, area_km2=args.area_km2, ties=args.ties, progress=progress_enabled()
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    s = r.summary()
    if args.scores_csv:
        r.scores.to_csv(args.scores_csv, index=False)
    if args.curve_csv:
        r.curves.to_csv(args.curve_csv, index=False)
    ak = f"{args.area_km2:g}km2"
    if args.json:
        emit_json(
            {
                "source": args.source,
                "category": args.category,
                "res": args.res,
                "horizon": args.horizon,
                "from": str(t0),
                "to": str(t1),
                "origins": int(s["origins"].max()),
                "cells": len(c.cells),
                "ties": args.ties,
                "models": {
                    m: {
                        "hit_rate_1pct": row["hit@1%"],
                        "pai_1pct": row["pai@1%"],
                        "pei_1pct": row["pei@1%"],
                        "hit_rate_5pct": row["hit@5%"],
                        "pai_5pct": row["pai@5%"],
                        "pei_5pct": row["pei@5%"],
                        f"hit_rate_{ak}": row[f"hit@{ak}"],
                        f"pai_{ak}": row[f"pai@{ak}"],
                        f"pei_{ak}": row[f"pei@{ak}"],
                        "mean_incidents": row["n"],
                        "mean_predicted": row["predicted"],
                        "seconds": row["seconds"],
                    }
                    for m, row in s.iterrows()
                },
            }
        )
    else:
        cols = ["origins", "n", "hit@1%", "pai@1%", "pei@1%", "hit@5%", "pai@5%", "pei@5%", f"pai@{ak}", "seconds"]
        print(
            f"{args.category} on {args.source}, res {args.res}, horizon {args.horizon}, {len(c.cells):,} cells; "
            f"means over origins from {t0} to {t1}:"
        )
        print(s[cols].to_string(float_format=lambda x: f"{x:.3f}"))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..forecast.backtest import parse_horizon

    models = _models(args.model, args.horizon)
    m = next(iter(models.values()))
    try:
        at = pd.Timestamp(args.at)
    except ValueError as e:
        raise UserError(f"bad --at: {e}") from None
    h = parse_horizon(args.horizon)
    if args.explain and args.model != "additive":
        raise UserError(f"--explain needs --model additive (a sum of terms), not {args.model}")
    c = _counts(args, at)
    try:
        fc = m.fit(c, until=at).predict(None, at, at + h)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = _frame(fc)
    if args.explain:
        from ..forecast.explain import explain

        ex = explain(m, at, at + h)
        out = out.merge(ex.drop(columns=["cell_hex", "expected", "rank"]), on="cell", how="left")
    if args.out:
        _write(out, args.out)
    if args.json:
        emit_json(
            {
                "model": args.model,
                "category": args.category,
                "at": str(at),
                "horizon": args.horizon,
                "cells": len(out),
                "expected_total": float(fc.sum()),
                "out": args.out,
                "top": out.head(args.top)[[k for k in out.columns if k != "cell"]].to_dict("records"),
            }
        )
    else:
        print(
            f"{args.model} forecast of {args.category}, {at} + {args.horizon}: "
            f"{fc.sum():.1f} expected incidents over {len(out):,} cells"
        )
        print(out.head(args.top)[["rank", "cell_hex", "expected"]].to_string(index=False))
        if args.explain:
            print("\nWhy:")
            for r in out.head(args.top).itertuples():
                print(f"  {r.rank:>4} {r.cell_hex}: {r.why}")
    return 0


def _frame(fc: pd.Series) -> pd.DataFrame:
    from ..forecast.metrics import ranked_cells

    order = ranked_cells(fc)
    out = pd.DataFrame({"cell": order, "expected": fc.reindex(order).to_numpy()})
    out["cell_hex"] = [f"{c:x}" for c in out["cell"]]
    out["rank"] = range(1, len(out) + 1)
    return out[["cell", "cell_hex", "expected", "rank"]]


def _write(df: pd.DataFrame, path: str) -> None:
    from ..export import write_cells

    try:
        write_cells(df.drop(columns=["cell_hex"]), Path(path))  # one writer: textual H3 ids, centre lat/lon
    except ValueError as e:
        raise UserError(f"--out: {e}") from None
