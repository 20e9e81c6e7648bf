"""Exact actions, angles and frequencies in spherical potentials.

For a spherical potential Phi(r) the radial action is the quadrature

    Jr = (1/pi) int_{r_p}^{r_a} p_r dr,   p_r = sqrt(2 (E - Phi(r)) - L^2 / r^2)

between pericentre and apocentre, and the remaining actions are Jz = L - |Lz|, Jphi = Lz
(Binney & Tremaine 2008, BT08, Sect. 3.5). Frequencies follow from the
derivatives of Jr(E, L): Omega_r = pi / int dr / p_r and Omega_L = Omega_r (1/pi) int L dr / (r^2 p_r)
(BT08 Sect. 3.5); the angles from the generating function: theta_r is
Omega_r times the time since pericentre, theta_z = theta_psi is the angle in the orbital plane from
the ascending node corrected by the non-uniform angular motion, and theta_phi is the longitude of
the ascending node plus sign(Lz) theta_psi.

The integrals use the substitution r = r_c + r_h sin(t), which cancels the square-root zeros of p_r
at the turning points, and Gauss-Legendre quadrature in t.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange, types

from .base import ActionFinder
from ._common import ARR1, ARR2, HALF_PI, KERNEL_T, TWO_PI, gauss_legendre, get_kernel, parse_posvel

__all__ = ["SphericalActionFinder"]

_NAN = np.nan


@numba.njit(cache=True, nogil=True)
def _G(r, E, L2, f, p):
    """G(r) = r^2 p_r^2 = 2 r^2 (E - Phi(r)) - L^2 and dG/dr."""
    Phi, dPhi, _ = f(r, 0.0, p)
    return 2.0 * r * r * (E - Phi) - L2, 4.0 * r * (E - Phi) - 2.0 * r * r * dPhi


@numba.njit(cache=True, nogil=True)
def _root(a, b, E, L2, f, p):
    """Root of G between a (where G >= 0 is assumed) and b (where G < 0), a > b allowed.

    Safeguarded Newton iteration; returns the root and dG/dr there.
    """
    x = 0.5 * (a + b)
    lo, hi = a, b  # lo: the side where G >= 0
    dG = 0.0
    for _ in range(100):
        G, dG = _G(x, E, L2, f, p)
        if G >= 0.0:
            lo = x
        else:
            hi = x
        step_ok = False
        if dG != 0.0:
            xn = x - G / dG
            if (xn - lo) * (xn - hi) < 0.0:
                step_ok = True
        if not step_ok:
            xn = 0.5 * (lo + hi)
        if abs(xn - x) <= 1e-14 * abs(x) + 1e-300 or abs(hi - lo) <= 1e-14 * abs(x):
            x = xn
            break
        x = xn
    return x, dG


@numba.njit(cache=True, nogil=True)
def _turning_points(r0, E, L2, f, p):
    """Peri- and apocentre radii around r0 (p_r^2(r0) >= 0 assumed); NaN if the orbit is unbound."""
    # apocentre
    hi = r0 * 1.5 if r0 > 0.0 else 1e-6
    n = 0
    while True:
        Gh, _ = _G(hi, E, L2, f, p)
        if Gh < 0.0:
            break
        hi *= 2.0
        n += 1
        if n > 300 or hi > 1e30:
            return _NAN, _NAN, 0.0, 0.0
    lo = r0 if r0 > 0.0 else 0.0
    ra, dGa = _root(lo, hi, E, L2, f, p) if lo > 0.0 else _root(hi * 1e-12, hi, E, L2, f, p)
    # pericentre
    if L2 == 0.0:
        return 0.0, ra, 0.0, dGa
    lo = r0 * 0.5
    n = 0
    while True:
        Gl, _ = _G(lo, E, L2, f, p)
        if Gl < 0.0:
            break
        lo *= 0.5
        n += 1
        if n > 2000:
            return 0.0, ra, 0.0, dGa
    rp, dGp = _root(r0, lo, E, L2, f, p)
    if rp > ra:
        rp = ra
    return rp, ra, dGp, dGa


@numba.njit(cache=True, nogil=True)
def _inv_sqrt_G(G, r, rp, ra, dGp, dGa):
    """1/sqrt(G), with G replaced by its linear behaviour at the nearest turning point if rounding
    made it non-positive at a quadrature node next to that turning point."""
    if G > 0.0:
        return 1.0 / math.sqrt(G)
    if r - rp < ra - r:
        Gl = abs(dGp) * (r - rp)
    else:
        Gl = abs(dGa) * (ra - r)
    if Gl > 0.0:
        return 1.0 / math.sqrt(Gl)
    return 0.0


@numba.njit(cache=True, nogil=True)
def _spherical_point(f, p, x, y, z, vx, vy, vz, glx, glw, glx2, glw2, want_angles, out):
    r = math.sqrt(x * x + y * y + z * z)
    Lx = y * vz - z * vy
    Ly = z * vx - x * vz
    Lz = x * vy - y * vx
    L2 = Lx * Lx + Ly * Ly + Lz * Lz
    L = math.sqrt(L2)
    Phi0, _, _ = f(r, 0.0, p)
    E = Phi0 + 0.5 * (vx * vx + vy * vy + vz * vz)
    vr = (x * vx + y * vy + z * vz) / r if r > 0.0 else math.sqrt(vx * vx + vy * vy + vz * vz)
    for k in range(9):
        out[k] = _NAN
    rp, ra, dGp, dGa = _turning_points(r, E, L2, f, p)
    if not (ra > 0.0):
        return
    rc, rh = 0.5 * (ra + rp), 0.5 * (ra - rp)
    if rp < 0.2 * ra:  # eccentric orbit: double the quadrature order
        glx, glw = glx2, glw2
    n = glx.shape[0]
    Jr = 0.0
    for k in range(n):
        t = HALF_PI * glx[k]
        ct = math.cos(t)
        rr = rc + rh * math.sin(t)
        G, _ = _G(rr, E, L2, f, p)
        if G > 0.0:
            Jr += glw[k] * ct * math.sqrt(G) / rr
    Jr *= 0.5 * rh  # (1/pi) * (pi/2) * rh
    out[0] = Jr
    out[1] = L - abs(Lz)
    out[2] = Lz
    if not want_angles:
        return
    # frequencies: use a tiny fictitious eccentricity for (numerically) circular orbits
    Ef, rpf, raf, dGpf, dGaf = E, rp, ra, dGp, dGa
    if rh < 1e-7 * rc:
        h = 1e-5 * rc
        Phh, _, _ = f(rc - h, 0.0, p)
        Ef = Phh + 0.5 * L2 / ((rc - h) * (rc - h))
        rpf, raf, dGpf, dGaf = _turning_points(rc, Ef, L2, f, p)
        if not (raf > 0.0):
            return
    rcf, rhf = 0.5 * (raf + rpf), 0.5 * (raf - rpf)
    # int dr / p_r from peri to apo (half the radial period), in r = rc + rh sin t
    Tfull = 0.0
    for k in range(n):
        t = HALF_PI * glx[k]
        rr = rcf + rhf * math.sin(t)
        G, _ = _G(rr, Ef, L2, f, p)
        Tfull += HALF_PI * glw[k] * rhf * math.cos(t) * rr * _inv_sqrt_G(G, rr, rpf, raf, dGpf, dGaf)
    # int L dr / (r^2 p_r) = int L dw / p_r with w = 1/r = wc + wh sin t: the integrand, sharply
    # peaked at pericentre for nearly radial orbits in r, is smooth in w
    if L > 0.0 and rpf > 0.0:
        wp, wa = 1.0 / rpf, 1.0 / raf
        wc, wh = 0.5 * (wp + wa), 0.5 * (wp - wa)
        Lfull = 0.0
        for k in range(n):
            t = HALF_PI * glx[k]
            rr = 1.0 / (wc + wh * math.sin(t))
            G, _ = _G(rr, Ef, L2, f, p)
            Lfull += HALF_PI * glw[k] * wh * math.cos(t) * L * rr * _inv_sqrt_G(G, rr, rpf, raf, dGpf, dGaf)
    else:
        wp, wa, wc, wh = 0.0, 0.0, 0.0, 0.0
        Lfull = HALF_PI  # limit L -> 0: the orbit turns by pi/2 from pericentre (r = 0) to apocentre
    Om_r = math.pi / Tfull
    Om_L = Lfull / Tfull
    sgn = 1.0 if Lz >= 0.0 else -1.0
    out[6] = Om_r
    out[7] = Om_L
    out[8] = sgn * Om_L
    # angles: partial integrals from pericentre to r along the current radial half-orbit
    s0 = (r - rcf) / rhf if rhf > 0.0 else 0.0
    s0 = min(max(s0, -1.0), 1.0)
    t0 = math.asin(s0)
    half = 0.5 * (t0 + HALF_PI)
    Tp = 0.0
    for k in range(n):
        t = -HALF_PI + half * (glx[k] + 1.0)
        rr = rcf + rhf * math.sin(t)
        G, _ = _G(rr, Ef, L2, f, p)
        Tp += half * glw[k] * rhf * math.cos(t) * rr * _inv_sqrt_G(G, rr, rpf, raf, dGpf, dGaf)
    Lp = 0.0
    if wh > 0.0:
        s0 = min(max((1.0 / r - wc) / wh, -1.0), 1.0) if r > 0.0 else 1.0
        t0 = math.asin(s0)
        half = 0.5 * (HALF_PI - t0)
        for k in range(n):
            t = t0 + half * (glx[k] + 1.0)
            rr = 1.0 / (wc + wh * math.sin(t))
            G, _ = _G(rr, Ef, L2, f, p)
            Lp += half * glw[k] * wh * math.cos(t) * L * rr * _inv_sqrt_G(G, rr, rpf, raf, dGpf, dGaf)
    if vr < 0.0:
        Tp = 2.0 * Tfull - Tp
        Lp = 2.0 * Lfull - Lp
    # position angle psi in the orbital plane, from the ascending node
    if L > 0.0:
        lx, ly, lz = Lx / L, Ly / L, Lz / L
    else:
        lx, ly, lz = 0.0, 0.0, 1.0
    nn = math.sqrt(lx * lx + ly * ly)
    if nn > 1e-12:
        nx, ny = -ly / nn, lx / nn
    else:
        nx, ny = 1.0, 0.0
    Om_node = math.atan2(ny, nx)
    # e2 = l x n (n has no z component)
    e2x = -lz * ny
    e2y = lz * nx
    e2z = lx * ny - ly * nx
    psi = math.atan2(x * e2x + y * e2y + z * e2z, x * nx + y * ny)
    th_r = Om_r * Tp
    th_psi = psi - Lp + Om_L * Tp
    out[3] = th_r % TWO_PI
    out[4] = th_psi % TWO_PI
    out[5] = (Om_node + sgn * th_psi) % TWO_PI


@numba.njit(ARR2(KERNEL_T, ARR1, ARR2, ARR1, ARR1, ARR1, ARR1, types.boolean), parallel=True, cache=True, nogil=True)
def _spherical_driver(f, p, posvel, glx, glw, glx2, glw2, want_angles):
    n = posvel.shape[0]
    out = np.empty((n, 9))
    for i in prange(n):
        _spherical_point(f, p, posvel[i, 0], posvel[i, 1], posvel[i, 2], posvel[i, 3], posvel[i, 4],
                         posvel[i, 5], glx, glw, glx2, glw2, want_angles, out[i])
    return out


class SphericalActionFinder(ActionFinder):
    """Exact actions, angles and frequencies in a spherical potential.

    Parameters
    ----------
    pot : mocksky.model.potential.Potential
        A spherical potential (``pot.spherical`` is True); only Phi(r) = Phi(R=r, z=0) is used.
    n_quad : int, optional
        Gauss-Legendre order of the radial quadratures (default 24, doubled for orbits with
        pericentre < 0.2 apocentre: relative accuracy better than 1e-6 in actions, angles and
        frequencies for all eccentricities).

    Raises
    ------
    ValueError
        If the potential is not spherical or ``n_quad`` < 4.

    Notes
    -----
    Actions are (Jr, Jz, Jphi) = (Jr, L - |Lz|, Lz) [kpc km/s]; angles (theta_r, theta_z, theta_phi)
    in [0, 2 pi); frequencies (Omega_r, Omega_z, Omega_phi) [km/s/kpc] with Omega_z = Omega_L and
    Omega_phi = sign(Lz) Omega_L (Binney & Tremaine 2008, Sect. 3.5). Unbound points give NaN.
    """

    def __init__(self, pot, n_quad: int = 24):
        if not getattr(pot, "spherical", False):
            raise ValueError(f"SphericalActionFinder needs a spherical potential (pot.spherical is True), got {pot!r}")
        if int(n_quad) < 4:
            raise ValueError(f"n_quad must be >= 4, got {n_quad}")
        self.pot = pot
        self._f, self._p = get_kernel(pot)
        self._glx, self._glw = gauss_legendre(n_quad)
        self._glx2, self._glw2 = gauss_legendre(2 * n_quad)

    def _run(self, pv, want_angles):
        return _spherical_driver(self._f, self._p, pv, self._glx, self._glw, self._glx2, self._glw2, want_angles)
