"""The per-cell quasi-likelihood with free normalisation, and its value for the published BV24 M0 model."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mocksky.compare import (COMPONENTS, CellGrid, VelocityBins, VelocityHistograms, VelocityScheme, bv23_scheme,
                             compare_histograms, load_bv24, poisson_quasi_lnlike)


@pytest.fixture(scope="module")
def bv24():
    return load_bv24()


def test_matches_poisson_logpmf_with_normalisation_to_data():
    n = np.array([0, 3, 10, 7, 1, 0])
    w = np.array([0.5, 2.0, 9.0, 8.0, 0.0, 0.0])  # any normalisation; two empty model bins
    pf = 1e-3
    r = poisson_quasi_lnlike(n, w, p_floor=pf)
    q = np.maximum(w / w.sum(), pf)
    m = n.sum() * q / q.sum()
    assert r["lnL"] == pytest.approx(stats.poisson.logpmf(n, m).sum(), rel=1e-13)
    assert r["lnL_sat"] == pytest.approx(stats.poisson.logpmf(n, np.where(n > 0, n, 1.0))[n > 0].sum(), rel=1e-13)
    assert r["deviance"] == pytest.approx(2 * (n[n > 0] * np.log(n[n > 0] / m[n > 0])).sum(), rel=1e-12)
    used = (n > 0) | (w > 0)
    assert r["chi2"] == pytest.approx((((n - m) ** 2 / m)[used]).sum(), rel=1e-13)
    assert r["nbins"] == 5 and r["ndof"] == 4 and r["n_obs"] == 21 and not r["model_empty"]
    # free normalisation: scaling the model changes nothing
    r2 = poisson_quasi_lnlike(n, 1234.5 * w, p_floor=pf)
    assert r2["lnL"] == pytest.approx(r["lnL"], rel=1e-13)
    # model equal to the data: lnL = lnL_sat, deviance 0
    r3 = poisson_quasi_lnlike(n, n.astype(float), p_floor=0.0)
    assert r3["deviance"] == pytest.approx(0.0, abs=1e-12)
    # the floor keeps an observed star in an empty model bin finite; without it ln L = -inf
    assert np.isfinite(r["lnL"])
    assert poisson_quasi_lnlike(n, w, p_floor=0.0)["lnL"] == -np.inf


def test_chi2_includes_model_sampling_variance_and_edge_cases():
    n = np.array([[5.0, 10.0, 5.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    w = np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    s2 = np.array([[0.1, 0.2, 0.1], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    r = poisson_quasi_lnlike(n, w, p_floor=1e-6, sumw2=s2)
    m = 20 * w[0] / 4
    assert r["chi2"][0] == pytest.approx(((n[0] - m) ** 2 / (m + 25 * s2[0])).sum(), rel=1e-12)
    assert r["lnL"][1] == 0 and r["ndof"][1] == 0  # no data in the cell: no information
    # an empty model bin carries the variance of one effective model star, N sum(w^2) / W^2
    n1, w1, s21 = np.array([4.0, 6.0, 2.0]), np.array([2.0, 3.0, 0.0]), np.array([0.8, 1.2, 0.0])
    r1 = poisson_quasi_lnlike(n1, w1, p_floor=1e-3, sumw2=s21)
    q = np.maximum(w1 / 5, 1e-3)
    m1 = 12 * q / q.sum()
    var = m1 + np.array([(12 / 5) ** 2 * 0.8, (12 / 5) ** 2 * 1.2, (12 * 2.0 / 25) ** 2])
    assert r1["chi2"] == pytest.approx(((n1 - m1) ** 2 / var).sum(), rel=1e-12)
    assert r["model_empty"][2] and np.isfinite(r["lnL"][2])  # empty model: uniform fractions
    with pytest.raises(ValueError, match="p_floor"):
        poisson_quasi_lnlike(n, w, p_floor=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        poisson_quasi_lnlike(-n, w)


def test_deviance_is_chi2_distributed_for_a_true_model():
    """Data drawn from the model: mean deviance ~ B - 1 and mean chi2 ~ B - 1 (asymptotic, N p_i >~ 10)."""
    rng = np.random.default_rng(4)
    B, N, T = 20, 4000, 400
    p = np.exp(-0.5 * np.linspace(-2, 2, B) ** 2)
    p /= p.sum()
    n = rng.multinomial(N, p, size=T)
    r = poisson_quasi_lnlike(n, np.broadcast_to(p, n.shape), p_floor=0.0)
    # sampling error of the mean of T chi2_19 values: sqrt(2 * 19 / T) ~ 0.31
    assert r["deviance"].mean() == pytest.approx(B - 1, abs=1.3)
    assert r["chi2"].mean() == pytest.approx(B - 1, abs=1.3)
    assert np.all(r["ndof"] == B - 1)


def test_published_m0_against_observed(bv24, tmp_path):
    """The acceptance anchor: the statistic applied to the published M0 counts (p_floor = 1e-5)."""
    c = compare_histograms(bv24.observed, bv24.m0)
    # independent evaluation straight from the CSV with scipy
    f = pd.read_csv(bv24.path)
    tot = 0.0
    for _, g in f.groupby(["cell_index", "component"]):
        n, w = g["count_obs"].to_numpy(float), g["count_model_M0"].to_numpy(float)
        q = np.maximum(w / w.sum(), 1e-5)
        tot += stats.poisson.logpmf(n, n.sum() * q / q.sum()).sum()
    assert c.total_lnL == pytest.approx(tot, rel=1e-12)
    assert c.total_lnL == pytest.approx(-43027.4308, abs=1e-3)  # regression value reported to the lead
    assert len(c.table) == 216 and c.summary()["ndof"] == 10229
    worst = c.worst(5)
    assert list(worst["cell_index"]) == [9, 19, 8, 7, 20]
    # means and dispersions from the histograms; the observed R_mean of the file is carried along
    row = c.table[(c.table["cell_index"] == 7) & (c.table["component"] == "vphi")].iloc[0]
    assert row["mean_obs"] == pytest.approx(226.6, abs=0.1) and row["sigma_obs"] == pytest.approx(27.0, abs=0.1)
    assert row["R_mean_obs"] == pytest.approx(8.44, abs=0.01)
    # a model compared with itself is perfect up to the floor
    self_c = compare_histograms(bv24.observed, bv24.observed, p_floor=0.0)
    assert self_c.total_deviance == pytest.approx(0.0, abs=1e-6)
    assert self_c.total_lnL > c.total_lnL
    # CSV summary round trip
    p = c.to_csv(tmp_path / "summary.csv")
    back = pd.read_csv(p)
    assert back["lnL"].sum() == pytest.approx(c.total_lnL, rel=1e-12)
    assert set(c.by_component().index) == set(COMPONENTS)


def test_scheme_mismatch_is_refused(bv24):
    s = bv23_scheme()
    h = VelocityHistograms(s, {c: np.ones((35, 50)) for c in COMPONENTS})
    with pytest.raises(ValueError, match="differ"):
        compare_histograms(bv24.observed, h)
    g = CellGrid((0.0, 1.0), (0.0, 1.0))
    s1 = VelocityScheme("a", g, {"vR": VelocityBins.uniform([-1.0], [1.0], 4)})
    with pytest.raises(ValueError, match="expected"):
        VelocityHistograms(s1, {"vR": np.ones((1, 5))})


def test_cell_table_carries_barycentres_and_effective_sample(bv24):
    """The per-cell table of a run: the data's and the mock's mean |z| per cell, and the mock's Kish effective
    number of stars, exact for a mock whose every star weighs 0.25 (n_eff = number of stars = n_obs here)."""
    from mocksky.compare.run import bv24_cell_table, cell_effective_stars

    obs = bv24.observed
    counts = {c: 0.25 * obs.counts[c] for c in obs.counts}
    sumw2 = {c: 0.0625 * obs.counts[c] for c in obs.counts}
    model = VelocityHistograms(obs.scheme, counts, sumw2=sumw2, R_mean=obs.R_mean, absz_mean=obs.absz_mean + 0.01)
    neff = cell_effective_stars(model)
    n_obs = obs.counts[COMPONENTS[0]].sum(axis=1)
    np.testing.assert_allclose(neff, np.where(n_obs > 0, n_obs, np.nan), rtol=1e-12)
    tab = bv24_cell_table(compare_histograms(obs, model), compare_histograms(obs, bv24.m0), model)
    assert len(tab) == 72
    np.testing.assert_allclose(tab["n_eff_model"], tab["n_obs"], rtol=1e-12)
    np.testing.assert_allclose(tab["absz_mean_model"] - tab["absz_mean_obs"], 0.01, atol=1e-12)
    assert tab.loc[tab["cell_index"] == 7, "absz_mean_obs"].iloc[0] == pytest.approx(0.171, abs=0.001)
    assert np.all(np.isnan(bv24_cell_table(compare_histograms(obs, model), compare_histograms(obs, bv24.m0))
                           ["n_eff_model"]))
