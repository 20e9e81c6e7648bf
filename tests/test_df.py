"""DF families: formulas, mass normalisation (M = (2 pi)^3 int f d^3J), Cole-Binney core, INI reading."""
import numpy as np
import pytest

from mocksky.model.df import (DoublePowerLaw, NewDoublePowerLaw, NewExponential, QuasiIsothermal, SinDoublePowerLaw,
                              TaperExp, cole_binney_zeta, df_from_section)
from mocksky.model.df.families import _ln_nodes
from mocksky.model.ini import parse_ini, read_ini


def simplex_mass(df, nS=400, nu=48):
    """Independent quadrature: J = S (u, (1-u) v, (1-u)(1-v)), d^3J = S^2 (1-u) dS du dv, ln S nodes."""
    t, wt = _ln_nodes(np.log(df.action_scale) - 16, np.log(df.action_scale) + 14, panels=nS // 4, order=4)
    x, wx = np.polynomial.legendre.leggauss(nu)
    # split [0,1] into two panels graded towards the ends, where disc DFs are concentrated
    g = lambda y: np.concatenate([0.5 * (1 - np.cos(np.pi * (y + 1) / 4)), 0.5 + 0.5 * (1 - np.cos(np.pi * (y + 1) / 4))])  # noqa
    u = g(x)
    du = np.concatenate([0.5 * np.pi / 4 * np.sin(np.pi * (x + 1) / 4), 0.5 * np.pi / 4 * np.sin(np.pi * (x + 1) / 4)]) * np.tile(wx, 2)
    S = np.exp(t)[:, None, None]
    U, V = u[None, :, None], u[None, None, :]
    J = np.stack(np.broadcast_arrays(S * U, S * (1 - U) * V, S * (1 - U) * (1 - V)), axis=-1).reshape(-1, 3)
    w = (wt * np.exp(3 * t))[:, None, None] * ((1 - u) * du)[None, :, None] * du[None, None, :]
    f = df(J).reshape(w.shape)
    if not df.prograde_only:
        Jm = J.copy()
        Jm[:, 2] *= -1
        f = f + df(Jm).reshape(w.shape)
    return (2 * np.pi) ** 3 * np.sum(w * f)


def test_new_exponential_closed_form():
    df = NewExponential(1e10, Jr0=22, Jz0=5, Jphi0=550, pr=-0.25, pz=-0.1, addJden=10, addJvel=700)
    # the Jr and Jz factors integrate to 1, the Jphi factor to exp(-addJden/Jphi0)
    assert df.norm == pytest.approx(1e10 / ((2 * np.pi) ** 3 * np.exp(-10 / 550)), rel=1e-6)
    J = np.array([[10.0, 3.0, 1500.0], [10.0, 3.0, -1500.0], [0.0, 0.0, 0.0]])
    Jvel = 1500 + 700
    xr, xz = (Jvel / 550) ** -0.25 / 22, (Jvel / 550) ** -0.1 / 5
    expect = df.norm * xr * np.exp(-xr * 10) * xz * np.exp(-xz * 3) * 1500 / 550**2 * np.exp(-1510 / 550)
    assert df(J) == pytest.approx([expect, 0.0, 0.0], rel=1e-13)


def test_taper_exp_factors():
    kw = dict(Jr0=20, Jz0=5, Jphi0=600, pr=-0.2, pz=-0.1, addJden=10, addJvel=500)
    plain = TaperExp(1e10, **kw)
    cut = TaperExp(1e10, Jtaper=300, Jtrans=100, Jcut=3000, Delta=300, **kw)
    J = np.array([[5.0, 2.0, 300.0], [5.0, 2.0, 3000.0]])
    ratio = cut(J) / plain(J) * plain.norm / cut.norm
    assert ratio == pytest.approx([0.5 * 1.0 * 0.5 * (1 - np.tanh(-2700 / 300)), 0.5 * (1 + np.tanh(27.0)) * 0.5], rel=1e-12)


@pytest.mark.parametrize("make", [
    lambda: NewDoublePowerLaw(9.8e11, J0=10000, slopeIn=1.6, slopeOut=2.7, alpha=0.6, L0=1e5, beta=0, Fin=1.4,
                              Fout=1.2, Jcutoff=20000, cutoffStrength=2, Jcore=100),
    lambda: NewDoublePowerLaw(1.1e10, J0=19.5, slopeIn=0.5, slopeOut=1.8, alpha=0.6, L0=1e5, beta=0.6, Fin=3, Fout=2,
                              Jcutoff=200, cutoffStrength=2, Jcore=5),
    lambda: DoublePowerLaw(1e12, J0=5000, slopeIn=1.0, slopeOut=4.0, coefJrIn=1.4, coefJzIn=0.8, coefJrOut=1.2,
                           coefJzOut=0.9, rotFrac=0.5, Jphi0=200),
    lambda: NewExponential(1.75e9, Jr0=10, Jz0=0.65, Jphi0=650, pr=-0.7, pz=-0.3, addJden=10, addJvel=100),
], ids=["bv23-dark-halo", "bv23-bulge", "dpl-rotating", "bv23-young-disc"])
def test_mass_normalisation_independent_quadrature(make):
    df = make()
    # the stated mass within 0.5% (issue #3), checked with a different quadrature
    assert simplex_mass(df) == pytest.approx(df.mass, rel=5e-3)
    # and the built-in quadrature is converged far below that
    assert df.integrate_mass(panels=64, order=4) == pytest.approx(df.mass, rel=1e-5)


def test_cole_binney_core_conserves_mass():
    kw = dict(J0=600, slopeIn=1.0, slopeOut=3.5, alpha=0.6, L0=1e5, beta=0.5, Fin=1.8, Fout=1.2)
    cored = NewDoublePowerLaw(1e9, Jcore=50, **kw)
    plain = NewDoublePowerLaw(1e9, **kw)
    # same mass with nearly the same norm: the core redistributes mass without changing it
    assert cored.norm == pytest.approx(plain.norm, rel=2e-3)
    # the core makes f finite at J -> 0
    J0 = np.array([[1e-6, 1e-6, 1e-6]])
    assert np.isfinite(cored(J0)[0]) and plain(J0)[0] > 100 * cored(J0)[0]
    z = cole_binney_zeta(600, 1.0, 3.5, 50)
    assert 0 < z < 2 and z == pytest.approx(cored.zeta)


def test_rotation_and_symmetry():
    df = DoublePowerLaw(1e12, J0=5000, slopeIn=1.0, slopeOut=4.0, rotFrac=0.5, Jphi0=200)
    J = np.array([[100.0, 50.0, 400.0], [100.0, 50.0, -400.0]])
    f = df(J)
    assert f[0] / f[1] == pytest.approx((1 + 0.5 * np.tanh(2)) / (1 - 0.5 * np.tanh(2)), rel=1e-12)
    sdpl = SinDoublePowerLaw(1e9, J0=600, slopeIn=1, slopeOut=3.5, Fin=1.8, Fout=1.2, beta=0.5, Jcore=5, Jcutoff=1e5)
    assert sdpl(J)[0] == pytest.approx(sdpl(J)[1], rel=1e-14)


def test_quasi_isothermal_in_a_potential():
    from mocksky.model.potential import MiyamotoNagai, NFW
    pot = MiyamotoNagai(6e10, 3, 0.3) + NFW(8e11, 20)
    df = QuasiIsothermal(3e10, pot, Rdisk=2.6, sigmar0=60, sigmaz0=40, Jphi0=30)
    assert simplex_mass(df) == pytest.approx(3e10, rel=5e-3)
    f = df(np.array([[10.0, 5.0, 1800.0], [10.0, 5.0, -1800.0]]))
    assert f[0] > 0 and f[1] < 1e-10 * f[0]


def test_all_builtin_dfs_build(shared_data):
    for rel in ("models/bv23/SCM_MW.ini", "models/bv24_m0/m.ini"):
        ini = read_ini(shared_data / rel)
        dfs = [df_from_section(s) for s in ini.of_kind("DF")]
        assert len(dfs) == 7
        for s, df in zip(ini.of_kind("DF"), dfs):
            assert df.mass == s.get_float("mass") and df.name == s.label


def test_df_section_errors():
    sec = parse_ini("[DF x]\ntype = NewExponential\nmass = 1e9\nJr0 = 10\nJz0 = 1\nJphi0 = 500\nJzero = 3\n").get("DF", "x")
    with pytest.raises(ValueError, match="unknown key 'Jzero'"):
        df_from_section(sec)
    sec = parse_ini("[DF x]\ntype = Exponential\nmass = 1e9\n").get("DF", "x")
    with pytest.raises(ValueError, match="unknown DF type.*NewExponential"):
        df_from_section(sec)
    sec = parse_ini("[DF x]\ntype = NewExponential\nnorm = 1e9\nJr0 = 10\nJz0 = 1\nJphi0 = 500\n").get("DF", "x")
    with pytest.raises(ValueError, match="'mass' is required"):
        df_from_section(sec)
    with pytest.raises(ValueError, match="Jz0 must be > 0"):
        NewExponential(1e9, Jr0=10, Jz0=0, Jphi0=500)
