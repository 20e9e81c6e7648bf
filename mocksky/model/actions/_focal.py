"""Focal distance of the Stäckel fudge from shell orbits (private module).

The prolate spheroidal coordinates of the Stäckel fudge (Binney 2012) are best adapted to an orbit
when its extreme, Jr = 0 member - the "shell" (thin tube) orbit of the same energy E and angular
momentum Lz - lies on a coordinate line u = const. In a Stäckel potential this is exact: shell
orbits are the ellipses R^2 / (Delta^2 sinh^2 u) + z^2 / (Delta^2 cosh^2 u) = 1, whose squared
semi-axes along z and R differ by Delta^2. Following the idea of Agama (Vasiliev 2019, MNRAS 482,
1525: focal distance from shell orbits, tabulated once as a function of E and Lz), we

1. find the shell orbit of each grid node (E, Lz): it is launched from the equatorial plane at R0
   with vR = 0 and reaches its highest point with vR = 0; R0 is the root of vR(top) = 0 (Dormand &
   Prince 1980 5(4) integration with step control in the meridional plane);
2. fit the ellipse a R^2 + b z^2 = 1 to the orbit by time-weighted least squares and set
   Delta^2 = 1/b - 1/a (the squared z semi-axis minus the squared R semi-axis);
3. tabulate Delta^2 on a grid in (ln R_c(E), xi = sqrt(1 - |Lz| / L_c(E))), lightly smoothed in
   xi and interpolated by local bicubic Lagrange polynomials.

Nodes whose shell orbit cannot be found (nearly circular orbits, whose shell has a vanishing
vertical extent, and nearly polar orbits, whose shell passes over the pole) take the value of the
nearest computed node. A smooth floor keeps Delta >~ 1e-4 R_c(E) where the fit gives Delta^2 <~ 0
(a nearly spherical potential, where the fudge then tends to the exact spherical action finder, or
shells elongated along R, which no prolate system fits); Delta <= 100 R_c.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ._common import ARR1, ARR2, KERNEL_T, energy_coord, interp1, interp2

DELTA_MIN_FRAC = 1e-4
DELTA_MAX_FRAC = 100.0


@numba.njit(cache=True, nogil=True)
def _acc(R, z, Lz2, f, p):
    _, dR, dz = f(R, z, p)
    return -dR + Lz2 / (R * R * R), -dz


@numba.njit(cache=True, nogil=True)
def _hermite(y0, y1, d0, d1, h, th):
    """Cubic Hermite interpolation on a step of length h at fraction th."""
    t2 = th * th
    t3 = t2 * th
    return ((2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + th) * h * d0 + (-2 * t3 + 3 * t2) * y1
            + (t3 - t2) * h * d1)


@numba.njit(cache=True, nogil=True)
def _shell_launch(R0, E, Lz2, f, p, want_fit):
    """Integrate from (R0, 0) with vR = 0, vz > 0 up to the first vz = 0.

    Returns (vR_top, R_top, z_top, S_XX, S_XY, S_YY, S_X, S_Y, ok) with X = R^2, Y = z^2 and the
    time-weighted sums of the ellipse fit.
    """
    Phi0, _, _ = f(R0, 0.0, p)
    vz0sq = 2.0 * (E - Phi0) - Lz2 / (R0 * R0)
    if vz0sq <= 0.0:
        return 0.0, R0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False
    y = np.empty(4)
    y[0], y[1], y[2], y[3] = R0, 0.0, 0.0, math.sqrt(vz0sq)
    vscale = math.sqrt(2.0 * (E - Phi0) + 1e-300)
    aR, az = _acc(R0, 0.0, Lz2, f, p)
    k1 = np.array([y[2], y[3], aR, az])
    h = 1e-3 * R0 / vscale
    t = 0.0
    sXX = sXY = sYY = sX = sY = 0.0
    k2 = np.empty(4)
    k3 = np.empty(4)
    k4 = np.empty(4)
    k5 = np.empty(4)
    k6 = np.empty(4)
    k7 = np.empty(4)
    yt = np.empty(4)
    y5 = np.empty(4)
    tmax = 1e4 * R0 / vscale
    for _ in range(200000):
        # Dormand-Prince 5(4) stages
        for i in range(4):
            yt[i] = y[i] + h * (k1[i] / 5.0)
        a1, a2 = _acc(yt[0], yt[1], Lz2, f, p)
        k2[0], k2[1], k2[2], k2[3] = yt[2], yt[3], a1, a2
        for i in range(4):
            yt[i] = y[i] + h * (3.0 / 40.0 * k1[i] + 9.0 / 40.0 * k2[i])
        a1, a2 = _acc(yt[0], yt[1], Lz2, f, p)
        k3[0], k3[1], k3[2], k3[3] = yt[2], yt[3], a1, a2
        for i in range(4):
            yt[i] = y[i] + h * (44.0 / 45.0 * k1[i] - 56.0 / 15.0 * k2[i] + 32.0 / 9.0 * k3[i])
        a1, a2 = _acc(yt[0], yt[1], Lz2, f, p)
        k4[0], k4[1], k4[2], k4[3] = yt[2], yt[3], a1, a2
        for i in range(4):
            yt[i] = y[i] + h * (19372.0 / 6561.0 * k1[i] - 25360.0 / 2187.0 * k2[i] + 64448.0 / 6561.0 * k3[i]
                                - 212.0 / 729.0 * k4[i])
        a1, a2 = _acc(yt[0], yt[1], Lz2, f, p)
        k5[0], k5[1], k5[2], k5[3] = yt[2], yt[3], a1, a2
        for i in range(4):
            yt[i] = y[i] + h * (9017.0 / 3168.0 * k1[i] - 355.0 / 33.0 * k2[i] + 46732.0 / 5247.0 * k3[i]
                                + 49.0 / 176.0 * k4[i] - 5103.0 / 18656.0 * k5[i])
        a1, a2 = _acc(yt[0], yt[1], Lz2, f, p)
        k6[0], k6[1], k6[2], k6[3] = yt[2], yt[3], a1, a2
        for i in range(4):
            y5[i] = y[i] + h * (35.0 / 384.0 * k1[i] + 500.0 / 1113.0 * k3[i] + 125.0 / 192.0 * k4[i]
                                - 2187.0 / 6784.0 * k5[i] + 11.0 / 84.0 * k6[i])
        if y5[0] <= 0.0:
            h *= 0.25
            continue
        a1, a2 = _acc(y5[0], y5[1], Lz2, f, p)
        k7[0], k7[1], k7[2], k7[3] = y5[2], y5[3], a1, a2
        err = 0.0
        for i in range(4):
            e = h * ((35.0 / 384.0 - 5179.0 / 57600.0) * k1[i] + (500.0 / 1113.0 - 7571.0 / 16695.0) * k3[i]
                     + (125.0 / 192.0 - 393.0 / 640.0) * k4[i] + (-2187.0 / 6784.0 + 92097.0 / 339200.0) * k5[i]
                     + (11.0 / 84.0 - 187.0 / 2100.0) * k6[i] - 1.0 / 40.0 * k7[i])
            sc = (1e-10 * R0 + 1e-9 * abs(y[i])) if i < 2 else (1e-10 * vscale + 1e-9 * abs(y[i]))
            e = abs(e) / sc
            if e > err:
                err = e
        if err > 1.0:
            h *= max(0.2, 0.9 * err ** -0.2)
            continue
        # accepted step: event vz = 0 (from above)?
        frac = 1.0
        event = y5[3] <= 0.0
        if event:
            lo, hi = 0.0, 1.0
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                if _hermite(y[3], y5[3], k1[3], k7[3], h, mid) > 0.0:
                    lo = mid
                else:
                    hi = mid
            frac = 0.5 * (lo + hi)
            Re = _hermite(y[0], y5[0], k1[0], k7[0], h, frac)
            ze = _hermite(y[1], y5[1], k1[1], k7[1], h, frac)
            vRe = _hermite(y[2], y5[2], k1[2], k7[2], h, frac)
        else:
            Re, ze, vRe = y5[0], y5[1], y5[2]
        if want_fit:
            w = 0.5 * frac * h
            X0, Y0 = y[0] * y[0], y[1] * y[1]
            X1, Y1 = Re * Re, ze * ze
            sXX += w * (X0 * X0 + X1 * X1)
            sXY += w * (X0 * Y0 + X1 * Y1)
            sYY += w * (Y0 * Y0 + Y1 * Y1)
            sX += w * (X0 + X1)
            sY += w * (Y0 + Y1)
        if event:
            return vRe, Re, ze, sXX, sXY, sYY, sX, sY, True
        t += h
        if t > tmax:
            break
        for i in range(4):
            y[i] = y5[i]
            k1[i] = k7[i]
        h *= min(5.0, 0.9 * max(err, 1e-10) ** -0.2)
    return 0.0, R0, 0.0, sXX, sXY, sYY, sX, sY, False


@numba.njit(cache=True, nogil=True)
def _planar_range(E, Lz2, Rg, f, p):
    """Radii where Phi(R, 0) + Lz^2 / (2 R^2) = E on both sides of the guiding radius Rg."""
    # inner
    if Lz2 == 0.0:
        Rin = 0.0
    else:
        lo, hi = Rg, Rg
        for _ in range(200):
            lo *= 0.5
            Ph, _, _ = f(lo, 0.0, p)
            if Ph + 0.5 * Lz2 / (lo * lo) > E:
                break
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            Ph, _, _ = f(mid, 0.0, p)
            if Ph + 0.5 * Lz2 / (mid * mid) > E:
                lo = mid
            else:
                hi = mid
        Rin = 0.5 * (lo + hi)
    lo, hi = Rg, Rg
    for _ in range(200):
        hi *= 2.0
        Ph, _, _ = f(hi, 0.0, p)
        if Ph + 0.5 * Lz2 / (hi * hi) > E:
            break
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        Ph, _, _ = f(mid, 0.0, p)
        if Ph + 0.5 * Lz2 / (mid * mid) > E:
            hi = mid
        else:
            lo = mid
    return Rin, 0.5 * (lo + hi)


@numba.njit(cache=True, nogil=True)
def guiding_radius(Lz2, logR, logLc):
    """Radius of the circular orbit with angular momentum |Lz| (inverse of the L_c(R) table)."""
    if Lz2 <= 0.0:
        return 0.0
    lL = 0.5 * math.log(Lz2)
    n = logR.shape[0]
    if lL <= logLc[0]:
        return math.exp(logR[0] + (lL - logLc[0]))  # L_c ~ R^(1..2) at small R: crude but only a start
    if lL >= logLc[n - 1]:
        return math.exp(logR[n - 1] + 2.0 * (lL - logLc[n - 1]))
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if logLc[mid] <= lL:
            lo = mid
        else:
            hi = mid
    t = (lL - logLc[lo]) / (logLc[hi] - logLc[lo])
    return math.exp(logR[lo] + t * (logR[hi] - logR[lo]))


@numba.njit(cache=True, nogil=True)
def shell_orbit_delta(E, Lz, f, p, logR, logLc):
    """Focal distance squared fitted to the shell orbit of (E, Lz); NaN if not found."""
    Lz2 = Lz * Lz
    Rg = guiding_radius(Lz2, logR, logLc)
    Rin, Rout = _planar_range(E, Lz2, Rg, f, p)
    width = Rout - Rin
    if not (width > 0.0):
        return np.nan
    eps = 1e-3
    a = Rin + eps * width
    b = Rout - eps * width
    ga = _shell_launch(a, E, Lz2, f, p, False)
    gb = _shell_launch(b, E, Lz2, f, p, False)
    if not (ga[8] and gb[8]):
        return np.nan
    fa, fb = ga[0], gb[0]
    if fa * fb > 0.0:
        # scan for a sign change
        found = False
        prev_x, prev_f = a, fa
        for k in range(1, 16):
            x = a + (b - a) * k / 16.0
            gx = _shell_launch(x, E, Lz2, f, p, False)
            if not gx[8]:
                return np.nan
            if gx[0] * prev_f <= 0.0:
                a, fa, b, fb = prev_x, prev_f, x, gx[0]
                found = True
                break
            prev_x, prev_f = x, gx[0]
        if not found:
            return np.nan
    # Illinois (modified regula falsi) iteration
    side = 0
    x = a
    for _ in range(60):
        x = (a * fb - b * fa) / (fb - fa)
        fx = _shell_launch(x, E, Lz2, f, p, False)[0]
        if abs(b - a) < 1e-9 * width or fx == 0.0:
            break
        if fx * fb > 0.0:
            b, fb = x, fx
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a, fa = x, fx
            if side == 1:
                fb *= 0.5
            side = 1
    res = _shell_launch(x, E, Lz2, f, p, True)
    if not res[8]:
        return np.nan
    sXX, sXY, sYY, sX, sY = res[3], res[4], res[5], res[6], res[7]
    det = sXX * sYY - sXY * sXY
    if not (det > 0.0):
        return np.nan
    ca = (sX * sYY - sY * sXY) / det
    cb = (sY * sXX - sX * sXY) / det
    if not (ca > 0.0 and cb > 0.0):
        return np.nan
    return 1.0 / cb - 1.0 / ca


@numba.njit(ARR2(KERNEL_T, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1), parallel=True, cache=True, nogil=True)
def _delta2_nodes(f, p, logRnodes, xinodes, logR, Ec, logLc):
    nE, nx = logRnodes.shape[0], xinodes.shape[0]
    out = np.full((nE, nx), np.nan)
    dq = (logR.shape[0] - 1.0) / (logR[logR.shape[0] - 1] - logR[0])
    for k in prange(nE * nx):
        i, j = k // nx, k % nx
        q = (logRnodes[i] - logR[0]) * dq
        E = interp1(Ec, q)
        Lc = math.exp(interp1(logLc, q))
        xi = xinodes[j]
        out[i, j] = shell_orbit_delta(E, (1.0 - xi * xi) * Lc, f, p, logR, logLc)
    return out


@numba.njit(cache=True, nogil=True)
def integrals_coords(E, Lz, Ec, logLc):
    """Grid coordinates of (E, Lz): (q_E, xi, flag).

    q_E is the energy coordinate in node units of the EnergyGrid (clamped), xi = sqrt(1 - |Lz|/L_c(E))
    in [0, 1] and flag = -1 / 0 / +1 below / inside / above the tabulated energy range.
    """
    q, flag = energy_coord(E, Ec)
    Lc = math.exp(interp1(logLc, q))
    x = abs(Lz) / Lc
    if x > 1.0:
        x = 1.0
    return q, math.sqrt(1.0 - x), flag


@numba.njit(cache=True, nogil=True)
def delta_lookup(qE, xi, D2tab, dpar):
    """Focal distance at energy coordinate qE (EnergyGrid nodes) and xi.

    ``D2tab`` holds the smoothed Delta^2 [kpc^2] (may be negative) and ``dpar`` = (row scale, ln R of
    the first EnergyGrid node, its spacing, floor fraction f); the smooth floor
    Delta^2 = [d + sqrt(d^2 + 4 (f R_c)^4)] / 2 is applied after interpolation.
    """
    d = interp2(D2tab, qE * dpar[0], xi * (D2tab.shape[1] - 1))
    fr2 = dpar[3] * math.exp(dpar[1] + qE * dpar[2])
    fr2 *= fr2
    root = math.sqrt(d * d + 4.0 * fr2 * fr2)
    # the same value written without cancellation for d << 0 (where d + root would round to 0)
    d2 = 0.5 * (d + root) if d >= 0.0 else 2.0 * fr2 * fr2 / (root - d)
    dmax = DELTA_MAX_FRAC * DELTA_MAX_FRAC * fr2 / (dpar[3] * dpar[3])
    if d2 > dmax:
        d2 = dmax
    return math.sqrt(d2)


def _smooth(a, kernel, axis):
    """Convolution along one axis with edge replication (kernel normalised to unit sum)."""
    k = np.asarray(kernel, float)
    k = k / k.sum()
    h = len(k) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (h, h)
    ap = np.pad(a, pad, mode="edge")
    out = np.zeros_like(a)
    n = a.shape[axis]
    for j, w in enumerate(k):
        out += w * np.take(ap, np.arange(j, j + n), axis=axis)
    return out


def build_delta_table(func, params, egrid, n_E: int = 40, n_xi: int = 12, xi_range=(0.1, 0.95)):
    """Table of the smoothed, fitted Delta^2 on a uniform grid in (ln R_c, xi); see the module docstring.

    Failed shell orbits are filled from the nearest converged node (in xi, then in energy); each
    row is smoothed with a 1-2-1 binomial filter in xi (the fits scatter slightly from node to node)
    and held constant outside ``xi_range``. Interpolating Delta^2 rather than ln Delta keeps
    Delta(E, Lz) smooth where the fitted Delta^2 changes sign, which the interpolated finder needs
    (its tables are computed in the coordinates Delta defines). Smoothing in energy as well would
    help the interpolation slightly but degrades the fudge itself (BV23: median error of Jr 1.2%
    instead of 1.0% against orbit integrations). A constant Delta^2 (an exact Stäckel potential) is
    preserved exactly.

    Returns
    -------
    D2tab : ndarray, shape (n_E, n_xi)
        Delta^2 [kpc^2] (negative where shell orbits are elongated along R) at
        ln R_c = linspace(egrid.logR[0], egrid.logR[-1], n_E) and xi = linspace(0, 1, n_xi).
    dpar : ndarray, shape (4,)
        Parameters of :func:`delta_lookup`.

    Raises
    ------
    RuntimeError
        If no shell orbit at all could be found in the potential.
    """
    logRn = np.linspace(egrid.logR[0], egrid.logR[-1], int(n_E))
    xin = np.linspace(0.0, 1.0, int(n_xi))
    sel = (xin >= xi_range[0] - 1e-12) & (xin <= xi_range[1] + 1e-12)
    idx = np.nonzero(sel)[0]
    d2 = _delta2_nodes(func, params, logRn, np.ascontiguousarray(xin[sel]), egrid.logR, egrid.Ec, egrid.logLc)
    good = np.isfinite(d2)
    if not np.any(good):
        raise RuntimeError("focal distance: no shell orbit could be found in this potential")
    for i in range(len(logRn)):
        ok = np.nonzero(good[i])[0]
        if ok.size and ok.size < len(idx):
            for j in np.nonzero(~good[i])[0]:
                d2[i, j] = d2[i, ok[np.argmin(np.abs(ok - j))]]
    okrows = np.nonzero(good.any(axis=1))[0]
    for i in range(len(logRn)):
        if not good[i].any():
            d2[i] = d2[okrows[np.argmin(np.abs(okrows - i))]]
    d2 = _smooth(d2, [1, 2, 1], axis=1)
    full = np.empty((len(logRn), len(xin)))
    for j in range(len(xin)):
        full[:, j] = d2[:, np.argmin(np.abs(idx - j))] if not sel[j] else d2[:, np.searchsorted(idx, j)]
    dpar = np.array([(n_E - 1.0) / (len(egrid.logR) - 1.0), egrid.logR[0], egrid.logR[1] - egrid.logR[0],
                     DELTA_MIN_FRAC])
    return np.ascontiguousarray(full), dpar
