"""Error models: Gaia DR3/DR4/DR5 against PyGaia, ecliptic factors, scatter statistics, APOGEE bins, bad input."""
import numpy as np
import pytest

from mocksky.catalogue import StarTable
from mocksky.observe import (ApogeeErrorModel, ErrorModel, ExactMeasurements, GaiaErrorModel,
                             available_error_models, error_model, magnitude_uncertainty, parallax_uncertainty,
                             proper_motion_uncertainty, radial_velocity_uncertainty)
from mocksky.observe.errors import astrometric_uncertainties, ecliptic_error_factors, ecliptic_sin_latitude

RELEASES = ["dr3", "dr4", "dr5"]


@pytest.fixture(scope="module")
def pygaia_errors():
    pytest.importorskip("pygaia")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pygaia.errors import astrometric, photometric, spectroscopic
    return astrometric, photometric, spectroscopic


@pytest.mark.parametrize("release", RELEASES)
def test_against_pygaia(pygaia_errors, release):
    astrometric, photometric, spectroscopic = pygaia_errors
    rng = np.random.default_rng(4)
    n = 20000
    g = rng.uniform(3, 21, n)
    np.testing.assert_allclose(parallax_uncertainty(g, release),
                               astrometric.parallax_uncertainty(g.copy(), release=release) / 1000, rtol=1e-13)
    pa, pd = proper_motion_uncertainty(g, release)
    ra_ref, de_ref = astrometric.proper_motion_uncertainty(g.copy(), release=release)
    np.testing.assert_allclose(pa, ra_ref / 1000, rtol=1e-13)
    np.testing.assert_allclose(pd, de_ref / 1000, rtol=1e-13)
    m = rng.uniform(4, 21, n)
    for band in ("g", "bp", "rp"):
        np.testing.assert_allclose(magnitude_uncertainty(band, m, release),
                                   photometric.magnitude_uncertainty(band, m, release=release) / 1000, rtol=1e-12)
    grvs = rng.uniform(3, 17, n)
    teff = rng.uniform(2500, 16000, n)
    logg = rng.uniform(-1, 5.5, n)
    ref = spectroscopic.radial_velocity_uncertainty(grvs, teff, logg, release=release)
    mine = radial_velocity_uncertainty(grvs, teff, logg, release)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    np.testing.assert_allclose(mine[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-12)
    assert np.isfinite(ref).sum() > 1000


def test_model_values_and_ranges():
    # end-of-mission DR3 numbers: sigma_plx(G=15) = sqrt(40 + 800 + 30) uas; floor below G = 13; faint end NaN
    assert parallax_uncertainty(15.0, "dr3") == pytest.approx(np.sqrt(870) / 1000)
    assert parallax_uncertainty(5.0, "dr3") == parallax_uncertainty(13.0, "dr3")
    assert np.isnan(parallax_uncertainty(21.5)) and np.isnan(parallax_uncertainty(np.nan))
    assert parallax_uncertainty(15.0, "dr5") < parallax_uncertainty(15.0, "dr4") < parallax_uncertainty(15.0, "dr3")
    # photometry: bright end clamps to G = 4, faint end NaN
    assert magnitude_uncertainty("g", 2.0) == magnitude_uncertainty("g", 4.0)
    assert np.isnan(magnitude_uncertainty("bp", 21.2))
    assert 1e-4 < magnitude_uncertainty("g", 15.0) < 2e-3 < magnitude_uncertainty("g", 20.5) < 0.05
    with pytest.raises(ValueError, match=r"allowed: \['dr3', 'dr4', 'dr5'\]"):
        parallax_uncertainty(15.0, "dr2")
    with pytest.raises(ValueError, match="band"):
        magnitude_uncertainty("u", 15.0)
    with pytest.raises(ValueError, match="shapes differ"):
        radial_velocity_uncertainty([10.0], [5000.0, 4000.0], [4.0])


def test_ecliptic_factors():
    # the ecliptic poles: |sin beta| = 1; the equinox direction: beta = 0
    assert ecliptic_sin_latitude(270.0, 90 - 23.4392911) == pytest.approx(1.0, abs=1e-9)
    assert ecliptic_sin_latitude(0.0, 0.0) == pytest.approx(0.0, abs=1e-15)
    f = ecliptic_error_factors(np.array([0.01, 0.72, 0.99, np.nan]))
    tab = np.loadtxt(__import__("mocksky").data.find("observe/gaia_ecliptic_error_factors.txt"))
    mean_pi, mean_mua = 1.000, 0.556
    assert f["parallax"][0] == pytest.approx(tab[0, 3] / mean_pi)
    assert f["pmra"][1] == pytest.approx(tab[14, 4] / mean_mua)
    assert np.isnan(f["parallax"][3])
    # the sky average of the factors is ~1 (uniform sky = uniform sin beta)
    s = np.linspace(-0.9999, 0.9999, 20001)
    for k in ("parallax", "pmra", "pmdec"):
        assert ecliptic_error_factors(s)[k].mean() == pytest.approx(1.0, abs=0.01)
    # the fused kernel agrees with the step-by-step functions
    rng = np.random.default_rng(0)
    g, ra, dec = rng.uniform(5, 22, 5000), rng.uniform(0, 360, 5000), rng.uniform(-90, 90, 5000)
    p, a, d = astrometric_uncertainties(g, "dr4", ra, dec)
    fac = ecliptic_error_factors(ecliptic_sin_latitude(ra, dec))
    np.testing.assert_allclose(p, parallax_uncertainty(g, "dr4") * fac["parallax"], rtol=1e-14)
    pa, pd = proper_motion_uncertainty(g, "dr4", ecliptic_sin_latitude(ra, dec))
    np.testing.assert_allclose(a, pa, rtol=1e-14)
    np.testing.assert_allclose(d, pd, rtol=1e-14)


def _gaia_table(n, rng):
    g = rng.uniform(8, 22, n)
    return StarTable({
        "ra": rng.uniform(0, 360, n), "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        "parallax_true": rng.uniform(0.05, 2, n), "pmra_true": rng.normal(0, 5, n), "pmdec_true": rng.normal(0, 5, n),
        "radial_velocity_true": rng.normal(0, 50, n), "phot_g_mean_mag_true": g,
        "phot_bp_mean_mag_true": g + 0.5, "phot_rp_mean_mag_true": g - 0.7, "grvs_mag_true": g - 1.0,
        "teff": rng.uniform(3500, 7500, n), "logg": rng.uniform(0.5, 4.8, n),
    })


def test_gaia_model_apply_statistics():
    rng = np.random.default_rng(9)
    t = _gaia_table(200_000, rng)
    model = GaiaErrorModel("dr3")
    assert isinstance(model, ErrorModel)
    model.apply(t, rng=1)
    for obs, true in (("parallax", "parallax_true"), ("pmra", "pmra_true"), ("pmdec", "pmdec_true"),
                      ("phot_g_mean_mag", "phot_g_mean_mag_true"), ("phot_bp_mean_mag", "phot_bp_mean_mag_true"),
                      ("phot_rp_mean_mag", "phot_rp_mean_mag_true"), ("radial_velocity", "radial_velocity_true")):
        s = t[f"{obs}_error"]
        ok = np.isfinite(s)
        assert ok.sum() > 5000
        zed = (t[obs][ok] - t[true][ok]) / s[ok]
        assert abs(zed.mean()) < 0.05 and abs(zed.std() - 1) < 0.03, obs
        assert np.all(np.isnan(t[obs][~ok]))  # no measurement where the model has none
    # faint stars have no astrometry; DR3 RVs only to G_RVS = 14
    assert np.all(np.isnan(t["parallax"][t["phot_g_mean_mag_true"] > 21]))
    assert np.all(np.isnan(t["radial_velocity_error"][t["grvs_mag_true"] > 14]))
    assert t.meta["error_models"][-1]["name"] == "gaia_dr3"
    # reproducible with the same seed, different with another
    t2 = _gaia_table(200_000, np.random.default_rng(9))
    model.apply(t2, rng=1)
    np.testing.assert_array_equal(t2["pmra"], t["pmra"])


def test_gaia_model_bad_input():
    rng = np.random.default_rng(0)
    t = _gaia_table(100, rng)
    del t["phot_bp_mean_mag_true"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['phot_bp_mean_mag_true'\]"):
        GaiaErrorModel("dr3").apply(t, rng)
    GaiaErrorModel("dr3", photometry=("g", "rp")).apply(t, rng)  # explicit subset is fine
    assert "phot_bp_mean_mag" not in t
    t["parallax_true"] = -t["parallax_true"]
    with pytest.raises(ValueError, match="parallax_true"):
        GaiaErrorModel("dr3", photometry=()).apply(t, rng)
    with pytest.raises(ValueError, match="allowed"):
        GaiaErrorModel("dr3", photometry=("u",))
    t = _gaia_table(100, rng)
    t["phot_g_mean_mag_true"][:5] = np.nan
    GaiaErrorModel("dr4", radial_velocity=False).apply(t, rng)
    assert np.isnan(t["parallax"][:5]).all() and np.isnan(t["phot_g_mean_mag"][:5]).all()
    assert np.isfinite(t["parallax"][5:][t["phot_g_mean_mag_true"][5:] < 21]).all()


def test_apogee_model(shared_data):
    table_path = shared_data / "observed" / "bv24_apogee_gaia" / "gaia_errors.csv"
    model = ApogeeErrorModel(table_path)
    d = np.array([0.0, 0.5, 1.0, 1.0001, 7.3, 25.0, 30.0, 300.0, np.nan])
    n = d.size
    t = StarTable({"distance": d, "pmra_true": np.zeros(n), "pmdec_true": np.zeros(n),
                   "radial_velocity_true": np.zeros(n), "feh": np.zeros(n), "alpha_fe": np.zeros(n)})
    sig = model.uncertainties(t)
    # bins (k, k+1]: rows 0, 0, 0, 1, 7, 24, 25, 25
    np.testing.assert_allclose(sig["distance_error"][:8], [0.038, 0.038, 0.038, 0.108, 0.451, 0.462, 0.412, 0.412])
    np.testing.assert_allclose(sig["radial_velocity_error"][4], 0.044)
    np.testing.assert_allclose(sig["alpha_fe_error"][3], 0.013)
    assert all(np.isnan(v[-1]) for v in sig.values())
    model.apply(t, rng=3)
    for c in ("distance_error", "pmra", "pmdec", "radial_velocity", "feh_obs", "alpha_fe_obs", "feh_error"):
        assert c in t
    assert np.isnan(t["feh_obs"][-1]) and np.isfinite(t["feh_obs"][:-1]).all()
    with pytest.raises(ValueError, match="negative"):
        model.uncertainties(StarTable({**{k: t[k][:1] for k in model.required_columns()}, "distance": [-1.0]}))
    with pytest.raises(ValueError, match=r"\['feh', 'alpha_fe'\]"):
        model.apply(StarTable({"distance": [1.0], "pmra_true": [0.0], "pmdec_true": [0.0],
                               "radial_velocity_true": [0.0]}))
    # default location through mocksky.data (../shared/data during development)
    assert error_model("apogee_bv24").bin_hi[-1] == np.inf


def test_registry_and_exact():
    assert set(available_error_models()) == {"gaia_dr3", "gaia_dr4", "gaia_dr5", "apogee_bv24", "exact"}
    assert error_model("gaia_dr5").release == "dr5"
    with pytest.raises(KeyError, match="allowed"):
        error_model("sdss")
    t = StarTable({"h_m_true": np.array([10.0, 11.0]), "grvs_mag_true": np.array([9.0, np.nan])})
    ExactMeasurements().apply(t)
    np.testing.assert_array_equal(t["h_m"], t["h_m_true"])
    assert "j_m" not in t and np.isnan(t["grvs_mag"][1])
    with pytest.raises(ValueError, match="j_m_true"):
        ExactMeasurements(strict=True).apply(t)


def test_apogee_distance_errors_reproduce_the_cut_sample(shared_data):
    """The table lists the mean distance uncertainty of stars that passed the BV24 cut (< 0.75 kpc). Drawn per-star
    uncertainties, cut at 0.75 kpc, reproduce those means (Monte Carlo, 2e5 stars per row): within 10 % for the rows
    within 16 kpc (>= 95 real stars each), 25 % beyond (the fit's worst row: 22 % at 22-23 kpc, 37 real stars)."""
    table_path = shared_data / "observed" / "bv24_apogee_gaia" / "gaia_errors.csv"
    model = ApogeeErrorModel(table_path)
    assert model.distance_error_cut == 0.75 and len(model.fractional_error_params) == 4
    rng = np.random.default_rng(5)
    d = model.bin_centres()
    es = model.tables["distance_error"]
    completeness = []
    for i, di in enumerate(d):
        s = model.draw_distance_errors(np.full(200_000, di), rng)
        keep = s < 0.75
        completeness.append(keep.mean())
        tol = 0.10 if di < 16 else 0.25
        assert abs(s[keep].mean() / es[i] - 1) < tol, (di, s[keep].mean(), es[i])
    completeness = np.array(completeness)
    assert completeness[0] == 1.0 and completeness[4] > 0.9 and completeness[8] < 0.6  # 0.5, 4.5, 8.5 kpc
    assert np.all(np.diff(completeness) <= 1e-3)
    mean, p = model.distance_error_survivor_mean(d)
    np.testing.assert_allclose(p, completeness, atol=0.01)
    # apply: per-star draws, so the sample cut removes distant stars
    n = 20_000
    t = StarTable({"distance": np.full(n, 10.0), "pmra_true": np.zeros(n), "pmdec_true": np.zeros(n),
                   "radial_velocity_true": np.zeros(n), "feh": np.zeros(n), "alpha_fe": np.zeros(n)})
    model.apply(t, rng=2)
    assert 0.3 < np.mean(t["distance_error"] < 0.75) < 0.5
    assert np.std(t["distance_obs"] - 10.0) == pytest.approx(np.sqrt(np.mean(t["distance_error"] ** 2)), rel=0.05)
    # the table read literally: every star gets its row's mean, and nobody fails the cut
    literal = ApogeeErrorModel(table_path, distance_error_cut=None)
    assert literal.fractional_error_params is None
    np.testing.assert_array_equal(literal.draw_distance_errors(np.array([10.5, 0.5]), rng), [es[10], es[0]])
    with pytest.raises(ValueError, match="distance_error_cut"):
        ApogeeErrorModel(table_path, distance_error_cut=0.0)
