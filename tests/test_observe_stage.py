"""The whole observe stage on a small table: columns, metadata, consistency between steps."""
import numpy as np
import pytest

from mocksky.catalogue import StarTable
from mocksky.observe import distance_modulus, observe


def _table(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    R = rng.gamma(2.0, 2.6, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    g = rng.uniform(-1, 6, n)
    return StarTable({
        "x": R * np.cos(phi), "y": R * np.sin(phi), "z": rng.laplace(0, 0.3, n),
        "vx": rng.normal(0, 40, n), "vy": rng.normal(0, 40, n), "vz": rng.normal(0, 20, n),
        "teff": rng.uniform(3500, 7000, n), "logg": rng.uniform(1, 4.5, n),
        "abs_g": g, "abs_bp": g + 0.5, "abs_rp": g - 0.7, "abs_grvs": g - 1.0, "abs_j": g - 1.5, "abs_h": g - 2.0,
        "abs_ks": g - 2.1, "feh": rng.normal(0, 0.2, n), "alpha_fe": rng.normal(0.1, 0.05, n),
    })


def test_observe_stage_default():
    t = observe(_table(), rng=5)
    for c in ("ra", "dec", "l", "b", "distance", "parallax_true", "A0", "ebv", "a_g", "a_ks", "a_grvs",
              "phot_g_mean_mag_true", "grvs_mag_true", "k_m_true", "parallax", "parallax_error", "pmra", "pmdec",
              "phot_bp_mean_mag", "radial_velocity", "grvs_mag", "h_m", "vphi"):
        assert c in t, c
    assert set(t.meta) >= {"solar_parameters", "dust_map", "extinction", "error_models"}
    assert [m["name"] for m in t.meta["error_models"]] == ["gaia_dr3", "exact"]
    # apparent = absolute + distance modulus + extinction; extinctions ordered by wavelength
    np.testing.assert_allclose(t["phot_g_mean_mag_true"], t["abs_g"] + distance_modulus(t["distance"]) + t["a_g"])
    assert np.all(t["a_bp"] >= t["a_g"]) and np.all(t["a_g"] >= t["a_ks"])
    ok = np.isfinite(t["parallax_error"])
    assert ok.mean() > 0.2
    np.testing.assert_array_equal(ok, t["phot_g_mean_mag_true"] <= 21)  # Gaia astrometry to G = 21
    np.testing.assert_array_equal(t["h_m"], t["h_m_true"])


def test_observe_stage_dust_free_and_reproducible():
    t1 = observe(_table(500, 1), dust="none", errors=("gaia_dr4", "apogee_bv24"), rng=7)
    assert np.all(t1["a_g"] == 0) and np.all(t1["A0"] == 0)
    np.testing.assert_allclose(t1["phot_g_mean_mag_true"], t1["abs_g"] + distance_modulus(t1["distance"]))
    assert "feh_obs" in t1 and "distance_error" in t1
    t2 = observe(_table(500, 1), dust="none", errors=("gaia_dr4", "apogee_bv24"), rng=7)
    np.testing.assert_array_equal(t1["feh_obs"], t2["feh_obs"])
    t3 = observe(_table(500, 1), dust="none", errors=(), solar="bv23")
    assert "parallax" not in t3 and t3.meta["solar_parameters"]["name"] == "bv23"
    with pytest.raises(KeyError, match="allowed"):
        observe(_table(10), dust="bayestar")
