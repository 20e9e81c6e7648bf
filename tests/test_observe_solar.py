"""Solar-parameter registry: values, references, metadata, conventions."""
import math

import numpy as np
import pytest

from mocksky.observe import SolarParameters, available_solar_parameters, solar_parameters


def test_registry_values_and_references():
    assert set(available_solar_parameters()) == {"bv23", "bv24", "astropy"}
    bv23 = solar_parameters("bv23")
    assert (bv23.R0, bv23.z_sun, bv23.U, bv23.V, bv23.W) == (8.27, 0.0, 11.1, 250.0, 7.47)
    assert "Binney & Vasiliev 2023" in bv23.reference and "Schoenrich" in bv23.reference
    bv24 = solar_parameters("BV24")  # case-insensitive
    assert (bv24.R0, bv24.z_sun, bv24.U, bv24.V, bv24.W) == (8.27, 0.025, 14.0, 251.3, 7.0)
    assert "Binney & Vasiliev 2024" in bv24.reference
    # the Sun in mocksky's frame: x = -R0, vy = -V so that vphi = +V and Lz > 0
    assert bv24.position == (-8.27, 0.0, 0.025)
    assert bv24.velocity == (14.0, -251.3, 7.0)
    x, y, _ = bv24.position
    vx, vy, _ = bv24.velocity
    assert x * vy - y * vx == pytest.approx(8.27 * 251.3)
    assert bv24.galcen_distance == pytest.approx(math.hypot(8.27, 0.025), rel=1e-15)
    assert solar_parameters(bv24) is bv24


def test_astropy_entry_follows_astropy_defaults():
    import astropy.units as u
    from astropy.coordinates import galactocentric_frame_defaults

    p = galactocentric_frame_defaults.get()
    sp = solar_parameters("astropy")
    assert sp.galcen_distance == pytest.approx(p["galcen_distance"].to_value(u.kpc), rel=1e-14)
    assert sp.z_sun == pytest.approx(p["z_sun"].to_value(u.kpc), rel=1e-14)
    v = p["galcen_v_sun"]
    comps = (v.d_x, v.d_y, v.d_z) if hasattr(v, "d_x") else (v.x, v.y, v.z)
    assert [sp.U, sp.V, sp.W] == pytest.approx([c.to_value(u.km / u.s) for c in comps], rel=1e-14)
    assert sp.galcen_ra == pytest.approx(p["galcen_coord"].ra.deg) and "astropy" in sp.reference
    # and the astropy frame it builds has the same attributes
    fr = sp.astropy_frame()
    assert fr.galcen_distance.to_value(u.kpc) == pytest.approx(p["galcen_distance"].to_value(u.kpc), rel=1e-14)


def test_meta_is_plain_and_complete():
    m = solar_parameters("bv24").meta()
    for k in ("name", "R0", "z_sun", "U", "V", "W", "reference", "galcen_distance", "position_kpc", "velocity_kms",
              "units", "frame"):
        assert k in m
    import json

    json.dumps(m)  # plain types only


def test_errors():
    with pytest.raises(KeyError, match=r"allowed: \['bv23', 'bv24', 'astropy'\]"):
        solar_parameters("schoenrich")
    with pytest.raises(ValueError, match="R0"):
        SolarParameters("bad", R0=-1.0, z_sun=0, U=0, V=0, W=0, reference="")
    with pytest.raises(ValueError, match="W = nan"):
        SolarParameters("bad", R0=8.0, z_sun=0, U=0, V=0, W=np.nan, reference="")
    sp = solar_parameters("bv23")
    with pytest.raises(Exception):
        sp.R0 = 8.0  # frozen
