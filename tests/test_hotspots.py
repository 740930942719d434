"""Hot-spot statistics against independent references (esda, libpysal,
statsmodels, scipy/numpy brute force, hand-worked examples).

No store here: small constructed or synthetic grids. The Philadelphia
acceptance checks are in test_hotspots_phl.py, the store parity in
test_hotspots_parity.py.
"""

from __future__ import annotations

import warnings

import h3
import numpy as np
import pandas as pd
import pytest

from rtcc_geo import grid
from rtcc_geo.hotspots import concentration as conc
from rtcc_geo.hotspots.fdr import bh_adjust, bh_cutoff, confidence_bins
from rtcc_geo.hotspots.gistar import GiStar
from rtcc_geo.hotspots.kde import kde_cells, kernel
from rtcc_geo.hotspots.lisa import LocalMoran
from rtcc_geo.hotspots.permutation import ALTERNATIVES, crand, draw_block, mc_se, significance
from rtcc_geo.hotspots.scale import choose_scale, global_moran, knn_fallback_k
from rtcc_geo.hotspots.weights import distance_band_weights, kring_weights, study_area

import esda  # noqa: E402  (a test extra: missing it must fail, not skip)

warnings.filterwarnings("ignore", category=DeprecationWarning)

#: our rule name -> esda.significance's name for the same rule
ESDA_NAME = {
    "folded": "directed",
    "greater": "greater",
    "lesser": "lesser",
    "esda-two-sided": "two-sided",
    "esda-folded": "folded",
}

CENTRE = h3.api.basic_int.latlng_to_cell(39.95, -75.16, 9)


@pytest.fixture(scope="module")
def patch():
    """A hexagonal patch of 331 res-9 cells (k = 10 disk) with clustered,
    overdispersed counts (a hot core, a cold edge, many zeros)."""
    cells = np.array(sorted(h3.api.basic_int.grid_disk(CENTRE, 10)), dtype=np.int64)
    rng = np.random.default_rng(7)
    d = np.array([h3.api.basic_int.grid_distance(CENTRE, int(c)) for c in cells])
    lam = 8.0 * np.exp(-d / 3.0) + 0.3
    y = rng.negative_binomial(2, 2 / (2 + lam)).astype(float)
    return cells, y


# ------------------------------------------------------------------ weights
def test_kring_weights_match_h3_grid_distance(patch):
    cells, _ = patch
    for k in (1, 2):
        w = kring_weights(cells, k)
        assert (w.sparse != w.sparse.T).nnz == 0
        assert w.sparse.diagonal().sum() == 0
        i = int(np.searchsorted(cells, CENTRE))
        assert w.cardinalities[i] == 3 * k * (k + 1)  # full ring at the centre
        # brute force on a sample of rows
        for i in range(0, len(cells), 37):
            brute = {
                j for j, c in enumerate(cells) if j != i and h3.api.basic_int.grid_distance(int(cells[i]), int(c)) <= k
            }
            assert set(w.neighbours()[i]) == brute


def test_distance_band_matches_haversine(patch):
    cells, _ = patch
    w = distance_band_weights(cells, 700.0)
    lat, lon = grid.cell_centres(cells)
    la, lo = np.radians(lat), np.radians(lon)
    dlat = la[:, None] - la[None, :]
    dlon = lo[:, None] - lo[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(la[:, None]) * np.cos(la[None, :]) * np.sin(dlon / 2) ** 2
    d = 2 * 6371008.8 * np.arcsin(np.sqrt(a))
    brute = (d <= 700.0) & ~np.eye(len(cells), dtype=bool)
    dense = w.sparse.toarray() > 0
    # the projection is exact to < 0.1 %: only pairs within 1 m of the band may differ
    differ = dense != brute
    assert np.all(np.abs(d[differ] - 700.0) < 1.0)
    assert dense.sum() > 6 * len(cells)


def test_study_area_includes_zero_cells_and_outside_incidents():
    from shapely.geometry import Polygon

    poly = Polygon([(-75.17, 39.94), (-75.15, 39.94), (-75.15, 39.96), (-75.17, 39.96)])
    cover = grid.cover(poly, 9)
    outside = np.array([h3.api.basic_int.latlng_to_cell(40.05, -75.0, 9)], dtype=np.int64)
    area = study_area(poly, 9, outside)
    assert set(cover) <= set(area) and outside[0] in area and len(area) == len(cover) + 1
    with pytest.raises(ValueError, match="mix H3 resolutions"):
        kring_weights(np.concatenate([cover, [h3.api.basic_int.latlng_to_cell(39.95, -75.16, 8)]]))


# ------------------------------------------------------------------ Gi*
def test_gistar_z_equals_esda(patch):
    cells, y = patch
    for k in (1, 2):
        w = kring_weights(cells, k)
        ours = GiStar(y, w, permutations=0)
        ref = esda.G_Local(y, w.to_libpysal(), transform="B", star=True, permutations=0)
        np.testing.assert_allclose(ours.Zs, ref.Zs, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ours.Gs, ref.Gs, rtol=1e-12)
        np.testing.assert_allclose(ours.EGs, ref.EGs, rtol=1e-12)
        np.testing.assert_allclose(ours.VGs, ref.VGs, rtol=1e-10)


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_gistar_pseudo_p_exact_from_esdas_draws(patch, alternative):
    """With esda's own draw block, our per-cell path reproduces esda's
    simulations and, for every rule, esda's significance function."""
    from esda.crand import vec_permutations
    from esda.significance import calculate_significance

    cells, y = patch
    w = kring_weights(cells, 1)
    ids = vec_permutations(int(w.cardinalities.max()), w.n, 199, 11)
    ref = esda.G_Local(
        y, w.to_libpysal(), transform="B", star=True, permutations=199, seed=11, n_jobs=1, keep_simulations=True
    )
    ours = GiStar(y, w, permutations=199, draws=ids, alternative=alternative, keep_simulations=True)
    np.testing.assert_allclose(ours.sim, ref.rGs, rtol=1e-12)
    if alternative == "two-sided":  # ours: twice the smaller of esda's one-tailed p-values
        expect = np.minimum(
            1.0,
            2
            * np.minimum(
                calculate_significance(ref.Gs, ref.rGs, alternative="greater"),
                calculate_significance(ref.Gs, ref.rGs, alternative="lesser"),
            ),
        )
    else:
        expect = calculate_significance(ref.Gs, ref.rGs, alternative=ESDA_NAME[alternative])
    if alternative == "esda-two-sided":
        expect = np.minimum(expect, 1.0)  # esda can exceed 1 when every draw ties
    if alternative == "esda-folded":
        # Mirror ties |sim - mean| == |obs - mean| (e.g. mean 9, obs 6, sim 12) are
        # exact on our integer neighbour sums but broken by rounding on esda's
        # G scale: count them as ties, as the rule intends, then compare exactly.
        m = ref.rGs.mean(axis=1, keepdims=True)
        tie_aware = ((np.abs(ref.rGs - m) >= np.abs(ref.Gs[:, None] - m) - 1e-12).sum(axis=1) + 1) / 200
        np.testing.assert_allclose(ours.p_sim, tie_aware, atol=1e-12)
        assert np.mean(np.abs(ours.p_sim - expect) < 1e-12) > 0.8  # most cells have no mirror tie
    else:
        np.testing.assert_allclose(ours.p_sim, expect, atol=1e-12)
    if alternative == "folded":  # what G_Local itself reports
        np.testing.assert_allclose(ours.p_sim, ref.p_sim, atol=1e-6)  # esda stores float32


def test_grouped_engine_agrees_with_per_cell_within_mc_error(patch):
    cells, y = patch
    w = kring_weights(cells, 1)
    P = 2999
    grouped = GiStar(y, w, permutations=P, seed=3, alternative="two-sided")
    per_cell = GiStar(y, w, permutations=P, draws=draw_block(w.n - 1, 6, P, 4), alternative="two-sided")
    p = (grouped.p_sim + per_cell.p_sim) / 2
    tol = 5 * np.sqrt(2) * mc_se(p, P, "two-sided") + 2 / (P + 1)  # two-sided: Var p = p(2-p)/P
    assert np.all(np.abs(grouped.p_sim - per_cell.p_sim) <= tol)
    # moments of the simulations agree too (mean of P draws: MC sd = sd / sqrt(P))
    assert np.all(np.abs(grouped.EG_sim - per_cell.EG_sim) <= 5 * np.sqrt(2 / P) * grouped.seG_sim + 1e-15)
    # same seed, same answer; different seed, different draws
    again = GiStar(y, w, permutations=P, seed=3)
    np.testing.assert_array_equal(again.p_sim, grouped.p_sim)
    assert not np.array_equal(GiStar(y, w, permutations=P, seed=5).p_sim, grouped.p_sim)


def test_binary_fast_path_equals_general_gather(patch):
    """The difference-array sums for binary weights equal the plain gather
    (used for any other weights): scaling all weights by 2 doubles R and
    leaves every p-value unchanged, for every rule."""
    cells, y = patch
    W = kring_weights(cells, 1).sparse
    for alt in ALTERNATIVES:
        a = crand(y, W, permutations=299, seed=8, alternative=alt, keep=True)
        b = crand(y, W * 2.0, permutations=299, seed=8, alternative=alt, keep=True)
        np.testing.assert_array_equal(a.p_sim, b.p_sim)
        np.testing.assert_array_equal(2 * a.sims, b.sims)
    # and the grouped sims are what a direct per-cell draw from "y without y_i" gives
    ids = draw_block(len(y) - 1, 6, 299, 8)
    ys = np.sort(y)
    i = int(np.argmax(y))
    c = W.indptr[i + 1] - W.indptr[i]
    k = np.searchsorted(ys, y[i])
    pool = np.delete(ys, k)
    np.testing.assert_array_equal(a.sims[i], pool[ids[:, :c]].sum(axis=1))


def test_draw_block_rows_are_without_replacement():
    ids = draw_block(10, 6, 5000, 1)
    assert ids.min() >= 0 and ids.max() <= 9
    assert all(len(set(r)) == 6 for r in ids)
    # uniform over positions: each value appears ~ 5000*6/10 times
    counts = np.bincount(ids.ravel(), minlength=10)
    assert np.all(np.abs(counts - 3000) < 5 * np.sqrt(3000))


def test_significance_rules_match_esda_on_random_sims():
    from esda.significance import calculate_significance

    rng = np.random.default_rng(0)
    sims = np.sort(rng.poisson(5, size=(50, 99)).astype(float), axis=1)
    obs = rng.poisson(5, size=50).astype(float)
    for alt, name in ESDA_NAME.items():
        ours = significance(sims, obs, alt)
        ref = np.minimum(calculate_significance(obs, sims, alternative=name), 1.0)
        np.testing.assert_allclose(ours, ref, atol=1e-12, err_msg=alt)
        # the shared-row form (one sorted row for many observations) agrees
        one = significance(sims[:1], obs, alt)
        ref1 = calculate_significance(obs, np.repeat(sims[:1], 50, axis=0), alternative=name)
        np.testing.assert_allclose(one, np.minimum(ref1, 1.0), atol=1e-12, err_msg=alt)
    # by hand, draws 0..98: above all -> 2 * (0 + 1) / 100; obs 10 -> #<=10 is 11 -> 2 * 12 / 100.
    # The folded (esda classic) rule folds #>=10 = 89 to P - 89 = 10 (ties not counted low): 11 / 100.
    row = np.arange(99.0)[None, :]
    np.testing.assert_allclose(
        significance(row, np.array([500.0, -1.0, 49.0, 10.0]), "two-sided"), [0.02, 0.02, 1.0, 0.24]
    )
    np.testing.assert_allclose(significance(row, np.array([10.0]), "directed"), [0.11])


def test_gistar_bad_input():
    w = kring_weights(np.array(sorted(h3.api.basic_int.grid_disk(CENTRE, 1)), dtype=np.int64))
    with pytest.raises(ValueError, match="no incidents"):
        GiStar(np.zeros(7), w)
    with pytest.raises(ValueError, match="align"):
        GiStar(np.ones(5), w)
    with pytest.raises(ValueError, match="alternative"):
        GiStar(np.arange(7.0), w, alternative="both")
    # a matrix that already carries the star self-weight gives the same statistic
    import scipy.sparse as sp

    a = GiStar(np.arange(7.0), w.sparse + sp.identity(7, format="csr"), permutations=0)
    np.testing.assert_array_equal(a.Zs, GiStar(np.arange(7.0), w, permutations=0).Zs)


# ------------------------------------------------------------------ Local Moran
def test_local_moran_equals_esda(patch):
    from esda.crand import vec_permutations

    cells, y = patch
    w = kring_weights(cells, 1)
    ids = vec_permutations(6, w.n, 199, 5)
    ref = esda.Moran_Local(y, w.to_libpysal(), transformation="r", permutations=199, seed=5, n_jobs=1)
    ours = LocalMoran(y, w, permutations=199, draws=ids, alternative="directed")
    np.testing.assert_allclose(ours.Is, ref.Is, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ours.q, ref.q)
    np.testing.assert_allclose(ours.EI, ref.EI, rtol=1e-12)
    np.testing.assert_allclose(ours.VI, ref.VI, rtol=1e-10)
    np.testing.assert_allclose(ours.EI_sim, ref.EI_sim, rtol=1e-9, atol=1e-12)
    # esda compares floating-point I values, so a simulated I equal to the
    # observed one can land an ulp below it; we compare exact integer
    # neighbour sums. esda's own simulations with ties counted as ties give
    # exactly our p-values.
    sim = ref.sim.T  # (n, P)
    tol = 1e-9 * np.abs(ref.Is)[:, None] + 1e-12
    larger = (sim >= ref.Is[:, None] - tol).sum(axis=1)
    larger = np.where(199 - larger < larger, 199 - larger, larger)
    np.testing.assert_allclose(ours.p_sim, (larger + 1) / 200, atol=1e-12)
    assert np.mean(np.abs(ours.p_sim - ref.p_sim) < 1e-12) > 0.5
    labels = ours.cluster_labels(ours.p_sim, 0.05)
    assert set(labels) <= {"HH", "LH", "LL", "HL", "ns"}
    assert (labels[ours.p_sim <= 0.05] == ours.labels[ours.p_sim <= 0.05]).all()


# ------------------------------------------------------------------ FDR
def test_bh_hand_worked_example():
    # m = 8; p*m/k = .008 .032 .104 .082 .0672 .08 .084571 .205; running min from the right
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.060, 0.074, 0.205])
    q = bh_adjust(p)
    np.testing.assert_allclose(q, [0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.074 * 8 / 7, 0.205], rtol=1e-12)
    assert (q <= 0.05).sum() == 2 and (q <= 0.10).sum() == 7
    assert bh_cutoff(p, 0.05) == 0.008
    z = np.array([4.0, -3.0, 2.0, 2.0, -2.0, 1.9, 1.8, 1.2])
    np.testing.assert_array_equal(confidence_bins(z, p), [3, -2, 1, 1, -1, 1, 1, 0])
    np.testing.assert_array_equal(confidence_bins(z, p, fdr=False), [3, -3, 2, 2, -2, 1, 1, 0])
    # shuffled order gives the same adjusted values per hypothesis
    perm = np.random.default_rng(1).permutation(8)
    np.testing.assert_allclose(bh_adjust(p[perm]), q[perm])
    with pytest.raises(ValueError):
        bh_adjust([0.5, 1.5])


def test_bh_matches_statsmodels_and_esda():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(size=900), rng.beta(0.3, 30, size=100)])
    rng.shuffle(p)
    for alpha in (0.01, 0.05, 0.10):
        reject, corrected, *_ = multipletests(p, alpha=alpha, method="fdr_bh")
        np.testing.assert_allclose(bh_adjust(p), corrected, rtol=1e-12)
        np.testing.assert_array_equal(bh_adjust(p) <= alpha, reject)
        cut = esda.fdr(p, alpha)
        np.testing.assert_array_equal(bh_adjust(p) <= alpha, p < cut)
        assert reject.sum() > 0


# ------------------------------------------------------------------ KDE
def _brute_kde(cells, lon, lat, h, kind):
    from rtcc_geo.hotspots.kde import _projector

    clat, clon = grid.cell_centres(cells)
    t = _projector(float(clat.mean()), float(clon.mean()))
    cx, cy = t.transform(clon, clat)
    px, py = t.transform(lon, lat)
    from scipy.spatial.distance import cdist

    d = cdist(np.column_stack([cx, cy]), np.column_stack([px, py]))
    if kind == "quartic":
        k = np.where(d < h, 3 / (np.pi * h * h) * (1 - (d / h) ** 2) ** 2, 0.0)
    else:
        k = np.exp(-0.5 * (d / h) ** 2) / (2 * np.pi * h * h) * (d <= 4 * h)
        # independent check of the normalisation: the 2-D standard normal pdf
        from scipy.stats import multivariate_normal

        u = np.column_stack([np.zeros(3), np.array([0.0, 0.5, 1.3])])
        np.testing.assert_allclose(
            multivariate_normal(mean=[0, 0]).pdf(u) / h**2, np.exp(-0.5 * (u[:, 1]) ** 2) / (2 * np.pi * h * h)
        )
    return k.sum(axis=1) * 1e6


@pytest.mark.parametrize("kind", ["quartic", "gaussian"])
def test_kde_equals_direct_evaluation(patch, kind):
    cells, _ = patch
    rng = np.random.default_rng(9)
    lat0, lon0 = h3.api.basic_int.cell_to_latlng(int(CENTRE))
    lat = lat0 + rng.normal(0, 0.006, 800)
    lon = lon0 + rng.normal(0, 0.008, 800)
    lat[:200] = lat[0]  # repeated block geocodes are merged internally
    lon[:200] = lon[0]
    r = kde_cells(cells, lon, lat, kind, bandwidth_m=450.0)
    np.testing.assert_allclose(r.density, _brute_kde(cells, lon, lat, 450.0, kind), rtol=1e-9, atol=1e-9)
    assert r.bandwidth_rule == "user"
    # default bandwidth: ArcGIS's rule, by hand
    d = kde_cells(cells, lon, lat, kind)
    from rtcc_geo.hotspots.kde import _projector

    px, py = _projector(
        float(np.mean(grid.cell_centres(cells)[0])), float(np.mean(grid.cell_centres(cells)[1]))
    ).transform(lon, lat)
    xy = np.column_stack([px, py])
    dist = np.hypot(*(xy - xy.mean(axis=0)).T)
    sd = np.sqrt((dist**2).mean())
    h = 0.9 * min(sd, np.sqrt(1 / np.log(2)) * np.median(dist)) * 800**-0.2
    assert d.bandwidth_m == pytest.approx(h, rel=0.01)  # weighted vs plain median of 800 points
    assert d.bandwidth_rule == "default"


def test_kernels_integrate_to_one():
    h = 300.0
    r = np.linspace(0, 5 * h, 200001)
    for kind in ("quartic", "gaussian"):
        mass = np.trapezoid(kernel(r, h, kind) * 2 * np.pi * r, r)
        assert mass == pytest.approx(1.0, abs=5e-4)


# ------------------------------------------------------------------ concentration
def test_concentration_hand_checked():
    counts = pd.Series([10, 5, 3, 1, 1, 0, 0, 0, 0, 0], index=list("abcdefghij"))
    # ascending: 0,0,0,0,0,1,1,3,5,10; sum i*x = 6+7+24+45+100 = 182; G = 2*182/(10*20) - 11/10
    assert conc.gini(counts) == pytest.approx(0.72)
    # the mean-absolute-difference form gives the same: sum|xi-xj| / (2 n^2 mean)
    x = counts.to_numpy(float)
    assert conc.gini(counts) == pytest.approx(np.abs(x[:, None] - x[None, :]).sum() / (2 * 100 * 2.0))
    assert conc.top_share(counts, 0.05) == 0.5  # ceil(0.5) = 1 unit: 10 of 20
    assert conc.top_share(counts, 0.20) == 0.75  # 2 units: 15 of 20
    assert conc.top_share(counts, 0.25) == 0.9  # ceil(2.5) = 3 units: 18 of 20
    lz = conc.lorenz(counts)
    np.testing.assert_allclose(lz.share_incidents[:6], [0, 0.5, 0.75, 0.9, 0.95, 1.0])
    np.testing.assert_allclose(lz.share_units[:3], [0, 0.1, 0.2])
    assert conc.units_for_share(counts, 0.5) == 1 and conc.units_for_share(counts, 0.9) == 3
    pf = conc.power_few(counts, 0.3)
    assert list(pf.unit) == ["a", "b", "c"] and list(pf["count"]) == [10, 5, 3]
    np.testing.assert_allclose(pf.cum_share, [0.5, 0.75, 0.9])
    # ties at the cut are broken by unit id
    tied = pd.Series([2, 2, 2, 0], index=["z", "y", "x", "w"])
    assert list(conc.power_few(tied, 0.5).unit) == ["x", "y"]
    assert conc.gini([4, 4, 4, 4]) == 0.0
    assert conc.gini([0, 0, 0, 9]) == pytest.approx(3 / 4)  # (n-1)/n
    with pytest.raises(ValueError):
        conc.gini([0, 0])


# ------------------------------------------------------------------ scale
def test_global_moran_equals_esda(patch):
    cells, y = patch
    for k in (1, 3):
        w = kring_weights(cells, k)
        ours = global_moran(y, w)
        ref = esda.Moran(y, w.to_libpysal(), transformation="r", permutations=0)
        assert ours.I == pytest.approx(ref.I, rel=1e-12)
        assert ours.z_norm == pytest.approx(ref.z_norm, rel=1e-9)
        assert ours.z_rand == pytest.approx(ref.z_rand, rel=1e-9)


def test_choose_scale_rules():
    t = pd.DataFrame({"res": 9, "k": [1, 2, 3, 4, 5], "z": [3.0, 5.0, 4.0, 6.0, 2.0]})
    c = choose_scale(t)
    assert (c.k, c.rule) == (2, "first_peak") and "first peaks" in c.reason
    rising = t.assign(z=[2.0, 3.0, 4.0, 5.0, 6.0])
    assert (choose_scale(rising).k, choose_scale(rising).rule) == (5, "max_z")
    c = choose_scale(rising, fallback_k=3)
    assert (c.k, c.rule) == (3, "knn_fallback") and "no first peak" in c.reason
    flat = t.assign(z=[0.5, 1.0, 0.2, 1.5, 0.1])  # a peak, but not significant
    c = choose_scale(flat)
    assert (c.k, c.rule) == (1, "no_clustering")
    # Esri's K = min(30, max(3, 5 % of n)) neighbours; a k-ring holds 3k(k+1)
    assert knn_fallback_k(20) == 1 and knn_fallback_k(300) == 2 and knn_fallback_k(5000) == 3


def test_api_refuses_mixed_cities(tmp_path):
    from rtcc_geo.hotspots import hotspots
    from rtcc_geo.store import open_store

    store = open_store(store_dir=tmp_path / "s")
    store.register_source("philadelphia", "America/New_York")
    store.register_source("vancouver", "America/Vancouver")
    with pytest.raises(ValueError, match="several sources"):
        hotspots(store, "gistar", 9)
    with pytest.raises(ValueError, match="method"):
        hotspots(store, "getis", 9)


def test_two_sided_pseudo_p_variance_is_p_2_minus_p(patch):
    """The documented Monte-Carlo rule for the default (two-sided) p: across
    independent seeds each cell's p_sim varies as p(2-p)/P, not p(1-p)/P."""
    cells, y = patch
    w = kring_weights(cells, 1)
    P, seeds = 199, 60
    ps = np.array([GiStar(y, w, permutations=P, seed=s, alternative="two-sided").p_sim for s in range(seeds)])
    p = ps.mean(axis=0)
    keep = (p > 0.1) & (p < 0.6)  # away from the floor and from the clip at 1
    assert keep.sum() > 30
    var = ps[:, keep].var(axis=0, ddof=1)
    ratio_two = var / mc_se(p[keep], P, "two-sided") ** 2
    ratio_one = var / mc_se(p[keep], P, "greater") ** 2
    # Measured 0.80 here: ties on counts (min of two overlapping tails) make the
    # spread a little smaller than p(2-p)/P, so the tolerance built on it is safe.
    assert 0.65 < np.median(ratio_two) < 1.25, np.median(ratio_two)
    assert np.median(ratio_one) > 1.5  # the one-tailed formula p(1-p)/P understates it
    assert abs(np.log(np.median(ratio_two))) < abs(np.log(np.median(ratio_one)))
    # the tolerance rule built on it holds for two independent streams
    a, b = ps[0], ps[1]
    tol = 5 * np.sqrt(2) * mc_se((a + b) / 2, P, "two-sided") + 2 / (P + 1)
    assert np.all(np.abs(a - b) <= tol)


def test_defaults_bin_reach_and_warning(patch):
    """One place for the defaults; a permutation run that cannot reach 99 % says so."""
    from rtcc_geo import defaults as D
    from rtcc_geo.hotspots.api import hotspots_from_counts

    assert D.min_pseudo_p(999) == 2 / 1000 and D.min_pseudo_p(999, "greater") == 1 / 1000
    r = D.bin_reach(999, 5000, inference="sim")
    assert (
        r["reachable"] and r["cells_needed"] == 1000 and "--inference norm" in r["message"] and "9,999" in r["message"]
    )
    assert D.bin_reach(99, 10, inference="sim")["reachable"] is False  # 2/100 > 0.01
    assert D.bin_reach(99, 10, inference="norm")["message"] is None
    cells, y = patch
    counts = pd.Series(y, index=cells)
    with pytest.warns(UserWarning, match="99 % bin"):
        g = hotspots_from_counts(counts, 9, permutations=99, inference="sim")
    assert g.attrs["hotspots"]["reach_99"]["reachable"] is False
    assert not (g["bin"].abs() == 3).any()
    g2 = hotspots_from_counts(counts, 9, permutations=0)  # the default: analytic
    assert g2.attrs["hotspots"]["inference"] == D.INFERENCE == "norm"
