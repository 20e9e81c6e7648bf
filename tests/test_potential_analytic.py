import astropy.units as u
import numpy as np
import pytest

from mocksky.model.potential import (Composite, Hernquist, Isochrone, KuzminKutuzov, Logarithmic, MiyamotoNagai, NFW,
                                     Plummer, PointMass)
from mocksky.units import G

from potential_contract import check_potential_contract

ANALYTIC = {
    "PointMass": lambda: PointMass(1e10),
    "Plummer": lambda: Plummer(1e10, 1.5),
    "Hernquist": lambda: Hernquist(1e11 * u.Msun, 2.0 * u.kpc),
    "NFW": lambda: NFW(8e11, 20.0),
    "Isochrone": lambda: Isochrone(1e11, 3.0),
    "MiyamotoNagai": lambda: MiyamotoNagai(6e10, 3.0, 0.28),
    "Logarithmic": lambda: Logarithmic(220.0, 1.0, 0.85),
    "KuzminKutuzov": lambda: KuzminKutuzov(1e11, 3.0, 1.0),
}


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_analytic_contract(name):
    pot = ANALYTIC[name]()
    errs = check_potential_contract(pot, grad_tol=1e-7, hess_tol=1e-5, rho_tol=1e-6 if name != "PointMass" else np.inf)
    assert errs["kernel"] < 1e-13


def test_point_mass_vcirc_and_frequencies_are_keplerian():
    pot = PointMass(1e11)
    R = np.array([1.0, 4.0, 16.0])
    vc = np.sqrt(G * 1e11 / R)
    assert np.allclose(pot.vcirc(R), vc, rtol=1e-14)
    kappa, nu, Om = pot.epicycle_frequencies(R)
    # Keplerian: kappa = nu = Omega
    assert np.allclose(kappa, Om, rtol=1e-12) and np.allclose(nu, Om, rtol=1e-12)


def test_enclosed_mass_hernquist():
    pot = Hernquist(1e11, 2.0)
    r = np.array([0.5, 2.0, 50.0])
    assert np.allclose(pot.enclosed_mass(r), 1e11 * r**2 / (r + 2.0) ** 2, rtol=1e-13)


def test_kuzmin_kutuzov_is_stackel_and_spherical_limit():
    pot = KuzminKutuzov(1e11, 3.0, 1.0)
    assert pot.focal_distance == pytest.approx(np.sqrt(8.0))
    # in the plane Phi = -GM / (sqrt(a^2 + R^2) + c)
    R = np.array([0.0, 1.0, 10.0])
    assert np.allclose(pot._phi(R, 0 * R), -G * 1e11 / (np.sqrt(9 + R**2) + 1.0), rtol=1e-13)
    # the density integrates to the total mass
    from scipy import integrate
    m, _ = integrate.dblquad(lambda z, R: 4 * np.pi * R * pot._density(np.array(R), np.array(z)), 0, np.inf, 0, np.inf, epsrel=1e-7)
    assert m == pytest.approx(1e11, rel=1e-5)


def test_composite_sums_components():
    a, b = MiyamotoNagai(5e10, 3.0, 0.3), NFW(8e11, 20.0)
    c = a + b
    assert isinstance(c, Composite) and len(c) == 2
    R, z = np.array([1.0, 8.0]), np.array([0.5, -2.0])
    assert np.allclose(c._phi(R, z), a._phi(R, z) + b._phi(R, z), rtol=1e-14)
    check_potential_contract(c, grad_tol=1e-7, hess_tol=1e-5, rho_tol=1e-6, kernel_tol=1e-6)


@pytest.mark.parametrize("bad", [dict(mass=-1, scale_radius=1), dict(mass=1e10, scale_radius=0)])
def test_bad_parameters_named(bad):
    with pytest.raises(ValueError, match="mass|scale_radius"):
        Plummer(**bad)


def test_quantity_units_converted():
    pot = Plummer(1e10 * u.Msun, 1500 * u.pc)
    assert pot.b == pytest.approx(1.5)
    with pytest.raises(u.UnitConversionError, match="scale_radius"):
        Plummer(1e10, 3 * u.km / u.s)
