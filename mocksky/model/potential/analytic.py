"""Analytic axisymmetric potentials with exact derivatives, densities and numba kernels.

Each class takes its parameters as plain floats in internal units (kpc, Msun, km/s) or astropy
Quantities. Every class exposes ``kernel()`` returning an ``@njit`` scalar function
``f(R, z, params) -> (Phi, dPhi/dR, dPhi/dz)`` and its parameter array, used by the compiled action
finders.

References
----------
Binney & Tremaine 2008, Galactic Dynamics, 2nd ed. (BT08), Sects. 2.2-2.3 and Table 2.1.
Miyamoto & Nagai 1975, PASJ 27, 533.
Hernquist 1990, ApJ 356, 359.  Navarro, Frenk & White 1997, ApJ 490, 493.
Henon 1959 (isochrone); BT08 eq. 2.47.
Kuzmin & Kutuzov 1962; Dejonghe & de Zeeuw 1988, ApJ 333, 90; Batsleer & Dejonghe 1994, A&A 287, 43.
"""
from __future__ import annotations

import numba
import numpy as np

from ... import units as U
from ...units import G
from .base import Potential, _bcast


def _param(value, unit, name, positive=True):
    v = float(U.to_internal(value, unit, name))
    if not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name} must be a finite {'positive ' if positive else ''}number, got {v}")
    return v


class SphericalPotential(Potential):
    """Base for spherical potentials defined by Phi(r) and its first two radial derivatives.

    Subclasses implement ``_phi_r(r)``, ``_dphi_r(r)``, ``_d2phi_r(r)`` and ``_rho_r(r)``.
    """

    spherical = True

    def _phi(self, R, z):
        R, z = _bcast(R, z)
        return self._phi_r(np.hypot(R, z))

    def _grad(self, R, z):
        R, z = _bcast(R, z)
        r = np.hypot(R, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_over_r = np.where(r > 0, self._dphi_r(r) / np.where(r > 0, r, 1.0), 0.0)
        return d_over_r * R, d_over_r * z

    def _hess(self, R, z):
        R, z = _bcast(R, z)
        r = np.hypot(R, z)
        safe = np.where(r > 0, r, 1.0)
        d1 = self._dphi_r(safe)
        d2 = self._d2phi_r(safe)
        d1r = d1 / safe
        cR, cz = R / safe, z / safe
        Phi_RR = np.where(r > 0, d2 * cR**2 + d1r * cz**2, d2)
        Phi_zz = np.where(r > 0, d2 * cz**2 + d1r * cR**2, d2)
        Phi_Rz = np.where(r > 0, (d2 - d1r) * cR * cz, 0.0)
        return Phi_RR, Phi_zz, Phi_Rz

    def _density(self, R, z):
        R, z = _bcast(R, z)
        return self._rho_r(np.hypot(R, z))

    def enclosed_mass(self, r) -> np.ndarray:
        """Mass within radius r, M(<r) = r^2 dPhi/dr / G [Msun] (BT08 eq. 2.28)."""
        r = U.to_internal(r, U.LENGTH, "r")
        return r**2 * self._dphi_r(r) / G


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _kernel_spherical_common(R, z, phi, dphi):
    r = np.sqrt(R * R + z * z)
    if r > 0:
        return phi, dphi * R / r, dphi * z / r
    return phi, 0.0, 0.0


@numba.njit(cache=True, nogil=True)
def _k_pointmass(R, z, p):
    GM = p[0]
    r = np.sqrt(R * R + z * z)
    return -GM / r, GM * R / r**3, GM * z / r**3


@numba.njit(cache=True, nogil=True)
def _k_plummer(R, z, p):
    GM, b = p[0], p[1]
    s2 = R * R + z * z + b * b
    s = np.sqrt(s2)
    return -GM / s, GM * R / (s2 * s), GM * z / (s2 * s)


@numba.njit(cache=True, nogil=True)
def _k_hernquist(R, z, p):
    GM, a = p[0], p[1]
    r = np.sqrt(R * R + z * z)
    phi = -GM / (r + a)
    dphi = GM / (r + a) ** 2
    return _kernel_spherical_common(R, z, phi, dphi)


@numba.njit(cache=True, nogil=True)
def _k_nfw(R, z, p):
    GM, a = p[0], p[1]
    r = np.sqrt(R * R + z * z)
    x = r / a
    if x < 1e-6:
        phi = -GM / a * (1.0 - 0.5 * x + x * x / 3.0)
        dphi = GM / (a * a) * (0.5 - 2.0 * x / 3.0)
    else:
        lg = np.log1p(x)
        phi = -GM * lg / r
        dphi = GM * (lg / (r * r) - 1.0 / (r * (r + a)))
    return _kernel_spherical_common(R, z, phi, dphi)


@numba.njit(cache=True, nogil=True)
def _k_isochrone(R, z, p):
    GM, b = p[0], p[1]
    r2 = R * R + z * z
    s = np.sqrt(b * b + r2)
    phi = -GM / (b + s)
    # dPhi/dr = GM r / (s (b+s)^2); divide by r for the Cartesian-like components
    f = GM / (s * (b + s) ** 2)
    return phi, f * R, f * z


@numba.njit(cache=True, nogil=True)
def _k_miyamoto_nagai(R, z, p):
    GM, a, b = p[0], p[1], p[2]
    zeta = np.sqrt(z * z + b * b)
    D2 = R * R + (a + zeta) ** 2
    D3 = D2 * np.sqrt(D2)
    return -GM / np.sqrt(D2), GM * R / D3, GM * (a + zeta) * z / (zeta * D3)


@numba.njit(cache=True, nogil=True)
def _k_logarithmic(R, z, p):
    v02, Rc2, q2 = p[0], p[1], p[2]
    Q = Rc2 + R * R + z * z / q2
    return 0.5 * v02 * np.log(Q), v02 * R / Q, v02 * z / (q2 * Q)


@numba.njit(cache=True, nogil=True)
def _kk_lambda_nu(R, z, a2, c2):
    S = a2 + c2 + R * R + z * z
    P = a2 * c2 + R * R * c2 + z * z * a2
    D = np.sqrt(max(S * S - 4.0 * P, 0.0))
    lam = 0.5 * (S + D)
    nu = 2.0 * P / (S + D)
    return lam, nu, D


@numba.njit(cache=True, nogil=True)
def _k_kuzmin_kutuzov(R, z, p):
    GM, a2, c2 = p[0], p[1], p[2]
    lam, nu, D = _kk_lambda_nu(R, z, a2, c2)
    sl, sn = np.sqrt(lam), np.sqrt(nu)
    phi = -GM / (sl + sn)
    if D <= 0.0:  # at the foci lambda = nu: use the limit along the axis
        D = 1e-300
    # d tau/dR = 2 R (tau - c2)/(2 tau - S), d tau/dz = 2 z (tau - a2)/(2 tau - S); 2 lam - S = D, 2 nu - S = -D
    dlR = 2.0 * R * (lam - c2) / D
    dlz = 2.0 * z * (lam - a2) / D
    dnR = -2.0 * R * (nu - c2) / D
    dnz = -2.0 * z * (nu - a2) / D
    pref = GM / (sl + sn) ** 2
    return phi, pref * (0.5 * dlR / sl + 0.5 * dnR / sn), pref * (0.5 * dlz / sl + 0.5 * dnz / sn)


# --------------------------------------------------------------------------- classes
class PointMass(SphericalPotential):
    """Kepler potential Phi = -G M / r (BT08 eq. 2.33).

    Parameters
    ----------
    mass : float or Quantity
        M [Msun].
    """

    def __init__(self, mass):
        self.mass = _param(mass, U.MASS, "mass")

    def _phi_r(self, r):
        return -G * self.mass / r

    def _dphi_r(self, r):
        return G * self.mass / r**2

    def _d2phi_r(self, r):
        return -2 * G * self.mass / r**3

    def _rho_r(self, r):
        return np.zeros_like(r)

    def kernel(self):
        return _k_pointmass, np.array([G * self.mass])


class Plummer(SphericalPotential):
    """Plummer sphere, Phi = -G M / sqrt(r^2 + b^2), rho = 3 M b^2 / (4 pi (r^2 + b^2)^(5/2)) (BT08 eq. 2.44a).

    Parameters
    ----------
    mass : float or Quantity
        Total mass M [Msun].
    scale_radius : float or Quantity
        b [kpc].
    """

    def __init__(self, mass, scale_radius):
        self.mass = _param(mass, U.MASS, "mass")
        self.b = _param(scale_radius, U.LENGTH, "scale_radius")

    def _phi_r(self, r):
        return -G * self.mass / np.sqrt(r**2 + self.b**2)

    def _dphi_r(self, r):
        return G * self.mass * r / (r**2 + self.b**2) ** 1.5

    def _d2phi_r(self, r):
        s2 = r**2 + self.b**2
        return G * self.mass * (self.b**2 - 2 * r**2) / s2**2.5

    def _rho_r(self, r):
        return 3 * self.mass * self.b**2 / (4 * np.pi * (r**2 + self.b**2) ** 2.5)

    def kernel(self):
        return _k_plummer, np.array([G * self.mass, self.b])


class Hernquist(SphericalPotential):
    """Hernquist (1990) model, Phi = -G M / (r + a), rho = M a / (2 pi r (r + a)^3).

    Parameters
    ----------
    mass : float or Quantity
        Total mass M [Msun].
    scale_radius : float or Quantity
        a [kpc].
    """

    def __init__(self, mass, scale_radius):
        self.mass = _param(mass, U.MASS, "mass")
        self.a = _param(scale_radius, U.LENGTH, "scale_radius")

    def _phi_r(self, r):
        return -G * self.mass / (r + self.a)

    def _dphi_r(self, r):
        return G * self.mass / (r + self.a) ** 2

    def _d2phi_r(self, r):
        return -2 * G * self.mass / (r + self.a) ** 3

    def _rho_r(self, r):
        with np.errstate(divide="ignore"):
            return self.mass * self.a / (2 * np.pi * r * (r + self.a) ** 3)

    def kernel(self):
        return _k_hernquist, np.array([G * self.mass, self.a])


class NFW(SphericalPotential):
    """Navarro-Frenk-White (1997) profile, Phi = -G M ln(1 + r/a) / r.

    rho = M / (4 pi a^3) / [(r/a) (1 + r/a)^2], so ``mass`` M = 4 pi rho0 a^3 is the mass scale
    (the enclosed mass is M [ln(1+x) - x/(1+x)], x = r/a; the total mass diverges).

    Parameters
    ----------
    mass : float or Quantity
        Mass scale M = 4 pi rho0 a^3 [Msun].
    scale_radius : float or Quantity
        a [kpc].
    """

    def __init__(self, mass, scale_radius):
        self.mass = _param(mass, U.MASS, "mass")
        self.a = _param(scale_radius, U.LENGTH, "scale_radius")

    def _phi_r(self, r):
        x = r / self.a
        small = x < 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            big = -G * self.mass * np.log1p(x) / r
        return np.where(small, -G * self.mass / self.a * (1 - 0.5 * x + x * x / 3), big)

    def _dphi_r(self, r):
        x = r / self.a
        small = x < 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            big = G * self.mass * (np.log1p(x) / r**2 - 1 / (r * (r + self.a)))
        return np.where(small, G * self.mass / self.a**2 * (0.5 - 2 * x / 3), big)

    def _d2phi_r(self, r):
        # Poisson: Phi'' = 4 pi G rho - 2 Phi' / r
        return 4 * np.pi * G * self._rho_r(r) - 2 * self._dphi_r(r) / r

    def _rho_r(self, r):
        x = r / self.a
        with np.errstate(divide="ignore"):
            return self.mass / (4 * np.pi * self.a**3) / (x * (1 + x) ** 2)

    def kernel(self):
        return _k_nfw, np.array([G * self.mass, self.a])


class Isochrone(SphericalPotential):
    """Henon's isochrone potential, Phi = -G M / (b + sqrt(b^2 + r^2)) (BT08 eq. 2.47).

    Its actions are known in closed form (BT08 eq. 3.226), which makes it the reference test of the
    spherical action finder.

    Parameters
    ----------
    mass : float or Quantity
        Total mass M [Msun].
    scale_radius : float or Quantity
        b [kpc].
    """

    def __init__(self, mass, scale_radius):
        self.mass = _param(mass, U.MASS, "mass")
        self.b = _param(scale_radius, U.LENGTH, "scale_radius")

    def _phi_r(self, r):
        return -G * self.mass / (self.b + np.sqrt(self.b**2 + r**2))

    def _dphi_r(self, r):
        s = np.sqrt(self.b**2 + r**2)
        return G * self.mass * r / (s * (self.b + s) ** 2)

    def _d2phi_r(self, r):
        return 4 * np.pi * G * self._rho_r(r) - 2 * self._dphi_r(r) / np.where(r > 0, r, np.inf)

    def _rho_r(self, r):
        b = self.b
        s = np.sqrt(b**2 + r**2)
        return self.mass * (3 * (b + s) * s**2 - r**2 * (b + 3 * s)) / (4 * np.pi * (b + s) ** 3 * s**3)

    def _hess(self, R, z):
        R, z = _bcast(R, z)
        r = np.hypot(R, z)
        b = self.b
        s = np.sqrt(b**2 + r**2)
        f = G * self.mass / (s * (b + s) ** 2)  # dPhi/dr / r, regular at r = 0
        # d f / d r divided by r: f' = -GM r (b + 3 s) / (s^3 (b+s)^3)
        fp_r = -G * self.mass * (b + 3 * s) / (s**3 * (b + s) ** 3)
        return f + fp_r * R**2, f + fp_r * z**2, fp_r * R * z

    def kernel(self):
        return _k_isochrone, np.array([G * self.mass, self.b])


class MiyamotoNagai(Potential):
    """Miyamoto & Nagai (1975) disc, Phi = -G M / sqrt(R^2 + (a + sqrt(z^2 + b^2))^2) (BT08 eq. 2.69a).

    Parameters
    ----------
    mass : float or Quantity
        Total mass M [Msun].
    a : float or Quantity
        Scale length [kpc] (a = 0 gives a Plummer sphere).
    b : float or Quantity
        Scale height [kpc], b > 0.
    """

    def __init__(self, mass, a, b):
        self.mass = _param(mass, U.MASS, "mass")
        self.a = _param(a, U.LENGTH, "a", positive=False)
        self.b = _param(b, U.LENGTH, "b")
        if self.a < 0:
            raise ValueError(f"a must be >= 0, got {self.a}")

    def _parts(self, R, z):
        R, z = _bcast(R, z)
        zeta = np.sqrt(z**2 + self.b**2)
        D2 = R**2 + (self.a + zeta) ** 2
        return R, z, zeta, D2

    def _phi(self, R, z):
        R, z, zeta, D2 = self._parts(R, z)
        return -G * self.mass / np.sqrt(D2)

    def _grad(self, R, z):
        R, z, zeta, D2 = self._parts(R, z)
        D3 = D2 * np.sqrt(D2)
        return G * self.mass * R / D3, G * self.mass * (self.a + zeta) * z / (zeta * D3)

    def _hess(self, R, z):
        R, z, zeta, D2 = self._parts(R, z)
        GM, a, b = G * self.mass, self.a, self.b
        D3 = D2 * np.sqrt(D2)
        D5 = D3 * D2
        g = (a + zeta) * z / zeta
        Phi_RR = GM * (1 / D3 - 3 * R**2 / D5)
        Phi_zz = GM * ((1 + a * b**2 / zeta**3) / D3 - 3 * g**2 / D5)
        Phi_Rz = -3 * GM * R * g / D5
        return Phi_RR, Phi_zz, Phi_Rz

    def _density(self, R, z):
        R, z, zeta, D2 = self._parts(R, z)
        a, b = self.a, self.b
        return (b**2 * self.mass / (4 * np.pi)) * (a * R**2 + (a + 3 * zeta) * (a + zeta) ** 2) / (zeta**3 * D2**2.5)

    def kernel(self):
        return _k_miyamoto_nagai, np.array([G * self.mass, self.a, self.b])


class Logarithmic(Potential):
    """Flattened logarithmic potential, Phi = (v0^2 / 2) ln(Rc^2 + R^2 + z^2 / q^2) (BT08 eq. 2.71a).

    Parameters
    ----------
    v0 : float or Quantity
        Asymptotic circular speed [km/s].
    core_radius : float or Quantity
        Rc [kpc], >= 0.
    q : float
        Axis ratio of the equipotentials, 0 < q <= 1 (q < 0.7 gives negative densities).
    """

    def __init__(self, v0, core_radius=0.0, q=1.0):
        self.v0 = _param(v0, U.VELOCITY, "v0")
        self.Rc = _param(core_radius, U.LENGTH, "core_radius", positive=False)
        self.q = float(q)
        if not (0 < self.q <= 1.5):
            raise ValueError(f"q must be in (0, 1.5], got {q}")
        self.spherical = self.q == 1.0

    def _Q(self, R, z):
        R, z = _bcast(R, z)
        return R, z, self.Rc**2 + R**2 + z**2 / self.q**2

    def _phi(self, R, z):
        R, z, Q = self._Q(R, z)
        return 0.5 * self.v0**2 * np.log(Q)

    def _grad(self, R, z):
        R, z, Q = self._Q(R, z)
        return self.v0**2 * R / Q, self.v0**2 * z / (self.q**2 * Q)

    def _hess(self, R, z):
        R, z, Q = self._Q(R, z)
        v2, q2 = self.v0**2, self.q**2
        return v2 * (1 / Q - 2 * R**2 / Q**2), v2 / q2 * (1 / Q - 2 * z**2 / (q2 * Q**2)), -2 * v2 * R * z / (q2 * Q**2)

    def kernel(self):
        return _k_logarithmic, np.array([self.v0**2, self.Rc**2, self.q**2])


class KuzminKutuzov(Potential):
    """Kuzmin-Kutuzov potential: an exact oblate Stäckel potential, used to test action finders.

    In prolate spheroidal coordinates (lambda, nu), the roots of R^2/(tau - a^2) + z^2/(tau - c^2) = 1
    with lambda >= a^2 >= nu >= c^2, Phi = -G M / (sqrt(lambda) + sqrt(nu)) (Kuzmin & Kutuzov 1962;
    Dejonghe & de Zeeuw 1988, eq. 2.4). The focal distance is Delta = sqrt(a^2 - c^2); a = c is the
    isochrone-like spherical limit excluded here.

    Parameters
    ----------
    mass : float or Quantity
        Total mass M [Msun].
    a, c : float or Quantity
        Semi-axes [kpc], a > c > 0; the axis ratio c/a sets the flattening.
    """

    def __init__(self, mass, a, c):
        self.mass = _param(mass, U.MASS, "mass")
        self.a = _param(a, U.LENGTH, "a")
        self.c = _param(c, U.LENGTH, "c")
        if not self.a > self.c:
            raise ValueError(f"KuzminKutuzov needs a > c (oblate), got a={self.a}, c={self.c}")

    @property
    def focal_distance(self) -> float:
        """Delta = sqrt(a^2 - c^2) [kpc], the focal distance of the coordinate system."""
        return float(np.sqrt(self.a**2 - self.c**2))

    def lambda_nu(self, R, z):
        """Prolate spheroidal coordinates (lambda, nu) [kpc^2] of (R, z)."""
        R, z = _bcast(R, z)
        a2, c2 = self.a**2, self.c**2
        S = a2 + c2 + R**2 + z**2
        P = a2 * c2 + R**2 * c2 + z**2 * a2
        D = np.sqrt(np.maximum(S * S - 4 * P, 0.0))
        return 0.5 * (S + D), 2 * P / (S + D)

    def _phi(self, R, z):
        lam, nu = self.lambda_nu(R, z)
        return -G * self.mass / (np.sqrt(lam) + np.sqrt(nu))

    def _grad(self, R, z):
        R, z = _bcast(R, z)
        out = _kk_grad_vec(R.ravel(), z.ravel(), np.array([G * self.mass, self.a**2, self.c**2]))
        return out[0].reshape(R.shape), out[1].reshape(R.shape)

    def _density(self, R, z):
        # Dejonghe & de Zeeuw 1988 eq. 2.5 (with alpha = -a^2, gamma = -c^2):
        # rho = M c^2 / (4 pi) * [lam nu + a^2 (lam + 3 sqrt(lam nu) + nu)] / [(lam nu)^(3/2) (sqrt(lam) + sqrt(nu))^3]
        lam, nu = self.lambda_nu(R, z)
        sl, sn = np.sqrt(lam), np.sqrt(nu)
        a2, c2 = self.a**2, self.c**2
        return self.mass * c2 / (4 * np.pi) * (lam * nu + a2 * (lam + 3 * sl * sn + nu)) / ((lam * nu) ** 1.5 * (sl + sn) ** 3)

    def kernel(self):
        return _k_kuzmin_kutuzov, np.array([G * self.mass, self.a**2, self.c**2])


@numba.njit(cache=True, nogil=True)
def _kk_grad_vec(R, z, p):
    n = R.shape[0]
    gR = np.empty(n)
    gz = np.empty(n)
    for i in range(n):
        _, gR[i], gz[i] = _k_kuzmin_kutuzov(R[i], z[i], p)
    return gR, gz
