"""Event load estimate on synthetic incident streams with a known injected load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.staffing.events import event_area, event_load, event_load_from_incidents, extra_staffing

TZ = "America/New_York"
VENUE = (-75.1675, 39.9006)  # a stadium-like point in South Philadelphia


def _utc(local_naive: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return local_naive.tz_localize(TZ, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")


def synthetic(seed: int | None = None, outside_category: str = "violent"):
    """20 weeks from Mon 2024-01-01 (local). Inside a 300 m circle around the
    venue: exactly one 'violent' incident at hh:30 every hour (or Poisson(1)
    per hour with ``seed``), plus a 'theft' every hour (weight 0 below).
    Outside the circle (1.5 km away) ten incidents an hour that must be ignored.
    Past events: Saturdays 18:00-23:00 of weeks 6, 9 and 12, each with +6
    violent incidents in its hour 2 and +3 in its hour 4 (the injected load).
    The event to plan: Saturday of week 16, 18:00-23:00.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    hours = pd.date_range("2024-01-01", periods=20 * 168, freq="h")
    n_in = np.ones(len(hours), int) if rng is None else rng.poisson(1.0, len(hours))
    t_in = np.repeat(hours, n_in) + pd.Timedelta(minutes=30)
    sat = lambda wk: pd.Timestamp("2024-01-01") + pd.Timedelta(days=7 * wk + 5, hours=18)  # noqa: E731
    past = [(sat(w), sat(w) + pd.Timedelta(hours=5)) for w in (6, 9, 12)]
    inj = []
    for s, _ in past:
        inj += [s + pd.Timedelta(hours=2, minutes=5)] * 6 + [s + pd.Timedelta(hours=4, minutes=50)] * 3
    t_viol = t_in.append(pd.DatetimeIndex(inj))
    rows = [
        pd.DataFrame({"occurred_from": _utc(t_viol), "lon": VENUE[0] + 0.0005, "lat": VENUE[1], "category": "violent"}),
        pd.DataFrame(
            {
                "occurred_from": _utc(hours + pd.Timedelta(minutes=10)),
                "lon": VENUE[0],
                "lat": VENUE[1] + 0.0004,
                "category": "theft",
            }
        ),
        pd.DataFrame(
            {
                "occurred_from": _utc(np.repeat(hours, 10) + pd.Timedelta(minutes=40)),
                "lon": VENUE[0] + 0.018,
                "lat": VENUE[1],
                "category": outside_category,
            }
        ),
    ]
    df = pd.concat(rows, ignore_index=True)
    return df, past, (sat(16), sat(16) + pd.Timedelta(hours=5))


def test_point_radius_area_is_a_true_circle():
    a = event_area(lon=VENUE[0], lat=VENUE[1], radius_m=300)
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    xs, ys = a.exterior.coords.xy
    _, _, d = g.inv([VENUE[0]] * len(xs), [VENUE[1]] * len(ys), list(xs), list(ys))
    assert np.allclose(d, 300, atol=0.5)
    with pytest.raises(ValueError, match="radius"):
        event_area(lon=VENUE[0], lat=VENUE[1], radius_m=0)


def test_injected_load_is_recovered_exactly():
    df, past, (s, e) = synthetic()
    area = event_area(lon=VENUE[0], lat=VENUE[1], radius_m=300)
    ev = event_load_from_incidents(df, area, s, e, TZ, {"violent": 1.0, "theft": 0.0}, weeks=8, comparables=past)
    # ordinary load: one weighted incident an hour; the past events' windows are not "ordinary"
    assert ev.n_weeks == 8
    assert np.allclose(ev.baseline, 1.0) and np.allclose(ev.baseline_sd, 0.0)
    assert np.allclose(ev.uplift, [0, 0, 6, 0, 3])
    assert np.allclose(ev.expected, [1, 1, 7, 1, 4])
    assert ev.comparables["uplift"].tolist() == [9.0, 9.0, 9.0]
    # an assumed multiplier instead of comparables (3 weeks back: weeks 13-15, no past event in them)
    ev2 = event_load_from_incidents(df, area, s, e, TZ, {"violent": 1.0}, weeks=3, uplift_factor=1.5)
    assert np.allclose(ev2.expected, 1.5)
    # undeclared past events are ordinary weeks to the baseline (week 12 is 4 weeks back): the
    # reason to pass them as comparables
    ev3 = event_load_from_incidents(df, area, s, e, TZ, {"violent": 1.0}, weeks=4)
    assert np.allclose(ev3.baseline, [1, 1, 2.5, 1, 1.75])


def test_injected_load_recovered_under_poisson_noise():
    df, past, (s, e) = synthetic(seed=11)
    area = event_area(lon=VENUE[0], lat=VENUE[1], radius_m=300)
    ev = event_load_from_incidents(df, area, s, e, TZ, {"violent": 1.0}, weeks=8, comparables=past)
    # uplift_k = mean over 3 events of (o - mean of 8 weeks): var = (1 + 1/8)/3 per hour for Poisson(1)
    tol = 4 * np.sqrt((1 + 1 / 8) / 3 * 5)
    assert abs(ev.uplift_total - 9.0) < tol
    assert abs(ev.baseline.sum() - 5.0) < 4 * np.sqrt(5 / 8)


def test_extra_staffing_follows_erlang():
    df, past, (s, e) = synthetic()
    area = event_area(lon=VENUE[0], lat=VENUE[1], radius_m=300)
    ev = event_load_from_incidents(df, area, s, e, TZ, {"violent": 1.0}, comparables=past)
    city = np.full(168, 3.0)
    extra_staffing(ev, city, handle_minutes=20, service_level=0.9, target_seconds=60)
    from rtcc_geo.staffing.erlang import required_agents

    base = required_agents(np.full(5, 1.0), 0.9, 60, 1200)
    with_ = required_agents(np.array([1.0, 1.0, 3.0, 1.0, 2.0]), 0.9, 60, 1200)
    assert ev.extra_operators.tolist() == (with_ - base).tolist()
    assert ev.extra_operators[2] > 0 and ev.extra_operators[0] == 0


def _canonical(**kw):
    from rtcc_geo.grid import index_points
    from rtcc_geo.schema import DEFAULT_RESOLUTIONS, h3_column

    df, past, (s, e) = synthetic(**kw)
    df = df[df["occurred_from"] < _utc(pd.DatetimeIndex([e + pd.Timedelta(days=1)]))[0]].reset_index(drop=True)
    df["id"] = [f"s{i}" for i in range(len(df))]
    df["source"] = "synth"
    df["offense_raw"] = df["category"]
    df["time_known"] = True
    cells = index_points(df["lat"].to_numpy(), df["lon"].to_numpy(), DEFAULT_RESOLUTIONS)
    for r, c in cells.items():
        df[h3_column(r)] = c
    return df, past, (s, e)


def _fill(store, df):
    store.register_source("synth", TZ)
    store.write_incidents(df)
    return store


def test_event_load_through_embedded_store(tmp_path):
    from rtcc_geo.store.embedded import EmbeddedStore

    df, past, (s, e) = _canonical()
    store = _fill(EmbeddedStore(tmp_path / "store"), df)
    area = event_area(lon=VENUE[0], lat=VENUE[1], radius_m=300)
    ev = event_load(store, area, s, e, weights={"violent": 1.0}, comparables=past)
    assert np.allclose(ev.expected, [1, 1, 7, 1, 4])


@pytest.mark.postgis
def test_both_stores_give_the_same_plan(tmp_path, pg_url):
    """The staffing plan is a function of the Store API only: PostGIS and the
    embedded store must give the same curve, event estimate and shifts."""
    from rtcc_geo.staffing import plan
    from rtcc_geo.store.base import Query
    from rtcc_geo.store.embedded import EmbeddedStore
    from rtcc_geo.store.postgis import PostGISStore

    df, past, (s, e) = _canonical(seed=5, outside_category="drugs")
    emb = _fill(EmbeddedStore(tmp_path / "store"), df)
    pg = _fill(PostGISStore(pg_url), df)
    q = Query(source="synth", start="2024-01-01", end="2024-05-20")
    ev = {"area": {"lon": VENUE[0], "lat": VENUE[1], "radius_m": 300}, "start": s, "end": e, "comparables": past}
    plans = [plan(st, q, 5, weights={"violent": 1.0, "theft": 0.25}, event=ev) for st in (emb, pg)]
    a, b = plans
    assert a.curve.n_weeks == b.curve.n_weeks == 20
    assert np.array_equal(a.curve.weekly, b.curve.weekly)
    assert np.array_equal(a.required, b.required)
    for k in a.options:
        assert a.options[k].optimal and b.options[k].optimal
        assert a.coverage[k] == pytest.approx(b.coverage[k], abs=1e-9)
        assert a.options[k].staff_hours == b.options[k].staff_hours
    assert a.event.uplift_total == pytest.approx(9.0, abs=4 * np.sqrt((1 + 1 / 8) / 3 * 5))
    assert np.allclose(b.event.expected, a.event.expected)
    # the incident path (offense overrides) agrees across stores too
    w = {"violent": 1.0, "offense": {"theft": 0.5}}
    from rtcc_geo.staffing.workload import workload_curve

    assert np.array_equal(workload_curve(emb, q, w).weekly, workload_curve(pg, q, w).weekly)
    pg.close()
