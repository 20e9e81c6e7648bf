"""CylSpline Poisson solver: Green's function, accuracy against closed forms and Hankel-transform
references (Miyamoto-Nagai, double-exponential disc, thin sech^2 gas disc with a hole), I/O.

Reference potentials of separable discs rho = Sigma(R) H(z) (BT08 eqs. 2.164-2.170):
    Phi(R, z) = -2 pi G int_0^inf dk J0(kR) Sigma~(k) I(k, z),
    Sigma~(k) = int_0^inf Sigma(R) J0(kR) R dR,   I(k, z) = int H(z') exp(-k |z - z'|) dz',
integrated on composite Gauss-Legendre grids (converged to < 1e-8, checked by refinement).
"""
import time

import numpy as np
import pytest
from scipy import integrate, special

from mocksky.model.potential import analytic as A
from mocksky.model.potential import cylspline as C
from mocksky.model.potential.cylspline import CylSpline
from mocksky.model.potential.density import DensitySum, Disk, Spheroid
from mocksky.units import G

from potential_contract import check_potential_contract

BV23_GRID = dict(Rmin=0.1, Rmax=50.0, nR=30, zmin=0.04, zmax=20.0, nz=30)


# --------------------------------------------------------------------------- references
def gl_composite(a, b, width, n=8):
    x, w = np.polynomial.legendre.leggauss(n)
    nb = max(int(np.ceil((b - a) / width)), 1)
    e = np.linspace(a, b, nb + 1)
    lo, hw = e[:-1, None], 0.5 * (e[1:] - e[:-1])[:, None]
    return (lo + hw * (x + 1)).ravel(), (hw * w).ravel()


def I_exponential(k, z, h):
    """Closed-form I(k, z) and dI/dz for H = exp(-|z|/h) / (2h), z >= 0."""
    ekz, ezh = np.exp(-k * z), np.exp(-z / h)
    x = k * h - 1.0
    small = np.abs(x) < 1e-6
    xs = np.where(small, 1.0, x)
    mid = np.where(small, ezh * z / h, (ezh - ekz) / xs)
    dmid = np.where(small, ezh * (1 - z / h) / h, (-ezh / h + k * ekz) / xs)
    I = 0.5 * (ekz / (1 + k * h) + mid + ezh / (1 + k * h))
    dI = 0.5 * (-k * ekz / (1 + k * h) + dmid - ezh / (h * (1 + k * h)))
    return I, dI


def I_numeric(k, z, H, zmax, nz=1500):
    """I(k, z) and dI/dz for an even H by Gauss-Legendre quadrature over z' in [0, zmax] (z >= 0)."""
    pts = [0.0] + ([z] if 0 < z < zmax else []) + [zmax]
    zs, ws = [], []
    for a, b in zip(pts[:-1], pts[1:]):
        x, w = gl_composite(a, b, (b - a) / (nz // 10), 10)
        zs.append(x)
        ws.append(w)
    zp = np.concatenate(zs)
    wp = np.concatenate(ws) * H(zp)
    I, dI = np.empty(len(k)), np.empty(len(k))
    for i0 in range(0, len(k), 500):
        kk = k[i0:i0 + 500, None]
        e1, e2 = np.exp(-kk * np.abs(z - zp)), np.exp(-kk * (z + zp))
        I[i0:i0 + 500] = (wp * (e1 + e2)).sum(1)
        dI[i0:i0 + 500] = (wp * (-kk * np.sign(z - zp) * e1 - kk * e2)).sum(1)
    return I, dI


def hankel_reference(Sig_t, Ifun, R, z, kmax, dk):
    """Phi, dPhi/dR, dPhi/dz at radii R (array) and height z >= 0."""
    k, wk = gl_composite(0.0, kmax, dk, 8)
    I, dI = Ifun(k, z)
    Sw = Sig_t(k) * wk
    out = np.empty((3, len(R)))
    for i, r in enumerate(R):
        J0, J1 = special.j0(r * k), special.j1(r * k)
        out[:, i] = (-2 * np.pi * G * (J0 * Sw * I).sum(), 2 * np.pi * G * (J1 * k * Sw * I).sum(),
                     -2 * np.pi * G * (J0 * Sw * dI).sum())
    return out


def compare(cs, ref, R, z):
    """max relative error of Phi and of the force vector (relative to |F|)."""
    phi, gR, gz = cs._phi(R, z), *cs._grad(R, z)
    ephi = np.abs(phi / ref[0] - 1)
    eF = np.hypot(gR - ref[1], gz - ref[2]) / np.hypot(ref[1], ref[2])
    return ephi, eF


# --------------------------------------------------------------------------- building blocks
def test_elliptic_integrals():
    m = np.concatenate([np.geomspace(1e-9, 0.5, 200), 1 - np.geomspace(1e-15, 0.5, 200)])
    vals = np.array([C._ellipke(x, 1 - x) for x in m])
    assert np.max(np.abs(vals[:, 0] / special.ellipk(m) - 1)) < 2e-8
    assert np.max(np.abs(vals[:, 1] / special.ellipe(m) - 1)) < 2e-8
    sel = m > 1e-6                                   # scipy's K - E loses digits below
    ke = special.ellipk(m[sel]) - special.ellipe(m[sel])
    assert np.max(np.abs(vals[sel, 2] / ke - 1)) < 1e-6


@pytest.mark.parametrize("R,z,Rp,zp", [(1.0, 0.3, 2.0, 0.1), (5.0, 1.0, 0.2, 3.0), (0.1, 0.0, 40.0, 0.5),
                                       (3.0, 0.2, 3.01, 0.21), (1e-3, 0.5, 30.0, 0.1)])
def test_ring_green_function(R, z, Rp, zp):
    """psi = int dphi R'/|x - x'| and its derivatives against direct azimuthal quadrature."""
    def q(f):
        scale = Rp / ((R - Rp) ** 2 + (z - zp) ** 2)      # absolute tolerance for near-zero integrals
        return integrate.quad(f, 0, np.pi, epsabs=1e-13 * scale, epsrel=1e-11, limit=400)[0] * 2

    def dist(ph):
        return np.sqrt(R * R + Rp * Rp - 2 * R * Rp * np.cos(ph) + (z - zp) ** 2)

    psi = q(lambda ph: Rp / dist(ph))
    dR = q(lambda ph: -Rp * (R - Rp * np.cos(ph)) / dist(ph) ** 3)
    dz = q(lambda ph: -Rp * (z - zp) / dist(ph) ** 3)
    g = C._ring1(R, z, Rp, zp)
    assert abs(g[0] / psi - 1) < 3e-8
    assert abs(g[1] - dR) < 1e-6 * abs(dR) + 1e-7 * abs(dz)
    assert abs(g[2] / dz - 1) < 3e-8


# --------------------------------------------------------------------------- accuracy
def test_miyamoto_nagai():
    """BV23 grid; MN has Sigma ~ R^-3 (infinite moments), so no grid extension (enclose=0)."""
    mn = A.MiyamotoNagai(5e10, 3.0, 0.3)
    cs = CylSpline.from_density(mn, enclose=0, **BV23_GRID)
    R = np.geomspace(0.1, 30, 40)
    z = np.concatenate([[0.0], np.geomspace(1e-3, 5, 30)])
    RR, ZZ = np.meshgrid(R, z, indexing="ij")
    ref = np.array([mn._phi(RR, ZZ), *mn._grad(RR, ZZ)])
    ephi, eF = compare(cs, ref, RR, ZZ)
    assert ephi.max() < 1e-4, ephi.max()
    assert eF.max() < 1e-3, eF.max()


@pytest.mark.parametrize("h", [0.3, 0.06])
def test_double_exponential_disc(h):
    S0, Rd = 5e8, 2.5
    disk = Disk(S0, Rd, h)
    cs = CylSpline.from_density(disk, **BV23_GRID)
    R = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0])
    for z in (0.0, 0.02, 0.05, 0.3, 1.0, 5.0):
        ref = hankel_reference(lambda k: S0 * Rd**2 * (1 + (k * Rd) ** 2) ** -1.5,
                               lambda k, zz: I_exponential(k, zz, h), R, z, 2000.0, 0.05)
        ephi, eF = compare(cs, ref, R, z)
        assert ephi.max() < 1e-4, (z, ephi)
        assert eF.max() < 1e-3, (z, eF)


@pytest.fixture(scope="module")
def gas_disc():
    """BV23 gas disc: Sigma0 1.3e8, Rd 5, Rcut 5, sech^2 with h = 60 pc."""
    disk = Disk(1.3e8, 5.0, -0.06, 5.0)
    return disk, CylSpline.from_density(disk, **BV23_GRID)


def test_thin_gas_disc_vertical_force(gas_disc):
    disk, cs = gas_disc
    kmax, dk = 15.0, 0.05
    k, _ = gl_composite(0.0, kmax, dk, 8)
    Rs, wR = gl_composite(0.0, 160.0, 0.05, 10)
    f = disk.surface_density(Rs) * Rs * wR
    St = np.concatenate([special.j0(np.outer(k[i:i + 200], Rs)) @ f for i in range(0, len(k), 200)])
    lookup = dict(zip(k, St))
    R = np.array([4.0, 6.0, 8.0, 12.0, 20.0])
    worst_fz = 0.0
    for z in (0.0, 0.01, 0.03, 0.06, 0.1, 0.3, 1.0):
        ref = hankel_reference(lambda kk: np.array([lookup[x] for x in kk]),
                               lambda kk, zz: I_numeric(kk, zz, disk.vertical, 3.0), R, z, kmax, dk)
        ephi, eF = compare(cs, ref, R, z)
        assert ephi.max() < 1e-4 and eF.max() < 1e-3, (z, ephi, eF)
        if z > 0:
            efz = np.abs(cs._grad(R, z)[1] / ref[2] - 1)
            worst_fz = max(worst_fz, efz.max())
    # vertical force itself (not only relative to |F|) within 1e-3 down to z = 10 pc
    assert worst_fz < 1e-3, worst_fz


def test_bv23_flattened_components_build_time_and_mass():
    thin, thick = Disk(5e8, 2.5, -0.18), Disk(3e8, 2.1, -0.7)
    gas = Disk(1.3e8, 5.0, -0.06, 5.0)
    bulge = Spheroid(4e9, 1.0, gamma=1, beta=1, outer_cutoff_radius=0.7, cutoff_strength=1, axis_ratio_z=0.5)
    dens = DensitySum([thin, thick, gas, bulge])
    CylSpline.from_density(Disk(1e8, 2.0, 0.3), nR=8, Rmax=20.0, Rmin=0.5, nz=8, zmin=0.2, zmax=10.0)   # warm up
    t = time.perf_counter()
    cs = CylSpline.from_density(dens, **BV23_GRID)
    dt = time.perf_counter() - t
    assert dt < 20.0, dt
    mass = sum(d.total_mass() for d in (thin, thick, gas, bulge))
    assert abs(cs.mass / mass - 1) < 1e-5
    # far field: Keplerian with the total mass
    r = 5e3
    assert abs(cs._phi(0.6 * r, 0.8 * r) / (-G * mass / r) - 1) < 1e-5


def test_extrapolation_continuity(gas_disc):
    _, cs = gas_disc
    Rm, zm = cs.Rnodes[-1], cs.znodes[-1]
    assert Rm >= 50.0 and zm >= 20.0                     # grid extended to enclose the mass
    pts = [(Rm, z) for z in np.linspace(0, zm, 9)] + [(R, zm) for R in np.linspace(0, Rm, 9)]
    for R, z in pts:
        inside = np.array([cs._phi(R * (1 - 1e-9), z * (1 - 1e-9)), *cs._grad(R * (1 - 1e-9), z * (1 - 1e-9))])
        outside = np.array([cs._phi(R * (1 + 1e-9) + 1e-9, z * (1 + 1e-9) + 1e-9),
                            *cs._grad(R * (1 + 1e-9) + 1e-9, z * (1 + 1e-9) + 1e-9)])
        assert abs(outside[0] / inside[0] - 1) < 1e-4
        assert np.hypot(*(outside[1:] - inside[1:])) < 3e-3 * np.hypot(*inside[1:])


def test_density_known_only_on_a_grid():
    """An interpolated density (as DF moments will be) gives the same potential as the exact one."""
    from scipy.interpolate import RegularGridInterpolator

    disk = Disk(5e8, 2.5, -0.3)
    Rg = np.concatenate([[0.0], np.geomspace(0.01, 200, 300)])
    zg = np.concatenate([[0.0], np.geomspace(0.001, 60, 300)])
    table = RegularGridInterpolator((Rg, zg), np.log(disk._density(Rg[:, None], zg[None, :]) + 1e-300),
                                    method="cubic", bounds_error=False, fill_value=np.log(1e-300))

    class GridDensity:
        calls = 0

        def _density(self, R, z):
            GridDensity.calls += 1
            R, z = np.broadcast_arrays(np.asarray(R, float), np.abs(np.asarray(z, float)))
            return np.exp(table(np.stack([R.ravel(), z.ravel()], axis=1))).reshape(R.shape)

    exact = CylSpline.from_density(disk, **BV23_GRID)
    interp = CylSpline.from_density(GridDensity(), **BV23_GRID)
    assert GridDensity.calls == 2                        # mesh once, nodes once
    R = np.geomspace(0.1, 30, 20)
    z = np.geomspace(0.01, 5, 15)
    RR, ZZ = np.meshgrid(R, z)
    assert np.max(np.abs(interp._phi(RR, ZZ) / exact._phi(RR, ZZ) - 1)) < 1e-4


def test_contract():
    # a disc without a hole (the gas disc's outward force inside its hole has no circular speed)
    cs = CylSpline.from_density(Disk(5e8, 2.5, -0.18), **BV23_GRID)
    rng = np.random.default_rng(3)
    R = np.exp(rng.uniform(np.log(0.05), np.log(45), 60))
    z = rng.choice([-1, 1], 60) * np.exp(rng.uniform(np.log(0.01), np.log(18), 60))
    check_potential_contract(cs, points=(R, z))


def test_file_round_trip_exact(gas_disc, tmp_path):
    _, cs = gas_disc
    cs.name = "gas disk"
    path = tmp_path / "gas.coef"
    cs.to_file(path)
    back = CylSpline.from_file(path)
    assert np.array_equal(back.params, cs.params)
    assert back.name == "gas disk" and back.mass == cs.mass
    R, z = np.geomspace(0.01, 500, 50), np.geomspace(0.001, 300, 50)
    assert np.array_equal(back._phi(R, z), cs._phi(R, z))
    assert [p.name for p in tmp_path.iterdir()] == ["gas.coef"]     # no temporary file left


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.coef"
    bad.write_text("# something else\n")
    with pytest.raises(ValueError, match="not a mocksky CylSpline"):
        CylSpline.from_file(bad)
    with pytest.raises(FileNotFoundError):
        CylSpline.from_file(tmp_path / "missing.coef")


def test_invalid_input():
    with pytest.raises(ValueError, match="Rmax"):
        CylSpline.from_density(Disk(1e8, 2.0, 0.3), Rmin=1.0, Rmax=10.0, nR=30)

    class Negative:
        def _density(self, R, z):
            return -np.ones(np.broadcast(R, z).shape)

    with pytest.raises(ValueError, match="negative"):
        CylSpline.from_density(Negative(), nR=8, Rmax=20.0, Rmin=0.5, nz=8, zmin=0.2, zmax=10.0)
