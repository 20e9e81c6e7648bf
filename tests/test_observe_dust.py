"""Dust maps: one contract for every DustMap, plus map-specific checks against the stored arrays.

Acceptance: at pixel centres and tabulated distances the maps return exactly (float32 rounding) the stored values
times their E(B-V) -> A0 factor; between distances the 3D map is linear in distance (continuous).
"""
import importlib
import json
import warnings

import numpy as np
import pytest
import astropy.units as u

from mocksky.catalogue import StarTable
from mocksky.observe import (SFD_EBV_TO_A0, DustMap, DustmapsAdapter, HealpixDustMap2D, HealpixDustMap3D, NoDust,
                             add_dust, available_dust_maps, dust_map)
from mocksky._healpix import ang2pix_nest


@pytest.fixture(scope="module")
def healpy():
    return pytest.importorskip("healpy")


def _random_sky(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def _pixels(order, l, b):
    return ang2pix_nest(2**order, l, b)


# ------------------------------------------------------------------------------------------ dustmaps fixtures
@pytest.fixture(scope="module")
def dustmaps_env(tmp_path_factory):
    """Import dustmaps with its configuration pointing at a temporary data_dir (no network, no ~/.dustmapsrc)."""
    pytest.importorskip("dustmaps")
    d = tmp_path_factory.mktemp("dustmaps")
    cfg = d / "dustmapsrc.json"
    cfg.write_text(json.dumps({"data_dir": str(d)}))
    mp = pytest.MonkeyPatch()
    mp.setenv("DUSTMAPS_CONFIG_FNAME", str(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dustmaps warns that the configuration file is overridden
        import dustmaps.config

        importlib.reload(dustmaps.config)
        dustmaps.config.config["data_dir"] = str(d)
        sfd = importlib.import_module("dustmaps.sfd")
        bayestar = importlib.import_module("dustmaps.bayestar")
    yield d, sfd, bayestar
    mp.undo()


def _sfd_value(x, y, pole):
    return 0.01 + 0.002 * x + 0.003 * y + (0.5 if pole == "ngp" else 0.25)


@pytest.fixture(scope="module")
def sfd_files(dustmaps_env):
    """A small SFD-format FITS pair (Lambert zenithal equal-area, 64 x 64) in dustmaps' data_dir/sfd."""
    from astropy.io import fits

    d, sfd, _ = dustmaps_env
    (d / "sfd").mkdir(exist_ok=True)
    ny = nx = 64
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    for pole, lat in (("ngp", 90.0), ("sgp", -90.0)):
        hdr = fits.Header()
        hdr.update(CTYPE1="GLON-ZEA", CTYPE2="GLAT-ZEA", CRPIX1=32.5, CRPIX2=32.5, CRVAL1=0.0, CRVAL2=lat,
                   CDELT1=-2.8 if lat > 0 else 2.8, CDELT2=2.8, LONPOLE=180.0)
        fits.PrimaryHDU(_sfd_value(xx, yy, pole).astype(np.float32), header=hdr).writeto(
            d / "sfd" / f"SFD_dust_4096_{pole}.fits", overwrite=True)
    return sfd.SFDQuery(map_dir=str(d / "sfd"))


@pytest.fixture(scope="module")
def bayestar_file(dustmaps_env):
    """A Bayestar-format HDF5 map: nside 2 (48 pixels), 3 samples, 8 distance moduli."""
    import h5py

    d, _, bayestar = dustmaps_env
    npix, nsamp = 48, 3
    dm = np.linspace(6.0, 13.0, 8)
    info = np.zeros(npix, dtype=[("nside", "i4"), ("healpix_index", "i8"), ("DM_reliable_min", "f4"),
                                 ("DM_reliable_max", "f4"), ("converged", "u1")])
    info["nside"] = 2
    info["healpix_index"] = np.arange(npix)
    info["DM_reliable_min"], info["DM_reliable_max"], info["converged"] = 5.0, 14.0, 1
    best = np.cumsum(np.linspace(0.01, 0.05, 8)[None, :] * (1 + np.arange(npix))[:, None], axis=1).astype("f4")
    samples = np.repeat(best[:, None, :], nsamp, axis=1) * np.array([0.9, 1.0, 1.1], "f4")[None, :, None]
    path = d / "bayestar_test.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("pixel_info", data=info)
        ds.attrs["DM_bin_edges"] = dm
        f.create_dataset("samples", data=samples)
        f.create_dataset("best_fit", data=best)
        f.create_dataset("GRDiagnostic", data=np.ones((npix, 8), "f4"))
    q = bayestar.BayestarQuery(map_fname=str(path), version="bayestar2019")
    return q, best, dm


# ------------------------------------------------------------------------------------------ the contract
def _maps(request):
    name = request.param
    if name == "combined19":
        return HealpixDustMap3D.combined19()
    if name == "combined19_l3":
        return HealpixDustMap3D.combined19(level=3)
    if name == "sfd":
        return HealpixDustMap2D.sfd()
    if name == "sfd_nolayer":
        return HealpixDustMap2D.sfd(scale_height=None)
    if name == "planck13":
        return HealpixDustMap2D.planck13()
    if name == "none":
        return NoDust()
    if name == "adapter_sfd":
        return DustmapsAdapter(request.getfixturevalue("sfd_files"), use_distance=False)
    if name == "adapter_bayestar":
        q = request.getfixturevalue("bayestar_file")[0]
        return DustmapsAdapter(q, ebv_to_a0=2.5, query_kwargs={"mode": "best"})
    raise ValueError(name)


@pytest.fixture(params=["combined19", "combined19_l3", "sfd", "sfd_nolayer", "planck13", "none", "adapter_sfd",
                        "adapter_bayestar"])
def any_map(request):
    return _maps(request)


def test_dust_map_contract(any_map):
    m = any_map
    assert isinstance(m, DustMap)
    meta = m.meta()
    for k in ("name", "reference", "ebv_to_a0"):
        assert k in meta
    json.dumps(meta)
    rng = np.random.default_rng(11)
    n = 2000
    l = rng.uniform(0, 360, n)
    b = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    d = 10 ** rng.uniform(-1.5, 1.5, n)
    a = m.a0(l, b, d)
    assert a.shape == (n,) and np.all(np.isfinite(a)) and np.all(a >= 0)
    # broadcasting and scalars
    assert m.a0(l[:3, None], b[:3, None], np.array([[0.5, 1.0]])).shape == (3, 2)
    s = m.a0(10.0, 5.0, 1.0)
    assert np.shape(s) == () and np.isfinite(s)
    # Quantities: the same star in other units
    np.testing.assert_allclose(m.a0(l[:50] * u.deg, np.radians(b[:50]) * u.rad, d[:50] * 1000 * u.pc),
                               a[:50], rtol=1e-6)
    # bad input: NaN or negative distance, NaN angle -> NaN (no exception)
    bad = m.a0([10.0, 10.0, np.nan], [5.0, 5.0, 5.0], [np.nan, -1.0, 1.0])
    assert np.all(np.isnan(bad))
    # cumulative along a line of sight: never decreasing by more than the data's rounding
    dd = np.geomspace(0.01, 50, 200)
    prof = m.a0(np.full(200, 30.0), np.full(200, 2.0), dd)
    assert np.all(np.diff(prof) >= -0.02 * max(prof.max(), 1e-3))


def test_registry():
    assert set(available_dust_maps()) == {"combined19", "sfd", "planck13", "none"}
    assert dust_map("combined19", level=4).nside == 16
    m = NoDust()
    assert dust_map(m) is m
    with pytest.raises(KeyError, match="allowed: \\['combined19', 'sfd', 'planck13', 'none'\\]"):
        dust_map("bayestar")
    with pytest.raises(ValueError, match="level must be one of 3, 4, 5"):
        HealpixDustMap3D.combined19(level=6)


# ------------------------------------------------------------------------------------------ map specifics
@pytest.mark.parametrize("level", [3, 4, 5])
def test_combined19_reproduces_stored_values(shared_data, level):
    """Random sky points: A0 at the tabulated distances is 3.1 * 0.86 * the stored E(B-V) of their pixel."""
    raw = np.load(shared_data / "dust" / "combined19_healpix" / f"combined1719_hpxlevel_{level}.npy")
    m = HealpixDustMap3D.combined19(level=level)
    l, b = _random_sky(3000, level)
    pix = _pixels(level, l, b)
    dist = 10 ** (np.linspace(4, 18.875, 120) / 5 - 2)
    a = m.a0(l[:, None], b[:, None], dist[None, :])
    expected = SFD_EBV_TO_A0 * raw[pix].astype(np.float64)
    np.testing.assert_allclose(a, expected, rtol=1e-6, atol=0)
    assert m.ebv_to_a0 == pytest.approx(3.1 * 0.86)


def test_combined19_at_pixel_centres(shared_data, healpy):
    raw = np.load(shared_data / "dust" / "combined19_healpix" / "combined1719_hpxlevel_5.npy")
    m = HealpixDustMap3D.combined19()
    pix = np.arange(0, 12 * 32 ** 2, 7)
    l, b = healpy.pix2ang(32, pix, nest=True, lonlat=True)
    dist = 10 ** (np.linspace(4, 18.875, 120) / 5 - 2)
    np.testing.assert_allclose(m.a0(l[:, None], b[:, None], dist[None, :]),
                               SFD_EBV_TO_A0 * raw[pix].astype(np.float64), rtol=1e-6, atol=0)


def test_combined19_interpolates_linearly_in_distance():
    m = HealpixDustMap3D.combined19()
    l, b = 30.0, 1.0
    nodes = m.distances
    k = 60
    lo, hi = m.a0(l, b, nodes[k]), m.a0(l, b, nodes[k + 1])
    w = np.linspace(0, 1, 11)
    mid = m.a0(l, b, nodes[k] + w * (nodes[k + 1] - nodes[k]))
    np.testing.assert_allclose(mid, lo + w * (hi - lo), rtol=1e-6)
    # continuity: no jump at the nodes, linear from 0 at d = 0, constant beyond the last node
    eps = 1e-9
    for kk in (0, 30, 90, 118):
        assert abs(m.a0(l, b, nodes[kk] * (1 + eps)) - m.a0(l, b, nodes[kk] * (1 - eps))) < 1e-6
    assert m.a0(l, b, 0.0) == 0.0
    np.testing.assert_allclose(m.a0(l, b, [0.25 * nodes[0], 0.5 * nodes[0]]),
                               [0.25 * m.a0(l, b, nodes[0]), 0.5 * m.a0(l, b, nodes[0])], rtol=1e-6)
    assert m.a0(l, b, 1e4) == m.a0(l, b, nodes[-1])
    # interpolation in angle is nearest-pixel: constant within a pixel
    ll, bb = l + np.linspace(-3, 3, 61), np.full(61, b)
    pix = _pixels(5, ll, bb)
    vals = m.a0(ll, bb, 2.0)
    for p in np.unique(pix):
        assert np.ptp(vals[pix == p]) == 0.0


@pytest.mark.parametrize("key,fname", [("sfd", "dust_ebv_SFD_healpix_lowres.fits"),
                                        ("planck13", "dust_ebv_Planck13_healpix_lowres.fits")])
def test_2d_maps_reproduce_stored_values(shared_data, healpy, key, fname):
    """Pixel centres of the original RING files (so the RING -> NESTED conversion is checked too)."""
    from astropy.io import fits

    with fits.open(shared_data / "dust" / "sfd_planck_lowres_2d" / fname) as h:
        ring = np.asarray(h[1].data["I"], dtype=np.float64)
    m = getattr(HealpixDustMap2D, key)(scale_height=None)
    ipix = np.arange(0, ring.size, 5)  # RING indices
    l, b = healpy.pix2ang(64, ipix, lonlat=True)
    np.testing.assert_allclose(m.a0(l, b, 3.0), m.ebv_to_a0 * ring[ipix], rtol=1e-6)
    # random points fall on the value of their ring pixel too
    l, b = _random_sky(5000, 1)
    np.testing.assert_allclose(m.a0(l, b, 3.0), m.ebv_to_a0 * ring[healpy.ang2pix(64, l, b, lonlat=True)], rtol=1e-6)
    assert m.ebv_to_a0 == pytest.approx(3.1 * 0.86 if key == "sfd" else 3.1)


def test_2d_dust_layer():
    m = HealpixDustMap2D.sfd(scale_height=0.1, max_path=20.0)
    inf = HealpixDustMap2D.sfd(scale_height=None)
    l, b = 120.0, 10.0
    a_inf = inf.a0(l, b, 1.0)
    assert m.a0(l, b, 0.0) == 0.0 and m.a0(l, b, 20.0) == pytest.approx(a_inf) and m.a0(l, b, 100.0) == a_inf
    s = np.sin(np.radians(b))
    d = np.array([0.1, 0.5, 1.0, 5.0])
    np.testing.assert_allclose(m.a0(l, b, d), a_inf * np.expm1(-d * s / 0.1) / np.expm1(-20 * s / 0.1), rtol=1e-12)
    # in the plane: linear up to max_path
    a0_plane = inf.a0(l, 0.0, 1.0)
    np.testing.assert_allclose(m.a0(l, 0.0, [5.0, 10.0]), a0_plane * np.array([0.25, 0.5]), rtol=1e-12)
    with pytest.raises(ValueError, match="scale_height"):
        HealpixDustMap2D.sfd(scale_height=0.0)


def test_custom_3d_map_validation():
    with pytest.raises(ValueError, match="not a HEALPix map"):
        HealpixDustMap3D(np.zeros((10, 3)), [5, 6, 7])
    with pytest.raises(ValueError, match="strictly increasing"):
        HealpixDustMap3D(np.zeros((12, 3)), [5, 7, 6])
    with pytest.raises(ValueError, match="shape"):
        HealpixDustMap3D(np.zeros((12, 3)), [5, 6])
    m = HealpixDustMap3D(np.tile([0.1, 0.2, 0.4], (12, 1)), [5.0, 10.0, 15.0], ebv_to_a0=1.0)
    assert m.a0(0.0, 0.0, 1.0) == pytest.approx(0.2)  # distance modulus 10 <-> 1 kpc
    assert m.a0(0.0, 0.0, 0.05) == pytest.approx(0.05)  # halfway between 0 and 0.1 kpc (DM 5)


def test_healpix_pixels_match_healpy(healpy):
    rng = np.random.default_rng(0)
    n = 200_000
    l = rng.uniform(-400, 400, n)
    b = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    b[:6] = [90, -90, 0, 41.8103149, -41.8103149, 89.99999]
    for order in (0, 3, 5, 6, 9):
        out = ang2pix_nest(2**order, l, b)
        np.testing.assert_array_equal(out, healpy.ang2pix(2 ** order, l, b, nest=True, lonlat=True))
    out = ang2pix_nest(32, np.array([np.nan, 1.0]), np.array([0.0, np.inf]))
    assert list(out) == [-1, -1]


def test_adapter_sfd_format(sfd_files):
    ad = DustmapsAdapter(sfd_files, use_distance=False, name="sfd-test")
    for pole in ("ngp", "sgp"):
        _, w = sfd_files._data[pole]  # the WCS dustmaps read from the file we wrote
        ys, xs = np.array([20, 32, 40]), np.array([25, 31, 44])
        lon, lat = w.wcs_pix2world(xs, ys, 0)
        np.testing.assert_allclose(ad.a0(lon, lat, 1.0), SFD_EBV_TO_A0 * _sfd_value(xs, ys, pole), rtol=1e-6)
    assert ad.meta()["name"] == "sfd-test"


def test_adapter_bayestar_format(bayestar_file, healpy):
    q, best, dm = bayestar_file
    ad = DustmapsAdapter(q, ebv_to_a0=2.5, query_kwargs={"mode": "best"})
    pix = np.arange(48)
    l, b = healpy.pix2ang(2, pix, nest=True, lonlat=True)
    dist = 10 ** (dm / 5 - 2)
    a = ad.a0(l[:, None], b[:, None], dist[None, :])
    np.testing.assert_allclose(a, 2.5 * best, rtol=1e-6)
    # between two distance moduli Bayestar interpolates linearly in distance modulus
    dmid = 10 ** (0.5 * (dm[2] + dm[3]) / 5 - 2)
    np.testing.assert_allclose(ad.a0(l[5], b[5], dmid), 2.5 * 0.5 * (best[5, 2] + best[5, 3]), rtol=1e-6)
    multi = DustmapsAdapter(q, query_kwargs={"mode": "samples"})
    with pytest.raises(ValueError, match="one value per star"):
        multi.a0(l[:3], b[:3], 1.0)
    with pytest.raises(TypeError, match="callable"):
        DustmapsAdapter(object())


def test_add_dust_columns():
    t = StarTable({"l": np.array([10.0, 200.0, 5.0]), "b": np.array([1.0, -30.0, 2.0]),
                   "distance": np.array([2.0, 1.0, np.nan])})
    add_dust(t)
    assert np.isfinite(t["A0"][:2]).all() and np.isnan(t["A0"][2])
    np.testing.assert_allclose(t["ebv"], t["A0"] / (3.1 * 0.86))
    assert t.meta["dust_map"]["name"] == "combined19_level5"
    add_dust(t, "none")
    assert t["A0"][0] == 0.0
    with pytest.raises(ValueError, match="lacks column.*distance"):
        add_dust(StarTable({"l": [1.0], "b": [1.0]}))
