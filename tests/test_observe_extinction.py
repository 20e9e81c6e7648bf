"""Band extinctions from the dustapprox polynomials: evaluation against the original ECSV files, physics, ranges."""
import numpy as np
import pytest

from mocksky.catalogue import StarTable
from mocksky.observe import BANDS, ExtinctionModel, add_apparent_magnitudes, add_band_extinctions, distance_modulus

PASSBANDS = {"g": "GAIA_GAIA3.G", "bp": "GAIA_GAIA3.Gbp", "rp": "GAIA_GAIA3.Grp",
             "j": "2MASS_2MASS.J", "h": "2MASS_2MASS.H", "ks": "2MASS_2MASS.Ks"}
FILES = {"F99": ("f99/kurucz/oct2025_a0r0_gaia_dr3_kurucz_F99_teff_A0_R0.ecsv",
                 "f99/kurucz/oct2025_a0r0_twomass_kurucz_F99_teff_A0_R0.ecsv"),
         "G23": ("G23/kurucz/oct2025_a0r0_gaia_dr3_kurucz_G23_teff_A0_R0.ecsv",
                 "G23/kurucz/oct2025_a0r0_twomass_kurucz_G23_teff_A0_R0.ecsv")}


def _reference_k(shared_data, law, band, a0, r0, teff):
    """k = A/A0 straight from the dustapprox ECSV file: sum over its monomial columns, written independently."""
    import warnings

    from astropy.table import Table

    for f in FILES[law]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 'object' datatype of the passband column
            t = Table.read(shared_data / "extinction" / "polynomial" / f, format="ascii.ecsv")
        rows = [r for r in t if r["passband"] == PASSBANDS[band]]
        if rows:
            row = rows[0]
            break
    x = {"A0": a0, "R0": r0, "teffnorm": teff / 5040.0}
    total = 0.0
    for name in t.colnames:
        if name in ("passband", "mae", "rmse", "mean_residuals", "std_residuals"):
            continue
        term = row[name] * np.ones_like(a0)
        if name != "1":
            for factor in name.split(" "):
                var, _, p = factor.partition("^")
                term = term * x[var] ** (int(p) if p else 1)
        total = total + term
    return total


@pytest.mark.parametrize("law", ["F99", "G23"])
@pytest.mark.parametrize("r0", [3.1, 2.5, 5.0])
def test_polynomials_match_dustapprox_files(shared_data, law, r0):
    rng = np.random.default_rng(1)
    a0 = rng.uniform(0.01, 20, 500)
    teff = 10 ** rng.uniform(np.log10(3500), np.log10(50000), 500)
    m = ExtinctionModel(law, R0=r0)
    ext = m.extinctions(a0, teff)
    for band in PASSBANDS:
        k_ref = _reference_k(shared_data, law, band, a0, r0, teff)
        np.testing.assert_allclose(ext[band] / a0, k_ref, rtol=1e-12, atol=1e-13)


def test_physical_ordering_and_grvs():
    m = ExtinctionModel()
    teff = np.array([3500.0, 4500.0, 5800.0, 8000.0, 15000.0])
    ext = m.extinctions(0.5, teff)
    k = {b: ext[b] / 0.5 for b in BANDS}
    # A_BP > A_G > A_RP > A_RVS > A_J > A_H > A_Ks (wavelength ordering), all positive
    for a, b in zip(("bp", "g", "rp", "grvs", "j", "h"), ("g", "rp", "grvs", "j", "h", "ks")):
        assert np.all(k[a] > k[b]), (a, b)
    assert np.all(k["ks"] > 0)
    # classic values at low extinction for a solar-type star (F99, R0 = 3.1; dustapprox/Fitzpatrick numbers)
    assert 0.85 < k["g"][2] < 0.95 and 1.05 < k["bp"][2] < 1.2 and 0.6 < k["rp"][2] < 0.7
    assert 0.27 < k["j"][2] < 0.30 and 0.17 < k["h"][2] < 0.19 and 0.11 < k["ks"][2] < 0.13
    # G_RVS (narrow band at ~860 nm): F99 monochromatic A(860 nm)/A(550 nm) = 0.50 +- 0.02, nearly Teff-independent
    assert np.all(np.abs(k["grvs"] - 0.50) < 0.02) and np.ptp(k["grvs"]) < 0.01
    # broad bands depend on Teff (G more than RP)
    assert np.ptp(k["g"]) > 0.05


def test_grvs_against_monochromatic_law():
    """G_RVS k at small A0 equals the F99 curve averaged over the RVS band (~ its value at 860 nm)."""
    ext_mod = pytest.importorskip("dust_extinction.parameter_averages")
    import astropy.units as u

    f99 = ext_mod.F99(Rv=3.1)
    ratio = float(f99(860 * u.nm) / f99(550 * u.nm))
    k = ExtinctionModel("F99").k("grvs", 0.01, 5000.0)
    assert abs(float(k) - ratio) < 5e-3


def test_ranges_clipping_and_bad_input():
    m = ExtinctionModel()
    assert m.teff_range == (3500.0, 50000.0) and m.a0_range[1] == 20.0
    # Teff below the grid uses the 3500 K coefficients; A0 above the grid scales linearly
    np.testing.assert_allclose(m.extinction("g", 1.0, 2500.0), m.extinction("g", 1.0, 3500.0))
    np.testing.assert_allclose(m.extinction("g", 40.0, 5000.0), 2 * m.extinction("g", 20.0, 5000.0))
    assert m.extinction("g", 0.0, 5000.0) == 0.0
    np.testing.assert_allclose(m.extinction("ks", 0.001, 5000.0), 0.1 * m.extinction("ks", 0.01, 5000.0))
    out = m.extinctions([np.nan, 1.0], [5000.0, np.nan])
    assert all(np.isnan(v).all() for v in out.values())
    assert m.extinctions(np.ones((2, 3)), 5000.0)["g"].shape == (2, 3)
    with pytest.raises(KeyError, match="allowed"):
        m.extinctions(1.0, 5000.0, ["u"])
    with pytest.raises(KeyError, match=r"allowed: \['F99', 'G23'\]"):
        ExtinctionModel("CCM89")
    with pytest.raises(ValueError, match="R0 = 6.0 outside"):
        ExtinctionModel("F99", R0=6.0)
    assert ExtinctionModel("g23", R0=2.3).law == "G23"


def test_table_functions():
    n = 4
    t = StarTable({"A0": np.array([0.0, 0.5, 2.0, np.nan]), "teff": np.full(n, 5000.0),
                   "distance": np.array([0.01, 1.0, 10.0, 2.0]), "abs_g": np.full(n, 1.0),
                   "abs_ks": np.full(n, -1.0)})
    add_band_extinctions(t)
    for b in BANDS:
        assert f"a_{b}" in t
    assert t.meta["extinction"]["law"] == "F99"
    add_apparent_magnitudes(t)
    np.testing.assert_allclose(t["phot_g_mean_mag_true"][:3], 1.0 + np.array([0.0, 10.0, 15.0]) + t["a_g"][:3])
    np.testing.assert_allclose(t["k_m_true"][1], -1.0 + 10.0 + t["a_ks"][1])
    assert "phot_bp_mean_mag_true" not in t and np.isnan(t["phot_g_mean_mag_true"][3])
    with pytest.raises(ValueError, match=r"abs_bp"):
        add_apparent_magnitudes(t, bands=["bp"])
    with pytest.raises(ValueError, match=r"teff"):
        add_band_extinctions(StarTable({"A0": [1.0]}))
    assert np.isnan(distance_modulus(-1.0)) and distance_modulus(0.01) == pytest.approx(0.0)
