"""Importance-weighted DF samples (mocksky.model.sampling.weighted): unbiased masses and profiles, against the
quadrature of the same DF (the helpers of tests/test_sampling.py) and against rejection sampling."""
import numpy as np
import pytest

from mocksky.model.actions import SphericalActionFinder
from mocksky.model.df import DoublePowerLaw
from mocksky.model.potential import Isochrone
from mocksky.model.sampling import Sphere, sample_particles
from mocksky.model.sampling.weighted import sample_weighted
from test_sampling import sph_moments

NSIG = 4.0


@pytest.fixture(scope="module")
def sph_model():
    pot = Isochrone(1e11, 2.0)
    df = DoublePowerLaw(5e10, J0=300.0, slopeIn=0.0, slopeOut=6.0, name="dpl")
    return pot, df, SphericalActionFinder(pot)


def test_weighted_region_and_selection(sph_model):
    """A peaked selection inside a 3 kpc sphere at R0: the weighted masses sum to the quadrature of f S over the
    sphere, their radial profile follows it, and the ESS is far above what rejection accepts from the same
    number of proposals."""
    pot, df, fin = sph_model
    d_c, a = 8.27, 3.0
    region = Sphere((d_c, 0.0, 0.0), a)

    def selection(posvel):  # strongly peaked at the sphere's centre (like a magnitude limit)
        d2 = np.sum((posvel[:, :3] - [d_c, 0, 0]) ** 2, axis=1)
        return np.exp(-d2 / (2 * 0.5 ** 2))

    p = sample_weighted(pot, df, fin, 40000, region=region, selection=selection, rng=3)
    info = p.meta["weighted"]
    assert np.all(np.linalg.norm(p.xyz - [d_c, 0, 0], axis=1) <= a) and np.all(p.mass > 0)
    assert 30000 < len(p) < 50000 and info["ess"] > 0.2 * len(p)
    # quadrature of rho(r) S over the sphere, by shells about the sphere's centre: S depends on the distance s from
    # the centre only, and the shell s of the sphere lies at r in [d - s, d + s]
    xs, ws = np.polynomial.legendre.leggauss(16)
    xm, wm = np.polynomial.legendre.leggauss(24)
    s_edges = [0.0, 0.5, 1.0, a]
    M_in = {}
    for k in range(3):  # Gauss-Legendre in s on each bin; mu = cos(angle) of the shell point from the centre
        s0, s1 = s_edges[k], s_edges[k + 1]
        M_in[k] = 0.0
        for si, wi in zip(0.5 * (s0 + s1) + 0.5 * (s1 - s0) * xs, 0.5 * (s1 - s0) * ws):
            r = np.sqrt(d_c ** 2 + si ** 2 + 2 * d_c * si * xm)
            rho = sph_moments(pot, df, fin, r, n=32)[:, 0]
            M_in[k] += 2 * np.pi * si ** 2 * np.sum(rho * wm) * np.exp(-si ** 2 / (2 * 0.5 ** 2)) * wi
    M = sum(M_in.values())
    err = M / np.sqrt(info["ess"])
    assert abs(p.mass.sum() - M) < NSIG * err, (p.mass.sum(), M, err)
    dist = np.linalg.norm(p.xyz - [d_c, 0, 0], axis=1)
    for k in range(3):
        m_k = p.mass[(dist >= s_edges[k]) & (dist < s_edges[k + 1])].sum()
        assert abs(m_k - M_in[k]) < NSIG * err + 0.01 * M_in[k], (k, m_k, M_in[k])
    # rejection sampling from the same kind of proposal accepts far fewer points per proposal
    r = sample_particles(pot, df, fin, 2000, region=region, selection=selection, rng=4)
    acc = r.diagnostics[0].acceptance
    assert info["ess"] / info["positions"] > 2 * acc * r.diagnostics[0].region_fraction
    assert p.mass.sum() == pytest.approx(r.diagnostics[0].mass_estimate, rel=5 * r.diagnostics[0].mass_error /
                                         r.diagnostics[0].mass_estimate + 0.01)
    with pytest.raises(ValueError, match="n must be"):
        sample_weighted(pot, df, fin, 0)


def test_rejection_control_keeps_every_point_at_one(sph_model):
    """keep_fraction = 1 keeps every positive weight (c = min w); smaller fractions thin the light proposals and
    keep the estimate: both sampled masses agree within their errors."""
    pot, df, fin = sph_model
    region = Sphere((8.27, 0.0, 0.0), 2.0)
    a = sample_weighted(pot, df, fin, 20000, region=region, rng=7, keep_fraction=1.0)
    b = sample_weighted(pot, df, fin, 20000, region=region, rng=8, keep_fraction=0.3)
    ia, ib = a.meta["weighted"], b.meta["weighted"]
    assert 18000 < ia["points"] < 22000 and 18000 < ib["points"] < 22000
    assert ib["ess"] > ia["ess"]  # thinning the light proposals evens out the weights
    err = np.hypot(a.mass.sum() / np.sqrt(ia["ess"]), b.mass.sum() / np.sqrt(ib["ess"]))
    assert abs(a.mass.sum() - b.mass.sum()) < NSIG * err
    with pytest.raises(ValueError, match="keep_fraction"):
        sample_weighted(pot, df, fin, 10, keep_fraction=0.0)
