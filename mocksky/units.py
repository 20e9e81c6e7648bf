"""Internal unit system and conversion of astropy Quantities at the public boundary.

Inside mocksky every number is a plain float in the internal units

* length: kpc
* velocity: km/s
* mass: Msun
* time: kpc / (km/s) = 0.9778 Gyr
* action: kpc km/s
* gravitational constant G = 4.300917e-6 kpc (km/s)^2 / Msun

Public functions accept either plain numbers (taken to be in the internal unit) or
astropy ``Quantity`` objects, converted with :func:`to_internal`.
"""
from __future__ import annotations

import numpy as np
import astropy.units as u

#: Gravitational constant in kpc (km/s)^2 / Msun.
G = 4.300917e-6

LENGTH = u.kpc
VELOCITY = u.km / u.s
MASS = u.Msun
TIME = u.kpc / (u.km / u.s)
ACTION = u.kpc * u.km / u.s
DENSITY = u.Msun / u.kpc**3
SURFACE_DENSITY = u.Msun / u.kpc**2
POTENTIAL = (u.km / u.s) ** 2
FREQUENCY = u.km / u.s / u.kpc

#: Length of the internal time unit in Gyr.
TIME_UNIT_GYR = float((1 * TIME).to_value(u.Gyr))


def to_internal(value, unit: u.UnitBase, name: str = "value") -> np.ndarray:
    """Convert ``value`` to a float64 array in ``unit``.

    Parameters
    ----------
    value : array_like or astropy.units.Quantity
        Plain numbers are taken to be in ``unit`` already.
    unit : astropy.units.Unit
        The internal unit of this quantity (e.g. :data:`LENGTH`).
    name : str
        Name of the argument, used in error messages.

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape as ``value``.

    Raises
    ------
    astropy.units.UnitConversionError
        If ``value`` is a Quantity whose unit is not convertible to ``unit``; the
        message names the argument.
    """
    if isinstance(value, u.Quantity):
        try:
            return np.asarray(value.to_value(unit), dtype=np.float64)
        except u.UnitConversionError as exc:
            raise u.UnitConversionError(
                f"{name}: cannot convert unit {value.unit} to {unit}"
            ) from exc
    return np.asarray(value, dtype=np.float64)


def points(xyz, name: str = "xyz") -> np.ndarray:
    """Coerce positions to a float64 array of shape (N, 3) in kpc.

    A single point of shape (3,) is accepted and returned as (1, 3).

    Raises
    ------
    ValueError
        If the last axis does not have length 3.
    """
    arr = to_internal(xyz, LENGTH, name)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3) in kpc, got {arr.shape}")
    return arr
