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

The number of proposals is fixed in advance (from the rate of positive weights in the pilot), so the estimate is
unbiased; the pilot epoch itself is not used.

References
----------
Kish 1965, Survey Sampling (effective sample size); Owen 2013, Monte Carlo theory, methods and examples, Ch. 9
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
                    n_pilot: int = 20000, max_proposals: int = 500_000_000, **sampler_options) -> Particles:
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
        ``n < 1`` or a component with no mass where f S > 0 (no positive weight in the pilot).
    RuntimeError
        If more than ``max_proposals`` proposals would be needed.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
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
    rate = npos / tried
    n_total = int(math.ceil(n / rate))
    if n_total > max_proposals:
        raise RuntimeError(f"component {s.name!r}: {n} weighted points need ~{n_total} proposals (rate of positive "
                           f"weights {rate:.3g}); raise max_proposals or lower n")
    keep_pv, keep_J, keep_w = [pv[w > 0]], [J[w > 0]], [w[w > 0]]
    n_in = len(w)
    left = n_total - tried
    while left > 0:
        before = ep.n_x_tried
        pv, J, w, _ = s._propose(min(left, s.batch_max), rng)
        left -= ep.n_x_tried - before
        n_in += len(w)
        pos = w > 0
        keep_pv.append(pv[pos])
        keep_J.append(J[pos])
        keep_w.append(w[pos])
    Z = ep.region_fraction(s.region is not None)[0]
    w = np.concatenate(keep_w)
    mass = Z * w / n_in
    posvel = np.concatenate(keep_pv)
    actions = np.concatenate(keep_J)
    ess = float(mass.sum() ** 2 / np.dot(mass, mass)) if len(mass) else 0.0
    meta = {"weighted": {"proposals_inside_region": int(n_in), "positions_tried": int(ep.n_x_tried - tried0),
                         "region_fraction": float(Z), "mass_sampled": float(mass.sum()), "points": int(len(mass)),
                         "ess": ess, "seconds": time.perf_counter() - t0}}
    log.info("weighted sample of %s: %d points from %d proposals, sampled mass %.4g Msun, ESS %.0f (%.1f s)", s.name,
             len(mass), n_in, mass.sum(), ess, meta["weighted"]["seconds"])
    name = getattr(df, "name", "") or type(df).__name__
    return Particles(posvel, mass, np.zeros(len(mass), dtype=np.int32), actions, (name,), [], meta)
