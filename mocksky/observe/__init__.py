"""Seeing the mock from the Sun: solar parameters, frames, dust, band extinction and observational errors.

The stage adds columns to one :class:`~mocksky.catalogue.StarTable` (column names in :mod:`mocksky.catalogue.schema`):

1. :func:`add_sky_coordinates` (:mod:`.frames`): ``x, y, z, vx, vy, vz`` -> ``ra, dec, l, b, distance,
   parallax_true, pmra_true, pmdec_true, radial_velocity_true, R, phi, vR, vphi`` for a set of solar parameters
   (:func:`solar_parameters`: ``"bv23"``, ``"bv24"``, ``"astropy"``). mocksky's Galactocentric frame is astropy's
   with y and vy reversed (Sun at x = -R0, Lz = Jphi > 0 prograde).
2. :func:`add_dust` (:mod:`.dust`): ``A0`` and ``ebv`` from a :class:`DustMap` (default: the GeDR3mock Combined19
   3D map).
3. :func:`add_band_extinctions` (:mod:`.extinction`): ``a_g, a_bp, a_rp, a_grvs, a_j, a_h, a_ks`` from A0 and Teff
   (dustapprox polynomials); :func:`add_apparent_magnitudes`: ``phot_g_mean_mag_true`` ... from ``abs_*``.
4. error models (:mod:`.errors`): :class:`GaiaErrorModel` (DR3/DR4/DR5), :class:`ApogeeErrorModel` (BV24) add
   ``*_error`` and observed columns; :class:`ExactMeasurements` copies true to observed where no model exists.

:func:`observe` runs all of them. Each step records its provenance in ``table.meta``.
"""
from __future__ import annotations

from typing import Iterable, Optional, Union

from ..catalogue.schema import StarTable
from .dust import (SFD_EBV_TO_A0, DustMap, DustmapsAdapter, HealpixDustMap2D, HealpixDustMap3D, NoDust, add_dust,
                   available_dust_maps, dust_map)
from .errors import (ApogeeErrorModel, ErrorModel, ExactMeasurements, GaiaErrorModel, available_error_models,
                     error_model, magnitude_uncertainty, parallax_uncertainty, proper_motion_uncertainty,
                     radial_velocity_uncertainty)
from .extinction import (BANDS, ExtinctionFloor, ExtinctionModel, add_apparent_magnitudes, add_band_extinctions,
                         distance_modulus)
from .frames import (K_PM, add_galactocentric, add_observed_galactocentric, add_sky_coordinates,
                     cylindrical_to_galactocentric, frame_matrices, galactic_to_icrs, galactocentric_to_cylindrical, galactocentric_to_sky, icrs_to_galactic,
                     sky_to_galactocentric)
from .solar import SolarParameters, available_solar_parameters, solar_parameters

__all__ = [
    "SolarParameters", "solar_parameters", "available_solar_parameters",
    "K_PM", "frame_matrices", "galactocentric_to_sky", "sky_to_galactocentric", "icrs_to_galactic",
    "galactic_to_icrs", "galactocentric_to_cylindrical", "cylindrical_to_galactocentric", "add_sky_coordinates",
    "add_galactocentric", "add_observed_galactocentric",
    "DustMap", "HealpixDustMap3D", "HealpixDustMap2D", "DustmapsAdapter", "NoDust", "dust_map",
    "available_dust_maps", "add_dust", "SFD_EBV_TO_A0",
    "ExtinctionModel", "ExtinctionFloor", "BANDS", "add_band_extinctions", "add_apparent_magnitudes", "distance_modulus",
    "ErrorModel", "GaiaErrorModel", "ApogeeErrorModel", "ExactMeasurements", "error_model", "available_error_models",
    "parallax_uncertainty", "proper_motion_uncertainty", "magnitude_uncertainty", "radial_velocity_uncertainty",
    "observe",
]


def observe(table: StarTable, solar: Union[str, SolarParameters] = "bv24", dust: Union[str, DustMap] = "combined19",
            extinction: Optional[ExtinctionModel] = None,
            errors: Iterable[Union[str, ErrorModel]] = ("gaia_dr3", "exact"), rng=None) -> StarTable:
    """Run the whole observe stage on a star table, in place.

    Steps: :func:`add_sky_coordinates` (if ``ra`` is absent), :func:`add_dust`, :func:`add_band_extinctions` (if the
    table has ``teff``), :func:`add_apparent_magnitudes` (bands with ``abs_*`` columns), then each error model in
    ``errors`` with the same generator, then :func:`add_observed_galactocentric` (if an error model wrote
    ``parallax`` or ``distance_obs``).

    Parameters
    ----------
    table : StarTable
        Needs ``x, y, z`` (and velocities) or already ``ra, dec, l, b, distance``.
    solar : str or SolarParameters
    dust : str or DustMap
        Name for :func:`dust_map` or a map; ``"none"`` for no extinction.
    extinction : ExtinctionModel, optional
        Default ``ExtinctionModel("F99", R0=3.1)``.
    errors : iterable of str or ErrorModel
        Names for :func:`error_model` or models, applied in order (a later model overwrites columns of an earlier
        one); default Gaia DR3 plus ``"exact"`` (observed = true G_RVS and 2MASS magnitudes); empty for none.
    rng : seed or numpy Generator

    Returns
    -------
    StarTable
        The same table.

    Raises
    ------
    ValueError
        From the steps, naming missing columns.
    """
    import numpy as np

    rng = np.random.default_rng(rng)
    if "ra" not in table:
        add_sky_coordinates(table, solar)
    add_dust(table, dust)
    if "teff" in table:
        add_band_extinctions(table, extinction)
    add_apparent_magnitudes(table)
    for e in errors:
        error_model(e).apply(table, rng)
    if "distance_obs" in table or "parallax" in table:
        add_observed_galactocentric(table, solar)
    return table
