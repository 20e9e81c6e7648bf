"""Axisymmetric gravitational potentials: analytic, density profiles, Poisson solvers, composites.

Public entry points: the analytic classes, :class:`Disk` and :class:`Spheroid` density profiles,
:class:`Multipole` and :class:`CylSpline` Poisson solvers, :class:`Composite`, and
:func:`load_potential` for Agama INI files or built-in model names.
"""
from .analytic import (Hernquist, Isochrone, KuzminKutuzov, Logarithmic, MiyamotoNagai, NFW, Plummer, PointMass,
                       SphericalPotential)
from .base import Potential
from .composite import Composite
from .density import Density, DensitySum, Disk, Spheroid
from .factory import density_from_section, load_potential, potential_from_ini

__all__ = [
    "Potential", "SphericalPotential", "Composite", "PointMass", "Plummer", "Hernquist", "NFW", "Isochrone",
    "MiyamotoNagai", "Logarithmic", "KuzminKutuzov", "Density", "DensitySum", "Disk", "Spheroid",
    "load_potential", "potential_from_ini", "density_from_section", "Multipole", "CylSpline", "TabulatedPotential",
]


def __getattr__(name):
    # the Poisson solvers compile numba code: import them on first use
    if name == "Multipole":
        from .multipole import Multipole
        return Multipole
    if name == "CylSpline":
        from .cylspline import CylSpline
        return CylSpline
    if name == "TabulatedPotential":
        from .tabulated import TabulatedPotential
        return TabulatedPotential
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
