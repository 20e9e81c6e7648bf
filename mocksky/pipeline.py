"""``mocksky run``: execute a catalogue recipe (:mod:`mocksky.recipe`) end to end.

Stages: model (:meth:`~mocksky.model.galaxy.GalaxyModel.load_or_build`) -> sample DF points per stellar component
(:func:`~mocksky.model.sampling.sample_particles`, weighted by :class:`~mocksky.populate.MagnitudeSelection` in
magnitude mode) -> :func:`~mocksky.populate.populate` -> :func:`~mocksky.observe.observe` -> the magnitude limit on
the extincted true magnitude -> survey selection (:mod:`mocksky.select`) -> :func:`~mocksky.catalogue.write_catalogue`
-> comparison (:mod:`mocksky.compare`) -> ``summary.json`` and PNG plots, all in ``out_dir``.

Completeness of the magnitude-limited sample: points are sampled and populated with an extinction-free limit
(every star that can pass the limit after extinction is generated), and the limit is applied after the observe stage
to the extincted magnitude ``<band>_true``.

``scale`` in (0, 1] generates a random fraction ``scale`` of the stars of the full mock (each point's stellar mass is
multiplied by ``scale``, and ``scale`` times fewer points are sampled): counts of a scaled run estimate ``scale`` times
the full counts. The number of points per component is capped at ``[sample] max_points``; when the cap binds, points
stand for more than one expected star, the excess is dropped and reported (``expected_lost_overflow``) in the
summary.

Randomness: one :class:`numpy.random.SeedSequence` of the run's seed, spawned into independent streams per stage and
component; the seed (drawn from fresh entropy when not given) is recorded, so a run is reproducible.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from .recipe import Recipe, RecipeError, load_recipe

__all__ = ["RunResult", "run", "build_selection_function"]

log = logging.getLogger(__name__)

_BAND_COLUMN = {"G": "phot_g_mean_mag_true", "BP": "phot_bp_mean_mag_true", "RP": "phot_rp_mean_mag_true",
                "GRVS": "grvs_mag_true", "J": "j_m_true", "H": "h_m_true", "Ks": "k_m_true"}
_PARTICLE_SUFFIX = {"gadget4": "hdf5", "text": "txt", "hdf5": "hdf5"}


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run`.

    Attributes
    ----------
    out_dir : Path
    catalogue : Path
        The catalogue (or, with ``populations.mode = 'none'``, particle) file.
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


def _sample_and_populate(recipe, model, pops, solar, scale, seeds) -> Tuple[object, dict]:
    """Per component: pilot, point count, sample, populate; returns the concatenated StarTable and diagnostics."""
    from .catalogue import StarTable
    from .model.sampling import as_region, sample_particles
    from .populate import MagnitudeSelection, populate

    P = recipe.populations
    region = as_region(recipe.sample.region)
    names = _stellar_components(recipe, model, pops)
    af = model.action_finder()
    tables, diag = [], {}
    for k, name in enumerate(names):
        s_pilot, s_main, s_pop = seeds[k].spawn(3)
        cp = pops[name]
        if P.mode == "magnitude":
            sel = MagnitudeSelection(cp, P.limit, P.band, None, solar, m_min=P.m_min)
            d_max = sel.d_max
        else:
            sel = None
            d_max = cp.max_stars_per_mass(P.m_min) * 1.05
        args = (model.potential, [model.dfs[name]], af)
        kw = dict(densities=[model.component(name).density], region=region, selection=sel)
        t0 = time.perf_counter()
        pilot = sample_particles(*args, recipe.sample.pilot, rng=np.random.default_rng(s_pilot), **kw)
        m_sel = float(pilot.mass.sum())
        need = int(np.ceil(1.05 * scale * m_sel * d_max))
        cap = max(int(np.ceil(recipe.sample.max_points * scale)), 1)
        n = max(min(need, cap), 100)
        parts = sample_particles(*args, n, rng=np.random.default_rng(s_main), **kw)
        mass = (sel.point_mass(parts) if sel is not None else parts.mass) * scale
        t1 = time.perf_counter()
        tab = populate(parts, pops, mode=P.mode, m_min=P.m_min, band=P.band, limit=P.limit, extinction=None,
                       solar=solar, rng=np.random.default_rng(s_pop), mass=mass, overflow="clip")
        t2 = time.perf_counter()
        tab["component"] = np.full(len(tab), k, dtype=np.int16)  # index into the run's component list
        info = dict(tab.meta["populate"]["components"].get(name, {}))
        info.update({"selected_mass_Msun": m_sel, "points_needed": need, "points_cap": cap, "points": n,
                     "capped": need > cap, "sample_seconds": round(t1 - t0, 3), "populate_seconds": round(t2 - t1, 3)})
        if need > cap:
            log.warning("component %r: %d points needed for <= 1 star per point, capped at %d; excess stars dropped "
                        "(raise [sample] max_points or lower --scale)", name, need, cap)
        diag[name] = info
        tables.append(tab)
        log.info("%s: %d points -> %d stars (%.1f s sampling, %.1f s populating)", name, n, len(tab), t1 - t0, t2 - t1)
    out = StarTable()
    for c in tables[0]:
        out[c] = np.concatenate([t[c] for t in tables])
    out.meta["populate"] = {"mode": P.mode, "band": P.band, "limit": P.limit, "m_min": P.m_min, "scale": scale,
                            "component_names": names, "components": diag,
                            "populations": tables[0].meta["populate"]["populations"]}
    return out, diag


def run(recipe_or_path: Union[str, os.PathLike, Recipe], out_dir: Union[str, os.PathLike], seed: Optional[int] = None,
        scale: float = 1.0, cache_dir: Optional[Union[str, os.PathLike]] = None, overwrite: bool = True) -> RunResult:
    """Run a catalogue recipe and write the catalogue, ``summary.json`` and plots to ``out_dir``.

    Parameters
    ----------
    recipe_or_path : Recipe, path or built-in recipe name
        Validated completely before anything is computed.
    out_dir : path
        Output directory (created).
    seed : int, optional
        Seed of the run's :class:`numpy.random.SeedSequence` (default: fresh entropy, recorded in the outputs).
    scale : float
        Fraction in (0, 1] of the full mock generated (see the module docstring).
    cache_dir : path, optional
        Model cache directory (default ``$MOCKSKY_CACHE`` or ``~/.cache/mocksky``).
    overwrite : bool
        Replace existing output files.

    Returns
    -------
    RunResult

    Raises
    ------
    RecipeError
        Invalid recipe or arguments (before any computation).
    """
    from . import __version__

    recipe = load_recipe(recipe_or_path)
    if not (isinstance(scale, (int, float)) and 0.0 < float(scale) <= 1.0):
        raise RecipeError(f"scale: must be in (0, 1], got {scale!r}")
    scale = float(scale)
    ss = np.random.SeedSequence(seed)
    seed_used = int(ss.entropy)
    s_sample, s_observe, s_select = ss.spawn(3)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: Dict[str, float] = {}
    t_start = time.perf_counter()

    from .model.galaxy import GalaxyModel
    from .model.registry import MODELS
    from .observe import observe, solar_parameters
    from .populate import load_populations

    t = time.perf_counter()
    opts = {"max_iterations": recipe.model.iterations} if recipe.model.iterations else {}
    model = GalaxyModel.load_or_build(recipe.model.source, cache_dir=cache_dir, **opts)
    timings["model"] = time.perf_counter() - t
    solar = solar_parameters(recipe.solar.name)
    references = []
    if recipe.model.source.lower() in MODELS:
        references.append(MODELS[recipe.model.source.lower()].reference)
    references.append(f"solar parameters: {solar.reference}")
    plots = []
    run_meta = {"recipe_name": recipe.name, "recipe_text": recipe.text, "recipe_source": recipe.source,
                "mocksky_version": __version__, "seed": seed_used, "scale": scale, "solar": solar.meta(),
                "model": recipe.model.source, "references": references}

    if recipe.populations.mode == "none":
        path, n_rows, comp_info = _run_particles(recipe, model, out, scale, s_sample, overwrite)
        timings["sample"] = time.perf_counter() - t - timings["model"]
        summary = {"recipe": recipe.to_dict(), "run": {k: v for k, v in run_meta.items() if k != "recipe_text"},
                   "output": str(path), "n_particles": n_rows, "components": comp_info}
    else:
        t = time.perf_counter()
        pops = load_populations(recipe.populations.spec)
        names = _stellar_components(recipe, model, pops)
        seeds = s_sample.spawn(len(names))
        table, diag = _sample_and_populate(recipe, model, pops, solar, scale, seeds)
        timings["sample_populate"] = time.perf_counter() - t

        t = time.perf_counter()
        observe(table, solar=solar, dust=recipe.dust.map, errors=recipe.errors.models,
                rng=np.random.default_rng(s_observe))
        n_generated = len(table)
        if recipe.populations.mode == "magnitude":
            col = _BAND_COLUMN[recipe.populations.band]
            table = table.select(np.asarray(table[col]) <= recipe.populations.limit)
        n_limit = len(table)
        timings["observe"] = time.perf_counter() - t

        t = time.perf_counter()
        sf = build_selection_function(recipe)
        n_selected_expected = None
        if sf is not None:
            p = sf.apply(table)
            n_selected_expected = float(np.sum(p))
            if recipe.selection.mode == "sample":
                table = table.select(np.random.default_rng(s_select).random(len(p)) < p)
            refs = (getattr(sf, "meta", {}) or {}).get("references")
            if refs:
                references.extend(refs)
            run_meta["selection"] = {"surveys": list(recipe.selection.surveys),
                                     "cuts": [dict(c) for c in recipe.selection.cuts], "mode": recipe.selection.mode}
        timings["select"] = time.perf_counter() - t

        t = time.perf_counter()
        if recipe.output.columns:
            missing = [c for c in recipe.output.columns if c not in table]
            if missing:
                raise RecipeError(f"[output].columns: {missing} are not produced by this recipe; available: "
                                  f"{sorted(table)}")
            keep = set(recipe.output.columns)
            for c in [c for c in table if c not in keep]:
                del table[c]
        table.meta["run"] = run_meta
        from .catalogue import write_catalogue

        suffix = {"hdf5": "hdf5", "parquet": "parquet", "fits": "fits"}[recipe.output.format]
        path = write_catalogue(table, out / f"{recipe.output.name}.{suffix}", format=recipe.output.format,
                               overwrite=overwrite)
        timings["write"] = time.perf_counter() - t
        n_rows = len(table)

        comparison = None
        if recipe.compare is not None:
            from .compare.run import compare_recipe

            t = time.perf_counter()
            comparison, cplots = compare_recipe(recipe, path, out, columns=list(table))
            plots.extend(cplots)
            timings["compare"] = time.perf_counter() - t
        summary = {"recipe": recipe.to_dict(), "run": {k: v for k, v in run_meta.items() if k != "recipe_text"},
                   "catalogue": str(path), "n_generated": n_generated, "n_within_limit": n_limit, "n_rows": n_rows,
                   "n_selected_expected": n_selected_expected, "components": diag, "comparison": comparison}
    timings["total"] = time.perf_counter() - t_start
    summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    spath = out / "summary.json"
    _atomic_write_text(spath, json.dumps(summary, indent=1, default=_json_default) + "\n")
    log.info("run %s: %d rows -> %s in %.1f s", recipe.name, n_rows, path, timings["total"])
    return RunResult(out, Path(path), spath, tuple(plots), int(n_rows), seed_used, timings, summary)


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
