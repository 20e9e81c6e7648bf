"""The contract every action finder satisfies (one shared test for the plug-in family).

* shapes: (N, 6) -> (N, 3), a single (6,) point -> (1, 3), Quantities accepted;
* Jphi = Lz = x vy - y vx (to rounding); Jr, Jz >= 0;
* invariance under rotation about the z axis and under reflection z -> -z, vz -> -vz (axisymmetric,
  z-symmetric potentials);
* unbound points give NaN;
* the ``actions_angles_frequencies`` actions equal ``actions`` and angles lie in [0, 2 pi).
"""
import astropy.units as u
import numpy as np
import pytest

from mocksky.model.actions import InterpolatedStaeckelFudge, SphericalActionFinder, StaeckelFudge
from mocksky.model.actions.base import ActionFinder
from mocksky.model.potential import Isochrone, KuzminKutuzov, MiyamotoNagai, NFW


def _disc_potential():
    return MiyamotoNagai(6e10, 3.0, 0.3) + NFW(8e11, 18.0)


FINDERS = {
    "spherical-isochrone": (SphericalActionFinder, lambda: Isochrone(3e11, 3.0)),
    "fudge-kuzmin-kutuzov": (StaeckelFudge, lambda: KuzminKutuzov(3e11, 3.0, 1.0)),
    "fudge-disc+halo": (StaeckelFudge, _disc_potential),
    "interpolated-disc+halo": (InterpolatedStaeckelFudge, _disc_potential),
}


def _points(pot, n=300, seed=7):
    """Bound disc-like and hotter points (E < 0 in ``pot``)."""
    rng = np.random.default_rng(seed)
    R = rng.uniform(1.0, 20.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    z = rng.normal(0, 1.0, n)
    vR, vz = rng.normal(0, 40, n), rng.normal(0, 30, n)
    vphi = rng.normal(180, 50, n)
    c, s = np.cos(phi), np.sin(phi)
    pv = np.stack([R * c, R * s, z, vR * c - vphi * s, vR * s + vphi * c, vz], axis=1)
    Phi = pot.potential(pv[:, :3])
    E = 0.5 * np.sum(pv[:, 3:] ** 2, axis=1) + Phi
    return pv[E < 0.3 * Phi]  # well bound


@pytest.fixture(scope="module", params=sorted(FINDERS))
def finder(request):
    cls, make_pot = FINDERS[request.param]
    pot = make_pot()
    f = cls(pot)
    f.test_points = _points(pot)
    return f


def test_action_finder_contract(finder):
    assert isinstance(finder, ActionFinder)
    pv = finder.test_points
    assert len(pv) > 200
    J = finder.actions(pv)
    assert J.shape == (len(pv), 3)
    assert np.all(np.isfinite(J))
    assert np.allclose(J[:, 2], pv[:, 0] * pv[:, 4] - pv[:, 1] * pv[:, 3], rtol=1e-12, atol=1e-9)
    assert np.all(J[:, :2] >= 0)
    # rotation about the z axis by an arbitrary angle
    a = 0.731
    c, s = np.cos(a), np.sin(a)
    rot = pv.copy()
    rot[:, 0], rot[:, 1] = c * pv[:, 0] - s * pv[:, 1], s * pv[:, 0] + c * pv[:, 1]
    rot[:, 3], rot[:, 4] = c * pv[:, 3] - s * pv[:, 4], s * pv[:, 3] + c * pv[:, 4]
    scale = J[:, 0] + J[:, 1] + np.abs(J[:, 2])
    assert np.max(np.abs(finder.actions(rot) - J).max(axis=1) / scale) < 1e-9
    # reflection through the plane
    ref = pv * np.array([1, 1, -1, 1, 1, -1])
    assert np.max(np.abs(finder.actions(ref) - J).max(axis=1) / scale) < 1e-9
    # single point and Quantities
    one = finder.actions((pv[0, :3] * u.kpc, (pv[0, 3:] * u.km / u.s).to(u.pc / u.Myr)))
    assert one.shape == (1, 3) and np.allclose(one[0], J[0], rtol=1e-9)
    # unbound point
    assert np.all(np.isnan(finder.actions([8.0, 0, 0, 0, 5000.0, 0])))
    # angles/frequencies API
    J2, ang, freq = finder.actions_angles_frequencies(pv[:50])
    assert J2.shape == ang.shape == freq.shape == (50, 3)
    assert np.all((ang >= 0) & (ang < 2 * np.pi))
    assert np.all(freq[:, 0] > 0)


def test_bad_posvel_shape_is_named(finder):
    with pytest.raises(ValueError, match="posvel"):
        finder.actions(np.zeros((4, 5)))
