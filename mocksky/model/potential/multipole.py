"""Multipole (spherical-harmonic) expansion of the potential of an axisymmetric, z-symmetric density.

This is mocksky's counterpart of Agama's ``Multipole`` potential (Vasiliev 2019, MNRAS 482, 1525; Agama
reference manual, Sect. 2.2.2): the potential is expanded in Legendre polynomials of cos(theta),

    Phi(r, theta) = sum_{l = 0, 2, ..., lmax} Phi_l(r) P_l(cos theta),

with only even l and m = 0 because the density is axisymmetric and symmetric under z -> -z. Each
radial term is the solution of the radial Poisson equation (Binney & Tremaine 2008, BT08, Sect. 2.4, eq. 2.95)

    Phi_l(r) = -4 pi G / (2l+1) [ r^-(l+1) int_0^r rho_l(r') r'^(l+2) dr'
                                  + r^l int_r^inf rho_l(r') r'^(1-l) dr' ],            (1)

    rho_l(r) = (2l+1)/2 int_{-1}^{1} rho(r, mu) P_l(mu) dmu,                          (2)

and is represented on a grid uniform in ln r by a quintic Hermite spline that uses the exact values
of Phi_l, dPhi_l/dr (from the two integrals in eq. 1) and d2Phi_l/dr2 (from the radial Poisson equation
Phi_l'' = 4 pi G rho_l - 2 Phi_l'/r + l(l+1) Phi_l/r^2), so that the potential, the forces and their
derivatives are continuous and the density of the expansion equals the input rho_l at the nodes.

Construction (:meth:`Multipole.from_density`)
---------------------------------------------
* Angular projection, eq. (2): composite Gauss-Legendre quadrature in the latitude pi/2 - theta, with
  panels refined geometrically towards the equator (down to 1e-6 rad) and equal panels elsewhere
  (:func:`_angular_rule`, 224 nodes for lmax <= 11). A plain Gauss-Legendre rule in cos(theta) with a few
  times lmax nodes would suffice for smooth spheroids (for q = 0.5 the Legendre coefficients of rho fall as
  1.73^-n), but it misses thin discs and converges only algebraically for the kink of exp(-|z|/h) at z = 0;
  the graded rule handles both (a disc of angular thickness h/r > 1e-6 is resolved), at a cost that is
  negligible next to the evaluation of the density on the radial quadrature (~2e5 evaluations in all).
  Spherical densities (``spherical`` attribute true) need only the equator and lmax = 0.
* Radial integrals, eq. (1): composite Gauss-Legendre quadrature (8 nodes per panel, panels no wider
  than 0.25 in ln r) of the *input density itself* (not of an interpolant) over the grid and over
  extensions by a factor 1e6 inwards and outwards, plus the analytic integrals of power-law
  extrapolations of rho_l beyond the extensions. The node values of Phi_l and dPhi_l/dr are therefore
  accurate to ~1e-12, and the only interpolation error is that of the quintic spline between nodes.
* Extrapolation of the potential: below rmin and above rmax each Phi_l is continued as the sum of the
  regular homogeneous solution (r^l inside, r^-(l+1) outside) and a power law r^s, the particular solution
  for a power-law density rho_l ~ r^(s-2). The two amplitudes and the exponent s are fixed by matching
  Phi_l, dPhi_l/dr and d2Phi_l/dr2 at the boundary node, so the extrapolation is C2-continuous and exact
  for power-law densities (for instance Phi_0 = -G M / r outside a truncated density).

Evaluation is compiled with numba (one kernel for Phi, forces, Hessian and density; about 10^7
potential evaluations per second per core at lmax = 4).

Coefficient file format (:meth:`Multipole.to_file` / :meth:`Multipole.from_file`)
-------------------------------------------------------------------------------
Plain text, modelled on Agama's ``Multipole`` coefficient files::

    Multipole
    name <label>               (optional line)
    gridSizeR <K>
    lMax <lmax>
    #Phi
    #radius   l=0   l=2 ...   (K rows: r [kpc], then Phi_l [(km/s)^2] for l = 0, 2, ..., lmax)
    #dPhi/dr
    ...                        (K rows: r, then dPhi_l/dr [(km/s)^2/kpc])
    #rho
    ...                        (K rows: r, then rho_l [Msun/kpc^3])

Unlike Agama's files, which hold only Phi_l and dPhi_l/dr, the third block holds the density harmonics,
which fix the second derivatives of the quintic spline; numbers are written with 17 significant digits
so that a written and re-read expansion is bit-for-bit identical.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import numba
import numpy as np

from ...units import G
from .base import Potential, _bcast

logger = logging.getLogger(__name__)

__all__ = ["Multipole"]

# ---------------------------------------------------------------------------------------------------
# construction constants
_GAUSS_NODES = 8            # Gauss-Legendre nodes per radial panel
_MAX_PANEL_WIDTH = 0.25     # maximal width of a radial quadrature panel in ln r
_EXTENSION = math.log(1e6)  # quadrature beyond the grid on each side, in ln r
_P2_INNER = (-0.999, 100.0)  # allowed exponents of the inner power-law term (rho ~ r^(s-2), s > -1)
_P2_OUTER = (-200.0, -1e-3)  # allowed exponents of the outer power-law term (Phi -> 0 at infinity)
_CENTRE_OFFSET = 1e-12      # at r = 0 the Hessian is taken at R = 1e-12 rmin
_SLOPE_MARGIN = 0.05        # tails with log-slopes closer than this to divergence are rejected
_PSI_MIN = 1e-6             # first angular panel [0, 1e-6] rad in latitude (see _angular_rule)
_PSI_GEO = 0.1              # end of the geometrically graded angular panels [rad]

# layout of the flat parameter array used by the numba kernels
_H_NL, _H_K, _H_U0, _H_H, _H_INVH, _H_ULAST, _H_INV4PIG, _H_LMAX = range(8)
_HEADER = 8


# ---------------------------------------------------------------------------------------------------
# compiled evaluation
@numba.njit(cache=True, nogil=True, fastmath=False)
def _eval_point(R, z, p, mode):
    """Expansion at one point (R, z).

    mode 0: Phi; 1: Phi and gradient; 2: Phi, gradient and Hessian; 3: density.
    Returns (Phi, dPhi/dR, dPhi/dz, Phi_RR, Phi_zz, Phi_Rz, rho); unused entries are 0.
    """
    nl = int(p[_H_NL])
    K = int(p[_H_K])
    u0 = p[_H_U0]
    invh = p[_H_INVH]
    centre = False
    r2 = R * R + z * z
    if not r2 == r2:    # NaN input: NaN output (and no out-of-range spline index)
        nan = math.nan
        return nan, nan, nan, nan, nan, nan, nan
    if r2 == 0.0:
        centre = True
        R = math.exp(u0) * _CENTRE_OFFSET
        z = 0.0
        r2 = R * R
    r = math.sqrt(r2)
    u = math.log(r)
    mu = z / r
    s = (u - u0) * invh
    region = 0
    t = 0.0
    x = 0.0
    base = 0
    if s < 0.0:
        region = -1
        x = u - u0
        base = _HEADER + (K - 1) * nl * 6
    elif s > K - 1:
        region = 1
        x = u - p[_H_ULAST]
        base = _HEADER + (K - 1) * nl * 6 + 4 * nl
    else:
        idx = int(s)
        if idx > K - 2:
            idx = K - 2
        t = s - idx
        base = _HEADER + idx * nl * 6
    # Legendre recurrences (Abramowitz & Stegun 1964, eq. 8.5.3, and P'_{n+1} - P'_{n-1} = (2n+1) P_n)
    p_prev, p_cur = 0.0, 1.0
    d_prev, d_cur = 0.0, 0.0
    s_prev, s_cur = 0.0, 0.0
    F = 0.0
    Fu = 0.0
    Fuu = 0.0
    Fm = 0.0
    Fum = 0.0
    Fmm = 0.0
    rho = 0.0
    for il in range(nl):
        l = 2 * il
        if region == 0:
            o = base + il * 6
            a0 = p[o]
            a1 = p[o + 1]
            a2 = p[o + 2]
            a3 = p[o + 3]
            a4 = p[o + 4]
            a5 = p[o + 5]
            f = a0 + t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
            fu = (a1 + t * (2.0 * a2 + t * (3.0 * a3 + t * (4.0 * a4 + t * 5.0 * a5)))) * invh
            fuu = (2.0 * a2 + t * (6.0 * a3 + t * (12.0 * a4 + t * 20.0 * a5))) * invh * invh
            lap = fuu + fu - l * (l + 1.0) * f
        else:
            o = base + il * 4
            c1 = p[o]
            c2 = p[o + 1]
            p1 = p[o + 2]
            d = p[o + 3]
            e1 = math.exp(p1 * x)
            dx = d * x
            if d == 0.0:
                e2 = e1
                g = e1 * x
            elif abs(dx) < 1.0:
                e2 = e1 * math.exp(dx)
                g = e1 * math.expm1(dx) / d
            else:
                e2 = math.exp((p1 + d) * x)
                g = (e2 - e1) / d
            f = c1 * e1 + c2 * g
            fu = p1 * f + c2 * e2
            fuu = p1 * fu + (p1 + d) * c2 * e2
            # Laplacian of the extrapolation: only the power-law term contributes
            lap = c2 * (2.0 * p1 + d + 1.0) * e2
        F += f * p_cur
        if mode == 3:
            rho += lap * p_cur
        elif mode >= 1:
            Fu += fu * p_cur
            Fm += f * d_cur
            if mode == 2:
                Fuu += fuu * p_cur
                Fum += fu * d_cur
                Fmm += f * s_cur
        # advance the recurrences twice: P_{n+1} = ((2n+1) mu P_n - n P_{n-1}) / (n+1),
        # P'_{n+1} = P'_{n-1} + (2n+1) P_n,  P''_{n+1} = P''_{n-1} + (2n+1) P'_n
        for n in range(l, l + 2):
            p_next = ((2 * n + 1.0) * mu * p_cur - n * p_prev) / (n + 1.0)
            d_next = d_prev + (2 * n + 1.0) * p_cur
            s_next = s_prev + (2 * n + 1.0) * d_cur
            p_prev, p_cur = p_cur, p_next
            d_prev, d_cur = d_cur, d_next
            s_prev, s_cur = s_cur, s_next
    if mode == 0:
        return F, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if mode == 3:
        return F, 0.0, 0.0, 0.0, 0.0, 0.0, rho * p[_H_INV4PIG] / r2
    Fr = Fu / r
    ir3 = 1.0 / (r2 * r)
    rR = R / r
    rz = z / r
    muR = -z * R * ir3
    muz = R * R * ir3
    gR = Fr * rR + Fm * muR
    gz = Fr * rz + Fm * muz
    if centre:
        gR = 0.0
        gz = 0.0
    if mode == 1:
        return F, gR, gz, 0.0, 0.0, 0.0, 0.0
    Frr = (Fuu - Fu) / r2
    Frm = Fum / r
    ir5 = ir3 / r2
    rRR = z * z * ir3
    rzz = R * R * ir3
    rRz = -R * z * ir3
    muRR = z * (2.0 * R * R - z * z) * ir5
    muzz = -3.0 * z * R * R * ir5
    muRz = R * (2.0 * z * z - R * R) * ir5
    hRR = Frr * rR * rR + 2.0 * Frm * rR * muR + Fmm * muR * muR + Fr * rRR + Fm * muRR
    hzz = Frr * rz * rz + 2.0 * Frm * rz * muz + Fmm * muz * muz + Fr * rzz + Fm * muzz
    hRz = Frr * rR * rz + Frm * (rR * muz + rz * muR) + Fmm * muR * muz + Fr * rRz + Fm * muRz
    return F, gR, gz, hRR, hzz, hRz, 0.0


@numba.njit(cache=True, nogil=True, fastmath=False)
def _multipole_kernel(R, z, params):
    """Scalar kernel (Phi, dPhi/dR, dPhi/dz) of a Multipole expansion (see :meth:`Multipole.kernel`)."""
    res = _eval_point(R, z, params, 1)
    return res[0], res[1], res[2]


@numba.njit(cache=True, nogil=True, fastmath=False, inline="always")
def _store(res, mode, out, i):
    """Write the quantities of ``mode`` (0 Phi, 1 gradient, 2 Hessian, 3 density) from ``res`` to column i."""
    if mode == 0:
        out[0, i] = res[0]
    elif mode == 1:
        out[0, i] = res[1]
        out[1, i] = res[2]
    elif mode == 2:
        out[0, i] = res[3]
        out[1, i] = res[4]
        out[2, i] = res[5]
    else:
        out[0, i] = res[6]


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _eval_many_parallel(R, z, p, mode, out):
    n = R.shape[0]
    for i in numba.prange(n):
        _store(_eval_point(R[i], z[i], p, mode), mode, out, i)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _eval_many_serial(R, z, p, mode, out):
    n = R.shape[0]
    for i in range(n):
        _store(_eval_point(R[i], z[i], p, mode), mode, out, i)


_PARALLEL_MIN = 20000       # below this many points the thread start-up costs more than it saves


def _eval_many(R, z, p, mode, out):
    """Evaluate mode (see :func:`_eval_point`) at all points into out (ncol, n)."""
    (_eval_many_parallel if R.shape[0] >= _PARALLEL_MIN else _eval_many_serial)(R, z, p, mode, out)


# ---------------------------------------------------------------------------------------------------
# construction helpers
def _legendre_even(mu: np.ndarray, lmax: int) -> np.ndarray:
    """P_l(mu) for l = 0, 2, ..., lmax; shape (lmax//2 + 1,) + mu.shape."""
    mu = np.asarray(mu, dtype=np.float64)
    out = np.empty((lmax // 2 + 1,) + mu.shape)
    p_prev, p_cur = np.zeros_like(mu), np.ones_like(mu)
    for n in range(lmax + 1):
        if n % 2 == 0:
            out[n // 2] = p_cur
        p_prev, p_cur = p_cur, ((2 * n + 1) * mu * p_cur - n * p_prev) / (n + 1)
    return out


def _angular_rule(lmax: int) -> Tuple[np.ndarray, np.ndarray]:
    """Nodes mu = cos(theta) in [0, 1] and weights w with int_0^1 f(mu) dmu ~ sum_j w_j f(mu_j).

    Composite Gauss-Legendre quadrature in the latitude psi = pi/2 - theta (mu = sin psi, dmu = cos psi dpsi):
    panels growing geometrically (ratio 2) from psi = 1e-6 to 0.1 rad, then equal panels no wider than
    min(0.15, 2 / (lmax + 2)) rad up to the pole, _GAUSS_NODES nodes each. The geometric panels resolve a thin
    disc (angular thickness h/r down to 1e-6) and the kink of exp(-|z|/h) at the equator, which sits on a panel
    edge; the equal panels resolve the oscillations of P_l (scale pi/l) and the smooth angular profile of a
    spheroid (for q = 0.5 the projections agree with a 4000-node Gauss-Legendre rule in mu to ~1e-11).
    """
    geo = _PSI_MIN * 2.0 ** np.arange(int(math.ceil(math.log2(_PSI_GEO / _PSI_MIN))) + 1)
    wmax = min(0.15, 2.0 / (lmax + 2))
    n_eq = int(math.ceil((0.5 * math.pi - geo[-1]) / wmax))
    edges = np.concatenate([[0.0], geo, np.linspace(geo[-1], 0.5 * math.pi, n_eq + 1)[1:]])
    x, wg = np.polynomial.legendre.leggauss(_GAUSS_NODES)
    width = np.diff(edges)
    psi = (edges[:-1, None] + 0.5 * (1 + x[None, :]) * width[:, None]).ravel()
    wpsi = (0.5 * wg[None, :] * width[:, None]).ravel()
    return np.sin(psi), wpsi * np.cos(psi)


def _density_harmonics(density, r: np.ndarray, lmax: int) -> np.ndarray:
    """rho_l(r) for l = 0, 2, ..., lmax by eq. (2); shape (lmax//2 + 1, len(r)).

    lmax = 0 for a density flagged ``spherical`` is the equatorial value; otherwise the projection uses
    :func:`_angular_rule`.
    """
    if lmax == 0 and getattr(density, "spherical", False):
        mu, w = np.zeros(1), np.ones(1)
    else:
        mu, w = _angular_rule(lmax)
    sin = np.sqrt((1.0 - mu) * (1.0 + mu))
    R = r[:, None] * sin[None, :]
    z = r[:, None] * mu[None, :]
    rho = np.asarray(density._density(R, z), dtype=np.float64)
    rho = np.broadcast_to(rho, R.shape)
    if not np.all(np.isfinite(rho)):
        bad = tuple(np.argwhere(~np.isfinite(rho))[0])
        raise ValueError(f"density {density!r} is not finite at R = {R[bad]:.6g}, z = {z[bad]:.6g} kpc")
    P = _legendre_even(mu, lmax)  # (nl, n_nodes)
    ls = np.arange(0, lmax + 1, 2)
    # (2l+1)/2 int_{-1}^{1} rho P_l dmu = (2l+1) int_0^1 rho P_l dmu for even l
    return (2 * ls + 1)[:, None] * ((P * w[None, :]) @ rho.T)


def _power_slope(rho_a: np.ndarray, rho_b: np.ndarray, du: float) -> Tuple[np.ndarray, np.ndarray]:
    """Logarithmic slope between two radii per harmonic and a mask of where it is defined."""
    ok = (rho_a * rho_b > 0) & np.isfinite(rho_a) & np.isfinite(rho_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(ok, np.log(np.abs(rho_b) / np.where(ok, np.abs(rho_a), 1.0)) / du, 0.0)
    return slope, ok


def _auto_radii(density, rmin: Optional[float], rmax: Optional[float]) -> Tuple[float, float]:
    """Agama-like default grid extent from the enclosed-mass profile of the monopole.

    rmin is where the enclosed mass is 1e-4 of the total and rmax where it is 1 - 1e-4 of it. When the
    total mass diverges (density falling as r^-3 or slower, e.g. NFW), rmax = 1e4 r_2, with r_2 the radius
    maximising r^2 rho_0 (the radius that contributes most to the central potential), and the mass
    fractions refer to the mass inside that rmax.
    """
    u = np.linspace(math.log(1e-6), math.log(1e8), 801)
    r = np.exp(u)
    rho0 = _density_harmonics(density, r, 0)[0]
    if not np.any(rho0 > 0):
        raise ValueError(f"density {density!r} is nowhere positive in 1e-6 < r < 1e8 kpc: cannot choose rmin/rmax")
    dm = 4 * np.pi * r**3 * np.clip(rho0, 0, None)        # dM / dln r
    M = np.concatenate([[0.0], np.cumsum(0.5 * (dm[1:] + dm[:-1]) * np.diff(u))])
    r2 = r[np.argmax(r**2 * np.clip(rho0, 0, None))]
    slope, ok = _power_slope(rho0[-2:-1], rho0[-1:], u[-1] - u[-2])
    finite = (not ok[0]) or slope[0] < -3.05
    if rmax is None or rmax == 0:
        if finite:
            rmax_v = float(np.exp(np.interp(np.log1p(-1e-4), np.log(np.maximum(M[1:] / M[-1], 1e-300)), u[1:])))
        else:
            rmax_v = 1e4 * float(r2)
    else:
        rmax_v = float(rmax)
    Mnorm = M[-1] if finite else float(np.interp(math.log(rmax_v), u, M))
    if rmin is None or rmin == 0:
        frac = np.maximum(M[1:] / Mnorm, 1e-300)
        rmin_v = float(np.exp(np.interp(math.log(1e-4), np.log(frac), u[1:])))
    else:
        rmin_v = float(rmin)
    logger.debug("Multipole auto grid: rmin=%g rmax=%g (finite mass: %s, r_2=%g)", rmin_v, rmax_v, finite, r2)
    return rmin_v, rmax_v


def _quintic_coefficients(y, yu, yuu, h):
    """Polynomial coefficients in t in [0, 1] of the quintic Hermite interpolant on each interval.

    y, yu, yuu : (K, nl) values and first/second derivatives with respect to u = ln r; returns (K-1, nl, 6).
    """
    y0, y1 = y[:-1], y[1:]
    d0, d1 = h * yu[:-1], h * yu[1:]
    s0, s1 = h * h * yuu[:-1], h * h * yuu[1:]
    dy = y1 - y0
    a3 = 10 * dy - 6 * d0 - 4 * d1 - 1.5 * s0 + 0.5 * s1
    a4 = -15 * dy + 8 * d0 + 7 * d1 + 1.5 * s0 - s1
    a5 = 6 * dy - 3 * (d0 + d1) - 0.5 * s0 + 0.5 * s1
    return np.stack([y0, d0, 0.5 * s0, a3, a4, a5], axis=-1)


def _extrapolation(y, yu, yuu, ls, inner: bool) -> np.ndarray:
    """Coefficients (c1, c2, p1, d) per harmonic of Phi_l = c1 e^{p1 x} + c2 e^{p1 x} (e^{d x} - 1) / d.

    x = ln(r / r_boundary); p1 is the regular homogeneous exponent (l inside, -(l+1) outside) and
    p2 = p1 + d the power-law exponent; c1, c2 and d match Phi_l and its first two u-derivatives.
    """
    p1 = ls.astype(np.float64) if inner else -(ls + 1.0)
    c1 = y.copy()
    c2 = yu - p1 * y
    lo, hi = _P2_INNER if inner else _P2_OUTER
    with np.errstate(divide="ignore", invalid="ignore"):
        p2 = (yuu - p1 * yu) / c2
    p2 = np.where(np.isfinite(p2), p2, lo if not inner else hi)
    p2 = np.clip(p2, lo, hi)
    c2 = np.where(np.isfinite(c2), c2, 0.0)
    return np.stack([c1, c2, p1, p2 - p1], axis=-1)


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent) or ".")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------------
class Multipole(Potential):
    """Axisymmetric multipole expansion of a potential (Agama ``Multipole``; see the module docstring).

    Usually built with :meth:`from_density` or read with :meth:`from_file`. The constructor takes the
    expansion at the grid nodes.

    Parameters
    ----------
    r : array_like, shape (K,)
        Grid radii [kpc], K >= 3, uniformly spaced in ln r.
    phi_l : array_like, shape (K, L)
        Phi_l(r_k) for l = 0, 2, ..., lmax (L = lmax/2 + 1) [(km/s)^2].
    dphi_l : array_like, shape (K, L)
        dPhi_l/dr at the nodes [(km/s)^2/kpc].
    rho_l : array_like, shape (K, L)
        Density harmonics rho_l(r_k), eq. (2) [Msun/kpc^3]; they fix d2Phi_l/dr2 through Poisson's equation.
    name : str
        Label.

    Attributes
    ----------
    lmax : int
        Highest (even) harmonic order.
    spherical : bool
        True when lmax == 0.
    rmin, rmax : float
        Grid extent [kpc].

    Raises
    ------
    ValueError
        If the arrays have inconsistent shapes, non-finite values, or r is not log-uniform and increasing.
    """

    def __init__(self, r, phi_l, dphi_l, rho_l, name: str = ""):
        r = np.asarray(r, dtype=np.float64)
        phi_l = np.atleast_2d(np.asarray(phi_l, dtype=np.float64))
        dphi_l = np.atleast_2d(np.asarray(dphi_l, dtype=np.float64))
        rho_l = np.atleast_2d(np.asarray(rho_l, dtype=np.float64))
        if r.ndim != 1 or len(r) < 3:
            raise ValueError(f"Multipole r: need a 1D grid of at least 3 radii, got shape {r.shape}")
        K = len(r)
        if phi_l.ndim != 2 or phi_l.shape[0] != K or dphi_l.shape != phi_l.shape or rho_l.shape != phi_l.shape:
            raise ValueError(f"Multipole phi_l, dphi_l, rho_l: need equal shapes (K={K}, L), got "
                             f"{phi_l.shape}, {dphi_l.shape}, {rho_l.shape}")
        for nm, a in (("r", r), ("phi_l", phi_l), ("dphi_l", dphi_l), ("rho_l", rho_l)):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"Multipole {nm}: contains non-finite values")
        if not np.all(r > 0):
            raise ValueError("Multipole r: radii must be positive")
        u = np.log(r)
        du = np.diff(u)
        h = (u[-1] - u[0]) / (K - 1)
        if not (h > 0 and np.allclose(du, h, rtol=1e-9, atol=0)):
            raise ValueError("Multipole r: radii must increase and be uniformly spaced in ln r")
        nl = phi_l.shape[1]
        self.name = name
        self.lmax = 2 * (nl - 1)
        self.spherical = self.lmax == 0
        self._r = r
        self._phi_nodes = phi_l
        self._dphi_nodes = dphi_l
        self._rho_nodes = rho_l
        ls = np.arange(0, self.lmax + 1, 2)
        # u-derivatives at the nodes: y_u = r Phi', y_uu = r^2 Phi'' + r Phi' with Poisson for Phi''
        yu = r[:, None] * dphi_l
        yuu = 4 * np.pi * G * r[:, None] ** 2 * rho_l - yu + ls * (ls + 1.0) * phi_l
        coef = _quintic_coefficients(phi_l, yu, yuu, h)
        inner = _extrapolation(phi_l[0], yu[0], yuu[0], ls, inner=True)
        outer = _extrapolation(phi_l[-1], yu[-1], yuu[-1], ls, inner=False)
        header = np.zeros(_HEADER)
        header[_H_NL] = nl
        header[_H_K] = K
        header[_H_U0] = u[0]
        header[_H_H] = h
        header[_H_INVH] = 1.0 / h
        header[_H_ULAST] = u[0] + (K - 1) * h
        header[_H_INV4PIG] = 1.0 / (4 * np.pi * G)
        header[_H_LMAX] = self.lmax
        self._params = np.ascontiguousarray(np.concatenate([header, coef.ravel(), inner.ravel(), outer.ravel()]))
        self._inner = inner
        self._outer = outer

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_density(cls, density, rmin: Optional[float] = None, rmax: Optional[float] = None, gridsize: int = 50,
                     lmax: int = 4, name: Optional[str] = None) -> "Multipole":
        """Multipole expansion of the potential of a density profile (Agama ``Multipole`` from a density).

        Parameters
        ----------
        density : object with ``_density(R, z)``
            Axisymmetric, z-symmetric density [Msun/kpc^3] (a :class:`~.density.Density`, or a
            :class:`~.base.Potential`, whose ``_density`` is used). If ``density.spherical`` is true the
            expansion is the monopole alone (lmax = 0).
        rmin, rmax : float, optional
            Innermost and outermost grid radii [kpc] (Agama rminSph, rmaxSph); None or 0 selects them from
            the enclosed-mass profile (mass fractions 1e-4 and 1 - 1e-4; see :func:`_auto_radii`).
        gridsize : int
            Number of radial nodes K >= 3 (Agama sizeRadialSph).
        lmax : int
            Highest harmonic order >= 0 (Agama lmaxAngularSph); odd orders vanish by symmetry, so an odd
            value is lowered by one.
        name : str, optional
            Label (default: the density's name).

        Returns
        -------
        Multipole

        Raises
        ------
        ValueError
            Bad grid parameters (named), a non-finite density, a density diverging as r^-2.95 or faster at
            the centre (infinite mass) or falling as r^-2.05 or slower at large radii (infinite potential).
        """
        if isinstance(gridsize, bool) or int(gridsize) != gridsize or gridsize < 3:
            raise ValueError(f"Multipole gridsize (sizeRadialSph) must be an integer >= 3, got {gridsize!r}")
        if isinstance(lmax, bool) or int(lmax) != lmax or lmax < 0:
            raise ValueError(f"Multipole lmax (lmaxAngularSph) must be an integer >= 0, got {lmax!r}")
        gridsize, lmax = int(gridsize), int(lmax)
        if getattr(density, "spherical", False):
            lmax = 0
        lmax -= lmax % 2
        for nm, v in (("rmin (rminSph)", rmin), ("rmax (rmaxSph)", rmax)):
            if v is not None and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Multipole {nm} must be a finite number >= 0 (0 or None = automatic), got {v!r}")
        auto = not rmin or not rmax
        if auto:
            rmin, rmax = _auto_radii(density, rmin, rmax)
        rmin, rmax = float(rmin), float(rmax)
        if not rmin < rmax:
            raise ValueError(f"Multipole needs rmin < rmax (rminSph, rmaxSph), got rmin={rmin}, rmax={rmax}")
        K = gridsize
        u0, u1 = math.log(rmin), math.log(rmax)
        h = (u1 - u0) / (K - 1)
        ugrid = u0 + h * np.arange(K)
        # panel edges: extension inwards, the grid intervals subdivided, extension outwards
        nsub = max(1, int(math.ceil(h / _MAX_PANEL_WIDTH)))
        next_ = int(math.ceil(_EXTENSION / _MAX_PANEL_WIDTH))
        w_ext = _EXTENSION / next_
        edges = np.concatenate([
            u0 - w_ext * np.arange(next_, 0, -1),
            (ugrid[:-1, None] + (h / nsub) * np.arange(nsub)[None, :]).ravel(),
            [ugrid[-1]],
            ugrid[-1] + w_ext * np.arange(1, next_ + 1),
        ])
        grid_index = next_ + nsub * np.arange(K)
        xg, wg = np.polynomial.legendre.leggauss(_GAUSS_NODES)
        width = np.diff(edges)
        upts = edges[:-1, None] + 0.5 * (1 + xg[None, :]) * width[:, None]     # (P, ng)
        wpts = 0.5 * wg[None, :] * width[:, None]
        nP = len(width)
        r_all = np.exp(np.concatenate([edges, upts.ravel()]))
        rho_all = _density_harmonics(density, r_all, lmax)                 # (nl, E + P ng)
        nl = lmax // 2 + 1
        ls = np.arange(0, lmax + 1, 2)
        rho_e = rho_all[:, : len(edges)]
        rho_p = rho_all[:, len(edges):].reshape(nl, nP, _GAUSS_NODES)
        # analytic head (r < r_lo) and tail (r > r_hi) from power-law fits of rho_l
        gam, ok_in = _power_slope(rho_e[:, 0], rho_e[:, 1], edges[1] - edges[0])
        dlt, ok_out = _power_slope(rho_e[:, -2], rho_e[:, -1], edges[-1] - edges[-2])
        # slopes within _SLOPE_MARGIN of a divergent integral count as divergent
        conv_in = gam + ls + 3 > _SLOPE_MARGIN
        conv_out = ls - 2 - dlt > _SLOPE_MARGIN
        if ok_in[0] and not conv_in[0]:
            raise ValueError(f"density {density!r} diverges as r^{gam[0]:.3g} (slope -2.95 or steeper) towards r = 0: "
                             "the enclosed mass is infinite")
        if ok_out[0] and not conv_out[0]:
            raise ValueError(f"density {density!r} falls off as r^{dlt[0]:.3g} (no faster than r^-2.05) at large "
                             "radii: the potential is infinite; use a density with an outer cutoff")
        with np.errstate(divide="ignore", invalid="ignore"):
            S = np.where(ok_in & conv_in, rho_e[:, 0] / (gam + ls + 3), 0.0)
            T = np.where(ok_out & conv_out, rho_e[:, -1] / (ls - 2 - dlt), 0.0)
        # S_e = r_e^-(l+3) int_0^{r_e} rho_l r^(l+2) dr ; T_e = r_e^(l-2) int_{r_e}^inf rho_l r^(1-l) dr
        lsc = ls[:, None, None].astype(np.float64)
        I_in = np.sum(rho_p * wpts[None] * np.exp((lsc + 3) * (upts[None] - edges[None, 1:, None])), axis=2)   # (nl, P)
        I_out = np.sum(rho_p * wpts[None] * np.exp((2 - lsc) * (upts[None] - edges[None, :-1, None])), axis=2)
        decay_in = np.exp(-(ls[:, None] + 3.0) * width[None, :])
        grow_out = np.exp((2.0 - ls[:, None]) * width[None, :])
        Sv = np.empty((nl, len(edges)))
        Tv = np.empty((nl, len(edges)))
        Sv[:, 0] = S
        for e in range(nP):
            Sv[:, e + 1] = Sv[:, e] * decay_in[:, e] + I_in[:, e]
        Tv[:, -1] = T
        for e in range(nP - 1, -1, -1):
            Tv[:, e] = I_out[:, e] + grow_out[:, e] * Tv[:, e + 1]
        rk = np.exp(ugrid)
        Sg, Tg = Sv[:, grid_index], Tv[:, grid_index]
        fac = -4 * np.pi * G / (2 * ls + 1.0)
        phi = (fac[:, None] * rk[None, :] ** 2 * (Sg + Tg)).T
        dphi = (fac[:, None] * rk[None, :] * (-(ls[:, None] + 1.0) * Sg + ls[:, None] * Tg)).T
        rho_nodes = rho_e[:, grid_index].T
        if name is None:
            name = getattr(density, "name", "") or ""
        return cls(rk, phi, dphi, rho_nodes, name=name)

    # ------------------------------------------------------------------ file I/O
    def to_file(self, path: Union[str, os.PathLike]) -> None:
        """Write the expansion coefficients to a plain-text file (format in the module docstring).

        The file is written to a temporary name in the same folder and renamed (atomic replace).

        Parameters
        ----------
        path : str or path-like
            Output file.
        """
        ls = np.arange(0, self.lmax + 1, 2)
        lines = ["Multipole"]
        if self.name:
            lines.append("name " + " ".join(str(self.name).split()))
        lines += [f"gridSizeR {len(self._r)}", f"lMax {self.lmax}"]
        colhead = "#radius\t" + "\t".join(f"l={l}" for l in ls)
        for title, table in (("#Phi", self._phi_nodes), ("#dPhi/dr", self._dphi_nodes), ("#rho", self._rho_nodes)):
            lines += [title, colhead]
            for k in range(len(self._r)):
                lines.append("\t".join(f"{v:.17g}" for v in (self._r[k], *table[k])))
        _write_atomic(Path(path), "\n".join(lines) + "\n")

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> "Multipole":
        """Read an expansion written by :meth:`to_file`.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        Multipole

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If the file is not a mocksky Multipole coefficient file or is truncated/inconsistent.
        """
        path = Path(path)
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines or lines[0].split()[0] != "Multipole":
            raise ValueError(f"{path}: not a Multipole coefficient file (first line must be 'Multipole')")
        name, K, lmax = "", None, None
        i = 1
        while i < len(lines) and not lines[i].startswith("#"):
            key, _, val = lines[i].partition(" ")
            if key == "name":
                name = val.strip()
            elif key in ("gridSizeR", "lMax"):
                try:
                    v = int(val)
                except ValueError:
                    raise ValueError(f"{path}: {key} must be an integer, got {val.strip()!r}") from None
                if key == "gridSizeR":
                    K = v
                else:
                    lmax = v
            else:
                raise ValueError(f"{path}: unknown header key {key!r} (allowed: name, gridSizeR, lMax)")
            i += 1
        if K is None or lmax is None:
            raise ValueError(f"{path}: header must give gridSizeR and lMax")
        if lmax < 0 or lmax % 2:
            raise ValueError(f"{path}: lMax must be even and >= 0 (axisymmetric z-symmetric expansion), got {lmax}")
        nl = lmax // 2 + 1
        blocks = {}
        for title in ("#Phi", "#dPhi/dr", "#rho"):
            if i >= len(lines) or lines[i] != title:
                raise ValueError(f"{path}: expected block {title!r} at line {i + 1}")
            i += 2  # title and column header
            rows = lines[i:i + K]
            if len(rows) != K:
                raise ValueError(f"{path}: block {title} has {len(rows)} rows, expected gridSizeR = {K}")
            try:
                arr = np.array([[float(v) for v in row.split()] for row in rows])
            except ValueError as exc:
                raise ValueError(f"{path}: block {title}: {exc}") from exc
            if arr.shape != (K, nl + 1):
                raise ValueError(f"{path}: block {title} has shape {arr.shape}, expected ({K}, {nl + 1})")
            blocks[title] = arr
            i += K
        r = blocks["#Phi"][:, 0]
        for title in ("#dPhi/dr", "#rho"):
            if not np.array_equal(blocks[title][:, 0], r):
                raise ValueError(f"{path}: radii of block {title} differ from those of #Phi")
        return cls(r, blocks["#Phi"][:, 1:], blocks["#dPhi/dr"][:, 1:], blocks["#rho"][:, 1:], name=name)

    # ------------------------------------------------------------------ properties
    @property
    def rmin(self) -> float:
        """Innermost grid radius [kpc]."""
        return float(self._r[0])

    @property
    def rmax(self) -> float:
        """Outermost grid radius [kpc]."""
        return float(self._r[-1])

    @property
    def radii(self) -> np.ndarray:
        """Grid radii [kpc], shape (K,)."""
        return self._r.copy()

    def coefficients(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The expansion at the nodes: (r, Phi_l, dPhi_l/dr, rho_l), shapes (K,) and (K, lmax/2 + 1)."""
        return self._r.copy(), self._phi_nodes.copy(), self._dphi_nodes.copy(), self._rho_nodes.copy()

    # ------------------------------------------------------------------ evaluation
    def _run(self, R, z, mode, ncol):
        R, z = _bcast(R, z)
        shape = R.shape
        Rf = np.ascontiguousarray(R, dtype=np.float64).ravel()
        zf = np.ascontiguousarray(z, dtype=np.float64).ravel()
        out = np.empty((ncol, Rf.size))
        _eval_many(Rf, zf, self._params, mode, out)
        return [out[i].reshape(shape) for i in range(ncol)]

    def _phi(self, R, z):
        return self._run(R, z, 0, 1)[0]

    def _grad(self, R, z):
        gR, gz = self._run(R, z, 1, 2)
        return gR, gz

    def _hess(self, R, z):
        hRR, hzz, hRz = self._run(R, z, 2, 3)
        return hRR, hzz, hRz

    def _density(self, R, z):
        """Density of the expansion, (1 / 4 pi G) Laplacian of Phi (equals the input rho_l at the nodes)."""
        return self._run(R, z, 3, 1)[0]

    def kernel(self):
        """Numba kernel ``f(R, z, params) -> (Phi, dPhi/dR, dPhi/dz)`` evaluating this expansion exactly."""
        return _multipole_kernel, self._params

    # ------------------------------------------------------------------ mass
    def enclosed_mass(self, r) -> np.ndarray:
        """Mass inside radius r from the monopole, M(r) = r^2 dPhi_0/dr / G (Gauss's theorem).

        Parameters
        ----------
        r : array_like
            Radii [kpc], any shape.

        Returns
        -------
        numpy.ndarray
            M(<r) [Msun], shape of r.
        """
        r = np.asarray(r, dtype=np.float64)
        rf = r.ravel()
        # dPhi_0/dr = radial derivative of the monopole alone: evaluate the l = 0 term via a monopole view
        p = self._monopole_params()
        out = np.empty((2, rf.size))
        _eval_many(rf, np.zeros_like(rf), p, 1, out)
        return (rf**2 * out[0] / G).reshape(r.shape)

    def _monopole_params(self) -> np.ndarray:
        cached = getattr(self, "_mono_cache", None)
        if cached is None:
            if self.lmax == 0:
                cached = self._params
            else:
                r, ph, dph, rho = self._r, self._phi_nodes[:, :1], self._dphi_nodes[:, :1], self._rho_nodes[:, :1]
                cached = Multipole(r, ph, dph, rho)._params
            self._mono_cache = cached
        return cached

    @property
    def mass(self) -> float:
        """Total mass [Msun] implied by the outer extrapolation of the monopole (inf if rho falls as r^-3 or slower)."""
        c1, c2, p1, d = self._outer[0]
        p2 = p1 + d
        if p2 >= -1.0:
            return math.inf
        # Phi_0 -> (c1 - c2/d) (r/rmax)^-1 as r -> inf, so M = -(c1 - c2/d) rmax / G
        return float(-(c1 - c2 / d) * self.rmax / G)
