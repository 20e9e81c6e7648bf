"""Interpolated Stäckel fudge: the fudge's actions tabulated once per potential.

Idea
----
The fudge (:mod:`.staeckel`) computes Jr from the momentum p_u(u) along the coordinate line v = v0
through the point, and Jz from p_v(v) along u = u0:

    p_u^2 = G_v0(u) - C_u,  G_v0(u) = 2 D^2 [E sinh^2 u - (sinh^2 u + sin^2 v0) Phi(u, v0)] - Lz^2 / sinh^2 u,
    p_v^2 = H_u0(v) - C_v,  H_u0(v) = 2 D^2 [E sin^2 v - (sinh^2 u0 + sin^2 v) Phi(u0, v)] - Lz^2 / sin^2 v,

with D = Delta(E, Lz) and constants C_u, C_v set by the momenta at the point. Hence Jr is exactly a
function of four numbers (E, Lz, C_u, v0) and Jz of (E, Lz, C_v, u0). The usual interpolated fudge
(Binney 2014, MNRAS 440, 787; Vasiliev 2019, MNRAS 482, 1525: Agama) tabulates the actions as functions
of three integrals (E, Lz, I3), which assumes that the fudge depends on the point only through an
approximate third integral; the worst 1% of its points are off by 15-27% in tests on the BV23
model. This finder instead tabulates these two four-variable functions, so that it reproduces the exact fudge up to
interpolation errors only. Table coordinates:

* ln R_c(E) (radius of the circular orbit of energy E), uniform;
* xi = sqrt(1 - |Lz| / L_c(E)) in [xi_0, 1] (xi -> 0 for circular orbits; radial amplitudes scale
  like xi);
* the depth of the point's orbit in its 1D potential, measured from the zero-action limit:
  eps_u = K_high - C_u with K_high = max_u G_v0(u) (Jr = 0, the shell orbit), and
  eps_v = A_high - C_v with A_high = H_u0(pi/2) (Jz = 0); as table axes s = eps / eps_max(E, Lz)
  with eps_max the largest depth reached by any orbit of this E, Lz (max over v0 of
  K_high - K_low, K_low = Lz^2 / sin^2 v0 - 2 D^2 E sin^2 v0, resp. max over u0 of
  A_high - A_low, A_low = Lz^2 / sinh^2 u0 - 2 D^2 E sinh^2 u0), used through sigma = sqrt(s).
  Depths are absolute rather than relative to the depth available at the given v0 / u0, so that
  features of the actions at a fixed depth (e.g. where the vertical amplitude shrinks below the
  thickness of a thin disc) do not get squeezed into the edges of the boxes; the tables then
  extend beyond the physically populated region, where the 1D problems remain well defined;
* the coordinate line: w_v = nu0 / nu_max in [0, 1] for Jr (nu = D^2 cos^2 v, nu_max the largest
  nu reached by orbits of this E, Lz; Jr is even in cos v0) and w_u = (u0 - u_p) / (u_a - u_p)
  for Jz (u_p, u_a the planar zero-velocity radii), used through w = sin^2(pi omega / 2).

The tabulated values are g_r = Jr L_c / eps_u and g_z = Jz / Jref, where
Jref = eps_v / (sqrt(c_s + eps_v) + sqrt(c_v)) with c_v = -(1/2) d^2 H_u0 / dv^2 at v = pi/2 (and
c_s its value with d2Phi/dz2 replaced by its spherical counterpart (dPhi/dR) / R) is close to
the harmonic limit for small eps_v and exactly L - |Lz| in a spherical potential (c_v = c_s = Lz^2);
the linear vanishing of the actions is carried by the exactly computed depths. Per point the
finder needs two potential evaluations (the point, and the shell point of its v-line giving K_high
through a Newton correction from a tabulated shell position and curvature; A_high and c_v come from
a fine ln R table of the midplane potential and its derivatives) and local cubic (4-point Lagrange) interpolation
in 2 to 4 dimensions (:mod:`._common`). Points with energies outside the tabulated range fall back
to the exact fudge.

Accuracy against the exact fudge in the BV23 initial potential (disc + 5% halo points, see
``scripts/bench_actions.py``): median relative errors ~4e-4 (Jr) and ~1.5e-4 (Jz), 99th percentiles
~0.4% and ~0.5%. The largest errors occur for nearly radial orbits (|Lz| << L_c), where the
fudge's actions vary on the small scale of |Lz|; by default these (xi > 0.9) are computed exactly
(option ``exact_xi``).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Optional

import numba
import numpy as np
from numba import prange, types

from ._common import (ARR1, ARR2, ARR3, ARR4, HALF_PI, KERNEL_T, cylindrical, gauss_legendre, get_kernel, interp1,
                      parse_posvel, _lagw, _stencil)
from ._focal import delta_lookup, integrals_coords, _planar_range, guiding_radius
from .base import ActionFinder
from .staeckel import Fu, StaeckelFudge, jr_quad, jz_quad, prolate_coords, u_range, v_min

__all__ = ["InterpolatedStaeckelFudge"]

log = logging.getLogger(__name__)

_S_EPS = 1e-4   # the s = 0 nodes are evaluated at s = _S_EPS (ratio limits)
_W_EPS = 1e-4   # the w = 0 / 1 nodes of the Jz table and w = 1 of the Jr table likewise


# --------------------------------------------------------------------------- axis mappings
@numba.njit(cache=True, nogil=True)
def s_of(sig):
    """Third table axis: s = sigma^2 (square-root behaviour of the actions at small s)."""
    return sig * sig


@numba.njit(cache=True, nogil=True)
def sigma_of(s):
    return math.sqrt(s) if s > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def w_of(om):
    """Fourth table axis: w = sin^2(pi omega / 2), denser near both edges of the box."""
    return math.sin(HALF_PI * om) ** 2


@numba.njit(cache=True, nogil=True)
def omega_of(w):
    return math.asin(math.sqrt(min(max(w, 0.0), 1.0))) / HALF_PI


# --------------------------------------------------------------------------- node helpers
@numba.njit(cache=True, nogil=True)
def _midplane(R, mid, mpar, f, p):
    """(Phi, dPhi/dR, d2Phi/dz2) at (R, 0): cubic interpolation of the ln R table ``mid`` (parameters
    mpar = (ln R of the first node, spacing)) inside it, the kernel outside."""
    q = (math.log(R) - mpar[0]) / mpar[1] if R > 0.0 else -1.0
    if 1.0 <= q <= mid.shape[0] - 2.0:
        s, t = _stencil(q, mid.shape[0])
        w = _lagw(t)
        a0 = a1 = a2 = 0.0
        for k in range(4):
            a0 += w[k] * mid[s + k, 0]
            a1 += w[k] * mid[s + k, 1]
            a2 += w[k] * mid[s + k, 2]
        return a0, a1, a2
    Phi, dR, _ = f(R, 0.0, p)
    dz = 1e-5 * R + 1e-10
    _, _, gz = f(R, dz, p)
    return Phi, dR, gz / dz


@numba.njit(ARR2(KERNEL_T, ARR1, ARR1), parallel=True, cache=True, nogil=True)
def _midplane_table(f, p, lnR):
    out = np.empty((lnR.shape[0], 3))
    for i in prange(lnR.shape[0]):
        R = math.exp(lnR[i])
        Phi, dR, _ = f(R, 0.0, p)
        dz = 1e-5 * R
        _, _, gz = f(R, dz, p)
        out[i, 0] = Phi
        out[i, 1] = dR
        out[i, 2] = gz / dz
    return out


@numba.njit(cache=True, nogil=True)
def _vertical_curvature(E, Lz2, D, sh, ch, mid, mpar, f, p):
    """c_v = -(1/2) d^2 H_u0 / dv^2 at v = pi/2, A_high = H_u0(pi/2), and c_s.

    With zeta = pi/2 - v, H = A_high - c_v zeta^2 + O(zeta^4), where
    c_v = 2 D^2 (E - Phi) - D^3 cosh^2 u0 sinh u0 dPhi/dR + D^4 cosh^4 u0 d2Phi/dz2 + Lz^2 at
    (R, z) = (D sinh u0, 0) (midplane values from :func:`_midplane`). c_s is c_v with d2Phi/dz2
    replaced by (dPhi/dR) / R (its value in a spherical potential).
    """
    Req = D * sh
    PhiEq, dR, Phizz = _midplane(Req, mid, mpar, f, p)
    ch2 = ch * ch
    base = 2.0 * D * D * (E - PhiEq) - D * D * D * ch2 * sh * dR + Lz2
    cv = base + D ** 4 * ch2 * ch2 * Phizz
    csph = base + D ** 4 * ch2 * ch2 * (dR / Req if Req > 0.0 else Phizz)
    Ahigh = 2.0 * D * D * (E - ch2 * PhiEq) - Lz2
    if csph < 0.0:
        csph = 0.0
    return cv, Ahigh, csph


@numba.njit(cache=True, nogil=True)
def _jref(eps, c, cs):
    """Reference vertical action eps / (sqrt(cs + eps) + sqrt(c)).

    c is the curvature of H_u0 at the equator, cs the same with d2Phi/dz2 replaced by its
    spherical value (dPhi/dR) / R: for eps -> 0 this tends to the harmonic value eps / (2 sqrt c)
    when c ~ cs, and for a spherical potential (c = cs = Lz^2) it is exactly L - |Lz|; a thin disc
    (c >> cs) then only changes the small-eps end.
    """
    if c <= 0.0:
        return math.sqrt(eps) if eps > 0.0 else 0.0
    return eps / (math.sqrt(cs + eps) + math.sqrt(c))


@numba.njit(cache=True, nogil=True)
def _node_EL(logRn, xi, logR, Ec, logLc, D2tab, dpar):
    """(E, Lz, Lc, Delta, qE) of a table node (ln R_c, xi)."""
    qE = (logRn - logR[0]) / (logR[1] - logR[0])
    E = interp1(Ec, qE)
    Lc = math.exp(interp1(logLc, qE))
    Lz = (1.0 - xi * xi) * Lc
    D = delta_lookup(qE, xi, D2tab, dpar)
    return E, Lz, Lc, D, qE


@numba.njit(cache=True, nogil=True)
def max_G(sv, cv, E, Lz2, D, u_guess, f, p):
    """Maximum of G(u) = 2 D^2 [E sinh^2 u - (sinh^2 u + sv^2) Phi(u, v)] - Lz^2 / sinh^2 u along a
    line v = const: (u_s, G(u_s), G''(u_s)). Regula falsi (Illinois) on G'(u) = 0."""
    a = max(0.5 * u_guess, 1e-8)
    Ga, dGa = Fu(a, sv, cv, E, Lz2, D, 0.0, f, p)
    k = 0
    while dGa <= 0.0 and k < 80:
        a *= 0.5
        Ga, dGa = Fu(a, sv, cv, E, Lz2, D, 0.0, f, p)
        k += 1
    if dGa <= 0.0:  # maximum at u -> 0 (Lz = 0 orbits through the focal segment)
        h = 1e-6
        _, d1 = Fu(h, sv, cv, E, Lz2, D, 0.0, f, p)
        G0, _ = Fu(0.0, sv, cv, E, Lz2, D, 0.0, f, p)
        return 0.0, G0, d1 / h
    b = 1.5 * u_guess + 0.5
    Gb, dGb = Fu(b, sv, cv, E, Lz2, D, 0.0, f, p)
    k = 0
    while dGb >= 0.0 and k < 80:
        b = 1.5 * b + 0.5
        Gb, dGb = Fu(b, sv, cv, E, Lz2, D, 0.0, f, p)
        k += 1
    side = 0
    x = a
    for _ in range(200):
        x = (a * dGb - b * dGa) / (dGb - dGa)
        _, dx = Fu(x, sv, cv, E, Lz2, D, 0.0, f, p)
        if abs(b - a) < 1e-12 * (1.0 + x) or dx == 0.0:
            break
        if dx * dGb > 0.0:
            b, dGb = x, dx
            if side == -1:
                dGa *= 0.5
            side = -1
        else:
            a, dGa = x, dx
            if side == 1:
                dGb *= 0.5
            side = 1
    Gx, _ = Fu(x, sv, cv, E, Lz2, D, 0.0, f, p)
    h = 1e-4 * (1.0 + x)
    if h > 0.5 * x:
        h = 0.5 * x
    _, dp = Fu(x + h, sv, cv, E, Lz2, D, 0.0, f, p)
    _, dm = Fu(x - h, sv, cv, E, Lz2, D, 0.0, f, p)
    return x, Gx, (dp - dm) / (2.0 * h)


@numba.njit(cache=True, nogil=True)
def _accessible(v, E, Lz2, D, u_guess, f, p):
    """max_u G_v(u) - K_low(v) >= 0: the line v = const reaches the orbit's accessible region."""
    sv = math.sin(v)
    cv = math.cos(v)
    if Lz2 > 0.0 and sv == 0.0:
        return False, u_guess
    us, Gmax, _ = max_G(sv, cv, E, Lz2, D, u_guess, f, p)
    Klow = (Lz2 / (sv * sv) if Lz2 > 0.0 else 0.0) - 2.0 * D * D * E * sv * sv
    return Gmax >= Klow, us


@numba.njit(ARR3(KERNEL_T, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR2, ARR1), parallel=True, cache=True, nogil=True)
def _tables2d(f, p, logRn, xin, logR, Ec, logLc, D2tab, dpar):
    """(R_in, R_out, nu_max, eps_z, eps_r) at every (ln R_c, xi) node (planar zero-velocity radii).

    eps_z = max over u0 in [u_p, u_a] of A_high - A_low (the scale of the Jz table's third axis);
    eps_r (scale of the Jr table's third axis) is filled in later from the shell-orbit table.
    """
    nE, nX = logRn.shape[0], xin.shape[0]
    out = np.zeros((nE, nX, 5))
    for k in prange(nE * nX):
        i, j = k // nX, k % nX
        E, Lz, Lc, D, _ = _node_EL(logRn[i], xin[j], logR, Ec, logLc, D2tab, dpar)
        Lz2 = Lz * Lz
        Rg = guiding_radius(Lz2, logR, logLc)
        if Rg <= 0.0:
            Rg = math.exp(logRn[i])
        Rin, Rout = _planar_range(E, Lz2, Rg, f, p)
        up = math.asinh(Rin / D)
        ua = math.asinh(Rout / D)
        out[i, j, 0] = Rin
        out[i, j, 1] = Rout
        emax = 0.0
        for m in range(33):
            u0 = up + (ua - up) * (0.5 - 0.5 * math.cos(math.pi * m / 32.0))
            sh = math.sinh(u0)
            if sh <= 0.0:
                continue
            PhiEq, _, _ = f(D * sh, 0.0, p)
            e = 2.0 * D * D * (1.0 + sh * sh) * (E - PhiEq - 0.5 * Lz2 / (D * D * sh * sh))
            if e > emax:
                emax = e
        out[i, j, 3] = emax
        # nu_max: bisection in v on the accessibility of the line v = const
        ug = 0.5 * (up + ua)
        ok0, _ = _accessible(0.0, E, Lz2, D, ug, f, p)
        if ok0:
            out[i, j, 2] = D * D
            continue
        # (a line v = const reaches the accessible region iff its maximum of G exceeds K_low)
        lo, hi = 0.0, HALF_PI  # inaccessible at lo, accessible at hi
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            ok, us = _accessible(mid, E, Lz2, D, ug, f, p)
            if ok:
                hi = mid
                ug = us
            else:
                lo = mid
        out[i, j, 2] = D * D * math.cos(hi) ** 2
    return out


@numba.njit(ARR4(KERNEL_T, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR2, ARR1, ARR3), parallel=True,
            cache=True, nogil=True)
def _tables3d(f, p, logRn, xin, wn, logR, Ec, logLc, D2tab, dpar, t2):
    """(rho_s, G(u_s), d2G/drho2, G(u_s) - K_low) of the v-lines nu = w nu_max at every (ln R_c, xi, w) node.

    rho = D sinh u is the physical size of the coordinate ellipse u; the shell position and curvature
    are tabulated in rho, which does not depend on D, and converted with the point's D.
    """
    nE, nX, nW = logRn.shape[0], xin.shape[0], wn.shape[0]
    out = np.empty((nE, nX, nW, 4))
    for k in prange(nE * nX * nW):
        i = k // (nX * nW)
        j = (k // nW) % nX
        m = k % nW
        E, Lz, Lc, D, _ = _node_EL(logRn[i], xin[j], logR, Ec, logLc, D2tab, dpar)
        w = min(w_of(wn[m]), 1.0 - _W_EPS)
        nu = w * t2[i, j, 2]
        cv = math.sqrt(nu) / D
        sv = math.sqrt(max(1.0 - cv * cv, 0.0))
        Lz2 = Lz * Lz
        ug = 0.5 * (math.asinh(t2[i, j, 0] / D) + math.asinh(t2[i, j, 1] / D))
        us, Gs, G2 = max_G(sv, cv, E, Lz2, D, ug, f, p)
        out[i, j, m, 0] = D * math.sinh(us)
        out[i, j, m, 1] = Gs
        out[i, j, m, 2] = G2 / (D * math.cosh(us)) ** 2
        sv2 = sv * sv
        out[i, j, m, 3] = Gs - ((Lz2 / sv2 if Lz2 > 0.0 else 0.0) - 2.0 * D * D * E * sv2)
    return out


@numba.njit(ARR4(KERNEL_T, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR2, ARR1, ARR3, ARR4, ARR1,
                 ARR1, ARR1, ARR1), parallel=True, cache=True, nogil=True)
def _table_jr(f, p, logRn, xin, sn, wn, logR, Ec, logLc, D2tab, dpar, t2, t3, glx, glw, glx2, glw2):
    """g_r = Jr L_c / (K_high - C_u) at the nodes (ln R_c, xi, s_u, w_v)."""
    nE, nX, nS, nW = logRn.shape[0], xin.shape[0], sn.shape[0], wn.shape[0]
    out = np.empty((nE, nX, nS, nW))
    for k in prange(nE * nX * nS * nW):
        i = k // (nX * nS * nW)
        j = (k // (nS * nW)) % nX
        a = (k // nW) % nS
        m = k % nW
        E, Lz, Lc, D, _ = _node_EL(logRn[i], xin[j], logR, Ec, logLc, D2tab, dpar)
        Lz2 = Lz * Lz
        w = min(w_of(wn[m]), 1.0 - _W_EPS)
        nu = w * t2[i, j, 2]
        cv = math.sqrt(nu) / D
        sv2 = max(1.0 - cv * cv, 0.0)
        sv = math.sqrt(sv2)
        us, Khigh = math.asinh(t3[i, j, m, 0] / D), t3[i, j, m, 1]
        s = max(s_of(sn[a]), _S_EPS)
        dK = s * t2[i, j, 4]
        if not (dK > 0.0):
            out[i, j, a, m] = np.nan
            continue
        C = Khigh - dK
        umin, umax, _, _, ok = u_range(us, sv, cv, E, Lz2, D, C, f, p)
        if not ok:
            out[i, j, a, m] = np.nan
            continue
        Jr = jr_quad(umin, umax, sv, cv, E, Lz2, D, C, glx, glw, glx2, glw2, f, p)
        out[i, j, a, m] = Jr * Lc / dK
    return out


@numba.njit(ARR4(KERNEL_T, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, ARR2, ARR1, ARR3, ARR1,
                 ARR1, ARR1, ARR1, ARR2, ARR1), parallel=True, cache=True, nogil=True)
def _table_jz(f, p, logRn, xin, sn, wn, logR, Ec, logLc, D2tab, dpar, t2, glx, glw, glx2, glw2, mid, mpar):
    """g_z = Jz / Jref(A_high - C_v, c_v) at the nodes (ln R_c, xi, s_v, w_u)."""
    nE, nX, nS, nW = logRn.shape[0], xin.shape[0], sn.shape[0], wn.shape[0]
    out = np.empty((nE, nX, nS, nW))
    for k in prange(nE * nX * nS * nW):
        i = k // (nX * nS * nW)
        j = (k // (nS * nW)) % nX
        a = (k // nW) % nS
        m = k % nW
        E, Lz, Lc, D, _ = _node_EL(logRn[i], xin[j], logR, Ec, logLc, D2tab, dpar)
        Lz2 = Lz * Lz
        w = min(max(w_of(wn[m]), _W_EPS), 1.0 - _W_EPS)
        up, ua = math.asinh(t2[i, j, 0] / D), math.asinh(t2[i, j, 1] / D)
        u0 = up + w * (ua - up)
        sh = math.sinh(u0)
        ch = math.cosh(u0)
        cv, Ahigh, csph = _vertical_curvature(E, Lz2, D, sh, ch, mid, mpar, f, p)
        s = max(s_of(sn[a]), _S_EPS)
        dA = s * t2[i, j, 3]
        if not (dA > 0.0):
            out[i, j, a, m] = np.nan
            continue
        C = Ahigh - dA
        vmin, _ = v_min(HALF_PI, sh, ch, E, Lz2, D, C, f, p)
        Jz = jz_quad(vmin, sh, ch, E, Lz2, D, C, glx, glw, glx2, glw2, f, p)
        out[i, j, a, m] = Jz / _jref(dA, cv, csph)
    return out


# --------------------------------------------------------------------------- evaluation
@numba.njit(cache=True, nogil=True)
def _w4(q, n):
    s, t = _stencil(q, n)
    w = _lagw(t)
    return s, w[0], w[1], w[2], w[3]


@numba.njit(cache=True, nogil=True)
def _interp4w(tab, s0, w0, s1, w1, q2, q3):
    """4D cubic interpolation with precomputed stencils in the first two dimensions."""
    s2, t2 = _stencil(q2, tab.shape[2])
    s3, t3 = _stencil(q3, tab.shape[3])
    w2 = _lagw(t2)
    w3 = _lagw(t3)
    out = 0.0
    for i in range(4):
        a = 0.0
        for j in range(4):
            b = 0.0
            for k in range(4):
                r = tab[s0 + i, s1 + j, s2 + k]
                b += w2[k] * (w3[0] * r[s3] + w3[1] * r[s3 + 1] + w3[2] * r[s3 + 2] + w3[3] * r[s3 + 3])
            a += w1[j] * b
        out += w0[i] * a
    return out


@numba.njit(cache=True, nogil=True)
def _interp2w(tab, s0, w0, s1, w1):
    """The five columns of a (nE, nX, 5) table at once, with precomputed stencils."""
    a0 = a1 = a2 = a3 = a4 = 0.0
    for i in range(4):
        for j in range(4):
            w = w0[i] * w1[j]
            r = tab[s0 + i, s1 + j]
            a0 += w * r[0]
            a1 += w * r[1]
            a2 += w * r[2]
            a3 += w * r[3]
            a4 += w * r[4]
    return a0, a1, a2, a3, a4


@numba.njit(cache=True, nogil=True)
def _interp3w(tab, s0, w0, s1, w1, q2):
    """Columns 0 and 2 of a (nE, nX, nW, m) table, with precomputed stencils in the first two axes."""
    s2, t2 = _stencil(q2, tab.shape[2])
    w2 = _lagw(t2)
    a0 = 0.0
    a2 = 0.0
    for i in range(4):
        for j in range(4):
            w = w0[i] * w1[j]
            r = tab[s0 + i, s1 + j]
            for k in range(4):
                wk = w * w2[k]
                a0 += wk * r[s2 + k, 0]
                a2 += wk * r[s2 + k, 2]
    return a0, a2


@numba.njit(types.Tuple((ARR2, types.Array(types.boolean, 1, "C")))(
    KERNEL_T, ARR1, ARR2, ARR1, ARR1, ARR2, ARR1, types.float64, types.float64, types.float64, ARR3, ARR4,
    ARR4, ARR4, ARR2, ARR1), parallel=True, cache=True, nogil=True, error_model="numpy")
def _interp_driver(f, p, posvel, Ec, logLc, D2tab, dpar, scaleT, xi0, xi_exact, t2, t3, tr, tz, mid, mpar):
    n = posvel.shape[0]
    out = np.empty((n, 3))
    fallback = np.zeros(n, dtype=np.bool_)
    nE, nX = t2.shape[0], t2.shape[1]
    nS, nW = tr.shape[2], tr.shape[3]
    for i in prange(n):
        R, z, vR, vz, vphi, _ = cylindrical(posvel[i, 0], posvel[i, 1], posvel[i, 2], posvel[i, 3], posvel[i, 4],
                                            posvel[i, 5])
        za = abs(z)
        vza = vz if z >= 0.0 else -vz
        Phi0, _, _ = f(R, za, p)
        E = Phi0 + 0.5 * (vR * vR + vz * vz + vphi * vphi)
        Lz = R * vphi
        Lz2 = Lz * Lz
        out[i, 2] = Lz
        qE, xi, flag = integrals_coords(E, Lz, Ec, logLc)
        if flag != 0 or xi > xi_exact:
            out[i, 0] = np.nan
            out[i, 1] = np.nan
            fallback[i] = True
            continue
        D = delta_lookup(qE, xi, D2tab, dpar)
        D2 = D * D
        Lc = math.exp(interp1(logLc, qE))
        sE, a0, a1, a2, a3 = _w4(qE * scaleT, nE)
        qx = (xi - xi0) / (1.0 - xi0) * (nX - 1)
        sX, b0, b1, b2, b3 = _w4(qx, nX)
        wE = (a0, a1, a2, a3)
        wX = (b0, b1, b2, b3)
        sh0, ch0, sv0, cv0, u0, v0 = prolate_coords(R, za, D)
        pu0 = D * (ch0 * sv0 * vR + sh0 * cv0 * vza)
        pv0 = D * (sh0 * cv0 * vR - ch0 * sv0 * vza)
        sh2 = sh0 * sh0
        sv2 = sv0 * sv0
        w0 = sh2 + sv2
        # ---- Jz
        cvz, Ahigh, csph = _vertical_curvature(E, Lz2, D, sh0, ch0, mid, mpar, f, p)
        Cv = 2.0 * D2 * (E * sv2 - w0 * Phi0) - pv0 * pv0
        if Lz2 > 0.0:
            Cv -= Lz2 / sv2
        dA = Ahigh - Cv
        if dA < 0.0:
            dA = 0.0
        c2 = _interp2w(t2, sE, wE, sX, wX)
        epsz = c2[3]
        sv_ = dA / epsz if epsz > 0.0 else 0.0
        up = math.asinh(max(c2[0], 0.0) / D)
        ua = math.asinh(c2[1] / D)
        wu = (u0 - up) / (ua - up) if ua > up else 0.5
        wu = min(max(wu, 0.0), 1.0)
        gz = _interp4w(tz, sE, wE, sX, wX, sigma_of(min(sv_, 1.0)) * (nS - 1),
                       omega_of(wu) * (nW - 1))
        out[i, 1] = _jref(dA, cvz, csph) * gz
        # ---- Jr
        numax = c2[2]
        nu0 = D2 * cv0 * cv0
        wv = nu0 / numax if numax > 0.0 else 0.0
        wv = min(max(wv, 0.0), 1.0)
        qw = omega_of(wv) * (nW - 1)
        rho_s, G2r = _interp3w(t3, sE, wE, sX, wX, qw)
        us = math.asinh(max(rho_s, 0.0) / D)
        G2 = G2r * (D * math.cosh(us)) ** 2
        Gs, dGs = Fu(us, sv0, cv0, E, Lz2, D, 0.0, f, p)
        if G2 < 0.0 and abs(dGs / G2) < 0.05 * (1.0 + us):
            Khigh = Gs - 0.5 * dGs * dGs / G2
        else:  # poor tabulated guess of the shell position: locate the maximum directly
            us, Khigh, G2 = max_G(sv0, cv0, E, Lz2, D, max(us, 1e-3), f, p)
        Gu0 = 2.0 * D2 * (E * sh2 - w0 * Phi0)
        if Lz2 > 0.0:
            Gu0 -= Lz2 / sh2
        if Gu0 > Khigh:
            Khigh = Gu0
        Cu = Gu0 - pu0 * pu0
        dK = Khigh - Cu
        if dK < 0.0:
            dK = 0.0
        epsr = c2[4]
        su = dK / epsr if epsr > 0.0 else 0.0
        gr = _interp4w(tr, sE, wE, sX, wX, sigma_of(min(su, 1.0)) * (nS - 1), qw)
        out[i, 0] = dK * gr / Lc
    return out, fallback


class InterpolatedStaeckelFudge(ActionFinder):
    """Fast Stäckel fudge: actions interpolated from tables built once per potential.

    The tables reproduce the exact fudge of :class:`StaeckelFudge` (same focal distances, same
    definition of the fudge) up to interpolation errors; see the module docstring for the method.

    Parameters
    ----------
    pot : mocksky.model.potential.Potential
        Axisymmetric, z-symmetric potential.
    rmin, rmax : float or Quantity, optional
        Range of circular-orbit radii R_c(E) [kpc] covered by the tables (default 0.01 and 1000
        kpc). Points with energies outside are computed with the exact fudge.
    n_energy, n_xi, n_s, n_w : int, optional
        Table nodes in ln R_c(E), xi = sqrt(1 - |Lz| / L_c), the scaled third-integral coordinate
        s, and the coordinate-line coordinate w (defaults 48, 20, 16, 10).
    n_quad : int, optional
        Gauss-Legendre order used for the table nodes (default 16).
    n_quad_exact : int or None, optional
        Gauss-Legendre order of the exact fudge's actions for the points the tables do not cover
        (see ``exact_xi``). None (default): that of :class:`StaeckelFudge` (12). On the nearly radial
        orbits of BV23's bulge and stellar halo, 8 is 16% faster (6.7 instead of 7.9 µs per point) and
        differs from a converged (order 40) quadrature by 1.5e-5 (bulge) and 2.4e-5 (stellar halo) of
        Jr + Jz + |Jphi| at the 99th percentile, largest 1.8e-3 (order 12: 6.5e-6 and 2.5e-6, largest
        1.1e-3); both are far below the tables' own errors.
    xi_min : float, optional
        First xi node (default 0.002; more circular orbits use its values).
    exact_xi : float or None, optional
        Points with xi > exact_xi (nearly radial orbits, |Lz| < (1 - exact_xi^2) L_c, whose fudge
        actions vary on the small scale of |Lz| near the focal segment and the pole) are computed
        with the exact fudge (default 0.9, i.e. |Lz| < 0.19 L_c). Measured on the action evaluations of
        the ``gaia_dr3_starcounts`` run (``scripts/bench_components.py``): 0.8-1.9% of the discs', 48% of the
        stellar halo's and 60% of the bulge's. None interpolates everything: errors of 3-5% at the 99th
        percentile for xi > 0.95 (tens of per cent for a few 1e-4 of the points), not reduced by finer
        tables in any of the four coordinates (measured on bulge points, 2x the nodes in each).

    Attributes
    ----------
    exact : StaeckelFudge
        The exact fudge sharing the focal-distance table (used for angles and frequencies).
    fallback : StaeckelFudge
        ``exact`` with the quadrature order ``n_quad_exact`` (used for the actions of the points the
        tables do not cover; ``exact`` itself when ``n_quad_exact`` is None).
    build_time : float
        Wall-clock time [s] spent building the tables.

    Raises
    ------
    ValueError
        If a grid parameter is out of range (named in the message).

    References
    ----------
    Binney 2012, MNRAS 426, 1324 (the fudge); Binney 2014, MNRAS 440, 787, and Vasiliev 2019,
    MNRAS 482, 1525 (interpolated fudge in integrals of motion).
    """

    def __init__(self, pot, rmin=0.01, rmax=1000.0, n_energy: int = 48, n_xi: int = 20, n_s: int = 16,
                 n_w: int = 10, n_quad: int = 16, xi_min: float = 0.002, exact_xi=0.9,
                 n_quad_exact: Optional[int] = None):
        from ... import units as U

        for name, val, lo in (("n_energy", n_energy, 6), ("n_xi", n_xi, 6), ("n_s", n_s, 6), ("n_w", n_w, 5),
                              ("n_quad", n_quad, 6)):
            if int(val) < lo:
                raise ValueError(f"{name} must be >= {lo}, got {val}")
        if not (0.0 < xi_min < 0.5):
            raise ValueError(f"xi_min must be in (0, 0.5), got {xi_min}")
        if n_quad_exact is not None and int(n_quad_exact) < 4:
            raise ValueError(f"n_quad_exact must be None or >= 4, got {n_quad_exact}")
        if exact_xi is not None and not (0.0 < float(exact_xi) <= 1.0):
            raise ValueError(f"exact_xi must be None or in (0, 1], got {exact_xi}")
        self._xi_exact = 2.0 if exact_xi is None else float(exact_xi)
        rmin = float(U.to_internal(rmin, U.LENGTH, "rmin"))
        rmax = float(U.to_internal(rmax, U.LENGTH, "rmax"))
        t0 = time.perf_counter()
        self.pot = pot
        self._f, self._p = get_kernel(pot)
        self.exact = StaeckelFudge(pot, rmin=rmin, rmax=rmax)
        self.fallback = self.exact if n_quad_exact is None else self.exact.with_quadrature(n_quad_exact)
        eg = self.energy_grid = self.exact.energy_grid
        D2tab, dpar = self.exact._D2tab, self.exact._dpar
        glx, glw = gauss_legendre(n_quad)
        glx2, glw2 = gauss_legendre(2 * n_quad)
        self._xi0 = float(xi_min)
        logRn = np.linspace(eg.logR[0], eg.logR[-1], int(n_energy))
        xin = np.linspace(self._xi0, 1.0, int(n_xi))
        sn = np.linspace(0.0, 1.0, int(n_s))
        wn = np.linspace(0.0, 1.0, int(n_w))
        self._scaleT = (n_energy - 1.0) / (len(eg.logR) - 1.0)
        args = (eg.logR, eg.Ec, eg.logLc, D2tab, dpar)
        # midplane Phi, dPhi/dR, d2Phi/dz2 on a fine ln R grid (the vertical curvature of every point)
        lnR = np.linspace(math.log(rmin * 1e-3), math.log(rmax * 1e2), 3000)
        self._mid = _midplane_table(self._f, self._p, lnR)
        self._mpar = np.array([lnR[0], lnR[1] - lnR[0]])
        self._t2 = _tables2d(self._f, self._p, logRn, xin, *args)
        self._t3 = _tables3d(self._f, self._p, logRn, xin, wn, *args, self._t2)
        self._t2[:, :, 4] = np.max(self._t3[:, :, :, 3], axis=2)
        self._tr = _table_jr(self._f, self._p, logRn, xin, sn, wn, *args, self._t2, self._t3, glx, glw, glx2, glw2)
        self._tz = _table_jz(self._f, self._p, logRn, xin, sn, wn, *args, self._t2, glx, glw, glx2, glw2,
                             self._mid, self._mpar)
        for name, tab in (("Jr", self._tr), ("Jz", self._tz)):
            bad = ~np.isfinite(tab)
            if bad.any():
                log.warning("interpolated fudge: %d of %d %s table nodes could not be computed; filled from "
                            "neighbours", bad.sum(), bad.size, name)
                _fill_nan(tab)
        self.build_time = time.perf_counter() - t0

    def focal_distance(self, posvel) -> np.ndarray:
        """Focal distance Delta [kpc] used for each point, shape (N,) (see :class:`StaeckelFudge`)."""
        return self.exact.focal_distance(posvel)

    def actions(self, posvel) -> np.ndarray:
        """Interpolated actions of phase-space points.

        Parameters
        ----------
        posvel : array_like, shape (N, 6) or (6,), or pair of Quantities (xyz, vxyz)
            Cartesian (x, y, z, vx, vy, vz) [kpc, km/s].

        Returns
        -------
        numpy.ndarray, shape (N, 3)
            (Jr, Jz, Jphi) [kpc km/s]; points outside the tabulated energy range (and, if
            ``exact_xi`` is set, nearly radial orbits) are computed with the exact fudge ``fallback``
            (NaN if unbound).
        """
        pv = parse_posvel(posvel)
        out, fb = self._interpolate(pv)
        if fb.any():
            out[fb] = self.fallback.actions(pv[fb])
        return out

    def exact_mask(self, posvel) -> np.ndarray:
        """Which points :meth:`actions` hands to the exact fudge (``fallback``) instead of the tables.

        Parameters
        ----------
        posvel : array_like, shape (N, 6) or (6,), or pair of Quantities (xyz, vxyz)
            Cartesian (x, y, z, vx, vy, vz) [kpc, km/s].

        Returns
        -------
        numpy.ndarray of bool, shape (N,)
            True for energies outside the tables, xi > ``exact_xi`` (nearly radial orbits) and degenerate
            geometry (a non-finite interpolated value); unbound points are True as well (their energy is above
            the tables).
        """
        return self._interpolate(parse_posvel(posvel))[1]

    def _interpolate(self, pv):
        """Interpolated actions (N, 3) of (N, 6) points and the mask of the points the exact fudge must do."""
        eg = self.energy_grid
        out, fb = _interp_driver(self._f, self._p, pv, eg.Ec, eg.logLc, self.exact._D2tab, self.exact._dpar,
                                 self._scaleT, self._xi0, self._xi_exact, self._t2, self._t3, self._tr, self._tz,
                                 self._mid, self._mpar)
        # degenerate geometry (e.g. a zero denominator for points within ~10 pc of the centre) gives a
        # non-finite interpolated value: those points, like the ones outside the tables, use the exact fudge
        fb |= ~np.isfinite(out[:, 0]) | ~np.isfinite(out[:, 1])
        return out, fb

    def actions_angles_frequencies(self, posvel):
        """Actions, angles and frequencies from the exact fudge (the tables hold actions only).

        See :meth:`StaeckelFudge.actions_angles_frequencies`.
        """
        return self.exact.actions_angles_frequencies(posvel)


def _fill_nan(tab):
    """Replace NaN nodes by the mean of finite neighbours along the last two axes (in place)."""
    for _ in range(10):
        bad = np.argwhere(~np.isfinite(tab))
        if len(bad) == 0:
            return
        for idx in bad:
            vals = []
            for ax in (2, 3):
                for d in (-1, 1):
                    j = list(idx)
                    j[ax] += d
                    if 0 <= j[ax] < tab.shape[ax] and np.isfinite(tab[tuple(j)]):
                        vals.append(tab[tuple(j)])
            if vals:
                tab[tuple(idx)] = np.mean(vals)
    tab[~np.isfinite(tab)] = np.nanmean(tab)
