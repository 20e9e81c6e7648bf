"""Stäckel fudge: exactness in a Stäckel potential, the spherical limit, and comparison with galpy.

Tolerance ladder: exact Stäckel potential (Kuzmin-Kutuzov) with its true focal distance < 1e-5
(in practice ~1e-9); estimated focal distance in the isochrone ~1e-3; galpy's independent
implementation of the same fudge at the same focal distances < 1e-3 (median, in practice ~1e-8).
"""
import astropy.units as u
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from mocksky.model.actions import SphericalActionFinder, StaeckelFudge
from mocksky.model.potential import Composite, Hernquist, Isochrone, KuzminKutuzov, MiyamotoNagai, NFW
from mocksky.units import G

RO, VO = 8.0, 220.0  # galpy natural units used by the wrappers
# galpy warns (galpyWarning, a direct Warning subclass) about its missing C extensions on import
galpy_quiet = pytest.mark.filterwarnings("ignore::Warning:galpy.*")


def angdiff(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def disc_points(pot, n, rng, Rmin=2.0, Rmax=15.0, hz=0.6, sig=(40.0, 30.0)):
    R = rng.uniform(Rmin, Rmax, n)
    z = rng.normal(0.0, hz, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    vc = pot.vcirc(R)
    vR = rng.normal(0, sig[0], n)
    vz = rng.normal(0, sig[1], n)
    vT = vc - 10.0 + rng.normal(0, 25.0, n)
    c, s = np.cos(ph), np.sin(ph)
    return np.stack([R * c, R * s, z, vR * c - vT * s, vR * s + vT * c, vz], 1)


@pytest.fixture(scope="module")
def kk():
    return KuzminKutuzov(5e11, 3.0, 1.0)


# ----------------------------------------------------------------------------- exact Stäckel potential
@galpy_quiet
def test_kuzmin_kutuzov_matches_galpy_exact_staeckel(kk):
    """Exact actions in the Kuzmin-Kutuzov potential vs galpy's own Stäckel potential (independent code)."""
    from galpy.actionAngle import actionAngleStaeckel
    from galpy.potential import KuzminKutuzovStaeckelPotential

    gp = KuzminKutuzovStaeckelPotential(amp=G * kk.mass / (RO * VO**2), ac=kk.a / kk.c,
                                        Delta=kk.focal_distance / RO, ro=RO, vo=VO)
    R, z = np.array([4.0, 9.0]), np.array([0.5, -2.0])
    np.testing.assert_allclose(gp(R * u.kpc, z * u.kpc, use_physical=False) * VO**2, kk._phi(R, z), rtol=1e-12)
    rng = np.random.default_rng(5)
    pv = disc_points(kk, 40, rng)
    Rp = np.hypot(pv[:, 0], pv[:, 1])
    vR = (pv[:, 0] * pv[:, 3] + pv[:, 1] * pv[:, 4]) / Rp
    vT = (pv[:, 0] * pv[:, 4] - pv[:, 1] * pv[:, 3]) / Rp
    aA = actionAngleStaeckel(pot=gp, delta=kk.focal_distance / RO, c=False)
    jr, lz, jz = aA(Rp / RO, vR / VO, vT / VO, pv[:, 2] / RO, pv[:, 5] / VO, use_physical=False)
    Jg = np.stack([jr, jz, lz], 1) * RO * VO
    J = StaeckelFudge(kk, focal_distance=kk.focal_distance).actions(pv)
    np.testing.assert_allclose(J, Jg, rtol=1e-5)


def test_kuzmin_kutuzov_integrals_and_angles_along_orbits(kk):
    """Actions and frequencies are constant and angles advance as Omega t along integrated orbits."""
    fud = StaeckelFudge(kk, focal_distance=kk.focal_distance)

    def rhs(t, w):
        return np.concatenate([w[3:], kk.force(w[None, :3])[0]])

    t = np.linspace(0.0, 1.5, 60)
    for pv0 in ([8.0, 0, 0.5, 30, 150, 40], [3.0, 1, 2.5, -60, 60, 90], [1.0, 0.0, 0.1, 10, 5, 10],
                [10.0, 0, 6, 80, -20, -50]):
        orb = solve_ivp(rhs, (0, t[-1]), pv0, t_eval=t, rtol=1e-12, atol=1e-12, method="DOP853").y.T
        J, th, Om = fud.actions_angles_frequencies(orb)
        assert np.max(np.ptp(J, axis=0) / np.abs(J).mean(axis=0)) < 1e-8
        assert np.max(np.ptp(Om, axis=0) / np.abs(Om).mean(axis=0)) < 1e-8
        assert np.max(np.abs(angdiff(th, th[0] + np.outer(t, Om.mean(axis=0))))) < 1e-5


def test_focal_distance_estimate_recovers_staeckel_value(kk):
    rng = np.random.default_rng(2)
    pv = disc_points(kk, 500, rng, Rmin=0.5, Rmax=30.0, hz=2.0)
    fud = StaeckelFudge(kk)
    np.testing.assert_allclose(fud.focal_distance(pv), kk.focal_distance, rtol=1e-5)
    J = fud.actions(pv)
    Jt = StaeckelFudge(kk, focal_distance=kk.focal_distance).actions(pv)
    np.testing.assert_allclose(J, Jt, rtol=1e-6)


# ----------------------------------------------------------------------------- spherical limit
def test_isochrone_with_estimated_focal_distance():
    iso = Isochrone(1e11, 2.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3)) * 5
    v = rng.normal(size=(4000, 3)) * 80
    pv = np.hstack([x, v])
    pv = pv[iso._phi_r(np.linalg.norm(x, axis=1)) + 0.5 * np.sum(v**2, 1) < 0]
    J, th, Om = StaeckelFudge(iso).actions_angles_frequencies(pv)
    Js, ths, Oms = SphericalActionFinder(iso).actions_angles_frequencies(pv)
    rel = np.abs(J[:, :2] / Js[:, :2] - 1)
    assert np.median(rel) < 1e-5
    assert rel.max() < 3e-3
    relO = np.abs(Om / Oms - 1)
    assert np.median(relO) < 1e-5 and relO.max() < 5e-3
    assert np.max(np.abs(angdiff(th, ths))) < 5e-3


def test_circular_and_planar_orbits_give_epicycle_frequencies():
    pot = MiyamotoNagai(6e10, 3.0, 0.3) + NFW(8e11, 16.0)
    R = np.array([3.0, 6.0, 8.0, 12.0])
    vc = pot.vcirc(R)
    pv = np.zeros((4, 6))
    pv[:, 0] = R
    pv[:, 4] = vc
    J, th, Om = StaeckelFudge(pot).actions_angles_frequencies(pv)
    kappa, nu, Omega = pot.epicycle_frequencies(R)
    assert np.all(np.abs(J[:, :2]) < 1e-6 * J[:, 2:])
    np.testing.assert_allclose(Om[:, 0], kappa, rtol=1e-4)
    np.testing.assert_allclose(Om[:, 1], nu, rtol=1e-4)
    np.testing.assert_allclose(Om[:, 2], Omega, rtol=1e-4)


# ----------------------------------------------------------------------------- comparison with galpy
class MockskyAsGalpy:
    """A mocksky potential wrapped as a galpy Potential (natural units ro = 8 kpc, vo = 220 km/s).

    Potential and forces come from the potential's compiled kernel (the function the fudge uses),
    second derivatives from ``_hess``.
    """

    def __new__(cls, pot):
        from galpy.potential import Potential as GalpyPotential

        func, params = pot.kernel()

        def kern(R, z, k):
            R, z = np.broadcast_arrays(np.asarray(R, float) * RO, np.asarray(z, float) * RO)
            out = np.array([func(a, abs(b), params)[k] for a, b in zip(R.ravel(), z.ravel())])
            if k == 2:
                out *= np.sign(z.ravel())
            return out.reshape(R.shape) if R.ndim else out[0]

        class _Wrapped(GalpyPotential):
            def __init__(self):
                GalpyPotential.__init__(self, amp=1.0, ro=RO, vo=VO)
                self.hasC = False
                self.hasC_dxdv = False

            def _evaluate(self, R, z, phi=0.0, t=0.0):
                return kern(R, z, 0) / VO**2

            def _Rforce(self, R, z, phi=0.0, t=0.0):
                return -kern(R, z, 1) * RO / VO**2

            def _zforce(self, R, z, phi=0.0, t=0.0):
                return -kern(R, z, 2) * RO / VO**2

            def _phitorque(self, R, z, phi=0.0, t=0.0):
                return 0.0

            def _R2deriv(self, R, z, phi=0.0, t=0.0):
                return pot._hess(np.asarray(R) * RO, np.asarray(z) * RO)[0] * RO**2 / VO**2

            def _z2deriv(self, R, z, phi=0.0, t=0.0):
                return pot._hess(np.asarray(R) * RO, np.asarray(z) * RO)[1] * RO**2 / VO**2

            def _Rzderiv(self, R, z, phi=0.0, t=0.0):
                return pot._hess(np.asarray(R) * RO, np.asarray(z) * RO)[2] * RO**2 / VO**2

        return _Wrapped()


@pytest.fixture(scope="module")
def galactic_potential():
    """The BV23 initial potential (falls back to an analytic Milky-Way-like composite if unavailable)."""
    try:
        from mocksky.model.potential import load_potential

        return load_potential("bv23")
    except Exception:  # pragma: no cover - only while the Poisson solvers are missing
        return Composite([MiyamotoNagai(3.5e10, 2.5, 0.25), MiyamotoNagai(1.5e10, 2.1, 0.8), NFW(8e11, 18.0),
                          Hernquist(1.1e10, 0.7)])


@pytest.fixture(scope="module")
def galpy_comparison_points(galactic_potential):
    rng = np.random.default_rng(3)
    pv = disc_points(galactic_potential, 50, rng, Rmin=3.0, Rmax=12.0, hz=0.8)
    R = np.hypot(pv[:, 0], pv[:, 1])
    vR = (pv[:, 0] * pv[:, 3] + pv[:, 1] * pv[:, 4]) / R
    vT = (pv[:, 0] * pv[:, 4] - pv[:, 1] * pv[:, 3]) / R
    return pv, R, vR, vT


@galpy_quiet
def test_galpy_staeckel_same_focal_distance(galactic_potential, galpy_comparison_points):
    """galpy's actionAngleStaeckel (pure Python, c=False) at the same focal distances.

    galpy takes the u-motion potential from the equatorial line v = pi/2, which mocksky offers as
    ``u_cut="equator"``; its default (``u_cut="point"``, the line through the point, Binney 2012,
    as in Agama) is compared with galpy's single-point class told to use that line.
    """
    from galpy.actionAngle import actionAngleStaeckel

    pv, R, vR, vT = galpy_comparison_points
    gp = MockskyAsGalpy(galactic_potential)
    fud_eq = StaeckelFudge(galactic_potential, u_cut="equator")
    delta = fud_eq.focal_distance(pv)
    aA = actionAngleStaeckel(pot=gp, delta=delta / RO, c=False)
    jr, lz, jz = aA(R / RO, vR / VO, vT / VO, pv[:, 2] / RO, pv[:, 5] / VO, use_physical=False)
    Jg = np.stack([jr, jz, lz], 1) * RO * VO
    rel = np.abs(fud_eq.actions(pv) / Jg - 1)
    assert np.median(rel) < 1e-3
    assert np.percentile(rel, 90) < 1e-3


@galpy_quiet
def test_galpy_staeckel_point_cut(galactic_potential, galpy_comparison_points):
    from galpy.actionAngle.actionAngleStaeckel import actionAngleStaeckelSingle
    from galpy.util import coords

    pv, R, vR, vT = galpy_comparison_points
    gp = MockskyAsGalpy(galactic_potential)
    fud = StaeckelFudge(galactic_potential)
    delta = fud.focal_distance(pv)
    Jg = np.empty((len(R), 2))
    for i in range(len(R)):
        _, v0 = coords.Rz_to_uv(R[i] / RO, pv[i, 2] / RO, delta=delta[i] / RO)
        try:
            s = actionAngleStaeckelSingle(R[i] / RO, vR[i] / VO, vT[i] / VO, pv[i, 2] / RO, pv[i, 5] / VO, pot=gp,
                                          delta=delta[i] / RO, _v0u=v0)
        except TypeError:  # pragma: no cover - other galpy versions
            pytest.skip("this galpy version cannot take the u-motion potential along the point's v line")
        Jg[i] = np.atleast_1d(s.JR())[0] * RO * VO, np.atleast_1d(s.Jz())[0] * RO * VO
    rel = np.abs(fud.actions(pv)[:, :2] / Jg - 1)
    assert np.median(rel) < 1e-3
    assert np.percentile(rel, 90) < 1e-3


# ----------------------------------------------------------------------------- interface
def test_fixed_focal_distance_forms_and_errors(kk):
    rng = np.random.default_rng(8)
    pv = disc_points(kk, 10, rng)
    d = kk.focal_distance
    ref = StaeckelFudge(kk, focal_distance=d).actions(pv)
    np.testing.assert_allclose(StaeckelFudge(kk, focal_distance=np.full(10, d)).actions(pv), ref, rtol=1e-14)
    np.testing.assert_allclose(StaeckelFudge(kk, focal_distance=d * 1000 * u.pc).actions(pv), ref, rtol=1e-12)
    np.testing.assert_allclose(StaeckelFudge(kk, focal_distance=d).focal_distance(pv), d)
    got = StaeckelFudge(kk, focal_distance=d).actions((pv[:, :3] * u.kpc, pv[:, 3:] * u.km / u.s))
    np.testing.assert_allclose(got, ref, rtol=1e-14)
    with pytest.raises(ValueError, match="focal_distance has 10 values"):
        StaeckelFudge(kk, focal_distance=np.full(10, d)).actions(pv[:5])
    with pytest.raises(ValueError, match="focal_distance must be"):
        StaeckelFudge(kk, focal_distance=-1.0)
    with pytest.raises(ValueError, match="u_cut"):
        StaeckelFudge(kk, u_cut="equatorial")
    with pytest.raises(ValueError, match="single Quantity"):
        StaeckelFudge(kk, focal_distance=d).actions(pv * u.kpc)
    unbound = StaeckelFudge(kk, focal_distance=d).actions([[8.0, 0, 0, 0, 3000.0, 0]])
    assert np.all(np.isnan(unbound))


# ----------------------------------------------------------------------------- against orbit integration
@pytest.mark.slow
def test_fudge_accuracy_against_surfaces_of_section():
    """The fudge's own error against actions measured on surfaces of section (scripts/fudge_accuracy.py).

    Binney (2012) finds errors of order 1% for disc orbits; here ~60 orbits in the BV23 initial
    potential: the median relative errors of Jr and Jz must be below 3%.
    """
    import importlib.util
    import io
    from contextlib import redirect_stdout
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "fudge_accuracy.py"
    spec = importlib.util.spec_from_file_location("fudge_accuracy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    buf = io.StringIO()
    with redirect_stdout(buf):
        mod.main(["--norbits", "60", "--periods", "150"])
    vals = dict(line.split(":")[:2] for line in buf.getvalue().splitlines() if ":" in line and not line.startswith("#"))
    assert float(vals["fudge_Jr_relerr_median"]) < 0.03
    assert float(vals["fudge_Jz_relerr_median"]) < 0.03


def test_energy_grid_skips_unstable_centre(caplog):
    """A central hill (a small positive-mass 'anti-Plummer' inside a large Plummer, like a cored bulge inside a
    ring) makes dPhi/dR < 0 within ~b2 of the centre: the table starts outside it, and E_c is increasing there."""
    import logging
    import math

    import numba

    from mocksky.model.actions._common import EnergyGrid
    from mocksky.units import G

    @numba.njit(cache=False)
    def hill(R, z, p):
        r2 = R * R + z * z
        a = 1.0 / math.sqrt(r2 + p[1] * p[1])
        c = 1.0 / math.sqrt(r2 + p[3] * p[3])
        phi = -G * p[0] * a + G * p[2] * c
        dr = G * p[0] * a ** 3 - G * p[2] * c ** 3  # (1/r) dPhi/dr
        return phi, dr * R, dr * z

    p = np.array([1e11, 2.0, 1e5, 0.01])  # inside r ~ 0.02 kpc the hill wins: G M2/b2^3 > G M1/b1^3
    with caplog.at_level(logging.WARNING, logger="mocksky.model.actions._common"):
        eg = EnergyGrid(hill, p, 1e-3, 1e3, n=200)
    assert "unstable" in caplog.text
    R0 = math.exp(eg.logR[0])
    assert 0.005 < R0 < 0.05
    assert np.all(np.diff(eg.Ec) > 0) and np.all(np.isfinite(eg.logLc))
    _, dR, _ = hill(R0, 0.0, p)
    assert dR > 0
    # an unstable potential everywhere still fails
    with pytest.raises(ValueError, match="not strictly increasing"):
        EnergyGrid(hill, np.array([1e5, 2.0, 1e11, 0.01]), 1e-3, 1e3, n=200)
