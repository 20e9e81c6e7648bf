"""Importance-weighted samples of a DF component: every proposal with a positive weight is kept.

Rejection sampling (:class:`~.sampler.ComponentSampler`) turns the weights w = f(J) S / q of the proposals into
equal-mass points by accepting each with probability w / W; when f S is much more peaked than the proposal (a
magnitude-limited survey of giants in a few hundred fields, a cold young disc) the acceptance drops to ~1e-3 and
almost every action evaluation is wasted. An importance-weighted sample keeps every proposal with w > 0 and gives it
the mass

    m_i = P w_i / N,

N being the number of positions drawn and P the proposal probability of the positions that can be drawn (the
cells' probabilities times their azimuth windows with a region; 1 without one), so
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
from dataclasses import dataclass

import numpy as np

from .sampler import ComponentSampler, Particles

log = logging.getLogger(__name__)

__all__ = ["sample_weighted", "WeightedScheme", "weighted_scheme", "weighted_draw"]


@dataclass(frozen=True)
class WeightedScheme:
    """How a prepared :class:`~.sampler.ComponentSampler` is turned into weighted points.

    Attributes
    ----------
    threshold : float
        Rejection-control threshold c of the weights.
    points_per_position : float
        Expected kept points per drawn position (from the first batch).
    norm : float
        Proposal probability of the positions that are drawn (``Psum`` of the epoch with a region, else 1): a
        kept point's mass is ``norm * max(w, c) / N``, N being the number of positions drawn in all.
    """

    threshold: float
    points_per_position: float
    norm: float

    def positions_for(self, n_points: int, multiple: int = 1) -> int:
        """Positions to draw for about ``n_points`` kept points, rounded up to a multiple of ``multiple``."""
        k = max(int(multiple), 1)
        return int(math.ceil(max(n_points, 1) / self.points_per_position / k)) * k


def weighted_scheme(sampler: ComponentSampler, rng, keep_fraction: float = 0.2, batch: int = 100_000
                    ) -> WeightedScheme:
    """Rejection-control threshold and rate of a prepared sampler, from one batch of its adapted proposal.

    The batch advances the sampler's proposal counters (not its proposal, which stays the adapted one).

    Parameters
    ----------
    sampler : ComponentSampler
        Prepared (:meth:`~.sampler.ComponentSampler.prepare`).
    rng : numpy.random.Generator
    keep_fraction : float
        In (0, 1] (see the module docstring).
    batch : int
        Positions drawn.

    Returns
    -------
    WeightedScheme

    Raises
    ------
    ValueError
        ``keep_fraction`` outside (0, 1], or no positive weight in the batch.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction!r}")
    if not sampler._adapted:
        raise ValueError("weighted_scheme: prepare() the sampler first")
    s = sampler
    ep = s._epochs[-1]
    tried0 = ep.n_x_tried
    _, _, w, _, _ = s._propose(int(batch), rng)
    tried = ep.n_x_tried - tried0
    pos = w[w > 0]
    if len(pos) == 0:
        raise ValueError(f"component {s.name!r}: no proposal with f S > 0 in {tried} tries; check the region and "
                         "the selection")
    c = _threshold(pos, keep_fraction)
    rate = float(np.sum(np.minimum(1.0, pos / c))) / tried
    norm = float(ep.Psum) if s.region is not None else 1.0
    return WeightedScheme(float(c), rate, norm)


def weighted_draw(sampler: ComponentSampler, n_positions: int, scheme: WeightedScheme, rng, return_noise=False):
    """Draw ``n_positions`` positions from a prepared sampler and keep points by rejection control.

    Parameters
    ----------
    sampler : ComponentSampler
        Prepared; its accumulators are updated (draw from a fork to keep the original).
    n_positions : int
        Positions drawn (a multiple of the sampler's ``azimuth_copies`` draws exactly this many).
    scheme : WeightedScheme
    rng : numpy.random.Generator
    return_noise : bool
        Also return the kept points' random numbers of the sampler's second selection factor (its
        ``velocity_thinning``; shape (n, 0) without), after ``n_drawn``.

    Returns
    -------
    posvel : ndarray, shape (n, 6)
    actions : ndarray, shape (n, 3)
    weight : ndarray, shape (n,)
        ``max(w, c)`` of the kept points; their masses are ``scheme.norm * weight / N_total`` [Msun], N_total being
        the positions drawn over every call that together make one estimate.
    n_drawn : int
        Positions actually drawn.
    """
    ep = sampler._epochs[-1]
    K = max(int(getattr(sampler, "azimuth_copies", 1)), 1)
    step = max(sampler.batch_max // K, 1) * K
    c = scheme.threshold
    out_pv, out_J, out_w, out_X = [], [], [], []
    t0 = ep.n_x_tried
    left = int(n_positions)
    while left > 0:
        before = ep.n_x_tried
        pv, J, w, _, X = sampler._propose(min(left, step), rng)
        left -= ep.n_x_tried - before
        k = (w > 0) & (rng.random(len(w)) * c < w)
        out_pv.append(pv[k])
        out_J.append(J[k])
        out_w.append(np.maximum(w[k], c))
        out_X.append(X[k])
    if not out_pv:
        res = (np.empty((0, 6)), np.empty((0, 3)), np.empty(0), 0)
        return res + ((np.empty((0, sampler._n_noise)),) if return_noise else ())
    res = (np.concatenate(out_pv), np.concatenate(out_J), np.concatenate(out_w), int(ep.n_x_tried - t0))
    return res + ((np.concatenate(out_X),) if return_noise else ())


def sample_weighted(potential, df, action_finder, n: int, *, density=None, region=None, selection=None, rng=None,
                    n_pilot: int = 20000, max_proposals: int = 500_000_000, keep_fraction: float = 0.2,
                    **sampler_options) -> Particles:
    """About ``n`` importance-weighted points of one DF component (see the module docstring).

    Parameters
    ----------
    potential, df, action_finder, density, region, selection
        As for :class:`~.sampler.ComponentSampler` (``selection(posvel) -> [0, 1]`` weights the target f S).
    n : int
        Expected number of points; >= 1.
    rng : int, numpy.random.Generator or None
    n_pilot : int
        Pilot proposals used to adapt the proposal.
    max_proposals : int
        Refuse to draw more positions than this (the error gives the rate).
    keep_fraction : float
        In (0, 1]: fraction of the positive-weight proposals kept by rejection control (see the module docstring).
    **sampler_options
        Further options of :class:`~.sampler.ComponentSampler`.

    Returns
    -------
    Particles
        ``mass`` [Msun] = norm max(w_i, c) / N (unequal), one component; ``meta['weighted']`` holds N, the sampled
        mass, the threshold and the Kish effective sample size.

    Raises
    ------
    ValueError
        ``n < 1``, ``keep_fraction`` outside (0, 1], or no positive weight (see :func:`weighted_scheme`).
    RuntimeError
        If more than ``max_proposals`` positions would be needed.
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
    scheme = weighted_scheme(s, rng, keep_fraction, batch=int(min(s.batch_max, max(20000, n_pilot))))
    n_pos = scheme.positions_for(n, getattr(s, "azimuth_copies", 1))
    if n_pos > max_proposals:
        raise RuntimeError(f"component {s.name!r}: {n} weighted points need ~{n_pos} proposals (kept per proposal "
                           f"{scheme.points_per_position:.3g}); raise max_proposals or lower n")
    posvel, actions, w, n_drawn = weighted_draw(s, n_pos, scheme, rng)
    mass = scheme.norm * w / n_drawn
    ess = float(mass.sum() ** 2 / np.dot(mass, mass)) if len(mass) else 0.0
    meta = {"weighted": {"positions": int(n_drawn), "mass_sampled": float(mass.sum()), "points": int(len(mass)),
                         "threshold": scheme.threshold, "keep_fraction": float(keep_fraction), "ess": ess,
                         "seconds": time.perf_counter() - t0}}
    log.info("weighted sample of %s: %d points from %d positions, sampled mass %.4g Msun, ESS %.0f (%.1f s)", s.name,
             len(mass), n_drawn, mass.sum(), ess, meta["weighted"]["seconds"])
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
