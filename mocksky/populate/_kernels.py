"""Numba kernels of :mod:`mocksky.populate`: IMF, age and chemistry draws, isochrone interpolation.

Isochrone kernels take the grid tuple ``G`` (:meth:`.isochrones.IsochroneGrid.kernel_grid`):
mhg (nz,) [M/H] nodes, lag (na,) log10 age nodes, log_b (nz, na, NB) log10 initial mass at the
start of each EEP phase and at the end of the track (NB = phases + 1; phases 0 PMS + MS, 1 MS hook,
2 SGB, 3 RGB, 4-6 CHeB, 7 EAGB, 8 TP-AGB, carrying the PARSEC labels ``PHASE_LABEL``), log_pms
(nz, na) log10 initial mass at the end of the PMS (labelling only), u_nodes (K,) EEP coordinates of
the nodes, offsets (NB,) first node of each phase (last = K), values (nz, na, K, 10) float32 node
values (Q_MASS, Q_LOGTE, Q_LOGL, Q_G, Q_BP, Q_RP, Q_J, Q_H, Q_KS and Q_U = the node's phase-normalised
mass coordinate u), runmin (nz, na, K, 8) running minimum along the nodes of the magnitudes (and of log g, column 7) in the
bands ``BANDS``, ulut (nz, na, 9, N_ULUT) the node interval of each corner at uniform bins of u,
zlut / alut the cell of uniform bins of [M/H] / log age (bins narrower than every cell) and
par = (logg_const, mh0, 1/bin width, logage0, 1/bin width).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

NJ = dict(cache=True, nogil=True, fastmath=False)
NJP = dict(cache=True, nogil=True, fastmath=False, parallel=True)

Q_MASS, Q_LOGTE, Q_LOGL, Q_G, Q_BP, Q_RP, Q_J, Q_H, Q_KS, Q_U = range(10)
#: Band order of magnitude outputs / runmin: G, BP, RP, GRVS, J, H, Ks.
BANDS = ("G", "BP", "RP", "GRVS", "J", "H", "KS")
N_LOG_PHASES = 1  # phase 0 (PMS + MS) uses log10(m) as the phase coordinate

#: PARSEC label of each EEP phase.
PHASE_LABEL = np.array([1, 1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int64)

# remnant codes (phase values >= 10)
WD, NS, BH = 10, 11, 12
WD_MAX, NS_MAX = 8.5, 40.0


# =============================================================================== generic
@numba.njit(**NJ)
def bisect_right(a, x):
    """Largest i with a[i] <= x (a non-decreasing); -1 if x < a[0]."""
    lo, hi = -1, len(a)
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if a[mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


# =============================================================================== IMF
@numba.njit(**NJ)
def _seg_num(c, a, m0, m1):
    if abs(a - 1.0) < 1e-12:
        return c * math.log(m1 / m0)
    return c * (m1 ** (1.0 - a) - m0 ** (1.0 - a)) / (1.0 - a)


@numba.njit(**NJ)
def _seg_mass(c, a, m0, m1):
    if abs(a - 2.0) < 1e-12:
        return c * math.log(m1 / m0)
    return c * (m1 ** (2.0 - a) - m0 ** (2.0 - a)) / (2.0 - a)


@numba.njit(**NJ)
def imf_pdf(m, edges, alpha, coef, cumn, cumm):
    ns = len(alpha)
    if m < edges[0] or m > edges[ns]:
        return 0.0
    k = bisect_right(edges, m)
    if k > ns - 1:
        k = ns - 1
    return coef[k] * m ** (-alpha[k])


@numba.njit(**NJ)
def imf_cumnum(m, edges, alpha, coef, cumn, cumm):
    ns = len(alpha)
    if m <= edges[0]:
        return 0.0
    if m >= edges[ns]:
        return cumn[ns]
    k = bisect_right(edges, m)
    return cumn[k] + _seg_num(coef[k], alpha[k], edges[k], m)


@numba.njit(**NJ)
def imf_cummass(m, edges, alpha, coef, cumn, cumm):
    ns = len(alpha)
    if m <= edges[0]:
        return 0.0
    if m >= edges[ns]:
        return cumm[ns]
    k = bisect_right(edges, m)
    return cumm[k] + _seg_mass(coef[k], alpha[k], edges[k], m)


@numba.njit(**NJ)
def imf_ppf_n(t, edges, alpha, coef, cumn, cumm):
    """Mass whose cumulative number (per unit initial mass) is t."""
    ns = len(alpha)
    k = bisect_right(cumn, t)
    if k < 0:
        k = 0
    if k > ns - 1:
        k = ns - 1
    r = t - cumn[k]
    a, c, e = alpha[k], coef[k], edges[k]
    if abs(a - 1.0) < 1e-12:
        m = e * math.exp(r / c)
    else:
        base = e ** (1.0 - a) + r * (1.0 - a) / c
        if base <= 0.0:
            m = edges[k + 1]
        else:
            m = base ** (1.0 / (1.0 - a))
    if m < edges[k]:
        m = edges[k]
    if m > edges[k + 1]:
        m = edges[k + 1]
    return m


@numba.njit(**NJP)
def imf_ppf_vec(u, lo, hi, edges, alpha, coef, cumn, cumm):
    n = len(u)
    out = np.empty(n)
    for i in prange(n):
        n0 = imf_cumnum(lo[i], edges, alpha, coef, cumn, cumm)
        n1 = imf_cumnum(hi[i], edges, alpha, coef, cumn, cumm)
        m = imf_ppf_n(n0 + u[i] * (n1 - n0), edges, alpha, coef, cumn, cumm)
        out[i] = min(max(m, lo[i]), hi[i])
    return out


@numba.njit(**NJP)
def imf_cumnum_vec(m, edges, alpha, coef, cumn, cumm):
    out = np.empty(m.size)
    for i in prange(m.size):
        out[i] = imf_cumnum(m[i], edges, alpha, coef, cumn, cumm)
    return out


@numba.njit(**NJP)
def imf_cummass_vec(m, edges, alpha, coef, cumn, cumm):
    out = np.empty(m.size)
    for i in prange(m.size):
        out[i] = imf_cummass(m[i], edges, alpha, coef, cumn, cumm)
    return out


# =============================================================================== remnants
@numba.njit(**NJ)
def remnant(m):
    """(remnant mass [Msun], code) of a star of initial mass m past the end of its track.

    White dwarfs (m < 8.5): Kalirai et al. 2008, ApJ 676, 594: M_f = 0.109 m + 0.394;
    neutron stars (8.5 <= m < 40): 1.4 Msun; black holes (m >= 40): 0.5 m (Renzini & Ciotti 1993,
    ApJ 416, L49, as adopted by Maraston 1998, MNRAS 300, 872).
    """
    if m < WD_MAX:
        return 0.109 * m + 0.394, WD
    if m < NS_MAX:
        return 1.4, NS
    return 0.5 * m, BH


@numba.njit(**NJ)
def remnant_mass_integral(a, b, edges, alpha, coef, cumn, cumm):
    """int_a^b m_rem(m) xi(m) dm (exact: the IFMR is linear on each piece)."""
    if b <= a:
        return 0.0
    tot = 0.0
    cuts = np.array([a, min(max(WD_MAX, a), b), min(max(NS_MAX, a), b), b])
    ps = (0.394, 1.4, 0.0)
    qs = (0.109, 0.0, 0.5)
    ns = len(alpha)
    for piece in range(3):
        lo, hi = cuts[piece], cuts[piece + 1]
        if hi <= lo:
            continue
        for k in range(ns):
            s0, s1 = max(lo, edges[k]), min(hi, edges[k + 1])
            if s1 <= s0:
                continue
            tot += ps[piece] * _seg_num(coef[k], alpha[k], s0, s1) + qs[piece] * _seg_mass(coef[k], alpha[k], s0, s1)
    return tot


# =============================================================================== age distributions
@numba.njit(**NJP)
def age_ppf_vec(u, grid, cdf):
    """Ages [Gyr] with cumulative probability u for a piecewise-constant density on grid cells."""
    n = len(u)
    out = np.empty(n)
    for i in prange(n):
        k = bisect_right(cdf, u[i])
        if k < 0:
            k = 0
        if k > len(grid) - 2:
            k = len(grid) - 2
        d = cdf[k + 1] - cdf[k]
        t = (u[i] - cdf[k]) / d if d > 0 else 0.0
        out[i] = grid[k] + min(max(t, 0.0), 1.0) * (grid[k + 1] - grid[k])
    return out


# =============================================================================== chemistry
@numba.njit(**NJ)
def salaris_mh(feh, afe):
    """[M/H] = [Fe/H] + log10(0.638 * 10^[a/Fe] + 0.362) (Salaris, Chieffi & Straniero 1993, ApJ 414, 580)."""
    return feh + math.log10(0.638 * 10.0 ** afe + 0.362)


@numba.njit(**NJP)
def chem_bv23(jz, jphi, n1, n2, u, pa, pb, jz0, dz, two_pop, feh, afe, mh, flag):
    """BV23 chemistry (seed eqs. 18, 19, 21).

    p = (x_sun, dx/dJphi, Jphi_sun, y, sigma_x, sigma_y, cos theta, sin theta); ``pa`` is the
    component's own Gaussian (the high-alpha one for the thick disc), ``pb`` the alternative used with
    probability 1 - P(Jz) when ``two_pop`` (the old disc's, for the thick disc's normal-alpha part).
    x = c [Fe/H] - s [a/Fe], y = s [Fe/H] + c [a/Fe]  =>  [Fe/H] = c x + s y, [a/Fe] = -s x + c y.
    """
    n = len(jz)
    for i in prange(n):
        use_a = True
        if two_pop:
            P = 0.5 * (1.0 + math.tanh((jz[i] - jz0) / dz))
            use_a = u[i] < P
        p = pa if use_a else pb
        x = p[0] + p[1] * (jphi[i] - p[2]) + p[4] * n1[i]
        y = p[3] + p[5] * n2[i]
        c, s = p[6], p[7]
        f = c * x + s * y
        a = -s * x + c * y
        feh[i] = f
        afe[i] = a
        mh[i] = salaris_mh(f, a)
        flag[i] = use_a and two_pop


@numba.njit(**NJP)
def chem_bv24(jr, jz, jphi, n1, n2, p, feh, afe, mh):
    """BV24 chemistry (dynamics-spec.md): centre linear in actions, rotated Gaussian.

    p = (FeH_bar, MgFe_bar, sigma_x, sigma_y, cos theta, sin theta, dF/dJr, dF/dJz, dF/dJphi,
    dM/dJr, dM/dJz, dM/dJphi, Jphi_sun); [Fe/H] = F0 + x c - y s, [Mg/Fe] = M0 + x s + y c.
    """
    n = len(jz)
    for i in prange(n):
        dphi = jphi[i] - p[12]
        f0 = p[0] + p[6] * jr[i] + p[7] * jz[i] + p[8] * dphi
        m0 = p[1] + p[9] * jr[i] + p[10] * jz[i] + p[11] * dphi
        x = p[2] * n1[i]
        y = p[3] * n2[i]
        f = f0 + x * p[4] - y * p[5]
        a = m0 + x * p[5] + y * p[4]
        feh[i] = f
        afe[i] = a
        mh[i] = salaris_mh(f, a)


# =============================================================================== isochrones
# The grid tuple G (see IsochroneGrid.kernel_grid):
# G = (mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par), unpacked once per
# kernel (tuple indexing inside loops is slow); par = (logg_const, mh0, 1/dmh_lut, logage0, 1/dlogage_lut).
N_ULUT = 256


@numba.njit(**NJ)
def _loc_lut(grid, lut, x0, inv, x):
    """Cell i and weight w of x on a grid (clamped) from a look-up table of uniform bins narrower than
    every cell (branch-free: at most one step from the bin's cell)."""
    n = len(grid)
    j = int((x - x0) * inv)
    j = min(max(j, 0), len(lut) - 1)
    i = lut[j]
    if grid[i + 1] <= x:
        i += 1
    i = min(i, n - 2)
    w = (x - grid[i]) / (grid[i + 1] - grid[i])
    return i, min(max(w, 0.0), 1.0)


@numba.njit(**NJ)
def _corners(logage, mh, mhg, lag, zlut, alut, par):
    iz, wz = _loc_lut(mhg, zlut, par[1], par[2], mh)
    ia, wa = _loc_lut(lag, alut, par[3], par[4], logage)
    return iz, ia, (1 - wz) * (1 - wa), (1 - wz) * wa, wz * (1 - wa), wz * wa


@numba.njit(**NJ)
def _lb(log_b, iz, ia, w00, w01, w10, w11, s):
    return (w00 * log_b[iz, ia, s] + w01 * log_b[iz, ia + 1, s] + w10 * log_b[iz + 1, ia, s]
            + w11 * log_b[iz + 1, ia + 1, s])


@numba.njit(**NJ)
def _val(values, iz, ia, w00, w01, w10, w11, k, t, q):
    v0 = (w00 * values[iz, ia, k, q] + w01 * values[iz, ia + 1, k, q] + w10 * values[iz + 1, ia, k, q]
          + w11 * values[iz + 1, ia + 1, k, q])
    v1 = (w00 * values[iz, ia, k + 1, q] + w01 * values[iz, ia + 1, k + 1, q] + w10 * values[iz + 1, ia, k + 1, q]
          + w11 * values[iz + 1, ia + 1, k + 1, q])
    return v0 + t * (v1 - v0)


@numba.njit(**NJ)
def _uint(values, iz, ia, w00, w01, w10, w11, k):
    """Interpolated mass coordinate u of node k."""
    return (w00 * values[iz, ia, k, Q_U] + w01 * values[iz, ia + 1, k, Q_U] + w10 * values[iz + 1, ia, k, Q_U]
            + w11 * values[iz + 1, ia + 1, k, Q_U])


@numba.njit(**NJ)
def _mass_at(lbs, lbn, s, u):
    if s < N_LOG_PHASES:
        return 10.0 ** (lbs + u * (lbn - lbs))
    b0 = 10.0 ** lbs
    return b0 + u * (10.0 ** lbn - b0)


@numba.njit(**NJ)
def _node(u_nodes, offsets, s, u):
    """Global node index k and fraction t of EEP coordinate u in phase s."""
    k0 = offsets[s]
    k1 = offsets[s + 1] - 1
    if u <= 0.0:
        return k0, 0.0
    if u >= 1.0:
        return k1 - 1, 1.0
    lo, hi = k0, k1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if u_nodes[mid] <= u:
            lo = mid
        else:
            hi = mid
    return lo, (u - u_nodes[lo]) / (u_nodes[lo + 1] - u_nodes[lo])


@numba.njit(**NJ)
def grvs_from_g_rp(g, rp):
    """G_RVS from G and G_RP: Sartoretti et al. 2023, A&A 674, A6, eqs. (9)-(10) (x = G - G_RP clamped
    to their range [-0.15, 1.7])."""
    x = g - rp
    if x < -0.15:
        x = -0.15
    if x > 1.7:
        x = 1.7
    if x <= 1.2:
        d = -0.0397 - 0.2852 * x - 0.0330 * x * x - 0.0867 * x * x * x
    else:
        d = -4.0618 + 10.0187 * x - 9.0532 * x * x + 2.6089 * x * x * x
    return rp + d


@numba.njit(**NJ)
def _fill(out, i, values, iz, ia, w00, w01, w10, w11, k, t, logg_const):
    mc = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_MASS)
    lt = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_LOGTE)
    ll = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_LOGL)
    g = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_G)
    rp = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_RP)
    out[i, 0] = mc
    out[i, 1] = 10.0 ** lt
    out[i, 2] = math.log10(mc) + 4.0 * lt - ll + logg_const
    out[i, 3] = ll
    out[i, 4] = g
    out[i, 5] = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_BP)
    out[i, 6] = rp
    out[i, 7] = grvs_from_g_rp(g, rp)
    out[i, 8] = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_J)
    out[i, 9] = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_H)
    out[i, 10] = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_KS)


@numba.njit(**NJ)
def eval_one(logage, mh, m, mhg, lag, log_b, log_pms, offsets, values, ulut, zlut, alut, par, out, i):
    """Evaluate one star into row i of out (N, 12): m_cur, teff, logg, logl, G, BP, RP, GRVS, J, H, Ks, phase.

    The phase is the PARSEC label of the EEP phase (stars of phase 0 below the interpolated end of
    the PMS get label 0). Remnants: m_cur = remnant mass, phase = remnant code, all other entries NaN.
    Written as one body (the hot path: about 2x faster than with helper calls).
    """
    nz, na = len(mhg), len(lag)
    nph = log_b.shape[2] - 1
    # ---- corners (look-up tables, branch-free)
    j = min(max(int((mh - par[1]) * par[2]), 0), len(zlut) - 1)
    iz = zlut[j]
    if mhg[iz + 1] <= mh:
        iz += 1
    iz = min(iz, nz - 2)
    wz = min(max((mh - mhg[iz]) / (mhg[iz + 1] - mhg[iz]), 0.0), 1.0)
    j = min(max(int((logage - par[3]) * par[4]), 0), len(alut) - 1)
    ia = alut[j]
    if lag[ia + 1] <= logage:
        ia += 1
    ia = min(ia, na - 2)
    wa = min(max((logage - lag[ia]) / (lag[ia + 1] - lag[ia]), 0.0), 1.0)
    w00 = (1.0 - wz) * (1.0 - wa)
    w01 = (1.0 - wz) * wa
    w10 = wz * (1.0 - wa)
    w11 = wz * wa
    # ---- phase
    lend = (w00 * log_b[iz, ia, nph] + w01 * log_b[iz, ia + 1, nph] + w10 * log_b[iz + 1, ia, nph]
            + w11 * log_b[iz + 1, ia + 1, nph])
    lm = math.log10(m)
    if lm >= lend:
        mr, code = remnant(m)
        out[i, 0] = mr
        for q in range(1, 11):
            out[i, q] = np.nan
        out[i, 11] = code
        return
    s = 0
    lbs = (w00 * log_b[iz, ia, 0] + w01 * log_b[iz, ia + 1, 0] + w10 * log_b[iz + 1, ia, 0]
           + w11 * log_b[iz + 1, ia + 1, 0])
    while True:
        if s == nph - 1:
            lbn = lend
            break
        lbn = (w00 * log_b[iz, ia, s + 1] + w01 * log_b[iz, ia + 1, s + 1] + w10 * log_b[iz + 1, ia, s + 1]
               + w11 * log_b[iz + 1, ia + 1, s + 1])
        if lm < lbn:
            break
        lbs = lbn
        s += 1
    if lbn <= lbs:
        u = 0.0
    elif s < N_LOG_PHASES:
        u = (lm - lbs) / (lbn - lbs)
    else:
        b0 = 10.0 ** lbs
        u = (m - b0) / (10.0 ** lbn - b0)
    u = min(max(u, 0.0), 1.0)
    # ---- node interval: corner look-up, then walk on the interpolated u of the nodes
    k0 = offsets[s]
    klast = offsets[s + 1] - 2
    nu = ulut.shape[3]
    k = min(max(ulut[iz, ia, s, min(int(u * nu), nu - 1)], k0), klast)
    while k < klast:
        un = (w00 * values[iz, ia, k + 1, Q_U] + w01 * values[iz, ia + 1, k + 1, Q_U]
              + w10 * values[iz + 1, ia, k + 1, Q_U] + w11 * values[iz + 1, ia + 1, k + 1, Q_U])
        if un > u:
            break
        k += 1
    ua = (w00 * values[iz, ia, k, Q_U] + w01 * values[iz, ia + 1, k, Q_U] + w10 * values[iz + 1, ia, k, Q_U]
          + w11 * values[iz + 1, ia + 1, k, Q_U])
    while k > k0 and ua > u:
        k -= 1
        ua = (w00 * values[iz, ia, k, Q_U] + w01 * values[iz, ia + 1, k, Q_U] + w10 * values[iz + 1, ia, k, Q_U]
              + w11 * values[iz + 1, ia + 1, k, Q_U])
    ub = (w00 * values[iz, ia, k + 1, Q_U] + w01 * values[iz, ia + 1, k + 1, Q_U]
          + w10 * values[iz + 1, ia, k + 1, Q_U] + w11 * values[iz + 1, ia + 1, k + 1, Q_U])
    t = min(max((u - ua) / (ub - ua), 0.0), 1.0) if ub > ua else 0.0
    # ---- values: out[i, 0..8] temporarily hold MASS, LOGTE, LOGL, G, BP, RP, J, H, KS
    a0, a1, a2, a3 = w00 * (1.0 - t), w01 * (1.0 - t), w10 * (1.0 - t), w11 * (1.0 - t)
    c0, c1, c2, c3 = w00 * t, w01 * t, w10 * t, w11 * t
    for q in range(9):
        out[i, q] = (a0 * values[iz, ia, k, q] + c0 * values[iz, ia, k + 1, q]
                     + a1 * values[iz, ia + 1, k, q] + c1 * values[iz, ia + 1, k + 1, q]
                     + a2 * values[iz + 1, ia, k, q] + c2 * values[iz + 1, ia, k + 1, q]
                     + a3 * values[iz + 1, ia + 1, k, q] + c3 * values[iz + 1, ia + 1, k + 1, q])
    mc, lt, ll = out[i, 0], out[i, 1], out[i, 2]
    g, bp, rp, mj, mhh, mks = out[i, 3], out[i, 4], out[i, 5], out[i, 6], out[i, 7], out[i, 8]
    if mc > m:
        mc = m
    out[i, 0] = mc
    out[i, 1] = 10.0 ** lt
    out[i, 2] = math.log10(mc) + 4.0 * lt - ll + par[0]
    out[i, 3] = ll
    out[i, 4] = g
    out[i, 5] = bp
    out[i, 6] = rp
    out[i, 7] = grvs_from_g_rp(g, rp)
    out[i, 8] = mj
    out[i, 9] = mhh
    out[i, 10] = mks
    lab = PHASE_LABEL[s]
    if s == 0:
        lpi = (w00 * log_pms[iz, ia] + w01 * log_pms[iz, ia + 1] + w10 * log_pms[iz + 1, ia]
               + w11 * log_pms[iz + 1, ia + 1])
        if lm < lpi:
            lab = 0
    out[i, 11] = lab


@numba.njit(**NJP)
def evaluate_vec(logage, mh, m, G):
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(m)
    out = np.empty((n, 12))
    for i in prange(n):
        eval_one(logage[i], mh[i], m[i], mhg, lag, log_b, log_pms, offsets, values, ulut, zlut, alut, par, out, i)
    return out


@numba.njit(**NJP)
def evaluate_eep_vec(logage, mh, phase, u, G):
    """Evaluate at given (phase, EEP coordinate) instead of initial mass; column 11 holds the initial mass."""
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(u)
    out = np.empty((n, 12))
    for i in prange(n):
        iz, ia, w00, w01, w10, w11 = _corners(logage[i], mh[i], mhg, lag, zlut, alut, par)
        s = phase[i]
        k, t = _node(u_nodes, offsets, s, u[i])
        _fill(out, i, values, iz, ia, w00, w01, w10, w11, k, t, par[0])
        lbs = _lb(log_b, iz, ia, w00, w01, w10, w11, s)
        lbn = _lb(log_b, iz, ia, w00, w01, w10, w11, s + 1)
        uu = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_U)
        out[i, 11] = _mass_at(lbs, lbn, s, uu)
    return out


@numba.njit(**NJ)
def m_end_one(logage, mh, mhg, lag, log_b, zlut, alut, par):
    iz, ia, w00, w01, w10, w11 = _corners(logage, mh, mhg, lag, zlut, alut, par)
    return 10.0 ** _lb(log_b, iz, ia, w00, w01, w10, w11, log_b.shape[2] - 1)


@numba.njit(**NJP)
def boundaries_vec(logage, mh, G):
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(logage)
    nb = log_b.shape[2]
    out = np.empty((n, nb))
    for i in prange(n):
        iz, ia, w00, w01, w10, w11 = _corners(logage[i], mh[i], mhg, lag, zlut, alut, par)
        for s in range(nb):
            out[i, s] = 10.0 ** _lb(log_b, iz, ia, w00, w01, w10, w11, s)
    return out


@numba.njit(**NJP)
def m_end_vec(logage, mh, G):
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(logage)
    out = np.empty(n)
    for i in prange(n):
        out[i] = m_end_one(logage[i], mh[i], mhg, lag, log_b, zlut, alut, par)
    return out


@numba.njit(**NJ)
def mass_low_one(logage, mh, mlim, band, mhg, lag, log_b, offsets, values, runmin, zlut, alut, par):
    """Lowest initial mass whose interpolated running-minimum magnitude in ``band`` is <= mlim.

    Every living star at (logage, mh) with absolute magnitude <= mlim has initial mass >= the result
    (the running minimum interpolated between corners is a lower envelope of the interpolated
    magnitudes, both being linear between the same nodes). Returns +inf when no living star reaches mlim.
    """
    iz, ia, w00, w01, w10, w11 = _corners(logage, mh, mhg, lag, zlut, alut, par)
    K = values.shape[2]
    last = (w00 * runmin[iz, ia, K - 1, band] + w01 * runmin[iz, ia + 1, K - 1, band]
            + w10 * runmin[iz + 1, ia, K - 1, band] + w11 * runmin[iz + 1, ia + 1, K - 1, band])
    if last > mlim:
        return np.inf
    first = (w00 * runmin[iz, ia, 0, band] + w01 * runmin[iz, ia + 1, 0, band]
             + w10 * runmin[iz + 1, ia, 0, band] + w11 * runmin[iz + 1, ia + 1, 0, band])
    if first <= mlim:
        return 10.0 ** _lb(log_b, iz, ia, w00, w01, w10, w11, 0)
    lo, hi = 0, K - 1  # value(lo) > mlim >= value(hi)
    vlo, vhi = first, last
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        v = (w00 * runmin[iz, ia, mid, band] + w01 * runmin[iz, ia + 1, mid, band]
             + w10 * runmin[iz + 1, ia, mid, band] + w11 * runmin[iz + 1, ia + 1, mid, band])
        if v <= mlim:
            hi, vhi = mid, v
        else:
            lo, vlo = mid, v
    t = (vlo - mlim) / (vlo - vhi) if vlo > vhi else 1.0
    s = bisect_right(offsets, lo)  # phase of node lo
    if hi >= offsets[s + 1]:  # hi starts the next phase: the crossing is at the phase boundary
        return 10.0 ** _lb(log_b, iz, ia, w00, w01, w10, w11, s + 1)
    ulo = _uint(values, iz, ia, w00, w01, w10, w11, lo)
    u = ulo + t * (_uint(values, iz, ia, w00, w01, w10, w11, hi) - ulo)
    lbs = _lb(log_b, iz, ia, w00, w01, w10, w11, s)
    lbn = _lb(log_b, iz, ia, w00, w01, w10, w11, s + 1)
    return _mass_at(lbs, lbn, s, u)


@numba.njit(**NJP)
def mass_low_vec(logage, mh, mlim, band, G):
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(logage)
    out = np.empty(n)
    for i in prange(n):
        out[i] = mass_low_one(logage[i], mh[i], mlim[i], band, mhg, lag, log_b, offsets, values, runmin, zlut, alut,
                              par)
    return out


_GL_X = np.array([-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526])
_GL_W = np.array([0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538])


@numba.njit(**NJ)
def present_mass_one(logage, mh, mhg, lag, log_b, offsets, values, zlut, alut, par, edges, alpha, coef, cumn, cumm,
                     glx, glw, mcap):
    """Present-day mass per unit initial mass r(age, [M/H]) of stars with initial mass below ``mcap``:
    living stars (current masses along the interpolated isochrone, 4-point Gauss-Legendre per node
    interval) + remnants (exact IFMR integral) + stars below the isochrone floor (current mass =
    initial mass)."""
    iz, ia, w00, w01, w10, w11 = _corners(logage, mh, mhg, lag, zlut, alut, par)
    nph = log_b.shape[2] - 1
    ns = len(alpha)
    mlo, mup = edges[0], min(edges[ns], mcap)
    tot = 0.0
    b0 = 10.0 ** _lb(log_b, iz, ia, w00, w01, w10, w11, 0)
    if mlo < b0:
        tot += imf_cummass(min(b0, mup), edges, alpha, coef, cumn, cumm)
    lbs = _lb(log_b, iz, ia, w00, w01, w10, w11, 0)
    for s in range(nph):
        lbn = _lb(log_b, iz, ia, w00, w01, w10, w11, s + 1)
        if lbn > lbs:
            islog = s < N_LOG_PHASES
            for k in range(offsets[s], offsets[s + 1] - 1):
                ua = _uint(values, iz, ia, w00, w01, w10, w11, k)
                ub = _uint(values, iz, ia, w00, w01, w10, w11, k + 1)
                if ub <= ua:
                    continue
                ma = _mass_at(lbs, lbn, s, ua)
                mb = _mass_at(lbs, lbn, s, ub)
                ca, cb = max(ma, mlo), min(mb, mup)
                if cb <= ca:
                    continue
                if islog:
                    xa, xb = math.log10(ca), math.log10(cb)
                    fa, fb = math.log10(ma), math.log10(mb)
                else:
                    xa, xb, fa, fb = ca, cb, ma, mb
                half, mid = 0.5 * (xb - xa), 0.5 * (xb + xa)
                for g in range(4):
                    x = mid + half * glx[g]
                    mm = 10.0 ** x if islog else x
                    jac = mm * math.log(10.0) if islog else 1.0
                    t = (x - fa) / (fb - fa)
                    mc = _val(values, iz, ia, w00, w01, w10, w11, k, t, Q_MASS)
                    if mc > mm:
                        mc = mm
                    tot += half * glw[g] * mc * imf_pdf(mm, edges, alpha, coef, cumn, cumm) * jac
        lbs = lbn
    mend = 10.0 ** lbs
    if mend < mup:
        tot += remnant_mass_integral(max(mend, mlo), mup, edges, alpha, coef, cumn, cumm)
    return tot


@numba.njit(**NJP)
def present_mass_vec(logage, mh, G, edges, alpha, coef, cumn, cumm, mcap=np.inf):
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(logage)
    out = np.empty(n)
    for i in prange(n):
        out[i] = present_mass_one(logage[i], mh[i], mhg, lag, log_b, offsets, values, zlut, alut, par, edges, alpha,
                                  coef, cumn, cumm, _GL_X, _GL_W, mcap)
    return out


# =============================================================================== star tagging
@numba.njit(**NJP)
def tag_stars(logage, mh_iso, u_mass, m_lo, m_hi, G, edges, alpha, coef, cumn, cumm):
    """Draw initial masses from the IMF truncated to [m_lo_i, m_hi_i] (inverse CDF of u_mass) and
    evaluate the isochrones. Returns (m_init (N,), out (N, 12)) as :func:`eval_one`."""
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(u_mass)
    m_init = np.empty(n)
    out = np.empty((n, 12))
    for i in prange(n):
        n0 = imf_cumnum(m_lo[i], edges, alpha, coef, cumn, cumm)
        n1 = imf_cumnum(m_hi[i], edges, alpha, coef, cumn, cumm)
        m = imf_ppf_n(n0 + u_mass[i] * (n1 - n0), edges, alpha, coef, cumn, cumm)
        m = min(max(m, m_lo[i]), m_hi[i])
        m_init[i] = m
        eval_one(logage[i], mh_iso[i], m, mhg, lag, log_b, log_pms, offsets, values, ulut, zlut, alut, par,
                 out, i)
    return m_init, out


@numba.njit(**NJP)
def tag_stars_const(logage, mh_iso, u_mass, n0, n1, G, edges, alpha, coef, cumn, cumm, m_init, out):
    """As :func:`tag_stars` for one mass range given by cumulative numbers [n0, n1], into given arrays."""
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(u_mass)
    for i in prange(n):
        m = imf_ppf_n(n0 + u_mass[i] * (n1 - n0), edges, alpha, coef, cumn, cumm)
        m_init[i] = m
        eval_one(logage[i], mh_iso[i], m, mhg, lag, log_b, log_pms, offsets, values, ulut, zlut, alut, par,
                 out, i)


@numba.njit(**NJP)
def detectable_fraction(logage, mh_iso, mlim, band, m_min, G, edges, alpha, coef, cumn, cumm):
    """For each star slot: (m_low, m_high, N(m_low, m_high)) with m_low = max(m_min, mass_low) and
    m_high = min(m_end, m_upper); N = stars per unit initial mass in [m_low, m_high) (0 if empty)."""
    mhg, lag, log_b, log_pms, u_nodes, offsets, values, runmin, ulut, zlut, alut, par = G
    n = len(logage)
    lo = np.empty(n)
    hi = np.empty(n)
    num = np.empty(n)
    mup = edges[len(alpha)]
    for i in prange(n):
        a = mass_low_one(logage[i], mh_iso[i], mlim[i], band, mhg, lag, log_b, offsets, values, runmin, zlut, alut,
                         par)
        if a < m_min:
            a = m_min
        b = m_end_one(logage[i], mh_iso[i], mhg, lag, log_b, zlut, alut, par)
        if b > mup:
            b = mup
        lo[i] = a
        hi[i] = b
        if b > a:
            num[i] = imf_cumnum(b, edges, alpha, coef, cumn, cumm) - imf_cumnum(a, edges, alpha, coef, cumn, cumm)
        else:
            num[i] = 0.0
    return lo, hi, num


@numba.njit(parallel=True, cache=True, nogil=True)
def age_bin_draw(mu, u_bin, cell, mu0, dmu, table):
    """Age bin and count factor per point (:meth:`mocksky.populate.MagnitudeSelection.draw_ages`).

    ``table`` (n_cells, K, n_mu): the bins' envelopes E_k per [M/H] cell on the uniform grid mu0 + j dmu (E_k(mu) =
    E_k[0] below the grid, 0 above, linear in between); ``cell`` (N,): each point's [M/H] cell. Bin k is drawn with
    probability E_k(mu) / sum_j E_j(mu) from ``u_bin``; the factor is (sum_j E_j(mu) / K) / E_k(mu) (0 where every
    E_j(mu) is 0). Returns (k (int64), factor)."""
    n = mu.shape[0]
    nb, nm = table.shape[1], table.shape[2]
    kout = np.zeros(n, dtype=np.int64)
    fout = np.zeros(n)
    for i in prange(n):
        tb = table[cell[i]]
        x = (mu[i] - mu0) / dmu
        if x != x or x >= nm - 1:
            kout[i] = nb - 1
            continue
        if x <= 0.0:
            j = 0
            t = 0.0
        else:
            j = int(x)
            t = x - j
        tot = 0.0
        for k in range(nb):
            tot += (1.0 - t) * tb[k, j] + t * tb[k, j + 1]
        if not tot > 0.0:
            kout[i] = nb - 1
            continue
        target = u_bin[i] * tot
        acc = 0.0
        kk = nb - 1
        ek = 0.0
        for k in range(nb):
            e = (1.0 - t) * tb[k, j] + t * tb[k, j + 1]
            acc += e
            if acc > target and e > 0.0:
                kk = k
                ek = e
                break
        if ek == 0.0:  # rounding at the top end: the last bin with a positive envelope
            for k in range(nb - 1, -1, -1):
                e = (1.0 - t) * tb[k, j] + t * tb[k, j + 1]
                if e > 0.0:
                    kk = k
                    ek = e
                    break
        kout[i] = kk
        fout[i] = tot / nb / ek
    return kout, fout


@numba.njit(cache=True, nogil=True, inline="always")
def _uniform_at(q, fp, left, right):
    """fp linearly interpolated at the grid coordinate q (node j at q = j): ``left`` below, ``right`` above, NaN at
    NaN."""
    m = fp.shape[0]
    if q != q:
        return np.nan
    if q < 0.0:
        return left
    if q > m - 1:
        return right
    j = int(q)
    if j >= m - 1:
        return fp[m - 1]
    return fp[j] + (q - j) * (fp[j + 1] - fp[j])


@numba.njit(**NJP)
def uniform_interp(x, x0, dx, fp, left, right):
    """Linear interpolation of ``fp`` given on the uniform grid x0 + j dx (j = 0 .. len(fp) - 1) at the points x:
    ``left`` below the grid, ``right`` above it, NaN at NaN (the semantics of ``np.interp``, without its binary
    search). Returns (N,)."""
    n = x.shape[0]
    out = np.empty(n)
    for i in prange(n):
        out[i] = _uniform_at((x[i] - x0) / dx, fp, left, right)
    return out


@numba.njit(**NJP)
def velocity_factor(mu, cand, mu0, dmu, env, d_max, edges, cdens):
    """a = D_j(mu) / D(mu) in [0, 1] per point (:meth:`mocksky.populate.MagnitudeSelection.velocity_factor`).

    ``mu`` (N,) distance modulus + extinction; ``cand`` (N, n_sub) the [M/H] each sub-population would get (NaN: not
    possible); ``env`` (n_mu,) the envelope D on the uniform grid mu0 + j dmu (d_max below it, 0 above); ``edges``
    (n_cells + 1,) the [M/H] cells; ``cdens`` (n_sub, n_cells, n_mu) the cells' envelopes D_j. D_j is the largest over
    the possible sub-populations, 0 from the grid's last node on; a = 0 where D = 0 or mu is NaN."""
    n = mu.shape[0]
    nm = env.shape[0]
    ns = cand.shape[1]
    nc = edges.shape[0] - 1
    out = np.zeros(n)
    for i in prange(n):
        q = (mu[i] - mu0) / dmu
        if q != q or q >= nm - 1:
            continue
        D = _uniform_at(q, env, d_max, 0.0)  # as MagnitudeSelection.density
        j = int(q) if q > 0.0 else 0
        t = q - j if q > 0.0 else 0.0
        if not D > 0.0:
            continue
        dj = 0.0
        for s in range(ns):
            c = cand[i, s]
            if c != c:
                continue
            c = min(max(c, edges[0]), edges[nc])
            k = np.searchsorted(edges, c, side="right") - 1
            k = min(max(k, 0), nc - 1)
            v = (1.0 - t) * cdens[s, k, j] + t * cdens[s, k, j + 1]
            if v > dj:
                dj = v
        a = dj / D
        out[i] = min(max(a, 0.0), 1.0)
    return out
