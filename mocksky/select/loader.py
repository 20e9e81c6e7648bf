"""Survey selection functions defined as data: ``selection/<name>.toml``.

File format (all keys validated; an unknown key raises :class:`ConfigError` naming it and the allowed keys)::

    [survey]                      # metadata, all optional
    name = "apogee_dr17"
    title = "..."
    description = "..."
    references = ["Zasowski et al. 2013, AJ 146, 81", ...]
    notes = "..."

    [[factor]]                    # one or more; the survey selection is their product
    type = "apogee_dr17"          # a registered type (see mocksky.select.base.REGISTRY)
    jk0_limits = true             # the type's constructor arguments

    [[factor]]
    type = "range"
    column = "logg"
    max = 3.5

Search order of :func:`survey` for ``<name>.toml``: the ``search_path`` argument, the directories in
``$MOCKSKY_SELECTION_PATH`` (``os.pathsep``-separated), ``mocksky/data/select/surveys`` (package data) and
the ``selection/`` folder of the source tree.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

from .base import REGISTRY, ConfigError, Product, SelectionFunction

__all__ = ["build_selection", "load_selection", "survey", "available_surveys", "selection_dirs", "ENV_VAR"]

ENV_VAR = "MOCKSKY_SELECTION_PATH"
_TOP_KEYS = ("survey", "factor")
_SURVEY_KEYS = {"name": str, "title": str, "description": str, "references": list, "notes": str}


def _registry() -> Dict[str, type]:
    # importing the modules registers their types
    from . import apogee, cuts, gaia  # noqa: F401

    return REGISTRY


def build_selection(spec: Mapping[str, Any], source: str = "<dict>") -> SelectionFunction:
    """Selection function from a parsed survey definition (the TOML document as a dict).

    Parameters
    ----------
    spec : mapping
        ``{"survey": {...metadata...}, "factor": [{"type": ..., ...}, ...]}``.
    source : str
        Name used in error messages and stored in ``meta["source"]``.

    Returns
    -------
    SelectionFunction
        The single factor, or the :class:`~mocksky.select.base.Product` of the factors; its ``meta`` holds
        the ``[survey]`` metadata plus ``source``.

    Raises
    ------
    ConfigError
        Unknown or missing keys, unknown ``type`` (message lists the allowed keys/types), wrong value types.
    """
    for key in spec:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{source}: unknown top-level key {key!r}; allowed keys: {list(_TOP_KEYS)}")
    meta = dict(spec.get("survey", {}))
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{source}: [survey] must be a table")
    for key, val in meta.items():
        if key not in _SURVEY_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r} in [survey]; allowed keys: {list(_SURVEY_KEYS)}")
        if not isinstance(val, _SURVEY_KEYS[key]):
            raise ConfigError(f"{source}: [survey] {key} must be a {_SURVEY_KEYS[key].__name__}, got {type(val).__name__}")
    if "references" in meta and not all(isinstance(r, str) for r in meta["references"]):
        raise ConfigError(f"{source}: [survey] references must be a list of strings")
    factors_spec = spec.get("factor")
    if not factors_spec:
        raise ConfigError(f"{source}: no [[factor]] table: a survey needs at least one selection factor")
    if not isinstance(factors_spec, list):
        raise ConfigError(f"{source}: 'factor' must be an array of tables ([[factor]])")
    registry = _registry()
    factors: List[SelectionFunction] = []
    for i, fs in enumerate(factors_spec):
        where = f"{source}: factor[{i}]"
        if not isinstance(fs, Mapping):
            raise ConfigError(f"{where} must be a table")
        if "type" not in fs:
            raise ConfigError(f"{where} has no 'type'; allowed types: {sorted(registry)}")
        typ = fs["type"]
        if typ not in registry:
            raise ConfigError(f"{where}: unknown type {typ!r}; allowed types: {sorted(registry)}")
        factors.append(registry[typ].from_config({k: v for k, v in fs.items() if k != "type"}, where=where))
    sf = factors[0] if len(factors) == 1 else Product(factors)
    sf.meta = {**meta, "source": source}
    return sf


def load_selection(path: Union[str, os.PathLike]) -> SelectionFunction:
    """Selection function defined by a survey TOML file (format in the module docstring).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ConfigError
        If the file is not valid TOML or not a valid survey definition.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            spec = _toml.load(fh)
        except _toml.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return build_selection(spec, source=str(path))


def selection_dirs(search_path: Optional[Sequence[Union[str, os.PathLike]]] = None) -> List[Path]:
    """Directories searched for ``<name>.toml`` by :func:`survey`, in order (existing ones only)."""
    dirs = [Path(p) for p in (search_path or [])]
    dirs += [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    dirs += [here.parent / "data" / "select" / "surveys", here.parent.parent / "selection"]
    out: List[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_surveys(search_path=None) -> Dict[str, Path]:
    """Survey name -> definition file, the first found in :func:`selection_dirs` order."""
    found: Dict[str, Path] = {}
    for d in selection_dirs(search_path):
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, p)
    return found


def survey(name: str, search_path=None) -> SelectionFunction:
    """The selection function of a named survey (``selection/<name>.toml``) or of a ``.toml`` path.

    Parameters
    ----------
    name : str
        Survey name, e.g. ``"gaia_dr3"``, ``"gaia_dr3_rvs"``, ``"apogee_dr17"``, or a path to a TOML file.
    search_path : sequence of path-like, optional
        Extra directories searched first.

    Raises
    ------
    KeyError
        If no definition is found (the message lists the available surveys and searched directories).
    ConfigError
        If the definition is invalid.
    """
    if name.endswith(".toml") or os.sep in name:
        return load_selection(name)
    surveys = available_surveys(search_path)
    if name not in surveys:
        raise KeyError(f"unknown survey {name!r}; available: {sorted(surveys)} "
                       f"(searched {[str(d) for d in selection_dirs(search_path)]}; add directories with "
                       f"${ENV_VAR})")
    return load_selection(surveys[name])
