"""Incremental live state equals a full recompute; its Gi* equals the batch Gi*."""

import numpy as np
import pandas as pd
import pytest

from rtcc_geo import synth
from rtcc_geo.hotspots.gistar import GiStar
from rtcc_geo.hotspots.weights import kring_weights
from rtcc_geo.live.state import RollingState


@pytest.fixture(scope="module")
def stream():
    df = synth.generate(synth.SyntheticCity(seed=5, start="2024-05-01", end="2024-06-10", daily_rate=250))
    return df.iloc[:10_000].reset_index(drop=True)


def test_incremental_counts_equal_full_recompute_after_10k(stream):
    cells = np.unique(stream.h3_r9)
    w = kring_weights(cells, 1)
    live = RollingState(cells, w.sparse, "7D")
    # Arrive in batches of 50, out of order within a batch, some re-delivered (at-least-once).
    for start in range(0, len(stream), 50):
        b = stream.iloc[start : start + 50].sample(frac=1.0, random_state=start)
        live.add(b.id, b.occurred_from, b.h3_r9)
        if start >= 100:
            again = stream.iloc[start - 100 : start - 90]
            assert live.add(again.id, again.occurred_from, again.h3_r9) == 0
        live.advance(b.occurred_from.max())
    now = live.now
    full = RollingState(cells, w.sparse, "7D")
    full.recompute(stream.id, stream.occurred_from, stream.h3_r9, now)
    assert np.array_equal(live.y, full.y) and np.array_equal(live.lag, full.lag)
    # And both equal a direct count of the window (now - 7 days, now].
    inwin = stream[(stream.occurred_from > now - pd.Timedelta("7D")) & (stream.occurred_from <= now)]
    direct = pd.Series(inwin.h3_r9).value_counts().reindex(cells, fill_value=0).to_numpy()
    assert np.array_equal(live.y, direct) and live.total == len(inwin)


def test_status_equals_batch_gistar(stream):
    cells = np.unique(stream.h3_r9)
    w = kring_weights(cells, 1)
    live = RollingState(cells, w.sparse, "30D")
    live.add(stream.id, stream.occurred_from, stream.h3_r9)
    live.advance(stream.occurred_from.max())
    st = live.status()
    ref = GiStar(live.y, w, permutations=0)
    ok = np.isfinite(ref.Zs)
    assert np.allclose(st.z[ok], ref.Zs[ok], atol=1e-10)
    assert (st.bin > 0).any()  # the synthetic city has hot spots


def test_cells_outside_the_study_area_are_counted_apart(stream):
    cells = np.unique(stream.h3_r9)[:50]
    live = RollingState(cells, kring_weights(cells, 1).sparse, "30D")
    live.add(stream.id[:500], stream.occurred_from[:500], stream.h3_r9[:500])
    inside = np.isin(stream.h3_r9[:500], cells).sum()
    assert live.total == inside and live.outside == 500 - inside
