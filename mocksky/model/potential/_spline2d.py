"""Biquintic Hermite splines of axisymmetric potentials Phi(R, z) on nonuniform (R, z) grids (private).

Shared by :class:`~mocksky.model.potential.tabulated.TabulatedPotential` and
:class:`~mocksky.model.potential.cylspline.CylSpline`.

Grid
    Nodes x_k = A (exp(beta k) - 1), k = 0..n-1, so x_0 = 0, x_1 = xmin, x_{n-1} = xmax: uniform
    in the scaled coordinate u = ln(1 + x/A) / beta (Agama's "nonuniform grid" with a zero node;
    Vasiliev 2019, MNRAS 482, 1525, Sect. 2.4), linear near 0 and geometric far out. The cell of a
    point is found without a search: i = floor(u).
Interpolant
    Tensor product of 1D quintic Hermite polynomials in (u, v) (Phi and its u- and v-derivatives
    up to second order in each direction, nine numbers per node), so Phi, its gradient and its
    Hessian are continuous. Node data that the caller does not supply are derived with C^3 quintic
    splines (given f and f', the second derivatives making f''' continuous; a tridiagonal system)
    or, for a missing mixed derivative, 7-point finite differences; at x = 0 the physical symmetry
    Phi(-x) = Phi(x) fixes the end condition f'''(0) = 3 beta f''(0) in u.
Extrapolation
    Outside the grid Phi = sum_{l even} P_l(cos theta) [a_l (r0/r)^(l+1) + b_l (r0/r)^(l+2)]
    (monopole, quadrupole, ... with one extra radial term per l so that value and radial slope
    can be matched).

Everything a numba kernel needs is packed in one float64 array (layout below) so that
``spline_kernel(R, z, params)`` can be called from other compiled code.
"""
from __future__ import annotations

import numba
import numpy as np
from scipy import optimize

# --------------------------------------------------------------------------- params layout
_TAG = 20240521.0   # format tag in params[0]
_HEADER = 20
# 0 tag, 1 nu, 2 nv, 3 A_R, 4 beta_R, 5 A_z, 6 beta_z, 7 Rmax, 8 zmax, 9 ext mode (0 sphere, 1 box),
# 10 r0 (extrapolation reference radius; in sphere mode also the radius beyond which it applies),
# 11 nl (number of even multipoles), 12 offset of the cell data, 13 ln A_R, 14 1/beta_R, 15 ln A_z,
# 16 1/beta_z, 17-19 unused (0); then a_l (nl values), b_l (nl values), then for each cell (i, j)
# (C order, shape (nu-1, nv-1)) the 36 monomial coefficients C[m, n] of Phi = sum C_mn t^m s^n,
# t = u - i, s = v - j.
EXT_SPHERE = 0
EXT_BOX = 1


# --------------------------------------------------------------------------- grids
def nonuniform_grid(xmin: float, xmax: float, n: int, name: str = "grid"):
    """Nodes 0, xmin, ..., xmax growing geometrically (x_k = A (e^{beta k} - 1)).

    Parameters
    ----------
    xmin, xmax : float
        Second and last node [kpc], 0 < xmin, xmax > (n - 1) xmin.
    n : int
        Number of nodes (>= 4).
    name : str
        Label for error messages (e.g. ``"R"``).

    Returns
    -------
    nodes : numpy.ndarray, shape (n,)
    A, beta : float
        Scale and log-step of the mapping u = ln(1 + x/A) / beta (u = node index).

    Raises
    ------
    ValueError
        If the parameters do not define such a grid.
    """
    n = int(n)
    xmin, xmax = float(xmin), float(xmax)
    if n < 4:
        raise ValueError(f"{name} grid: number of nodes must be >= 4, got {n}")
    if not (np.isfinite(xmin) and xmin > 0):
        raise ValueError(f"{name} grid: {name}min must be finite and > 0, got {xmin}")
    if not (np.isfinite(xmax) and xmax > xmin * (n - 1) * (1 + 1e-9)):
        raise ValueError(f"{name} grid: need {name}max > ({name} nodes - 1) * {name}min = {xmin * (n - 1):g} "
                         f"for geometric spacing, got {name}max = {xmax}")
    target = np.log(xmax / xmin)

    def log_expm1(x):
        return x + np.log(-np.expm1(-x))

    def g(beta):
        return log_expm1(beta * (n - 1)) - log_expm1(beta) - target

    beta = optimize.brentq(g, 1e-12, target + 2.0, xtol=1e-15, rtol=1e-15, maxiter=500)
    A = xmin / np.expm1(beta)
    nodes = A * np.expm1(beta * np.arange(n))
    nodes[0] = 0.0
    nodes[1] = xmin
    nodes[-1] = xmax
    return nodes, float(A), float(beta)


# --------------------------------------------------------------------------- 1D helpers (numpy, build time)
def quintic_second_derivatives(f, d, beta, axis=0):
    """Second derivatives at the nodes of the C^3 quintic spline through values f and slopes d.

    Unit node spacing in the index coordinate u. End conditions: at node 0, the function is even
    in the physical coordinate x = A (e^{beta u} - 1), which gives f'''(0) = 3 beta f''(0); at the
    last node, not-a-knot (fourth derivative continuous at the last interior node); exact for
    quintics in u.

    Parameters
    ----------
    f, d : numpy.ndarray
        Values and first u-derivatives, same shape; the spline runs along ``axis``.
    beta : float
        Log-step of the grid mapping.
    axis : int

    Returns
    -------
    numpy.ndarray
        d2f/du2 at the nodes, shape of f.
    """
    f = np.moveaxis(np.asarray(f, dtype=np.float64), axis, 0)
    d = np.moveaxis(np.asarray(d, dtype=np.float64), axis, 0)
    n = f.shape[0]
    a = np.full(n, -1.0)
    b = np.full(n, 6.0)
    c = np.full(n, -1.0)
    rhs = np.empty_like(f)
    # node 0: -60 f0 - 36 d0 - 9 s0 + 60 f1 - 24 d1 + 3 s1 = 3 beta s0
    b[0], c[0] = 9.0 + 3.0 * beta, -3.0
    rhs[0] = 60.0 * (f[1] - f[0]) - 36.0 * d[0] - 24.0 * d[1]
    # interior: continuity of f''' (C^3)
    rhs[1:-1] = 20.0 * (f[2:] - 2.0 * f[1:-1] + f[:-2]) + 8.0 * (d[:-2] - d[2:])
    # last node: not-a-knot, the fourth derivative continuous at node n-2 (the last two intervals form
    # one quintic); that row, s_{n-1} - s_{n-3} = 15 (f_{n-3} - f_{n-1}) + 7 (d_{n-3} + d_{n-1}) + 16 d_{n-2},
    # minus the interior row of node n-2 keeps the system tridiagonal
    a[-1], b[-1] = -6.0, 2.0
    rhs[-1] = 15.0 * (f[-3] - f[-1]) + 7.0 * (d[-3] + d[-1]) + 16.0 * d[-2] - rhs[-2]
    # Thomas algorithm, vectorised over the other axes
    cp = np.empty(n)
    rp = np.empty_like(rhs)
    cp[0] = c[0] / b[0]
    rp[0] = rhs[0] / b[0]
    for i in range(1, n):
        den = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / den if i < n - 1 else 0.0
        rp[i] = (rhs[i] - a[i] * rp[i - 1]) / den
    s = np.empty_like(rhs)
    s[-1] = rp[-1]
    for i in range(n - 2, -1, -1):
        s[i] = rp[i] - cp[i] * s[i + 1]
    return np.moveaxis(s, 0, axis)


def _lagrange_derivative_weights(x0, xs):
    """Weights w_k with sum_k w_k f(xs_k) = p'(x0), p the interpolating polynomial through xs."""
    m = len(xs)
    w = np.zeros(m)
    for k in range(m):
        tot = 0.0
        for q in range(m):
            if q == k:
                continue
            prod = 1.0 / (xs[k] - xs[q])
            for l in range(m):
                if l != k and l != q:
                    prod *= (x0 - xs[l]) / (xs[k] - xs[l])
            tot += prod
        w[k] = tot
    return w


def even_derivative(values, x, axis=0, npts=7):
    """d/dx of a function even in x sampled at the nodes x (x[0] = 0), by npts-point finite differences.

    The stencil uses mirrored nodes -x_k near 0 and is one-sided near the last node.

    Returns
    -------
    deriv : numpy.ndarray
        Derivative at the nodes (exactly 0 at x = 0), shape of values.
    shift : numpy.ndarray, shape (len(x),)
        How far each stencil is shifted from centred (0 = centred), a measure of its accuracy.
    """
    v = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n = len(x)
    ext_x = np.concatenate([-x[:0:-1], x])      # length 2n-1, index n-1 is x = 0
    idx = np.concatenate([np.arange(n - 1, 0, -1), np.arange(n)])
    out = np.zeros_like(v)
    shift = np.zeros(n)
    half = npts // 2
    for i in range(1, n):
        e = i + n - 1
        lo = min(max(e - half, 0), len(ext_x) - npts)
        shift[i] = abs(lo - (e - half))
        sel = slice(lo, lo + npts)
        w = _lagrange_derivative_weights(x[i], ext_x[sel])
        out[i] = np.tensordot(w, v[idx[sel]], axes=(0, 0))
    return np.moveaxis(out, 0, axis), shift


# --------------------------------------------------------------------------- node data
def hermite_node_data(Rn, A_R, beta_R, zn, A_z, beta_z, f, fR, fz, fRR=None, fzz=None, fRz=None):
    """Nodal derivatives in index coordinates for the biquintic Hermite spline.

    Parameters
    ----------
    Rn, zn : numpy.ndarray, shapes (nu,), (nv,)
        Grid nodes (from :func:`nonuniform_grid`) with their mappings (A, beta).
    f, fR, fz : numpy.ndarray, shape (nu, nv)
        Phi and its physical first derivatives at the nodes.
    fRR, fzz, fRz : numpy.ndarray or None, shape (nu, nv)
        Physical second derivatives if known; otherwise derived from the first derivatives.

    Returns
    -------
    numpy.ndarray, shape (nu, nv, 3, 3)
        D[i, j, p, q] = d^p/du^p d^q/dv^q Phi at node (i, j).
    """
    xu = (beta_R * (A_R + Rn))[:, None]          # dR/du
    xv = (beta_z * (A_z + zn))[None, :]          # dz/dv
    f = np.asarray(f, dtype=np.float64)
    fR = np.array(fR, dtype=np.float64)
    fz = np.array(fz, dtype=np.float64)
    fR[0, :] = 0.0                               # symmetry: axis and midplane
    fz[:, 0] = 0.0
    fu = fR * xu
    fv = fz * xv
    fuu = fRR * xu**2 + fu * beta_R if fRR is not None else quintic_second_derivatives(f, fu, beta_R, 0)
    fvv = fzz * xv**2 + fv * beta_z if fzz is not None else quintic_second_derivatives(f, fv, beta_z, 1)
    if fRz is not None:
        fuv = np.asarray(fRz, dtype=np.float64) * xu * xv
    else:
        # d/dz (dPhi/dR) and d/dR (dPhi/dz), weighted towards the better-centred stencil near the edges
        dz_fR, sz = even_derivative(fR, zn, 1)
        dR_fz, sR = even_derivative(fz, Rn, 0)
        wz = (1.0 / (1.0 + sz**2))[None, :]
        wR = (1.0 / (1.0 + sR**2))[:, None]
        fuv = (wz * dz_fR + wR * dR_fz) / (wz + wR) * xu * xv
    fuv = np.array(fuv)
    fuv[0, :] = 0.0
    fuv[:, 0] = 0.0
    fuuv = quintic_second_derivatives(fv, fuv, beta_R, 0)
    fuvv = quintic_second_derivatives(fu, fuv, beta_z, 1)
    fuuvv = 0.5 * (quintic_second_derivatives(fuu, fuuv, beta_z, 1) + quintic_second_derivatives(fvv, fuvv, beta_R, 0))
    D = np.empty(f.shape + (3, 3))
    D[..., 0, 0], D[..., 0, 1], D[..., 0, 2] = f, fv, fvv
    D[..., 1, 0], D[..., 1, 1], D[..., 1, 2] = fu, fuv, fuvv
    D[..., 2, 0], D[..., 2, 1], D[..., 2, 2] = fuu, fuuv, fuuvv
    return D


# monomial coefficients of the quintic Hermite basis (rows h0, h1, h2, g0, g1, g2; columns t^0..t^5)
_HERMITE_MONOMIALS = np.array([
    [1.0, 0.0, 0.0, -10.0, 15.0, -6.0],
    [0.0, 1.0, 0.0, -6.0, 8.0, -3.0],
    [0.0, 0.0, 0.5, -1.5, 1.5, -0.5],
    [0.0, 0.0, 0.0, 10.0, -15.0, 6.0],
    [0.0, 0.0, 0.0, -4.0, 7.0, -3.0],
    [0.0, 0.0, 0.0, 0.5, -1.0, 0.5],
])


def cell_coefficients(D):
    """Per-cell monomial coefficients C[i, j, m, n] of Phi = sum_mn C_mn t^m s^n (t, s in [0, 1]).

    Parameters
    ----------
    D : numpy.ndarray, shape (nu, nv, 3, 3)
        Node data from :func:`hermite_node_data`.

    Returns
    -------
    numpy.ndarray, shape (nu-1, nv-1, 6, 6)
    """
    nu, nv = D.shape[:2]
    E = np.empty((nu - 1, nv - 1, 6, 6))
    for a in range(2):
        for b in range(2):
            E[:, :, 3 * a:3 * a + 3, 3 * b:3 * b + 3] = D[a:nu - 1 + a, b:nv - 1 + b]
    M = _HERMITE_MONOMIALS
    return M.T @ E @ M


def pack(D, A_R, beta_R, Rmax, A_z, beta_z, zmax, ext_mode, r0, a_l, b_l):
    """Pack a spline (node data D, shape (nu, nv, 3, 3)) and its extrapolation into one float64 array.

    Layout: see the module source (header, multipole coefficients, per-cell monomial coefficients).
    """
    nu, nv = D.shape[:2]
    a_l = np.asarray(a_l, dtype=np.float64)
    b_l = np.asarray(b_l, dtype=np.float64)
    nl = len(a_l)
    off = _HEADER + 2 * nl
    C = cell_coefficients(D)
    p = np.zeros(off + C.size)
    p[:17] = [_TAG, nu, nv, A_R, beta_R, A_z, beta_z, Rmax, zmax, ext_mode, r0, nl, off,
              np.log(A_R), 1.0 / beta_R, np.log(A_z), 1.0 / beta_z]
    p[_HEADER:_HEADER + nl] = a_l
    p[_HEADER + nl:off] = b_l
    p[off:] = C.ravel()
    return p


# --------------------------------------------------------------------------- multipole extrapolation
def legendre_even(lmax, c):
    """P_l(c) for l = 0, 2, ..., lmax (even), shape (lmax//2 + 1,) + c.shape."""
    c = np.asarray(c, dtype=np.float64)
    P = [np.ones_like(c), c]
    for l in range(1, lmax):
        P.append(((2 * l + 1) * c * P[l] - l * P[l - 1]) / (l + 1))
    return np.array(P[0:lmax + 1:2])


def match_coefficients(phi_l, dphi_l, r0):
    """a_l, b_l of W_l(r) = a_l (r0/r)^(l+1) + b_l (r0/r)^(l+2) with W_l(r0) = phi_l, W_l'(r0) = dphi_l."""
    phi_l = np.asarray(phi_l, dtype=np.float64)
    dphi_l = np.asarray(dphi_l, dtype=np.float64)
    ls = 2 * np.arange(len(phi_l))
    b = -r0 * dphi_l - (ls + 1) * phi_l
    return phi_l - b, b


# --------------------------------------------------------------------------- numba evaluation
@numba.njit(cache=True, nogil=True, fastmath=False)
def _extrap(R, z, p):
    """Multipole extrapolation (z >= 0): Phi, dPhi/dR, dPhi/dz."""
    nl = int(p[11])
    r0 = p[10]
    r2 = R * R + z * z
    r = np.sqrt(r2)
    c = z / r
    x = r0 / r
    # Legendre recurrences: P_l and P_l' for l up to 2(nl-1)
    Pm, P = 0.0, 1.0         # P_{l-1}, P_l at l = 0 (P_{-1} enters with weight 0)
    dPm, dP = 0.0, 0.0
    phi = 0.0
    phir = 0.0
    phic = 0.0
    xl1 = x                  # x^(l+1) for l = 0
    # l = 0 term
    a = p[_HEADER]
    b = p[_HEADER + nl]
    phi += a * xl1 + b * xl1 * x
    phir -= (a * xl1 + 2.0 * b * xl1 * x) / r
    l = 0
    for k in range(1, nl):
        # advance P from l to l+2 (two recurrence steps)
        for _ in range(2):
            Pn = ((2 * l + 1) * c * P - l * Pm) / (l + 1)
            dPn = dPm + (2 * l + 1) * P
            Pm, P = P, Pn
            dPm, dP = dP, dPn
            l += 1
        xl1 *= x * x
        a = p[_HEADER + k]
        b = p[_HEADER + nl + k]
        W = a * xl1 + b * xl1 * x
        dW = -(a * (l + 1) * xl1 + b * (l + 2) * xl1 * x) / r
        phi += W * P
        phir += dW * P
        phic += W * dP
    r3 = r2 * r
    return phi, phir * R / r - phic * z * R / r3, phir * z / r + phic * R * R / r3


@numba.njit(cache=True, nogil=True, fastmath=False)
def _locate(x, A, lnA, inv_beta, n):
    # cell index and local coordinate of x >= 0 on the grid x_k = A (e^{beta k} - 1); du/dx
    xa = x + A
    u = (np.log(xa) - lnA) * inv_beta
    i = int(u)
    if i > n - 2:
        i = n - 2
    return i, u - i, inv_beta / xa


@numba.njit(cache=True, nogil=True, fastmath=False)
def _row(p, k, s):
    # value and s-derivative of sum_n p[k + n] s^n (Horner)
    c5 = p[k + 5]
    c4 = p[k + 4]
    c3 = p[k + 3]
    c2 = p[k + 2]
    c1 = p[k + 1]
    v = ((((c5 * s + c4) * s + c3) * s + c2) * s + c1) * s + p[k]
    d = (((5.0 * c5 * s + 4.0 * c4) * s + 3.0 * c3) * s + 2.0 * c2) * s + c1
    return v, d


@numba.njit(cache=True, nogil=True, fastmath=False)
def _interp(R, z, p):
    """Spline Phi, dPhi/dR, dPhi/dz inside the grid (R, z >= 0)."""
    nu = int(p[1])
    nv = int(p[2])
    i, t, dudR = _locate(R, p[3], p[13], p[14], nu)
    j, s, dvdz = _locate(z, p[5], p[15], p[16], nv)
    base = int(p[12]) + (i * (nv - 1) + j) * 36
    f = 0.0
    fu = 0.0
    fv = 0.0
    for m in range(5, -1, -1):
        v, d = _row(p, base + 6 * m, s)
        fu = fu * t + f
        f = f * t + v
        fv = fv * t + d
    return f, fu * dudR, fv * dvdz


@numba.njit(cache=True, nogil=True, fastmath=False)
def _interp_hess(R, z, p):
    """Spline Phi_RR, Phi_zz, Phi_Rz inside the grid (R, z >= 0)."""
    nu = int(p[1])
    nv = int(p[2])
    i, t, dudR = _locate(R, p[3], p[13], p[14], nu)
    j, s, dvdz = _locate(z, p[5], p[15], p[16], nv)
    base = int(p[12]) + (i * (nv - 1) + j) * 36
    f = 0.0
    fu = 0.0
    huu = 0.0      # fuu / 2
    fv = 0.0
    fuv = 0.0
    fvv = 0.0
    for m in range(5, -1, -1):
        k = base + 6 * m
        v, d = _row(p, k, s)
        dd = ((20.0 * p[k + 5] * s + 12.0 * p[k + 4]) * s + 6.0 * p[k + 3]) * s + 2.0 * p[k + 2]
        huu = huu * t + fu
        fu = fu * t + f
        f = f * t + v
        fuv = fuv * t + fv
        fv = fv * t + d
        fvv = fvv * t + dd
    fuu = 2.0 * huu
    # d2u/dR2 = -beta_R (du/dR)^2
    return (fuu * dudR * dudR - fu * p[4] * dudR * dudR,
            fvv * dvdz * dvdz - fv * p[6] * dvdz * dvdz,
            fuv * dudR * dvdz)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _outside(R, z, p):
    if p[9] == 0.0:
        return R * R + z * z > p[10] * p[10]
    return R > p[7] or z > p[8]


@numba.njit(cache=True, nogil=True, fastmath=False)
def spline_kernel(R, z, p):
    """Phi, dPhi/dR, dPhi/dz of a packed spline potential at one point (any R, z; R taken as |R|).

    Parameters
    ----------
    R, z : float
        Cylindrical coordinates [kpc].
    p : numpy.ndarray
        Parameters from :func:`pack`.

    Returns
    -------
    (float, float, float)
        Phi [km^2/s^2], dPhi/dR, dPhi/dz [km^2/s^2/kpc]; NaN for non-finite input.
    """
    R = abs(R)
    az = abs(z)
    if not (R < np.inf and az < np.inf):
        return np.nan, np.nan, np.nan
    if _outside(R, az, p):
        f, fR, fz = _extrap(R, az, p)
    else:
        f, fR, fz = _interp(R, az, p)
    if z < 0:
        fz = -fz
    return f, fR, fz


@numba.njit(cache=True, nogil=True, fastmath=False)
def spline_hess(R, z, p):
    """Phi_RR, Phi_zz, Phi_Rz of a packed spline potential at one point (R taken as |R|).

    Outside the grid the multipole extrapolation is differentiated by central differences.
    """
    R = abs(R)
    az = abs(z)
    if not (R < np.inf and az < np.inf):
        return np.nan, np.nan, np.nan
    if _outside(R, az, p):
        h = 1e-5 * np.sqrt(R * R + az * az)
        _, gRp, gzRp = _extrap(R + h, az, p)
        _, gRm, gzRm = _extrap(abs(R - h), az, p)
        if R < h:
            gRm = -gRm       # dPhi/dR is odd in R
        _, gRzp, gzp = _extrap(R, az + h, p)
        _, gRzm, gzm = _extrap(R, az - h, p)
        HRR = (gRp - gRm) / (2 * h)
        Hzz = (gzp - gzm) / (2 * h)
        HRz = 0.5 * ((gzRp - gzRm) / (2 * h) + (gRzp - gRzm) / (2 * h))
        if R < h:
            HRz = (gRzp - gRzm) / (2 * h)
    else:
        HRR, Hzz, HRz = _interp_hess(R, az, p)
    if z < 0:
        HRz = -HRz
    return HRR, Hzz, HRz


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def eval_many(R, z, p, hess):
    """Vectorised :func:`spline_kernel` (hess=False) or :func:`spline_hess` (hess=True) over 1D arrays.

    Returns
    -------
    numpy.ndarray, shape (3, n)
    """
    n = R.shape[0]
    out = np.empty((3, n))
    for k in numba.prange(n):
        if hess:
            a, b, c = spline_hess(R[k], z[k], p)
        else:
            a, b, c = spline_kernel(R[k], z[k], p)
        out[0, k] = a
        out[1, k] = b
        out[2, k] = c
    return out


def evaluate(R, z, p, hess=False):
    """Broadcast R, z, evaluate with :func:`eval_many`; returns three arrays of the broadcast shape."""
    R = np.asarray(R, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    Rb, zb = np.broadcast_arrays(R, z)
    shape = Rb.shape
    out = eval_many(np.ascontiguousarray(Rb.ravel()), np.ascontiguousarray(zb.ravel()), p, hess)
    return out[0].reshape(shape), out[1].reshape(shape), out[2].reshape(shape)
