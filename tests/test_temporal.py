"""Temporal signatures and aoristic apportioning.

References: the Philadelphia portal's own *local* ``dispatch_date`` /
``dispatch_time`` columns (we compute from the UTC column + the IANA zone),
hand-worked DST windows, a minute-by-minute brute force, pymannkendall.
"""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pymannkendall as pmk
import pytest

from rtcc_geo import grid
from rtcc_geo.schema import conform
from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore
from rtcc_geo.temporal import aoristic
from rtcc_geo.temporal.aoristic import aoristic_counts
from rtcc_geo.temporal.profile import hotspot_profiles, hour_ranges
from rtcc_geo.temporal.signatures import signature_from_store, temporal_signature

TZ = "America/New_York"
BBOX = (-75.30, 39.86, -74.95, 40.14)  # data/agencies/philadelphia.toml


def _located(raw: pd.DataFrame) -> np.ndarray:
    x = pd.to_numeric(raw["point_x"], errors="coerce")
    y = pd.to_numeric(raw["point_y"], errors="coerce")
    return (x.between(BBOX[0], BBOX[2]) & y.between(BBOX[1], BBOX[3])).to_numpy()


@pytest.fixture(scope="module")
def philly_2024(shared_data, tmp_path_factory):
    """Philadelphia 2024 read by the project's reader, located rows only,
    H3-indexed and written to an embedded store; plus the raw portal rows."""
    from rtcc_geo.ingest.philadelphia import read

    files = sorted(glob.glob(str(shared_data / "philadelphia" / "incidents_2024_*.csv")))
    assert len(files) == 12
    frames, raws = [], []
    for f in files:
        b = read(f)
        keep = _located(b.raw) & b.frame["occurred_from"].notna().to_numpy()
        frames.append(b.frame[keep])
        raws.append(b.raw[keep])
    df = pd.concat(frames, ignore_index=True)
    raw = pd.concat(raws, ignore_index=True)
    for r, c in grid.index_points(df["lat"].to_numpy(), df["lon"].to_numpy(), (7, 8, 9, 10)).items():
        df[f"h3_r{r}"] = c
    df = conform(df)
    store = EmbeddedStore(tmp_path_factory.mktemp("philly_store"))
    store.register_source("philadelphia", TZ)
    store.write_incidents(df)
    return store, df, raw


def _portal_hour_of_week(raw: pd.DataFrame, exclude: np.ndarray) -> np.ndarray:
    """Direct pandas from the portal's LOCAL columns (no time zone maths at all)."""
    local = pd.to_datetime(raw["dispatch_date"] + " " + raw["dispatch_time"], format="%Y-%m-%d %H:%M:%S")
    how = (local.dt.day_of_week * 24 + local.dt.hour).to_numpy()[~exclude]
    return np.bincount(how, minlength=168)


def test_philadelphia_2024_hour_of_week_matches_portal_local_columns(philly_2024):
    store, df, raw = philly_2024
    # The time-unknown rule, stated on the raw columns: a homicide-victim row
    # (UCR 100) with dispatch_time 00:00:00 is a placeholder time.
    unknown = (
        (raw["ucr_general"].str.replace(r"\.0+$", "", regex=True) == "100") & (raw["dispatch_time"] == "00:00:00")
    ).to_numpy()
    assert unknown.sum() > 100  # the quirk is real (254 rows in 2024)
    ref = _portal_hour_of_week(raw, unknown)

    n_stored = store.count(Query(source="philadelphia"))
    sig = signature_from_store(store, Query(source="philadelphia"))
    ours = sig.hour_of_week.loc["all"].to_numpy()
    np.testing.assert_array_equal(ours, ref)  # bin by bin, all 168
    assert sig.n_time_unknown == unknown.sum()
    assert ours.sum() == n_stored - unknown.sum()
    # The store's own hour-of-week aggregation agrees too.
    c = store.counts(9, ("hour_of_week",), Query(source="philadelphia"))
    np.testing.assert_array_equal(c.set_index("hour_of_week")["n"].reindex(range(168), fill_value=0).to_numpy(), ref)
    # Day level keeps the time-unknown rows: day of week from the portal's local date.
    dref = np.bincount(pd.to_datetime(raw["dispatch_date"]).dt.day_of_week.to_numpy(), minlength=7)
    np.testing.assert_allclose(sig.dow.loc["all"].to_numpy(), dref)
    assert sig.dow.loc["all"].sum() == pytest.approx(n_stored)
    # Local months from the portal's local date (files are split by UTC month,
    # so local 31 Dec 2023 evening is in the data: 13 local months).
    mref = pd.to_datetime(raw["dispatch_date"]).dt.to_period("M").value_counts().sort_index()
    assert list(sig.month.columns.to_period("M")) == list(mref.index)
    np.testing.assert_array_equal(sig.month.loc["all"].to_numpy(), mref.to_numpy())


def test_signature_groups_add_up_and_trend_is_mann_kendall(philly_2024):
    store, df, _ = philly_2024
    total = temporal_signature(df, TZ)
    for by, res in (("category", None), ("district", None), ("cell", 8)):
        s = temporal_signature(df, TZ, by=by, res=res)
        np.testing.assert_allclose(s.hour_of_week.sum(axis=0).to_numpy(), total.hour_of_week.loc["all"].to_numpy())
        np.testing.assert_allclose(s.month.sum(axis=0).to_numpy(), total.month.loc["all"].to_numpy())
        np.testing.assert_allclose(s.season.to_numpy().sum(), len(df))
    cat = temporal_signature(df, TZ, by="category")
    for g in ("theft", "burglary"):
        ref = pmk.original_test(cat.month.loc[g].to_numpy().astype(float))
        assert cat.trend.loc[g, "mk_z"] == pytest.approx(ref.z)
        assert cat.trend.loc[g, "mk_p"] == pytest.approx(ref.p)
        assert cat.trend.loc[g, "sen_slope"] == pytest.approx(ref.slope)
    # Meteorological seasons from local months.
    m = pd.DatetimeIndex(df["occurred_from"]).tz_convert(TZ).month
    assert total.season.loc["all", "summer"] == m.isin([6, 7, 8]).sum()
    # Per-cell signature via the store equals the frame computation.
    s_store = signature_from_store(store, Query(source="philadelphia", categories=("burglary",)), by="cell", res=9)
    s_df = temporal_signature(df[df["category"] == "burglary"], TZ, by="cell", res=9)
    pd.testing.assert_frame_equal(s_store.hour_of_week, s_df.hour_of_week)


# --- aoristic -------------------------------------------------------------------


def _frame(windows, tz=TZ, known=None):
    f = [pd.Timestamp(a, tz=tz).tz_convert("UTC") if isinstance(a, str) else a for a, _ in windows]
    t = [pd.Timestamp(b, tz=tz).tz_convert("UTC") if isinstance(b, str) else pd.NaT for _, b in windows]
    return pd.DataFrame(
        {
            "occurred_from": pd.to_datetime(f, utc=True),
            "occurred_to": pd.to_datetime(t, utc=True),
            "time_known": known if known is not None else [True] * len(windows),
        }
    )


def _bins(df, tz=TZ, bins="hour_of_week", **kw):
    return aoristic_counts(df, tz, bins, **kw)


def test_aoristic_hand_worked_windows_across_dst():
    # Spring forward, Sun 10 Mar 2024: 01:30 EST .. 03:30 EDT is ONE real hour,
    # half in local 01:xx, half in 03:xx; local 02:xx does not exist.
    spring = _bins(_frame([("2024-03-10 01:30", "2024-03-10 03:30")]), bins="hour")
    assert spring[1] == pytest.approx(0.5) and spring[3] == pytest.approx(0.5) and spring[2] == 0
    # Fall back, Sun 3 Nov 2024: 00:30 EDT .. 02:30 EST is THREE real hours;
    # the repeated 01:xx hour gets two of them.
    w = _frame([(pd.Timestamp("2024-11-03 04:30", tz="UTC"), None)])
    w["occurred_to"] = pd.Timestamp("2024-11-03 07:30", tz="UTC")
    fall = _bins(w, bins="hour")
    np.testing.assert_allclose(fall[[0, 1, 2]], [1 / 6, 2 / 3, 1 / 6])
    # Sunday 23:00 .. Monday 01:00 wraps the week: bins 167 and 0.
    wrap = _bins(_frame([("2024-06-09 23:00", "2024-06-10 01:00")]))
    assert wrap[167] == pytest.approx(0.5) and wrap[0] == pytest.approx(0.5)
    # An instant counts 1 in its bin; a window ending before it starts is an instant.
    inst = _bins(_frame([("2024-06-12 14:59", None)]))  # Wednesday 14:xx
    assert inst[2 * 24 + 14] == 1 and inst.sum() == 1
    # Half-open: [13:00, 14:00) puts nothing in 14:xx.
    ho = _bins(_frame([("2024-06-12 13:00", "2024-06-12 14:00")]), bins="hour")
    assert ho[13] == 1 and ho[14] == 0


def test_aoristic_time_unknown_rows_excluded_or_spread_over_their_day():
    df = _frame(
        [("2024-03-10 00:00", None), ("2024-07-01 00:00", None), ("2024-07-01 09:10", None)], known=[False, False, True]
    )
    excl = _bins(df, bins="hour")
    assert excl.sum() == 1 and excl[9] == 1
    spread = _bins(df, bins="hour", unknown_time="spread")
    assert spread.sum() == pytest.approx(3)
    # 10 March has 23 local hours (no 02:xx): 1/23 each; 1 July has 24.
    np.testing.assert_allclose(spread[2], 1 / 24)
    np.testing.assert_allclose(spread[5], 1 / 23 + 1 / 24)
    # Day of week: the spread rows stay on their own day.
    dow = _bins(df, bins="dow", unknown_time="spread")
    np.testing.assert_allclose(dow, [2, 0, 0, 0, 0, 0, 1])  # Mon 1 Jul x2, Sun 10 Mar


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_aoristic_random_windows_equal_minute_brute_force(tz):
    rng = np.random.default_rng(7)
    # 40 windows around both DST changes of 2024 (in each zone), minute-aligned.
    base = pd.Timestamp("2024-03-09", tz="UTC").value
    starts = np.concatenate([rng.integers(0, 4 * 1440, 20), rng.integers(236 * 1440, 240 * 1440, 20)])
    lens = rng.integers(1, 3 * 1440, 40)
    f = pd.to_datetime(base + starts * 60_000_000_000, utc=True)
    t = pd.to_datetime(base + (starts + lens) * 60_000_000_000, utc=True)
    df = pd.DataFrame({"occurred_from": f, "occurred_to": t, "time_known": True})
    got = aoristic_counts(df, tz, "hour_of_week")
    ref = np.zeros(168)
    for a, b in zip(f, t):
        mins = pd.date_range(a, b, freq="min", inclusive="left").tz_convert(tz)
        np.add.at(ref, mins.day_of_week * 24 + mins.hour, 1.0 / len(mins))
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert got.sum() == pytest.approx(len(df))  # weights sum to the number of incidents


def test_aoristic_weights_sum_to_one_per_incident_and_reject_bad_windows():
    rng = np.random.default_rng(3)
    s = pd.Timestamp("2024-01-01", tz="UTC").value + rng.integers(0, 365 * 86400, 2000) * 10**9
    e = s + rng.integers(0, 40 * 86400, 2000) * 10**9  # up to 40 days ...
    e[:100] = s[:100]  # ... and 100 instants
    row, b, w = aoristic.weights(s, e, TZ, "hour_of_week")
    np.testing.assert_allclose(np.bincount(row, weights=w, minlength=2000), 1.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        aoristic.weights(np.array([10]), np.array([5]), TZ)


# --- per-hot-spot profile ---------------------------------------------------------


def test_hotspot_profile_flags_the_hours_a_place_is_hot():
    # A city with a flat weekly rhythm, and a two-cell hot spot whose extra
    # incidents all fall on Friday 22:00-23:59.
    rng = np.random.default_rng(1)
    c0 = grid.latlng_to_cells(np.array([39.95]), np.array([-75.16]), 9)[0]
    import h3

    ring = np.array(sorted(h3.api.basic_int.grid_disk(int(c0), 3)), dtype=np.int64)
    n = 20000
    t0 = pd.Timestamp("2024-01-01", tz=TZ).tz_convert("UTC")
    times = t0 + pd.to_timedelta(rng.integers(0, 52 * 7 * 24 * 60, n), unit="min")
    cells = rng.choice(ring, n)
    hot = np.array([c0, h3.api.basic_int.grid_disk(int(c0), 1)[1]], dtype=np.int64)
    # Local wall-clock Fridays 22:00-23:59 (naive + localize, so DST keeps them there).
    fri = [
        pd.Timestamp("2024-01-05 22:00") + pd.Timedelta(weeks=w, minutes=int(m))
        for w in range(52)
        for m in rng.integers(0, 120, 4)
    ]
    times = times.append(pd.DatetimeIndex(fri).tz_localize(TZ).tz_convert("UTC"))
    cells = np.concatenate([cells, rng.choice(hot, len(fri))])
    df = pd.DataFrame({"occurred_from": times, "time_known": True, "h3_r9": cells})
    prof = hotspot_profiles(df, TZ, hot, res=9)
    assert len(prof.hot_hours) == 1  # the two touching cells are one hot spot
    hot_bins = prof.table.loc[prof.table["hot"], "hour_of_week"].to_numpy()
    np.testing.assert_array_equal(hot_bins, [4 * 24 + 22, 4 * 24 + 23])
    assert prof.hot_hours["hot_hours"].iloc[0] == "Fri 22-24"
    assert hour_ranges(np.array([167, 0, 1])) == "Mon 00-02, Sun 23-24"
