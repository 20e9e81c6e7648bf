"""Action-angle finders: exact spherical, Stäckel fudge and its interpolated variant.

All finders take Cartesian phase-space points ``posvel`` of shape (N, 6) [kpc, km/s] (or a pair of
Quantities ``(xyz, vxyz)``) and return actions (Jr, Jz, Jphi) [kpc km/s], angles [rad] and
frequencies [km/s/kpc], following Agama's conventions (Jphi = Lz, positive for prograde rotation).
"""
from .spherical import SphericalActionFinder
from .interpolated import InterpolatedStaeckelFudge
from .staeckel import StaeckelFudge

__all__ = ["SphericalActionFinder", "StaeckelFudge", "InterpolatedStaeckelFudge"]
