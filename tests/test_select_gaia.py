"""Gaia DR3 completeness (CG23; gaiaunlimited map and offline DR2-maglim backend) and RVS selection."""
import contextlib
import io

import numpy as np
import pytest

from mocksky.select import GaiaDataUnavailable, GaiaDR3Completeness, GaiaRVSCompleteness, cg23_completeness
from mocksky._healpix import ang2pix_nest
from mocksky.select.gaia import CG23_PARAMETERS, GAIAUNLIMITED_M10_FILE, gaiaunlimited_datadir, load_maglim_m10_map


@pytest.fixture(scope="module")
def gaia_small(shared_data):
    from astropy.table import Table
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITS unit strings such as 'electron'.s**-1
        t = Table.read(shared_data / "observed" / "gaia_small" / "gdr3_sm.fits")
    def col(name):
        return np.ma.filled(np.ma.asarray(t[name]).astype(float), np.nan)
    return {"source_id": np.asarray(t["source_id"], dtype=np.int64), "ra": col("ra"), "dec": col("dec"),
            "phot_g_mean_mag": col("phot_g_mean_mag"), "grvs_mag": col("grvs_mag"),
            "radial_velocity": col("radial_velocity"), "rv_template_teff": col("rv_template_teff")}


def _import_tcg():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        mod = pytest.importorskip("gaiaunlimited.selectionfunctions.surveyTCG")
    return mod


# ------------------------------------------------------------------------------------------- HEALPix
def test_healpix_matches_gaia_source_id(gaia_small):
    # Gaia source_id encodes the level-12 NESTED ICRS pixel: level 7 = source_id // (2**35 * 4**5)
    pix = ang2pix_nest(128, gaia_small["ra"], gaia_small["dec"])
    assert np.array_equal(pix, gaia_small["source_id"] // (2 ** 35 * 4 ** 5))


def test_healpix_matches_healpy():
    hp = pytest.importorskip("healpy")
    rng = np.random.default_rng(3)
    ra = np.r_[rng.uniform(0, 360, 200_000), 0.0, 360.0, 90.0, 45.0, 0.0, 180.0]
    dec = np.r_[np.degrees(np.arcsin(rng.uniform(-1, 1, 200_000))), 90.0, -90.0, 0.0, 41.8103148958, -41.8103148958, 89.99999]
    for nside in (1, 16, 128, 4096):
        assert np.array_equal(ang2pix_nest(nside, ra, dec), hp.ang2pix(nside, ra, dec, nest=True, lonlat=True))
    assert list(ang2pix_nest(8, [np.nan, 10.0], [0.0, np.inf])) == [-1, -1]
    with pytest.raises(ValueError, match="power of 2"):
        ang2pix_nest(100, [0.0], [0.0])


# ----------------------------------------------------------------------------------------- CG23 formula
def test_cg23_formula_limits_and_gaiaunlimited():
    G = np.linspace(3.0, 24.0, 211)[:, None]
    m10 = np.linspace(17.0, 21.8, 25)[None, :]  # both sides of the break at M_lim = 20.52
    c = cg23_completeness(G, m10)
    assert c.shape == (211, 25) and np.all((c >= 0) & (c <= 1))
    assert np.all(np.diff(c, axis=0) <= 1e-15)  # decreasing with G
    assert np.all(c[0] > 1 - 1e-10) and np.all(c[-1] < 1e-3)  # heavy bright tail: 1 - C = 5e-12 at G = 3
    # continuity of the piecewise-linear parameters at the break
    lim = CG23_PARAMETERS["lim"]
    assert cg23_completeness(21.0, lim - 1e-12) == pytest.approx(cg23_completeness(21.0, lim + 1e-12), abs=1e-9)
    assert np.isnan(cg23_completeness(np.nan, 20.0)) and np.isnan(cg23_completeness(20.0, np.nan))
    # against an exact (50-digit decimal) evaluation of 1 - [(tanh(x) + 1)/2]**s, bright tail included
    for g, m in [(14.5, 17.0), (18.0, 20.0), (20.9, 20.8), (21.5, 21.2), (23.0, 19.0), (12.0, 21.0)]:
        assert cg23_completeness(g, m) == pytest.approx(_exact_cg23(g, m), rel=1e-13, abs=1e-300)
    # against gaiaunlimited's own evaluation, where its tanh(x) + 1 does not cancel (|x| < 5)
    tcg = _import_tcg()
    Gb, mb = np.broadcast_to(G, c.shape).ravel().copy(), np.broadcast_to(m10, c.shape).ravel().copy()
    ref = tcg.m10_to_completeness(Gb, mb)
    x = _x(Gb, mb)
    well = np.abs(x) < 5
    assert well.sum() > 300
    np.testing.assert_allclose(c.ravel()[well], ref[well], rtol=1e-10, atol=1e-14)
    assert np.max(np.abs(c.ravel() - ref)) < 5e-3  # measured 3.7e-3, in gaiaunlimited's cancelling tail


def _params(m):
    P = CG23_PARAMETERS
    hi = m > P["lim"]
    out = []
    for a, b, c in (("ax", "bx", "cx"), ("ay", "by", "cy"), ("az", "bz", "cz")):
        out.append(np.where(hi, P[c] * m + (P[a] - P[c]) * P["lim"] + P[b], P[a] * m + P[b]))
    return out


def _x(G, m):
    g0, w, _ = _params(np.asarray(m, float))
    return (G - g0) / w


def _exact_cg23(g, m):
    from decimal import Decimal, localcontext

    g0, w, s = (float(v) for v in _params(np.float64(m)))
    with localcontext() as ctx:
        ctx.prec = 50
        x = (Decimal(g) - Decimal(g0)) / Decimal(w)
        base = 1 / (1 + (-2 * x).exp())  # (tanh(x) + 1) / 2
        return float(1 - (Decimal(s) * base.ln()).exp())


# ---------------------------------------------------------------------------------- offline (maglim) map
def test_maglim_backend_on_real_gaia_sources(gaia_small, shared_data):
    sf = GaiaDR3Completeness(backend="maglim")
    assert sf.backend_used == "maglim" and sf.nside == 128
    raw = np.load(shared_data / "selection" / "gaia_dr2_maglim" / "maglim_g_in_nside128.npy")
    np.testing.assert_allclose(sf.m10_map, raw + 0.3, rtol=0, atol=1e-12)  # lossless packaging + offset
    pix = gaia_small["source_id"] // (2 ** 35 * 4 ** 5)
    np.testing.assert_allclose(sf.m10(gaia_small["ra"], gaia_small["dec"]), raw[pix] + 0.3, atol=1e-12)
    p = sf.probability(gaia_small)
    assert p.shape == (1000,) and np.all((p >= 0) & (p <= 1))
    # real DR3 sources are mostly where the model says DR3 is complete (measured: median 0.997, 5.9 % < 0.5)
    assert np.median(p) > 0.99 and np.mean(p < 0.5) < 0.08
    # the offset parameter shifts M10
    m10b, nside, _ = load_maglim_m10_map(0.5)
    np.testing.assert_allclose(m10b, raw + 0.5, atol=1e-12)


# ------------------------------------------------------------------------------------ gaiaunlimited map
def _write_m10_file(path, nside=128):
    h5py = pytest.importorskip("h5py")

    pix = np.arange(12 * nside * nside)
    rng = np.random.default_rng(5)
    m10 = 19.4 + 1.6 * np.sin(pix / 5000.0) + rng.normal(0, 0.2, pix.size)  # 17.2 .. 21.6, both branches
    rows = np.column_stack([np.full(pix.size, np.log2(nside)), pix, m10])
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=rows)
    return m10


@pytest.fixture
def gu_datadir(tmp_path, monkeypatch):
    d = tmp_path / "gaiaunlimited"
    d.mkdir()
    monkeypatch.setenv("GAIAUNLIMITED_DATADIR", str(d))
    return d


def test_gaiaunlimited_backend_matches_its_query(gu_datadir, monkeypatch):
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    m10 = _write_m10_file(gu_datadir / GAIAUNLIMITED_M10_FILE)
    tcg = _import_tcg()
    from gaiaunlimited import fetch_utils

    assert fetch_utils.get_datadir() == gaiaunlimited_datadir() == gu_datadir.resolve()

    def no_download(*args, **kwargs):
        raise AssertionError("gaiaunlimited tried to download")

    monkeypatch.setattr(fetch_utils, "download", no_download)
    sf = GaiaDR3Completeness(backend="gaiaunlimited")
    assert sf.backend_used == "gaiaunlimited" and sf.nside == 128
    np.testing.assert_array_equal(sf.m10_map, m10)
    rng = np.random.default_rng(8)
    n = 400
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    G = sf.m10(ra, dec) + rng.uniform(-1.5, 1.5, n)  # around the completeness limit
    p = sf.probability({"ra": ra, "dec": dec, "phot_g_mean_mag": G})
    coords = SkyCoord(ra=ra * u.deg, dec=dec * u.deg)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = tcg.DR3SelectionFunctionTCG().query(coords, G)
    from gaiaunlimited.utils import coord2healpix

    np.testing.assert_array_equal(sf.m10(ra, dec), m10[coord2healpix(coords, "icrs", 128)])  # same pixels
    well = np.abs(_x(G, sf.m10(ra, dec))) < 5  # where gaiaunlimited's tanh(x) + 1 does not cancel
    assert well.sum() > 100
    np.testing.assert_allclose(p[well], ref[well], rtol=1e-10, atol=1e-14)
    assert np.max(np.abs(p - ref)) < 5e-3
    assert 0.05 < np.mean(p) < 0.95  # a non-trivial range of completeness was exercised
    # 'auto' prefers the gaiaunlimited map when it is usable
    assert GaiaDR3Completeness(backend="auto").backend_used == "gaiaunlimited"


def test_gaiaunlimited_zero_byte_file_is_removed(gu_datadir):
    bad = gu_datadir / GAIAUNLIMITED_M10_FILE
    bad.touch()  # what a failed gaiaunlimited download leaves behind
    with pytest.raises(GaiaDataUnavailable, match="empty file left by a failed download"):
        GaiaDR3Completeness(backend="gaiaunlimited")
    assert not bad.exists()
    bad.touch()
    sf = GaiaDR3Completeness(backend="auto")  # falls back to the offline map
    assert sf.backend_used == "maglim" and not bad.exists()
    assert list(gu_datadir.iterdir()) == []


def test_gaiaunlimited_missing_or_corrupt_file(gu_datadir):
    with pytest.raises(GaiaDataUnavailable, match="not found.*GAIAUNLIMITED_DATADIR"):
        GaiaDR3Completeness(backend="gaiaunlimited")
    assert list(gu_datadir.iterdir()) == []  # nothing downloaded, nothing created
    assert GaiaDR3Completeness(backend="auto").backend_used == "maglim"
    (gu_datadir / GAIAUNLIMITED_M10_FILE).write_bytes(b"<html>rate limited</html>")
    with pytest.raises(GaiaDataUnavailable, match="not an HDF5 file"):
        GaiaDR3Completeness(backend="gaiaunlimited")
    assert (gu_datadir / GAIAUNLIMITED_M10_FILE).exists()  # a non-empty file is the user's to delete
    with pytest.raises(ValueError, match="backend must be one of"):
        GaiaDR3Completeness(backend="gaiaunlimted")


# ------------------------------------------------------------------------------------------------ RVS
def test_rvs_limits():
    sf = GaiaRVSCompleteness()
    t = {"grvs_mag": np.array([10.0, 14.0, 15.0, 11.0, 12.0, 13.0, 10.0, 10.0]),
         "teff": np.array([5000.0, 5000.0, 5000.0, 8000.0, 8000.0, 8000.0, 3000.0, 15000.0])}
    p = sf.probability(t)
    expect_half = [1, 4]  # at the limit: 0.5
    np.testing.assert_allclose(p[expect_half], 0.5)
    assert p[0] > 0.9999 and p[3] > 0.9999 and p[2] < 1e-4 and p[5] < 1e-4
    assert p[6] == 0 and p[7] == 0  # outside 3100-14500 K
    step = GaiaRVSCompleteness(width=0.0, plateau=0.9, teff_column="").probability(t)
    np.testing.assert_array_equal(step, np.where(t["grvs_mag"] <= 14.0, 0.9, 0.0))
    assert GaiaRVSCompleteness(teff_column="").required_columns == ("grvs_mag",)
    with pytest.raises(ValueError, match="plateau"):
        GaiaRVSCompleteness(plateau=1.5)


def test_rvs_on_real_rv_stars(gaia_small):
    has_rv = np.isfinite(gaia_small["radial_velocity"]) & np.isfinite(gaia_small["grvs_mag"])
    t = {"grvs_mag": gaia_small["grvs_mag"][has_rv], "teff": gaia_small["rv_template_teff"][has_rv]}
    p = GaiaRVSCompleteness().probability(t)
    assert has_rv.sum() >= 20 and np.all(p > 0.5)  # every real DR3 RV star passes the modelled limits
