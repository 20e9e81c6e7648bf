"""Exact spherical action finder against the closed forms of the isochrone (Binney & Tremaine 2008, Sect. 3.5)."""
import astropy.units as u
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from mocksky.model.actions import SphericalActionFinder
from mocksky.model.potential import Isochrone, MiyamotoNagai
from mocksky.units import G

M, B = 1e11, 2.0
GM = G * M


@pytest.fixture(scope="module")
def iso():
    return Isochrone(M, B)


@pytest.fixture(scope="module")
def points(iso):
    rng = np.random.default_rng(11)
    n = 3000
    x = rng.normal(size=(n, 3)) * 5.0
    v = rng.normal(size=(n, 3)) * 80.0
    pv = np.hstack([x, v])
    E = iso._phi_r(np.linalg.norm(x, axis=1)) + 0.5 * np.sum(v**2, axis=1)
    return pv[E < 0]


def isochrone_truth(pv):
    """Closed-form actions, frequencies and theta_r (Binney & Tremaine 2008, Sect. 3.5: isochrone)."""
    x, v = pv[:, :3], pv[:, 3:]
    r = np.linalg.norm(x, axis=1)
    E = -GM / (B + np.sqrt(B**2 + r**2)) + 0.5 * np.sum(v**2, axis=1)
    Lvec = np.cross(x, v)
    L = np.linalg.norm(Lvec, axis=1)
    Lz = Lvec[:, 2]
    Jr = GM / np.sqrt(-2 * E) - 0.5 * (L + np.sqrt(L**2 + 4 * GM * B))
    Om_r = (-2 * E) ** 1.5 / GM
    Om_L = 0.5 * Om_r * (1 + L / np.sqrt(L**2 + 4 * GM * B))
    c = GM / (-2 * E) - B
    e = np.sqrt(1 - L**2 / (GM * c) * (1 + B / c))
    s = 1 + np.sqrt(1 + r**2 / B**2)
    eta = np.arccos(np.clip((1 - (s - 2) * B / c) / e, -1, 1))
    eta = np.where(np.sum(x * v, axis=1) >= 0, eta, 2 * np.pi - eta)
    th_r = (eta - e * c / (c + B) * np.sin(eta)) % (2 * np.pi)
    return np.stack([Jr, L - np.abs(Lz), Lz], 1), th_r, Om_r, Om_L, np.sign(Lz)


def angdiff(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def test_isochrone_actions_frequencies_theta_r(iso, points):
    J, th, Om = SphericalActionFinder(iso).actions_angles_frequencies(points)
    Jt, th_r, Om_r, Om_L, sgn = isochrone_truth(points)
    # relative accuracy 1e-6 (all eccentricities, pericentre/apocentre down to ~1e-4 in this sample)
    np.testing.assert_allclose(J[:, 0], Jt[:, 0], rtol=1e-6)
    np.testing.assert_allclose(J[:, 1:], Jt[:, 1:], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(Om[:, 0], Om_r, rtol=1e-6)
    np.testing.assert_allclose(Om[:, 1], Om_L, rtol=1e-6)
    np.testing.assert_allclose(Om[:, 2], sgn * Om_L, rtol=1e-6)
    assert np.max(np.abs(angdiff(th[:, 0], th_r))) < 1e-6
    # actions() agrees with the full call
    np.testing.assert_array_equal(SphericalActionFinder(iso).actions(points), J)


def test_isochrone_nearly_radial_and_circular(iso):
    # tangential speed from 1e-4 to 200 km/s at r = 5 kpc: from nearly radial to nearly circular orbits
    vt = np.logspace(-4, np.log10(200.0), 30)
    pv = np.zeros((30, 6))
    pv[:, 0] = 5.0
    pv[:, 4] = vt
    pv[:, 3] = np.where(vt > 150, 0.0, 50.0)
    J, th, Om = SphericalActionFinder(iso).actions_angles_frequencies(pv)
    Jt, th_r, Om_r, Om_L, _ = isochrone_truth(pv)
    np.testing.assert_allclose(J[:, 0], Jt[:, 0], rtol=1e-6, atol=1e-9 * Jt[:, 0].max())
    np.testing.assert_allclose(Om[:, 1], Om_L, rtol=1e-6)


def test_angles_advance_linearly_along_orbits(iso):
    """theta(t) = theta(0) + Omega t along integrated orbits (tests theta_z, theta_phi conventions)."""
    fin = SphericalActionFinder(iso)

    def rhs(t, w):
        return np.concatenate([w[3:], iso.force(w[None, :3])[0]])

    t = np.linspace(0.0, 0.3, 40)
    for pv0 in ([6.0, 1.0, 2.0, 40.0, 120.0, 60.0], [3.0, -2.0, -1.0, -100.0, -50.0, 80.0],
                [8.0, 0.0, 0.0, 10.0, -150.0, 0.0]):
        orb = solve_ivp(rhs, (0, t[-1]), pv0, t_eval=t, rtol=1e-12, atol=1e-12, method="DOP853").y.T
        J, th, Om = fin.actions_angles_frequencies(orb)
        assert np.ptp(J, axis=0).max() < 1e-7 * np.abs(J).max()
        pred = th[0] + np.outer(t, Om[0])
        assert np.max(np.abs(angdiff(th, pred))) < 1e-6


def test_quantity_input_and_single_point(iso, points):
    fin = SphericalActionFinder(iso)
    ref = fin.actions(points[:5])
    got = fin.actions((points[:5, :3] * 1000 * u.pc, points[:5, 3:] * 1000 * u.m / u.s))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(fin.actions(points[0]), ref[:1], rtol=1e-12)


def test_unbound_gives_nan(iso):
    J = SphericalActionFinder(iso).actions([[5.0, 0, 0, 0, 1000.0, 0]])
    assert np.all(np.isnan(J[:, :2]))


def test_errors(iso):
    with pytest.raises(ValueError, match="spherical"):
        SphericalActionFinder(MiyamotoNagai(1e10, 3.0, 0.3))
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        SphericalActionFinder(iso).actions(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        SphericalActionFinder(iso).actions([[np.nan, 0, 0, 0, 0, 0]])
