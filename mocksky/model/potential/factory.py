"""Potentials from Agama INI ``[Potential ...]`` sections.

Section types understood (keys case-insensitive, Agama's names):

* density profiles ``Disk`` and ``Spheroid`` (see :mod:`.density`): solved with Poisson solvers.
  Following Agama's split of work, spherical profiles are summed into one
  :class:`~.multipole.Multipole` expansion and flattened ones (discs, flattened spheroids) into one
  :class:`~.cylspline.CylSpline`; grids come from the file's global ``[SelfConsistentModel]``
  section when present (rminSph, rmaxSph, sizeRadialSph, lmaxAngularSph, RminCyl, RmaxCyl,
  sizeRadialCyl, zminCyl, zmaxCyl, sizeVerticalCyl), otherwise from defaults;
* analytic ``Plummer``, ``Isochrone``, ``NFW``, ``Hernquist`` (= ``Dehnen`` with gamma 1),
  ``MiyamotoNagai``, ``Logarithmic``, ``PointMass``, ``KuzminKutuzov``;
* ``Multipole`` / ``CylSpline`` with ``file = coefficients`` written by ``to_file``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ..ini import AgamaIni, IniSection, read_ini
from ..registry import resolve_model_file
from . import analytic
from .base import Potential
from .composite import Composite
from .density import Density, DensitySum, Disk, Spheroid

#: Grid defaults when a file has no [SelfConsistentModel] section (Agama-like choices).
DEFAULT_GRIDS = dict(
    rminSph=0.01, rmaxSph=1000.0, sizeRadialSph=50, lmaxAngularSph=4,
    RminCyl=0.1, RmaxCyl=50.0, sizeRadialCyl=30, zminCyl=0.04, zmaxCyl=20.0, sizeVerticalCyl=30,
)

_DENSITY_KEYS = {
    "disk": ["type", "surfaceDensity", "scaleRadius", "scaleHeight", "innerCutoffRadius", "sersicIndex", "mass"],
    "spheroid": ["type", "densityNorm", "scaleRadius", "gamma", "beta", "alpha", "outerCutoffRadius",
                 "cutoffStrength", "axisRatioZ", "axisRatioY", "mass"],
}


def density_from_section(sec: IniSection) -> Density:
    """Build a :class:`Disk` or :class:`Spheroid` from an INI section.

    Raises
    ------
    ValueError
        Unknown type or key (named), or parameters out of range.
    """
    typ = (sec.get_str("type") or "").lower()
    if typ not in _DENSITY_KEYS:
        raise ValueError(f"[{sec.header}] type = {sec.get_str('type')!r}: not a density profile (Disk, Spheroid)")
    sec.check_keys(_DENSITY_KEYS[typ])
    if "axisRatioY" in sec and sec.get_float("axisRatioY") != 1:
        raise ValueError(f"[{sec.header}] axisRatioY must be 1: mocksky potentials are axisymmetric")
    if typ == "disk":
        d = Disk(sec.get_float("surfaceDensity"), sec.get_float("scaleRadius", 1.0), sec.get_float("scaleHeight", 0.0),
                 sec.get_float("innerCutoffRadius", 0.0), sec.get_float("sersicIndex", 1.0), name=sec.label)
    else:
        d = Spheroid(sec.get_float("densityNorm"), sec.get_float("scaleRadius", 1.0), sec.get_float("gamma", 1.0),
                     sec.get_float("beta", 4.0), sec.get_float("alpha", 1.0), sec.get_float("outerCutoffRadius", np.inf),
                     sec.get_float("cutoffStrength", 2.0), sec.get_float("axisRatioZ", 1.0), name=sec.label)
    if "mass" in sec:  # Agama: 'mass' rescales the profile to this total mass
        m = sec.get_float("mass")
        scale = m / d.total_mass()
        if typ == "disk":
            d.Sigma0 *= scale
        else:
            d.rho0 *= scale
    return d


def _analytic_from_section(sec: IniSection) -> Optional[Potential]:
    typ = (sec.get_str("type") or "").lower()
    g = sec.get_float
    if typ == "plummer":
        return analytic.Plummer(g("mass"), g("scaleRadius", 1.0))
    if typ == "isochrone":
        return analytic.Isochrone(g("mass"), g("scaleRadius", 1.0))
    if typ == "nfw":
        return analytic.NFW(g("mass"), g("scaleRadius", 1.0))
    if typ == "hernquist" or (typ == "dehnen" and g("gamma", 1.0) == 1.0):
        return analytic.Hernquist(g("mass"), g("scaleRadius", 1.0))
    if typ == "dehnen":
        raise ValueError(f"[{sec.header}] Dehnen potential only supported with gamma = 1 (Hernquist)")
    if typ == "miyamotonagai":
        return analytic.MiyamotoNagai(g("mass"), g("scaleRadius", 1.0), g("scaleHeight", 0.1))
    if typ == "logarithmic":
        return analytic.Logarithmic(g("v0"), g("scaleRadius", 0.0), g("axisRatioZ", 1.0))
    if typ in ("pointmass", "kepler"):
        return analytic.PointMass(g("mass"))
    if typ == "kuzminkutuzov":
        return analytic.KuzminKutuzov(g("mass"), g("scaleRadius"), g("scaleHeight"))
    return None


def grids_from_ini(ini: AgamaIni) -> Dict[str, float]:
    """Poisson-solver grids: the file's global [SelfConsistentModel] section over :data:`DEFAULT_GRIDS`."""
    grids = dict(DEFAULT_GRIDS)
    sec = ini.get("SelfConsistentModel", "")
    if sec is not None:
        for k in grids:
            if k in sec:
                grids[k] = sec.get_float(k)
    return grids


def solve_density(spherical: List[Density], flattened: List[Density], grids: Dict[str, float]) -> List[Potential]:
    """Potentials of density profiles: one Multipole for the spherical ones, one CylSpline for the rest."""
    from .cylspline import CylSpline
    from .multipole import Multipole

    out: List[Potential] = []
    if spherical:
        dens = spherical[0] if len(spherical) == 1 else DensitySum(spherical)
        out.append(Multipole.from_density(dens, rmin=grids["rminSph"], rmax=grids["rmaxSph"],
                                          gridsize=int(grids["sizeRadialSph"]), lmax=int(grids["lmaxAngularSph"])))
    if flattened:
        dens = flattened[0] if len(flattened) == 1 else DensitySum(flattened)
        out.append(CylSpline.from_density(dens, Rmin=grids["RminCyl"], Rmax=grids["RmaxCyl"], nR=int(grids["sizeRadialCyl"]),
                                          zmin=grids["zminCyl"], zmax=grids["zmaxCyl"], nz=int(grids["sizeVerticalCyl"])))
    return out


def potential_from_ini(ini: AgamaIni, grids: Optional[Dict[str, float]] = None) -> Potential:
    """The potential described by the ``[Potential ...]`` sections of an INI file.

    Raises
    ------
    ValueError
        If the file has no [Potential ...] section, or a section has an unknown type (the allowed ones are listed).
    """
    secs = ini.of_kind("Potential")
    if not secs:
        raise ValueError(f"{ini.path or 'INI'}: no [Potential ...] section")
    grids = grids or grids_from_ini(ini)
    base = ini.path.parent if ini.path else Path.cwd()
    comps: List[Potential] = []
    spherical: List[Density] = []
    flattened: List[Density] = []
    for sec in secs:
        typ = (sec.get_str("type") or "").lower()
        if typ in _DENSITY_KEYS:
            d = density_from_section(sec)
            (spherical if d.spherical else flattened).append(d)
            continue
        if typ in ("multipole", "cylspline"):
            fname = sec.get_str("file")
            if not fname:
                raise ValueError(f"[{sec.header}] type = {sec.get_str('type')} needs file = <coefficient file>")
            path = Path(fname) if os.path.isabs(fname) else base / fname
            if typ == "multipole":
                from .multipole import Multipole
                comps.append(Multipole.from_file(path))
            else:
                from .cylspline import CylSpline
                comps.append(CylSpline.from_file(path))
            continue
        pot = _analytic_from_section(sec)
        if pot is None:
            raise ValueError(
                f"[{sec.header}] type = {sec.get_str('type')!r} unknown; allowed: Disk, Spheroid, Multipole, CylSpline, "
                "Plummer, Isochrone, NFW, Hernquist, Dehnen, MiyamotoNagai, Logarithmic, PointMass, KuzminKutuzov")
        pot.name = sec.label
        comps.append(pot)
    comps.extend(solve_density(spherical, flattened, grids))
    return comps[0] if len(comps) == 1 else Composite(comps)


def load_potential(source: Union[str, os.PathLike, AgamaIni]) -> Potential:
    """The (initial) potential of a model: a built-in name (``"bv23"``, ``"bv24_m0"``), an INI path or a parsed file.

    Returns
    -------
    Potential

    Raises
    ------
    FileNotFoundError
        Unknown name and no such file.
    ValueError
        Malformed or unsupported sections.
    """
    ini = source if isinstance(source, AgamaIni) else read_ini(resolve_model_file(source))
    return potential_from_ini(ini)
