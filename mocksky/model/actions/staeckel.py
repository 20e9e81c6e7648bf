"""Stäckel fudge: approximate actions, angles and frequencies in axisymmetric potentials.

Method (Binney 2012, MNRAS 426, 1324; Sanders 2012, MNRAS 426, 128)
---------------------------------------------------------------------
Prolate spheroidal coordinates (u, v) with focal distance Delta,

    R = Delta sinh u sin v,   z = Delta cosh u cos v,

separate the Hamiltonian of a Stäckel potential Phi = [U(u) - V(v)] / (sinh^2 u + sin^2 v)
(Binney 2012, Sect. 2):

    p_u^2 = 2 Delta^2 [E sinh^2 u - I3 - U(u)] - Lz^2 / sinh^2 u,
    p_v^2 = 2 Delta^2 [E sin^2 v + I3 + V(v)] - Lz^2 / sin^2 v.

The fudge applies these formulae to any potential, taking U and V from the cuts of
(sinh^2 u + sin^2 v) Phi(u, v) along the coordinate lines through the current point (u0, v0)
(Binney 2012, Sect. 2). With the constants fixed by the momenta at the point,

    p_u^2(u) = 2 Delta^2 [E sinh^2 u - (sinh^2 u + sin^2 v0) Phi(u, v0)] - Lz^2 / sinh^2 u - C_u,
    p_v^2(v) = 2 Delta^2 [E sin^2 v - (sinh^2 u0 + sin^2 v) Phi(u0, v)] - Lz^2 / sin^2 v - C_v,

where C_u, C_v make p_u(u0), p_v(v0) equal to the canonical momenta
p_u = Delta (cosh u sin v vR + sinh u cos v vz), p_v = Delta (sinh u cos v vR - cosh u sin v vz).
The turning points u_min, u_max, v_min (roots of p^2, safeguarded Newton iteration with the
analytic derivative from the kernel's gradient) bound the actions

    Jr = (1/pi) int_{u_min}^{u_max} p_u du,    Jz = (2/pi) int_{v_min}^{pi/2} p_v dv,    Jphi = Lz,

computed with Gauss-Legendre quadrature after the substitutions u = u_c + u_h sin t and
v = pi/2 - (pi/2 - v_min) sin t that cancel the square-root zeros at the turning points.

Frequencies and angles follow Binney 2012 and Sanders 2012 (appendix): with the
integrals I = (E, I3, Lz), the matrix dJ/dI is a set of integrals of dp/dI along the orbit; its inverse
gives Omega_i = dE/dJ_i and the angles theta_i = sum_k (dI_k/dJ_i) dS/dI_k, where dS/dI_k are the
same integrals from the reference points (pericentre in u, the ascending equatorial crossing in v)
to the current point. The I3- and Lz-derivative integrands of the u-motion, concentrated at small u
(like int dr / (r^2 p_r) in a spherical potential), are integrated in w = 1 / sinh u, and the
Lz-derivative of the v-motion, peaked near the pole, in y = cot v; in these variables they are
smooth. The quadrature order is doubled for orbits that reach deep into the focal region
(u_min < 0.2 u_max) or near the pole (v_min < 0.3). Angle origins: theta_r = 0 at pericentre
(u = u_min), theta_z = 0 at the upward crossing of the equatorial plane, theta_phi = phi there.
Frequencies of (numerically) circular or planar orbits are computed from a fictitious amplitude of
1e-4 in u or v (relative error ~1e-6), since smaller amplitudes turn p^2 into a difference of
nearly equal numbers dominated by the rounding errors of the potential.

Variant: ``u_cut="equator"`` takes the u-motion potential along the equatorial line v = pi/2
instead of the line through the point, as galpy's actionAngleStaeckel does; in the BV23 initial
potential its Jr is less accurate (median error 1.5% instead of 1.0% against orbit integrations,
``scripts/fudge_accuracy.py``), so the default is Binney's (and Agama's) choice.

Focal distance
--------------
By default Delta is estimated for each point from a table of Delta(E, Lz) fitted to shell orbits
(module :mod:`mocksky.model.actions._focal`; the approach of Agama, Vasiliev 2019, MNRAS 482, 1525).
A fixed focal distance (scalar or one per point) can be given instead; for an exact Stäckel potential
(e.g. :class:`~mocksky.model.potential.KuzminKutuzov` with Delta^2 = a^2 - c^2) the fudge then
returns the exact actions (to ~1e-9), and the shell-orbit estimate recovers that Delta.

Accuracy in the BV23 initial potential against actions measured on surfaces of section of
integrated orbits (``scripts/fudge_accuracy.py``, 137 disc and halo orbits): median relative errors
1.0% (Jr) and 0.9% (Jz), 90th percentiles ~5-7% (resonant orbits included).
"""
from __future__ import annotations

import copy
import math

import numba
import numpy as np
from numba import prange, types

from .base import ActionFinder
from ._common import (ARR1, ARR2, HALF_PI, KERNEL_T, TWO_PI, EnergyGrid, cylindrical, gauss_legendre, get_kernel,
                      parse_posvel)
from ._focal import build_delta_table, delta_lookup, integrals_coords

__all__ = ["StaeckelFudge"]

_NAN = np.nan
_UMAX = 120.0  # beyond this u the orbit is taken to be unbound


# --------------------------------------------------------------------------- coordinates
@numba.njit(cache=True, nogil=True)
def prolate_coords(R, z, D):
    """Prolate spheroidal coordinates of (R, z >= 0) for focal distance D.

    Returns (sinh u, cosh u, sin v, cos v, u, v) with u >= 0 and v in [0, pi/2]; the roots of
    R^2 / (tau - D^2) + z^2 / tau = 1 are lambda = D^2 cosh^2 u and nu = D^2 cos^2 v, computed
    without cancellation.
    """
    D2 = D * D
    s = R * R + z * z - D2
    disc = math.sqrt(s * s + 4.0 * D2 * R * R)
    if s >= 0.0:
        lm = 0.5 * (s + disc)  # lambda - D^2 = D^2 sinh^2 u
        nm = D2 * R * R / lm if lm > 0.0 else 0.0  # D^2 - nu = D^2 sin^2 v
    else:
        nm = 0.5 * (disc - s)
        lm = D2 * R * R / nm
    sh = math.sqrt(lm) / D
    v = math.atan2(math.sqrt(nm), math.sqrt(D2 * z * z / (lm + D2)))
    return sh, math.sqrt(1.0 + sh * sh), math.sin(v), math.cos(v), math.asinh(sh), v


# --------------------------------------------------------------------------- momenta
@numba.njit(cache=True, nogil=True)
def Fu(u, sv, cv, E, Lz2, D, C, f, p):
    """p_u^2(u) along the line v = v0 (sin v0 = sv, cos v0 = cv) and its u-derivative."""
    sh = math.sinh(u)
    ch = math.cosh(u)
    sh2 = sh * sh
    D2 = D * D
    Phi, dR, dz = f(D * sh * sv, D * ch * cv, p)
    w = sh2 + sv * sv
    F = 2.0 * D2 * (E * sh2 - w * Phi) - C
    dF = 2.0 * D2 * (2.0 * sh * ch * (E - Phi) - w * D * (dR * ch * sv + dz * sh * cv))
    if Lz2 > 0.0:
        if sh == 0.0:
            return -np.inf, np.inf
        F -= Lz2 / sh2
        dF += 2.0 * Lz2 * ch / (sh2 * sh)
    return F, dF


@numba.njit(cache=True, nogil=True)
def Fv(v, sh, ch, E, Lz2, D, C, f, p):
    """p_v^2(v) along the line u = u0 (sinh u0 = sh, cosh u0 = ch) and its v-derivative."""
    sv = math.sin(v)
    cv = math.cos(v)
    sv2 = sv * sv
    D2 = D * D
    Phi, dR, dz = f(D * sh * sv, D * ch * cv, p)
    w = sh * sh + sv2
    F = 2.0 * D2 * (E * sv2 - w * Phi) - C
    dF = 2.0 * D2 * (2.0 * sv * cv * (E - Phi) - w * D * (dR * sh * cv - dz * ch * sv))
    if Lz2 > 0.0:
        if sv == 0.0:
            return -np.inf, np.inf
        F -= Lz2 / sv2
        dF += 2.0 * Lz2 * cv / (sv2 * sv)
    return F, dF


@numba.njit(cache=True, nogil=True)
def _Fw(which, x, c1, c2, E, Lz2, D, C, f, p):
    if which == 0:
        return Fu(x, c1, c2, E, Lz2, D, C, f, p)
    return Fv(x, c1, c2, E, Lz2, D, C, f, p)


@numba.njit(cache=True, nogil=True)
def _root(which, a, b, c1, c2, E, Lz2, D, C, f, p):
    """Root of p^2 between a (p^2 >= 0 assumed there) and b (p^2 < 0); safeguarded Newton.

    Returns the root and the derivative of p^2 there.
    """
    lo, hi = a, b
    x = 0.5 * (a + b)
    dF = 0.0
    for _ in range(100):
        F, dF = _Fw(which, x, c1, c2, E, Lz2, D, C, f, p)
        if F >= 0.0:
            lo = x
        else:
            hi = x
        xn = 0.5 * (lo + hi)
        if dF != 0.0 and math.isfinite(dF) and math.isfinite(F):
            xt = x - F / dF
            if (xt - lo) * (xt - hi) < 0.0:
                xn = xt
        tol = 1e-13 * (1.0 + abs(x))
        if abs(xn - x) <= tol or abs(hi - lo) <= tol:
            x = xn
            break
        x = xn
    return x, dF


@numba.njit(cache=True, nogil=True)
def u_range(u0, sv, cv, E, Lz2, D, C, f, p):
    """Turning points of the u-motion around u0: (u_min, u_max, dF(u_min), dF(u_max), ok)."""
    du = 0.2
    hi = u0 + du
    while True:
        F, _ = Fu(hi, sv, cv, E, Lz2, D, C, f, p)
        if F < 0.0:
            break
        du *= 2.0
        hi = u0 + du
        if hi > _UMAX:
            return _NAN, _NAN, 0.0, 0.0, False
    umax, dFa = _root(0, u0, hi, sv, cv, E, Lz2, D, C, f, p)
    if Lz2 == 0.0:
        F0, dF0 = Fu(0.0, sv, cv, E, Lz2, D, C, f, p)
        if F0 >= 0.0:
            return 0.0, umax, dF0, dFa, True
        umin, dFm = _root(0, u0, 0.0, sv, cv, E, Lz2, D, C, f, p)
        return umin, umax, dFm, dFa, True
    lo = 0.5 * u0
    k = 0
    while True:
        F, _ = Fu(lo, sv, cv, E, Lz2, D, C, f, p)
        if F < 0.0:
            break
        lo *= 0.5
        k += 1
        if k > 1000 or lo == 0.0:
            return 0.0, umax, 0.0, dFa, True
    umin, dFm = _root(0, u0, lo, sv, cv, E, Lz2, D, C, f, p)
    return umin, umax, dFm, dFa, True


@numba.njit(cache=True, nogil=True)
def v_min(v0, sh, ch, E, Lz2, D, C, f, p):
    """Lower turning point of the v-motion (v0 in [0, pi/2]): (v_min, dF(v_min))."""
    if Lz2 == 0.0:
        F0, dF0 = Fv(0.0, sh, ch, E, Lz2, D, C, f, p)
        if F0 >= 0.0 or v0 <= 0.0:
            return 0.0, dF0
        return _root(1, v0, 0.0, sh, ch, E, Lz2, D, C, f, p)
    lo = 0.5 * v0
    k = 0
    while True:
        F, _ = Fv(lo, sh, ch, E, Lz2, D, C, f, p)
        if F < 0.0:
            break
        lo *= 0.5
        k += 1
        if k > 1000 or lo == 0.0:
            return 0.0, 0.0
    return _root(1, v0, lo, sh, ch, E, Lz2, D, C, f, p)


@numba.njit(cache=True, nogil=True)
def _inv_sqrt(F, x, xa, xb, dFa, dFb):
    """1/sqrt(p^2) at a quadrature node; if rounding made p^2 <= 0 next to a turning point, use
    the linear behaviour of p^2 at the nearest turning point instead."""
    if F > 0.0:
        return 1.0 / math.sqrt(F)
    if abs(x - xa) < abs(xb - x):
        Fl = abs(dFa * (x - xa))
    else:
        Fl = abs(dFb * (xb - x))
    if Fl > 0.0 and math.isfinite(Fl):
        return 1.0 / math.sqrt(Fl)
    return 0.0


@numba.njit(cache=True, nogil=True)
def jr_quad(umin, umax, sv, cv, E, Lz2, D, C, glx, glw, glx2, glw2, f, p):
    """Jr = (1/pi) int p_u du over [umin, umax] in u = u_c + u_h sin t (Gauss-Legendre in t)."""
    uc, uh = 0.5 * (umax + umin), 0.5 * (umax - umin)
    gx, gw = (glx2, glw2) if umin < 0.2 * umax else (glx, glw)
    J = 0.0
    for k in range(gx.shape[0]):
        t = HALF_PI * gx[k]
        F, _ = Fu(uc + uh * math.sin(t), sv, cv, E, Lz2, D, C, f, p)
        if F > 0.0:
            J += gw[k] * math.cos(t) * math.sqrt(F)
    return J * 0.5 * uh


@numba.njit(cache=True, nogil=True)
def jz_quad(vmin, sh, ch, E, Lz2, D, C, glx, glw, glx2, glw2, f, p):
    """Jz = (2/pi) int p_v dv over [vmin, pi/2] in v = pi/2 - (pi/2 - vmin) sin t."""
    zm = HALF_PI - vmin
    gx, gw = (glx2, glw2) if vmin < 0.3 else (glx, glw)
    J = 0.0
    for k in range(gx.shape[0]):
        t = 0.25 * math.pi * (gx[k] + 1.0)
        F, _ = Fv(HALF_PI - zm * math.sin(t), sh, ch, E, Lz2, D, C, f, p)
        if F > 0.0:
            J += gw[k] * math.cos(t) * math.sqrt(F)
    return J * 0.5 * zm


# --------------------------------------------------------------------------- one point
@numba.njit(cache=True, nogil=True)
def fudge_point(f, p, x, y, z, vx, vy, vz, D, glx, glw, glx2, glw2, want_angles, equator_cut, out):
    """Actions (out[0:3]), and if want_angles angles (out[3:6]) and frequencies (out[6:9]).

    equator_cut: take the u-motion potential from the equatorial line v = pi/2 instead of the line
    v = v0 through the point (galpy's variant).
    """
    for k in range(9):
        out[k] = _NAN
    R, _, vR, vzc, vphi, phi = cylindrical(x, y, z, vx, vy, vz)
    sgnz = 1.0 if z >= 0.0 else -1.0
    za = abs(z)
    vza = sgnz * vzc  # mirrored frame z >= 0
    Phi0, _, _ = f(R, za, p)
    E = Phi0 + 0.5 * (vR * vR + vzc * vzc + vphi * vphi)
    Lz = R * vphi
    Lz2 = Lz * Lz
    out[2] = Lz
    if not (D > 0.0):
        return
    D2 = D * D
    sh0, ch0, sv0, cv0, u0, v0 = prolate_coords(R, za, D)
    pu0 = D * (ch0 * sv0 * vR + sh0 * cv0 * vza)
    pv0 = D * (sh0 * cv0 * vR - ch0 * sv0 * vza)
    sh2_0 = sh0 * sh0
    sv2_0 = sv0 * sv0
    w0 = sh2_0 + sv2_0
    Cv = 2.0 * D2 * (E * sv2_0 - w0 * Phi0) - pv0 * pv0
    if equator_cut:
        svc, cvc = 1.0, 0.0
        Phic, _, _ = f(D * sh0, 0.0, p)
        Cu = 2.0 * D2 * (E * sh2_0 - ch0 * ch0 * Phic) - pu0 * pu0
    else:
        svc, cvc = sv0, cv0
        Cu = 2.0 * D2 * (E * sh2_0 - w0 * Phi0) - pu0 * pu0
    if Lz2 > 0.0:
        Cu -= Lz2 / sh2_0
        Cv -= Lz2 / sv2_0
    umin, umax, dFm, dFa, ok = u_range(u0, svc, cvc, E, Lz2, D, Cu, f, p)
    if not ok:
        out[2] = _NAN
        return
    vmin, dFv = v_min(v0, sh0, ch0, E, Lz2, D, Cv, f, p)
    # --- actions
    Jr = jr_quad(umin, umax, svc, cvc, E, Lz2, D, Cu, glx, glw, glx2, glw2, f, p)
    Jz = jz_quad(vmin, sh0, ch0, E, Lz2, D, Cv, glx, glw, glx2, glw2, f, p)
    uc, uh = 0.5 * (umax + umin), 0.5 * (umax - umin)
    zm = HALF_PI - vmin
    out[0] = Jr
    out[1] = Jz
    if not want_angles:
        return
    # --- frequencies: tiny fictitious amplitudes stand in for (numerically) vanishing ones
    Cuf, uminf, umaxf, dFmf, dFaf = Cu, umin, umax, dFm, dFa
    # (amplitudes below ~1e-4 make p^2 a difference of nearly equal large numbers: the rounding
    # errors of the potential would then dominate the frequencies)
    if uh < 1e-6 * (1.0 + uc):
        h = 1e-4 * (1.0 + uc)
        if h > 0.5 * uc and uc > 0.0:
            h = 0.5 * uc
        Fp, _ = Fu(uc + h, svc, cvc, E, Lz2, D, Cu, f, p)
        Fm, _ = Fu(max(uc - h, 0.0), svc, cvc, E, Lz2, D, Cu, f, p)
        Cuf = Cu + min(Fp, Fm)
        uminf, umaxf, dFmf, dFaf, ok = u_range(uc, svc, cvc, E, Lz2, D, Cuf, f, p)
        if not ok:
            return
    Cvf, vminf, dFvf = Cv, vmin, dFv
    if zm < 1e-4:
        h = 1e-4
        Fh, dFh = Fv(HALF_PI - h, sh0, ch0, E, Lz2, D, Cv, f, p)
        Cvf = Cv + Fh
        vminf, dFvf = HALF_PI - h, dFh
    ucf, uhf = 0.5 * (umaxf + uminf), 0.5 * (umaxf - uminf)
    zmf = HALF_PI - vminf
    gxu, gwu = (glx2, glw2) if uminf < 0.2 * umaxf else (glx, glw)
    gxv, gwv = (glx2, glw2) if vminf < 0.3 else (glx, glw)
    # full integrals over the u and v oscillations: the matrix dJ/d(E, I3, Lz)
    QuE, QuI, QuL = _u_part(0, -HALF_PI, HALF_PI, gxu, gwu, ucf, uhf, svc, cvc, E, Lz, Lz2, D, Cuf, uminf, umaxf,
                            dFmf, dFaf, f, p)
    wc = wh = 0.0
    if uminf > 0.0:
        wa, wb = 1.0 / math.sinh(umaxf), 1.0 / math.sinh(uminf)
        wc, wh = 0.5 * (wb + wa), 0.5 * (wb - wa)
        _, QuI, QuL = _u_part(1, -HALF_PI, HALF_PI, gxu, gwu, wc, wh, svc, cvc, E, Lz, Lz2, D, Cuf, uminf, umaxf,
                              dFmf, dFaf, f, p)
    elif Lz2 > 0.0:
        QuL = math.copysign(HALF_PI, Lz)  # limit Lz -> 0 of an orbit through the focal segment
    QvE, QvI, QvL = _v_part(0, 0.0, HALF_PI, gxv, gwv, zmf, sh0, ch0, E, Lz, Lz2, D, Cvf, vminf, dFvf, f, p)
    ym = 0.0
    if vminf > 0.0:
        ym = 1.0 / math.tan(vminf)
        _, _, QvL = _v_part(1, 0.0, HALF_PI, gxv, gwv, ym, sh0, ch0, E, Lz, Lz2, D, Cvf, vminf, dFvf, f, p)
    elif Lz2 > 0.0:
        QvL = math.copysign(HALF_PI, Lz)
    # dJ/dI: dp_u/dE = D^2 sinh^2 u / p_u, dp_u/dI3 = -D^2 / p_u, dp_u/dLz = -Lz / (sinh^2 u p_u);
    # dp_v/dE = D^2 sin^2 v / p_v, dp_v/dI3 = +D^2 / p_v, dp_v/dLz = -Lz / (sin^2 v p_v)
    M00, M01, M02 = QuE / math.pi, -QuI / math.pi, -QuL / math.pi
    M10, M11, M12 = 2.0 * QvE / math.pi, 2.0 * QvI / math.pi, -2.0 * QvL / math.pi
    det = M00 * M11 - M01 * M10
    A00, A01, A10, A11 = M11 / det, -M01 / det, -M10 / det, M00 / det
    A02 = -(A00 * M02 + A01 * M12)
    A12 = -(A10 * M02 + A11 * M12)
    out[6] = A00
    out[7] = A01
    out[8] = A02
    # --- angles: the same integrals from the reference points to the current point
    su = (u0 - ucf) / uhf if uhf > 0.0 else 0.0
    t0 = math.asin(min(max(su, -1.0), 1.0))
    PuE, PuI, PuL = _u_part(0, -HALF_PI, t0, gxu, gwu, ucf, uhf, svc, cvc, E, Lz, Lz2, D, Cuf, uminf, umaxf,
                            dFmf, dFaf, f, p)
    if wh > 0.0:
        tw = math.asin(min(max((1.0 / sh0 - wc) / wh, -1.0), 1.0)) if sh0 > 0.0 else HALF_PI
        _, PuI, PuL = _u_part(1, tw, HALF_PI, gxu, gwu, wc, wh, svc, cvc, E, Lz, Lz2, D, Cuf, uminf, umaxf,
                              dFmf, dFaf, f, p)
    elif Lz2 > 0.0:
        PuL = QuL
    if pu0 < 0.0:
        PuE, PuI, PuL = 2.0 * QuE - PuE, 2.0 * QuI - PuI, 2.0 * QuL - PuL
    zeta0 = sgnz * (HALF_PI - v0)
    pzeta = -sgnz * pv0
    t0 = math.asin(min(max(zeta0 / zmf, -1.0), 1.0)) if zmf > 0.0 else 0.0
    PvE, PvI, PvL = _v_part(0, 0.0, t0, gxv, gwv, zmf, sh0, ch0, E, Lz, Lz2, D, Cvf, vminf, dFvf, f, p)
    if ym > 0.0:
        ty = math.asin(min(max(math.tan(zeta0) / ym, -1.0), 1.0))
        _, _, PvL = _v_part(1, 0.0, ty, gxv, gwv, ym, sh0, ch0, E, Lz, Lz2, D, Cvf, vminf, dFvf, f, p)
    if pzeta >= 0.0:
        if zeta0 < 0.0:
            PvE, PvI, PvL = 4.0 * QvE + PvE, 4.0 * QvI + PvI, 4.0 * QvL + PvL
    else:
        PvE, PvI, PvL = 2.0 * QvE - PvE, 2.0 * QvI - PvI, 2.0 * QvL - PvL
    # dS/dI_k (signs as in dJ/dI) and theta_i = sum_k (dI_k / dJ_i) dS/dI_k
    WE = PuE + PvE
    WI = -PuI + PvI
    WL = -PuL - PvL + phi
    out[3] = (A00 * WE + A10 * WI) % TWO_PI
    out[4] = (A01 * WE + A11 * WI) % TWO_PI
    out[5] = (A02 * WE + A12 * WI + WL) % TWO_PI


@numba.njit(cache=True, nogil=True)
def _u_part(var, ta, tb, gx, gw, c, h, sv, cv, E, Lz, Lz2, D, C, umin, umax, dFm, dFa, f, p):
    """Integrals over t in [ta, tb] of (D^2 sinh^2 u, D^2, Lz / sinh^2 u) du / p_u.

    var = 0: u = c + h sin t. var = 1: w = 1 / sinh u = c + h sin t, in which the last two
    integrands (concentrated at small u, like int dr / (r^2 p_r) in a spherical potential) are smooth.
    """
    half = 0.5 * (tb - ta)
    mid = 0.5 * (tb + ta)
    D2 = D * D
    aE = 0.0
    aI = 0.0
    aL = 0.0
    for k in range(gx.shape[0]):
        t = mid + half * gx[k]
        s = c + h * math.sin(t)
        jac = h * math.cos(t)
        if var == 0:
            u = s
            sh = math.sinh(u)
        else:
            sh = 1.0 / s
            u = math.asinh(sh)
            jac *= sh * sh / math.sqrt(1.0 + sh * sh)
        F, _ = Fu(u, sv, cv, E, Lz2, D, C, f, p)
        wt = half * gw[k] * jac * _inv_sqrt(F, u, umin, umax, dFm, dFa)
        sh2 = sh * sh
        aE += wt * D2 * sh2
        aI += wt * D2
        if Lz2 > 0.0:
            aL += wt * Lz / sh2
    return aE, aI, aL


@numba.njit(cache=True, nogil=True)
def _v_part(var, ta, tb, gx, gw, c, sh, ch, E, Lz, Lz2, D, C, vmin, dFv, f, p):
    """Integrals over t in [ta, tb] of (D^2 sin^2 v, D^2, Lz / sin^2 v) |dv| / p_v, signed by t.

    var = 0: v = pi/2 - c |sin t|. var = 1: y = cot v = c sin t, in which the last integrand is smooth.
    """
    half = 0.5 * (tb - ta)
    mid = 0.5 * (tb + ta)
    D2 = D * D
    aE = 0.0
    aI = 0.0
    aL = 0.0
    for k in range(gx.shape[0]):
        t = mid + half * gx[k]
        jac = c * math.cos(t)
        if var == 0:
            v = HALF_PI - c * abs(math.sin(t))
            sv2 = math.sin(v) ** 2
        else:
            yy = c * abs(math.sin(t))
            v = math.atan2(1.0, yy)
            sv2 = 1.0 / (1.0 + yy * yy)
            jac *= sv2
        F, _ = Fv(v, sh, ch, E, Lz2, D, C, f, p)
        wt = half * gw[k] * jac * _inv_sqrt(F, v, vmin, 1e300, dFv, 0.0)
        aE += wt * D2 * sv2
        aI += wt * D2
        if Lz2 > 0.0:
            aL += wt * Lz / sv2
    return aE, aI, aL


@numba.njit(ARR2(KERNEL_T, ARR1, ARR2, ARR1, ARR1, ARR1, ARR1, ARR1, types.boolean, types.boolean), parallel=True,
            cache=True, nogil=True)
def _fudge_driver(f, p, posvel, delta, glx, glw, glx2, glw2, want_angles, equator_cut):
    n = posvel.shape[0]
    out = np.empty((n, 9))
    for i in prange(n):
        fudge_point(f, p, posvel[i, 0], posvel[i, 1], posvel[i, 2], posvel[i, 3], posvel[i, 4], posvel[i, 5],
                    delta[i], glx, glw, glx2, glw2, want_angles, equator_cut, out[i])
    return out


@numba.njit(ARR1(KERNEL_T, ARR1, ARR2, ARR1, ARR1, ARR2, ARR1), parallel=True, cache=True, nogil=True)
def _delta_driver(f, p, posvel, Ec, logLc, D2tab, dpar):
    n = posvel.shape[0]
    out = np.empty(n)
    for i in prange(n):
        R, z, vR, vz, vphi, _ = cylindrical(posvel[i, 0], posvel[i, 1], posvel[i, 2], posvel[i, 3], posvel[i, 4],
                                            posvel[i, 5])
        Phi, _, _ = f(R, abs(z), p)
        E = Phi + 0.5 * (vR * vR + vz * vz + vphi * vphi)
        qE, xi, _ = integrals_coords(E, R * vphi, Ec, logLc)
        out[i] = delta_lookup(qE, xi, D2tab, dpar)
    return out


class StaeckelFudge(ActionFinder):
    """Stäckel-fudge action finder for axisymmetric potentials (Binney 2012).

    Parameters
    ----------
    pot : mocksky.model.potential.Potential
        Any axisymmetric potential (its ``kernel()`` is used; it must be symmetric in z).
    focal_distance : None, float, array_like or Quantity, optional
        None (default): estimated for each point from a table of Delta(E, Lz) fitted to shell
        orbits (see :mod:`mocksky.model.actions._focal`). A scalar: the same Delta [kpc] for all
        points. An array of shape (N,): one Delta per point of every later call (N must match).
    n_quad : int, optional
        Gauss-Legendre order of each quadrature (default 12; doubled for orbits reaching close to
        the focal segment or the pole, where the integrands vary quickly).
    rmin, rmax : float or Quantity, optional
        Range of circular-orbit radii [kpc] of the energy table used to estimate Delta (default
        1e-3 and 1e4 kpc; points outside use the boundary values).
    n_energy, n_xi : int, optional
        Nodes of the Delta(E, Lz) table in ln R_c(E) and in xi = sqrt(1 - |Lz| / L_c(E)).
    u_cut : {"point", "equator"}, optional
        Coordinate line along which the potential of the u-motion is taken: through the point
        (default; Binney 2012, Agama) or the equator v = pi/2 (galpy's actionAngleStaeckel).

    Raises
    ------
    ValueError
        If ``focal_distance`` is not positive and finite, ``n_quad`` < 4 or ``u_cut`` is unknown.

    Notes
    -----
    Actions (Jr, Jz, Jphi = Lz) [kpc km/s]; angles (theta_r, theta_z, theta_phi) in [0, 2 pi);
    frequencies (Omega_r, Omega_z, Omega_phi) [km/s/kpc]. Unbound points give NaN. For a point
    with Lz = 0 exactly, the Lz-derivative integrals are set to zero (Omega_phi = 0). Cost: ~5.5 us
    per point and thread for actions in the BV23 potential (~3.5e5 points/s on two cores), about 4x
    more with angles and frequencies; building the Delta table takes ~0.1 s.

    References
    ----------
    Binney 2012, MNRAS 426, 1324 (the fudge, its frequencies and angles);
    Sanders 2012, MNRAS 426, 128 (focal distance, angles); Vasiliev 2019, MNRAS 482, 1525
    (focal distance from shell orbits, Agama).
    """

    def __init__(self, pot, focal_distance=None, n_quad: int = 12, rmin=1e-3, rmax=1e4, n_energy: int = 40,
                 n_xi: int = 12, u_cut: str = "point"):
        from ... import units as U

        if u_cut not in ("point", "equator"):
            raise ValueError(f"u_cut must be 'point' or 'equator', got {u_cut!r}")
        self.u_cut = u_cut
        if int(n_quad) < 4:
            raise ValueError(f"n_quad must be >= 4, got {n_quad}")
        self.pot = pot
        self._f, self._p = get_kernel(pot)
        self._glx, self._glw = gauss_legendre(n_quad)
        self._glx2, self._glw2 = gauss_legendre(2 * int(n_quad))
        self._fixed = None
        self._table = None
        if focal_distance is not None:
            fd = U.to_internal(focal_distance, U.LENGTH, "focal_distance")
            if fd.ndim > 1 or not np.all(np.isfinite(fd)) or np.any(fd <= 0):
                raise ValueError("focal_distance must be a positive finite scalar or 1D array [kpc], "
                                 f"got {focal_distance!r}")
            self._fixed = np.atleast_1d(fd).astype(np.float64)
            self._fixed_scalar = fd.ndim == 0
        else:
            rmin = float(U.to_internal(rmin, U.LENGTH, "rmin"))
            rmax = float(U.to_internal(rmax, U.LENGTH, "rmax"))
            self.energy_grid = EnergyGrid(self._f, self._p, rmin, rmax)
            self._D2tab, self._dpar = build_delta_table(self._f, self._p, self.energy_grid, n_energy, n_xi)

    def with_quadrature(self, n_quad: int) -> "StaeckelFudge":
        """The same fudge (same focal distances, sharing the Delta table) with another quadrature order.

        Parameters
        ----------
        n_quad : int
            Gauss-Legendre order of each quadrature (doubled where the integrands vary quickly, as in the
            constructor).

        Returns
        -------
        StaeckelFudge

        Raises
        ------
        ValueError
            If ``n_quad`` < 4.
        """
        if int(n_quad) < 4:
            raise ValueError(f"n_quad must be >= 4, got {n_quad}")
        new = copy.copy(self)
        new._glx, new._glw = gauss_legendre(int(n_quad))
        new._glx2, new._glw2 = gauss_legendre(2 * int(n_quad))
        return new

    def _deltas(self, pv):
        if self._fixed is not None:
            if self._fixed_scalar:
                return np.full(len(pv), self._fixed[0])
            if len(self._fixed) != len(pv):
                raise ValueError(f"focal_distance has {len(self._fixed)} values but posvel has {len(pv)} points")
            return self._fixed
        eg = self.energy_grid
        return _delta_driver(self._f, self._p, pv, eg.Ec, eg.logLc, self._D2tab, self._dpar)

    def focal_distance(self, posvel) -> np.ndarray:
        """Focal distance Delta used for each point.

        Parameters
        ----------
        posvel : array_like, shape (N, 6) or (6,), or pair of Quantities (xyz, vxyz)
            Cartesian (x, y, z, vx, vy, vz) [kpc, km/s].

        Returns
        -------
        numpy.ndarray, shape (N,)
            Delta [kpc].
        """
        return self._deltas(parse_posvel(posvel)).copy()

    def _run(self, pv, want_angles):
        return _fudge_driver(self._f, self._p, pv, self._deltas(pv), self._glx, self._glw, self._glx2,
                             self._glw2, want_angles, self.u_cut == "equator")
