"""Frames: mocksky Galactocentric <-> ICRS astrometry <-> Galactic, against astropy (the reference).

Acceptance: 1e5 random stars agree with astropy's SkyCoord transformations to 1e-9 relative (per star, with an
absolute floor of 1e-9 times the column's typical scale for components that pass through zero).
"""
import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import ICRS, Galactic, SkyCoord

from mocksky.catalogue import StarTable
from mocksky.observe import (K_PM, add_galactocentric, add_sky_coordinates, cylindrical_to_galactocentric,
                             frame_matrices, galactic_to_icrs, galactocentric_to_cylindrical, galactocentric_to_sky,
                             icrs_to_galactic, sky_to_galactocentric, solar_parameters)

N = 100_000


@pytest.fixture(scope="module")
def stars():
    rng = np.random.default_rng(2024)
    # positions from the solar neighbourhood to the outer halo, velocities of discs and haloes
    r = 10 ** rng.uniform(-2.5, 2.0, N)
    u_ = rng.normal(size=(3, N))
    u_ /= np.linalg.norm(u_, axis=0)
    sun = np.array(solar_parameters("bv24").position)[:, None]
    xyz = sun + r * u_
    v = rng.normal(0, 150, (3, N)) + np.array([0, -200, 0])[:, None]
    return xyz, v


def _close(mine, ref, scale, rtol=1e-9, wrap=False):
    d = mine - ref
    if wrap:
        d = (d + 180.0) % 360.0 - 180.0
    tol = rtol * (np.abs(ref) + scale)
    bad = np.abs(d) > tol
    assert not bad.any(), f"{bad.sum()} stars off; worst |d| = {np.abs(d).max():.3e}"
    return np.max(np.abs(d) / (np.abs(ref) + scale))


@pytest.mark.parametrize("solar", ["bv24", "bv23", "astropy"])
def test_galactocentric_to_sky_matches_astropy(stars, solar):
    xyz, v = stars
    sp = solar_parameters(solar)
    out = galactocentric_to_sky(*xyz, *v, solar=sp)
    # astropy: mocksky's frame is astropy's Galactocentric with y and vy reversed
    c = SkyCoord(x=xyz[0] * u.kpc, y=-xyz[1] * u.kpc, z=xyz[2] * u.kpc, v_x=v[0] * u.km / u.s,
                 v_y=-v[1] * u.km / u.s, v_z=v[2] * u.km / u.s, frame=sp.astropy_frame())
    ic = c.transform_to(ICRS())
    gal = c.transform_to(Galactic())
    ref = {"ra": ic.ra.deg, "dec": ic.dec.deg, "distance": ic.distance.to_value(u.kpc),
           "pmra": ic.pm_ra_cosdec.to_value(u.mas / u.yr), "pmdec": ic.pm_dec.to_value(u.mas / u.yr),
           "radial_velocity": ic.radial_velocity.to_value(u.km / u.s), "l": gal.l.deg, "b": gal.b.deg}
    worst = {}
    for k, r in ref.items():
        scale = 1.0 if k in ("ra", "dec", "l", "b") else np.median(np.abs(r))
        worst[k] = _close(out[k], r, scale, wrap=k in ("ra", "l"))
    assert max(worst.values()) < 1e-9
    np.testing.assert_allclose(out["parallax"], 1.0 / ref["distance"], rtol=1e-12)
    assert np.all((out["ra"] >= 0) & (out["ra"] < 360) & (out["l"] >= 0) & (out["l"] < 360))
    # cylindrical columns
    cyl = galactocentric_to_cylindrical(*xyz, *v)
    for k in ("R", "phi", "vR", "vphi"):
        np.testing.assert_allclose(out[k], cyl[k], rtol=1e-12, atol=1e-12)


def test_sky_to_galactocentric_roundtrip_and_astropy(stars):
    xyz, v = stars
    sp = solar_parameters("bv24")
    o = galactocentric_to_sky(*xyz, *v, solar=sp)
    back = sky_to_galactocentric(o["ra"], o["dec"], o["distance"], o["pmra"], o["pmdec"], o["radial_velocity"],
                                 solar=sp)
    for i, k in enumerate("xyz"):
        _close(back[k], xyz[i], 1.0, rtol=1e-11)
        _close(back["v" + k], v[i], 100.0, rtol=1e-11)
    # independent check of the inverse against astropy on a subset
    n = 2000
    ic = SkyCoord(ra=o["ra"][:n] * u.deg, dec=o["dec"][:n] * u.deg, distance=o["distance"][:n] * u.kpc,
                  pm_ra_cosdec=o["pmra"][:n] * u.mas / u.yr, pm_dec=o["pmdec"][:n] * u.mas / u.yr,
                  radial_velocity=o["radial_velocity"][:n] * u.km / u.s, frame="icrs")
    gc = ic.transform_to(sp.astropy_frame())
    _close(back["y"][:n], -gc.y.to_value(u.kpc), 1.0)
    _close(back["vy"][:n], -gc.v_y.to_value(u.km / u.s), 100.0)
    pos_only = sky_to_galactocentric(o["ra"][:5], o["dec"][:5], o["distance"][:5], solar=sp)
    assert set(pos_only) == {"x", "y", "z"}


def test_sun_conventions():
    sp = solar_parameters("bv24")
    # a star at rest relative to the Sun, 1 kpc towards the Galactic centre
    o = galactocentric_to_sky(-7.27, 0.0, 0.025, *sp.velocity, solar=sp)
    assert abs(o["radial_velocity"]) < 1e-10 and abs(o["pmra"]) < 1e-10 and abs(o["pmdec"]) < 1e-10
    assert o["l"] < 0.1 or o["l"] > 359.9
    assert abs(o["b"]) < 0.2 and o["distance"] == pytest.approx(1.0)
    # the Sun itself: vphi = V (prograde), vR = -U (U points to the centre)
    o = galactocentric_to_sky(*sp.position, *sp.velocity, solar=sp)
    assert float(o["vphi"]) == pytest.approx(sp.V) and float(o["vR"]) == pytest.approx(-sp.U)
    assert o["R"] == pytest.approx(sp.R0)
    # Galactic rotation points to l = 90 deg: a point displaced from the Sun along its velocity lies near l = 90
    o = galactocentric_to_sky(sp.position[0] + sp.velocity[0] * 1e-3, sp.velocity[1] * 1e-3, sp.position[2],
                              solar=sp)
    assert abs(float(o["l"]) - 90.0) < 5.0


def test_icrs_galactic_against_astropy():
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 20000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 20000)))
    l, b = icrs_to_galactic(ra, dec)
    g = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    _close(l, g.l.deg, 1.0, wrap=True)
    _close(b, g.b.deg, 1.0)
    ra2, dec2 = galactic_to_icrs(l, b)
    _close(ra2, ra, 1.0, rtol=1e-11, wrap=True)
    _close(dec2, dec, 1.0, rtol=1e-11)
    # Quantities accepted; scalar in, 0-d out
    l1, b1 = icrs_to_galactic(266.4051 * u.deg, -28.936175 * u.deg)
    assert l1.shape == () and abs((float(l1) + 180) % 360 - 180) < 0.1 and abs(float(b1)) < 0.1


def test_quantities_broadcasting_and_errors():
    sp = solar_parameters("bv24")
    out = galactocentric_to_sky(np.array([[0.0], [1.0]]) * u.kpc, np.zeros(3), 0.0, solar=sp)
    assert out["ra"].shape == (2, 3) and "pmra" not in out
    a = galactocentric_to_sky(8.0 * u.kpc, 0.0, 0.0, solar=sp)
    b = galactocentric_to_sky(8000.0 * u.pc, 0.0, 0.0, solar=sp)
    assert a["distance"] == pytest.approx(b["distance"])
    with pytest.raises(ValueError, match="all of vx, vy, vz"):
        galactocentric_to_sky(0, 0, 0, 1, 2, None)
    with pytest.raises(u.UnitConversionError, match="x"):
        galactocentric_to_sky(1 * u.s, 0, 0)
    m = frame_matrices("bv24")
    np.testing.assert_allclose(m["B"] @ m["B"].T, np.eye(3), atol=1e-14)
    np.testing.assert_allclose(m["G"] @ m["G"].T, np.eye(3), atol=1e-14)
    assert K_PM == pytest.approx(4.740470463533348, rel=1e-15)


def test_cylindrical_roundtrip():
    rng = np.random.default_rng(5)
    x, y, z, vx, vy, vz = rng.normal(size=(6, 1000)) * np.array([8, 8, 1, 100, 100, 50])[:, None]
    c = galactocentric_to_cylindrical(x, y, z, vx, vy, vz)
    assert np.allclose(c["R"] * c["vphi"], x * vy - y * vx)  # Jphi = Lz
    back = cylindrical_to_galactocentric(c["R"], c["phi"], c["z"], c["vR"], c["vphi"], c["vz"])
    for k, ref in zip(("x", "y", "z", "vx", "vy", "vz"), (x, y, z, vx, vy, vz)):
        np.testing.assert_allclose(back[k], ref, rtol=1e-12, atol=1e-12)


def test_star_table_columns_roundtrip():
    rng = np.random.default_rng(7)
    n = 500
    cols = {"x": rng.normal(-8, 2, n), "y": rng.normal(0, 2, n), "z": rng.normal(0, 0.5, n),
            "vx": rng.normal(0, 40, n), "vy": rng.normal(-220, 40, n), "vz": rng.normal(0, 20, n)}
    t = StarTable(dict(cols))
    add_sky_coordinates(t, "bv23")
    for k in ("ra", "dec", "l", "b", "distance", "parallax_true", "pmra_true", "pmdec_true", "radial_velocity_true",
              "R", "phi", "vR", "vphi"):
        assert k in t and t[k].shape == (n,)
    assert t.meta["solar_parameters"]["name"] == "bv23"
    # inverse from the sky columns only (distance from the true parallax)
    t2 = StarTable({k: t[k] for k in ("ra", "dec", "parallax_true", "pmra_true", "pmdec_true",
                                       "radial_velocity_true")})
    add_galactocentric(t2, "bv23")
    for k, ref in cols.items():
        np.testing.assert_allclose(t2[k], ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(t2["vphi"], t["vphi"], rtol=1e-10)
    # positions only
    t3 = StarTable({k: cols[k] for k in "xyz"})
    add_sky_coordinates(t3)
    assert "pmra_true" not in t3 and "distance" in t3
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['z'\]"):
        add_sky_coordinates(StarTable({"x": cols["x"], "y": cols["y"]}))
    with pytest.raises(ValueError, match="only some of vx"):
        add_sky_coordinates(StarTable({**{k: cols[k] for k in "xyz"}, "vx": cols["vx"]}))
    with pytest.raises(ValueError, match="non-positive"):
        add_galactocentric(StarTable({"ra": [1.0], "dec": [2.0], "parallax_true": [-0.1]}))


def test_observed_galactocentric_columns():
    """Error-free measurements give back the true Galactocentric columns; the observed columns follow the scattered
    parallax (1/parallax, NaN where it is not positive) or an error model's distance_obs."""
    from mocksky.observe import add_observed_galactocentric

    rng = np.random.default_rng(8)
    n = 400
    cols = {"x": rng.normal(-8, 2, n), "y": rng.normal(0, 2, n), "z": rng.normal(0, 0.5, n),
            "vx": rng.normal(0, 40, n), "vy": rng.normal(-220, 40, n), "vz": rng.normal(0, 20, n)}
    t = StarTable(dict(cols))
    add_sky_coordinates(t, "bv24")
    for c in ("parallax", "pmra", "pmdec", "radial_velocity"):
        t[c] = t[f"{c}_true"].copy()
    t["parallax"][:5] = -0.2
    add_observed_galactocentric(t, "bv24")
    ok = np.arange(n) >= 5
    for c in ("R", "z", "phi", "vR", "vz", "vphi"):
        ref = t[c] if c not in ("z", "vz") else np.asarray(cols[c])
        np.testing.assert_allclose(t[f"{c}_obs"][ok], ref[ok], rtol=1e-9, atol=1e-9)
        assert np.all(np.isnan(t[f"{c}_obs"][~ok]))
    np.testing.assert_allclose(t["distance_obs"][ok], t["distance"][ok], rtol=1e-12)
    # a measured distance takes precedence over the parallax; prograde rotation stays vphi > 0
    t2 = StarTable({k: t[k] for k in ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity")})
    t2["distance_obs"] = t["distance"] * 1.1
    add_observed_galactocentric(t2, "bv24")
    np.testing.assert_allclose(t2["distance_obs"], t["distance"] * 1.1)
    assert np.median(t2["vphi_obs"]) > 150
    with pytest.raises(ValueError, match="distance_obs' or 'parallax"):
        add_observed_galactocentric(StarTable({"ra": [1.0], "dec": [2.0]}))


def test_galactocentric_to_lbd_matches_full_transform():
    from mocksky.observe.frames import galactocentric_to_lbd, galactocentric_to_sky

    rng = np.random.default_rng(4)
    x, y, z = rng.normal(0, 8, (3, 5000))
    full = galactocentric_to_sky(x, y, z, solar="bv23")
    fast = galactocentric_to_lbd(x, y, z, solar="bv23")
    for k in ("l", "b", "distance"):
        np.testing.assert_allclose(fast[k], full[k], rtol=1e-12, atol=1e-10, err_msg=k)
    assert galactocentric_to_lbd(np.ones((2, 3)), 0.0, 0.0)["l"].shape == (2, 3)
