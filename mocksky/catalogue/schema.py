"""Column names and units of mock star tables, defined once for every stage.

Observables use the Gaia archive names (gaiadr3.gaia_source) and 2MASS PSC names; the error-free
("true") value of an observable carries the suffix ``_true`` (e.g. ``parallax_true``) while the
unsuffixed column holds the value scattered by the error model. True phase-space and stellar
quantities use the field's standard names. Every stage adds columns to one :class:`StarTable`;
none copies the whole table.

Frames: mocksky's Galactocentric Cartesian frame (x, y, z) [kpc] is astropy's ``Galactocentric`` frame
with the y axis (and vy) reversed, so that Galactic rotation is prograde with Jphi = Lz = x vy - y vx > 0
(the dynamics convention); the Sun is at x = -R0, y = 0, z = z_sun. Cylindrical (R, phi, z) and
velocities (vR, vphi, vz) follow from it, vphi > 0 in the sense of Galactic rotation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional

import numpy as np


@dataclass(frozen=True)
class Column:
    """One column: unit (astropy-parsable string, '' for dimensionless) and description."""

    unit: str
    description: str
    dtype: str = "f8"


_C = Column
COLUMNS: Dict[str, Column] = {
    # identifiers and bookkeeping
    "source_id": _C("", "unique star identifier within the catalogue", "i8"),
    "component": _C("", "index of the Galaxy-model component the star belongs to", "i2"),
    "particle_mass": _C("Msun", "mass represented by the sampled phase-space point"),
    "weight": _C("", "expected number of stars of the (scaled) mock this row stands for: 1 for a Poisson "
                     "realisation, lam_i for an importance-weighted one (populate overflow='weight')"),
    # true phase space, Galactocentric
    "x": _C("kpc", "Galactocentric x"), "y": _C("kpc", "Galactocentric y"), "z": _C("kpc", "Galactocentric z"),
    "vx": _C("km/s", "Galactocentric vx"), "vy": _C("km/s", "Galactocentric vy"),
    "vz": _C("km/s", "Galactocentric vz (also the cylindrical vertical velocity)"),
    "R": _C("kpc", "Galactocentric cylindrical radius"), "phi": _C("rad", "Galactocentric azimuth"),
    "vR": _C("km/s", "Galactocentric radial velocity"), "vphi": _C("km/s", "azimuthal velocity, > 0 prograde"),
    "Jr": _C("kpc km/s", "radial action"), "Jz": _C("kpc km/s", "vertical action"),
    "Jphi": _C("kpc km/s", "azimuthal action = Lz, > 0 prograde"),
    # stellar population
    "age": _C("Gyr", "stellar age"),
    "mass_initial": _C("Msun", "initial (zero-age) stellar mass"),
    "mass_current": _C("Msun", "present-day stellar mass"),
    "feh": _C("dex", "[Fe/H]"), "alpha_fe": _C("dex", "[alpha/Fe] ([Mg/Fe] for BV24)"),
    "mh": _C("dex", "[M/H] from [Fe/H] and [alpha/Fe] (Salaris et al. 1993)"),
    "teff": _C("K", "effective temperature"), "logg": _C("dex", "log10 surface gravity [cgs]"),
    "logl": _C("dex", "log10 luminosity [Lsun]"),
    "phase": _C("", "evolutionary phase label of the isochrone (PARSEC 'label')", "i2"),
    "is_remnant": _C("", "past the end of its track (no photometry)", "?"),
    "abs_g": _C("mag", "absolute Gaia G"), "abs_bp": _C("mag", "absolute Gaia BP"), "abs_rp": _C("mag", "absolute Gaia RP"),
    "abs_grvs": _C("mag", "absolute Gaia G_RVS"),
    "abs_j": _C("mag", "absolute 2MASS J"), "abs_h": _C("mag", "absolute 2MASS H"), "abs_ks": _C("mag", "absolute 2MASS Ks"),
    # positions as seen from the Sun
    "ra": _C("deg", "ICRS right ascension"), "dec": _C("deg", "ICRS declination"),
    "l": _C("deg", "Galactic longitude"), "b": _C("deg", "Galactic latitude"),
    "distance": _C("kpc", "true heliocentric distance"),
    "distance_error": _C("kpc", "distance uncertainty"),
    # dust
    "A0": _C("mag", "monochromatic extinction at 550 nm"),
    "ebv": _C("mag", "E(B-V) on the SFD scale"),
    "a_g": _C("mag", "extinction in G"), "a_bp": _C("mag", "extinction in BP"), "a_rp": _C("mag", "extinction in RP"),
    "a_grvs": _C("mag", "extinction in G_RVS"),
    "a_j": _C("mag", "extinction in J"), "a_h": _C("mag", "extinction in H"), "a_ks": _C("mag", "extinction in Ks"),
    # observables: true values and observed (scattered) values
    **{f"{name}{suffix}": _C(unit, f"{desc}{' (error-free)' if suffix else ' (observed, with errors)'}")
       for name, unit, desc in [
           ("parallax", "mas", "parallax"), ("pmra", "mas/yr", "proper motion in ra*cos(dec)"),
           ("pmdec", "mas/yr", "proper motion in dec"), ("radial_velocity", "km/s", "line-of-sight velocity"),
           ("phot_g_mean_mag", "mag", "apparent G"), ("phot_bp_mean_mag", "mag", "apparent BP"),
           ("phot_rp_mean_mag", "mag", "apparent RP"), ("grvs_mag", "mag", "apparent G_RVS"),
           ("j_m", "mag", "apparent 2MASS J"), ("h_m", "mag", "apparent 2MASS H"), ("k_m", "mag", "apparent 2MASS Ks"),
           ("feh_obs", "dex", "[Fe/H] as measured"), ("alpha_fe_obs", "dex", "[alpha/Fe] as measured"),
       ] for suffix in ("", "_true") if not (name.endswith("_obs") and suffix)},
    **{f"{name}_error": _C(unit, f"uncertainty of {name}") for name, unit in [
        ("parallax", "mas"), ("pmra", "mas/yr"), ("pmdec", "mas/yr"), ("radial_velocity", "km/s"),
        ("phot_g_mean_mag", "mag"), ("phot_bp_mean_mag", "mag"), ("phot_rp_mean_mag", "mag"), ("grvs_mag", "mag"),
        ("feh", "dex"), ("alpha_fe", "dex")]},
    # Galactocentric quantities as a survey measures them: from the observed distance (an error model's
    # ``distance_obs``, else 1/parallax), sky position and observed proper motions and line-of-sight velocity
    "distance_obs": _C("kpc", "heliocentric distance as measured (with errors)"),
    "R_obs": _C("kpc", "Galactocentric R from the observed distance"),
    "z_obs": _C("kpc", "Galactocentric z from the observed distance"),
    "phi_obs": _C("rad", "Galactocentric azimuth from the observed distance"),
    "vR_obs": _C("km/s", "Galactocentric vR from the observed astrometry and radial velocity"),
    "vz_obs": _C("km/s", "Galactocentric vz from the observed astrometry and radial velocity"),
    "vphi_obs": _C("km/s", "Galactocentric vphi (> 0 prograde) from the observed astrometry and radial velocity"),
    # selection
    "selection_probability": _C("", "probability that the survey selects the star, in [0, 1]"),
}


def column_unit(name: str) -> str:
    """Unit string of a known column.

    Raises
    ------
    KeyError
        If ``name`` is not a known column (the message lists close matches).
    """
    try:
        return COLUMNS[name].unit
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, COLUMNS, n=5)
        raise KeyError(f"unknown column {name!r}; close matches: {close}") from None


class StarTable(dict):
    """Columnar table of stars: a dict of equal-length 1D NumPy arrays plus metadata.

    Column names must be in :data:`COLUMNS` unless ``strict=False``; every column has the same length.
    ``meta`` collects provenance (recipe, seed, solar parameters, references) for the catalogue header.

    Parameters
    ----------
    columns : mapping of str to array_like, optional
    meta : dict, optional
    strict : bool
        Reject unknown column names (default True).
    """

    def __init__(self, columns: Optional[Mapping[str, Iterable]] = None, meta: Optional[dict] = None, strict: bool = True):
        super().__init__()
        self.meta = dict(meta or {})
        self.strict = strict
        for k, v in (columns or {}).items():
            self[k] = v

    def __len__(self) -> int:  # number of rows, like astropy Table
        for v in self.values():
            return len(v)
        return 0

    @property
    def ncols(self) -> int:
        return dict.__len__(self)

    def __setitem__(self, name: str, values) -> None:
        if self.strict and name not in COLUMNS:
            column_unit(name)  # raises KeyError with suggestions
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"column {name!r}: expected a 1D array, got shape {arr.shape}")
        if dict.__len__(self) and name not in self and len(arr) != len(self):
            raise ValueError(f"column {name!r}: length {len(arr)} differs from the table's {len(self)} rows")
        super().__setitem__(name, arr)

    def select(self, mask) -> "StarTable":
        """A new table with the rows where ``mask`` is true (or the given integer indices)."""
        return StarTable({k: v[mask] for k, v in self.items()}, meta=self.meta, strict=self.strict)

    def units(self) -> Dict[str, str]:
        """Unit string per column (empty for dimensionless or unknown columns)."""
        return {k: COLUMNS[k].unit if k in COLUMNS else "" for k in self}
