"""Multipole expansion: accuracy against analytic and directly integrated potentials, Poisson
self-consistency, continuity at the grid ends, coefficient files and evaluation speed.

Measured figures are printed (run with ``pytest -s`` to see them).
"""
import os
import time

import numpy as np
import pytest
from scipy import integrate

from mocksky.model.potential import DensitySum, Disk, Hernquist, Logarithmic, NFW, Spheroid
from mocksky.model.potential.multipole import Multipole
from mocksky.units import G

from potential_contract import check_potential_contract

# BV23 bulge (Agama Spheroid): densityNorm 4e9, q 0.5, gamma 1, beta 1, alpha 1, a 1, rcut 0.7, xi 1
RHO0, Q, RCUT = 4e9, 0.5, 0.7


def bulge():
    return Spheroid(RHO0, 1.0, gamma=1.0, beta=1.0, alpha=1.0, outer_cutoff_radius=RCUT, cutoff_strength=1.0,
                    axis_ratio_z=Q)


def bulge_direct(R, z, grad=True):
    """Phi and gradient of the bulge by 1D quadrature over homoeoids (BT08 eqs. 2.140-2.141).

    For rho = rho0 (a/m) exp(-m/rcut), m^2 = R^2 + z^2/q^2, psi(inf) - psi(m) = 2 rho0 a rcut exp(-m/rcut), so
    Phi = -2 pi G q rho0 a rcut int_0^inf exp(-m(tau)/rcut) dtau / [(1+tau) sqrt(q^2+tau)],
    m^2(tau) = R^2/(1+tau) + z^2/(q^2+tau); dPhi/dR and dPhi/dz follow by differentiating under the integral.
    """
    def m(t):
        return np.sqrt(R * R / (1 + t) + z * z / (Q * Q + t))

    def f(s, kind):
        t = np.exp(s)  # tau = e^s
        mm = m(t)
        if kind == 0:
            return t * np.exp(-mm / RCUT) / ((1 + t) * np.sqrt(Q * Q + t))
        rho = RHO0 / mm * np.exp(-mm / RCUT)
        if kind == 1:
            return t * rho / ((1 + t) ** 2 * np.sqrt(Q * Q + t))
        return t * rho / ((1 + t) * (Q * Q + t) ** 1.5)

    opt = dict(epsabs=0, epsrel=1e-12, limit=400)
    phi = -2 * np.pi * G * Q * RHO0 * RCUT * integrate.quad(f, -40, 60, args=(0,), **opt)[0]
    if not grad:
        return phi
    gR = 2 * np.pi * G * Q * R * integrate.quad(f, -40, 60, args=(1,), **opt)[0]
    gz = 2 * np.pi * G * Q * z * integrate.quad(f, -40, 60, args=(2,), **opt)[0]
    return phi, gR, gz


BULGE_POINTS = np.array([(0.01, 0.0), (0.05, 0.02), (0.3, 0.0), (0.0, 0.3), (0.5, 0.5), (1.0, 0.2), (2.0, 1.0),
                         (0.2, 1.5), (4.0, 0.0), (8.0, 0.5)])


@pytest.fixture(scope="module")
def bulge_reference():
    return np.array([bulge_direct(R, z) for R, z in BULGE_POINTS])


class _Unflagged:
    """A density without the ``spherical`` flag, to exercise the full angular machinery."""

    def __init__(self, dens):
        self.dens = dens

    def _density(self, R, z):
        return self.dens._density(R, z)


def _points_over(a, n=3000, seed=1):
    rng = np.random.default_rng(seed)
    r = a * np.exp(rng.uniform(np.log(0.01), np.log(100.0), n))
    th = rng.uniform(0, np.pi, n)
    return r * np.sin(th), r * np.cos(th)


def _errors(mp, pot, R, z):
    ephi = np.max(np.abs(mp._phi(R, z) / pot._phi(R, z) - 1))
    gR, gz = mp._grad(R, z)
    gR0, gz0 = pot._grad(R, z)
    eF = np.max(np.hypot(gR - gR0, gz - gz0) / np.hypot(gR0, gz0))
    return ephi, eF


# ------------------------------------------------------------------------------------------ analytic profiles
@pytest.mark.parametrize("grid", ["explicit", "auto"])
def test_hernquist(grid):
    pot = Hernquist(1e11, 2.0)
    kw = dict(rmin=1e-3 * pot.a, rmax=1e3 * pot.a) if grid == "explicit" else {}
    mp = Multipole.from_density(pot, gridsize=50, lmax=4, **kw)
    assert mp.lmax == 0 and mp.spherical            # spherical density -> monopole
    R, z = _points_over(pot.a)
    ephi, eF = _errors(mp, pot, R, z)
    print(f"\nHernquist ({grid} grid {mp.rmin:.3g}-{mp.rmax:.3g} kpc, 50 nodes), 0.01-100 a: "
          f"max|dPhi/Phi| = {ephi:.1e}, max|dF|/|F| = {eF:.1e}")
    assert ephi < 1e-5 and eF < 1e-4
    # the total mass comes from the outer power-law extrapolation: exact only as rmax -> inf
    assert mp.mass == pytest.approx(1e11, rel=1e-5)
    r = np.array([0.5, 2.0, 50.0])
    assert np.allclose(mp.enclosed_mass(r), 1e11 * r**2 / (r + 2.0) ** 2, rtol=1e-5)


def test_hernquist_full_angular_expansion():
    """Without the spherical flag all harmonics are computed; those with l > 0 must vanish."""
    pot = Hernquist(1e11, 2.0)
    mp = Multipole.from_density(_Unflagged(pot), rmin=2e-3, rmax=2e3, gridsize=50, lmax=8)
    assert mp.lmax == 8 and not mp.spherical
    _, phi_l, _, rho_l = mp.coefficients()
    assert np.max(np.abs(phi_l[:, 1:])) < 1e-12 * np.max(np.abs(phi_l[:, 0]))
    ephi, eF = _errors(mp, pot, *_points_over(pot.a))
    assert ephi < 1e-5 and eF < 1e-4


def test_nfw():
    """NFW: divergent mass but finite potential; node values come from the density integrated to infinity."""
    pot = NFW(8e11, 20.0)
    mp = Multipole.from_density(pot, rmin=1e-3 * pot.a, rmax=1e3 * pot.a, gridsize=50)
    R, z = _points_over(pot.a)
    ephi, eF = _errors(mp, pot, R, z)
    print(f"\nNFW (grid 1e-3-1e3 a, 50 nodes), 0.01-100 a: max|dPhi/Phi| = {ephi:.1e}, max|dF|/|F| = {eF:.1e}")
    assert ephi < 1e-5 and eF < 1e-4
    assert mp.mass == np.inf
    # beyond rmax the extrapolation stays close for a while (density ~ r^-3 is almost a power law there)
    r = np.array([2e3, 1e4]) * pot.a
    assert np.allclose(mp._phi(r, 0 * r), pot._phi(r, 0 * r), rtol=3e-3)


def test_auto_grid_choice():
    mp = Multipole.from_density(Hernquist(1e11, 2.0), gridsize=40)
    # enclosed mass fractions 1e-4 and 1 - 1e-4: x^2/(1+x)^2 = f  ->  r = a sqrt(f) / (1 - sqrt(f))
    for f, r in ((1e-4, mp.rmin), (1 - 1e-4, mp.rmax)):
        assert r == pytest.approx(2.0 * np.sqrt(f) / (1 - np.sqrt(f)), rel=2e-2)
    nfw = Multipole.from_density(NFW(8e11, 20.0), gridsize=40)
    assert nfw.rmax == pytest.approx(1e4 * 20.0, rel=0.05)   # divergent mass: 1e4 x argmax r^2 rho = a


# ------------------------------------------------------------------------------------------ flattened bulge
def test_flattened_bulge_vs_direct_integration(bulge_reference):
    ref = bulge_reference
    R, z = BULGE_POINTS.T
    bounds = {4: (2e-2, 1e-1), 8: (3e-4, 3e-3), 12: (1.2e-5, 3e-4), 16: (1e-6, 3e-5)}
    prev = None
    for lmax, (tphi, tF) in bounds.items():
        mp = Multipole.from_density(bulge(), rmin=1e-3, rmax=50.0, gridsize=50, lmax=lmax)
        phi = mp._phi(R, z)
        gR, gz = mp._grad(R, z)
        ephi = np.abs(phi / ref[:, 0] - 1)
        eF = np.hypot(gR - ref[:, 1], gz - ref[:, 2]) / np.hypot(ref[:, 1], ref[:, 2])
        print(f"\nbulge q=0.5 lmax={lmax:2d}: max|dPhi/Phi| = {ephi.max():.1e}, max|dF|/|F| = {eF.max():.1e}")
        assert ephi.max() < tphi and eF.max() < tF
        if prev is not None:
            assert ephi.max() < prev     # spectral convergence in lmax
        prev = ephi.max()


def test_flattened_bulge_radial_grid_is_not_the_limit(bulge_reference):
    """At lmax = 16 the error is set by the angular truncation: 40 or 80 radial nodes give the same answer."""
    R, z = BULGE_POINTS.T
    a = Multipole.from_density(bulge(), rmin=1e-3, rmax=50.0, gridsize=40, lmax=16)
    b = Multipole.from_density(bulge(), rmin=1e-3, rmax=50.0, gridsize=80, lmax=16)
    assert np.max(np.abs(a._phi(R, z) / b._phi(R, z) - 1)) < 1e-7
    assert np.max(np.abs(b._phi(R, z) / bulge_reference[:, 0] - 1)) < 1e-6


def test_bulge_mass_and_auto_grid():
    mp = Multipole.from_density(bulge(), lmax=8)
    # M = 4 pi q rho0 a rcut^2 for rho = rho0 (a/m) exp(-m/rcut); the 1e-4 of the mass beyond the automatic
    # rmax is carried by the power-law extrapolation, which is good to ~1e-6
    assert mp.mass == pytest.approx(4 * np.pi * Q * RHO0 * RCUT**2, rel=5e-6)
    # mass inside the sphere r = 1 kpc, 4 pi int_0^1 r^2 rho_0(r) dr with rho_0 the angular average
    b = bulge()
    inner = integrate.dblquad(lambda mu, r: 4 * np.pi * r * r * float(b._density(r * np.sqrt(1 - mu * mu), r * mu)),
                              0, 1, 0, 1, epsabs=0, epsrel=1e-10)[0]
    assert mp.enclosed_mass(1.0) == pytest.approx(inner, rel=1e-7)
    assert 0.005 < mp.rmin < 0.02 and 5 < mp.rmax < 10


def test_contract_bulge():
    mp = Multipole.from_density(bulge(), gridsize=50, lmax=8)
    errs = check_potential_contract(mp, grad_tol=1e-7, hess_tol=1e-6, rho_tol=1e-10)
    print(f"\ncontract (bulge lmax 8): {errs}")
    assert errs["kernel"] < 1e-14


# ------------------------------------------------------------------------------------------ Poisson consistency
def test_poisson_self_consistency():
    # spherical: between nodes the Laplacian of the quintic spline; at the nodes the input density exactly
    pot = Hernquist(1e11, 2.0)
    mp = Multipole.from_density(pot, rmin=2e-3, rmax=2e3, gridsize=50)
    R, z = _points_over(pot.a)
    err = np.max(np.abs(mp._density(R, z) / pot._density(R, z) - 1))
    rk = mp.radii[5:-5]
    err_nodes = np.max(np.abs(mp._density(rk * 0.6, rk * 0.8) / pot._density(rk * 0.6, rk * 0.8) - 1))
    # flattened: limited by the truncation of the density's Legendre series
    b = bulge()
    mb = Multipole.from_density(b, rmin=1e-3, rmax=50.0, gridsize=50, lmax=16)
    Rb, zb = BULGE_POINTS[1:-2].T
    errb = np.max(np.abs(mb._density(Rb, zb) / b._density(Rb, zb) - 1))
    print(f"\nPoisson: Hernquist rho rel err {err:.1e} (nodes {err_nodes:.1e}); bulge lmax 16: {errb:.1e}")
    assert err < 2e-4 and err_nodes < 1e-11 and errb < 1e-3


def test_disc_densities_are_resolved_in_angle():
    """A thin gas disc with a hole and a thick exponential disc (kink at z = 0): correct total masses."""
    gas = Disk(1e8, 5.0, -0.05, inner_cutoff_radius=4.0)
    thick = Disk(2e8, 3.0, 0.7)
    mp = Multipole.from_density(DensitySum([gas, thick]), gridsize=60, lmax=8)
    assert mp.mass == pytest.approx(gas.total_mass() + thick.total_mass(), rel=1e-5)


# ------------------------------------------------------------------------------------------ extrapolation
def test_continuity_at_grid_ends():
    mp = Multipole.from_density(bulge(), gridsize=50, lmax=8)
    th = 0.7
    for rb in (mp.rmin, mp.rmax):
        vals = []
        for r in (rb * (1 - 1e-10), rb * (1 + 1e-10)):
            R, z = r * np.sin(th), r * np.cos(th)
            vals.append(np.array([mp._phi(R, z), *mp._grad(R, z), *mp._hess(R, z), mp._density(R, z)], dtype=float))
        rel = np.abs(vals[0] - vals[1]) / np.abs(vals[1])
        assert np.all(rel < 1e-7), f"discontinuity at r = {rb}: {rel}"


def test_outer_extrapolation_is_keplerian_and_centre_finite():
    mp = Multipole.from_density(bulge(), gridsize=50, lmax=8)
    r = np.array([1e3, 1e5])
    assert np.allclose(mp._phi(r, 0 * r), -G * mp.mass / r, rtol=1e-6)
    # below rmin the monopole is continued as const + c r^s with s fitted at rmin: the error in Phi(0) is
    # (1 - s) (Phi(rmin) - Phi(0)) ~ rmin^2 for this cusp (s -> 1)
    ref0 = bulge_direct(0.0, 0.0, grad=False)
    phi0 = mp._phi(0.0, 0.0)
    assert np.isfinite(phi0) and phi0 == pytest.approx(ref0, rel=1e-4)      # automatic rmin = 0.008 kpc
    fine = Multipole.from_density(bulge(), rmin=1e-3, rmax=10.0, gridsize=50, lmax=8)
    assert fine._phi(0.0, 0.0) == pytest.approx(ref0, rel=2e-6)
    gR, gz = mp._grad(0.0, 0.0)
    assert gR == 0 and gz == 0


# ------------------------------------------------------------------------------------------ file I/O
def test_save_load_round_trip(tmp_path):
    mp = Multipole.from_density(bulge(), gridsize=40, lmax=6, name="bulge")
    path = tmp_path / "bulge.coef"
    mp.to_file(path)
    assert sorted(os.listdir(tmp_path)) == ["bulge.coef"]       # no temporary file left behind
    text = path.read_text().splitlines()
    assert text[0] == "Multipole" and "gridSizeR 40" in text and "lMax 6" in text
    back = Multipole.from_file(path)
    assert back.name == "bulge" and back.lmax == 6
    assert np.array_equal(back._params, mp._params)             # bit-for-bit
    R, z = BULGE_POINTS.T
    assert np.array_equal(back._phi(R, z), mp._phi(R, z))
    for a, b in zip(back.coefficients(), mp.coefficients()):
        assert np.array_equal(a, b)
    # overwrite in place
    Multipole.from_density(Hernquist(1e10, 1.0), gridsize=10).to_file(path)
    assert Multipole.from_file(path).lmax == 0


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.coef"
    bad.write_text("CylSpline\n")
    with pytest.raises(ValueError, match="first line must be 'Multipole'"):
        Multipole.from_file(bad)
    mp = Multipole.from_density(Hernquist(1e10, 1.0), gridsize=10)
    mp.to_file(bad)
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join(lines[:-2]) + "\n")                  # truncated last block
    with pytest.raises(ValueError, match="#rho"):
        Multipole.from_file(bad)
    with pytest.raises(FileNotFoundError):
        Multipole.from_file(tmp_path / "missing.coef")


# ------------------------------------------------------------------------------------------ errors
def test_bad_arguments():
    h = Hernquist(1e10, 1.0)
    with pytest.raises(ValueError, match="gridsize"):
        Multipole.from_density(h, gridsize=2)
    with pytest.raises(ValueError, match="lmax"):
        Multipole.from_density(h, lmax=-2)
    with pytest.raises(ValueError, match="rmin < rmax"):
        Multipole.from_density(h, rmin=10.0, rmax=1.0)
    with pytest.raises(ValueError, match="rmin"):
        Multipole.from_density(h, rmin=-1.0, rmax=1.0)
    with pytest.raises(ValueError, match="potential is infinite"):
        Multipole.from_density(Logarithmic(200.0, 1.0, 0.9), rmin=0.1, rmax=100.0)
    mp = Multipole.from_density(h, gridsize=10)
    assert np.isnan(mp._phi(np.nan, 1.0)) and np.all(np.isnan(mp._grad(np.nan, 1.0)))
    with pytest.raises(ValueError, match="uniformly spaced"):
        Multipole(np.array([1.0, 2.0, 5.0]), -np.ones((3, 1)), np.ones((3, 1)), np.ones((3, 1)))


# ------------------------------------------------------------------------------------------ speed
def test_evaluation_speed():
    mp = Multipole.from_density(bulge(), gridsize=50, lmax=4)
    rng = np.random.default_rng(2)
    n = 1_000_000
    R = np.exp(rng.uniform(np.log(0.01), np.log(30.0), n))
    z = rng.normal(0.0, 2.0, n)
    mp._phi(R[:10], z[:10]), mp._grad(R[:10], z[:10])
    mp._phi(R[:30000], z[:30000]), mp._grad(R[:30000], z[:30000])   # compile / warm both paths
    rates = {}
    for name, f in (("_phi", mp._phi), ("_grad", mp._grad)):
        t0 = time.perf_counter()
        f(R, z)
        rates[name] = n / (time.perf_counter() - t0)
    print(f"\nspeed (lmax 4, 1e6 points): _phi {rates['_phi']:.2e}/s, _grad {rates['_grad']:.2e}/s (all threads)")
    assert rates["_phi"] > 2e6 and rates["_grad"] > 2e6
