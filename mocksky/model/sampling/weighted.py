"""Importance-weighted samples of a DF component: every proposal with a positive weight is kept.

Rejection sampling (:class:`~.sampler.ComponentSampler`) turns the weights w = f(J) S / q of the proposals into
equal-mass points by accepting each with probability w / W; when f S is much more peaked than the proposal (a
magnitude-limited survey of giants in a few hundred fields, a cold young disc) the acceptance drops to ~1e-3 and
almost every action evaluation is wasted. An importance-weighted sample keeps every proposal with w > 0 and gives it
the mass

    m_i = Z w_i / N,

N being the number of proposals inside the region and Z the proposal probability of the region (1 without one), so
that sum_i m_i g(x_i, v_i) is an unbiased estimate of the integral of g f S over the region for any g (Owen 2013,
Monte Carlo theory, Ch. 9): masses add up to the sampled mass M_hat of :meth:`ComponentSampler.mass_estimate`.
Points then have unequal masses; downstream, :func:`mocksky.populate.populate` with ``overflow='weight'`` turns
each into one star carrying its expected number of stars. The Kish effective sample size (sum m)^2 / sum m^2 is
reported; it is the ESS fraction of the sampler's diagnostics times N, typically 10-40 times the number of points
rejection sampling would accept from the same proposals.

Rejection control (Liu, Chen & Wong 1998): with a threshold c > 0, a proposal is kept with probability
a_i = min(1, w_i / c) and then weighs max(w_i, c), which leaves every estimate unbiased
(E[a_i max(w_i, c)] = w_i) while thinning the many light proposals towards the target density f S, as rejection
sampling would, and keeping every heavy one. c is set from the first batch of the adapted proposal so that a
fraction ``keep_fraction`` of the positive-weight proposals is kept (1 keeps them all, c = min w; small values
approach rejection sampling with envelope c).

The number of proposals is fixed in advance (from the first batch's rate of kept points), so the estimate is
unbiased; the pilot epoch and that first batch are not used otherwise.

References
----------
Liu, Chen & Wong 1998, JRSS B 60, 487 (rejection control); Kish 1965, Survey Sampling (effective sample size); Owen 2013, Monte Carlo theory, methods and examples, Ch. 9
(importance sampling).
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from .sampler import ComponentSampler, Particles

log = logging.getLogger(__name__)

__all__ = ["sample_weighted"]


def sample_weighted(potential, df, action_finder, n: int, *, density=None, region=None, selection=None, rng=None,
                    n_pilot: int = 20000, max_proposals: int = 500_000_000, keep_fraction: float = 0.2,
                    **sampler_options) -> Particles:
    """About ``n`` importance-weighted points of one DF component (see the module docstring).

    Parameters
    ----------
    potential, df, action_finder, density, region, selection
        As for :class:`~.sampler.ComponentSampler` (``selection(posvel) -> [0, 1]`` weights the target f S).
    n : int
        Expected number of points (points with w > 0); >= 1.
    rng : int, numpy.random.Generator or None
    n_pilot : int
        Pilot proposals used to adapt the proposal and to estimate the rate of positive weights.
    max_proposals : int
        Refuse to draw more proposals than this (the error gives the rate).
    keep_fraction : float
        In (0, 1]: fraction of the positive-weight proposals kept by rejection control (see the module docstring).
    **sampler_options
        Further options of :class:`~.sampler.ComponentSampler`.

    Returns
    -------
    Particles
        ``mass`` [Msun] = Z w_i / N (unequal), one component; ``meta['weighted']`` holds N, Z, the sampled mass
        and the Kish effective sample size.

    Raises
    ------
    ValueError
        ``n < 1``, ``keep_fraction`` outside (0, 1], or a component with no mass where f S > 0 (no positive weight in the pilot).
    RuntimeError
        If more than ``max_proposals`` proposals would be needed.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction!r}")
    rng = np.random.default_rng(rng)
    t0 = time.perf_counter()
    s = ComponentSampler(potential, df, action_finder, density=density, region=region, selection=selection, rng=rng,
                         n_pilot=int(n_pilot), **sampler_options)
    s.prepare(rng=rng)
    ep = s._epochs[-1]
    # rate of positive weights per drawn position, from a first batch of the adapted proposal
    batch = int(min(s.batch_max, max(20000, n_pilot)))
    tried0 = ep.n_x_tried
    pv, J, w, _ = s._propose(batch, rng)
    tried = ep.n_x_tried - tried0
    npos = int(np.count_nonzero(w > 0))
    if npos == 0:
        raise ValueError(f"component {s.name!r}: no proposal with f S > 0 in {tried} tries; check the region and "
                         "the selection")
    c = _threshold(w[w > 0], keep_fraction)
    rate = float(np.sum(np.minimum(1.0, w[w > 0] / c))) / tried
    n_total = int(math.ceil(n / rate))
    if n_total > max_proposals:
        raise RuntimeError(f"component {s.name!r}: {n} weighted points need ~{n_total} proposals (kept per proposal "
                           f"{rate:.3g}); raise max_proposals or lower n")
    keep_pv, keep_J, keep_w = [], [], []

    def keep(pv, J, w):
        a = np.minimum(1.0, w / c)
        k = (w > 0) & (rng.random(len(w)) < a)
        keep_pv.append(pv[k])
        keep_J.append(J[k])
        keep_w.append(np.maximum(w[k], c))

    # the first batch only sets c and the rate (using it would make c depend on the weights it thins)
    n_in = 0
    left = n_total
    while left > 0:
        before = ep.n_x_tried
        pv, J, w, _ = s._propose(min(left, s.batch_max), rng)
        left -= ep.n_x_tried - before
        n_in += len(w)
        keep(pv, J, w)
    Z = ep.region_fraction(s.region is not None)[0]
    w = np.concatenate(keep_w)
    mass = Z * w / n_in
    posvel = np.concatenate(keep_pv)
    actions = np.concatenate(keep_J)
    ess = float(mass.sum() ** 2 / np.dot(mass, mass)) if len(mass) else 0.0
    meta = {"weighted": {"proposals_inside_region": int(n_in), "positions_tried": int(ep.n_x_tried - tried0),
                         "region_fraction": float(Z), "mass_sampled": float(mass.sum()), "points": int(len(mass)),
                         "threshold": float(c), "keep_fraction": float(keep_fraction),
                         "ess": ess, "seconds": time.perf_counter() - t0}}
    log.info("weighted sample of %s: %d points from %d proposals, sampled mass %.4g Msun, ESS %.0f (%.1f s)", s.name,
             len(mass), n_in, mass.sum(), ess, meta["weighted"]["seconds"])
    name = getattr(df, "name", "") or type(df).__name__
    return Particles(posvel, mass, np.zeros(len(mass), dtype=np.int32), actions, (name,), [], meta)


def _threshold(w: np.ndarray, keep_fraction: float) -> float:
    """The c > 0 with mean(min(1, w / c)) = keep_fraction over the positive weights ``w`` (bisection in log c)."""
    if keep_fraction >= 1.0:
        return float(w.min())
    lo, hi = float(w.min()), float(w.max()) / keep_fraction
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if np.mean(np.minimum(1.0, w / mid)) > keep_fraction:
            lo = mid
        else:
            hi = mid
    return hi
