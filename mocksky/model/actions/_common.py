"""Numerical machinery shared by the action finders (private module).

* input parsing (``posvel`` arrays or ``(xyz, vxyz)`` Quantity pairs);
* the compiled potential kernel, passed to the numba code as a first-class function of fixed
  signature ``f(R, z, params) -> (Phi, dPhi/dR, dPhi/dz)``: the compiled drivers are then cached on
  disk once for every potential instead of being recompiled for each kernel;
* Gauss-Legendre nodes and local cubic (4-point Lagrange) interpolation on uniform grids;
* :class:`EnergyGrid`: radius R_c(E) and angular momentum L_c(E) of the circular orbit of energy E
  in the equatorial plane, tabulated once per potential.
"""
from __future__ import annotations

import logging
import math

import numba
import numpy as np
from numba import types

from ... import units as U

log = logging.getLogger(__name__)

#: numba type of the 1D float64 parameter arrays of potential kernels
ARR1 = types.Array(types.float64, 1, "C")
ARR2 = types.Array(types.float64, 2, "C")
ARR3 = types.Array(types.float64, 3, "C")
ARR4 = types.Array(types.float64, 4, "C")
#: signature every potential kernel is compiled for
KERNEL_SIG = types.UniTuple(types.float64, 3)(types.float64, types.float64, ARR1)
#: first-class function type of a kernel inside compiled drivers
KERNEL_T = types.FunctionType(KERNEL_SIG)

TWO_PI = 2.0 * math.pi
HALF_PI = 0.5 * math.pi


def get_kernel(pot):
    """Compiled kernel ``f(R, z, params)`` of a potential and its C-contiguous float64 params.

    Raises
    ------
    TypeError
        If ``pot`` has no ``kernel()`` method, or the kernel cannot be compiled for the signature
        ``(float64, float64, float64[::1]) -> (float64, float64, float64)``.
    """
    if not hasattr(pot, "kernel"):
        raise TypeError(f"pot must be a mocksky Potential with a kernel() method, got {type(pot).__name__}")
    func, params = pot.kernel()
    params = np.ascontiguousarray(np.asarray(params, dtype=np.float64).ravel())
    if hasattr(func, "compile"):
        try:
            func.compile(KERNEL_SIG)
        except Exception as exc:  # numba typing errors have many classes
            raise TypeError(
                f"the kernel of {pot!r} cannot be compiled as f(R: float64, z: float64, params: float64[::1]) -> "
                f"(Phi, dPhi/dR, dPhi/dz): {exc}") from exc
    return func, params


def parse_posvel(posvel, name: str = "posvel") -> np.ndarray:
    """Phase-space points as a C-contiguous (N, 6) float64 array [kpc, km/s].

    Parameters
    ----------
    posvel : array_like, shape (N, 6) or (6,), or a pair (xyz, vxyz)
        Cartesian positions and velocities (x, y, z, vx, vy, vz). Plain numbers are in kpc and
        km/s; the pair form accepts astropy Quantities of shapes (N, 3) or (3,) each.
    name : str
        Argument name used in error messages.

    Raises
    ------
    ValueError
        If the shape is not (N, 6) / (6,) (or two (N, 3) arrays), or values are not finite.
    """
    if isinstance(posvel, (tuple, list)) and len(posvel) == 2 and np.ndim(posvel[0]) in (1, 2) \
            and np.shape(posvel[0])[-1:] == (3,):
        xyz = U.to_internal(posvel[0], U.LENGTH, f"{name}[0] (positions)")
        vxyz = U.to_internal(posvel[1], U.VELOCITY, f"{name}[1] (velocities)")
        xyz, vxyz = np.atleast_2d(xyz), np.atleast_2d(vxyz)
        if xyz.shape != vxyz.shape or xyz.shape[1] != 3:
            raise ValueError(f"{name}: positions and velocities must both have shape (N, 3), got {xyz.shape} "
                             f"and {vxyz.shape}")
        arr = np.concatenate([xyz, vxyz], axis=1)
    else:
        if hasattr(posvel, "unit"):
            raise ValueError(f"{name}: a single Quantity cannot hold kpc and km/s; pass (xyz, vxyz) instead")
        arr = np.atleast_2d(np.asarray(posvel, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"{name}: expected shape (N, 6) = (x, y, z, vx, vy, vz) [kpc, km/s], got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.all(np.isfinite(arr), axis=1)))
        raise ValueError(f"{name}: {bad} point(s) have non-finite coordinates")
    return arr


def gauss_legendre(n: int):
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1]."""
    x, w = np.polynomial.legendre.leggauss(int(n))
    return np.ascontiguousarray(x), np.ascontiguousarray(w)


# --------------------------------------------------------------------------- cylindrical coordinates
@numba.njit(cache=True, nogil=True)
def cylindrical(x, y, z, vx, vy, vz):
    """(R, z, vR, vz, vphi, phi) of a Cartesian point; vR = vphi = 0 on the axis is handled."""
    R = math.sqrt(x * x + y * y)
    if R > 0.0:
        cphi, sphi = x / R, y / R
    else:
        cphi, sphi = 1.0, 0.0
    vR = vx * cphi + vy * sphi
    vphi = -vx * sphi + vy * cphi
    return R, z, vR, vz, vphi, math.atan2(y, x)


# --------------------------------------------------------------------------- interpolation
@numba.njit(cache=True, nogil=True, inline="always")
def _stencil(q, n):
    """First node and local coordinate of the 4-point stencil around grid coordinate q (clamped)."""
    if q < 0.0:
        q = 0.0
    elif q > n - 1.0:
        q = n - 1.0
    i = int(math.floor(q))
    s = i - 1
    if s < 0:
        s = 0
    elif s > n - 4:
        s = n - 4
    return s, q - s


@numba.njit(cache=True, nogil=True, inline="always")
def _lagw(t):
    """Cubic Lagrange weights of the nodes 0, 1, 2, 3 at position t."""
    t0, t1, t2, t3 = t, t - 1.0, t - 2.0, t - 3.0
    return (-t1 * t2 * t3 / 6.0, 0.5 * t0 * t2 * t3, -0.5 * t0 * t1 * t3, t0 * t1 * t2 / 6.0)


@numba.njit(cache=True, nogil=True)
def interp1(tab, q):
    """Local cubic interpolation of a 1D table at grid coordinate q (node index units)."""
    s, t = _stencil(q, tab.shape[0])
    w = _lagw(t)
    return w[0] * tab[s] + w[1] * tab[s + 1] + w[2] * tab[s + 2] + w[3] * tab[s + 3]


@numba.njit(cache=True, nogil=True)
def interp2(tab, q0, q1):
    """Local bicubic (tensor 4x4 Lagrange) interpolation of a 2D table at grid coordinates (q0, q1)."""
    s0, t0 = _stencil(q0, tab.shape[0])
    s1, t1 = _stencil(q1, tab.shape[1])
    w0 = _lagw(t0)
    w1 = _lagw(t1)
    out = 0.0
    for i in range(4):
        row = 0.0
        for j in range(4):
            row += w1[j] * tab[s0 + i, s1 + j]
        out += w0[i] * row
    return out


# --------------------------------------------------------------------------- energy grid
@numba.njit(types.UniTuple(ARR1, 2)(KERNEL_T, ARR1, ARR1), cache=True, nogil=True)
def _circular_table(f, p, logR):
    n = logR.shape[0]
    Ec = np.empty(n)
    logLc = np.empty(n)
    for i in range(n):
        R = math.exp(logR[i])
        Phi, dR, _ = f(R, 0.0, p)
        v2 = R * dR
        Ec[i] = Phi + 0.5 * v2
        logLc[i] = math.log(R) + 0.5 * math.log(v2) if v2 > 0.0 else -np.inf
    return Ec, logLc


@numba.njit(cache=True, nogil=True)
def energy_coord(E, Ec):
    """Grid coordinate q (node units, clamped to [0, n-1]) of the circular orbit with energy E.

    Inverse cubic interpolation of the increasing table Ec; the second value is 0 inside the table,
    -1 below its first node and +1 above its last.
    """
    n = Ec.shape[0]
    if E <= Ec[0]:
        return 0.0, -1
    if E >= Ec[n - 1]:
        return n - 1.0, 1
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if Ec[mid] <= E:
            lo = mid
        else:
            hi = mid
    s = lo - 1
    if s < 0:
        s = 0
    elif s > n - 4:
        s = n - 4
    # Lagrange interpolation of the node index as a function of Ec (non-uniform abscissae)
    q = 0.0
    for a in range(4):
        w = 1.0
        for b in range(4):
            if b != a:
                w *= (E - Ec[s + b]) / (Ec[s + a] - Ec[s + b])
        q += w * (s + a)
    if q < lo:
        q = lo
    elif q > lo + 1:
        q = lo + 1.0
    return q, 0


class EnergyGrid:
    """Circular orbits of a potential tabulated on a log-radius grid.

    Parameters
    ----------
    func, params
        The potential kernel (see :func:`get_kernel`).
    rmin, rmax : float
        Radius range [kpc] of the table.
    n : int
        Number of log-spaced radii.

    Attributes
    ----------
    logR : ndarray, shape (m,)
        ln R [kpc], m <= n: the grid starts at the innermost node outside which every circular orbit is stable
        (nodes inside a central region with dPhi/dR <= 0 are dropped, with a logged warning).
    Ec : ndarray, shape (m,)
        Energy of the circular orbit E_c(R) = Phi(R, 0) + R dPhi/dR / 2 [km^2/s^2], increasing.
    logLc : ndarray, shape (m,)
        ln L_c(R), L_c = R v_c [kpc km/s].

    Raises
    ------
    ValueError
        If E_c(R) is not strictly increasing on the outer half of the grid (no stable circular orbits).
    """

    def __init__(self, func, params, rmin: float, rmax: float, n: int = 400):
        if not (0 < rmin < rmax):
            raise ValueError(f"radius range must satisfy 0 < rmin < rmax, got rmin={rmin}, rmax={rmax}")
        logR = np.linspace(math.log(rmin), math.log(rmax), int(n))
        Ec, logLc = _circular_table(func, params, logR)
        ok = np.isfinite(Ec) & np.isfinite(logLc)
        ok[1:] &= np.diff(Ec) > 0
        # the table starts at the innermost node from which all circular orbits are stable: a self-consistent
        # model with a cored bulge and a central gas hole can have dPhi/dR <= 0 within a few pc of the centre
        # (the ring's outward pull beats the core's inward pull); orbits there are clamped to the first node
        bad = np.flatnonzero(~ok)
        i0 = int(bad[-1]) + 1 if bad.size else 0
        if i0 > (int(n) - 1) // 2 or i0 >= int(n) - 4:
            raise ValueError("the circular-orbit energy E_c(R) of this potential is not strictly increasing on "
                             f"[{math.exp(logR[min(i0, int(n) - 1)]):.4g}, {rmax}] kpc: the action finders need "
                             "stable circular orbits")
        if i0 > 0:
            log.warning("circular orbits are unstable (dPhi/dR <= 0 or E_c(R) not increasing) inside R = %.3g kpc; "
                        "the energy table starts there", math.exp(logR[i0]))
        self.logR = logR[i0:]
        self.dlogR = float(logR[1] - logR[0])
        self.Ec, self.logLc = Ec[i0:].copy(), logLc[i0:].copy()
