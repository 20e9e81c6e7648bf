"""Density profiles that define initial and static potentials (Agama INI ``type = Disk / Spheroid``).

A density object has a vectorised ``_density(R, z)`` [Msun/kpc^3] on float64 arrays, is
axisymmetric and symmetric under z -> -z, and has a boolean ``spherical`` attribute. The Poisson
solvers (:class:`~mocksky.model.potential.multipole.Multipole`,
:class:`~mocksky.model.potential.cylspline.CylSpline`) turn densities into potentials.

References
----------
Vasiliev 2019, MNRAS 482, 1525 (Agama), Sect. 3.1 and the Agama reference manual (density profiles).
Binney & Vasiliev 2023, MNRAS 520, 1832 (BV23), eq. 16 (gas disc).
"""
from __future__ import annotations

import numpy as np
from scipy import integrate

from ... import units as U
from .base import _bcast


class Density:
    """Axisymmetric, z-symmetric density profile (base class).

    Subclasses implement ``_density(R, z)`` on float64 arrays in kpc, returning Msun/kpc^3.
    """

    spherical: bool = False
    name: str = ""

    def _density(self, R, z):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _density(R, z)")

    def density(self, xyz) -> np.ndarray:
        """Density at Cartesian positions.

        Parameters
        ----------
        xyz : array_like or Quantity, shape (N, 3) or (3,)
            Positions [kpc].

        Returns
        -------
        numpy.ndarray, shape (N,)
            rho [Msun/kpc^3].
        """
        p = U.points(xyz)
        return self._density(np.hypot(p[:, 0], p[:, 1]), p[:, 2])

    def total_mass(self) -> float:
        """Total mass by numerical quadrature, 4 pi int_0^inf int_0^inf rho R dR dz [Msun]."""
        f = lambda z, R: 4 * np.pi * R * float(self._density(np.array(R), np.array(z)))  # noqa: E731
        val, _ = integrate.dblquad(f, 0, np.inf, 0, np.inf, epsrel=1e-8)
        return val

    def __add__(self, other: "Density") -> "Density":
        return DensitySum([self, other])

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{label}>"


class DensitySum(Density):
    """Sum of several density profiles."""

    def __init__(self, components):
        flat = []
        for c in components:
            flat.extend(c.components if isinstance(c, DensitySum) else [c])
        if not flat:
            raise ValueError("DensitySum needs at least one component")
        self.components = flat
        self.spherical = all(getattr(c, "spherical", False) for c in flat)

    def _density(self, R, z):
        R, z = _bcast(R, z)
        return sum(c._density(R, z) for c in self.components)


class Disk(Density):
    """Disk profile rho = Sigma0 exp(-(R/Rd)^(1/n) - Rcut/R) H(z) (Agama ``Disk``; BV23 eq. 16).

    The vertical profile H is exponential for h > 0, H = exp(-|z|/h) / (2h), and isothermal for
    h < 0, H = sech^2(z / (2|h|)) / (4|h|); h = 0 is an infinitely thin sheet and not supported
    by the volume solvers. Both H integrate to 1 over z.

    Parameters
    ----------
    surface_density : float or Quantity
        Sigma0 [Msun/kpc^2], the surface density at R = 0 without the inner cutoff.
    scale_radius : float or Quantity
        Rd [kpc] > 0.
    scale_height : float or Quantity
        h [kpc], non-zero; the sign selects the vertical profile.
    inner_cutoff_radius : float or Quantity
        Rcut [kpc] >= 0 (0 = no hole).
    sersic_index : float
        n > 0 (1 = exponential).

    Raises
    ------
    ValueError
        If a parameter is outside its allowed range (the message names it).
    """

    def __init__(self, surface_density, scale_radius, scale_height, inner_cutoff_radius=0.0, sersic_index=1.0, name=""):
        self.Sigma0 = float(U.to_internal(surface_density, U.SURFACE_DENSITY, "surfaceDensity"))
        self.Rd = float(U.to_internal(scale_radius, U.LENGTH, "scaleRadius"))
        self.h = float(U.to_internal(scale_height, U.LENGTH, "scaleHeight"))
        self.Rcut = float(U.to_internal(inner_cutoff_radius, U.LENGTH, "innerCutoffRadius"))
        self.n = float(sersic_index)
        self.name = name
        if not self.Rd > 0:
            raise ValueError(f"Disk scaleRadius must be > 0, got {self.Rd}")
        if self.h == 0 or not np.isfinite(self.h):
            raise ValueError(f"Disk scaleHeight must be non-zero and finite (>0 exponential, <0 sech^2), got {self.h}")
        if self.Rcut < 0:
            raise ValueError(f"Disk innerCutoffRadius must be >= 0, got {self.Rcut}")
        if not self.n > 0:
            raise ValueError(f"Disk sersicIndex must be > 0, got {self.n}")

    def surface_density(self, R) -> np.ndarray:
        """Sigma(R) = Sigma0 exp(-(R/Rd)^(1/n) - Rcut/R) [Msun/kpc^2]."""
        R = np.asarray(R, dtype=np.float64)
        with np.errstate(divide="ignore", over="ignore"):
            arg = (R / self.Rd) ** (1.0 / self.n)
            if self.Rcut > 0:
                arg = arg + np.where(R > 0, self.Rcut / np.where(R > 0, R, 1.0), np.inf)
        return self.Sigma0 * np.exp(-arg)

    def vertical(self, z) -> np.ndarray:
        """H(z) [1/kpc], normalised to unit integral."""
        z = np.abs(np.asarray(z, dtype=np.float64))
        if self.h > 0:
            return np.exp(-z / self.h) / (2 * self.h)
        hh = -self.h
        x = z / (2 * hh)
        # sech^2(x) = 4 e^{-2x} / (1 + e^{-2x})^2, stable for large x
        e = np.exp(-2 * x)
        return 4 * e / (1 + e) ** 2 / (4 * hh)

    def _density(self, R, z):
        R, z = _bcast(R, z)
        return self.surface_density(R) * self.vertical(z)

    def total_mass(self) -> float:
        """2 pi int Sigma(R) R dR [Msun] (1D quadrature; exact 2 pi Sigma0 Rd^2 n Gamma(2n) without a hole)."""
        val, _ = integrate.quad(lambda R: 2 * np.pi * R * float(self.surface_density(R)), 0, np.inf, epsrel=1e-10, limit=200)
        return val


class Spheroid(Density):
    """Spheroid (double-power-law) profile (Agama ``Spheroid``).

    rho = rho0 (s/a)^-gamma [1 + (s/a)^alpha]^((gamma - beta)/alpha) exp[-(s/rcut)^xi],
    s = sqrt(R^2 + (z/q)^2).

    Parameters
    ----------
    density_norm : float or Quantity
        rho0 [Msun/kpc^3] (the coefficient, not rho(a)).
    scale_radius : float or Quantity
        a [kpc], default 1.
    gamma, beta, alpha : float
        Inner slope, outer slope, transition steepness (defaults 1, 4, 1).
    outer_cutoff_radius : float or Quantity
        rcut [kpc]; ``inf`` or 0 = no cutoff.
    cutoff_strength : float
        xi > 0 (default 2).
    axis_ratio_z : float
        q, flattening z/R (default 1).

    Raises
    ------
    ValueError
        If a parameter is outside its allowed range (the message names it).
    """

    def __init__(self, density_norm, scale_radius=1.0, gamma=1.0, beta=4.0, alpha=1.0,
                 outer_cutoff_radius=np.inf, cutoff_strength=2.0, axis_ratio_z=1.0, name=""):
        self.rho0 = float(U.to_internal(density_norm, U.DENSITY, "densityNorm"))
        self.a = float(U.to_internal(scale_radius, U.LENGTH, "scaleRadius"))
        self.gamma, self.beta, self.alpha = float(gamma), float(beta), float(alpha)
        rcut = float(U.to_internal(outer_cutoff_radius, U.LENGTH, "outerCutoffRadius"))
        self.rcut = np.inf if rcut == 0 else rcut
        self.xi = float(cutoff_strength)
        self.q = float(axis_ratio_z)
        self.name = name
        self.spherical = self.q == 1.0
        if not self.a > 0:
            raise ValueError(f"Spheroid scaleRadius must be > 0, got {self.a}")
        if not self.alpha > 0:
            raise ValueError(f"Spheroid alpha must be > 0, got {self.alpha}")
        if not self.gamma < 3:
            raise ValueError(f"Spheroid gamma must be < 3 (finite mass at the centre), got {self.gamma}")
        if not self.rcut > 0:
            raise ValueError(f"Spheroid outerCutoffRadius must be > 0, got {self.rcut}")
        if np.isinf(self.rcut) and self.beta <= 3:
            raise ValueError(f"Spheroid with beta = {self.beta} <= 3 needs an outerCutoffRadius (infinite mass)")
        if not self.xi > 0:
            raise ValueError(f"Spheroid cutoffStrength must be > 0, got {self.xi}")
        if not 0 < self.q <= 10:
            raise ValueError(f"Spheroid axisRatioZ must be in (0, 10], got {self.q}")

    def profile(self, s) -> np.ndarray:
        """rho as a function of the spheroidal radius s [kpc] -> [Msun/kpc^3]."""
        x = np.asarray(s, dtype=np.float64) / self.a
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            rho = self.rho0 * x ** (-self.gamma) * (1 + x**self.alpha) ** ((self.gamma - self.beta) / self.alpha)
            if np.isfinite(self.rcut):
                rho = rho * np.exp(-((np.asarray(s, dtype=np.float64) / self.rcut) ** self.xi))
        return rho

    def _density(self, R, z):
        R, z = _bcast(R, z)
        return self.profile(np.sqrt(R**2 + (z / self.q) ** 2))

    def total_mass(self) -> float:
        """4 pi q int_0^inf rho(s) s^2 ds [Msun] (1D quadrature in ln s)."""
        f = lambda t: 4 * np.pi * self.q * float(self.profile(np.exp(t))) * np.exp(3 * t)  # noqa: E731
        lo, hi = np.log(self.a) - 30, np.log(self.a) + 30
        if np.isfinite(self.rcut):
            hi = min(hi, np.log(self.rcut) + np.log(60.0) / max(self.xi, 1e-3) + 2)
        val, _ = integrate.quad(f, lo, hi, epsrel=1e-10, limit=500, points=[np.log(self.a)])
        return val
