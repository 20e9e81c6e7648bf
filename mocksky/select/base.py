"""Selection functions: the probability that a survey selects each star of a table.

A :class:`SelectionFunction` maps a star table (a mapping of column name to 1D array, normally a
:class:`mocksky.catalogue.StarTable`) to an array of probabilities in [0, 1]. It declares the columns it
reads in :attr:`SelectionFunction.required_columns` (Gaia archive / 2MASS names of
:mod:`mocksky.catalogue.schema`); a missing column raises :class:`MissingColumnError` naming it.

Selection functions compose by product, ``sf1 * sf2`` (independent selection stages: the probability of
passing all of them), and a number multiplies a selection function as a constant sampling fraction.

NaN policy (all selection functions): a star whose value in any required column is not finite (NaN or
+-inf: not measured, or no photometry) gets probability 0 -- it cannot pass a selection that needs that
value. Subclasses compute on the full arrays; the base class zeroes those rows afterwards.

Every concrete class is registered under a ``type`` name used in the survey-definition TOML files
(``selection/*.toml``, see :mod:`mocksky.select.loader`) and is built from such a table by
:meth:`SelectionFunction.from_config`, which rejects unknown keys naming the allowed ones.
"""
from __future__ import annotations

import abc
import inspect
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Type

import numpy as np

__all__ = [
    "SelectionFunction", "Product", "Constant", "MissingColumnError", "ConfigError", "REGISTRY", "register",
]

#: ``type`` name -> SelectionFunction subclass, filled by :func:`register`.
REGISTRY: Dict[str, Type["SelectionFunction"]] = {}


class MissingColumnError(KeyError):
    """The star table lacks a column a selection function needs (message names the column)."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class ConfigError(ValueError):
    """Invalid selection-function configuration (unknown or missing key, bad value)."""


def register(cls: Type["SelectionFunction"]) -> Type["SelectionFunction"]:
    """Class decorator: make ``cls`` constructible from configuration under ``cls.type_name``."""
    name = cls.type_name
    if not name or name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"selection type name {name!r} is empty or already registered")
    REGISTRY[name] = cls
    return cls


def _n_rows(table: Mapping[str, Any]) -> int:
    for v in table.values():
        return int(np.shape(v)[0]) if np.ndim(v) else 1
    return 0


class SelectionFunction(abc.ABC):
    """Base class: probability that a survey selects each star.

    Subclasses set ``type_name`` (configuration name), implement :attr:`required_columns` and
    :meth:`_probability`, and store each constructor argument under an attribute of the same name
    (used by :meth:`config` for provenance).

    Attributes
    ----------
    meta : dict
        Provenance (survey name, references, source file) set by the loader; empty by default.
    """

    type_name: str = ""

    #: set by the TOML loader: survey metadata (name, title, references, source path)
    meta: Dict[str, Any]

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.meta = {}
        return obj

    # -- interface -------------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def required_columns(self) -> Tuple[str, ...]:
        """Names of the table columns this selection function reads."""

    @abc.abstractmethod
    def _probability(self, cols: Dict[str, np.ndarray], n: int) -> np.ndarray:
        """Probabilities for ``n`` stars from float64 1D arrays ``cols`` (may contain NaN)."""

    def footprint(self, l, b) -> np.ndarray:
        """Upper bound of the selection probability at each sky position, over every other property of a star.

        Samplers use it to put phase-space points only where the survey can select stars (e.g. inside
        APOGEE's fields). The default, 1 everywhere, is always valid; subclasses with a limited sky coverage
        override it.

        Parameters
        ----------
        l, b : array_like, shape (n,)
            Galactic longitude and latitude [deg].

        Returns
        -------
        ndarray of float64, shape (n,)
            Values in [0, 1] with ``probability(star) <= footprint(l, b)`` for every star at (l, b).
        """
        return np.ones(np.shape(np.asarray(l, dtype=np.float64)))

    # -- evaluation ------------------------------------------------------------------------------------
    def probability(self, table: Mapping[str, Any]) -> np.ndarray:
        """Selection probability of every star.

        Parameters
        ----------
        table : mapping of str to array_like
            Star table with at least :attr:`required_columns`, each a 1D array of the same length n
            (units of :mod:`mocksky.catalogue.schema`).

        Returns
        -------
        ndarray of float64, shape (n,)
            Probabilities in [0, 1]; 0 for stars with a non-finite value in a required column.

        Raises
        ------
        MissingColumnError
            If a required column is absent (the message names it and the selection function).
        ValueError
            If a required column is not 1D or the columns differ in length.
        """
        cols = self._gather(table)
        n = _n_rows(table) if not cols else next(iter(cols.values())).shape[0]
        return self._evaluate(cols, n)

    __call__ = probability

    def _gather(self, table: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        if not isinstance(table, Mapping):
            raise TypeError(f"{self!r}: expected a star table (mapping of column name to array), got {type(table).__name__}")
        missing = [c for c in self.required_columns if c not in table]
        if missing:
            have = sorted(table.keys())
            raise MissingColumnError(
                f"{self!r} needs column(s) {missing} missing from the star table (present: {have})")
        cols: Dict[str, np.ndarray] = {}
        n = None
        for c in self.required_columns:
            a = np.asarray(table[c], dtype=np.float64)
            if a.ndim != 1:
                raise ValueError(f"{self!r}: column {c!r} must be 1D, got shape {a.shape}")
            if n is not None and a.shape[0] != n:
                raise ValueError(f"{self!r}: column {c!r} has {a.shape[0]} rows, other required columns {n}")
            n = a.shape[0]
            cols[c] = a
        return cols

    def _evaluate(self, cols: Dict[str, np.ndarray], n: int) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            p = np.asarray(self._probability(cols, n), dtype=np.float64)
        if p.shape != (n,):
            raise RuntimeError(f"{self!r} returned shape {p.shape}, expected ({n},)")
        bad = None
        for c in self.required_columns:
            nf = ~np.isfinite(cols[c])
            bad = nf if bad is None else (bad | nf)
        if bad is not None and bad.any():
            p = p.copy() if not p.flags.writeable else p
            p[bad] = 0.0
        return p

    def apply(self, table: Mapping[str, Any], column: str = "selection_probability") -> np.ndarray:
        """Write the probabilities into ``table[column]`` (multiplying an existing column) and return them.

        An existing ``column`` (a previous selection stage) is multiplied, so applying ``sf1`` then ``sf2``
        equals applying ``sf1 * sf2``.
        """
        p = self.probability(table)
        if column in table:
            p = p * np.asarray(table[column], dtype=np.float64)
        table[column] = p
        return p

    def sample(self, table: Mapping[str, Any], rng=None) -> np.ndarray:
        """Boolean mask of the stars the survey selects, drawn as independent Bernoulli trials.

        Parameters
        ----------
        table : mapping of str to array_like
        rng : numpy.random.Generator, int or None
            Random generator or seed (``numpy.random.default_rng(rng)``).

        Returns
        -------
        ndarray of bool, shape (n,)
        """
        rng = np.random.default_rng(rng)
        p = self.probability(table)
        return rng.random(p.shape[0]) < p

    # -- composition -----------------------------------------------------------------------------------
    def __mul__(self, other):
        if isinstance(other, SelectionFunction):
            return Product([self, other])
        if isinstance(other, (int, float, np.floating, np.integer)) and not isinstance(other, bool):
            return Product([self, Constant(float(other))])
        return NotImplemented

    def __rmul__(self, other):
        if isinstance(other, (int, float, np.floating, np.integer)) and not isinstance(other, bool):
            return Product([Constant(float(other)), self])
        return NotImplemented

    # -- configuration ---------------------------------------------------------------------------------
    @classmethod
    def config_keys(cls) -> Tuple[List[str], List[str]]:
        """(required, optional) configuration keys: the constructor's parameters."""
        sig = inspect.signature(cls.__init__)
        req, opt = [], []
        for name, par in list(sig.parameters.items())[1:]:
            if par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
                continue
            (req if par.default is inspect.Parameter.empty else opt).append(name)
        return req, opt

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "") -> "SelectionFunction":
        """Build from a configuration mapping (one ``[[factor]]`` table of a survey TOML, without ``type``).

        Raises
        ------
        ConfigError
            For an unknown key (the message names it and the allowed keys) or a missing required key.
        """
        req, opt = cls.config_keys()
        allowed = req + opt
        loc = f"{where}: " if where else ""
        for key in config:
            if key not in allowed:
                raise ConfigError(f"{loc}unknown key {key!r} for selection type {cls.type_name!r}; "
                                  f"allowed keys: {['type'] + allowed}")
        missing = [k for k in req if k not in config]
        if missing:
            raise ConfigError(f"{loc}selection type {cls.type_name!r} needs key(s) {missing}; "
                              f"allowed keys: {['type'] + allowed}")
        try:
            return cls(**dict(config))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{loc}selection type {cls.type_name!r}: {exc}") from exc

    def config(self) -> Dict[str, Any]:
        """The configuration (``type`` and constructor arguments) that rebuilds this selection function."""
        req, opt = self.config_keys()
        out: Dict[str, Any] = {"type": self.type_name}
        for k in req + opt:
            out[k] = getattr(self, k)
        return out

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        except AttributeError:
            args = "..."
        return f"{type(self).__name__}({args})"


class Product(SelectionFunction):
    """Product of selection functions: the probability of passing every factor.

    Parameters
    ----------
    factors : sequence of SelectionFunction
        Nested products are flattened. (Not a configuration type: a survey TOML lists its factors as
        ``[[factor]]`` tables and the loader multiplies them.)
    """

    type_name = "product"

    def __init__(self, factors: Sequence[SelectionFunction]):
        flat: List[SelectionFunction] = []
        for f in factors:
            if not isinstance(f, SelectionFunction):
                raise TypeError(f"Product factors must be SelectionFunction instances, got {type(f).__name__}")
            flat.extend(f.factors if isinstance(f, Product) else [f])
        if not flat:
            raise ValueError("Product needs at least one factor")
        self.factors: Tuple[SelectionFunction, ...] = tuple(flat)

    @property
    def required_columns(self) -> Tuple[str, ...]:
        seen: Dict[str, None] = {}
        for f in self.factors:
            for c in f.required_columns:
                seen.setdefault(c, None)
        return tuple(seen)

    def _probability(self, cols, n):
        p = np.ones(n)
        for f in self.factors:
            p *= f._evaluate({c: cols[c] for c in f.required_columns}, n)
        return p

    def footprint(self, l, b) -> np.ndarray:
        """Product of the factors' footprints (an upper bound of the product of probabilities)."""
        out = np.ones(np.shape(np.asarray(l, dtype=np.float64)))
        for f in self.factors:
            out = out * f.footprint(l, b)
        return out

    def config(self) -> Dict[str, Any]:
        return {"type": self.type_name, "factors": [f.config() for f in self.factors]}

    def __repr__(self) -> str:
        return " * ".join(repr(f) for f in self.factors)


@register
class Constant(SelectionFunction):
    """A constant selection probability (a random sampling fraction), independent of the star.

    Parameters
    ----------
    value : float
        Probability in [0, 1].
    """

    type_name = "constant"

    def __init__(self, value: float):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"value must be in [0, 1], got {value}")
        self.value = value

    @property
    def required_columns(self) -> Tuple[str, ...]:
        return ()

    def _probability(self, cols, n):
        return np.full(n, self.value)
