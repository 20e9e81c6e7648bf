"""CylSpline: potential of a flattened axisymmetric density on an (R, z) grid (Agama's ``CylSpline`` role).

The potential and its two first derivatives are computed at the nodes of a grid in (R, z) by
direct integration of the density with the Green's function of an axisymmetric ring (the
azimuthal integral of 1/|x - x'| in closed form with the complete elliptic integral K; Cohl &
Tohline 1999, ApJ 527, 86, where it appears as the m = 0 term Q_{-1/2}; Binney & Tremaine 2008,
Sect. 2.6):

    Phi(R, z) = -G int_0^inf dR' int_-inf^inf dz' rho(R', z') 4 R' K(k) / sqrt((R+R')^2 + (z-z')^2),
    k^2 = 4 R R' / ((R+R')^2 + (z-z')^2),

with derivatives (d = distance between the node and the ring in the meridional plane, E = E(k))

    d/dz [4 R' K / D] = -4 R' (z - z') E / (D d^2),
    d/dR [4 R' K / D] = 2 R' / (R D) [E (R'^2 - R^2 + (z-z')^2) / d^2 - K].

K and E come from power series for k^2 < 0.1 and from the Hastings polynomial approximations
(Abramowitz & Stegun 1964, 17.3.34/36, error <= 2e-8) otherwise. The density is
evaluated ONCE on a fixed mesh: the product of Gauss-Legendre points in the panels between
consecutive grid nodes (continued geometrically beyond the grid), using z -> -z symmetry. For
each node, panels far from it (distance >= eta x size) use that mesh directly; nearer panels are
bisected adaptively (the density inside being the degree-(n-1) Lagrange interpolant of the
panel's Gauss-point values), and the sub-panels having the node at a corner are integrated with
the Duffy transformation (Duffy 1982, SIAM J. Numer. Anal. 19, 1260), which removes the 1/d
singularity of the force kernel and reduces the logarithmic one of the potential kernel to u ln u.

The node values are interpolated with the biquintic Hermite spline of :mod:`._spline2d` (second
derivatives from C^3 quintic splines, and d2Phi/dz2 from Poisson's equation with the density at
the node, which keeps the vertical force of thin discs accurate). The requested grid is continued
with the same spacing until it encloses all but 1e-6 of the mass (at most to 4 x its size), and
outside it the potential is the multipole expansion
sum_{l even} P_l(cos theta) [a_l (r0/r)^(l+1) + b_l (r0/r)^(l+2)], r0 = min(Rmax, zmax), with the
exterior multipole moments a_l = -G Q_l / r0^(l+1) of the density (exact far field) and small b_l
fitted to the spline on the grid boundary (least squares), so that Phi and its gradient are
continuous across the boundary to ~1e-6 and ~1e-4. If the density extends beyond the cap
(e.g. Miyamoto-Nagai, whose multipole moments diverge), only a_0 (the mass) is kept and the other
coefficients are fitted.

References
----------
Vasiliev 2019, MNRAS 482, 1525 (Agama), Sect. 2.4 (CylSpline, grids, quintic splines).
Binney & Vasiliev 2023, MNRAS 520, 1832 (BV23), Sect. 3 (disc potentials via CylSpline).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numba
import numpy as np

from ...units import G
from . import _spline2d as S
from .tabulated import SplinePotential

log = logging.getLogger(__name__)

_FILE_TAG = "mocksky CylSpline coefficients v1"


# --------------------------------------------------------------------------- special functions
def _series_coefficients(nterms=16):
    # K = pi/2 sum c_n^2 m^n,  K - E = pi/2 sum_{n>=1} c_n^2 m^n 2n/(2n-1),  c_n = (2n-1)!!/(2n)!!
    cK = np.empty(nterms)
    cKE = np.zeros(nterms)
    c = 1.0
    for n in range(nterms):
        if n > 0:
            c *= (2 * n - 1) / (2 * n)
        cK[n] = 0.5 * np.pi * c * c
        if n > 0:
            cKE[n] = 0.5 * np.pi * c * c * 2 * n / (2 * n - 1)
    return cK, cKE


_CK, _CKE = _series_coefficients()
# Abramowitz & Stegun 1964, eqs. 17.3.34 and 17.3.36 (Hastings): |error| <= 2e-8
_AK = np.array([1.38629436112, 0.09666344259, 0.03590092383, 0.03742563713, 0.01451196212])
_BK = np.array([0.5, 0.12498593597, 0.06880248576, 0.03328355346, 0.00441787012])
_AE = np.array([1.0, 0.44325141463, 0.06260601220, 0.04757383546, 0.01736506451])
_BE = np.array([0.0, 0.24998368310, 0.09200180037, 0.04069697526, 0.00526449639])


@numba.njit(cache=True, nogil=True, fastmath=False)
def _ellipke(m, m1):
    """Complete elliptic integrals K(m), E(m) and K - E (parameter m = k^2; m1 = 1 - m given accurately).

    For m < 0.1 the power series (A&S 17.3.11-12, 16 terms, relative error < 1e-15, K - E without
    cancellation); otherwise the polynomial approximations A&S 17.3.34, 17.3.36 (absolute error
    <= 2e-8), which contain the logarithmic singularity at m1 -> 0 explicitly.
    """
    if m < 0.1:
        K = _CK[15]
        KE = _CKE[15]
        for n in range(14, -1, -1):
            K = K * m + _CK[n]
            KE = KE * m + _CKE[n]
        return K, K - KE, KE
    L = -np.log(m1)
    K = (((_AK[4] * m1 + _AK[3]) * m1 + _AK[2]) * m1 + _AK[1]) * m1 + _AK[0] \
        + ((((_BK[4] * m1 + _BK[3]) * m1 + _BK[2]) * m1 + _BK[1]) * m1 + _BK[0]) * L
    E = (((_AE[4] * m1 + _AE[3]) * m1 + _AE[2]) * m1 + _AE[1]) * m1 + _AE[0] \
        + ((((_BE[4] * m1 + _BE[3]) * m1 + _BE[2]) * m1 + _BE[1]) * m1) * L
    return K, E, K - E


@numba.njit(cache=True, nogil=True, fastmath=False)
def _ring1(R, z, Rp, zp):
    # Green's function of a ring (R', z') at the point (R, z): psi = 4 R' K / D and its R-, z-derivatives
    dz = z - zp
    sR = R + Rp
    dR = R - Rp
    D2 = sR * sR + dz * dz
    d2 = dR * dR + dz * dz
    if d2 <= 0.0:
        return 0.0, 0.0, 0.0
    D = np.sqrt(D2)
    K, E, KmE = _ellipke(4.0 * R * Rp / D2, d2 / D2)
    psi = 4.0 * Rp * K / D
    t = 4.0 * Rp * E / (D * d2)
    psi_z = -t * dz
    if R > 0.0:
        # 2 R'/(R D) [E (R'^2 - R^2 + dz^2)/d^2 - K], written without cancellation for small k
        psi_R = t * (Rp - R) - 2.0 * Rp * KmE / (R * D)
    else:
        psi_R = 0.0
    return psi, psi_R, psi_z


@numba.njit(cache=True, nogil=True, fastmath=False)
def _ring(R, z, Rp, zp):
    # ring at (R', z') plus its mirror image at (R', -z') (z-symmetric density, z' >= 0)
    a0, a1, a2 = _ring1(R, z, Rp, zp)
    b0, b1, b2 = _ring1(R, z, Rp, -zp)
    return a0 + b0, a1 + b1, a2 + b2


# --------------------------------------------------------------------------- quadrature helpers
@numba.njit(cache=True, nogil=True, fastmath=False)
def _lagrange(x, xs, den, out):
    # Lagrange basis polynomials through the nodes xs at x (den[k] = prod_{j != k} (xs[k] - xs[j]))
    n = xs.shape[0]
    for k in range(n):
        p = 1.0
        for j in range(n):
            if j != k:
                p *= x - xs[j]
        out[k] = p / den[k]


@numba.njit(cache=True, nogil=True, fastmath=False)
def _rho_interp(Rp, zp, i, j, Rb, zb, rho, xg, den, LR, Lz):
    # density at (R', z') inside top-level panel (i, j) from its Gauss-point values
    n = xg.shape[0]
    _lagrange(2.0 * (Rp - Rb[i]) / (Rb[i + 1] - Rb[i]) - 1.0, xg, den, LR)
    _lagrange(2.0 * (zp - zb[j]) / (zb[j + 1] - zb[j]) - 1.0, xg, den, Lz)
    s = 0.0
    for a in range(n):
        t = 0.0
        for b in range(n):
            t += Lz[b] * rho[i * n + a, j * n + b]
        s += LR[a] * t
    return s


@numba.njit(cache=True, nogil=True, fastmath=False)
def _rect_dist(x, y, x0, x1, y0, y1):
    dx = 0.0
    if x < x0:
        dx = x0 - x
    elif x > x1:
        dx = x - x1
    dy = 0.0
    if y < y0:
        dy = y0 - y
    elif y > y1:
        dy = y - y1
    return np.sqrt(dx * dx + dy * dy)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _near_panel(R, z, i, j, Rb, zb, rho, xg, wg, xd, wd, eta, den, LR, Lz, stack):
    """Integral of rho * (psi, psi_R, psi_z) over top-level panel (i, j) near the node (R, z)."""
    n = xg.shape[0]
    nd = xd.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    top = 0
    stack[0, 0] = Rb[i]
    stack[0, 1] = Rb[i + 1]
    stack[0, 2] = zb[j]
    stack[0, 3] = zb[j + 1]
    stack[0, 4] = 0.0
    top = 1
    while top > 0:
        top -= 1
        x0 = stack[top, 0]
        x1 = stack[top, 1]
        y0 = stack[top, 2]
        y1 = stack[top, 3]
        depth = stack[top, 4]
        wx = x1 - x0
        wy = y1 - y0
        size = max(wx, wy)
        corner = (x0 == R or x1 == R) and (y0 == z or y1 == z)
        dmir = _rect_dist(R, -z, x0, x1, y0, y1)
        split = False
        if depth < 60:
            if corner:
                split = wx > 2.0 * wy or wy > 2.0 * wx or (z > 0.0 and dmir < eta * size)
            else:
                dn = _rect_dist(R, z, x0, x1, y0, y1)
                split = min(dn, dmir) < eta * size
        if split:
            if wx > 2.0 * wy:
                xs = (x0, 0.5 * (x0 + x1), 0.5 * (x0 + x1), x1)
                for q in range(2):
                    stack[top, 0] = xs[2 * q]
                    stack[top, 1] = xs[2 * q + 1]
                    stack[top, 2] = y0
                    stack[top, 3] = y1
                    stack[top, 4] = depth + 1
                    top += 1
            elif wy > 2.0 * wx:
                ys = (y0, 0.5 * (y0 + y1), 0.5 * (y0 + y1), y1)
                for q in range(2):
                    stack[top, 0] = x0
                    stack[top, 1] = x1
                    stack[top, 2] = ys[2 * q]
                    stack[top, 3] = ys[2 * q + 1]
                    stack[top, 4] = depth + 1
                    top += 1
            else:
                xm = 0.5 * (x0 + x1)
                ym = 0.5 * (y0 + y1)
                for q in range(4):
                    stack[top, 0] = x0 if q % 2 == 0 else xm
                    stack[top, 1] = xm if q % 2 == 0 else x1
                    stack[top, 2] = y0 if q < 2 else ym
                    stack[top, 3] = ym if q < 2 else y1
                    stack[top, 4] = depth + 1
                    top += 1
            continue
        if corner:
            # Duffy transformation about the corner at the node: two triangles
            sx = 1.0 if x0 == R else -1.0
            sy = 1.0 if y0 == z else -1.0
            for tri in range(2):
                for a in range(nd):
                    u = 0.5 * (xd[a] + 1.0)
                    for b in range(nd):
                        v = 0.5 * (xd[b] + 1.0)
                        if tri == 0:
                            Rp = R + sx * wx * u
                            zp = z + sy * wy * u * v
                        else:
                            Rp = R + sx * wx * u * v
                            zp = z + sy * wy * u
                        w = 0.25 * wd[a] * wd[b] * wx * wy * u
                        rr = _rho_interp(Rp, zp, i, j, Rb, zb, rho, xg, den, LR, Lz) * w
                        g0, g1, g2 = _ring(R, z, Rp, zp)
                        s0 += rr * g0
                        s1 += rr * g1
                        s2 += rr * g2
        else:
            for a in range(n):
                Rp = x0 + 0.5 * (xg[a] + 1.0) * wx
                for b in range(n):
                    zp = y0 + 0.5 * (xg[b] + 1.0) * wy
                    w = 0.25 * wg[a] * wg[b] * wx * wy
                    rr = _rho_interp(Rp, zp, i, j, Rb, zb, rho, xg, den, LR, Lz) * w
                    g0, g1, g2 = _ring(R, z, Rp, zp)
                    s0 += rr * g0
                    s1 += rr * g1
                    s2 += rr * g2
    return s0, s1, s2


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _solve_nodes(Rn, zn, Rb, zb, Rg, zg, W, rho, active, xg, wg, xd, wd, eta):
    """sum rho w (psi, psi_R, psi_z) at every node over the active panels; shape (3, nR, nz)."""
    nR = Rn.shape[0]
    nz = zn.shape[0]
    n = xg.shape[0]
    nRp = Rb.shape[0] - 1
    nzp = zb.shape[0] - 1
    den = np.empty(n)
    for k in range(n):
        p = 1.0
        for q in range(n):
            if q != k:
                p *= xg[k] - xg[q]
        den[k] = p
    out = np.zeros((3, nR, nz))
    for node in numba.prange(nR * nz):
        ir = node // nz
        jz = node % nz
        R = Rn[ir]
        z = zn[jz]
        LR = np.empty(n)
        Lz = np.empty(n)
        stack = np.empty((512, 5))
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for i in range(nRp):
            wxp = Rb[i + 1] - Rb[i]
            for j in range(nzp):
                if not active[i, j]:
                    continue
                size = max(wxp, zb[j + 1] - zb[j])
                dn = _rect_dist(R, z, Rb[i], Rb[i + 1], zb[j], zb[j + 1])
                dm = _rect_dist(R, -z, Rb[i], Rb[i + 1], zb[j], zb[j + 1])
                if min(dn, dm) < eta * size:
                    a0, a1, a2 = _near_panel(R, z, i, j, Rb, zb, rho, xg, wg, xd, wd, eta, den, LR, Lz, stack)
                    s0 += a0
                    s1 += a1
                    s2 += a2
                    continue
                for a in range(n):
                    Rp = Rg[i * n + a]
                    for b in range(n):
                        k = j * n + b
                        rr = rho[i * n + a, k] * W[i * n + a, k]
                        if rr == 0.0:
                            continue
                        g0, g1, g2 = _ring(R, z, Rp, zg[k])
                        s0 += rr * g0
                        s1 += rr * g1
                        s2 += rr * g2
        out[0, ir, jz] = s0
        out[1, ir, jz] = s1
        out[2, ir, jz] = s2
    return out


# --------------------------------------------------------------------------- mesh
def _panel_breaks(A, beta, n, xfar):
    """Panel boundaries x_k = A (e^{beta k} - 1), k = 0, 1, ...: the grid nodes, continued with the
    same geometric spacing up to (at least) xfar and at least 4 steps beyond node n-1."""
    k_end = max(int(np.ceil(np.log1p(xfar / A) / beta)), n + 3)
    return A * np.expm1(beta * np.arange(k_end + 1))


def _gauss_mesh(breaks, xg, wg):
    """Gauss-Legendre points and weights in each panel, flattened (panel-major)."""
    lo = breaks[:-1, None]
    w = (breaks[1:] - breaks[:-1])[:, None]
    return (lo + 0.5 * (xg[None, :] + 1.0) * w).ravel(), (0.5 * wg[None, :] * w).ravel()


class CylSpline(SplinePotential):
    """Axisymmetric potential interpolated on an (R, z) grid (biquintic spline), from a density.

    Construct with :meth:`from_density` (Poisson solver) or :meth:`from_file`. Grid nodes are
    x_k = A (exp(beta k) - 1), k = 0..n-1, in R and in z (:func:`._spline2d.nonuniform_grid`);
    beyond the last nodes a multipole expansion is used.

    Parameters
    ----------
    node_data : numpy.ndarray, shape (nR, nz, 3, 3)
        d^p/du^p d^q/dv^q Phi [km^2/s^2] at the nodes, u and v being the scaled coordinates
        (node indices) of the R and z grids.
    Rmap, zmap : tuple (A, beta)
        Scale [kpc] and log-step of the R and z grids.
    r0 : float
        Reference radius of the extrapolation [kpc].
    a_l, b_l : array_like, shape (lmax/2 + 1,)
        Extrapolation coefficients [km^2/s^2] for l = 0, 2, ..., lmax.
    name : str
    mass : float, optional
        Total mass of the density [Msun] (informational).

    Raises
    ------
    ValueError
        If the shapes or grid parameters are invalid.

    Attributes
    ----------
    Rnodes, znodes : numpy.ndarray
        Grid nodes [kpc] (the requested grid, possibly extended, see :meth:`from_density`).
    """

    def __init__(self, node_data, Rmap, zmap, r0, a_l, b_l, name="", mass=float("nan")):
        D = np.asarray(node_data, dtype=np.float64)
        if D.ndim != 4 or D.shape[2:] != (3, 3) or D.shape[0] < 4 or D.shape[1] < 4:
            raise ValueError(f"node_data must have shape (nR >= 4, nz >= 4, 3, 3), got {D.shape}")
        if not np.all(np.isfinite(D)):
            raise ValueError("node_data contains non-finite values")
        A_R, beta_R = float(Rmap[0]), float(Rmap[1])
        A_z, beta_z = float(zmap[0]), float(zmap[1])
        for label, v in (("Rmap A", A_R), ("Rmap beta", beta_R), ("zmap A", A_z), ("zmap beta", beta_z)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{label} must be finite and > 0, got {v}")
        a_l = np.asarray(a_l, dtype=np.float64).ravel()
        b_l = np.asarray(b_l, dtype=np.float64).ravel()
        if len(a_l) != len(b_l) or len(a_l) == 0:
            raise ValueError(f"a_l and b_l must be non-empty and of equal length, got {len(a_l)} and {len(b_l)}")
        if not (np.isfinite(r0) and r0 > 0):
            raise ValueError(f"r0 must be finite and > 0, got {r0}")
        nR, nz = D.shape[:2]
        self.node_data = D
        self.Rmap, self.zmap = (A_R, beta_R), (A_z, beta_z)
        self.Rnodes = A_R * np.expm1(beta_R * np.arange(nR))
        self.znodes = A_z * np.expm1(beta_z * np.arange(nz))
        self.r0 = float(r0)
        self.a_l, self.b_l = a_l, b_l
        self.name = name
        self.mass = float(mass)
        self.spherical = False
        self._params = S.pack(D, A_R, beta_R, self.Rnodes[-1], A_z, beta_z, self.znodes[-1], S.EXT_BOX, self.r0,
                              a_l, b_l)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_density(cls, density, Rmin=0.1, Rmax=50.0, nR=30, zmin=0.04, zmax=20.0, nz=30, lmax=8,
                     n_gauss=6, eta=1.0, far_factor=20.0, enclose=1e-6, max_extend=4.0, name=None):
        """Solve Poisson's equation for an axisymmetric, z-symmetric density.

        The grid 0, Rmin, ..., Rmax (nR nodes) x 0, zmin, ..., zmax (nz nodes) is continued with the
        same geometric spacing, if needed, until it reaches the radius enclosing all but a fraction
        ``enclose`` of the mass (at most ``max_extend`` x max(Rmax, zmax)), so that the exterior
        multipole expansion used beyond the grid is accurate and continuous at its edge.

        Parameters
        ----------
        density : object with ``_density(R, z)``
            Vectorised, z-symmetric density [Msun/kpc^3] (e.g. :class:`~.density.Disk`, a sum of
            profiles, or an interpolated density known on a grid). It is called twice: once on the
            quadrature mesh (~(nR + 14)(nz + 14) n_gauss^2 points for far_factor 20) and once at
            the grid nodes.
        Rmin, Rmax, nR : float, float, int
            Radial grid [kpc] (Agama's RminCyl, RmaxCyl, sizeRadialCyl); Rmax > (nR - 1) Rmin.
        zmin, zmax, nz : float, float, int
            Vertical grid [kpc] (zminCyl, zmaxCyl, sizeVerticalCyl); zmax > (nz - 1) zmin.
        lmax : int
            Even order of the multipole extrapolation (default 8).
        n_gauss : int
            Gauss-Legendre points per grid cell and dimension of the density mesh (default 6).
        eta : float
            Panels nearer to a node than eta x their size are integrated adaptively (default 1).
        far_factor : float
            The density is integrated out to far_factor x (Rmax, zmax) (default 20; at least
            1.5 x max_extend x max(Rmax, zmax)); mass beyond is neglected.
        enclose : float
            Mass fraction allowed outside the (extended) grid (default 1e-6); 0 disables the extension.
        max_extend : float
            Cap of the grid extension, in units of max(Rmax, zmax) (default 4).
        name : str, optional
            Label (defaults to the density's name).

        Returns
        -------
        CylSpline

        Raises
        ------
        ValueError
            If a grid or quadrature parameter is invalid (named), or the density is negative, not
            finite on the mesh, or has no mass.
        """
        _, A_R, beta_R = S.nonuniform_grid(Rmin, Rmax, nR, "R")
        _, A_z, beta_z = S.nonuniform_grid(zmin, zmax, nz, "z")
        lmax = int(lmax)
        if lmax < 0 or lmax % 2:
            raise ValueError(f"lmax must be an even integer >= 0, got {lmax}")
        if int(n_gauss) < 2:
            raise ValueError(f"n_gauss must be >= 2, got {n_gauss}")
        for label, v, lo in (("eta", eta, 0.0), ("far_factor", far_factor, 1.0), ("max_extend", max_extend, 1.0)):
            if not (np.isfinite(v) and v >= lo and v > 0):
                raise ValueError(f"{label} must be finite and >= {lo:g} (and > 0), got {v}")
        if not (0 <= enclose < 1):
            raise ValueError(f"enclose must be in [0, 1), got {enclose}")
        xg, wg = np.polynomial.legendre.leggauss(int(n_gauss))
        xd, wd = np.polynomial.legendre.leggauss(12)
        ng = len(xg)
        # panel boundaries: grid nodes continued geometrically to far_factor x the grid size
        cap = max_extend * max(Rmax, zmax)                  # largest allowed grid extension
        Rb = _panel_breaks(A_R, beta_R, nR, max(far_factor * Rmax, 1.5 * cap))
        zb = _panel_breaks(A_z, beta_z, nz, max(far_factor * zmax, 1.5 * cap))
        Rg, wR = _gauss_mesh(Rb, xg, wg)
        zg, wz = _gauss_mesh(zb, xg, wg)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rho = np.asarray(density._density(Rg[:, None], zg[None, :]), dtype=np.float64) * np.ones((len(Rg), len(zg)))
        if not np.all(np.isfinite(rho)):
            bad = np.argwhere(~np.isfinite(rho))[0]
            raise ValueError(f"density is not finite at R={Rg[bad[0]]:g}, z={zg[bad[1]]:g} kpc")
        if np.any(rho < 0):
            raise ValueError(f"density is negative on the mesh (min {rho.min():g} Msun/kpc^3)")
        W = wR[:, None] * wz[None, :]
        mass_el = 4 * np.pi * rho * W * Rg[:, None]          # z-symmetric: twice the upper half
        mass = float(mass_el.sum())
        if not mass > 0:
            raise ValueError("density has zero total mass on the integration mesh")
        # extend the grid until it encloses all but `enclose` of the mass (within the cap)
        r_mesh = np.hypot(Rg[:, None], zg[None, :]).ravel()
        order = np.argsort(r_mesh)[::-1]
        m_out = np.cumsum(mass_el.ravel()[order])           # mass outside radius r_mesh[order]
        k = np.searchsorted(m_out, enclose * mass, side="right")
        r_enc = r_mesh[order][k] if enclose > 0 and k < len(order) else 0.0
        target = min(r_enc, cap)
        nR_int = max(nR, int(np.ceil(np.log1p(target / A_R) / beta_R - 1e-9)) + 1)
        nz_int = max(nz, int(np.ceil(np.log1p(target / A_z) / beta_z - 1e-9)) + 1)
        Rn = Rb[:nR_int].copy()
        zn = zb[:nz_int].copy()
        enclosed = r_enc <= min(Rn[-1], zn[-1]) * (1 + 1e-12)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rho_nodes = np.asarray(density._density(Rn[:, None], zn[None, :]), dtype=np.float64) * np.ones((nR_int, nz_int))
        if np.any(np.isnan(rho_nodes)) or np.any(rho_nodes < 0):
            raise ValueError("density is NaN or negative at some grid nodes")
        # panels holding less than 1e-12 of the mass are skipped (negligible at every node)
        pmass = mass_el.reshape(len(Rb) - 1, ng, len(zb) - 1, ng).sum(axis=(1, 3))
        active = pmass > 1e-12 * mass
        sums = _solve_nodes(Rn, zn, Rb, zb, Rg, zg, W, rho, active, xg, wg, xd, wd, float(eta))
        f, fR, fz = -G * sums[0], -G * sums[1], -G * sums[2]
        D = _node_data(Rn, A_R, beta_R, zn, A_z, beta_z, f, fR, fz, rho_nodes)
        # extrapolation: exterior multipole moments Q_l = int rho r^l P_l dV (exact if the grid
        # encloses the mass), plus b_l terms fitted to the spline on the grid boundary
        r0 = float(min(Rn[-1], zn[-1]))
        rr = np.hypot(Rg[:, None], zg[None, :])
        c = zg[None, :] / rr
        P = S.legendre_even(lmax, c)
        ls = 2 * np.arange(lmax // 2 + 1)
        Q = np.array([(mass_el * (rr / r0) ** l * P[i]).sum() for i, l in enumerate(ls)])
        a_l = -G * Q / r0                                     # = -G Q_l / r0^(l+1) in units of r0^l
        if not enclosed:
            a_l[1:] = 0.0
        params = S.pack(D, A_R, beta_R, Rn[-1], A_z, beta_z, zn[-1], S.EXT_BOX, r0, a_l, np.zeros_like(a_l))
        a_l, b_l = _fit_boundary(params, Rn, zn, r0, a_l, lmax, fit_a=not enclosed)
        nm = name if name is not None else getattr(density, "name", "")
        log.debug("CylSpline %r: %dx%d grid (requested %dx%d), mass %.6g Msun, enclosed=%s", nm, nR_int, nz_int,
                  nR, nz, mass, enclosed)
        return cls(D, (A_R, beta_R), (A_z, beta_z), r0, a_l, b_l, name=nm, mass=mass)

    # ------------------------------------------------------------------ I/O
    def to_file(self, path) -> None:
        """Write the coefficients to a text file (atomically: temporary file + os.replace).

        All numbers are written with 17 significant digits (``repr``), so :meth:`from_file`
        reproduces the potential bit for bit.

        Parameters
        ----------
        path : str or os.PathLike
        """
        path = Path(path)
        nR, nz = self.node_data.shape[:2]
        lines = [f"# {_FILE_TAG}",
                 f"name = {self.name}",
                 f"mass = {self.mass!r}",
                 f"Rgrid = {self.Rmap[0]!r} {self.Rmap[1]!r} {nR}",
                 f"zgrid = {self.zmap[0]!r} {self.zmap[1]!r} {nz}",
                 f"r0 = {self.r0!r}",
                 "a_l = " + " ".join(repr(float(v)) for v in self.a_l),
                 "b_l = " + " ".join(repr(float(v)) for v in self.b_l),
                 "# grids: A [kpc], beta, n; nodes x_k = A (exp(beta k) - 1)",
                 "# node data: one line per node (iR major, iz minor), d^p/du^p d^q/dv^q Phi [km^2/s^2] for "
                 "(p,q) = 00 01 02 10 11 12 20 21 22, u and v the node indices"]
        lines.extend(" ".join(repr(float(v)) for v in row) for row in self.node_data.reshape(-1, 9))
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent.resolve()))
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write("\n".join(lines) + "\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def from_file(cls, path) -> "CylSpline":
        """Read coefficients written by :meth:`to_file`.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If it is not a mocksky CylSpline coefficient file or is malformed (the message says how).
        """
        path = Path(path)
        with open(path) as fh:
            text = fh.read().splitlines()
        if not text or text[0].strip() != f"# {_FILE_TAG}":
            raise ValueError(f"{path}: not a mocksky CylSpline coefficient file (first line must be '# {_FILE_TAG}')")
        head = {}
        rows = []
        for num, ln in enumerate(text[1:], start=2):
            s = ln.strip()
            if not s or s.startswith("#"):
                continue
            if "=" in s:
                k, v = s.split("=", 1)
                head[k.strip()] = v.strip()
                continue
            try:
                rows.append([float(x) for x in s.split()])
            except ValueError as exc:
                raise ValueError(f"{path}, line {num}: not a row of numbers") from exc
        for key in ("Rgrid", "zgrid", "r0", "a_l", "b_l"):
            if key not in head:
                raise ValueError(f"{path}: missing '{key} = ...' line")
        try:
            AR, bR, nR = head["Rgrid"].split()
            Az, bz, nz = head["zgrid"].split()
            nR, nz = int(nR), int(nz)
            a_l = [float(x) for x in head["a_l"].split()]
            b_l = [float(x) for x in head["b_l"].split()]
            r0 = float(head["r0"])
            mass = float(head.get("mass", "nan"))
        except ValueError as exc:
            raise ValueError(f"{path}: malformed header ({exc})") from exc
        if any(len(r) != 9 for r in rows) or len(rows) != nR * nz:
            raise ValueError(f"{path}: expected {nR * nz} node lines of 9 numbers, got {len(rows)} lines")
        D = np.array(rows, dtype=np.float64).reshape(nR, nz, 3, 3)
        return cls(D, (float(AR), float(bR)), (float(Az), float(bz)), r0, a_l, b_l, name=head.get("name", ""),
                   mass=mass)


def _node_data(Rn, A_R, beta_R, zn, A_z, beta_z, f, fR, fz, rho_nodes):
    """Hermite node data from Phi, dPhi/dR, dPhi/dz and the density at the nodes.

    d2Phi/dR2 comes from the C^3 quintic spline along R; d2Phi/dz2 from Poisson's equation,
    Phi_zz = 4 pi G rho - Phi_RR - Phi_R / R (Phi_R / R -> Phi_RR on the axis).
    """
    xu = (beta_R * (A_R + Rn))[:, None]
    fR = fR.copy()
    fz = fz.copy()
    fR[0, :] = 0.0
    fz[:, 0] = 0.0
    fuu = S.quintic_second_derivatives(f, fR * xu, beta_R, 0)
    fRR = (fuu - fR * xu * beta_R) / xu**2
    with np.errstate(divide="ignore", invalid="ignore"):
        fR_R = np.where(Rn[:, None] > 0, fR / np.where(Rn[:, None] > 0, Rn[:, None], 1.0), fRR)
    fzz = 4 * np.pi * G * rho_nodes - fRR - fR_R
    cusp = ~np.isfinite(fzz)          # e.g. a density cusp at the origin: use the spline estimate there
    if np.any(cusp):
        xv = (beta_z * (A_z + zn))[None, :]
        fvv = S.quintic_second_derivatives(f, fz * xv, beta_z, 1)
        fzz = np.where(cusp, (fvv - fz * xv * beta_z) / xv**2, fzz)
    return S.hermite_node_data(Rn, A_R, beta_R, zn, A_z, beta_z, f, fR, fz, fRR, fzz, None)


def _fit_boundary(params, Rn, zn, r0, a_l, lmax, fit_a, ridge=1e-8):
    """Extrapolation coefficients matching the spline on the outer grid boundary.

    The extrapolation is sum_l P_l(cos theta) [a_l (r0/r)^(l+1) + b_l (r0/r)^(l+2)]. a_0 (total
    mass) is kept; the b_l, and the a_l for l >= 2 if ``fit_a``, minimise in the least-squares
    sense (with a tiny ridge term) the mismatch of Phi and of r x (normal derivative of Phi) at
    points along the grid lines R = Rmax and z = zmax.

    Returns
    -------
    a_l, b_l : numpy.ndarray, shape (lmax/2 + 1,)
    """
    Rmax, zmax = Rn[-1], zn[-1]
    zs = np.sort(np.concatenate([zn, 0.5 * (zn[1:] + zn[:-1])]))
    Rs = np.sort(np.concatenate([Rn, 0.5 * (Rn[1:] + Rn[:-1])]))[:-1]
    R = np.concatenate([np.full(len(zs), Rmax), Rs])
    z = np.concatenate([zs, np.full(len(Rs), zmax)])
    on_right = np.concatenate([np.ones(len(zs), bool), np.zeros(len(Rs), bool)])
    vals = np.array([S._interp(a, b, params) for a, b in zip(R, z)])
    r = np.hypot(R, z)
    c = z / r
    x = r0 / r
    nl = lmax // 2 + 1
    Pall = [np.ones_like(c), c]
    dPall = [np.zeros_like(c), np.ones_like(c)]
    for l in range(1, lmax):
        Pall.append(((2 * l + 1) * c * Pall[l] - l * Pall[l - 1]) / (l + 1))
        dPall.append(dPall[l - 1] + (2 * l + 1) * Pall[l])

    def term(k, extra):
        # value and r x normal derivative of P_l(c) x^(l + extra) on the boundary
        l = 2 * k
        pw = l + extra
        val = Pall[l] * x**pw
        dval_dr = -pw * val / r
        dval_dc = dPall[l] * x**pw
        dR = dval_dr * R / r - dval_dc * z * R / r**3
        dz = dval_dr * z / r + dval_dc * R * R / r**3
        return val, np.where(on_right, dR, dz) * r

    y_v = vals[:, 0].copy()
    y_d = np.where(on_right, vals[:, 1], vals[:, 2]) * r
    cols, which = [], []
    for k in range(nl):
        v, d = term(k, 1)
        if k == 0 or not fit_a:
            y_v -= a_l[k] * v
            y_d -= a_l[k] * d
        else:
            cols.append((v, d))
            which.append(("a", k))
        cols.append(term(k, 2))
        which.append(("b", k))
    A = np.vstack([np.array([cv for cv, _ in cols]).T, np.array([cd for _, cd in cols]).T])
    y = np.concatenate([y_v, y_d])
    lam = ridge * np.abs(vals[:, 0]).max()
    sol, *_ = np.linalg.lstsq(np.vstack([A, lam * np.eye(A.shape[1])]), np.concatenate([y, np.zeros(A.shape[1])]),
                              rcond=None)
    a_out = np.array(a_l, dtype=np.float64)
    b_out = np.zeros(nl)
    for (kind, k), v in zip(which, sol):
        if kind == "a":
            a_out[k] = v
        else:
            b_out[k] = v
    return a_out, b_out
