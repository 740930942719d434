"""The additive default model: exact explanations, words that name the top term, calibration,
the seasonal and 365-day baselines, and ``forecast predict --explain``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.forecast.data import Counts
from rtcc_geo.forecast.explain import TERM_LABELS, explain
from rtcc_geo.forecast.naive import NaiveHotspot, SeasonalNaive
from rtcc_geo.forecast.terms import TERMS, AdditiveTerms, nn_poisson_identity
from rtcc_geo.store.base import Query


@pytest.fixture(scope="module")
def fitted(phl_apr_jul_store):
    from rtcc_geo.forecast.io import counts_from_store

    c = counts_from_store(phl_apr_jul_store, "philadelphia", "all", end="2024-08-01", res=10)
    return c, AdditiveTerms(n_origins=6).fit(c, until="2024-07-22")


def test_baselines_by_hand():
    cells = np.array([1, 2, 3], np.int64)
    X = np.zeros((3, 1100))
    X[0, 700:707] = 2.0  # busy in "last year's" weeks (days 700-706) -> seasonal
    X[1, 1030:1060] = 1.0  # busy only lately
    c = Counts.from_daily(cells, X)
    T = 1064  # last year's same week starts at T - 364 = 700
    s = SeasonalNaive(horizon_days=7, pad_days=0).fit(c, until=c.day_start(T))
    assert s.predict().to_numpy() == pytest.approx([14.0, 0.0, 0.0])
    n = NaiveHotspot(days=365).fit(c, until=c.day_start(T))
    assert n.name == "naive365" and n.predict().to_numpy() == pytest.approx([14 / 365 * 7, 30 / 365 * 7, 0.0])
    # padded by a week each side: 14 events over 21 days
    s = SeasonalNaive(horizon_days=7, pad_days=7).fit(c, until=c.day_start(T))
    assert s.predict().to_numpy()[0] == pytest.approx(14 / 21 * 7)


def test_identity_poisson_matches_scipy_reference():
    """The non-negative identity-link MLE against a direct constrained optimisation."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    X = rng.gamma(0.5, 1.0, (4000, 3))
    y = rng.poisson(X @ np.array([0.8, 0.0, 0.3]))
    b = nn_poisson_identity(X, y)

    def nll(v):
        mu = np.maximum(X @ v, 1e-12)
        return float((mu - y * np.log(mu)).sum())

    ref = minimize(nll, np.full(3, 0.3), method="SLSQP", bounds=[(0, None)] * 3)
    assert nll(b) <= nll(ref.x) + 1e-6
    assert b == pytest.approx(ref.x, abs=0.02) and (b >= 0).all()


def test_contributions_sum_to_the_forecast(fitted):
    _, m = fitted
    for start, end in (("2024-07-22", "2024-07-29"), ("2024-07-26 16:00", "2024-07-27 00:00")):
        fc = m.predict(None, start, end)
        ex = explain(m, start, end)
        cols = [f"contrib_{t}" for t in TERMS]
        assert (ex[cols].to_numpy() >= 0).all()
        # exact: the terms add up to the explained expected count and to predict()
        assert np.abs(ex[cols].sum(axis=1) - ex["expected"]).max() < 1e-9
        assert np.allclose(ex.set_index("cell")["expected"].reindex(fc.index).to_numpy(), fc.to_numpy(), rtol=1e-9)
        assert ex["rank"].tolist() == list(range(1, len(ex) + 1))
        assert np.allclose(ex["p_any"], 1 - np.exp(-ex["expected"]))


def test_words_name_the_top_term_and_quote_the_store(fitted, phl_apr_jul_store):
    _, m = fitted
    ex = explain(m, "2024-07-22", "2024-07-29").head(30)
    for r in ex.itertuples():
        contrib = {t: getattr(r, f"contrib_{t}") for t in TERMS}
        top = max(contrib, key=contrib.get)
        assert f"because of {TERM_LABELS[top]}:" in r.why, r.why
        assert r.why.startswith(("high", "elevated"))
    # the facts in the words are the store's counts (independent query)
    from rtcc_geo.forecast.explain import cell_facts

    cells = ex["cell"].head(5).to_numpy()
    facts = cell_facts(m, cells)
    for cell, f, w in zip(cells, facts.itertuples(), ex["why"]):
        q = Query(source="philadelphia", start="2023-07-23", end="2024-07-22", cells=(int(cell),), cells_res=10)
        inc = phl_apr_jul_store.incidents(q, columns=["category", "block"])
        assert f.last_365d == len(inc) > 0
        vc = inc["block"].value_counts()
        assert f.top_block_n == vc.iloc[0] and vc[f.top_block] == vc.iloc[0]
        assert f.top_category_n == inc["category"].value_counts().iloc[0]
        assert (
            f"{f.top_block_n} incidents on {f.top_block}" in w
            or f"{f.last_365d} incident(s) in the last year" in w
            or "last 28 days" in w
            or "last 7 days" in w
            or "weeks last year" in w
        )


def test_calibration_per_decile_on_validation_origins(shared_data):
    """Acceptance 4: observed / predicted within 0.9-1.1 in every decile of the default model's
    forecast, pooled over three weekly validation origins in 2024 H1 (before the test weeks), on
    the cached two-year example store. Every decile is judged; the lowest-forecast deciles, which
    expect few incidents each, are pooled from the bottom up into bins expecting >= 100 incidents
    (:func:`~rtcc_geo.forecast.metrics.pooled_calibration`): Poisson noise alone moves a ratio over
    fewer by more than 10 % (sd = 1 / sqrt(expected))."""
    from rtcc_geo.datasets import example_store
    from rtcc_geo.forecast.backtest import backtest
    from rtcc_geo.forecast.io import counts_from_store
    from rtcc_geo.forecast.metrics import pooled_calibration

    store = example_store("philadelphia", (2023, 2024))
    c = counts_from_store(store, "philadelphia", "all", start="2023-01-01", end="2024-04-29", res=10)
    r = backtest(c, {"additive": AdditiveTerms()}, "2024-04-01", "2024-04-22", "7d")
    pooled = pooled_calibration(r.calibration)
    # every cell is in a judged bin, and at least the four top deciles stand alone
    assert pooled["cells"].sum() == r.calibration.set_index("bin").loc["all", "cells"]
    assert list(pooled["bin"][:4]) == ["1", "2", "3", "4"], pooled
    assert (pooled["predicted"] >= 100).all(), pooled
    assert pooled["ratio"].between(0.9, 1.1).all(), pooled


def test_predict_explain_cli(phl_apr_jul_store, tmp_path, capsys):
    from rtcc_geo.cli.main import main

    out = tmp_path / "fc.csv"
    rc = main(
        [
            "forecast",
            "predict",
            "--store",
            str(phl_apr_jul_store.root),
            "--at",
            "2024-07-22",
            "--horizon",
            "7d",
            "--explain",
            "--out",
            str(out),
            "--top",
            "5",
            "--json",
        ]
    )
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    df = pd.read_csv(out)
    cols = [f"contrib_{t}" for t in TERMS]
    assert set(cols + ["why", "expected", "p_any"]) <= set(df.columns)
    assert np.abs(df[cols].sum(axis=1) - df["expected"]).max() < 1e-6
    assert df["why"].notna().all() and len(js["top"]) == 5 and "why" in js["top"][0]
    assert (
        main(
            [
                "forecast",
                "predict",
                "--store",
                str(phl_apr_jul_store.root),
                "--at",
                "2024-07-22",
                "--model",
                "naive",
                "--explain",
            ]
        )
        == 2
    )
    assert "--explain needs --model additive" in capsys.readouterr().err


def test_words_hide_small_counts_for_aggregate_only_roles():
    """Viewers and planners (small-count suppression, k=5) never read a count below k in the words."""
    from types import SimpleNamespace

    from rtcc_geo.forecast.explain import _term_words

    f = SimpleNamespace(
        last_365d=3,
        top_category="theft",
        top_category_n=2,
        top_block=None,
        top_block_n=0,
        last_28d=1,
        last_7d=0,
        same_weeks_last_year=7,
    )
    assert _term_words("long_memory", f, 5) == "fewer than 5 incident(s) in the last year, mostly theft (fewer than 5)"
    assert _term_words("seasonality", f, 5) == "7 incident(s) in these weeks last year"
    assert _term_words("long_memory", f) == "3 incident(s) in the last year, mostly theft (2)"
