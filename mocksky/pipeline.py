"""``mocksky run``: execute a catalogue recipe (:mod:`mocksky.recipe`) end to end, in chunks.

A run is a **plan** and a fixed list of **chunks**.

Plan (in the driver, deterministic given the seed): the model (:meth:`~mocksky.model.galaxy.GalaxyModel.
load_or_build`), then per stellar component a :class:`~mocksky.model.sampling.ComponentSampler` (weighted by
:class:`~mocksky.populate.MagnitudeSelection` in magnitude mode) whose pilot epoch and adapted proposal are run once
(:meth:`~mocksky.model.sampling.ComponentSampler.prepare`, then more proposals of the adapted epoch to set its envelope
and refine the importance-sampling mass estimate M_hat), the number of points of the component and its split into
chunks of at most ``[run] chunk_points`` points. Components are planned independently (each from its own spawned
seed), one per core at a time in threads. The chunk list depends on the recipe, seed and scale only, never on
the number of workers.

Chunk k (:func:`run_chunk`): its randomness is ``numpy.random.SeedSequence(seed).spawn(n_chunks)[k]``
(:func:`chunk_seed`), spawned further per stage; it samples its points from a fork of the prepared sampler
(:meth:`~mocksky.model.sampling.ComponentSampler.fork`: every chunk starts from the same sampler state) ->
:func:`~mocksky.populate.populate` -> :func:`~mocksky.observe.observe` -> the magnitude limit on the extincted true
magnitude -> survey selection (:mod:`mocksky.select`) -> the recipe's output columns -> part k of the dataset
(:func:`~mocksky.catalogue.write_part`, written under a temporary name and renamed). The bytes of part k therefore
depend on the plan and k only: the catalogue is bit-identical for any number of workers, processes or threads
(:mod:`mocksky.parallel` runs the chunks in process or on a Dask cluster).

Then the manifest (:func:`~mocksky.catalogue.write_manifest`: row counts, sizes, SHA-256), the comparison stage
(:mod:`mocksky.compare`) on the dataset, and ``summary.json`` (with the totals: stars generated, kept, seconds,
stars/s). The catalogue is the directory ``out_dir/<output.name>/`` (parts ``part-NNNNN.<ext>`` and
``manifest.json``), which :func:`~mocksky.catalogue.open_vaex` opens as one table and
:func:`~mocksky.catalogue.read_catalogue` reads with h5py/pyarrow/astropy.

Resuming: ``out_dir/<output.name>/.state/`` holds ``run.json`` (the fingerprint: recipe text, seed, scale, mocksky
version and code hash (:func:`code_sha256`), model file hash, chunk list) and one ``chunk-NNNNN.json`` per finished
part (written after the part's rename, with its size and SHA-256). Re-running with the same out_dir, recipe text,
seed and scale skips the parts whose record matches the file on disk (size and checksum), and redoes the others
(missing, never recorded, truncated or corrupted parts; temporary files of a killed run are removed). A different
recipe, seed, scale or code in the same directory is refused unless ``overwrite=True``, which starts afresh.

Completeness of the magnitude-limited sample: points are sampled and populated with a lower bound of the extinction
in the limit band (:func:`extinction_floor`: the dust map's A0 times the smallest A_band/A0 over Teff), so every star
that can pass the limit after its own extinction is generated, and the limit is applied after the observe stage to
the extincted magnitude ``<band>_true``.

``scale`` in (0, 1] generates a random fraction ``scale`` of the stars of the full mock (each point's stellar mass is
multiplied by ``scale``, and ``scale`` times fewer points are sampled): counts of a scaled run estimate ``scale`` times
the full counts. The number of points per component is capped at ``[sample] max_points`` (times ``scale``); when the
cap binds, the component becomes an importance-weighted mock: its points are every proposal kept by rejection control
(:mod:`mocksky.model.sampling.weighted`, unequal masses) and each becomes one star carrying its expected number of
stars in the column ``weight`` (``populate(overflow='weight')``); weighted sums estimate counts, and the comparison
stage weights by it. Rows of uncapped components have ``weight = 1``. ``[sample] method = "weighted"`` makes every
component importance-weighted with ``max_points`` points (much faster than rejection for a peaked selection).

Giants: a recipe cut ``{type = "range", column = "logg", max = X}`` in magnitude mode restricts the generated stars
to log g <= X (:func:`giant_limit`); the survey's sky footprint (:meth:`mocksky.select.SelectionFunction.footprint`,
e.g. APOGEE's fields) multiplies the sampler's selection, so points go only where stars can be selected.

[M/H] thinning: with heliocentric proposals and a BV23 chemistry, each position's proposal is also thinned, once its
velocity is drawn and before its actions are computed, by how much fainter its [M/H] (known from Jphi and the
chemistry's normals, which the chunk then hands to populate) makes its stars than the metal-poor envelope
(:meth:`~mocksky.populate.MagnitudeSelection.velocity_factor`): for the discs ~1.6x fewer action evaluations and
points per catalogue star.

Point masses: the plan's mass estimate M_hat of the selected mass of a component divided by its number of points
(times ``scale``; in magnitude mode divided by the selection S(x) of each point, see
:meth:`~mocksky.populate.MagnitudeSelection.point_mass`). The statistical error of M_hat (from the plan's proposals) is
a normalisation error common to all chunks and is reported per component (``mass_error_Msun``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .recipe import Recipe, RecipeError, load_recipe

__all__ = ["RunResult", "RunPlan", "ChunkSpec", "run", "make_plan", "run_chunk", "chunk_seed",
           "build_selection_function", "RunStateError"]

log = logging.getLogger(__name__)

_BAND_COLUMN = {"G": "phot_g_mean_mag_true", "BP": "phot_bp_mean_mag_true", "RP": "phot_rp_mean_mag_true",
                "GRVS": "grvs_mag_true", "J": "j_m_true", "H": "h_m_true", "Ks": "k_m_true"}
_PARTICLE_SUFFIX = {"gadget4": "hdf5", "text": "txt", "hdf5": "hdf5"}
#: spawn_key of the plan's SeedSequence (chunk k uses spawn_key (k,), i.e. SeedSequence(seed).spawn(n)[k]).
_PLAN_KEY = 2 ** 32 - 1
_PART_PREFIX = "part"
_STATE_DIR = ".state"
_STATE_FORMAT = "mocksky-run-state"


class RunStateError(ValueError):
    """The output directory holds a run with a different recipe, seed or scale (pass overwrite=True to replace)."""


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run`.

    Attributes
    ----------
    out_dir : Path
    catalogue : Path
        The dataset directory (parts and ``manifest.json``; open it with :func:`mocksky.catalogue.open_vaex`), or with
        ``populations.mode = 'none'`` the particle file.
    summary_path : Path
        ``summary.json``.
    plots : tuple of Path
        PNG files written.
    n_rows : int
        Stars (or particles) written.
    seed : int
        Entropy of the run's SeedSequence.
    timings : dict
        Seconds per stage.
    summary : dict
        Content of ``summary.json``.
    """

    out_dir: Path
    catalogue: Path
    summary_path: Path
    plots: Tuple[Path, ...]
    n_rows: int
    seed: int
    timings: Dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk of a run: ``n_points`` points of component ``component`` (index into the plan's components)."""

    index: int
    component: int
    n_points: int


@dataclass
class RunPlan:
    """Everything a chunk needs (shipped once to each worker).

    Attributes
    ----------
    recipe : Recipe
    seed : int
        Entropy of the run's SeedSequence.
    scale : float
    names : list of str
        Stellar components sampled, in order (the ``component`` column indexes this list).
    samplers : list of ComponentSampler
        Prepared samplers (forked by every chunk).
    selections : list of MagnitudeSelection or None
    particle_mass : list of float
        M_hat / N per component [Msun] (before ``scale`` and the selection weighting).
    populations : StellarPopulations
    solar : SolarParameters
    chunks : list of ChunkSpec
    run_meta : dict
        Provenance stored in every part and the manifest.
    components : dict
        Per-component plan diagnostics.
    weighted : list of (WeightedScheme, int) or None
        Per component: None for equal-mass points (rejection sampling), else the importance-weighting scheme and
        the total number of positions drawn over the component's chunks (see :mod:`mocksky.model.sampling.weighted`).
    logg_max : float or None
        The giant limit of the recipe's cuts (:func:`giant_limit`).
    extinction : ExtinctionFloor or None
        Magnitude-limited runs with a dust map: the lower bound of the limit band's extinction used by the samplers'
        selection and by populate (:func:`extinction_floor`).
    """

    recipe: Recipe
    seed: int
    scale: float
    names: List[str]
    samplers: list
    selections: list
    particle_mass: List[float]
    populations: object
    solar: object
    chunks: List[ChunkSpec]
    run_meta: dict
    components: dict
    weighted: list = field(default_factory=list)
    logg_max: Optional[float] = None
    extinction: Optional[object] = None

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    def fingerprint(self) -> dict:
        """What must match for a run to be resumed in the same directory (the code's hash among it: parts written
        by two versions of the sampler are not one catalogue)."""
        from . import __version__

        return {"recipe_sha256": hashlib.sha256(self.recipe.text.encode()).hexdigest(), "seed": int(self.seed),
                "model_sha256": self.run_meta.get("model_sha256", ""),
                "scale": float(self.scale), "mocksky_version": __version__, "code_sha256": code_sha256(),
                "chunks": [[c.component, c.n_points] for c in self.chunks]}


@functools.lru_cache(maxsize=None)
def code_sha256() -> str:
    """SHA-256 of the installed mocksky package: every file under its directory (modules and package data, sorted by
    relative path, each path hashed with its content), compiled caches (``__pycache__``, Numba's ``.nbi``/``.nbc``)
    left out. Computed once per process (~40 ms).

    A run's fingerprint holds it, so that a run killed under one version of the code is not resumed under another
    (whose parts would follow other sampling rules) even when the version string is the same, as it is between
    commits of a development install.

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                    and p.suffix not in (".pyc", ".nbi", ".nbc")):
        rel = f.relative_to(root).as_posix().encode()
        data = f.read_bytes()
        h.update(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def chunk_seed(seed: int, index: int) -> np.random.SeedSequence:
    """SeedSequence of chunk ``index``: identical to ``numpy.random.SeedSequence(seed).spawn(n)[index]`` for any
    n > index.

    Parameters
    ----------
    seed : int
        Entropy of the run's SeedSequence.
    index : int
        Chunk index, >= 0.

    Returns
    -------
    numpy.random.SeedSequence
    """
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))
def build_selection_function(recipe: Recipe):
    """The product of the recipe's surveys and inline cuts, or None when it has neither.

    Returns
    -------
    mocksky.select.SelectionFunction or None
    """
    from .select import build_selection, survey

    factors = [survey(s) for s in recipe.selection.surveys]
    for i, c in enumerate(recipe.selection.cuts):
        factors.append(build_selection({"factor": [dict(c)]}, source=f"[selection].cuts[{i}]"))
    if not factors:
        return None
    sf = factors[0]
    for f in factors[1:]:
        sf = sf * f
    return sf


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def _stellar_components(recipe: Recipe, model, pops) -> list:
    dfc = [c.name for c in model.components if getattr(c, "is_df", False)]
    if recipe.sample.components is not None:
        lower = {n.lower(): n for n in dfc}
        bad = [n for n in recipe.sample.components if n.lower() not in lower]
        if bad:
            raise RecipeError(f"[sample].components: {bad} are not DF components of the model; allowed: {dfc}")
        names = [lower[n.lower()] for n in recipe.sample.components]
    else:
        names = dfc
    if recipe.populations.mode == "none":
        return names
    stellar = [n for n in names if pops.is_stellar(n)]
    if not stellar:
        raise RecipeError(f"[sample].components: none of {names} is a stellar component of the population spec")
    return stellar



# ------------------------------------------------------------------------------------------------------ plan
def _split(n: int, size: int) -> List[int]:
    """n split into ceil(n / size) near-equal positive parts."""
    k = max(-(-int(n) // int(size)), 1)
    base, rest = divmod(int(n), k)
    return [base + (1 if i < rest else 0) for i in range(k)]


def giant_limit(recipe: Recipe) -> Optional[float]:
    """The log g upper limit of the recipe's selection cuts (``{type = "range", column = "logg", max = X}``), or None.

    In magnitude mode the stars are then generated only where they can pass it (``populate(logg_max=X)``), which
    for a giant survey like APOGEE avoids generating, and sampling points for, the dwarfs near the Sun.
    """
    if recipe.populations.mode != "magnitude":
        return None
    lims = [float(c["max"]) for c in recipe.selection.cuts
            if c.get("type") == "range" and c.get("column") == "logg" and c.get("max") is not None]
    return min(lims) if lims else None


def extinction_floor(recipe: Recipe):
    """Lower bound of the limit band's extinction for a magnitude-limited recipe (None without dust or limit).

    Points are sampled from f(x, v) S(x) with S the fraction of a component's stars brighter than the limit at
    x *after* this extinction, and populate generates only those stars; observe then applies each star's own
    extinction (from the same map and :class:`~mocksky.observe.ExtinctionModel`, never smaller) and the limit.
    The catalogue is the same in distribution as with extinction-free sampling, but far fewer points and stars
    are generated behind dust (``gaia_dr3_starcounts``: see ``scripts/bench_pipeline.py``).
    """
    from .observe import ExtinctionFloor

    P = recipe.populations
    if P.mode != "magnitude" or str(recipe.dust.map).lower() == "none":
        return None
    return ExtinctionFloor(P.band, recipe.dust.map)


def make_plan(recipe: Recipe, model, seed: int, scale: float = 1.0, threads: Optional[int] = None) -> RunPlan:
    """The plan of a run (deterministic given the recipe, model, seed and scale; see the module docstring).

    The components are planned independently (each from its own spawned seed), cores // threads at a time in threads
    of this process (:func:`mocksky.parallel.run_tasks`); the plan does not depend on how many run at once.

    Parameters
    ----------
    recipe : Recipe
        With ``populations.mode`` 'magnitude' or 'volume'.
    model : GalaxyModel
    seed : int
        Entropy of the run's SeedSequence; the plan draws from ``SeedSequence(seed, spawn_key=(2**32 - 1,))``.
    scale : float
        Fraction in (0, 1] of the full mock.
    threads : int, optional
        Numba threads per component being planned (default 1, with one component per core at a time).

    Returns
    -------
    RunPlan

    Raises
    ------
    RecipeError
        Unknown or non-stellar components.
    """
    from . import __version__
    from .model.registry import MODELS
    from .model.sampling import as_region
    from .model.sampling.sampler import sampling_finder
    from .observe import solar_parameters
    from .parallel import run_tasks
    from .populate import load_populations

    P = recipe.populations
    pops = load_populations(P.spec)
    solar = solar_parameters(recipe.solar.name)
    names = _stellar_components(recipe, model, pops)
    region = as_region(recipe.sample.region)
    finder = sampling_finder(model)
    K = recipe.sample.azimuth_copies
    plan_ss = np.random.SeedSequence(int(seed), spawn_key=(_PLAN_KEY,))
    samplers, selections, pmass, chunks, comps, weighted = [], [], [], [], {}, []
    logg_max = giant_limit(recipe)
    ext = extinction_floor(recipe)
    sf = build_selection_function(recipe)
    footprint = sf.footprint if sf is not None else None
    # heliocentric proposals adapt per node interval of the (R, z) grid from every pilot proposal: 4x the pilot
    # (measured: the young disc's acceptance 0.12 with 1e5 pilot proposals, 0.22 with 4e5)
    n_pilot = int(np.clip(50 * recipe.sample.pilot, 20_000, 100_000)) * (4 if recipe.sample.proposal == "heliocentric"
                                                                        else K)
    ctx = dict(recipe=recipe, model=model, pops=pops, finder=finder, region=region, K=K, ext=ext, solar=solar,
               logg_max=logg_max, footprint=footprint, n_pilot=n_pilot, scale=scale)
    jobs = dict(enumerate(zip(names, plan_ss.spawn(len(names)))))
    planned = run_tasks(_plan_component, ctx, list(jobs), (jobs,), threads=threads, progress=False)
    for ci, name in enumerate(names):
        smp, sel, n, m_sel, scheme, info = planned[ci]
        first = len(chunks)
        for npts in _split(n, recipe.run.chunk_points):
            chunks.append(ChunkSpec(len(chunks), ci, npts))
        if scheme is not None:
            n_pos = sum(scheme.positions_for(c.n_points, K) for c in chunks[first:])
            weighted.append((scheme, n_pos))
        else:
            weighted.append(None)
        comps[name] = info
        samplers.append(smp)
        selections.append(sel)
        pmass.append(m_sel / n)
        log.info("plan %s: M_hat = %.4g +- %.2g Msun, %d points in %d chunk(s) (%.1f s)", name, m_sel,
                 info["mass_error_Msun"], n, len(chunks) - first, info["plan_seconds"])
    # identity of the model actually used (a rebuilt model may differ from a cached one in the last bits)
    h = hashlib.sha256()
    R_, z_ = np.meshgrid(np.geomspace(0.01, 200.0, 40), np.concatenate([[0.0], np.geomspace(0.01, 100.0, 20)]))
    h.update(np.ascontiguousarray(model.potential._phi(R_.ravel(), z_.ravel()), dtype=np.float64).tobytes())
    for name in names:
        h.update(np.ascontiguousarray(np.asarray(model.dfs[name].params, dtype=np.float64)).tobytes())
        h.update(np.ascontiguousarray(model.component(name).density._density(R_.ravel(), z_.ravel()),
                                      dtype=np.float64).tobytes())
    references = []
    if recipe.model.source.lower() in MODELS:
        references.append(MODELS[recipe.model.source.lower()].reference)
    references.append(f"solar parameters: {solar.reference}")
    run_meta = {"recipe_name": recipe.name, "recipe_text": recipe.text, "recipe_source": recipe.source,
                "mocksky_version": __version__, "seed": int(seed), "scale": float(scale), "solar": solar.meta(),
                "model": recipe.model.source, "references": references, "component_names": list(names),
                "n_chunks": len(chunks), "model_sha256": h.hexdigest()}
    return RunPlan(recipe, int(seed), float(scale), list(names), samplers, selections, pmass, pops, solar, chunks,
                   run_meta, comps, weighted, logg_max, ext)


def _plan_component(ctx: dict, ci: int, jobs: dict):
    """Plan component ci (see :func:`make_plan`): its prepared sampler (a fork), magnitude selection, number of points,
    selected mass, importance-weighting scheme (or None) and summary record."""
    from .model.sampling import ComponentSampler
    from .model.sampling.weighted import weighted_scheme
    from .populate import MagnitudeSelection

    name, ss = jobs[ci]
    recipe, model, K, scale = ctx["recipe"], ctx["model"], ctx["K"], ctx["scale"]
    P = recipe.populations
    t0 = time.perf_counter()
    rng = np.random.default_rng(ss)
    cp = ctx["pops"][name]
    if P.mode == "magnitude":
        sel = MagnitudeSelection(cp, P.limit, P.band, ctx["ext"], ctx["solar"], m_min=P.m_min,
                                 logg_max=ctx["logg_max"], footprint=ctx["footprint"])
        d_max = sel.d_max
    else:
        sel = None
        d_max = cp.max_stars_per_mass(P.m_min) * 1.05
    helio = recipe.sample.proposal == "heliocentric"
    forced = recipe.sample.method == "weighted"
    n_pilot = ctx["n_pilot"]
    # an importance-weighted mock spends one action per positive-weight proposal: no density thinning there
    smp = ComponentSampler(model.potential, model.dfs[name], ctx["finder"], density=model.component(name).density,
                           region=ctx["region"], selection=sel, rng=rng, n_pilot=n_pilot, azimuth_copies=K,
                           observer=ctx["solar"] if helio else None, density_thinning=not forced,
                           velocity_thinning=helio and sel is not None and sel.velocity_thinning)
    smp.prepare(rng=rng)
    smp.run(n_pilot, rng=rng)  # the adapted epoch: sets its envelope, refines M_hat
    m_sel, m_err = smp.mass_estimate()
    if not (np.isfinite(m_sel) and m_sel > 0):
        raise RecipeError(f"[sample]: component {name!r} has no selected mass (M_hat = {m_sel}); check the "
                          "region and the magnitude limit")
    need = int(np.ceil(1.05 * scale * m_sel * d_max))
    cap = max(int(np.ceil(recipe.sample.max_points * scale)), 1)
    n = max(cap if forced else min(need, cap), 100)
    scheme = None
    d = smp.diagnostics()
    if forced:
        scheme = weighted_scheme(smp, rng, _KEEP_FRACTION)
    elif d.acceptance < _MIN_ACCEPTANCE:
        # rejection would need > 500 proposals (and many action evaluations) per point: the
        # importance-weighted mock of the same number of points is exact in expectation and far cheaper
        scheme = weighted_scheme(smp, rng, _KEEP_FRACTION)
        log.warning("component %r: rejection acceptance %.2g < %.0e: an importance-weighted mock of %d points "
                    "(column 'weight' = expected stars per row)", name, d.acceptance, _MIN_ACCEPTANCE, n)
    elif need > cap:
        # too few points for one star per point: an importance-weighted mock (each kept proposal a weighted
        # star, populate overflow='weight') instead of thinning, which would drop the excess stars unevenly
        scheme = weighted_scheme(smp, rng, _KEEP_FRACTION)
        log.warning("component %r: %d points needed for <= 1 star per point, capped at %d: an importance-"
                    "weighted mock (column 'weight' = expected stars per row; raise [sample] max_points or lower "
                    "--scale for a Poisson realisation)", name, need, cap)
    info = {"selected_mass_Msun": m_sel, "mass_error_Msun": m_err, "points_needed": need,
            "points_cap": cap, "points": n, "capped": need > cap and not forced, "particle_mass_Msun": m_sel / n,
            "plan_proposals": d.n_proposals, "plan_acceptance": d.acceptance, "ess_fraction": d.ess_fraction,
            "azimuth_copies": K, "weighted": scheme is not None,
            "plan_seconds": round(time.perf_counter() - t0, 3)}
    return smp.fork(), sel, n, m_sel, scheme, info


#: rejection-control keep fraction of importance-weighted components (mocksky.model.sampling.weighted)
_KEEP_FRACTION = 0.2
#: below this rejection acceptance (per proposal, azimuth copies counted) a component is importance-weighted
_MIN_ACCEPTANCE = 2e-3

# ------------------------------------------------------------------------------------------------------ chunks
_SF_CACHE: Dict[str, object] = {}
_SF_LOCK = threading.Lock()


def _selection_for(recipe: Recipe):
    """build_selection_function, cached per process (survey maps are read once per worker; chunks running in
    threads wait for the first to build it)."""
    key = hashlib.sha256(recipe.text.encode()).hexdigest()
    with _SF_LOCK:
        if key not in _SF_CACHE:
            _SF_CACHE.clear()
            _SF_CACHE[key] = build_selection_function(recipe)
        return _SF_CACHE[key]


def run_chunk(plan: RunPlan, index: int, directory: Union[str, os.PathLike]) -> dict:
    """Run chunk ``index`` of a plan and write its part (atomically) to ``directory``.

    Sample -> populate -> observe -> magnitude limit -> selection -> output columns -> ``part-<index:05d>``.

    Parameters
    ----------
    plan : RunPlan
    index : int
    directory : path
        The dataset directory.

    Returns
    -------
    dict
        ``part`` (:class:`~mocksky.catalogue.PartInfo` as a dict), ``n_points``, ``n_generated`` (stars populated),
        ``n_within_limit``, ``n_rows``, ``n_selected_expected``, ``component``, sampler counters (``n_proposals``,
        ``n_accepted``, ``n_actions``, ``envelope_raises``, ``sum_w``, ``sum_w2``) and ``seconds`` per stage.
    """
    from .catalogue import write_part
    from .model.sampling import Particles
    from .observe import observe
    from .populate import populate

    spec = plan.chunks[int(index)]
    recipe = plan.recipe
    P = recipe.populations
    ci = spec.component
    name = plan.names[ci]
    s_sample, s_pop, s_obs, s_sel = chunk_seed(plan.seed, spec.index).spawn(4)
    secs = {}
    t = time.perf_counter()
    smp = plan.samplers[ci].fork()
    c0 = smp.counters()
    wplan = plan.weighted[ci] if plan.weighted else None
    if wplan is None:
        pv, J, noise = smp.sample(spec.n_points, np.random.default_rng(s_sample), return_noise=True)
        pm = np.full(len(pv), plan.particle_mass[ci])
    else:
        from .model.sampling.weighted import weighted_draw

        scheme, n_total = wplan
        pv, J, wk, _, noise = weighted_draw(smp, scheme.positions_for(spec.n_points, smp.azimuth_copies), scheme,
                                            np.random.default_rng(s_sample), return_noise=True)
        pm = scheme.norm * wk / n_total
    c1 = smp.counters()
    n = len(pv)
    parts = Particles(pv, pm, np.zeros(n, dtype=np.int32), J, (name,))
    sel = plan.selections[ci]
    # the chemistry's random numbers, when the sampler thinned the points by their [M/H] (velocity_thinning)
    noise = noise if noise.shape[1] else None
    mass = (sel.point_mass(parts, noise) if sel is not None else parts.mass) * plan.scale
    secs["sample"] = time.perf_counter() - t

    t = time.perf_counter()
    tab = populate(parts, plan.populations, mode=P.mode, m_min=P.m_min, band=P.band, limit=P.limit,
                   extinction=plan.extinction,
                   solar=plan.solar, rng=np.random.default_rng(s_pop), mass=mass,
                   overflow="clip" if wplan is None else "weight", logg_max=plan.logg_max, selection=sel,
                   chem_noise=noise)
    tab["component"] = np.full(len(tab), ci, dtype=np.int16)
    del pv, J, pm, noise, parts, mass  # the table holds what is needed (chunk peak memory)
    pop_info = dict(tab.meta["populate"]["components"].get(name, {}))
    secs["populate"] = time.perf_counter() - t

    t = time.perf_counter()
    observe(tab, solar=plan.solar, dust=recipe.dust.map, errors=recipe.errors.models, rng=np.random.default_rng(s_obs))
    n_generated = len(tab)
    sf = _selection_for(recipe)
    if recipe.output.columns:
        # columns neither written nor read by the selection are dropped before any row selection (copying ~80
        # columns cost ~5 % of a chunk)
        need = set(recipe.output.columns) | set(sf.required_columns if sf is not None else ()) | {"weight"}
        if P.mode == "magnitude":
            need.add(_BAND_COLUMN[P.band])
        available = sorted(tab)
        for c in [c for c in tab if c not in need]:
            del tab[c]
    if P.mode == "magnitude":
        tab = tab.select(np.asarray(tab[_BAND_COLUMN[P.band]]) <= P.limit)
    n_limit = len(tab)
    secs["observe"] = time.perf_counter() - t

    t = time.perf_counter()
    n_sel = None
    if sf is not None:
        p = sf.apply(tab)
        n_sel = float(np.sum(p * tab["weight"])) if "weight" in tab else float(np.sum(p))
        if recipe.selection.mode == "sample":
            tab = tab.select(np.random.default_rng(s_sel).random(len(p)) < p)
    secs["select"] = time.perf_counter() - t

    t = time.perf_counter()
    if recipe.output.columns:
        missing = [c for c in recipe.output.columns if c not in tab]
        if missing:
            raise RecipeError(f"[output].columns: {missing} are not produced by this recipe; available: "
                              f"{sorted(set(available) | set(tab))}")
        keep = set(recipe.output.columns)
        for c in [c for c in tab if c not in keep]:
            del tab[c]
    meta = {"run": plan.run_meta, "chunk": {"index": spec.index, "component": name, "n_points": spec.n_points},
            "populate": {k: v for k, v in tab.meta.get("populate", {}).items() if k != "populations"}}
    tab.meta.clear()
    tab.meta.update(meta)
    info = write_part(tab, directory, spec.index, format=recipe.output.format, prefix=_PART_PREFIX, overwrite=True)
    secs["write"] = time.perf_counter() - t
    out = {"index": spec.index, "component": name, "part": info.to_dict(), "n_points": n,
           "n_generated": n_generated, "n_within_limit": n_limit, "n_rows": len(tab), "n_selected_expected": n_sel,
           "populate": pop_info, "seconds": {k: round(v, 4) for k, v in secs.items()}}
    out.update({k: c1[k] - c0[k] for k in c0})
    return out


# ------------------------------------------------------------------------------------------------------ state
def _state_paths(ddir: Path) -> Tuple[Path, Path]:
    sdir = ddir / _STATE_DIR
    return sdir, sdir / "run.json"


def _remove_temporaries(ddir: Path) -> None:
    """Remove the temporary files (``.*.tmp``) of the catalogue directory and its run state: torn writes of a killed
    run, or of a Dask worker killed while writing a part (whose task the scheduler then ran again elsewhere)."""
    for p in list(ddir.glob(".*.tmp")) + list(_state_paths(ddir)[0].glob(".*.tmp")):
        p.unlink(missing_ok=True)


def _prepare_state(ddir: Path, fp: dict, overwrite: bool) -> Dict[int, dict]:
    """Check or create the run state; return the chunk records of the parts complete on disk."""
    from .catalogue.io import file_sha256

    sdir, runf = _state_paths(ddir)
    if runf.is_file():
        old = json.loads(runf.read_text())
        if old.get("fingerprint") != fp:
            if not overwrite:
                diff = sorted(k for k in set(fp) | set(old.get("fingerprint", {}))
                              if fp.get(k) != old.get("fingerprint", {}).get(k))
                raise RunStateError(f"{ddir} holds a run with a different {', '.join(diff)}; use another output "
                                    "directory or overwrite=True (CLI: --overwrite) to replace it")
            shutil.rmtree(ddir)
    elif ddir.exists() and any(ddir.iterdir()):
        if not overwrite:
            raise RunStateError(f"{ddir} exists and holds no mocksky run state; use another output directory or "
                                "overwrite=True to replace it")
        shutil.rmtree(ddir)
    sdir.mkdir(parents=True, exist_ok=True)
    if not runf.is_file():
        _atomic_write_text(runf, json.dumps({"format": _STATE_FORMAT, "fingerprint": fp}, indent=1) + "\n")
    _remove_temporaries(ddir)  # of a killed run
    done = {}
    for f in sorted(sdir.glob("chunk-*.json")):
        try:
            rec = json.loads(f.read_text())
            part = rec["part"]
            fp_ = ddir / part["file"]
            if fp_.is_file() and fp_.stat().st_size == part["bytes"] and file_sha256(fp_) == part["sha256"]:
                done[int(rec["index"])] = rec
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        log.warning("state record %s does not match its part on disk: the chunk is redone", f.name)
        f.unlink(missing_ok=True)
    return done


def _record(ddir: Path, rec: dict) -> None:
    sdir, _ = _state_paths(ddir)
    _atomic_write_text(sdir / f"chunk-{int(rec['index']):05d}.json", json.dumps(rec, default=_json_default) + "\n")


# ------------------------------------------------------------------------------------------------------ run
def run(recipe_or_path: Union[str, os.PathLike, Recipe], out_dir: Union[str, os.PathLike], seed: Optional[int] = None,
        scale: float = 1.0, cache_dir: Optional[Union[str, os.PathLike]] = None, overwrite: bool = False,
        workers: Optional[int] = None, scheduler: Optional[str] = None, threads: Optional[int] = None,
        progress: Optional[bool] = None) -> RunResult:
    """Run a catalogue recipe in chunks and write the dataset, ``summary.json`` and plots to ``out_dir``.

    Parameters
    ----------
    recipe_or_path : Recipe, path or built-in recipe name
        Validated completely before anything is computed.
    out_dir : path
        Output directory (created). The catalogue is ``out_dir/<output.name>/``.
    seed : int, optional
        Seed of the run's :class:`numpy.random.SeedSequence` (default: the seed of a resumable run of the same recipe
        and scale in ``out_dir``, else fresh entropy; recorded in the outputs).
    scale : float
        Fraction in (0, 1] of the full mock generated (see the module docstring).
    cache_dir : path, optional
        Model cache directory (default ``$MOCKSKY_CACHE`` or ``~/.cache/mocksky``).
    overwrite : bool
        Replace a run with a different recipe, seed or scale found in ``out_dir`` (default False: refuse). A run
        with the same ones is always resumed.
    workers : int, optional
        Local Dask worker processes (None or 0: chunks run in this process).
    scheduler : str, optional
        Address of a running Dask scheduler (instead of a local cluster).
    threads : int, optional
        Numba threads per chunk (default: 1 in process, where cores // threads chunks run at once in threads; cores
        / workers on a local cluster).
    progress : bool, optional
        tqdm progress bar on stderr (default: when stderr is a terminal).

    Returns
    -------
    RunResult

    Raises
    ------
    RecipeError
        Invalid recipe or arguments (before any computation).
    RunStateError
        ``out_dir`` holds a different run and ``overwrite`` is False.
    """
    from .parallel import run_tasks

    recipe = load_recipe(recipe_or_path)
    if isinstance(scale, bool) or not (isinstance(scale, (int, float)) and 0.0 < float(scale) <= 1.0):
        raise RecipeError(f"scale: must be in (0, 1], got {scale!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise RecipeError(f"workers: an integer >= 0 (0 or None: run in this process), got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise RecipeError(f"threads: an integer >= 1, got {threads!r}")
    if scheduler is not None and workers:
        raise RecipeError("workers and scheduler: give one of them (a scheduler brings its own workers)")
    scale = float(scale)
    out = Path(out_dir)
    ddir = out / recipe.output.name
    if seed is None:
        seed = _resumable_seed(ddir, recipe, scale)
    ss = np.random.SeedSequence(seed)
    seed_used = int(ss.entropy)
    if not overwrite and recipe.populations.mode != "none":
        _check_previous(ddir, recipe, seed_used, scale)
    out.mkdir(parents=True, exist_ok=True)
    timings: Dict[str, float] = {}
    t_start = time.perf_counter()

    from .model.galaxy import GalaxyModel

    t = time.perf_counter()
    opts = {"max_iterations": recipe.model.iterations} if recipe.model.iterations else {}
    model = GalaxyModel.load_or_build(recipe.model.source, cache_dir=cache_dir, **opts)
    timings["model"] = time.perf_counter() - t
    plots: List[Path] = []

    if recipe.populations.mode == "none":
        from .model.registry import MODELS
        from .observe import solar_parameters
        from . import __version__

        solar = solar_parameters(recipe.solar.name)
        refs = ([MODELS[recipe.model.source.lower()].reference] if recipe.model.source.lower() in MODELS else [])
        run_meta = {"recipe_name": recipe.name, "recipe_source": recipe.source, "mocksky_version": __version__,
                    "seed": seed_used, "scale": scale, "solar": solar.meta(), "model": recipe.model.source,
                    "references": refs + [f"solar parameters: {solar.reference}"]}
        path, n_rows, comp_info = _run_particles(recipe, model, out, scale, ss.spawn(1)[0], True)
        timings["sample"] = time.perf_counter() - t - timings["model"]
        summary = {"recipe": recipe.to_dict(), "run": run_meta, "output": str(path), "n_particles": n_rows,
                   "components": comp_info}
        timings["total"] = time.perf_counter() - t_start
        summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        spath = out / "summary.json"
        _atomic_write_text(spath, json.dumps(summary, indent=1, default=_json_default) + "\n")
        return RunResult(out, Path(path), spath, (), int(n_rows), seed_used, timings, summary)

    t = time.perf_counter()
    plan = make_plan(recipe, model, seed_used, scale, threads=threads if scheduler is None and not workers else None)
    timings["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    done = _prepare_state(ddir, plan.fingerprint(), overwrite)
    todo = [c.index for c in plan.chunks if c.index not in done]
    if done:
        log.info("resuming: %d of %d chunk(s) already complete in %s", len(done), plan.n_chunks, ddir)
    records = dict(done)
    counts = {"generated": sum(r["n_generated"] for r in done.values()),
              "kept": sum(r["n_rows"] for r in done.values())}

    def _on_result(key, rec):
        _record(ddir, rec)
        records[key] = rec
        counts["generated"] += rec["n_generated"]
        counts["kept"] += rec["n_rows"]

    run_tasks(run_chunk, plan, todo, (str(ddir),), workers=workers, scheduler=scheduler, threads=threads,
              progress=progress, on_result=_on_result, desc=f"mocksky {recipe.name}", total=plan.n_chunks,
              postfix=lambda rec: {"stars": counts["kept"]})
    _remove_temporaries(ddir)  # every chunk is complete: a temporary left now is a killed worker's torn write
    timings["chunks"] = time.perf_counter() - t

    t = time.perf_counter()
    from .catalogue import verify_manifest, write_manifest

    recs = [records[c.index] for c in plan.chunks]
    man_meta = {"run": plan.run_meta,
                "populate": {"mode": recipe.populations.mode, "band": recipe.populations.band,
                             "limit": recipe.populations.limit, "m_min": recipe.populations.m_min, "scale": scale,
                             "component_names": plan.names, "populations": plan.populations.describe()}}
    mpath = write_manifest(ddir, [r["part"] for r in recs], meta=man_meta, prefix=_PART_PREFIX)
    manifest = verify_manifest(mpath, checksums=False)
    timings["manifest"] = time.perf_counter() - t
    n_rows = int(manifest["total_rows"])
    columns = list(manifest["columns"])

    comparison = None
    if recipe.compare is not None:
        from .compare.run import compare_recipe

        t = time.perf_counter()
        comparison, cplots = compare_recipe(recipe, ddir, out, columns=columns)
        plots.extend(cplots)
        timings["compare"] = time.perf_counter() - t

    comp_diag = {}
    for ci, name in enumerate(plan.names):
        rs = [r for r in recs if r["component"] == name]
        d = dict(plan.components[name])
        for k in ("n_points", "n_generated", "n_within_limit", "n_rows", "n_proposals", "n_accepted", "n_actions",
                  "envelope_raises"):
            d[k] = int(sum(r[k] for r in rs))
        d["chunks"] = len(rs)
        d["acceptance"] = d["n_accepted"] / d["n_proposals"] if d["n_proposals"] else float("nan")
        d["expected_lost_overflow"] = float(sum(r["populate"].get("expected_lost_overflow", 0.0) for r in rs))
        comp_diag[name] = d
    stage = {}
    for r in recs:
        for k, v in r["seconds"].items():
            stage[k] = stage.get(k, 0.0) + v
    n_generated = int(sum(r["n_generated"] for r in recs))
    n_limit = int(sum(r["n_within_limit"] for r in recs))
    sel_exp = [r["n_selected_expected"] for r in recs]
    n_sel = None if any(v is None for v in sel_exp) else float(sum(sel_exp))
    chain_s = timings["plan"] + timings["chunks"] + timings["manifest"]
    throughput = {"stars_generated": n_generated, "stars_kept": n_rows, "seconds": round(chain_s, 3),
                  "stars_per_s": n_rows / chain_s if chain_s > 0 else float("nan"),
                  "generated_per_s": n_generated / chain_s if chain_s > 0 else float("nan"),
                  "chunks": plan.n_chunks, "chunks_run": len(todo), "chunks_resumed": len(done)}
    execution = {"workers": workers, "scheduler": scheduler, "threads": threads, "chunk_points": recipe.run.chunk_points}
    run_meta = {k: v for k, v in plan.run_meta.items() if k != "recipe_text"}
    run_meta["execution"] = execution
    if recipe.selection.surveys or recipe.selection.cuts:
        run_meta["selection"] = {"surveys": list(recipe.selection.surveys),
                                 "cuts": [dict(c) for c in recipe.selection.cuts], "mode": recipe.selection.mode}
    timings["total"] = time.perf_counter() - t_start
    summary = {"recipe": recipe.to_dict(), "run": run_meta, "catalogue": str(ddir), "manifest": str(mpath),
               "n_generated": n_generated, "n_within_limit": n_limit, "n_rows": n_rows, "n_selected_expected": n_sel,
               "components": comp_diag, "comparison": comparison, "throughput": throughput,
               "stage_seconds_summed": {k: round(v, 3) for k, v in stage.items()},
               "timings_s": {k: round(v, 3) for k, v in timings.items()}}
    spath = out / "summary.json"
    _atomic_write_text(spath, json.dumps(summary, indent=1, default=_json_default) + "\n")
    log.info("run %s: %d stars generated, %d kept -> %s in %.1f s (%.3g stars/s; %d chunk(s), %d resumed)",
             recipe.name, n_generated, n_rows, ddir, chain_s, throughput["stars_per_s"], plan.n_chunks, len(done))
    return RunResult(out, ddir, spath, tuple(plots), n_rows, seed_used, timings, summary)


def _check_previous(ddir: Path, recipe: Recipe, seed: int, scale: float) -> None:
    """Refuse early (before the model and the plan) a directory holding a run of another recipe, seed or scale."""
    from . import __version__

    runf = _state_paths(ddir)[1]
    try:
        fp = json.loads(runf.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    want = {"recipe_sha256": hashlib.sha256(recipe.text.encode()).hexdigest(), "seed": int(seed), "scale": float(scale),
            "mocksky_version": __version__, "code_sha256": code_sha256()}
    diff = [k for k, v in want.items() if fp.get(k) != v]
    if diff:
        raise RunStateError(f"{ddir} holds a run with a different {', '.join(diff)}; use another output directory or "
                            "overwrite=True (CLI: --overwrite) to replace it")


def _resumable_seed(ddir: Path, recipe: Recipe, scale: float) -> Optional[int]:
    """The seed of a run of this recipe and scale recorded in ``ddir`` (None if there is none)."""
    runf = _state_paths(ddir)[1]
    try:
        fp = json.loads(runf.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if fp.get("recipe_sha256") == hashlib.sha256(recipe.text.encode()).hexdigest() and fp.get("scale") == scale:
        log.info("no seed given: resuming the run in %s with its seed %s", ddir, fp.get("seed"))
        return int(fp["seed"])
    return None


def _run_particles(recipe, model, out, scale, s_sample, overwrite):
    """populations.mode = 'none': sample DF particles (N-body initial conditions) and export them."""
    from .export import export_nbody
    from .model.sampling import sample_galaxy_model

    names = _stellar_components(recipe, model, None)
    n = max(int(round(recipe.sample.max_points * scale)), 1)
    parts = sample_galaxy_model(model, n, components=names, rng=np.random.default_rng(s_sample),
                                region=recipe.sample.region)
    path = out / f"{recipe.output.name}.{_PARTICLE_SUFFIX[recipe.output.format]}"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (overwrite=False)")
    path = export_nbody(parts, path, format=recipe.output.format)
    comp = {nm: {"n": int(np.count_nonzero(parts.component == i)),
                 "mass_Msun": float(parts.mass[parts.component == i].sum())}
            for i, nm in enumerate(parts.component_names)}
    return Path(path), int(len(parts.mass)), comp
