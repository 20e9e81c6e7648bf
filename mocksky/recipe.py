"""Catalogue recipes: TOML documents describing one ``mocksky run`` (model -> sample -> populate -> observe ->
select -> write -> compare).

A recipe is validated completely by :func:`load_recipe` / :func:`parse_recipe` before anything is computed: unknown
keys (typos), wrong types, unknown names (model, population spec, solar parameters, dust map, error model, survey,
region shape, selection factor type, output format, comparison scheme) raise :class:`RecipeError` naming the key
(``"[selection]: unknown key 'seleciton'; allowed: ..."``).

Sections (all tables; only ``[model]`` is required, every other key has a default)::

    [recipe]       name, description
    [model]        source (built-in model name or Agama INI path), iterations (int >= 1, optional)
    [populations]  spec (populations TOML name/path), mode ('magnitude' | 'volume'), band, limit [mag], m_min [Msun],
                   ('none': no stars, the sampled DF particles are the output, e.g. N-body initial conditions)
    [solar]        name ('bv23', 'bv24', 'astropy')
    [dust]         map ('combined19', 'sfd', 'planck13', 'none')
    [errors]       models (list of error-model names, applied in order)
    [selection]    surveys (names of selection/*.toml), cuts (inline factors as in selection/*.toml ``[[factor]]``),
                   mode ('weight': keep all stars with a ``selection_probability`` column; 'sample': keep a
                   Bernoulli draw)
    [sample]       region (table as :func:`mocksky.model.sampling.as_region` or a string 'sphere:x,y,z,r'),
                   components (DF component names; default every stellar one), max_points (per component; multiplied
                   by the run's scale), pilot (pilot points per component; the plan's pilot runs
                   clip(50 pilot, 2e4, 1e5) proposals, times azimuth_copies, or times 4 with heliocentric
                   proposals), azimuth_copies (K >= 1 azimuths tried per (R, z, v) proposal
                   with shared actions: exact marginals, K-fold correlation in the meridional phase space; see
                   :mod:`mocksky.model.sampling.sampler`), method ('rejection': equal-mass points, one star per
                   point, importance-weighted only where max_points binds or where the plan's rejection acceptance
                   is below 2e-3; 'weighted': always an importance-weighted
                   mock of max_points points per component (:mod:`mocksky.model.sampling.weighted`), much faster when
                   the selection is peaked; rows carry the column 'weight'), proposal ('galactocentric': positions
                   on the component's (R, z) grid; 'heliocentric': on cells of sky x distance around the Sun,
                   adapted to density x selection, for magnitude-limited mocks; see
                   :mod:`mocksky.model.sampling.helio`)
    [run]          chunk_points (DF points per chunk, default 250000: a run is a fixed list of chunks of at most this
                   many points, each an independent unit of work with its own random stream and output part; it
                   bounds the memory of a worker and never depends on the number of workers)
    [output]       format ('hdf5', 'parquet', 'fits'; with populations.mode = 'none': 'gadget4', 'text', 'hdf5'),
                   columns (catalogue columns of :data:`mocksky.catalogue.COLUMNS`; empty = all), name (file stem)
    [compare]      scheme ('bv24', 'bv23', 'healpix'), observed ('bv24' or a path to the observed CSV), weight
                   (column or ''), nside, mag_edges, mag_column (healpix)

Built-in recipes live in the repository's ``catalogues/`` directory (:func:`available_recipes`).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

__all__ = ["RecipeError", "Recipe", "ModelSection", "PopulationsSection", "SolarSection", "DustSection",
           "ErrorsSection", "SelectionSection", "SampleSection", "RunSection", "OutputSection", "CompareSection", "parse_recipe",
           "load_recipe", "available_recipes", "recipe_dirs", "resolve_recipe"]

#: Directory of the built-in recipes: ``catalogues/`` of a repository checkout (editable install), else the
#: copy a wheel carries in ``mocksky/data/catalogues``.
_CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "catalogues"
CATALOGUE_DIR = _CHECKOUT_DIR if _CHECKOUT_DIR.is_dir() else Path(__file__).resolve().parent / "data" / "catalogues"


class RecipeError(ValueError):
    """A recipe is invalid; the message names the section and key."""


# ----------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ModelSection:
    """``[model]``: the self-consistent Galaxy model (:meth:`mocksky.model.galaxy.GalaxyModel.load_or_build`)."""
    source: str = "bv23"
    iterations: Optional[int] = None


@dataclass(frozen=True)
class PopulationsSection:
    """``[populations]``: stellar populations (:func:`mocksky.populate.load_populations`) and the sampling mode."""
    spec: str = "bv23"
    mode: str = "magnitude"
    band: str = "G"
    limit: Optional[float] = 14.0
    m_min: Optional[float] = None


@dataclass(frozen=True)
class SolarSection:
    """``[solar]``: solar parameters (:func:`mocksky.observe.solar_parameters`)."""
    name: str = "bv23"


@dataclass(frozen=True)
class DustSection:
    """``[dust]``: dust map (:func:`mocksky.observe.dust_map`)."""
    map: str = "combined19"


@dataclass(frozen=True)
class ErrorsSection:
    """``[errors]``: error models (:func:`mocksky.observe.error_model`), applied in order."""
    models: Tuple[str, ...] = ("gaia_dr3", "exact")


@dataclass(frozen=True)
class SelectionSection:
    """``[selection]``: survey selection functions (``selection/*.toml``) times inline cuts."""
    surveys: Tuple[str, ...] = ()
    cuts: Tuple[Mapping[str, Any], ...] = ()
    mode: str = "weight"


@dataclass(frozen=True)
class SampleSection:
    """``[sample]``: where and how many DF points to draw."""
    region: Optional[Any] = None
    components: Optional[Tuple[str, ...]] = None
    max_points: int = 200_000
    pilot: int = 2000
    azimuth_copies: int = 1
    method: str = "rejection"
    proposal: str = "galactocentric"


@dataclass(frozen=True)
class RunSection:
    """``[run]``: how the run is cut into chunks (:mod:`mocksky.pipeline`)."""
    chunk_points: int = 250_000


@dataclass(frozen=True)
class OutputSection:
    """``[output]``: the catalogue file."""
    format: str = "hdf5"
    columns: Tuple[str, ...] = ()
    name: str = "catalogue"


@dataclass(frozen=True)
class CompareSection:
    """``[compare]``: binning and comparison with observed data (:mod:`mocksky.compare`)."""
    scheme: str = "healpix"
    observed: Optional[str] = None
    weight: str = "selection_probability"
    nside: int = 16
    mag_edges: Tuple[float, ...] = ()
    mag_column: str = "phot_g_mean_mag"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe; ``text`` is the TOML source (stored in the catalogue metadata)."""
    name: str
    description: str
    model: ModelSection
    populations: PopulationsSection = field(default_factory=PopulationsSection)
    solar: SolarSection = field(default_factory=SolarSection)
    dust: DustSection = field(default_factory=DustSection)
    errors: ErrorsSection = field(default_factory=ErrorsSection)
    selection: SelectionSection = field(default_factory=SelectionSection)
    sample: SampleSection = field(default_factory=SampleSection)
    run: RunSection = field(default_factory=RunSection)
    output: OutputSection = field(default_factory=OutputSection)
    compare: Optional[CompareSection] = None
    text: str = ""
    source: str = "<string>"

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable) of the validated recipe, without ``text``."""
        d = dataclasses.asdict(self)
        d.pop("text")
        return _jsonable(d)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# ----------------------------------------------------------------------------------------------- validation
_SECTIONS = {"recipe": None, "model": ModelSection, "populations": PopulationsSection, "solar": SolarSection,
             "dust": DustSection, "errors": ErrorsSection, "selection": SelectionSection, "sample": SampleSection,
             "output": OutputSection, "compare": CompareSection,
             "run": RunSection}
_MODES = ("magnitude", "volume", "none")
_SAMPLE_METHODS = ("rejection", "weighted")
_SAMPLE_PROPOSALS = ("galactocentric", "heliocentric")
_SELECTION_MODES = ("weight", "sample")
_FORMATS = ("hdf5", "parquet", "fits")
_PARTICLE_FORMATS = ("gadget4", "text", "hdf5")
_SCHEMES = ("bv24", "bv23", "healpix")
_BANDS = ("G", "BP", "RP", "GRVS", "J", "H", "Ks")


def _check_keys(where: str, d: Mapping, allowed) -> None:
    for k in d:
        if k not in allowed:
            raise RecipeError(f"{where}: unknown key {k!r}; allowed: {sorted(allowed)}")


def _typed(where: str, key: str, v, kind, allow_none: bool = False):
    """Check the type of one value (bool is never accepted as a number)."""
    if v is None and allow_none:
        return None
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RecipeError(f"{where}.{key}: expected a number, got {v!r} ({type(v).__name__})")
        return float(v)
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise RecipeError(f"{where}.{key}: expected an integer, got {v!r} ({type(v).__name__})")
        return int(v)
    if kind is str:
        if not isinstance(v, str):
            raise RecipeError(f"{where}.{key}: expected a string, got {v!r} ({type(v).__name__})")
        return v
    if kind is list:
        if not isinstance(v, list):
            raise RecipeError(f"{where}.{key}: expected an array, got {v!r} ({type(v).__name__})")
        return v
    raise TypeError(kind)  # pragma: no cover


def _choice(where: str, key: str, v, allowed) -> str:
    v = _typed(where, key, v, str)
    if v not in allowed:
        raise RecipeError(f"{where}.{key}: unknown value {v!r}; allowed: {list(allowed)}")
    return v


def _str_list(where: str, key: str, v) -> Tuple[str, ...]:
    v = _typed(where, key, v, list)
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise RecipeError(f"{where}.{key}[{i}]: expected a string, got {s!r}")
    return tuple(v)


def _section(where: str, raw, cls):
    if not isinstance(raw, dict):
        raise RecipeError(f"[{where}]: expected a table, got {type(raw).__name__}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    _check_keys(f"[{where}]", raw, allowed)
    return raw


def _model(raw, base: Path) -> ModelSection:
    from .model.registry import MODELS

    w = "[model]"
    _section("model", raw, ModelSection)
    src = _typed(w, "source", raw.get("source", "bv23"), str)
    if src.lower() not in MODELS:
        p = Path(src) if Path(src).is_absolute() else base / src
        if not p.is_file():
            raise RecipeError(f"{w}.source: {src!r} is neither a built-in model {sorted(MODELS)} nor an "
                              "existing INI file")
        src = str(p)
    it = _typed(w, "iterations", raw.get("iterations"), int, allow_none=True)
    if it is not None and it < 1:
        raise RecipeError(f"{w}.iterations: must be >= 1, got {it}")
    return ModelSection(src, it)


def _populations(raw, base: Path) -> PopulationsSection:
    w = "[populations]"
    _section("populations", raw, PopulationsSection)
    spec = _typed(w, "spec", raw.get("spec", "bv23"), str)
    builtin = Path(__file__).resolve().parent / "data" / "populations"
    if not (builtin / f"{spec}.toml").is_file():
        p = Path(spec) if Path(spec).is_absolute() else base / spec
        if not p.is_file():
            names = sorted(q.stem for q in builtin.glob("*.toml"))
            raise RecipeError(f"{w}.spec: {spec!r} is neither a built-in population spec {names} nor a file")
        spec = str(p)
    mode = _choice(w, "mode", raw.get("mode", "magnitude"), _MODES)
    band = _choice(w, "band", raw.get("band", "G"), _BANDS)
    limit = _typed(w, "limit", raw.get("limit", 14.0 if mode == "magnitude" else None), float, allow_none=True)
    if mode == "magnitude" and limit is None:
        raise RecipeError(f"{w}.limit: required (apparent magnitude) when mode = 'magnitude'")
    m_min = _typed(w, "m_min", raw.get("m_min"), float, allow_none=True)
    if m_min is not None and not 0.08 <= m_min < 150:
        raise RecipeError(f"{w}.m_min: initial mass in Msun within [0.08, 150), got {m_min}")
    return PopulationsSection(spec, mode, band, limit, m_min)


def _selection(raw, base: Path) -> SelectionSection:
    from .select import available_surveys, build_selection

    w = "[selection]"
    _section("selection", raw, SelectionSection)
    surveys = _str_list(w, "surveys", raw.get("surveys", []))
    known = available_surveys()
    resolved = []
    for s in surveys:
        if s in known:
            resolved.append(s)
            continue
        p = Path(s) if Path(s).is_absolute() else base / s
        if not p.is_file():
            raise RecipeError(f"{w}.surveys: unknown survey {s!r}; allowed: {sorted(known)} or a TOML file")
        resolved.append(str(p))
    surveys = tuple(resolved)
    cuts = _typed(w, "cuts", raw.get("cuts", []), list)
    for i, c in enumerate(cuts):
        if not isinstance(c, dict):
            raise RecipeError(f"{w}.cuts[{i}]: expected a table like {{type = 'range', column = 'logg', max = 3.5}}")
        try:
            build_selection({"factor": [dict(c)]}, source=f"{w}.cuts[{i}]")
        except (ValueError, TypeError, KeyError) as exc:
            raise RecipeError(f"{w}.cuts[{i}]: {exc}") from exc
    mode = _choice(w, "mode", raw.get("mode", "weight"), _SELECTION_MODES)
    return SelectionSection(surveys, tuple(dict(c) for c in cuts), mode)


def _sample(raw) -> SampleSection:
    from .model.sampling import as_region

    w = "[sample]"
    _section("sample", raw, SampleSection)
    region = raw.get("region")
    if region is not None:
        try:
            as_region(region)
        except (ValueError, TypeError) as exc:
            raise RecipeError(f"{w}.region: {exc}") from exc
    comps = raw.get("components")
    comps = _str_list(w, "components", comps) if comps is not None else None
    mp = _typed(w, "max_points", raw.get("max_points", 200_000), int)
    pilot = _typed(w, "pilot", raw.get("pilot", 2000), int)
    if mp < 1 or pilot < 1:
        raise RecipeError(f"{w}: max_points and pilot must be >= 1, got {mp}, {pilot}")
    k = _typed(w, "azimuth_copies", raw.get("azimuth_copies", 1), int)
    if not 1 <= k <= 1024:
        raise RecipeError(f"{w}.azimuth_copies: an integer in [1, 1024], got {k}")
    method = _choice(w, "method", raw.get("method", "rejection"), _SAMPLE_METHODS)
    proposal = _choice(w, "proposal", raw.get("proposal", "galactocentric"), _SAMPLE_PROPOSALS)
    if proposal == "heliocentric" and k != 1:
        raise RecipeError(f"{w}.azimuth_copies: must be 1 with proposal = 'heliocentric' (positions are drawn around "
                          f"the Sun, not in azimuth), got {k}")
    return SampleSection(region, comps, mp, pilot, k, method, proposal)


def _run(raw) -> RunSection:
    w = "[run]"
    _section("run", raw, RunSection)
    cp = _typed(w, "chunk_points", raw.get("chunk_points", RunSection.chunk_points), int)
    if cp < 100:
        raise RecipeError(f"{w}.chunk_points: an integer >= 100, got {cp}")
    return RunSection(cp)


def _output(raw, particles: bool) -> OutputSection:
    from .catalogue import COLUMNS

    w = "[output]"
    _section("output", raw, OutputSection)
    fmt = _choice(w, "format", raw.get("format", "hdf5"), _PARTICLE_FORMATS if particles else _FORMATS)
    cols = _str_list(w, "columns", raw.get("columns", []))
    if cols and particles:
        raise RecipeError(f"{w}.columns: not used with populations.mode = 'none' (particles are written whole)")
    for c in cols:
        if c not in COLUMNS:
            raise RecipeError(f"{w}.columns: unknown column {c!r}; allowed: the names of mocksky.catalogue.COLUMNS")
    name = _typed(w, "name", raw.get("name", "catalogue"), str)
    if not name or "/" in name or name.startswith("."):
        raise RecipeError(f"{w}.name: a plain file stem, got {name!r}")
    return OutputSection(fmt, cols, name)


def _compare(raw, base: Path) -> CompareSection:
    w = "[compare]"
    _section("compare", raw, CompareSection)
    scheme = _choice(w, "scheme", raw.get("scheme", "healpix"), _SCHEMES)
    obs = _typed(w, "observed", raw.get("observed"), str, allow_none=True)
    if scheme == "bv24":
        if obs is None:
            obs = "bv24"
        if obs != "bv24":
            p = Path(obs) if Path(obs).is_absolute() else base / obs
            if not p.is_file():
                raise RecipeError(f"{w}.observed: 'bv24' (the shipped BV24 histograms) or an existing CSV, got {obs!r}")
            obs = str(p)
    elif obs is not None:
        raise RecipeError(f"{w}.observed: only used with scheme = 'bv24'; scheme is {scheme!r}")
    weight = _typed(w, "weight", raw.get("weight", "selection_probability"), str)
    nside = _typed(w, "nside", raw.get("nside", 16), int)
    if nside < 1 or nside & (nside - 1):
        raise RecipeError(f"{w}.nside: a power of 2, got {nside}")
    edges = tuple(_typed(w, "mag_edges", e, float) for e in _typed(w, "mag_edges", raw.get("mag_edges", []), list))
    if edges and (len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:]))):
        raise RecipeError(f"{w}.mag_edges: >= 2 increasing magnitudes, got {list(edges)}")
    mcol = _typed(w, "mag_column", raw.get("mag_column", "phot_g_mean_mag"), str)
    return CompareSection(scheme, obs, weight, nside, edges, mcol)


def parse_recipe(text: str, source: str = "<string>", base_dir: Optional[Union[str, os.PathLike]] = None) -> Recipe:
    """Parse and validate a recipe from TOML text.

    Parameters
    ----------
    text : str
        The TOML document.
    source : str
        Name for messages (file path).
    base_dir : path, optional
        Directory relative paths (INI, population spec, observed file) are resolved against (default: cwd).

    Returns
    -------
    Recipe

    Raises
    ------
    RecipeError
        TOML syntax errors, unknown sections or keys, wrong types, unknown names; the message names the key.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: invalid TOML: {exc}") from exc
    try:
        _check_keys("recipe", doc, list(_SECTIONS))
        if "model" not in doc:
            raise RecipeError("[model]: section required (source = built-in model name or INI file)")
        head = doc.get("recipe", {})
        if not isinstance(head, dict):
            raise RecipeError("[recipe]: expected a table")
        _check_keys("[recipe]", head, ["name", "description"])
        from .observe import available_dust_maps, available_error_models, available_solar_parameters

        solar = _section("solar", doc.get("solar", {}), SolarSection)
        dust = _section("dust", doc.get("dust", {}), DustSection)
        errs = _section("errors", doc.get("errors", {}), ErrorsSection)
        models = _str_list("[errors]", "models", errs.get("models", ["gaia_dr3", "exact"]))
        for m in models:
            if m not in available_error_models():
                raise RecipeError(f"[errors].models: unknown error model {m!r}; allowed: {list(available_error_models())}")
        pops = _populations(doc.get("populations", {}), base)
        rec = Recipe(
            name=_typed("[recipe]", "name", head.get("name", Path(source).stem), str),
            description=_typed("[recipe]", "description", head.get("description", ""), str),
            model=_model(doc["model"], base),
            populations=pops,
            solar=SolarSection(_choice("[solar]", "name", solar.get("name", "bv23"), available_solar_parameters())),
            dust=DustSection(_choice("[dust]", "map", dust.get("map", "combined19"), available_dust_maps())),
            errors=ErrorsSection(models),
            selection=_selection(doc.get("selection", {}), base),
            sample=_sample(doc.get("sample", {})),
            run=_run(doc.get("run", {})),
            output=_output(doc.get("output", {}), pops.mode == "none"),
            compare=_compare(doc["compare"], base) if "compare" in doc else None,
            text=text, source=source)
        if rec.compare is not None and rec.output.columns:
            need = ({"l", "b", rec.compare.mag_column} if rec.compare.scheme == "healpix"
                    else {"R", "z", "vR", "vz", "vphi"})
            if rec.compare.weight:
                need.add(rec.compare.weight)
            missing = sorted(need - set(rec.output.columns))
            if missing:
                raise RecipeError(f"[output].columns: the [compare] scheme {rec.compare.scheme!r} needs {missing}")
        if rec.populations.mode == "none" and (rec.compare is not None or rec.selection.surveys or rec.selection.cuts):
            raise RecipeError("[populations].mode = 'none' writes particles: [compare] and [selection] are not allowed")
    except RecipeError as exc:
        raise RecipeError(f"{source}: {exc}") from None
    return rec


def recipe_dirs():
    """Directories searched for recipes by name: ``$MOCKSKY_RECIPES`` (os.pathsep-separated), then ``catalogues/``."""
    env = os.environ.get("MOCKSKY_RECIPES", "")
    return [Path(p) for p in env.split(os.pathsep) if p] + [CATALOGUE_DIR]


def available_recipes() -> Dict[str, Path]:
    """Built-in (and ``$MOCKSKY_RECIPES``) recipes: name -> path (first directory wins)."""
    out: Dict[str, Path] = {}
    for d in recipe_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                out.setdefault(p.stem, p)
    return out


def resolve_recipe(name_or_path: Union[str, os.PathLike]) -> Path:
    """Path of a recipe given as a file or a built-in name.

    Raises
    ------
    RecipeError
        Neither a file nor a known name (the known names are listed).
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    known = available_recipes()
    if str(name_or_path) in known:
        return known[str(name_or_path)]
    raise RecipeError(f"recipe {str(name_or_path)!r}: no such file and not a built-in recipe; built-in: {sorted(known)}")


def load_recipe(name_or_path: Union[str, os.PathLike, Recipe]) -> Recipe:
    """Read and validate a recipe file or built-in recipe (relative paths inside resolve against its directory).

    Raises
    ------
    RecipeError
        See :func:`parse_recipe` and :func:`resolve_recipe`.
    """
    if isinstance(name_or_path, Recipe):
        return name_or_path
    path = resolve_recipe(name_or_path)
    return parse_recipe(path.read_text(), source=str(path), base_dir=path.parent)
