"""Aoristic apportioning: spread an incident known only within a window over time bins.

An incident known to have happened somewhere in ``[occurred_from,
occurred_to)`` (a burglary found on return) gets, in each local time bin,
the share of its window that falls in that bin:

.. math::

    w_{b} = \\frac{|[f, t) \\cap \\text{bin}_b|}{t - f}, \\qquad \\sum_b w_b = 1 .

An instant (``occurred_to`` null or ``<= occurred_from``) gets weight 1 in
the bin of ``occurred_from``. Summed over incidents, the bin totals therefore
add up to the number of incidents (Ratcliffe 2002, "Aoristic signatures and
the spatio-temporal analysis of high volume crime patterns").

DST-correct by construction: the window is cut in **UTC** into 15-minute
slots (every IANA zone's offset is a multiple of 15 min, so no slot straddles
a local hour boundary), each slot is labelled with its *local* hour / day of
week, and overlaps are measured in real elapsed time. So the 23-hour spring
day and the 25-hour autumn day are handled without special cases: the
repeated 01:00 hour in November gets two real hours of exposure.

Time-unknown rows (``time_known = False``: date-only records, placeholder
00:00 times) are **excluded** from hour-level figures by default
(``unknown_time="exclude"``); ``unknown_time="spread"`` spreads each one
uniformly over its local calendar day instead (its window becomes
``[local midnight, next local midnight)``). Day-level figures (day of week,
month) always count them, by local date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SLOT_NS = 15 * 60 * 10**9  # 15 minutes in ns
BINS = {"hour": 24, "dow": 7, "hour_of_week": 168}
_MAX_SLOTS_PER_CHUNK = 4_000_000


def windows(df: pd.DataFrame, tz: str, unknown_time: str = "exclude") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UTC ``[start, end)`` in int64 ns for each incident kept, and the kept row mask.

    Instants get ``end = start`` (weight 1 at ``start``'s bin).
    """
    if unknown_time not in ("exclude", "spread"):
        raise ValueError("unknown_time must be 'exclude' (default) or 'spread'")
    start = pd.DatetimeIndex(pd.to_datetime(df["occurred_from"], utc=True))
    if "occurred_to" in df.columns:
        end = pd.DatetimeIndex(pd.to_datetime(df["occurred_to"], utc=True))
    else:
        end = pd.DatetimeIndex([pd.NaT] * len(df), tz="UTC")
    known = (
        df["time_known"].to_numpy(dtype=bool, na_value=True)
        if "time_known" in df.columns
        else np.ones(len(df), dtype=bool)
    )
    s = start.as_unit("ns").asi8.copy()
    e = end.as_unit("ns").asi8.copy()
    nat = np.iinfo(np.int64).min
    e = np.where((e == nat) | (e < s), s, e)
    keep = s != nat
    if unknown_time == "exclude":
        keep &= known
    elif (~known).any():
        # Spread over the local calendar day (23, 24 or 25 real hours).
        loc = start[~known].tz_convert(tz).tz_localize(None).normalize()
        d0 = loc.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")
        d1 = (loc + pd.Timedelta(days=1)).tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")
        s[~known] = d0.as_unit("ns").asi8
        e[~known] = d1.as_unit("ns").asi8
    return s[keep], e[keep], keep


def weights(
    start_ns: np.ndarray, end_ns: np.ndarray, tz: str, bins: str = "hour_of_week"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse aoristic weights: ``(row, bin, weight)`` triples.

    ``start_ns``/``end_ns`` are UTC int64 nanoseconds (``end == start`` for an
    instant); ``bins`` is ``"hour"`` (0..23), ``"dow"`` (0 = Monday) or
    ``"hour_of_week"`` (``dow * 24 + hour``), all local to ``tz``. The
    weights of each row sum to 1.
    """
    if bins not in BINS:
        raise ValueError(f"unknown bins {bins!r}; use one of {tuple(BINS)}")
    s = np.asarray(start_ns, dtype=np.int64)
    e = np.asarray(end_ns, dtype=np.int64)
    if (e < s).any():
        raise ValueError("a window ends before it starts (occurred_to < occurred_from)")
    rows_out, bins_out, w_out = [], [], []
    first = s // SLOT_NS
    inst = e == s
    last = np.where(inst, first, (e - 1) // SLOT_NS)  # half-open: the slot holding e-1
    nslots = (last - first + 1).astype(np.int64)
    # Chunk rows so the expanded slot arrays stay bounded in memory.
    chunk = (np.cumsum(nslots) - 1) // _MAX_SLOTS_PER_CHUNK
    cuts = [0] + (np.flatnonzero(np.diff(chunk)) + 1).tolist() + [len(s)]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        if lo >= hi:
            continue
        idx = np.arange(lo, hi)
        reps = nslots[idx]
        row = np.repeat(idx, reps)
        off = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        slot = np.repeat(first[idx], reps) + off
        a = np.maximum(slot * SLOT_NS, s[row])
        b = np.minimum((slot + 1) * SLOT_NS, e[row])
        dur = (e - s)[row]
        w = np.where(inst[row], 1.0, (b - a) / np.where(dur > 0, dur, 1))
        ok = w > 0
        row, slot, w = row[ok], slot[ok], w[ok]
        # Label each distinct slot once with its local bin.
        uslot, inv = np.unique(slot, return_inverse=True)
        loc = pd.DatetimeIndex(uslot * SLOT_NS, tz="UTC").tz_convert(tz)
        lab = _label(loc, bins)
        rows_out.append(row)
        bins_out.append(lab[inv])
        w_out.append(w)
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(rows_out), np.concatenate(bins_out), np.concatenate(w_out)


def _label(loc: pd.DatetimeIndex, bins: str) -> np.ndarray:
    if bins == "hour":
        return loc.hour.to_numpy(np.int64)
    if bins == "dow":
        return loc.day_of_week.to_numpy(np.int64)
    return loc.day_of_week.to_numpy(np.int64) * 24 + loc.hour.to_numpy(np.int64)


def aoristic_counts(
    df: pd.DataFrame,
    tz: str,
    bins: str = "hour_of_week",
    groups: np.ndarray | None = None,
    unknown_time: str = "exclude",
) -> np.ndarray:
    """Aoristic totals per local bin: a ``(n_bins,)`` vector, or with ``groups``
    (integer codes ``0..g-1`` per row of ``df``) a ``(g, n_bins)`` matrix.

    The totals sum to the number of incidents kept (all rows, minus
    time-unknown ones unless ``unknown_time="spread"``).
    """
    s, e, keep = windows(df, tz, unknown_time)
    row, b, w = weights(s, e, tz, bins)
    nb = BINS[bins]
    if groups is None:
        return np.bincount(b, weights=w, minlength=nb).astype(np.float64)
    g = np.asarray(groups, dtype=np.int64)[keep][row]
    ng = int(np.max(groups)) + 1 if len(groups) else 0
    return np.bincount(g * nb + b, weights=w, minlength=ng * nb).reshape(ng, nb)
