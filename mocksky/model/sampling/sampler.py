"""Sampling particles (x, v) from action-based distribution functions.

Method (exact rejection with an adaptive envelope)
--------------------------------------------------
For a component with DF f(J) in a potential Phi, the phase-space density of its stars is
f(J(x, v)) (Agama's convention: int f(J(x, v)) d^3x d^3v = (2 pi)^3 int f d^3J = M). Points are
proposed from q(x, v) = q_x(x) q_v(v | x) (:mod:`.proposal`: positions from the component's density
on a stretched (R, z) grid, velocities from a mixture of Student t densities matched to the local
mean, dispersions and tilt, both mixed with broad defensive densities) and weighted by
w = f(J(x, v)) S(x, v) / q(x, v), where S in [0, 1] is an optional selection function. A proposal
is accepted with probability w / W, W being the envelope. Accepted points are exact draws from f S
as long as w <= W for all of them. W starts at ``safety`` times the largest weight of the first
batch; whenever a batch holds a larger weight, W is raised to ``safety`` times it and every point
accepted so far (with this proposal) is kept with probability W_old / W_new, which makes the
earlier acceptances exactly what they would have been with the new envelope. The result is an
exact sample of f S restricted to the set {w <= W}, which contains every proposal drawn; the
diagnostics report W, how often it was raised, the acceptance rate, the effective sample size of
the weights and the point of the largest weight. (W never grows beyond ``max_envelope_growth``
times its first value, a guard against isolated spikes of f(J(x, v)) caused by action-finder
failures; the weight above such a capped envelope is reported as ``clipped_fraction``, 0 for an
exact sample.)

Azimuth copies (``azimuth_copies = K > 1``)
-------------------------------------------
In an axisymmetric potential the actions do not depend on the azimuth phi, and the position proposal
is uniform in phi within each (R, z) cell's phi window, so q(x, v) is the same at every azimuth of
the window. Each proposal (R, z, vR, vz, vphi) is therefore tried at K azimuths phi_1..phi_K drawn
independently from the cell's window, with the shared actions J: copy k has the weight
w_k = f(J) S(x_k, v) / q(x_k, v) and is accepted independently with probability w_k / W. Every copy
is marginally an ordinary proposal, so each accepted copy is an exact draw from f S and the mass
estimate (each copy counted as one proposal) stays unbiased; but copies of one proposal share
(R, z, vR, vz, vphi): the sample is exact in its marginals and K-fold correlated in the meridional
phase space (like Galaxia's spawning of several stars from one N-body particle; Sharma et al. 2011,
ApJ 730, 3). The standard error of the mass estimate ignores that correlation (it is too small by up
to sqrt(K)). One action evaluation then serves K copies, which pays when S depends on phi (e.g. the
distance from the Sun in a magnitude-limited mock) and the actions dominate the cost.

Heliocentric cells (``observer`` given)
---------------------------------------
For a magnitude-limited target the position proposal can instead live on cells of the observer's sky (HEALPix) x
distance shells (:mod:`.helio`), with cell probabilities following the density times an upper bound S_up of the
selection in each cell. A proposal x is first thinned twice, before its velocity is drawn and its actions are
computed: kept with probability a1 = rho(x) / rho_up(cell) (rho_up = 1.1 x the largest density at the cell's 15-25
probe points, :meth:`.helio.HeliocentricCells.density_bounds`), then a2 = S(x) / S_up(cell); a survivor has the
weight w' = f(J) S / (q(x, v) a1 a2), a thinned one w' = 0.
E[w'] = E[f S / q] (unbiased mass estimate) and accepting with probability w' / W accepts x with probability
a1 a2 (f S / (q a1 a2)) / W = w / W, the plain rejection rule: the sample is exact, while W only needs to bound
w' = (f / rho) rho_up S_up / q, which depends neither on the magnitude limit and the dust nor on how the density
varies inside a cell, only on how well the velocity proposal fits f (accepted points per action evaluation: 0.30-0.45
for the BV23 components against ~0.12-0.29 with the selection thinning alone). Where a density or selection exceeds
the cell's bound (a probe missed a steeper rise) that factor is 1, so exactness never depends on the bounds.
Azimuth copies do not apply (``azimuth_copies`` must be 1). The pilot adapts the cell probabilities per node
interval of the (R, z) grid (the largest weight there, a measure of how well the velocity proposal fits f).

Sampling runs in two epochs: a pilot with the initial proposal, then a proposal whose position
part is reweighted per node interval of the grid by the largest pilot weight there, so that the
regions where q fits f least well do not set the envelope for the whole component. The adapted
proposal is also non-uniform in azimuth: per node interval, the azimuth window is cut into N_PHI = 32
bins whose probabilities follow the largest pilot weight in each (with a floor of 2 % of the
interval's largest bin), and a copy's weight is divided by N_PHI p_bin. A selection function that
depends on the position relative to the Sun (a magnitude limit, dust, a survey footprint) makes f S
vary strongly with azimuth; the adapted azimuths put the proposals where f S is. Both epochs'
acceptances are exact draws and are kept.

The same weights give an importance-sampling estimate of the mass that is sampled,
M_hat = Z E_q[w] (Z = fraction of q_x inside the region, 1 without one), with standard error
Z sqrt(Var(w) / n) (plus the binomial error of Z): with a region or a selection function, the
particle mass is M_hat / N, so that local mocks carry the right total mass without sampling the
whole Galaxy. Without them the particle mass is the DF's exact mass M / N, and M_hat checks that
the proposal covers the DF (M_hat / M = 1 within the error, up to the mass beyond the grid's outer
radius, a fraction ~ ``mass_tail`` of the DF, and up to the non-canonical error of approximate
action finders, which do not conserve phase-space volume exactly).

References
----------
von Neumann 1951 (rejection sampling); Owen & Zhou 2000 (defensive importance sampling);
Vasiliev 2019, MNRAS 482, 1525, Sect. 5 (Agama's sampling of DFs; same normalisation convention).
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, asdict
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _kernels as SK
from .proposal import T_NU, ComponentScales, Proposal, component_scales

#: azimuth bins of the adapted proposal (per node interval of the grid)
N_PHI = 32
from .regions import Region, as_region

log = logging.getLogger(__name__)

__all__ = ["ComponentSampler", "Particles", "ComponentDiagnostics", "sample_particles", "sample_galaxy_model",
           "allocate_counts"]


@dataclass
class ComponentDiagnostics:
    """Diagnostics of sampling one component.

    Attributes
    ----------
    name : str
        Component name (the DF's ``name``).
    n_particles : int
        Particles returned.
    particle_mass : float
        Mass of each particle [Msun].
    mass_df : float
        Total mass of the DF [Msun].
    mass_estimate, mass_error : float
        Importance-sampling estimate of the sampled mass (inside the region and weighted by the
        selection, if any) and its standard error [Msun].
    region_fraction : float
        Z: probability under q_x of the region (1 without one).
    n_proposals, n_actions : int
        Phase-space points proposed (inside the region; pilot included) and action evaluations
        spent on them.
    acceptance : float
        Accepted / proposed (before the final trimming to n_particles).
    ess_fraction : float
        (sum w)^2 / (n sum w^2) of the weights of the last epoch with proposals: 1 for a perfect
        proposal.
    envelope : float
        Envelope W of the last epoch with proposals; ``max_weight_ratio`` = largest w / W met (<= 1 means every
        proposal was covered).
    clipped_fraction : float
        Fraction of the total weight above a capped envelope (0 for an exact sample; see
        ``max_envelope_growth``).
    envelope_raises : int
        Times W was raised (each triggering the exact thinning of earlier acceptances).
    max_weight_posvel, max_weight_actions : list
        Phase-space point and actions of the largest weight (where the proposal fits f worst).
    n_setup_actions : int
        Action evaluations spent estimating the local moments on the grid.
    time_setup, time_sampling : float
        Wall-clock seconds.
    scales : dict
        Grid scales (R_s, z_s, R_mid, r_max) [kpc].
    """

    name: str
    n_particles: int = 0
    particle_mass: float = float("nan")
    mass_df: float = float("nan")
    mass_estimate: float = float("nan")
    mass_error: float = float("nan")
    region_fraction: float = 1.0
    n_proposals: int = 0
    n_actions: int = 0
    acceptance: float = float("nan")
    ess_fraction: float = float("nan")
    envelope: float = float("nan")
    max_weight_ratio: float = float("nan")
    envelope_raises: int = 0
    clipped_fraction: float = 0.0
    max_weight_posvel: list = field(default_factory=list)
    max_weight_actions: list = field(default_factory=list)
    n_setup_actions: int = 0
    time_setup: float = 0.0
    time_sampling: float = 0.0
    scales: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Particles:
    """A sampled model: equal-mass particles per component.

    Attributes
    ----------
    posvel : numpy.ndarray, shape (N, 6)
        Cartesian (x, y, z, vx, vy, vz) [kpc, km/s] in the model's Galactocentric frame.
    mass : numpy.ndarray, shape (N,)
        Particle masses [Msun].
    component : numpy.ndarray of int32, shape (N,)
        Index into ``component_names``.
    actions : numpy.ndarray, shape (N, 3)
        (Jr, Jz, Jphi) [kpc km/s] from the action finder used for sampling.
    component_names : tuple of str
    diagnostics : list of ComponentDiagnostics
    meta : dict
        Free-form metadata (region, selection, seed...).
    """

    posvel: np.ndarray
    mass: np.ndarray
    component: np.ndarray
    actions: np.ndarray
    component_names: tuple
    diagnostics: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.posvel)
        if self.posvel.shape != (n, 6) or self.mass.shape != (n,) or self.component.shape != (n,) \
                or self.actions.shape != (n, 3):
            raise ValueError(f"Particles: inconsistent shapes posvel {self.posvel.shape}, mass {self.mass.shape}, "
                             f"component {self.component.shape}, actions {self.actions.shape}")

    def __len__(self) -> int:
        return len(self.posvel)

    @property
    def xyz(self) -> np.ndarray:
        """Positions (N, 3) [kpc]."""
        return self.posvel[:, :3]

    @property
    def vxyz(self) -> np.ndarray:
        """Velocities (N, 3) [km/s]."""
        return self.posvel[:, 3:]

    def component_mass(self) -> Dict[str, float]:
        """Total particle mass per component [Msun]."""
        return {nm: float(self.mass[self.component == i].sum()) for i, nm in enumerate(self.component_names)}

    def select(self, name: Union[str, int]) -> "Particles":
        """The particles of one component (by name or index).

        Raises
        ------
        KeyError
            Unknown component (the known names are listed).
        """
        if isinstance(name, str):
            if name not in self.component_names:
                raise KeyError(f"component {name!r} unknown; have {list(self.component_names)}")
            idx = self.component_names.index(name)
        else:
            idx = int(name)
        m = self.component == idx
        return Particles(self.posvel[m], self.mass[m], self.component[m], self.actions[m], self.component_names,
                         self.diagnostics, dict(self.meta))


class _HelioDensity:
    """Density used to bound and thin heliocentric proposals: the component's density object where it is positive
    (it may cover a smaller grid than the DF), else the DF's own density from the proposal grid's moments, as for the
    Galactocentric cells. Picklable (sent to the workers with the plan)."""

    def __init__(self, density, proposal):
        self.density, self.proposal = density, proposal

    def __call__(self, R, z) -> np.ndarray:
        if self.density is None:
            return np.asarray(self.proposal.rho(R, z), dtype=np.float64)
        rd = np.array(self.density._density(R, z), dtype=np.float64)
        bad = ~(np.isfinite(rd) & (rd > 0))
        if bad.any():
            rd[bad] = np.asarray(self.proposal.rho(np.asarray(R)[bad], np.asarray(z)[bad]), dtype=np.float64)
        return rd


class _Epoch:
    """Accumulators of one proposal epoch (the pilot, then the adapted proposal)."""

    def __init__(self, cdf, Psum, logdens, phi_cdf=None, phi_logr=None):
        self.cdf, self.Psum, self.logdens = cdf, Psum, logdens
        # azimuth proposal per node-interval group: cumulative probabilities of the N_PHI bins of the azimuth
        # window and log(N_PHI p_bin) (None: uniform in the window)
        self.phi_cdf, self.phi_logr = phi_cdf, phi_logr
        self.envelope: Optional[float] = None
        self.cap: Optional[float] = None
        self.n_x_tried = 0
        self.n_x_ok = 0
        self.n_prop = 0
        self.sw = 0.0
        self.sw2 = 0.0
        self.clipped = 0.0

    def region_fraction(self, restricted: bool):
        if not restricted:
            return 1.0, 0.0
        if self.n_x_tried == 0:
            return float("nan"), float("nan")
        p = self.n_x_ok / self.n_x_tried
        return self.Psum * p, self.Psum * math.sqrt(max(p * (1 - p), 0.0) / self.n_x_tried)

    def mass(self, restricted: bool):
        """(M_hat, variance) of this epoch."""
        n = self.n_prop
        if n == 0:
            return float("nan"), float("nan")
        mean = self.sw / n
        var = max(self.sw2 / n - mean * mean, 0.0) / n
        Z, sZ = self.region_fraction(restricted)
        return Z * mean, Z * Z * var + (mean * sZ) ** 2


class ComponentSampler:
    """Exact rejection sampler of one DF component (see the module docstring).

    Sampling runs in two epochs: a pilot of ``n_pilot`` proposals from the initial proposal, after
    which the position proposal is multiplied, per node interval of the grid, by the largest weight
    seen there (so that regions where the velocity proposal fits f less well are proposed more
    often and the global envelope is not set by the worst region), then the adapted proposal. Points
    accepted in either epoch are exact draws from the target.

    Parameters
    ----------
    potential : Potential
        Axisymmetric potential with ``_phi`` (vectorised) and ``_grad``/``_hess``.
    df : DistributionFunction
        The component's DF (``df(J)``, ``mass``, ``name``, ``prograde_only``, and the kernel attributes
        ``code``/``params``/``action_scale`` used to choose the grid).
    action_finder : object
        ``actions(posvel (N, 6)) -> (N, 3)`` in ``potential`` (SphericalActionFinder, StaeckelFudge,
        InterpolatedStaeckelFudge...).
    density : object with ``_density(R, z)``, optional
        Density of this component [Msun/kpc^3] (e.g. from a self-consistent model), used for q_x.
    region : Region or dict, optional
        Restrict the sample to a region (:mod:`.regions`).
    selection : callable, optional
        ``selection(posvel (N, 6)) -> (N,)`` probabilities in [0, 1] weighting the target.
    rng : int, numpy.random.Generator or None
        Randomness for the grid moments (and default for :meth:`sample`).
    scales : ComponentScales, optional
        Override the grid scales (default :func:`component_scales` with ``mass_tail`` and ``r_max_limit``).
    mass_tail : float
        Action-space mass fraction left beyond the grid (default 1e-5).
    r_max_limit : float
        Upper limit of the grid's outer radius [kpc] (default 1e5; see :func:`.proposal.component_scales`).
    safety : float
        Envelope factor over the largest weight seen (default 1.1).
    max_envelope_growth : float
        The envelope of an epoch never exceeds this factor times its first value (default 10). Weights
        above the capped envelope are accepted with probability 1; the fraction of the weight above
        the envelope is reported as ``clipped_fraction`` (0 for an exact sample). This guards
        against isolated spikes of f(J(x, v)) from action-finder failures.
    n_pilot : int
        Largest pilot (default 1e5 proposals; smaller for small samples).
    max_proposals : int
        Give up after this many proposals (default 2e8).
    batch_max : int
        Largest batch of proposals (memory bound; default 4e5; azimuth copies count as proposals).
    azimuth_copies : int
        K >= 1 azimuths tried per (R, z, v) proposal with shared actions (default 1: independent points; see
        "Azimuth copies" in the module docstring).
    observer : str, SolarParameters or HeliocentricCells, optional
        Propose positions on heliocentric cells (see "Heliocentric cells" in the module docstring): a set of solar
        parameters (name or object; cells around the Sun out to the grid's radius plus the Sun's distance from the
        centre) or a :class:`.helio.HeliocentricCells`. The selection must then depend on position only.
    observer_options : dict, optional
        Options of :class:`.helio.HeliocentricCells` (nside, d_min, shells_per_decade, d_max) when ``observer`` is
        a set of solar parameters.
    density_thinning : bool
        With heliocentric cells, also thin positions by rho / rho_up before their velocities (default True: fewer
        action evaluations per accepted point). An importance-weighted sample (:mod:`.weighted`) spends one
        action evaluation per positive-weight proposal whatever the thinning, so there it only adds position draws
        (measured on ``apogee_dr17_gaia``: 2.2x the time, the same likelihood); pass False.
    velocity_thinning : bool
        With heliocentric cells and a selection that has ``velocity_thinning`` True,
        ``evaluate(posvel) -> (S, state)`` and ``draw_velocity_factor(posvel, rng, state) -> (a, noise (N, k))``
        (:class:`mocksky.populate.MagnitudeSelection`, whose state is mu = DM + A),
        also thin each position's proposal by a second factor a in [0, 1] once its velocity is drawn, before its
        actions are computed: the target becomes f S a, and each accepted point keeps the random numbers ``noise``
        it was given (``sample(..., return_noise=True)``), which the selection needs to recompute a (default False:
        whoever uses the points must know of a, e.g. pass the noise to ``point_mass`` and ``populate``).
    **proposal_options
        Passed to :class:`.proposal.Proposal` (n_R, n_z, refine, inflate, eps_v, eps_x, n_is, n_rounds,
        scale_mixture).

    Raises
    ------
    ValueError
        Bad options (named), or a component with no mass on its grid / in the region.
    """

    def __init__(self, potential, df, action_finder, density=None, region=None,
                 selection: Optional[Callable] = None, rng=None, scales: Optional[ComponentScales] = None,
                 mass_tail: float = 1e-5, r_max_limit: float = 1e5, safety: float = 1.1,
                 max_envelope_growth: float = 10.0, n_pilot: int = 100_000, max_proposals: int = 200_000_000,
                 batch_max: int = 400_000, azimuth_copies: int = 1, observer=None, observer_options=None,
                 density_thinning: bool = True, velocity_thinning: bool = False, **proposal_options):
        t0 = time.perf_counter()
        rng = np.random.default_rng(rng)
        self._rng = rng
        if not hasattr(action_finder, "actions"):
            raise ValueError(f"action_finder must have an actions(posvel) method, got {type(action_finder).__name__}")
        if selection is not None and not callable(selection):
            raise ValueError("selection must be callable (posvel -> probabilities) or None, got "
                             f"{type(selection).__name__}")
        if not safety >= 1.0:
            raise ValueError(f"safety must be >= 1, got {safety}")
        if not max_envelope_growth >= 1.0:
            raise ValueError(f"max_envelope_growth must be >= 1, got {max_envelope_growth}")
        if not 0 < mass_tail < 0.1:
            raise ValueError(f"mass_tail must be in (0, 0.1), got {mass_tail}")
        if int(n_pilot) < 0:
            raise ValueError(f"n_pilot must be >= 0, got {n_pilot}")
        if isinstance(azimuth_copies, bool) or int(azimuth_copies) != azimuth_copies or int(azimuth_copies) < 1:
            raise ValueError(f"azimuth_copies must be an integer >= 1, got {azimuth_copies!r}")
        self.azimuth_copies = int(azimuth_copies)
        if observer is not None and self.azimuth_copies != 1:
            raise ValueError(f"azimuth_copies must be 1 with heliocentric proposals (observer given), got "
                             f"{azimuth_copies}")
        if velocity_thinning and (observer is None or not getattr(selection, "velocity_thinning", False)):
            raise ValueError("velocity_thinning needs heliocentric proposals (observer) and a selection whose "
                             "velocity_thinning is True (a MagnitudeSelection of a BV23-chemistry population)")
        self.velocity_thinning = bool(velocity_thinning)
        self.pot, self.df, self.finder = potential, df, action_finder
        self.region: Optional[Region] = as_region(region)
        self.selection = selection
        self.safety = float(safety)
        self.max_growth = float(max_envelope_growth)
        self.n_pilot = int(n_pilot)
        self.max_proposals = int(max_proposals)
        self.batch_max = int(batch_max)
        self.name = getattr(df, "name", "") or type(df).__name__
        self.scales = scales if scales is not None else component_scales(potential, df, mass_tail,
                                                                         r_max_limit=r_max_limit)
        bounds = None
        if self.region is not None:
            Rmin, Rmax, zmin, zmax = self.region.bounds()
            azmin = 0.0 if zmin <= 0 <= zmax else min(abs(zmin), abs(zmax))
            azmax = max(abs(zmin), abs(zmax))
            bounds = (Rmin, Rmax, azmin, azmax)
            proposal_options.setdefault("n_R", 16)
            proposal_options.setdefault("n_z", 20)
        self.proposal = Proposal(potential, df, action_finder, rng, self.scales, bounds=bounds, density=density,
                                 **proposal_options)
        prop = self.proposal
        if self.region is not None:
            centre, half = self.region.phi_window(prop.cell_Ra, prop.cell_Rb, prop.cell_za, prop.cell_zb)
            half = np.asarray(half, dtype=np.float64)
            self._phic = np.asarray(centre, dtype=np.float64)
            self._half = np.where(half >= 0, np.minimum(half, np.pi), 0.0)
            self._frac = np.where(half >= 0, self._half / np.pi, 0.0)
        else:
            self._phic = self._half = None
            self._frac = np.ones(len(prop.cell_P))
        self.helio = None
        if observer is not None:
            from .helio import HeliocentricCells

            if isinstance(observer, HeliocentricCells):
                self.helio = observer
            else:
                from ...observe.frames import frame_matrices

                opts = dict(observer_options or {})
                d_sun = float(np.linalg.norm(frame_matrices(observer)["sun_position"]))
                self.helio = HeliocentricCells.for_solar(observer, opts.pop("d_max", self.scales.r_max + d_sun), **opts)

            self._helio_rho = _HelioDensity(density, prop)
            self.density_thinning = bool(density_thinning)
            P0, self._S_up, self._rho_up = self.helio.initial_probabilities(
                self._helio_rho, selection, bounds=None if region is None else region.bounds())
            self._epochs: List[_Epoch] = [self._make_helio_epoch(P0)]
        else:
            self._epochs = [self._make_epoch(prop.cell_P)]
        self._adapted = False
        self._raises = 0
        self._n_act = 0
        self._n_acc_raw = 0
        self._wmax_ratio = 0.0
        self._wmax_point = (np.full(6, np.nan), np.full(3, np.nan))
        self._store: List[tuple] = []  # (epoch index, posvel, actions, noise)
        self._n_noise = int(getattr(selection, "noise_columns", 3)) if self.velocity_thinning else 0
        self.time_setup = time.perf_counter() - t0
        self.time_sampling = 0.0

    def _make_epoch(self, P, phi_cdf=None, phi_logr=None):
        prop = self.proposal
        Pr = P * self._frac
        if not Pr.sum() > 0:
            raise ValueError(f"component {self.name!r}: the region does not overlap the sampling grid")
        cdf = np.cumsum(Pr)
        with np.errstate(divide="ignore"):
            logdens = np.log(P) - np.log(prop.cell_V)
        return _Epoch(cdf / cdf[-1], float(Pr.sum()), logdens, phi_cdf, phi_logr)

    def _make_helio_epoch(self, P):
        cdf = np.cumsum(P)
        cdf /= cdf[-1]
        return _Epoch(cdf, 1.0, None)

    def _helio_logq(self, ep, c):
        """log q_x of heliocentric cells c: log(P_c / V_c), P_c being the probability searchsorted gives the cell
        (the difference of the cdf)."""
        lo = np.where(c > 0, ep.cdf[np.maximum(c - 1, 0)], 0.0)
        with np.errstate(divide="ignore"):
            return np.log(ep.cdf[c] - lo) - self.helio.log_volume(c)

    # ------------------------------------------------------------------ proposals
    def _propose(self, n: int, rng):
        """About n proposals of the current epoch (azimuth copies included): (posvel, actions, weights,
        node-interval group, noise (see ``velocity_thinning``; (N, 0) without)), one row per proposal inside the
        region."""
        if self.helio is not None:
            return self._propose_helio(n, rng)
        prop = self.proposal
        ep = self._epochs[-1]
        K = self.azimuth_copies
        nb = -(-int(n) // K)  # (R, z, v) proposals
        c = np.minimum(np.searchsorted(ep.cdf, rng.random(nb), side="right"), len(ep.cdf) - 1)
        Ra, Rb = prop.cell_Ra[c], prop.cell_Rb[c]
        R = np.sqrt(Ra * Ra + rng.random(nb) * (Rb * Rb - Ra * Ra))
        az = prop.cell_za[c] + rng.random(nb) * (prop.cell_zb[c] - prop.cell_za[c])
        z = np.where(rng.random(nb) < 0.5, az, -az)
        u = rng.random((nb, K))
        grp = prop.cell_group[c]
        if ep.phi_cdf is None:
            jb = np.minimum((u * N_PHI).astype(np.int64), N_PHI - 1)
            logr = None
        else:
            # u from the group's piecewise-constant density over the window: bin j with probability p_j, uniform
            # inside it; the copy's proposal density is N_PHI p_j times the uniform one
            uu, jb, logr = np.empty((nb, K)), np.empty((nb, K), dtype=np.int64), np.empty((nb, K))
            SK.azimuth_bins(u, grp.astype(np.int64), ep.phi_cdf, ep.phi_logr, uu, jb, logr)
            u = uu
        if self._half is not None:
            phi = self._phic[c][:, None] + self._half[c][:, None] * (2 * u - 1)
        else:
            phi = 2 * np.pi * u
        cphi, sphi = np.cos(phi), np.sin(phi)
        ep.n_x_tried += nb * K
        if self.region is not None:
            inside = self.region.contains(np.column_stack([(R[:, None] * cphi).ravel(), (R[:, None] * sphi).ravel(),
                                                           np.repeat(z, K)])).reshape(nb, K)
            ep.n_x_ok += int(inside.sum())
            keep = inside.any(axis=1)
            if not keep.all():
                R, az, z, c, cphi, sphi, inside, jb = (R[keep], az[keep], z[keep], c[keep], cphi[keep], sphi[keep],
                                                       inside[keep], jb[keep])
                if logr is not None:
                    logr = logr[keep]
        else:
            ep.n_x_ok += nb * K
            inside = None
        m = len(R)
        v, lqv, ok_b = self._velocities(R, az, z, rng)
        vR, vz, vphi = v[:, 0], v[:, 1], v[:, 2]
        # copies (rows of the output), grouped by base proposal
        if inside is None:
            b = np.repeat(np.arange(m), K)
            cp, sp = cphi.ravel(), sphi.ravel()
            jc = jb.ravel()
            lr = logr.ravel() if logr is not None else None
        else:
            b, kk = np.nonzero(inside)
            cp, sp = cphi[b, kk], sphi[b, kk]
            jc = jb[b, kk]
            lr = logr[b, kk] if logr is not None else None
        Rb_, vRb, vphib = R[b], vR[b], vphi[b]
        posvel = np.column_stack([Rb_ * cp, Rb_ * sp, z[b], vRb * cp - vphib * sp, vRb * sp + vphib * cp, vz[b]])
        lq = ep.logdens[c[b]] + lqv[b]
        if lr is not None:
            lq = lq + lr
        J, w = self._weights(posvel, ok_b[b], b, m, lq)
        return posvel, J, w, prop.cell_group[c[b]] * N_PHI + jc, np.empty((len(w), 0))

    def _velocities(self, R, az, z, rng):
        """Velocities (vR, vz, vphi) (m, 3) from the local velocity proposal at (R, z), their log proposal density
        and whether each is bound (below the escape speed of the grid, prograde if the DF requires it)."""
        prop = self.proposal
        m = len(R)
        mom = prop.local_moments(R, az)
        mom[:, 4] = np.where(z < 0, -mom[:, 4], mom[:, 4])  # <vR vz> is odd in z
        Phi = prop.pot._phi(R, z)
        vesc = np.sqrt(np.maximum(2 * (prop.phi_out - Phi), 0.0))
        v = np.empty((m, 3))
        lqv = np.empty(m)
        SK.propose_velocities(mom, vesc, prop.inflate, T_NU, prop.kap, prop.eps_v,
                              rng.standard_normal((m, 3)), rng.chisquare(T_NU, m), rng.random(m),
                              rng.standard_normal((m, 3)), rng.random(m), v, lqv)
        vR, vz, vphi = v[:, 0], v[:, 1], v[:, 2]
        ok_b = (vesc > 0) & (vR * vR + vz * vz + vphi * vphi < vesc * vesc)
        if self.df.prograde_only:
            ok_b &= vphi * R > 0
        return v, lqv, ok_b

    def _weights(self, posvel, ok, b, m, lq, S=None):
        """Actions and weights w = f(J) S / q of proposal rows ``posvel`` (copies b of m base proposals, ``ok``:
        bound), ``lq`` = log q of each row; the actions are computed once per base proposal (from its first row
        with S > 0: J does not depend on the azimuth)."""
        ok = ok.copy()
        M = len(b)
        if S is not None:
            ok &= S > 0
        elif self.selection is None or not ok.any():
            S = np.ones(M)
        else:
            S = np.ones(M)
            s_ok = np.asarray(self.selection(posvel[ok]), dtype=np.float64)
            if s_ok.shape != (int(ok.sum()),) or not np.all((s_ok >= 0) & (s_ok <= 1)):
                raise ValueError("selection(posvel) must return probabilities in [0, 1] of shape (N,)")
            S[ok] = s_ok
            ok &= S > 0
        rows = np.flatnonzero(ok)
        rows = rows[np.r_[True, b[rows][1:] != b[rows][:-1]]] if len(rows) else rows
        Jb = np.full((m, 3), np.nan)
        fb = np.zeros(m)
        if len(rows):
            ib = b[rows]
            Jr = self.finder.actions(posvel[rows])
            Jb[ib] = Jr
            good = np.all(np.isfinite(Jr), axis=1)
            fv = np.zeros(len(rows))
            if good.any():
                fv[good] = self.df(Jr[good])
            fb[ib] = np.where(np.isfinite(fv) & (fv > 0), fv, 0.0)
        self._n_act += len(rows)
        f = np.where(ok, fb[b], 0.0)
        with np.errstate(over="ignore"):
            w = np.where(f > 0, f * S * np.exp(-lq), 0.0)
        return Jb[b], w

    def _propose_helio(self, n: int, rng):
        """n heliocentric proposals (see :mod:`.helio`): (posvel, actions, weights, cell, noise), one row per
        proposal inside the region."""
        H = self.helio
        ep = self._epochs[-1]
        nb = int(n)
        # sorted uniforms: the same multiset of cells, found ~7x faster in a table of millions of cells (each
        # search starts where the previous one ended); then shuffled, because the accepted points must come out in
        # random order (sample() returns the first n of them)
        c = np.minimum(np.searchsorted(ep.cdf, np.sort(rng.random(nb)), side="right"), len(ep.cdf) - 1)
        c = c[rng.permutation(nb)]
        xyz = H.draw(c, rng)
        ep.n_x_tried += nb
        if self.region is not None:
            inside = self.region.contains(xyz)
            ep.n_x_ok += int(inside.sum())
            xyz, c = xyz[inside], c[inside]
        else:
            ep.n_x_ok += nb
        m = len(c)
        # thinning before the velocities and actions, which are spent on the survivors only (see the module
        # docstring): a position is kept with probability a1 = rho(x) / rho_up(c), then a2 = S(x) / S_up(c); a survivor
        # weighs f S / (q a1 a2), i.e. its selection factor becomes S / (a1 a2). A factor whose bound a probe missed
        # (a > 1, or a density that is not positive) is 1: that point is not thinned by it. Unbiased in every case.
        if m and not self.density_thinning:
            a1 = np.ones(m)
            k1 = np.arange(m)
        elif m:
            g = self._helio_rho(np.hypot(xyz[:, 0], xyz[:, 1]), xyz[:, 2])
            gu = self._rho_up[c].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                a1 = np.where((g > 0) & np.isfinite(g) & (g < gu), g / np.where(gu > 0, gu, 1.0), 1.0)
            k1 = np.flatnonzero(rng.random(m) < a1)
        else:
            a1 = np.empty(0)
            k1 = np.empty(0, dtype=np.int64)
        S = np.zeros(m)
        mu = None
        if self.selection is not None and len(k1):
            pv0 = np.zeros((len(k1), 6))
            pv0[:, :3] = xyz[k1]
            if self.velocity_thinning:  # S and the state the second factor needs (mu = DM + A)
                s_v, mu_v = self.selection.evaluate(pv0)
                mu = np.full(m, np.nan)
                mu[k1] = mu_v
            else:
                s_v = self.selection(pv0)
            s_v = np.asarray(s_v, dtype=np.float64)
            if s_v.shape != (len(k1),) or not np.all((s_v >= 0) & (s_v <= 1)):
                raise ValueError("selection(posvel) must return probabilities in [0, 1] of shape (N,)")
            su = self._S_up[c[k1]].astype(np.float64)
            a2 = np.where(s_v < su, s_v / np.where(su > 0, su, 1.0), 1.0)
            keep2 = (s_v > 0) & (rng.random(len(k1)) < a2)
            S[k1[keep2]] = s_v[keep2] / (a1[k1[keep2]] * a2[keep2])
        elif len(k1):
            S[k1] = 1.0 / a1[k1]
        live = np.flatnonzero(S > 0)
        posvel = np.zeros((m, 6))
        posvel[:, :3] = xyz
        x, y, z = xyz[live, 0], xyz[live, 1], xyz[live, 2]
        R = np.hypot(x, y)
        with np.errstate(invalid="ignore", divide="ignore"):
            cp = np.where(R > 0, x / R, 1.0)
            sp = np.where(R > 0, y / R, 0.0)
        v, lqv, ok = self._velocities(R, np.abs(z), z, rng)
        vR, vz, vphi = v[:, 0], v[:, 1], v[:, 2]
        posvel[live, 3] = vR * cp - vphi * sp
        posvel[live, 4] = vR * sp + vphi * cp
        posvel[live, 5] = vz
        n_live = len(live)
        S_live = S[live]
        noise = np.zeros((m, self._n_noise))
        if self.velocity_thinning and n_live:
            # the second factor a of the target f S a, known once the velocity is: thinned before the actions
            a, nz = self.selection.draw_velocity_factor(posvel[live], rng, None if mu is None else mu[live])
            noise[live] = nz
            S_live = np.where(rng.random(n_live) < a, S_live, 0.0)
        J = np.full((m, 3), np.nan)
        w = np.zeros(m)
        J[live], w[live] = self._weights(posvel[live], ok, np.arange(n_live), n_live,
                                         self._helio_logq(ep, c[live]) + lqv, S_live)
        return posvel, J, w, c, noise

    # ------------------------------------------------------------------ rejection loop
    def _accept(self, posvel, J, w, rng, noise=None):
        ep = self._epochs[-1]
        ie = len(self._epochs) - 1
        n = len(w)
        ep.n_prop += n
        ep.sw += float(w.sum())
        ep.sw2 += float(np.dot(w, w))
        wmax = float(w.max()) if n else 0.0
        if wmax <= 0:
            return
        if ep.envelope is None:
            ep.envelope = self.safety * wmax
            ep.cap = self.max_growth * ep.envelope
        elif wmax > ep.envelope and ep.envelope < ep.cap:
            new = min(self.safety * wmax, ep.cap)
            keep_p = ep.envelope / new
            for i, (e, pv, JJ, X) in enumerate(self._store):
                if e == ie:
                    k = rng.random(len(pv)) < keep_p
                    self._store[i] = (e, pv[k], JJ[k], X[k])
            log.debug("%s: envelope raised from %.4g to %.4g (thinning %.3g)", self.name, ep.envelope, new, keep_p)
            ep.envelope = new
            self._raises += 1
        ratio = wmax / ep.envelope
        if ratio > self._wmax_ratio:
            i = int(np.argmax(w))
            self._wmax_ratio = ratio
            self._wmax_point = (posvel[i].copy(), J[i].copy())
        if wmax > ep.envelope:
            ep.clipped += float(np.sum(np.maximum(w - ep.envelope, 0.0)))
        acc = rng.random(n) * ep.envelope < w
        self._n_acc_raw += int(acc.sum())
        self._store.append((ie, posvel[acc], J[acc],
                            noise[acc] if noise is not None else np.empty((int(acc.sum()), self._n_noise))))

    def _n_stored(self) -> int:
        return sum(len(st[1]) for st in self._store)

    def _n_prop(self) -> int:
        return sum(e.n_prop for e in self._epochs)

    def _draw(self, n_proposals: int, rng) -> None:
        left = int(n_proposals)
        while left > 0:
            nb = min(left, self.batch_max)
            pv, J, w, g, X = self._propose(nb, rng)
            if not self._adapted:
                if self.helio is not None:  # (R, |z|) of the proposals with f S > 0: adapted per node interval
                    k = w > 0
                    self._pilot_groups.append(np.column_stack([np.hypot(pv[k, 0], pv[k, 1]), np.abs(pv[k, 2])]))
                    self._pilot_w.append(w[k])
                else:
                    self._pilot_groups.append(g)
                    self._pilot_w.append(w)
            self._accept(pv, J, w, rng, X)
            left -= nb

    def _adapt(self) -> None:
        """Adapt the position proposal to the pilot weights (see the class docstring).

        Per node-interval group g and azimuth bin j (N_PHI bins of the azimuth window) the largest pilot weight
        m_gj is taken (the group's maximum where a bin was seen fewer than 30 times, at least 2 % of the group's
        largest bin: a defensive floor). The azimuth proposal of group g becomes p_gj proportional to m_gj, and
        the cells of group g are proposed in proportion to their initial probability times mean_j m_gj (the
        largest weight left after the azimuth adaptation). Without a selection or region the weights do not
        depend on azimuth and this reduces to the group maxima with uniform azimuths.
        """
        if self.helio is not None:
            return self._adapt_helio()
        prop = self.proposal
        code, w = self._take_pilot(np.empty(0, dtype=np.int64))
        if not w.max(initial=0.0) > 0:
            return
        wmax = float(w.max())
        ng = prop.n_groups
        cnt = np.bincount(code, minlength=ng * N_PHI).reshape(ng, N_PHI)
        m = np.zeros(ng * N_PHI)
        np.maximum.at(m, code, w)
        m = m.reshape(ng, N_PHI)
        mg = m.max(axis=1)
        # groups seen too rarely keep the global maximum (safe: they are proposed more, not less)
        mg = np.where(cnt.sum(axis=1) >= 30, mg, wmax)
        mg = np.maximum(mg, 1e-3 * wmax)
        m = np.where(cnt >= 30, m, mg[:, None])
        m = np.clip(m, 0.02 * mg[:, None], mg[:, None])
        p = m / m.sum(axis=1, keepdims=True)
        phi_cdf = np.cumsum(p, axis=1)
        phi_cdf[:, -1] = 1.0
        phi_logr = np.log(p * N_PHI)
        P = prop.cell_P * m.mean(axis=1)[prop.cell_group]
        self._epochs.append(self._make_epoch(P / P.sum(), phi_cdf, phi_logr))

    def _take_pilot(self, empty):
        """The collected pilot groups (or positions) and weights, concatenated; ends the pilot."""
        g = np.concatenate(self._pilot_groups) if self._pilot_groups else empty
        w = np.concatenate(self._pilot_w) if self._pilot_w else np.empty(0)
        self._pilot_groups, self._pilot_w = [], []
        self._adapted = True
        return g, w

    def _adapt_helio(self) -> None:
        """Adapt the heliocentric cell probabilities to the pilot weights.

        The weights left after the thinning ((f / rho) rho_up S_up / q, or f S_up / q without density thinning) vary
        mostly with how well the velocity proposal fits f, a smooth function of (R, |z|): per node interval g of the Galactocentric grid the largest pilot
        weight m_g is taken (the global largest where g was proposed fewer than 30 times, at least 1e-3 of it), and
        cell c is proposed in proportion to P_c max_k m_g(x_k) over its probe points (:meth:`.helio.
        HeliocentricCells.probe_points`).
        """
        H, prop = self.helio, self.proposal
        pv, w = self._take_pilot(np.empty((0, 2)))
        if not w.max(initial=0.0) > 0:
            return
        wmax = float(w.max())
        ng = prop.n_groups
        g = self._node_interval(pv[:, 0], pv[:, 1])
        cnt = np.bincount(g, minlength=ng)
        m = np.zeros(ng)
        np.maximum.at(m, g, w)
        m = np.where(cnt >= 30, m, wmax)
        m = np.maximum(m, 1e-3 * wmax)
        fac = np.empty((H.n_d, H.n_sky))
        for sh in range(H.n_d):
            xyz = H.probe_points(sh)
            gg = self._node_interval(np.hypot(xyz[..., 0], xyz[..., 1]), np.abs(xyz[..., 2]))
            fac[sh] = m[gg].max(axis=0)
        ep0 = self._epochs[-1]  # the epoch the pilot weights were drawn from
        P = np.diff(np.concatenate([[0.0], ep0.cdf])) * fac.ravel()
        ep0.cdf = None  # its cell table is not used again (memory)
        self._epochs.append(self._make_helio_epoch(P / P.sum()))

    def _node_interval(self, R, az):
        """Index of the node interval of the Galactocentric grid holding points (R, |z|)."""
        prop = self.proposal
        iu = np.clip(((np.arcsinh(R / prop.Rs) - prop.u0) / prop.du).astype(np.int64), 0, prop.nu_ - 2)
        it = np.clip(((np.arcsinh(az / prop.zs) - prop.t0) / prop.dt).astype(np.int64), 0, prop.nt_ - 2)
        return iu * (prop.nt_ - 1) + it

    def prepare(self, n_pilot: Optional[int] = None, rng=None) -> None:
        """Run the pilot epoch (if not done yet) and adapt the proposal.

        Parameters
        ----------
        n_pilot : int, optional
            Pilot proposals (default the ``n_pilot`` given at construction).
        rng : int, numpy.random.Generator or None
            Default: the generator given at construction.
        """
        if self._adapted:
            return
        rng = self._rng if rng is None else np.random.default_rng(rng)
        t0 = time.perf_counter()
        self._pilot_groups, self._pilot_w = [], []
        npil = self.n_pilot if n_pilot is None else int(n_pilot)
        self._draw(npil, rng)
        self._adapt()
        self.time_sampling += time.perf_counter() - t0

    def fork(self) -> "ComponentSampler":
        """An independent sampler continuing from this one's current state.

        The copy shares the immutable parts (potential, DF, action finder, proposal grid, selection) and owns
        copies of the mutable ones (epochs with their envelopes and mass accumulators, counters); its store of
        accepted points is empty. Forking one prepared sampler per chunk of a run makes every chunk start from
        the same state, whatever process or order the chunks run in (:mod:`mocksky.parallel`).

        Returns
        -------
        ComponentSampler
        """
        new = copy.copy(self)
        new._epochs = [copy.copy(e) for e in self._epochs]
        new._store = []
        new._pilot_groups, new._pilot_w = [], []
        return new

    def counters(self) -> dict:
        """Running totals: proposals, accepted points, action evaluations, envelope raises, and the sums of the
        weights and squared weights (over all epochs)."""
        return {"n_proposals": self._n_prop(), "n_accepted": self._n_acc_raw, "n_actions": self._n_act,
                "envelope_raises": self._raises, "sum_w": float(sum(e.sw for e in self._epochs)),
                "sum_w2": float(sum(e.sw2 for e in self._epochs))}

    def run(self, n_proposals: int, rng=None) -> None:
        """Draw ``n_proposals`` more proposals (updating the mass estimate and the accepted points).

        Parameters
        ----------
        n_proposals : int
            Number of positions drawn before the region test.
        rng : int, numpy.random.Generator or None
            Default: the generator given at construction.
        """
        rng = self._rng if rng is None else np.random.default_rng(rng)
        self.prepare(rng=rng)
        t0 = time.perf_counter()
        self._draw(n_proposals, rng)
        self.time_sampling += time.perf_counter() - t0

    def sample(self, n: int, rng=None, return_noise: bool = False):
        """Exactly ``n`` points drawn from f (times the selection, inside the region).

        Parameters
        ----------
        n : int
            Number of points.
        rng : int, numpy.random.Generator or None
            Default: the generator given at construction.
        return_noise : bool
            Also return each point's random numbers of the second selection factor (``velocity_thinning``).

        Returns
        -------
        posvel : numpy.ndarray, shape (n, 6)
            [kpc, km/s].
        actions : numpy.ndarray, shape (n, 3)
            [kpc km/s].
        noise : numpy.ndarray, shape (n, k) or (n, 0)
            Only with ``return_noise``: the numbers the selection's ``draw_velocity_factor`` returned for each point
            (k = its ``noise_columns``, 4 for :class:`mocksky.populate.MagnitudeSelection`: n1, n2, u, mu); (n, 0)
            without ``velocity_thinning``.

        Raises
        ------
        RuntimeError
            If ``max_proposals`` proposals do not yield n points (the message gives the acceptance).
        """
        rng = self._rng if rng is None else np.random.default_rng(rng)
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return (np.empty((0, 6)), np.empty((0, 3))) + ((np.empty((0, self._n_noise)),) if return_noise else ())
        if not self._adapted:
            self.prepare(int(np.clip(4 * n, 20000, self.n_pilot)), rng)
        t0 = time.perf_counter()
        while self._n_stored() < n:
            ep = self._epochs[-1]
            need = n - self._n_stored()
            nprop = self._n_prop()
            rate = self._n_acc_raw / nprop if self._n_acc_raw > 0 else 0.05
            rate_x = ep.n_x_ok / ep.n_x_tried if ep.n_x_ok > 0 else 1.0
            nb = int(1.15 * need / max(rate * rate_x, 1e-4)) + 2000
            nb = int(np.clip(nb, 20000, self.batch_max))
            if nprop + nb > self.max_proposals:
                raise RuntimeError(
                    f"component {self.name!r}: {nprop} proposals gave only {self._n_stored()} of {n} points "
                    f"(acceptance {rate:.3g}, region fraction {rate_x:.3g}); raise max_proposals or check the "
                    "proposal (region outside the component?)")
            self._draw(nb, rng)
        pv = np.concatenate([st[1] for st in self._store]) if self._store else np.empty((0, 6))
        J = np.concatenate([st[2] for st in self._store]) if self._store else np.empty((0, 3))
        X = np.concatenate([st[3] for st in self._store]) if self._store else np.empty((0, self._n_noise))
        # the stored points are independent draws: return the first n, keep (copies of) the rest, so that the store
        # does not hold the whole concatenation alive next to the returned points
        ie = len(self._epochs) - 1
        self._store = [(ie, pv[n:].copy(), J[n:].copy(), X[n:].copy())]
        self.time_sampling += time.perf_counter() - t0
        if return_noise:
            return pv[:n], J[:n], X[:n]
        return pv[:n], J[:n]

    # ------------------------------------------------------------------ estimates
    def mass_estimate(self):
        """Importance-sampling estimate of the sampled mass and its standard error [Msun].

        Returns
        -------
        (float, float)
            M_hat (average of the epochs' estimates Z <w>, weighted by their numbers of proposals) and
            its standard error.
        """
        restricted = self.region is not None
        n = np.array([e.n_prop for e in self._epochs], dtype=np.float64)
        if not n.sum() > 0:
            return float("nan"), float("nan")
        est = [e.mass(restricted) for e in self._epochs]
        m = np.array([x[0] if e.n_prop else 0.0 for x, e in zip(est, self._epochs)])
        v = np.array([x[1] if e.n_prop else 0.0 for x, e in zip(est, self._epochs)])
        a = n / n.sum()
        return float(np.sum(a * m)), float(math.sqrt(np.sum(a * a * v)))

    @property
    def region_fraction(self):
        """Z: probability of the region under the position proposal of the last epoch with proposals
        (1 without a region)."""
        used = [e for e in self._epochs if e.n_x_tried > 0]
        ep = used[-1] if used else self._epochs[-1]
        return ep.region_fraction(self.region is not None)[0]

    def diagnostics(self, n_particles: int = 0, particle_mass: float = float("nan")) -> ComponentDiagnostics:
        """Current :class:`ComponentDiagnostics`."""
        M, sM = self.mass_estimate()
        nprop = max(self._n_prop(), 1)
        sw = sum(e.sw for e in self._epochs)
        used = [e for e in self._epochs if e.n_prop > 0]
        ep = used[-1] if used else self._epochs[-1]
        ess = ep.sw ** 2 / (ep.n_prop * ep.sw2) if ep.sw2 > 0 else float("nan")
        sc = self.scales
        return ComponentDiagnostics(
            name=self.name, n_particles=int(n_particles), particle_mass=float(particle_mass),
            mass_df=float(getattr(self.df, "mass", float("nan"))), mass_estimate=M, mass_error=sM,
            region_fraction=float(self.region_fraction), n_proposals=self._n_prop(), n_actions=self._n_act,
            acceptance=self._n_acc_raw / nprop, ess_fraction=ess,
            envelope=float(ep.envelope) if ep.envelope else float("nan"),
            max_weight_ratio=self._wmax_ratio, envelope_raises=self._raises,
            clipped_fraction=sum(e.clipped for e in self._epochs) / sw if sw > 0 else 0.0,
            max_weight_posvel=self._wmax_point[0].tolist(), max_weight_actions=self._wmax_point[1].tolist(),
            n_setup_actions=int(self.proposal.n_actions_setup), time_setup=self.time_setup,
            time_sampling=self.time_sampling,
            scales={"R_s": sc.R_s, "z_s": sc.z_s, "R_mid": sc.R_mid, "r_max": sc.r_max})


def allocate_counts(n: int, weights: Sequence[float]) -> np.ndarray:
    """Split ``n`` into integers proportional to ``weights`` (largest-remainder rounding).

    Raises
    ------
    ValueError
        If n < 0 or the weights are negative, non-finite or all zero.
    """
    w = np.asarray(weights, dtype=np.float64)
    if n < 0 or w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"allocate_counts: need n >= 0 and finite non-negative weights with a positive sum, got "
                         f"n={n}, weights={w}")
    exact = n * w / w.sum()
    base = np.floor(exact).astype(np.int64)
    rest = int(n - base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return base


def _per_component(value, dfs, what):
    if value is None:
        return [None] * len(dfs)
    if isinstance(value, dict):
        names = [getattr(d, "name", "") for d in dfs]
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what}: unknown component name(s) {sorted(unknown)}; components are {names}")
        return [value.get(nm) for nm in names]
    value = list(value)
    if len(value) != len(dfs):
        raise ValueError(f"{what}: need one entry per DF ({len(dfs)}), got {len(value)}")
    return value


def sample_particles(potential, dfs, action_finder, n, *, densities=None, region=None,
                     selection: Optional[Callable] = None, rng=None, particle_mass: str = "auto",
                     **options) -> Particles:
    """Sample N particles from a composite DF in a potential.

    Parameters
    ----------
    potential : Potential
        The (self-consistent or fixed) potential the DFs live in.
    dfs : DistributionFunction or sequence of them
        Components; ``name`` labels them.
    action_finder : object
        ``actions(posvel) -> (N, 3)`` for ``potential``.
    n : int or sequence of int
        Total number of particles, split between components in proportion to their masses (DF
        masses; with a region or selection, the estimated masses inside/selected), or one count
        per component.
    densities : sequence or dict of density objects, optional
        Per-component densities with ``_density(R, z)`` [Msun/kpc^3] used for the position proposals
        (None entries: estimated from the DF on the grid).
    region : Region or dict, optional
        Sample only inside this region (:mod:`.regions`), e.g. ``Sphere((8.27, 0, 0), 3)``.
    selection : callable, optional
        ``selection(posvel) -> probabilities (N,)`` in [0, 1] weighting the DF.
    rng : int, numpy.random.Generator or None
        Seed or generator (the whole run is reproducible given it).
    particle_mass : {'auto', 'df', 'estimate'}
        'df': M_DF / N_k; 'estimate': M_hat / N_k; 'auto': 'df' without region and selection,
        else 'estimate'.
    **options
        Passed to :class:`ComponentSampler` (n_pilot, safety, max_envelope_growth, mass_tail,
        r_max_limit, max_proposals, batch_max, n_R, n_z, refine, inflate, eps_v, eps_x, n_is, n_rounds,
        scale_mixture). With a region or selection, the pilots (``n_pilot`` proposals per component)
        estimate the masses before the counts are allocated; their accepted points are part of the
        sample.

    Returns
    -------
    Particles
        Components in the order of ``dfs``; within a component the particles are in random order
        and have equal masses.

    Raises
    ------
    ValueError
        Bad arguments (named).
    """
    rng = np.random.default_rng(rng)
    if not isinstance(dfs, (list, tuple)):
        dfs = [dfs]
    if not dfs:
        raise ValueError("dfs: need at least one DF")
    if particle_mass not in ("auto", "df", "estimate"):
        raise ValueError(f"particle_mass must be 'auto', 'df' or 'estimate', got {particle_mass!r}")
    region = as_region(region)
    dens = _per_component(densities, dfs, "densities")
    restricted = region is not None or selection is not None
    mode = particle_mass if particle_mass != "auto" else ("estimate" if restricted else "df")
    samplers = []
    for df, d in zip(dfs, dens):
        samplers.append(ComponentSampler(potential, df, action_finder, density=d, region=region, selection=selection,
                                         rng=rng, **options))
    if np.ndim(n) == 0:
        if restricted or mode == "estimate":
            for s in samplers:
                s.prepare(rng=rng)
            weights = [max(s.mass_estimate()[0], 0.0) for s in samplers]
        else:
            weights = [float(df.mass) for df in dfs]
        counts = allocate_counts(int(n), weights)
    else:
        counts = np.asarray(_per_component(n, dfs, "n"), dtype=np.int64)
        if np.any(counts < 0):
            raise ValueError(f"n: per-component counts must be >= 0, got {counts.tolist()}")
    pvs, Js, ms, comps, diags = [], [], [], [], []
    for k, (s, nk) in enumerate(zip(samplers, counts)):
        pv, J = s.sample(int(nk), rng) if nk > 0 else (np.empty((0, 6)), np.empty((0, 3)))
        Mk = s.mass_estimate()[0] if mode == "estimate" else float(s.df.mass)
        mk = Mk / nk if nk > 0 else float("nan")
        pvs.append(pv)
        Js.append(J)
        ms.append(np.full(len(pv), mk))
        comps.append(np.full(len(pv), k, dtype=np.int32))
        diags.append(s.diagnostics(int(nk), mk))
        d = diags[-1]
        log.info("sampled %s: %d particles, acceptance %.3f, ESS fraction %.3f, M_hat/M_df = %.4f +- %.4f, "
                 "%.2f s setup + %.2f s sampling", d.name, d.n_particles, d.acceptance, d.ess_fraction,
                 d.mass_estimate / d.mass_df, d.mass_error / d.mass_df, d.time_setup, d.time_sampling)
    meta = {"region": region.describe() if region is not None else None,
            "selection": getattr(selection, "__name__", repr(selection)) if selection is not None else None,
            "particle_mass": mode}
    return Particles(np.concatenate(pvs), np.concatenate(ms), np.concatenate(comps), np.concatenate(Js),
                     tuple(s.name for s in samplers), diags, meta)


def sampling_finder(model):
    """The action finder used to sample a model: its potential's interpolated Stäckel fudge, built once and kept on
    the model.

    The exact fallback (nearly radial orbits and energies outside the tables: 60% of the bulge's and 48% of the
    stellar halo's action evaluations in the ``gaia_dr3_starcounts`` recipe) uses Gauss-Legendre order 8 instead of
    12: 16% faster per point for quadrature errors of ~2e-5 of Jr + Jz + |Jphi| at the 99th percentile (see
    :class:`~mocksky.model.actions.InterpolatedStaeckelFudge`, ``n_quad_exact``).

    Parameters
    ----------
    model : GalaxyModel

    Returns
    -------
    InterpolatedStaeckelFudge
    """
    cached = getattr(model, "_sampling_finder", None)
    if cached is None:
        from ..actions import InterpolatedStaeckelFudge

        cached = InterpolatedStaeckelFudge(model.potential, n_quad_exact=8)
        model._sampling_finder = cached
    return cached


def sample_galaxy_model(model, n, components: Optional[Sequence[str]] = None, action_finder="interpolated",
                        **kwargs) -> Particles:
    """Sample particles from a self-consistent model (:class:`mocksky.model.galaxy.GalaxyModel`).

    Uses the model's converged potential, its action finder, the DFs of the chosen components and
    their interpolated self-consistent densities for the position proposals.

    Parameters
    ----------
    model : GalaxyModel
        Any object with ``potential``, ``action_finder()`` and ``components`` (items with ``name``,
        ``is_df``, ``df`` and ``density``).
    n : int or sequence of int
        Total number of particles (split by mass) or one count per chosen component.
    components : sequence of str, optional
        DF component names (case-insensitive; default: every DF component, in model order).
    action_finder : {"interpolated", "model"} or action finder, optional
        ``"interpolated"`` (default): an :class:`~mocksky.model.actions.InterpolatedStaeckelFudge` of the
        converged potential, built once and kept on the model (median errors 5e-4 in Jr and 1e-4 in Jz
        against the exact fudge, p99 0.5%: far below the DF's variation across a particle's
        neighbourhood, and ~4x faster); ``"model"``: the model's own finder (exact fudge unless the
        INI asks for interpolation); or any object with ``actions(posvel)``.
    **kwargs
        Passed to :func:`sample_particles` (rng, region, selection, particle_mass, sampler options).

    Returns
    -------
    Particles

    Raises
    ------
    ValueError
        Unknown component names or static (DF-less) components requested.
    """
    comps = [c for c in model.components if getattr(c, "is_df", False)]
    if components is not None:
        wanted = [str(nm).lower() for nm in components]
        by_name = {c.name.lower(): c for c in model.components}
        bad = [nm for nm in wanted if nm not in by_name or not getattr(by_name[nm], "is_df", False)]
        if bad:
            raise ValueError(f"components {bad} are not DF components of the model; DF components: "
                             f"{[c.name for c in comps]}")
        comps = [by_name[nm] for nm in wanted]
    if not comps:
        raise ValueError("the model has no DF components to sample")
    if isinstance(action_finder, str):
        if action_finder == "model":
            action_finder = model.action_finder()
        elif action_finder == "interpolated":
            action_finder = sampling_finder(model)
        else:
            raise ValueError(f"action_finder must be 'interpolated', 'model' or an action finder, got {action_finder!r}")
    return sample_particles(model.potential, [c.df for c in comps], action_finder, n,
                            densities=[getattr(c, "density", None) for c in comps], **kwargs)
