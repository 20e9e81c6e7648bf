"""Proposal distributions for sampling a DF component in (x, v) (used by :mod:`.sampler`).

The proposal of a component is q(x, v) = q_x(x) q_v(v | x):

* **grid**: nodes uniform in the stretched coordinates u = asinh(R / R_s), t = asinh(|z| / z_s),
  covering the component (or only the region being sampled). The scales R_s, z_s and the outer
  radius r_max come from the DF itself (:func:`component_scales`): the distribution of its mass
  over the total action Jr + Jz + |Jphi| gives the radius of circular orbits holding 1% and 50% of
  the mass and the apocentre of the radial orbit beyond which a fraction ``mass_tail`` remains;
* **local moments** at the nodes (:func:`node_moments`), a quick estimate by the action finder:
  (A) a coarse scan of f along vphi finds the peak, (B) logarithmically spaced scans along vR, vz,
  vphi through it give conditional means and widths, (C) two rounds of importance sampling in
  velocity (Student t around the scanned moments mixed with a uniform ball of escape speed) give
  the density rho = int f d^3v, the marginal mean vphi, dispersions (sigma_R, sigma_z,
  sigma_phi) and correlation of vR and vz (tilt of the velocity ellipsoid), and the weights of
  the components of the velocity proposal (below), fitted to the importance samples. Nodes with
  no mass borrow the moments of their nearest valid node;
* **q_x**: piecewise constant on cells ``refine`` times finer than the node grid (ring cells
  Ra <= R <= Rb, za <= |z| <= zb, both signs of z), with cell probabilities proportional to the
  cell mass (rho from a given density object, or from the interpolated node densities) mixed
  with a fraction ``eps_x`` of a broad defensive profile m_c ~ V_c / (r_c^3 + R_s^3);
* **q_v(v | x)**: a mixture of 3D Student t densities (:data:`T_NU` = 12 degrees of freedom) centred on
  (0, 0, mean vphi(x)), with the covariance interpolated at x (dispersions times ``inflate``,
  vR-vz correlation) rescaled along its principal axes by per-component factors
  (:data:`DEFAULT_MIXTURE`; discs: :data:`DISC_MIXTURE`, whose extra components are also shifted along vphi),
  with interpolated weights, plus a fraction ``eps_v`` of the uniform
  ball |v| < v_esc(x) (v_esc relative to the potential at the grid's outer radius).

The defensive mixtures bound the importance weights f / q wherever f is bounded, so that the
rejection step of :mod:`.sampler` draws exactly from f with a finite envelope.

References
----------
Owen & Zhou 2000, J. Am. Stat. Assoc. 95, 135 (defensive mixture importance sampling);
Vasiliev 2019, MNRAS 482, 1525, Sect. 5 (sampling DFs in Agama, for comparison).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from ..df.families import _ln_nodes
from . import _kernels as SK

log = logging.getLogger(__name__)

#: Degrees of freedom of the Student t velocity proposals. Measured on the ``gaia_dr3_starcounts`` plan (one chunk
#: per BV23 component, three plan seeds): 12 instead of 5 takes 10-16 % fewer position proposals and action
#: evaluations per catalogue row for the bulge, stellar halo and the three older discs, the same for the young disc;
#: the tails beyond ~3 sigma that 5 puts there held ~11 % of the proposals and ~1 % of the accepted points. The
#: wider mixture component and the uniform ball still bound f / q in the tails.
T_NU = 12.0
_ONE3 = np.array([[1.0, 1.0, 1.0, 0.0]])  # one unshifted component of unit scales
#: Velocity proposal components (scale factors along the major and minor principal axes of the
#: (vR, vz) covariance and along vphi) and their default weights: the fitted covariance, a wider
#: and a narrower copy, one narrow across the major axis (radially biased spheroids: the
#: distribution of f in the tangential plane peaks at L = 0) and one narrow in vphi (the |Jphi|
#: kink of non-rotating spheroids).
DEFAULT_MIXTURE = ((1.0, 1.0, 1.0, 0.55), (1.6, 1.6, 1.6, 0.05), (0.4, 0.4, 0.4, 0.1), (1.0, 0.35, 0.35, 0.15),
                   (1.0, 1.0, 0.3, 0.15))
#: Velocity proposal of disc DFs (``prograde_only``): DEFAULT_MIXTURE plus four components shifted along vphi by
#: (f_major, f_minor, f_phi, weight, shift) with the shift in units of sigma_phi. A disc's vphi distribution is
#: skewed (the asymmetric drift's long tail to low vphi, its mode ~0.5 sigma above the mean), so that the largest
#: weights f / q of the symmetric mixture sit at vphi ~ mean + sigma and set the envelope. Measured on the
#: ``gaia_dr3_starcounts`` plan (one chunk per disc, three plan seeds): 5-14 % fewer proposals and action
#: evaluations per catalogue row; the spheroids (bulge, stellar halo) gained nothing and keep DEFAULT_MIXTURE.
DISC_MIXTURE = DEFAULT_MIXTURE + ((1.0, 1.0, 0.7, 0.1, 0.6), (1.0, 1.0, 1.1, 0.1, -0.8), (0.7, 0.7, 0.5, 0.05, 0.9),
                                  (1.0, 1.0, 0.5, 0.05, 0.3))
#: Exponent of the fit of the mixture weights: the weights minimise sum_i W_i (f_i / q_i)^(alpha - 1)
#: over the importance samples (alpha = 1: Kullback-Leibler; larger alpha weighs the largest ratios
#: f / q, which set the rejection envelope, more heavily).
FIT_ALPHA = 4.0


# --------------------------------------------------------------------------- scales from the DF
@dataclass
class ComponentScales:
    """Length scales of a DF component in a potential (see :func:`component_scales`).

    Attributes
    ----------
    R_s, z_s : float
        Stretch scales of the grid coordinates [kpc].
    R_mid : float
        Radius of the circular orbit with the median total action [kpc].
    r_max : float
        Outer radius of the sampling grids [kpc].
    phi_out : float
        Potential at r_max in the equatorial plane [km^2/s^2]: orbits with E >= phi_out are left out.
    J_quantiles : dict
        Total-action quantiles (0.01, 0.5, 1 - mass_tail) and the 0.1 quantile of Jz [kpc km/s].
    """

    R_s: float
    z_s: float
    R_mid: float
    r_max: float
    phi_out: float
    J_quantiles: dict = field(default_factory=dict)


def _quantile_from_hist(edges, mass, q):
    c = np.concatenate([[0.0], np.cumsum(np.maximum(mass, 0.0))])
    c /= c[-1]
    return float(np.exp(np.interp(q, c, edges)))


def _circular_L_table(pot, rgrid):
    gR, _ = pot._grad(rgrid, np.zeros_like(rgrid))
    L = rgrid * np.sqrt(np.maximum(rgrid * gR, 0.0))
    return np.maximum.accumulate(L)


def _radial_apocentre(pot, Jr_target, rgrid):
    """Apocentre of the radial orbit with radial action Jr_target in the equatorial potential [kpc]."""
    th, wth = np.polynomial.legendre.leggauss(48)
    th = 0.25 * np.pi * (th + 1)
    wth = 0.25 * np.pi * wth
    s = np.sin(th)
    ra = rgrid[:, None]
    r = ra * s[None, :]
    phi_a = pot._phi(rgrid, np.zeros_like(rgrid))
    phi_r = pot._phi(r.ravel(), np.zeros(r.size)).reshape(r.shape)
    p = np.sqrt(np.maximum(2 * (phi_a[:, None] - phi_r), 0.0))
    Jr = (ra[:, 0] * np.sum(p * np.cos(th)[None, :] * wth[None, :], axis=1)) / np.pi
    Jr = np.maximum.accumulate(Jr)
    if Jr_target >= Jr[-1]:
        return float(rgrid[-1])
    return float(np.exp(np.interp(np.log(Jr_target), np.log(np.maximum(Jr, 1e-300)), np.log(rgrid))))


def component_scales(pot, df, mass_tail: float = 1e-5, r_max: Optional[float] = None,
                     r_max_limit: float = 1e5) -> ComponentScales:
    """Grid scales of a DF component from the distribution of its mass in action space.

    Parameters
    ----------
    pot : Potential
        The potential (its equatorial Phi, dPhi/dR and d2Phi/dz2 are used).
    df : DistributionFunction
        A DF with a compiled kernel (``code``, ``params``, ``action_scale``, ``prograde_only``).
    mass_tail : float
        Fraction of the DF's mass (in total action) left beyond the grid's outer radius.
    r_max : float, optional
        Force the outer radius [kpc].
    r_max_limit : float
        Upper limit of the automatic outer radius [kpc] (default 1e5). DFs with shallow outer slopes
        reach far: the BV23 stellar halo (slopeOut 3.5) has 4% of its mass beyond 1000 kpc and 1%
        beyond ~2 Mpc; a lower limit leaves that mass out (it shows in the sampler's mass estimate).

    Returns
    -------
    ComponentScales
    """
    s = math.log(getattr(df, "action_scale", 1.0))
    nodes, weights = _ln_nodes(s - 16.0, s + 14.0, 24, 3)
    edges = np.linspace(s - 16.0, s + 16.0, 641)
    parts = SK.action_mass_histogram(df.code, df.params, nodes, weights, not df.prograde_only, edges)
    mJ, mJz = (2.0 * np.pi) ** 3 * np.sum(parts, axis=0)
    qlo = _quantile_from_hist(edges, mJ, 0.01)
    qmid = _quantile_from_hist(edges, mJ, 0.5)
    qhi = _quantile_from_hist(edges, mJ, 1.0 - mass_tail)
    jz10 = _quantile_from_hist(edges, mJz, 0.1)
    rgrid = np.geomspace(1e-4, 1e6, 601)
    Lc = _circular_L_table(pot, rgrid)
    ok = Lc > 0
    R_lo = float(np.interp(qlo, Lc[ok], rgrid[ok]))
    R_mid = float(np.interp(qmid, Lc[ok], rgrid[ok]))
    R_s = float(np.clip(0.5 * R_lo, 0.005, 5.0))
    _, d2z, _ = pot._hess(np.array([R_mid]), np.array([0.0]))
    nu2 = float(np.broadcast_to(d2z, (1,))[0])
    z_amp = math.sqrt(2 * jz10 / math.sqrt(nu2)) if nu2 > 0 else R_s
    z_s = float(np.clip(min(R_s, 0.5 * z_amp), 0.002, R_s))
    if r_max is None:
        r_max = _radial_apocentre(pot, qhi, rgrid)
        r_max = float(np.clip(max(r_max, 5 * R_mid), 1.0, r_max_limit))
    phi_out = float(pot._phi(np.array([r_max]), np.array([0.0]))[0])
    return ComponentScales(R_s, z_s, R_mid, float(r_max), phi_out,
                           {"J_t_01": qlo, "J_t_50": qmid, "J_t_hi": qhi, "J_z_10": jz10})


# --------------------------------------------------------------------------- node moments
def _f_at(df, finder, R, z, vR, vz, vphi, vlim2):
    """f at the points (R, 0, z) with velocities (vR, vphi, vz); 0 for |v|^2 >= vlim2 or retrograde
    orbits of prograde-only DFs; returns f and the number of action evaluations."""
    f = np.zeros(len(R))
    ok = vR * vR + vz * vz + vphi * vphi < vlim2
    if df.prograde_only:
        ok &= vphi * R > 0
    idx = np.flatnonzero(ok)
    if len(idx):
        pv = np.column_stack([R[idx], np.zeros(len(idx)), z[idx], vR[idx], vphi[idx], vz[idx]])
        J = finder.actions(pv)
        good = np.all(np.isfinite(J), axis=1)
        if good.any():
            f[idx[good]] = df(J[good])
    f[~np.isfinite(f)] = 0.0
    return np.maximum(f, 0.0), len(idx)


def _line_moments(v, f):
    """Zeroth, first and second moments of f along a sorted line of velocities (trapezoid rule)."""
    dv = np.diff(v, axis=1)
    a = 0.5 * (f[:, 1:] + f[:, :-1]) * dv
    vm = 0.5 * (v[:, 1:] + v[:, :-1])
    m0 = a.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = (a * vm).sum(1) / m0
        # second moment with the exact integral of a linear f over each interval about the mean
        m2 = (a * (vm - m1[:, None]) ** 2 + a * dv ** 2 / 12).sum(1) / m0
    return m0, m1, np.sqrt(np.maximum(m2, 0.0))


@dataclass
class NodeMoments:
    """Local moments of a DF component at grid nodes (see :func:`node_moments`).

    Arrays of shape (n_nodes,): ``rho`` [Msun/kpc^3], ``mean_vphi`` [km/s], ``sigma`` (n_nodes, 3)
    (sigma_R, sigma_z, sigma_phi) [km/s], ``corr`` (correlation of vR and vz), ``pik`` (n_nodes, K)
    (mixture weights of the velocity proposal), ``ess`` (effective sample size of the velocity
    importance sampling), ``valid`` (moments measured here rather than borrowed), ``n_actions``
    (action evaluations spent).
    """

    rho: np.ndarray
    mean_vphi: np.ndarray
    sigma: np.ndarray
    corr: np.ndarray
    pik: np.ndarray
    ess: np.ndarray
    valid: np.ndarray
    n_actions: int


def node_moments(df, finder, R, z, vesc, rng, n_is: int = 128, n_rounds: int = 2,
                 prune: float = 1e-9, node_volume=None, kap=None, pik=None, inflate: float = 1.4,
                 eps_v: float = 0.05, pi_floor: float = 0.03) -> NodeMoments:
    """Quick estimate of the density and velocity moments of a DF at points (R, 0, z).

    Parameters
    ----------
    df : DistributionFunction
        ``df(J)`` vectorised [Msun / (kpc km/s)^3]; ``prograde_only`` honoured.
    finder : action finder
        Object with ``actions(posvel) -> (N, 3)``.
    R, z : numpy.ndarray, shape (n,)
        Node positions [kpc], z >= 0.
    vesc : numpy.ndarray, shape (n,)
        Speed bound [km/s] at the nodes (orbits faster than this are not part of the component).
    rng : numpy.random.Generator
    n_is : int
        Velocity samples per node and round of importance sampling.
    n_rounds : int
        Rounds of importance sampling (each adapts the proposal to the previous estimate).
    prune : float
        Nodes whose crude mass estimate (rho * node_volume) is below ``prune`` times the total skip
        the importance sampling.
    node_volume : numpy.ndarray, optional
        Volume represented by each node [kpc^3] (for pruning); default: all equal.
    kap, pik : numpy.ndarray, optional
        Shapes (K, 3) and (K,): scale factors and default weights of the mixture components of the
        sampling proposal (see :func:`._kernels.propose_velocities`). When given, the weights are
        fitted at each node to the importance samples for the proposal with the measured moments,
        dispersions times ``inflate`` and ball fraction ``eps_v`` (see :data:`FIT_ALPHA`), floored
        at ``pi_floor``.

    Returns
    -------
    NodeMoments
    """
    n = len(R)
    vesc = np.asarray(vesc, dtype=np.float64)
    vlim2 = vesc ** 2
    n_act = 0
    live = vesc > 0
    # (A) coarse scan along vphi through vR = vz = 0
    nA = 33
    if df.prograde_only:
        grid = np.linspace(0.0, 0.98, nA + 1)[1:]
    else:
        grid = np.linspace(-0.98, 0.98, nA)
    vphi = vesc[:, None] * grid[None, :]
    rep = lambda a, k: np.repeat(a, k)  # noqa: E731
    fA, k = _f_at(df, finder, rep(R, nA), rep(z, nA), np.zeros(n * nA), np.zeros(n * nA), vphi.ravel(),
                  rep(vlim2, nA))
    n_act += k
    fA = fA.reshape(n, nA)
    ipk = np.argmax(fA, axis=1)
    c_phi = vphi[np.arange(n), ipk]
    live &= fA.max(axis=1) > 0
    # (B) log-spaced scans along vR, vz, vphi through (0, 0, c_phi)
    nB = 14
    lo = np.maximum(0.5, 1e-3 * vesc)
    off = np.exp(np.linspace(0, 1, nB)[None, :] * np.log(np.maximum(vesc / lo, 1.0 + 1e-9))[:, None]) * lo[:, None]
    line = np.concatenate([-off[:, ::-1], np.zeros((n, 1)), off], axis=1)  # (n, 2nB+1)
    L = line.shape[1]
    vRs = np.concatenate([line, np.zeros((n, L)), np.zeros((n, L))], axis=1)
    vzs = np.concatenate([np.zeros((n, L)), line, np.zeros((n, L))], axis=1)
    vps = np.concatenate([np.zeros((n, L)), np.zeros((n, L)), line], axis=1) + c_phi[:, None]
    fB, k = _f_at(df, finder, rep(R, 3 * L), rep(z, 3 * L), vRs.ravel(), vzs.ravel(), vps.ravel(), rep(vlim2, 3 * L))
    n_act += k
    fB = fB.reshape(n, 3, L)
    sig_c = np.empty((n, 3))
    mean_c = c_phi.copy()
    for d in range(3):
        m0, m1, sd = _line_moments(line, fB[:, d, :])
        sig_c[:, d] = sd
        if d == 2:
            mean_c = np.where(m0 > 0, c_phi + np.nan_to_num(m1), c_phi)
    fpk = np.maximum(fB[:, 0, nB], fA.max(axis=1))
    sig_c = np.where(np.isfinite(sig_c) & (sig_c > 0), sig_c, 0.3 * vesc[:, None] + 1e-3)
    sig_c = np.clip(sig_c, 0.3, np.maximum(vesc, 1.0)[:, None])
    rho0 = np.where(live, fpk * (2 * np.pi) ** 1.5 * np.prod(sig_c, axis=1), 0.0)
    vol = np.ones(n) if node_volume is None else np.asarray(node_volume)
    mass0 = rho0 * vol
    tot = mass0.sum()
    keep = live & (mass0 > prune * tot) if tot > 0 else live & False
    # (C) importance sampling rounds at the kept nodes
    S0 = np.zeros(n)
    S1 = np.zeros(n)
    S2 = np.zeros((n, 3))
    SRz = np.zeros(n)
    corr = np.zeros(n)
    Sw2 = np.zeros(n)
    ntot = np.zeros(n)
    mu = mean_c.copy()
    scale = 1.5 * sig_c
    ki = np.flatnonzero(keep)
    eps = 0.1
    Vs, Ws, Fs = [], [], []
    for rnd in range(n_rounds if len(ki) else 0):
        m = len(ki) * n_is
        mom = np.ones((m, 6))
        mom[:, 0] = np.repeat(mu[ki], n_is)
        mom[:, 1:4] = np.log(np.repeat(scale[ki], n_is, axis=0))
        mom[:, 4] = np.repeat(corr[ki], n_is)
        ve = np.repeat(vesc[ki], n_is)
        v = np.empty((m, 3))
        lq = np.empty(m)
        SK.propose_velocities(mom, ve, 1.0, T_NU, _ONE3, eps, rng.standard_normal((m, 3)), rng.chisquare(T_NU, m),
                              rng.random(m), rng.standard_normal((m, 3)), rng.random(m), v, lq)
        f, k = _f_at(df, finder, np.repeat(R[ki], n_is), np.repeat(z[ki], n_is), v[:, 0], v[:, 1], v[:, 2], ve ** 2)
        n_act += k
        w = np.where(f > 0, f * np.exp(-lq), 0.0).reshape(len(ki), n_is)
        vv = v.reshape(len(ki), n_is, 3)
        Vs.append(vv)
        Ws.append(w)
        Fs.append(f.reshape(len(ki), n_is))
        S0[ki] += w.sum(1)
        S1[ki] += (w * vv[:, :, 2]).sum(1)
        Sw2[ki] += (w * w).sum(1)
        ntot[ki] += n_is
        for d in range(3):
            S2[ki, d] += (w * vv[:, :, d] ** 2).sum(1)
        SRz[ki] += (w * vv[:, :, 0] * vv[:, :, 1]).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu_new = S1[ki] / S0[ki]
            var = S2[ki] / S0[ki, None]
            var[:, 2] -= mu_new ** 2
            ess = S0[ki] ** 2 / Sw2[ki]
            c_new = SRz[ki] / S0[ki] / np.sqrt(var[:, 0] * var[:, 1])
        good = (ess >= 8) & np.all(var > 0, axis=1) & np.isfinite(mu_new) & np.isfinite(c_new)
        mu[ki[good]] = mu_new[good]
        scale[ki[good]] = 1.3 * np.sqrt(var[good])
        corr[ki[good]] = np.clip(c_new[good], -0.9, 0.9)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(ntot > 0, S0 / np.maximum(ntot, 1), rho0)
        ess = np.where(Sw2 > 0, S0 ** 2 / np.where(Sw2 > 0, Sw2, 1.0), 0.0)
        mean_vphi = np.where(S0 > 0, S1 / np.where(S0 > 0, S0, 1.0), mean_c)
        var = S2 / np.where(S0 > 0, S0, 1.0)[:, None]
        var[:, 2] -= mean_vphi ** 2
    sigma = np.sqrt(np.maximum(var, 0.0))
    measured = (ess >= 8) & np.all(sigma > 0, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(measured, SRz / np.where(S0 > 0, S0, 1.0) / (sigma[:, 0] * sigma[:, 1]), 0.0)
    corr = np.clip(np.nan_to_num(corr), -0.9, 0.9)
    # nodes without enough importance samples keep the scan estimates (inflated: conditional widths
    # understate the marginal dispersions)
    sigma = np.where(measured[:, None], sigma, 1.3 * sig_c)
    mean_vphi = np.where(measured, mean_vphi, mean_c)
    rho = np.where(measured | (rho > 0), rho, rho0)
    valid = live & (rho > 0)
    K = 1 if kap is None else len(kap)
    pi = np.tile(np.ones(K) / K if pik is None else np.asarray(pik, dtype=np.float64), (n, 1))
    if kap is not None and K > 1 and len(ki) and Vs:
        em = ki[measured[ki]]
        sel = measured[ki]
        if len(em):
            pi[em] = _fit_mixture_weights(np.concatenate(Vs, axis=1)[sel], np.concatenate(Ws, axis=1)[sel],
                                          np.concatenate(Fs, axis=1)[sel], mean_vphi[em], sigma[em], corr[em],
                                          vesc[em], kap, pi[em], inflate, eps_v, pi_floor, FIT_ALPHA)
    return NodeMoments(rho, mean_vphi, sigma, corr, pi, ess, valid, n_act)


def _fit_mixture_weights(V, W, F, mean_vphi, sigma, corr, vesc, kap, pi0, inflate, eps, floor, alpha,
                         n_iter: int = 30):
    """Component weights of the velocity proposal at nodes (see :func:`node_moments`).

    V (n, s, 3): importance samples of the local velocity distributions, W (n, s) their weights and
    F (n, s) the values of f. Returns the (n, K) weights minimising sum_i W_i (F_i / q(V_i))^(alpha - 1)
    by the multiplicative fixed-point iteration pi_k <- sum_i W_i (F_i / q_i)^(alpha - 1) r_ik
    (r_ik: share of component k in q at V_i; alpha = 1 is the EM maximising sum_i W_i log q(V_i)),
    floored at ``floor`` and renormalised.
    """
    n, s, _ = V.shape
    K = len(kap)
    mom = np.empty((n, 5))
    mom[:, 0] = mean_vphi
    mom[:, 1:4] = np.log(np.maximum(sigma, 0.3))
    mom[:, 4] = corr
    lq = np.empty((n * s, K))
    SK.log_q_components(np.ascontiguousarray(V.reshape(-1, 3)), np.repeat(mom, s, axis=0), inflate, T_NU,
                        np.ascontiguousarray(kap, dtype=np.float64), lq)
    lq = lq.reshape(n, s, K)
    inside = np.sum(V * V, axis=2) < vesc[:, None] ** 2
    qb = np.where(inside, 3.0 / (4 * np.pi * vesc[:, None] ** 3), 0.0)
    shift = np.max(lq, axis=2, keepdims=True)
    qk = np.exp(lq - shift)
    qb = qb * np.exp(-shift[..., 0])
    Wn = W / np.maximum(W.sum(1, keepdims=True), 1e-300)
    pi = np.array(pi0, dtype=np.float64, copy=True)
    Fs = F * np.exp(-shift[..., 0])
    for _ in range(n_iter):
        num = (1 - eps) * pi[:, None, :] * qk
        den = num.sum(2) + eps * qb
        r = num / np.where(den > 0, den, 1.0)[..., None]
        wt = Wn
        if alpha != 1:
            ratio = np.where(den > 0, Fs / np.where(den > 0, den, 1.0), 0.0)
            ratio /= np.maximum(ratio.max(1, keepdims=True), 1e-300)
            wt = Wn * ratio ** (alpha - 1)
        new = np.einsum("ns,nsk->nk", wt, r)
        tot = new.sum(1, keepdims=True)
        pi = np.where(tot > 0, new / np.where(tot > 0, tot, 1.0), pi)
    pi = np.maximum(pi, floor)
    return pi / pi.sum(1, keepdims=True)


# --------------------------------------------------------------------------- proposal
class Proposal:
    """Proposal q(x, v) = q_x(x) q_v(v | x) of one DF component (see the module docstring).

    Parameters
    ----------
    pot : Potential
    df : DistributionFunction
    finder : action finder with ``actions(posvel)``
    rng : numpy.random.Generator
        Used for the node moments.
    scales : ComponentScales
        From :func:`component_scales`.
    bounds : tuple, optional
        (Rmin, Rmax, |z|min, |z|max) [kpc] of the region to cover; default the whole component
        (R and |z| up to ``scales.r_max``).
    density : object with ``_density(R, z)``, optional
        Density of the component [Msun/kpc^3] used for the cell masses of q_x where it is positive
        (elsewhere the node estimates are used).
    n_R, n_z : int
        Node counts in u and t.
    refine : int
        Cells per node interval in each direction.
    inflate, eps_v, eps_x : float
        Velocity scale factor and the defensive fractions in velocity and position.
    scale_mixture : sequence of (f_major, f_minor, f_phi, weight[, shift])
        Components of the velocity proposal, each centred on vphi = mean vphi + shift sigma_phi (shift 0 if
        omitted); default :data:`DISC_MIXTURE` for a DF with ``prograde_only`` (the discs), else
        :data:`DEFAULT_MIXTURE`.
    fit_mixture : bool
        Fit the component weights at each node (default True; else the given weights everywhere).
    n_is, n_rounds : int
        Importance sampling at the nodes (see :func:`node_moments`).

    Attributes
    ----------
    cell_Ra, cell_Rb, cell_za, cell_zb, cell_V, cell_P : numpy.ndarray
        Ring cells, their volumes [kpc^3] (both signs of z, full ring) and probabilities under q_x.
    moments : NodeMoments
    n_actions_setup : int
    """

    def __init__(self, pot, df, finder, rng, scales: ComponentScales, bounds=None, density=None, n_R: int = 32,
                 n_z: int = 28, refine: int = 3, inflate: float = 1.1, eps_v: float = 0.05, eps_x: float = 0.01,
                 n_is: int = 128, n_rounds: int = 2,
                 scale_mixture=None, fit_mixture: bool = True):
        for nm, val, lo in (("n_R", n_R, 4), ("n_z", n_z, 4), ("refine", refine, 1), ("n_is", n_is, 16)):
            if int(val) < lo:
                raise ValueError(f"{nm} must be >= {lo}, got {val}")
        if not inflate >= 1.0:
            raise ValueError(f"inflate must be >= 1, got {inflate}")
        for nm, val in (("eps_v", eps_v), ("eps_x", eps_x)):
            if not 0.0 < val < 1.0:
                raise ValueError(f"{nm} must be in (0, 1), got {val}")
        if scale_mixture is None:
            scale_mixture = DISC_MIXTURE if getattr(df, "prograde_only", False) else DEFAULT_MIXTURE
        try:  # rows of 4 (no shift) or 5 numbers
            rows = [tuple(float(x) for x in r) for r in scale_mixture]
            mix = np.array([r + (0.0,) * (5 - len(r)) if len(r) in (4, 5) else () for r in rows], dtype=np.float64)
        except (TypeError, ValueError):
            mix = np.zeros((0,))
        if mix.ndim != 2 or mix.shape[1] != 5 or not (
                np.all(mix[:, :3] > 0) and np.all(mix[:, 3] >= 0) and mix[:, 3].sum() > 0 and np.all(np.isfinite(mix))):
            raise ValueError("scale_mixture: need rows (f_major, f_minor, f_phi, weight[, shift]) with positive factors, "
                             f"non-negative weights of positive sum and finite shifts, got {scale_mixture!r}")
        # (f_major, f_minor, f_phi, shift along vphi in units of sigma_phi)
        self.kap = np.ascontiguousarray(np.column_stack([mix[:, :3], mix[:, 4]]))
        self.pik = np.ascontiguousarray(mix[:, 3] / mix[:, 3].sum())
        self.pot, self.df, self.scales = pot, df, scales
        self.inflate, self.eps_v, self.eps_x = float(inflate), float(eps_v), float(eps_x)
        Rs, zs = scales.R_s, scales.z_s
        if bounds is None:
            bounds = (0.0, scales.r_max, 0.0, scales.r_max)
        Rmin, Rmax, azmin, azmax = (float(b) for b in bounds)
        if not (0 <= Rmin < Rmax and 0 <= azmin < azmax):
            raise ValueError(f"proposal bounds must satisfy 0 <= Rmin < Rmax, 0 <= |z|min < |z|max, got {bounds}")
        self.Rs, self.zs = Rs, zs
        self.u0, u1 = math.asinh(Rmin / Rs), math.asinh(Rmax / Rs)
        self.t0, t1 = math.asinh(azmin / zs), math.asinh(azmax / zs)
        self.nu_, self.nt_ = int(n_R), int(n_z)
        self.du = (u1 - self.u0) / (self.nu_ - 1)
        self.dt = (t1 - self.t0) / (self.nt_ - 1)
        un = self.u0 + self.du * np.arange(self.nu_)
        tn = self.t0 + self.dt * np.arange(self.nt_)
        RN, ZN = np.meshgrid(Rs * np.sinh(un), zs * np.sinh(tn), indexing="ij")
        # evaluate axis nodes slightly off the axis (R = 0 makes vphi meaningless)
        Reval = np.where(RN > 0, RN, 0.25 * Rs * math.sinh(self.u0 + self.du))
        dR = Rs * np.cosh(un)[:, None] * self.du
        dZ = zs * np.cosh(tn)[None, :] * self.dt
        vol = 2 * np.pi * np.maximum(RN, 0.25 * dR) * dR * 2 * dZ
        self.phi_out = scales.phi_out
        Phi = pot._phi(Reval.ravel(), ZN.ravel())
        vesc = np.sqrt(np.maximum(2 * (self.phi_out - Phi), 0.0))
        self.moments = nm = node_moments(df, finder, Reval.ravel(), ZN.ravel(), vesc, rng, n_is=n_is,
                                         n_rounds=n_rounds, node_volume=vol.ravel(),
                                         kap=self.kap if fit_mixture else None, pik=self.pik,
                                         inflate=self.inflate, eps_v=self.eps_v)
        self.n_actions_setup = nm.n_actions
        shape = (self.nu_, self.nt_)
        valid = nm.valid.reshape(shape)
        K = len(self.kap)
        tab = np.empty(shape + (5 + K,))
        tab[..., 0] = nm.mean_vphi.reshape(shape)
        tab[..., 1:4] = np.log(np.maximum(nm.sigma.reshape(shape + (3,)), 0.3))
        tab[..., 4] = nm.corr.reshape(shape)
        tab[..., 5:] = nm.pik.reshape(shape + (K,))
        if not valid.any():
            raise ValueError(f"DF component {getattr(df, 'name', '')!r}: no mass found at any grid node "
                             f"(R in [{Rmin:.4g}, {Rmax:.4g}], |z| in [{azmin:.4g}, {azmax:.4g}] kpc)")
        if not valid.all():
            idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
            tab = tab[idx[0], idx[1]]
        self.tab = np.ascontiguousarray(tab)
        rho = nm.rho.reshape(shape)
        floor = 1e-14 * rho.max()
        self.lnrho_nodes = np.log(np.maximum(rho, floor))
        # ---- cells
        k = int(refine)
        ue = self.u0 + (u1 - self.u0) * np.linspace(0, 1, (self.nu_ - 1) * k + 1)
        te = self.t0 + (t1 - self.t0) * np.linspace(0, 1, (self.nt_ - 1) * k + 1)
        Re = np.maximum(Rs * np.sinh(ue), 0.0)
        Ze = np.maximum(zs * np.sinh(te), 0.0)
        Ra, za = np.meshgrid(Re[:-1], Ze[:-1], indexing="ij")
        Rb, zb = np.meshgrid(Re[1:], Ze[1:], indexing="ij")
        self.cell_Ra, self.cell_Rb = Ra.ravel(), Rb.ravel()
        self.cell_za, self.cell_zb = za.ravel(), zb.ravel()
        self.cell_V = np.pi * (self.cell_Rb ** 2 - self.cell_Ra ** 2) * 2 * (self.cell_zb - self.cell_za)
        ia, ib = np.meshgrid(np.arange(len(Re) - 1) // k, np.arange(len(Ze) - 1) // k, indexing="ij")
        #: index of the node interval (iu, it) holding each cell, iu * (n_z - 1) + it
        self.cell_group = (ia * (self.nt_ - 1) + ib).ravel()
        self.n_groups = (self.nu_ - 1) * (self.nt_ - 1)
        Rm = np.sqrt(0.5 * (self.cell_Ra ** 2 + self.cell_Rb ** 2))
        zm = 0.5 * (self.cell_za + self.cell_zb)
        lr = SK.interp_moments(Rm, zm, Rs, self.u0, self.du, zs, self.t0, self.dt,
                               np.ascontiguousarray(self.lnrho_nodes[..., None]))[:, 0]
        rho_c = np.exp(lr)
        if density is not None:
            # the given density where it is positive (it may cover a smaller grid than the DF)
            rho_d = np.asarray(density._density(Rm, zm), dtype=np.float64)
            rho_c = np.where(np.isfinite(rho_d) & (rho_d > 0), rho_d, rho_c)
        m = rho_c * self.cell_V
        if not m.sum() > 0:
            raise ValueError(f"DF component {getattr(df, 'name', '')!r}: the density is zero on the whole grid")
        rc = np.hypot(Rm, zm)
        mdef = self.cell_V / (rc ** 3 + Rs ** 3)
        self.cell_P = (1 - eps_x) * m / m.sum() + eps_x * mdef / mdef.sum()
        self.cell_logdens = np.log(self.cell_P) - np.log(self.cell_V)  # log q_x inside each cell

    # ------------------------------------------------------------------ evaluation
    def local_moments(self, R, az):
        """Interpolated (mean vphi, ln sigma_R, ln sigma_z, ln sigma_phi, corr(vR, vz), pi_1..pi_K) at points,
        shape (N, 5 + K)."""
        return SK.interp_moments(np.ascontiguousarray(R, dtype=np.float64), np.ascontiguousarray(az, dtype=np.float64),
                                 self.Rs, self.u0, self.du, self.zs, self.t0, self.dt, self.tab)

    def rho(self, R, z):
        """Density of the DF interpolated from the grid nodes' moments [Msun / kpc^3] (ln rho bilinear on the
        stretched grid)."""
        R = np.ascontiguousarray(R, dtype=np.float64)
        az = np.ascontiguousarray(np.abs(z), dtype=np.float64)
        lr = SK.interp_moments(R, az, self.Rs, self.u0, self.du, self.zs, self.t0, self.dt,
                               np.ascontiguousarray(self.lnrho_nodes[..., None]))[:, 0]
        return np.exp(lr)

    def vesc(self, R, z):
        """Speed bound sqrt(2 (Phi_out - Phi)) [km/s] (0 where Phi >= Phi_out)."""
        return np.sqrt(np.maximum(2 * (self.phi_out - self.pot._phi(R, z)), 0.0))
