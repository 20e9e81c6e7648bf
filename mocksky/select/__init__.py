"""Survey selection functions: probability that a survey selects each star of a star table.

* :mod:`~mocksky.select.base` -- :class:`SelectionFunction` (``probability(table)``, ``required_columns``,
  product composition ``sf1 * sf2``), :class:`Constant`, errors.
* :mod:`~mocksky.select.cuts` -- hard cuts: any column range, magnitude range, colour range,
  parallax_over_error.
* :mod:`~mocksky.select.gaia` -- Gaia DR3 completeness (Cantat-Gaudin et al. 2023, through gaiaunlimited's
  M10 map or offline from the DR2 magnitude limits) and the DR3 radial-velocity sample.
* :mod:`~mocksky.select.apogee` -- APOGEE DR17 targeting from the field/cohort table.
* :mod:`~mocksky.select.loader` -- surveys defined as TOML data in ``selection/``: :func:`survey`,
  :func:`load_selection`.

Example
-------
>>> from mocksky.select import survey                                      # doctest: +SKIP
>>> p = survey("apogee_dr17").probability(table)                            # doctest: +SKIP
"""
from .apogee import ApogeeDR17, apogee_dr17_footprint, apogee_dr17_probability, load_apogee_fields
from .base import REGISTRY, ConfigError, Constant, MissingColumnError, Product, SelectionFunction
from .cuts import ColourRange, ColumnRange, MagnitudeRange, ParallaxOverError
from .gaia import GaiaDataUnavailable, GaiaDR3Completeness, GaiaRVSCompleteness, cg23_completeness
from .loader import available_surveys, build_selection, load_selection, survey

__all__ = [
    "SelectionFunction", "Product", "Constant", "MissingColumnError", "ConfigError", "REGISTRY",
    "ColumnRange", "MagnitudeRange", "ColourRange", "ParallaxOverError",
    "GaiaDR3Completeness", "GaiaRVSCompleteness", "GaiaDataUnavailable", "cg23_completeness",
    "ApogeeDR17", "apogee_dr17_footprint", "apogee_dr17_probability", "load_apogee_fields",
    "survey", "load_selection", "build_selection", "available_surveys",
]
