"""Hard cuts as selection functions (probability 1 inside, 0 outside).

All ranges are closed intervals ``min <= x <= max``; an omitted bound is open-ended. Non-finite inputs give 0
(see :mod:`mocksky.select.base`).

Configuration ``type`` names: ``range`` (any column, e.g. ``logg`` or ``teff``), ``magnitude_range``,
``colour_range``, ``parallax_over_error``; ``constant`` lives in :mod:`mocksky.select.base`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..catalogue.schema import column_unit
from .base import SelectionFunction, register

__all__ = ["ColumnRange", "MagnitudeRange", "ColourRange", "ParallaxOverError"]


def _bounds(min, max, what: str):
    lo = None if min is None else float(min)
    hi = None if max is None else float(max)
    if lo is None and hi is None:
        raise ValueError(f"{what}: give at least one of 'min' and 'max'")
    for name, v in (("min", lo), ("max", hi)):
        if v is not None and np.isnan(v):
            raise ValueError(f"{what}: {name} is NaN")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{what}: min = {lo} exceeds max = {hi}")
    return lo, hi


def _inside(x: np.ndarray, lo: Optional[float], hi: Optional[float]) -> np.ndarray:
    ok = np.ones(x.shape, dtype=bool)
    if lo is not None:
        ok &= x >= lo
    if hi is not None:
        ok &= x <= hi
    return ok.astype(np.float64)


@register
class ColumnRange(SelectionFunction):
    """Cut on any column: ``min <= table[column] <= max``.

    Parameters
    ----------
    column : str
        Column name (e.g. ``"logg"``, ``"teff"``, ``"phot_g_mean_mag"``, ``"distance"``).
    min, max : float, optional
        Bounds in the column's unit; at least one is required.

    Raises
    ------
    ValueError
        If no bound is given, a bound is NaN, or min > max.
    """

    type_name = "range"

    def __init__(self, column: str, min: Optional[float] = None, max: Optional[float] = None):
        if not isinstance(column, str) or not column:
            raise ValueError(f"column must be a non-empty string, got {column!r}")
        self.column = column
        self.min, self.max = _bounds(min, max, f"{self.type_name} on {column!r}")

    @property
    def required_columns(self) -> Tuple[str, ...]:
        return (self.column,)

    def _probability(self, cols, n):
        return _inside(cols[self.column], self.min, self.max)


@register
class MagnitudeRange(ColumnRange):
    """Cut on an apparent or absolute magnitude column: ``min <= m <= max`` [mag].

    As :class:`ColumnRange`, but the column must be a magnitude column of the star-table schema
    (unit ``mag``), which catches typos such as ``"g_mag"``.

    Raises
    ------
    ValueError
        If the column is not a magnitude column of :data:`mocksky.catalogue.schema.COLUMNS`.
    """

    type_name = "magnitude_range"

    def __init__(self, column: str, min: Optional[float] = None, max: Optional[float] = None):
        try:
            unit = column_unit(column)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        if unit != "mag":
            raise ValueError(f"column {column!r} has unit {unit!r}, not 'mag': use type 'range' for it")
        super().__init__(column, min, max)


@register
class ColourRange(SelectionFunction):
    """Cut on a colour: ``min <= table[blue] - table[red] <= max`` [mag].

    Parameters
    ----------
    blue, red : str
        Magnitude columns, e.g. ``"j_m"`` and ``"k_m"`` for J-Ks or ``"phot_bp_mean_mag"`` and
        ``"phot_rp_mean_mag"`` for BP-RP.
    min, max : float, optional
        Colour bounds [mag]; at least one is required.
    """

    type_name = "colour_range"

    def __init__(self, blue: str, red: str, min: Optional[float] = None, max: Optional[float] = None):
        for name, c in (("blue", blue), ("red", red)):
            if not isinstance(c, str) or not c:
                raise ValueError(f"{name} must be a non-empty column name, got {c!r}")
        if blue == red:
            raise ValueError(f"blue and red are the same column {blue!r}")
        self.blue, self.red = blue, red
        self.min, self.max = _bounds(min, max, f"{self.type_name} {blue!r} - {red!r}")

    @property
    def required_columns(self) -> Tuple[str, ...]:
        return (self.blue, self.red)

    def _probability(self, cols, n):
        return _inside(cols[self.blue] - cols[self.red], self.min, self.max)


@register
class ParallaxOverError(SelectionFunction):
    """Astrometric quality cut ``parallax / parallax_error >= min``.

    Parameters
    ----------
    min : float
        Minimum signal-to-noise ratio of the (observed) parallax, e.g. 5.
    parallax_column, error_column : str
        Columns holding the parallax and its uncertainty [mas] (default the observed Gaia values).

    Notes
    -----
    A star with ``parallax_error <= 0`` gets probability 0 (no valid uncertainty).
    """

    type_name = "parallax_over_error"

    def __init__(self, min: float, parallax_column: str = "parallax", error_column: str = "parallax_error"):
        self.min = float(min)
        if np.isnan(self.min):
            raise ValueError("min is NaN")
        self.parallax_column = parallax_column
        self.error_column = error_column

    @property
    def required_columns(self) -> Tuple[str, ...]:
        return (self.parallax_column, self.error_column)

    def _probability(self, cols, n):
        err = cols[self.error_column]
        ok = (err > 0) & (cols[self.parallax_column] >= self.min * err)
        return ok.astype(np.float64)
