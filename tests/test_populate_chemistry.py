"""Chemistry from actions: BV23 (seed eqs. 18-21, Table 6) and BV24 (chemistry_params.csv)."""
import numpy as np
import pytest

from mocksky.populate import ChemistryBV24, load_populations, read_bv24_params, salaris_mh

# BV23 Table 6: x_sun, Vc dx/dJphi [dex/kpc], y, sigma_x, sigma_y, theta [deg]
TABLE6 = {
    "young disk": (0.2, -0.07, 0.0, 0.1, 0.03, 2),
    "middle disk": (0.0, -0.07, 0.03, 0.1, 0.03, 2),
    "old disk": (-0.2, -0.07, 0.06, 0.1, 0.05, 2),
    "highA disk": (-0.5, 0.0, 0.2, 0.2, 0.03, 7),
    "stellar halo": (-1.0, 0.0, 0.2, 0.3, 0.1, 3),
    "bulge": (-0.5, 0.0, 0.2, 0.2, 0.02, 3),
}


@pytest.fixture(scope="module")
def bv23():
    return load_populations("bv23")


def test_salaris():
    assert salaris_mh(-0.3, 0.0) == pytest.approx(-0.3)
    assert salaris_mh(0.0, 0.4) == pytest.approx(np.log10(0.638 * 10 ** 0.4 + 0.362))
    assert salaris_mh(0.0, 0.4) == pytest.approx(0.2933, abs=1e-4)


@pytest.mark.parametrize("name", list(TABLE6))
def test_bv23_table6_means_and_widths(bv23, name):
    """Rotating the drawn ([Fe/H], [a/Fe]) by theta and removing the Jphi gradient recovers Table 6."""
    x_sun, vc_grad, y0, sx, sy, th = TABLE6[name]
    chem = bv23[name].chemistry
    rng = np.random.default_rng(11)
    n = 200000
    jphi_sun, vc = 1953.4, 236.2
    jz = np.full(n, 1000.0)  # thick disc: P(high alpha) = 1
    act = np.column_stack([rng.exponential(20, n), jz, rng.normal(jphi_sun, 300, n)])
    d = chem.sample(act, rng=12)
    c, s = np.cos(np.deg2rad(th)), np.sin(np.deg2rad(th))
    x = c * d["feh"] - s * d["alpha_fe"] - vc_grad / vc * (act[:, 2] - jphi_sun)
    y = s * d["feh"] + c * d["alpha_fe"]
    for v, mu, sig in ((x, x_sun, sx), (y, y0, sy)):
        assert abs(v.mean() - mu) < 4 * sig / np.sqrt(n), (name, v.mean(), mu)
        assert abs(v.std() - sig) < 4 * sig / np.sqrt(2 * n), (name, v.std(), sig)
    assert abs(np.corrcoef(x, y)[0, 1]) < 4 / np.sqrt(n)
    np.testing.assert_allclose(d["mh"], salaris_mh(d["feh"], d["alpha_fe"]))


def test_bv23_metallicity_gradient(bv23):
    """d[Fe/H]/dR ~ Vc dx/dJphi = -0.07 dex/kpc: mean x falls by 0.07 per Vc kpc km/s of Jphi."""
    chem = bv23["old disk"].chemistry
    n = 100000
    out = []
    for jphi in (1953.4, 1953.4 + 236.2):
        d = chem.sample(np.column_stack([np.zeros(n), np.zeros(n), np.full(n, jphi)]), rng=5)
        out.append(d["feh"].mean())
    assert out[1] - out[0] == pytest.approx(-0.07 * np.cos(np.deg2rad(2)), abs=4e-3)


def test_bv23_high_alpha_fraction_follows_eq21(bv23):
    chem = bv23["highA disk"].chemistry
    rng = np.random.default_rng(8)
    n = 400000
    jz = rng.uniform(0, 150, n)
    act = np.column_stack([rng.exponential(50, n), jz, rng.normal(1900, 300, n)])
    d = chem.sample(act, rng=9)
    edges = np.linspace(0, 150, 16)
    k = np.digitize(jz, edges) - 1
    for b in range(15):
        m = k == b
        jm = jz[m]
        p_exp = np.mean(0.5 * (1 + np.tanh((jm - 50.0) / 15.0)))
        frac = d["high_alpha"][m].mean()
        assert abs(frac - p_exp) < 4 * np.sqrt(max(p_exp * (1 - p_exp), 1e-4) / m.sum()) + 1e-3, (b, frac, p_exp)
    # rising with Jz: monotone binned fractions
    fr = [d["high_alpha"][k == b].mean() for b in range(15)]
    assert np.all(np.diff(fr) > -0.01) and fr[0] < 0.01 and fr[-1] > 0.99
    # normal-alpha members have the old disc's chemistry: mean y = 0.06, theta = 2 deg
    lo = ~d["high_alpha"]
    c, s = np.cos(np.deg2rad(2)), np.sin(np.deg2rad(2))
    assert (s * d["feh"][lo] + c * d["alpha_fe"][lo]).mean() == pytest.approx(0.06, abs=2e-3)
    hi = d["high_alpha"]
    c, s = np.cos(np.deg2rad(7)), np.sin(np.deg2rad(7))
    assert (s * d["feh"][hi] + c * d["alpha_fe"][hi]).mean() == pytest.approx(0.2, abs=1e-3)


def test_bv24_formulas():
    rows = read_bv24_params()
    assert len(rows) == 6 and rows[3]["component"] == "high-alpha disk"
    r = rows[0]
    chem = ChemistryBV24(r, 1992.0)
    act = np.array([[10.0, 5.0, 2100.0], [0.0, 0.0, 1992.0]])
    d = chem.draw(act, np.zeros(2), np.zeros(2))
    f0 = r["FeH_bar"] + r["dFeH_dJr"] * 10 + r["dFeH_dJz"] * 5 + r["dFeH_dJphi"] * 108
    m0 = r["MgFe_bar"] + r["dMgFe_dJr"] * 10 + r["dMgFe_dJz"] * 5 + r["dMgFe_dJphi"] * 108
    np.testing.assert_allclose(d["feh"], [f0, r["FeH_bar"]], atol=1e-12)
    np.testing.assert_allclose(d["alpha_fe"], [m0, r["MgFe_bar"]], atol=1e-12)
    # covariance: R diag(sx^2, sy^2) R^T with [Fe/H] = F0 + x c - y s, [Mg/Fe] = M0 + x s + y c
    n = 400000
    d = chem.sample(np.tile(act[1], (n, 1)), rng=3)
    th = np.deg2rad(r["theta_deg"])
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    cov = R @ np.diag([r["sigma_x"] ** 2, r["sigma_y"] ** 2]) @ R.T
    np.testing.assert_allclose(np.cov(d["feh"], d["alpha_fe"]), cov, rtol=0.02, atol=2e-5)


def test_bv24_spec_loads_every_component():
    pops = load_populations("bv24_m0")
    assert set(pops) == {"young disk", "middle disk", "old disk", "highA disk", "stellar halo", "bulge"}
    assert pops.non_stellar == ("dark halo",) and not pops.is_stellar("dark halo")
    assert pops["bulge"].chemistry.row["FeH_bar"] == pytest.approx(0.409054)
    with pytest.raises(KeyError, match="stellar"):
        pops.is_stellar("gas disk")
