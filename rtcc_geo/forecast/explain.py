"""Why a cell's forecast is what it is: exact per-term contributions, in incidents and in words.

The default model (:class:`~rtcc_geo.forecast.terms.AdditiveTerms`) is a sum of
term forecasts, so for a window ``W`` a cell's expected count is exactly

.. math:: E_c(W) = \\sum_{t \\in \\text{terms}} E_{c,t}(W)

with ``E_{c,t}`` the term's daily rate scaled to the window the same way as
the forecast itself (whole weeks: x days; shorter windows: x 7 x the cell's
hour-of-week share, :meth:`~rtcc_geo.forecast.base.ForecastModel.window_share`).
:func:`explain` returns the ``contrib_<term>`` columns, their sum
``expected``, the probability of at least one incident under a Poisson count
``p_any = 1 - exp(-expected)``, and a ``why`` sentence that names the largest
term first with the facts behind it (incidents in the last year and the
cell's commonest category and block, the last 28 and 7 days, the same weeks
last year).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import HOURS_PER_DAY
from .terms import TERMS, AdditiveTerms

#: Plain names of the terms, as the words print them.
TERM_LABELS = {
    "long_memory": "long memory",
    "recent": "recent activity",
    "near_repeat": "near-repeat",
    "seasonality": "seasonality",
    "place": "place",
}


def contributions(model: AdditiveTerms, start=None, end=None) -> pd.DataFrame:
    """``contrib_<term>`` per study cell for ``[start, end)`` (default: the week after the fit)."""
    if not isinstance(model, AdditiveTerms):
        raise TypeError(f"explanations need the additive model, not {type(model).__name__}: use --model additive")
    model._check_fitted()
    c = model.counts_
    a, b = model.window_hours(start, end)
    e = model.to_window(model.terms_ * ((b - a) / HOURS_PER_DAY), a, b)
    return pd.DataFrame(e, index=pd.Index(c.cells, name="cell"), columns=[f"contrib_{t}" for t in TERMS])


def cell_facts(model: AdditiveTerms, cells) -> pd.DataFrame:
    """The counts the words quote, per cell: last 365 / 28 / 7 days, same weeks last year,
    and the commonest category and block address over the last 365 days."""
    c = model.counts_
    T = model.until_day_
    pos = np.searchsorted(c.cells, np.asarray(cells, np.int64))
    pos = np.clip(pos, 0, len(c.cells) - 1)
    hi = T * HOURS_PER_DAY
    out = {}
    for name, lo_d, hi_d in (
        ("last_365d", T - 365, T),
        ("last_28d", T - 28, T),
        ("last_7d", T - 7, T),
        ("same_weeks_last_year", T - 364 - 7, T - 364 + model.horizon_days + 7),
    ):
        i0, i1 = np.searchsorted(c.hours, [max(lo_d, 0) * HOURS_PER_DAY, max(min(hi_d, T), 0) * HOURS_PER_DAY])
        out[name] = np.bincount(c.cell_idx[i0:i1], minlength=len(c.cells))[pos]
    df = pd.DataFrame(out, index=pd.Index(np.asarray(cells, np.int64), name="cell"))
    i0, i1 = np.searchsorted(c.hours, [max(T - 365, 0) * HOURS_PER_DAY, hi])
    evpos = c.cell_idx[i0:i1]
    sel = np.isin(evpos, pos)
    for col, codes, names in (("top_category", c.category, c.category_names), ("top_block", c.block, c.block_names)):
        df[col], df[f"{col}_n"] = None, 0
        if codes is None or not sel.any():
            continue
        e2 = pd.DataFrame({"pos": evpos[sel], "code": codes[i0:i1][sel]})
        e2 = e2[e2["code"] >= 0]
        top = (
            e2.groupby(["pos", "code"])
            .size()
            .rename("n")
            .reset_index()
            .sort_values(["pos", "n", "code"], ascending=[True, False, True])
            .drop_duplicates("pos")
            .set_index("pos")
        )
        code = top["code"].reindex(pos)
        df[col] = [names[int(k)] if pd.notna(k) else None for k in code.to_numpy()]
        df[f"{col}_n"] = top["n"].reindex(pos).fillna(0).to_numpy(np.int64)
    return df


def _level(rank: int, n: int) -> str:
    q = rank / max(n, 1)
    return "high" if q <= 0.01 else "elevated" if q <= 0.05 else "moderate" if q <= 0.2 else "low"


def _n(v, k: int) -> str:
    """A count as words; below ``k`` (small-count suppression) only "fewer than k"."""
    return f"fewer than {k}" if k and int(v) < k else f"{int(v)}"


def _term_words(term: str, f, k: int = 0) -> str:
    if term == "long_memory":
        s = f"{_n(f.last_365d, k)} incident(s) in the last year"
        if f.top_category and f.top_category_n:
            s += f", mostly {f.top_category} ({_n(f.top_category_n, k)})"
        if f.top_block and f.top_block_n:
            s += f", most often on {f.top_block} ({_n(f.top_block_n, k)})"
        return s
    if term == "recent":
        return f"{_n(f.last_28d, k)} incident(s) in the last 28 days"
    if term == "near_repeat":
        return f"{_n(f.last_7d, k)} incident(s) here in the last 7 days, plus activity next door (near-repeat)"
    if term == "seasonality":
        return f"{_n(f.same_weeks_last_year, k)} incident(s) in these weeks last year"
    return (
        f"a repeat place ({_n(f.top_block_n, k)} incidents on {f.top_block} in the last year)"
        if f.top_block and f.top_block_n
        else "the place itself (residents, a city-wide floor)"
    )


def why(row, facts, rank: int, n: int, min_count: int = 0) -> str:
    """The sentence for one cell: its level, the largest term with its facts, then the others."""
    contrib = {t: float(row[f"contrib_{t}"]) for t in TERMS}
    order = sorted(TERMS, key=lambda t: -contrib[t])
    top = order[0]
    s = (
        f"{_level(rank, n)} ({row['expected']:.2f} expected, rank {rank:,} of {n:,}) because of "
        f"{TERM_LABELS[top]}: {_term_words(top, facts, min_count)} (adds {contrib[top]:.2f})"
    )
    rest = [f"{TERM_LABELS[t]} adds {contrib[t]:.2f}" for t in order[1:] if contrib[t] >= 0.005]
    return s + ("; " + "; ".join(rest) if rest else "")


def explain(
    model: AdditiveTerms, start=None, end=None, cells=None, places: bool = True, min_count: int = 0
) -> pd.DataFrame:
    """Per cell (all study cells, or ``cells``), ranked by forecast: ``cell``, ``cell_hex``,
    ``expected``, ``rank``, ``p_any``, one ``contrib_<term>`` per term (summing to
    ``expected``) and ``why``. ``places=False`` keeps block addresses out of the words
    (for roles that may not see incident rows); ``min_count`` writes counts below it as
    "fewer than k" (small-count suppression for aggregate-only roles)."""
    from .metrics import ranked_cells

    con = contributions(model, start, end)
    exp = con.sum(axis=1)
    order = ranked_cells(exp)
    rank = pd.Series(np.arange(1, len(order) + 1), index=order)
    want = order if cells is None else np.asarray(cells, np.int64)
    out = con.reindex(want, fill_value=0.0)
    out.insert(0, "expected", exp.reindex(want, fill_value=0.0).to_numpy())
    out.insert(1, "rank", rank.reindex(want, fill_value=len(order)).to_numpy(np.int64))
    out.insert(2, "p_any", 1.0 - np.exp(-out["expected"].to_numpy()))
    facts = cell_facts(model, want)
    if not places:
        facts["top_block"], facts["top_block_n"] = None, 0
    n = len(order)
    recs = out.assign(expected=out["expected"]).to_dict("records")
    out["why"] = [why(r, f, int(r["rank"]), n, min_count) for r, f in zip(recs, facts.itertuples())]
    out = out.reset_index()
    out.insert(1, "cell_hex", [f"{int(x):x}" for x in out["cell"]])
    return out


def drill_section(ctx, cell: int, f, places: bool = True, min_count: int = 0):
    """The drill-down's "Why this forecast" block for ``cell`` (a Dash component): the additive
    model fitted on the 400 days before the view's end at the cell's resolution (cached per
    view), its next-7-day forecast for the cell and the contribution of each term.
    ``places=False``: no block addresses in the words."""
    import h3
    from dash import html

    from .io import counts_from_store

    res = int(h3.api.basic_int.get_resolution(int(cell)))
    end = pd.Timestamp(f.end or ctx.date_range[1]) + pd.Timedelta(days=1)

    def make():
        c = counts_from_store(
            ctx.store,
            ctx.source,
            "all",
            start=(end - pd.Timedelta(days=400)).strftime("%Y-%m-%d"),
            end=end.strftime("%Y-%m-%d"),
            res=res,
        )
        return AdditiveTerms(n_origins=8).fit(c, until=end.strftime("%Y-%m-%d"))

    try:
        model = ctx.cache.get(("forecast-terms", ctx.source, res, f.end), make)
        ex = explain(model, cells=[int(cell)], places=places, min_count=min_count).iloc[0]
    except ValueError as e:  # too little history in the store for this view
        return html.Div(f"No forecast explanation: {e}", id="drill-forecast", style={"color": "#667"})
    td = {"padding": "1px 6px", "borderBottom": "1px solid #eee"}
    rows = [
        html.Tr(
            [
                html.Td(TERM_LABELS[t], style=td),
                html.Td(f"{ex[f'contrib_{t}']:.2f}", style={**td, "textAlign": "right"}),
            ]
        )
        for t in TERMS
    ]
    rows.append(
        html.Tr(
            [
                html.Td(html.B("forecast, next 7 days"), style=td),
                html.Td(html.B(f"{ex['expected']:.2f}"), style={**td, "textAlign": "right"}),
            ]
        )
    )
    return html.Div(
        id="drill-forecast",
        children=[
            html.Div(
                f"Why this forecast (all incidents, the 7 days from {end:%Y-%m-%d})",
                style={"fontWeight": 600, "margin": "8px 0 4px"},
            ),
            html.Div(ex["why"], id="drill-forecast-why", style={"fontSize": "12px", "marginBottom": "4px"}),
            html.Table(
                html.Tbody(rows),
                id="drill-forecast-terms",
                title="Expected incidents each part of the additive model adds (they sum to the forecast)",
                style={"borderCollapse": "collapse", "fontSize": "12px"},
            ),
        ],
    )
