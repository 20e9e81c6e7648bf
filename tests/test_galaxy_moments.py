"""DF moments and velocity distributions (mocksky.model.galaxy.moments)."""
import numpy as np
import pytest

from mocksky.model.actions import StaeckelFudge
from mocksky.model.actions.spherical import SphericalActionFinder
from mocksky.model.df import NewExponential
from mocksky.model.galaxy.moments import VelocityIntegrator, df_moments
from mocksky.model.potential import Hernquist, Isochrone, MiyamotoNagai, Composite
from mocksky.units import G

M_ISO, B_ISO = 1e11, 2.0


class IsochroneErgodicDF:
    """Henon's self-consistent isotropic DF of the isochrone sphere (BT08 eq. 4.54) as a function of actions.

    E(J) = -2 (GM)^2 / [2 Jr + L + sqrt(4 G M b + L^2)]^2, L = Jz + |Jphi| (BT08 eq. 3.226).
    """

    def __call__(self, J):
        L = J[:, 1] + np.abs(J[:, 2])
        E = -2 * (G * M_ISO) ** 2 / (2 * J[:, 0] + L + np.sqrt(4 * G * M_ISO * B_ISO + L**2)) ** 2
        e = -E * B_ISO / (G * M_ISO)
        pre = M_ISO / (np.sqrt(2) * (2 * np.pi) ** 3 * (G * M_ISO * B_ISO) ** 1.5)
        return pre * np.sqrt(e) / (2 * (1 - e)) ** 4 * (
            27 - 66 * e + 320 * e**2 - 240 * e**3 + 64 * e**4
            + 3 * (16 * e**2 + 28 * e - 9) * np.arcsin(np.sqrt(e)) / np.sqrt(e * (1 - e)))


def isochrone_density(r):
    a = np.sqrt(B_ISO**2 + r**2)
    return M_ISO * (3 * (B_ISO + a) * a**2 - r**2 * (B_ISO + 3 * a)) / (4 * np.pi * (B_ISO + a) ** 3 * a**3)


@pytest.fixture(scope="module")
def iso():
    pot = Isochrone(M_ISO, B_ISO)
    return pot, SphericalActionFinder(pot)


def test_isochrone_density_and_isotropy(iso):
    """The velocity integral of Henon's DF gives the isochrone density to < 1.5e-3, isotropic, non-rotating."""
    pot, af = iso
    r = np.array([0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
    pts = np.column_stack([0.6 * r, 0 * r, 0.8 * r])
    m = VelocityIntegrator(pot, af, [IsochroneErgodicDF()]).moments(pts)
    np.testing.assert_allclose(m.density[:, 0], isochrone_density(r), rtol=1.5e-3)
    s = m.dispersion[:, 0]
    np.testing.assert_allclose(s[:, 0, 0] / s[:, 1, 1], 1.0, atol=5e-3)
    np.testing.assert_allclose(s[:, 2, 2] / s[:, 1, 1], 1.0, atol=5e-3)
    np.testing.assert_allclose(m.mean_velocity[:, 0, 2], 0.0, atol=1e-8)
    # the symmetric parts of the tensor vanish by construction
    assert np.all(m.dispersion[:, 0, 0, 2] == 0) and np.all(m.mean_velocity[:, 0, :2] == 0)
    # isotropic Jeans: sigma^2(r) = (1 / rho) int_r^inf rho dPhi/dr dr (BT08 eq. 4.216 with beta = 0)
    from scipy import integrate

    def sig2(rr):
        f = lambda x: isochrone_density(x) * G * M_ISO * x / (B_ISO + np.sqrt(B_ISO**2 + x**2)) ** 2 / np.sqrt(
            B_ISO**2 + x**2)
        return integrate.quad(f, rr, np.inf, limit=200)[0] / isochrone_density(rr)

    np.testing.assert_allclose(s[2:5, 1, 1], [sig2(x) for x in r[2:5]], rtol=3e-3)


def test_symmetric_points_and_shapes(iso):
    pot, af = iso
    vi = VelocityIntegrator(pot, af, [IsochroneErgodicDF(), IsochroneErgodicDF()])
    pts = np.array([[3.0, 0.0, 1.0], [0.0, 3.0, -1.0]])          # same (R, |z|)
    m = vi.moments(pts)
    assert m.density.shape == (2, 2) and m.mean_velocity.shape == (2, 2, 3) and m.dispersion.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(m.density[0], m.density[1], rtol=1e-12)
    np.testing.assert_allclose(m.density[:, 0], m.density[:, 1], rtol=1e-12)
    assert np.all(m.n_nodes > 100)
    d = df_moments(pot, af, [IsochroneErgodicDF()], [1.0, 0.0, 0.0], second=False)
    assert d.density.shape == (1, 1) and np.isnan(d.mean_velocity).all()
    assert vi.timings["n_actions"] > 0


@pytest.fixture(scope="module")
def disc_model():
    pot = Composite([MiyamotoNagai(6e10, 3.0, 0.3), Hernquist(1e12, 30.0)])
    af = StaeckelFudge(pot)
    cold = NewExponential(1e10, Jr0=10, Jz0=0.7, Jphi0=600, pr=-0.5, pz=-0.3, addJden=10, addJvel=100, name="cold")
    warm = NewExponential(1e10, Jr0=60, Jz0=25, Jphi0=450, pr=0.1, pz=0.05, addJden=20, addJvel=40, name="warm")
    return pot, af, [cold, warm]


def test_disc_density_converged(disc_model):
    """Cold and warm disc DFs: the default rule agrees with a 10x denser rule to 1.5e-3 in rho, 1% in sigma."""
    pot, af, dfs = disc_model
    pts = np.array([[8.0, 0, 0.0], [8.0, 0, 0.4], [4.0, 0, 0.1], [14.0, 0, 0.0]])
    m = VelocityIntegrator(pot, af, dfs).moments(pts)
    ref = VelocityIntegrator(pot, af, dfs, panel=0.4, nodes_per_panel=4, n_theta=24, n_psi=16).moments(pts)
    sig = lambda mm: np.sqrt(np.diagonal(mm.dispersion, axis1=2, axis2=3))  # noqa: E731
    significant = ref.density > 1e-3 * ref.density.max(axis=1, keepdims=True)
    np.testing.assert_allclose(m.density[significant], ref.density[significant], rtol=1.5e-3)
    np.testing.assert_allclose(sig(m)[significant], sig(ref)[significant], rtol=1e-2)
    # rotation: mean v_phi of the cold disc within 10 km/s of v_c at R = 8, the warm one lags
    vc = pot.vcirc(np.array([8.0]))[0]
    assert abs(m.mean_velocity[0, 0, 2] - vc) < 10
    assert m.mean_velocity[0, 1, 2] < m.mean_velocity[0, 0, 2] - 5
    # epicycle ordering sigma_R > sigma_phi > sigma_z in the plane
    s = sig(m)[0, 0]
    assert s[0] > s[2] > s[1]


def test_velocity_distributions_integrate_to_density(disc_model):
    pot, af, dfs = disc_model
    vi = VelocityIntegrator(pot, af, dfs)
    g = np.arange(-300.0, 300.1, 4.0)
    gp = np.arange(-200.0, 450.1, 4.0)
    res = vi.velocity_distributions([[8.0, 0.0, 0.3]], grid_R=g, grid_z=g, grid_phi=gp)
    rho = res["density"][0]
    for key, grid in (("vR", g), ("vz", g), ("vphi", gp)):
        f = res[key][0]
        assert f.shape == (2, len(grid))
        integral = np.trapezoid(f, grid, axis=1)
        np.testing.assert_allclose(integral, rho, rtol=1e-2)
    # f(vR) and f(vz) are even (equilibrium symmetry)
    np.testing.assert_allclose(res["vR"][0], res["vR"][0][:, ::-1], rtol=1e-6, atol=1e-12 * res["vR"].max())
    np.testing.assert_allclose(res["vz"][0], res["vz"][0][:, ::-1], rtol=1e-6, atol=1e-12 * res["vz"].max())


def test_bad_parameters(iso):
    pot, af = iso
    with pytest.raises(ValueError, match="panel"):
        VelocityIntegrator(pot, af, [IsochroneErgodicDF()], panel=0.0)
    with pytest.raises(ValueError, match="nodes_per_panel"):
        VelocityIntegrator(pot, af, [IsochroneErgodicDF()], nodes_per_panel=0)
    with pytest.raises(ValueError, match="at least one DF"):
        VelocityIntegrator(pot, af, [])
    with pytest.raises(ValueError, match="merge_ratio"):
        VelocityIntegrator(pot, af, [IsochroneErgodicDF()], merge_ratio=0.5)
    with pytest.raises(TypeError, match="DF"):
        VelocityIntegrator(pot, af, [3.0])
    with pytest.raises(ValueError, match="grid_R"):
        VelocityIntegrator(pot, af, [IsochroneErgodicDF()]).velocity_distributions([[1, 0, 0]], grid_R=[])
