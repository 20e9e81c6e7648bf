"""IMFs (Kroupa 2001, Chabrier 2003) and age distributions (mocksky.populate.imf, .sfh)."""
import numpy as np
import pytest
from scipy import integrate, stats

from mocksky.populate import AgeDistribution, chabrier2003, kroupa2001, make_age_distribution, make_imf


def _quad(f, a, b, edges=(0.08, 0.5, 1.0)):
    """Adaptive quadrature piece by piece between the IMF's segment edges (smooth pieces)."""
    cuts = np.unique(np.concatenate([[a, b], [e for e in edges if a < e < b]]))
    return sum(integrate.quad(f, x0, x1, epsabs=0, epsrel=1e-12, limit=200)[0] for x0, x1 in zip(cuts[:-1], cuts[1:]))


@pytest.mark.parametrize("imf", [kroupa2001(), chabrier2003(), kroupa2001(0.01, 120.0)])
def test_normalised_to_unit_mass_and_consistent(imf):
    lo, hi, e = imf.m_lower, imf.m_upper, imf.edges
    assert abs(_quad(lambda m: m * imf.pdf(m), lo, hi, e) - 1) < 1e-8
    n_num = _quad(imf.pdf, lo, hi, e)
    assert abs(n_num / imf.stars_per_mass - 1) < 1e-8
    for a, b in ((lo, 0.3), (0.3, 1.7), (2.0, hi)):
        assert abs(imf.number(a, b) / _quad(imf.pdf, a, b, e) - 1) < 1e-8
        assert abs(imf.mass(a, b) / _quad(lambda m: m * imf.pdf(m), a, b, e) - 1) < 1e-8


def test_kroupa_slopes_and_continuity():
    imf = kroupa2001(0.01, 100.0)
    for lo, hi, alpha in ((0.02, 0.05, 0.3), (0.1, 0.4, 1.3), (0.6, 50.0, 2.3)):
        slope = -np.log(imf.pdf(hi) / imf.pdf(lo)) / np.log(hi / lo)
        assert abs(slope - alpha) < 1e-12
    for b in (0.08, 0.5):
        assert abs(imf.pdf(b * (1 - 1e-9)) / imf.pdf(b * (1 + 1e-9)) - 1) < 1e-6
    # mean stellar mass of Kroupa 0.08-100 (analytic piecewise integrals)
    assert 0.55 < kroupa2001().mean_mass < 0.6


def test_chabrier_matches_its_formula():
    imf = chabrier2003()
    m = np.logspace(np.log10(0.081), np.log10(0.99), 200)
    xi_log = 0.158 * np.exp(-(np.log10(m) - np.log10(0.079)) ** 2 / (2 * 0.69 ** 2))
    ref = xi_log / (m * np.log(10))
    ratio = imf.pdf(m) / ref
    assert np.ptp(ratio) / ratio.mean() < 1e-4  # same shape up to the normalisation
    high = np.array([1.5, 10.0])
    r2 = imf.pdf(high) / (0.0443 * high ** -1.3 / (high * np.log(10)))
    np.testing.assert_allclose(r2, ratio.mean(), rtol=2e-3)  # continuous at 1 Msun within the table's rounding


def test_sampling_follows_the_pdf_and_truncation():
    imf = kroupa2001()
    m = imf.sample(200000, rng=1, m_min=0.3, m_max=5.0)
    assert m.min() >= 0.3 and m.max() <= 5.0
    cdf = lambda x: imf.number(0.3, np.clip(x, 0.3, 5.0)) / imf.number(0.3, 5.0)
    assert stats.kstest(m, cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="m_min < m_max"):
        imf.sample(10, m_min=2.0, m_max=1.0)


def test_make_imf_errors():
    with pytest.raises(ValueError, match="allowed"):
        make_imf({"kind": "salpeter"})
    assert make_imf({"kind": "chabrier2003", "m_upper": 50}).m_upper == 50


def test_age_distributions():
    u = make_age_distribution({"kind": "uniform", "min": 2.0, "max": 6.0})
    a = u.sample(200000, rng=2)
    assert a.min() >= 2 and a.max() <= 6 and abs(a.mean() - 4) < 0.01 and abs(u.mean() - 4) < 1e-9
    e = AgeDistribution("exponential", 0.0, 12.0, {"tau": 12.0})
    # psi ~ exp((a - 12)/12): mean = 12 - 12 + 12 / (e - 1) ... closed form
    tau, T = 12.0, 12.0
    mean = T - tau + T / (np.exp(T / tau) - 1)
    assert abs(e.mean() - mean) < 1e-3 and abs(e.sample(200000, rng=3).mean() - mean) < 0.03
    g = make_age_distribution({"kind": "gaussian", "min": 10.0, "max": 13.5, "mean": 11.4, "sigma": 0.7})
    ref = stats.truncnorm((10 - 11.4) / 0.7, (13.5 - 11.4) / 0.7, loc=11.4, scale=0.7)
    assert abs(g.mean() - ref.mean()) < 1e-3
    assert stats.kstest(g.sample(100000, rng=4), ref.cdf).pvalue > 1e-3
    t = make_age_distribution({"kind": "tabulated", "min": 0.0, "max": 10.0, "ages": [0, 10], "weights": [1, 1]})
    assert abs(t.mean() - 5) < 1e-9
    for bad, msg in (({"kind": "uniform", "min": 5, "max": 2}, "min < max"), ({"kind": "weird", "min": 0, "max": 1},
                     "allowed"), ({"kind": "gaussian", "min": 0, "max": 1, "mean": 0.5}, "sigma"),
                     ({"kind": "uniform", "max": 1}, "required")):
        with pytest.raises(ValueError, match=msg):
            make_age_distribution(bad)
