"""Compiled DF kernels: one scalar function per family, dispatched by an integer family code.

Every kernel takes the actions (Jr, Jz, Jphi) [kpc km/s] and the family's float64 parameter array
and returns f [Msun / (kpc km/s)^3] *before* the overall normalisation ``norm`` (stored as params[0]
and multiplied in :func:`df_value`). Formulas: shared/docs/dynamics-spec.md and the references in
:mod:`mocksky.model.df`.
"""
from __future__ import annotations

import numba
import numpy as np

NEW_EXPONENTIAL = 1
TAPER_EXP = 2
NEW_DOUBLE_POWER_LAW = 3
SIN_DOUBLE_POWER_LAW = 4
DOUBLE_POWER_LAW = 5
QUASI_ISOTHERMAL = 6


@numba.njit(cache=True, nogil=True)
def _new_exponential(Jr, Jz, Jphi, p):
    # p: norm, Jr0, Jz0, Jphi0, pr, pz, addJden, addJvel   (BV23 eqs. 1-4)
    if Jphi <= 0.0 or Jr < 0.0 or Jz < 0.0:
        return 0.0
    Jr0, Jz0, Jphi0, pr, pz, addJden, addJvel = p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    Jvel = Jphi + addJvel
    Jden = Jphi + addJden
    xr = (Jvel / Jphi0) ** pr / Jr0
    xz = (Jvel / Jphi0) ** pz / Jz0
    return xr * np.exp(-xr * Jr) * xz * np.exp(-xz * Jz) * Jphi / (Jphi0 * Jphi0) * np.exp(-Jden / Jphi0)


@numba.njit(cache=True, nogil=True)
def _taper_exp(Jr, Jz, Jphi, p):
    # p: norm, Jr0, Jz0, Jphi0, pr, pz, addJden, addJvel, Jtaper, Jtrans, Jcut, Delta   (BV24)
    if Jphi <= 0.0 or Jr < 0.0 or Jz < 0.0:
        return 0.0
    Jr0, Jz0, Jphi0, pr, pz, addJden, addJvel = p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    Jtaper, Jtrans, Jcut, Delta = p[8], p[9], p[10], p[11]
    Jt = Jr + Jz + Jphi
    Jvel = Jt + addJvel
    Jden = Jt + addJden
    xr = (Jvel / Jphi0) ** pr / Jr0
    xz = (Jvel / Jphi0) ** pz / Jz0
    f = xr * np.exp(-xr * Jr) * xz * np.exp(-xz * Jz) * (Jden / Jphi0) / Jphi0 * np.exp(-Jden / Jphi0)
    if Jtrans > 0.0:
        f *= 0.5 * (1.0 + np.tanh((Jphi - Jtaper) / Jtrans))
    if Delta > 0.0:
        f *= 0.5 * (1.0 - np.tanh((Jphi - Jcut) / Delta))
    return f


@numba.njit(cache=True, nogil=True)
def binney_h(Jr, Jz, Jphi, alpha, L0, beta, Fin, Fout):
    """h(J) of the BV23 spheroid DF (BV23 eqs. 9-14; dynamics spec)."""
    aJphi = abs(Jphi)
    L = Jz + aJphi
    if L + Jr <= 0.0:
        return 0.0
    c = L / (L + Jr)
    jt = (1.5 * Jr + L) / L0
    jta = jt**alpha
    xi = jta / (1.0 + jta)
    F = (1.0 - xi) * Fin + xi * Fout
    a = 0.5 * (F + 1.0)
    b = 0.5 * (F - 1.0)
    cL = Jz * (a + b * aJphi / L) + aJphi if L > 0.0 else 0.0
    s = np.exp(beta * np.sin(0.5 * np.pi * c))
    return Jr / s + 0.5 * (1.0 + c * xi) * s * cL


@numba.njit(cache=True, nogil=True)
def _dpl_core(h, J0, slopeIn, slopeOut, Jcutoff, cutoffStrength, Jcore, zeta):
    if h <= 0.0:
        return 0.0 if slopeIn > 0.0 or Jcore > 0.0 else 0.0
    f = (1.0 + J0 / h) ** slopeIn * (1.0 + h / J0) ** (-slopeOut)
    if Jcutoff > 0.0:
        x = (h / Jcutoff) ** cutoffStrength
        if x > 25.0:
            return 0.0
        f *= np.exp(-x)
    if Jcore > 0.0:
        y = Jcore / h
        f *= (1.0 + y * (y - zeta)) ** (-0.5 * slopeIn)
    return f


@numba.njit(cache=True, nogil=True)
def _new_double_power_law(Jr, Jz, Jphi, p):
    # p: norm, J0, slopeIn, slopeOut, alpha, L0, beta, Fin, Fout, Jcutoff, cutoffStrength, Jcore, zeta, rotFrac, Jphi0
    if Jr < 0.0 or Jz < 0.0:
        return 0.0
    J0 = p[1]
    h = binney_h(Jr, Jz, Jphi, p[4], p[5], p[6], p[7], p[8])
    f = _dpl_core(h, J0, p[2], p[3], p[9], p[10], p[11], p[12]) / (2.0 * np.pi * J0) ** 3
    if p[13] != 0.0 and p[14] > 0.0:
        f *= 1.0 + p[13] * np.tanh(Jphi / p[14])
    return f


@numba.njit(cache=True, nogil=True)
def _double_power_law(Jr, Jz, Jphi, p):
    # Agama/Posti et al. 2015 DoublePowerLaw (Vasiliev 2019 eq. 21):
    # p: norm, J0, slopeIn, slopeOut, steepness, coefJrIn, coefJzIn, coefJrOut, coefJzOut, Jcutoff, cutoffStrength,
    #    Jcore, zeta, rotFrac, Jphi0
    if Jr < 0.0 or Jz < 0.0:
        return 0.0
    J0, G_in, B_out, eta = p[1], p[2], p[3], p[4]
    hr, hz = p[5], p[6]
    gr, gz = p[7], p[8]
    aJ = abs(Jphi)
    h = hr * Jr + hz * Jz + (3.0 - hr - hz) * aJ
    g = gr * Jr + gz * Jz + (3.0 - gr - gz) * aJ
    if h <= 0.0:
        return 0.0
    f = (1.0 + (J0 / h) ** eta) ** (G_in / eta) * (1.0 + (g / J0) ** eta) ** (-B_out / eta) / (2.0 * np.pi * J0) ** 3
    if p[9] > 0.0:
        x = (g / p[9]) ** p[10]
        if x > 25.0:
            return 0.0
        f *= np.exp(-x)
    if p[11] > 0.0:
        y = p[11] / h
        f *= (1.0 + y * (y - p[12])) ** (-0.5 * G_in)
    if p[13] != 0.0 and p[14] > 0.0:
        f *= 1.0 + p[13] * np.tanh(Jphi / p[14])
    return f


@numba.njit(cache=True, nogil=True)
def _interp_uniform(x, x0, dx, n, table):
    t = (x - x0) / dx
    if t <= 0.0:
        return table[0]
    if t >= n - 1:
        return table[n - 1]
    i = int(t)
    w = t - i
    return table[i] * (1.0 - w) + table[i + 1] * w


@numba.njit(cache=True, nogil=True)
def _quasi_isothermal(Jr, Jz, Jphi, p):
    # Binney & McMillan 2011 eqs. 4-6, with tabulated Rc, kappa, nu, Omega versus ln Lz (p[9:]):
    # p: norm, Rdisk, sigmar0, sigmaz0, Rsigmar, Rsigmaz, Jphi0, Jmin_sq_unused, ntab, lnL0, dlnL, then 4 tables of ntab
    if Jr < 0.0 or Jz < 0.0:
        return 0.0
    Rdisk, sr0, sz0, Rsr, Rsz, Jphi0 = p[1], p[2], p[3], p[4], p[5], p[6]
    n = int(p[8])
    lnL0, dlnL = p[9], p[10]
    aJ = abs(Jphi)
    if aJ <= 0.0:
        aJ = 1e-10
    x = np.log(aJ)
    Rc = np.exp(_interp_uniform(x, lnL0, dlnL, n, p[11:11 + n]))
    kappa = np.exp(_interp_uniform(x, lnL0, dlnL, n, p[11 + n:11 + 2 * n]))
    nu = np.exp(_interp_uniform(x, lnL0, dlnL, n, p[11 + 2 * n:11 + 3 * n]))
    Om = np.exp(_interp_uniform(x, lnL0, dlnL, n, p[11 + 3 * n:11 + 4 * n]))
    Sigma = np.exp(-Rc / Rdisk)
    sr2 = (sr0 * np.exp(-Rc / Rsr)) ** 2
    sz2 = (sz0 * np.exp(-Rc / Rsz)) ** 2
    frot = 1.0 + np.tanh(Jphi / Jphi0) if Jphi0 > 0.0 else (2.0 if Jphi > 0.0 else 0.0)
    return (Om * Sigma / (2.0 * np.pi * np.pi * kappa * kappa) * frot * kappa / sr2 * np.exp(-kappa * Jr / sr2)
            * nu / sz2 * np.exp(-nu * Jz / sz2))


@numba.njit(cache=True, nogil=True)
def df_value(code, p, Jr, Jz, Jphi):
    """f(J) of the family ``code`` with parameters ``p`` (p[0] = norm)."""
    if code == NEW_EXPONENTIAL:
        v = _new_exponential(Jr, Jz, Jphi, p)
    elif code == TAPER_EXP:
        v = _taper_exp(Jr, Jz, Jphi, p)
    elif code == NEW_DOUBLE_POWER_LAW or code == SIN_DOUBLE_POWER_LAW:
        v = _new_double_power_law(Jr, Jz, Jphi, p)
    elif code == DOUBLE_POWER_LAW:
        v = _double_power_law(Jr, Jz, Jphi, p)
    elif code == QUASI_ISOTHERMAL:
        v = _quasi_isothermal(Jr, Jz, Jphi, p)
    else:
        v = np.nan
    return p[0] * v


@numba.njit(cache=True, nogil=True, parallel=True)
def df_values(code, p, J):
    n = J.shape[0]
    out = np.empty(n)
    for i in numba.prange(n):
        out[i] = df_value(code, p, J[i, 0], J[i, 1], J[i, 2])
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def df_mass_integral(code, p, lnJ, wJ, sign_both):
    """Per ln Jr node: the sum over (ln Jz, ln|Jphi|) of f * J_r J_z |J_phi| * weights of a tensor grid.

    The caller sums the returned (n,) array (and multiplies by (2 pi)^3) outside numba: a reduction inside a
    ``parallel=True`` function is split across threads, so its last bits would depend on the thread count.

    ``lnJ``, ``wJ``: nodes and weights (in ln J) shared by the three axes; Jphi runs over both signs when
    ``sign_both`` is true, otherwise over Jphi > 0 only.
    """
    n = lnJ.shape[0]
    partial = np.zeros(n)
    for i in numba.prange(n):
        Jr = np.exp(lnJ[i])
        acc = 0.0
        for j in range(n):
            Jz = np.exp(lnJ[j])
            wij = wJ[i] * wJ[j] * Jr * Jz
            for k in range(n):
                Jp = np.exp(lnJ[k])
                w = wij * wJ[k] * Jp
                v = df_value(code, p, Jr, Jz, Jp)
                if sign_both:
                    v += df_value(code, p, Jr, Jz, -Jp)
                acc += w * v
        partial[i] = acc
    return partial
