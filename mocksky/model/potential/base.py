"""Base class of axisymmetric gravitational potentials.

Every potential in mocksky is axisymmetric about the z axis (the Galactic models the package
builds are). Subclasses implement a few private methods in cylindrical coordinates on plain
float64 arrays in internal units (kpc, km/s, Msun); the base class provides the public,
Quantity-accepting API on Cartesian (N, 3) arrays, circular speed and epicycle frequencies.

Subclass contract (all arguments are float64 arrays broadcastable against each other, R >= 0):

``_phi(R, z)``
    potential [km^2/s^2], shape of the broadcast.
``_grad(R, z)``
    tuple (dPhi/dR, dPhi/dz) [km^2/s^2/kpc].
``_hess(R, z)`` (optional)
    tuple (d2Phi/dR2, d2Phi/dz2, d2Phi/dRdz) [km^2/s^2/kpc^2]; the default differentiates
    ``_grad`` numerically (central differences).
``_density(R, z)`` (optional)
    density [Msun/kpc^3]; the default applies Poisson's equation to ``_hess``.
``kernel()`` (optional)
    a numba-compiled scalar function ``f(R, z, params) -> (Phi, dPhi/dR, dPhi/dz)`` and its
    float64 ``params`` array, used by the compiled action finders. The default tabulates the
    potential on a 2D spline grid (:mod:`mocksky.model.potential.tabulated`).
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

from ... import units as U


def _bcast(R, z):
    R = np.asarray(R, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    return np.broadcast_arrays(R, z)


class Potential:
    """Axisymmetric gravitational potential (abstract base).

    Attributes
    ----------
    spherical : bool
        True if Phi depends on r = sqrt(R^2 + z^2) only (enables exact spherical actions).
    name : str
        Label, e.g. the INI section name the potential came from.
    """

    spherical: bool = False
    name: str = ""

    # ------------------------------------------------------------------ to implement
    def _phi(self, R, z):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _phi(R, z)")

    def _grad(self, R, z):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _grad(R, z)")

    def _hess(self, R, z):
        """Second derivatives by central differences of :meth:`_grad` (override if analytic)."""
        R, z = _bcast(R, z)
        scale = np.maximum(np.hypot(R, z), 1e-3)
        h = 1e-4 * scale
        # one-sided in R near the axis so that R stays >= 0
        Rp, Rm = R + h, np.maximum(R - h, 0.0)
        gRp, gzRp = self._grad(Rp, z)
        gRm, gzRm = self._grad(Rm, z)
        dR = Rp - Rm
        gRzp, gzzp = self._grad(R, z + h)
        gRzm, gzzm = self._grad(R, z - h)
        d2R = (gRp - gRm) / dR
        d2z = (gzzp - gzzm) / (2 * h)
        dRz = 0.5 * ((gzRp - gzRm) / dR + (gRzp - gRzm) / (2 * h))
        return d2R, d2z, dRz

    def _density(self, R, z):
        """Density from Poisson's equation, rho = (Phi_RR + Phi_R / R + Phi_zz) / (4 pi G)."""
        R, z = _bcast(R, z)
        d2R, d2z, _ = self._hess(R, z)
        gR, _ = self._grad(R, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            gR_over_R = np.where(R > 0, gR / np.where(R > 0, R, 1.0), d2R)
        return (d2R + gR_over_R + d2z) / (4 * np.pi * U.G)

    def kernel(self) -> Tuple[Callable, np.ndarray]:
        """Numba kernel ``f(R, z, params) -> (Phi, dPhi/dR, dPhi/dz)`` and its parameters.

        The default is a tabulated 2D spline of this potential (cached on the instance);
        analytic potentials override it with their exact formulae.
        """
        cached = getattr(self, "_kernel_cache", None)
        if cached is None:
            from .tabulated import TabulatedPotential

            cached = TabulatedPotential(self).kernel()
            self._kernel_cache = cached
        return cached

    # ------------------------------------------------------------------ public API
    def potential(self, xyz) -> np.ndarray:
        """Potential Phi at Cartesian positions.

        Parameters
        ----------
        xyz : array_like or Quantity, shape (N, 3) or (3,)
            Positions [kpc].

        Returns
        -------
        numpy.ndarray, shape (N,)
            Phi [km^2/s^2].
        """
        p = U.points(xyz)
        return self._phi(np.hypot(p[:, 0], p[:, 1]), p[:, 2])

    def force(self, xyz) -> np.ndarray:
        """Force per unit mass -grad Phi at Cartesian positions.

        Parameters
        ----------
        xyz : array_like or Quantity, shape (N, 3) or (3,)
            Positions [kpc].

        Returns
        -------
        numpy.ndarray, shape (N, 3)
            (Fx, Fy, Fz) [km^2/s^2/kpc].
        """
        p = U.points(xyz)
        R = np.hypot(p[:, 0], p[:, 1])
        gR, gz = self._grad(R, p[:, 2])
        with np.errstate(divide="ignore", invalid="ignore"):
            gR_over_R = np.where(R > 0, gR / np.where(R > 0, R, 1.0), 0.0)
        return -np.stack([gR_over_R * p[:, 0], gR_over_R * p[:, 1], np.broadcast_to(gz, R.shape)], axis=1)

    def force_deriv(self, xyz) -> np.ndarray:
        """Derivatives of the force, in Agama's order.

        Parameters
        ----------
        xyz : array_like or Quantity, shape (N, 3) or (3,)
            Positions [kpc].

        Returns
        -------
        numpy.ndarray, shape (N, 6)
            dFx/dx, dFy/dy, dFz/dz, dFx/dy, dFy/dz, dFz/dx [km^2/s^2/kpc^2].
        """
        p = U.points(xyz)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        R = np.hypot(x, y)
        gR, _ = self._grad(R, z)
        d2R, d2z, dRz = (np.broadcast_to(a, R.shape) for a in self._hess(R, z))
        safe = np.where(R > 0, R, 1.0)
        cx, cy = np.where(R > 0, x / safe, 1.0), np.where(R > 0, y / safe, 0.0)
        gR_R = np.where(R > 0, gR / safe, d2R)
        # Hessian of Phi in Cartesian coordinates for an axisymmetric Phi(R, z)
        Hxx = d2R * cx * cx + gR_R * cy * cy
        Hyy = d2R * cy * cy + gR_R * cx * cx
        Hxy = (d2R - gR_R) * cx * cy
        Hyz = dRz * cy
        Hzx = dRz * cx
        return -np.stack([Hxx, Hyy, d2z, Hxy, Hyz, Hzx], axis=1)

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
        return np.broadcast_to(self._density(np.hypot(p[:, 0], p[:, 1]), p[:, 2]), (len(p),)).copy()

    def vcirc(self, R) -> np.ndarray:
        """Circular speed in the equatorial plane, v_c = sqrt(R dPhi/dR) at z = 0.

        Parameters
        ----------
        R : array_like or Quantity
            Cylindrical radius [kpc], any shape.

        Returns
        -------
        numpy.ndarray
            v_c [km/s], same shape as R (0 where the radial force points outward).
        """
        R = U.to_internal(R, U.LENGTH, "R")
        gR, _ = self._grad(R, np.zeros_like(R))
        return np.sqrt(np.maximum(R * gR, 0.0))

    def epicycle_frequencies(self, R):
        """Epicycle frequencies in the equatorial plane (Binney & Tremaine 2008, eqs. 3.79-3.81).

        kappa^2 = Phi_RR + 3 Phi_R / R,  nu^2 = Phi_zz,  Omega^2 = Phi_R / R, all at z = 0.

        Parameters
        ----------
        R : array_like or Quantity
            Cylindrical radius [kpc], any shape, R > 0.

        Returns
        -------
        kappa, nu, Omega : numpy.ndarray
            Radial, vertical and azimuthal frequencies [km/s/kpc], shape of R.
        """
        R = U.to_internal(R, U.LENGTH, "R")
        z = np.zeros_like(R)
        gR, _ = self._grad(R, z)
        d2R, d2z, _ = self._hess(R, z)
        Om2 = gR / R
        kappa = np.sqrt(np.maximum(d2R + 3 * Om2, 0.0))
        nu = np.sqrt(np.maximum(np.broadcast_to(d2z, R.shape), 0.0))
        return kappa, nu, np.sqrt(np.maximum(Om2, 0.0))

    def __add__(self, other: "Potential") -> "Potential":
        from .composite import Composite

        return Composite([self, other])

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{label}>"
