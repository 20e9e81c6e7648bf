"""Spatial regions for restricted sampling: named shapes and arbitrary predicates.

A region tells the sampler (:mod:`mocksky.model.sampling`) three things:

* ``contains(xyz) -> bool (N,)``: membership of Cartesian positions [kpc];
* ``bounds() -> (Rmin, Rmax, zmin, zmax)``: a box in cylindrical (R, z) [kpc] containing the region
  (z signed), used to lay the sampler's grids over the region only;
* ``phi_window(Ra, Rb, za, zb) -> (phi_centre, half_width)``: for ring cells
  Ra <= R <= Rb, za <= |z| <= zb (both signs of z), an azimuthal interval [rad] containing every
  point of the region inside the cell (half_width = pi: the whole ring; a negative half_width:
  the cell misses the region). Conservative windows keep the sampling exact; tight ones make it
  fast.

Positions outside the region are discarded after being proposed, so a loose window costs time,
never accuracy.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ... import units as U

__all__ = ["Region", "Sphere", "Cylinder", "Annulus", "Predicate", "as_region"]


def _abs_z_interval(zlo: float, zhi: float) -> Tuple[float, float]:
    """Range of |z| over the signed interval [zlo, zhi]."""
    if zlo <= 0.0 <= zhi:
        return 0.0, max(-zlo, zhi)
    return min(abs(zlo), abs(zhi)), max(abs(zlo), abs(zhi))


def _dist_to_interval(c, lo, hi):
    """Distance from the value(s) c to the interval(s) [lo, hi] (0 inside)."""
    return np.maximum(0.0, np.maximum(lo - c, c - hi))


class Region:
    """Base class of sampling regions (see the module docstring for the protocol)."""

    def contains(self, xyz) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def bounds(self) -> Tuple[float, float, float, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def phi_window(self, Ra, Rb, za, zb):
        """Whole rings for cells whose (R, |z|) box meets :meth:`bounds`, nothing otherwise."""
        Rmin, Rmax, zmin, zmax = self.bounds()
        azlo, azhi = _abs_z_interval(zmin, zmax)
        meets = ((np.asarray(Rb) >= Rmin) & (np.asarray(Ra) <= Rmax)
                 & (np.asarray(zb) >= azlo) & (np.asarray(za) <= azhi))
        shape = np.broadcast(Ra, Rb, za, zb).shape
        return np.zeros(shape), np.where(meets, np.pi, -1.0)

    def describe(self) -> dict:
        """JSON-friendly description (type and parameters) for metadata."""
        return {"type": type(self).__name__}


class Sphere(Region):
    """Ball of radius ``radius`` [kpc] around ``center`` = (x, y, z) [kpc].

    Example: the 3 kpc solar neighbourhood of BV23, ``Sphere((8.27, 0, 0), 3)`` (the Sun on the
    +x axis in mocksky's Galactocentric model frame).

    Raises
    ------
    ValueError
        If the radius is not positive or the centre not three finite numbers.
    """

    def __init__(self, center, radius):
        c = np.asarray(U.to_internal(center, U.LENGTH, "center"), dtype=np.float64).ravel()
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise ValueError(f"Sphere center: need three finite numbers (x, y, z) [kpc], got {center!r}")
        r = float(U.to_internal(radius, U.LENGTH, "radius"))
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"Sphere radius must be positive [kpc], got {radius!r}")
        self.center, self.radius = c, r
        self._Rc = float(np.hypot(c[0], c[1]))
        self._phic = float(np.arctan2(c[1], c[0]))

    def contains(self, xyz) -> np.ndarray:
        p = U.points(xyz)
        return np.sum((p - self.center) ** 2, axis=1) <= self.radius ** 2

    def bounds(self):
        r, cz = self.radius, self.center[2]
        return max(0.0, self._Rc - r), self._Rc + r, cz - r, cz + r

    def phi_window(self, Ra, Rb, za, zb):
        Ra, Rb, za, zb = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (Ra, Rb, za, zb)))
        cz, r, Rc = self.center[2], self.radius, self._Rc
        # squared vertical distance from the centre to the nearer of the two mirrored z ranges
        dz = np.minimum(_dist_to_interval(cz, za, zb), _dist_to_interval(cz, -zb, -za))
        # the ring of radius R at height z meets the ball iff |R - Rc| <= sqrt(r^2 - dz^2)
        h2 = r * r - dz * dz
        h = np.sqrt(np.maximum(h2, 0.0))
        meets = (h2 >= 0) & (Rb >= Rc - h) & (Ra <= Rc + h)
        if Rc == 0.0:
            return np.zeros(Ra.shape), np.where(meets, np.pi, -1.0)
        # cos(dphi) >= (R^2 + Rc^2 + dz^2 - r^2) / (2 R Rc): minimise the bound over R in [Ra, Rb]
        with np.errstate(divide="ignore", invalid="ignore"):
            Rstar = np.sqrt(np.maximum(Rc * Rc - h2, 0.0))
            Rs = np.clip(Rstar, Ra, Rb)
            cands = [Ra, Rb, Rs]
            cmin = np.full(Ra.shape, np.inf)
            for R in cands:
                val = np.where(R > 0, (R * R + Rc * Rc - h2) / (2 * np.where(R > 0, R, 1.0) * Rc), -np.inf)
                cmin = np.minimum(cmin, val)
        half = np.where(cmin <= -1.0, np.pi, np.arccos(np.clip(cmin, -1.0, 1.0)))
        # a little slack against rounding
        half = np.minimum(np.pi, half * (1 + 1e-9) + 1e-12)
        return np.full(Ra.shape, self._phic), np.where(meets, half, -1.0)

    def describe(self) -> dict:
        return {"type": "sphere", "center_kpc": self.center.tolist(), "radius_kpc": self.radius}


class Cylinder(Region):
    """Vertical cylinder: cylindrical distance <= ``radius`` from the axis through (x, y) = ``center``
    [kpc], and zmin <= z <= zmax [kpc].

    Raises
    ------
    ValueError
        If the radius is not positive or zmin >= zmax.
    """

    def __init__(self, center, radius, zmin, zmax):
        c = np.asarray(U.to_internal(center, U.LENGTH, "center"), dtype=np.float64).ravel()
        if c.shape != (2,) or not np.all(np.isfinite(c)):
            raise ValueError(f"Cylinder center: need two finite numbers (x, y) [kpc], got {center!r}")
        r = float(U.to_internal(radius, U.LENGTH, "radius"))
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"Cylinder radius must be positive [kpc], got {radius!r}")
        zmin = float(U.to_internal(zmin, U.LENGTH, "zmin"))
        zmax = float(U.to_internal(zmax, U.LENGTH, "zmax"))
        if not zmin < zmax:
            raise ValueError(f"Cylinder: zmin must be < zmax, got {zmin}, {zmax}")
        self.center, self.radius, self.zmin, self.zmax = c, r, zmin, zmax
        self._Rc = float(np.hypot(*c))
        self._phic = float(np.arctan2(c[1], c[0]))

    def contains(self, xyz) -> np.ndarray:
        p = U.points(xyz)
        return (((p[:, 0] - self.center[0]) ** 2 + (p[:, 1] - self.center[1]) ** 2 <= self.radius ** 2)
                & (p[:, 2] >= self.zmin) & (p[:, 2] <= self.zmax))

    def bounds(self):
        return max(0.0, self._Rc - self.radius), self._Rc + self.radius, self.zmin, self.zmax

    def phi_window(self, Ra, Rb, za, zb):
        Ra, Rb, za, zb = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (Ra, Rb, za, zb)))
        r, Rc = self.radius, self._Rc
        zmeets = ((zb >= self.zmin) & (za <= self.zmax)) | ((-za >= self.zmin) & (-zb <= self.zmax))
        meets = zmeets & (Rb >= Rc - r) & (Ra <= Rc + r)
        if Rc == 0.0:
            return np.zeros(Ra.shape), np.where(meets, np.pi, -1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            Rstar = np.sqrt(max(Rc * Rc - r * r, 0.0))
            Rs = np.clip(Rstar, Ra, Rb)
            cmin = np.full(Ra.shape, np.inf)
            for R in (Ra, Rb, Rs):
                val = np.where(R > 0, (R * R + Rc * Rc - r * r) / (2 * np.where(R > 0, R, 1.0) * Rc), -np.inf)
                cmin = np.minimum(cmin, val)
        half = np.where(cmin <= -1.0, np.pi, np.arccos(np.clip(cmin, -1.0, 1.0)))
        half = np.minimum(np.pi, half * (1 + 1e-9) + 1e-12)
        return np.full(Ra.shape, self._phic), np.where(meets, half, -1.0)

    def describe(self) -> dict:
        return {"type": "cylinder", "center_kpc": self.center.tolist(), "radius_kpc": self.radius,
                "zmin_kpc": self.zmin, "zmax_kpc": self.zmax}


class Annulus(Region):
    """Axisymmetric ring Rmin <= R <= Rmax, zmin <= z <= zmax [kpc], optionally limited to the
    azimuths phimin <= phi <= phimax [rad] (an interval of length <= 2 pi, measured from +x).

    Raises
    ------
    ValueError
        If a range is empty or negative radii are given.
    """

    def __init__(self, Rmin, Rmax, zmin, zmax, phimin: Optional[float] = None, phimax: Optional[float] = None):
        Rmin = float(U.to_internal(Rmin, U.LENGTH, "Rmin"))
        Rmax = float(U.to_internal(Rmax, U.LENGTH, "Rmax"))
        zmin = float(U.to_internal(zmin, U.LENGTH, "zmin"))
        zmax = float(U.to_internal(zmax, U.LENGTH, "zmax"))
        if not (0 <= Rmin < Rmax and np.isfinite(Rmax)):
            raise ValueError(f"Annulus: need 0 <= Rmin < Rmax < inf [kpc], got {Rmin}, {Rmax}")
        if not (zmin < zmax and np.isfinite(zmin) and np.isfinite(zmax)):
            raise ValueError(f"Annulus: need finite zmin < zmax [kpc], got {zmin}, {zmax}")
        if (phimin is None) != (phimax is None):
            raise ValueError("Annulus: give both phimin and phimax, or neither")
        if phimin is not None and not (0 < phimax - phimin <= 2 * np.pi):
            raise ValueError(f"Annulus: need 0 < phimax - phimin <= 2 pi, got {phimin}, {phimax}")
        self.Rmin, self.Rmax, self.zmin, self.zmax = Rmin, Rmax, zmin, zmax
        self.phimin, self.phimax = phimin, phimax

    def contains(self, xyz) -> np.ndarray:
        p = U.points(xyz)
        R = np.hypot(p[:, 0], p[:, 1])
        ok = (R >= self.Rmin) & (R <= self.Rmax) & (p[:, 2] >= self.zmin) & (p[:, 2] <= self.zmax)
        if self.phimin is not None:
            dphi = np.mod(np.arctan2(p[:, 1], p[:, 0]) - self.phimin, 2 * np.pi)
            ok &= dphi <= self.phimax - self.phimin
        return ok

    def bounds(self):
        return self.Rmin, self.Rmax, self.zmin, self.zmax

    def phi_window(self, Ra, Rb, za, zb):
        centre, half = Region.phi_window(self, Ra, Rb, za, zb)
        if self.phimin is not None:
            width = 0.5 * (self.phimax - self.phimin)
            centre = np.full(centre.shape, self.phimin + width)
            half = np.where(half >= 0, min(np.pi, width * (1 + 1e-9)), half)
        return centre, half

    def describe(self) -> dict:
        return {"type": "annulus", "Rmin_kpc": self.Rmin, "Rmax_kpc": self.Rmax, "zmin_kpc": self.zmin,
                "zmax_kpc": self.zmax, "phimin_rad": self.phimin, "phimax_rad": self.phimax}


class Predicate(Region):
    """Region given by a callable ``func(xyz) -> bool array`` on (N, 3) positions [kpc], intersected
    with the cylindrical box ``bounds = (Rmin, Rmax, zmin, zmax)`` [kpc] (whole rings of the box are
    proposed, then tested; a box hugging the region keeps this fast).

    Raises
    ------
    ValueError
        If ``func`` is not callable or the box is empty.
    """

    def __init__(self, func: Callable, bounds: Sequence[float], name: str = ""):
        if not callable(func):
            raise ValueError(f"Predicate: func must be callable, got {type(func).__name__}")
        b = tuple(float(x) for x in bounds)
        if len(b) != 4 or not (0 <= b[0] < b[1] and b[2] < b[3]) or not np.all(np.isfinite(b)):
            raise ValueError(f"Predicate bounds: need finite (Rmin, Rmax, zmin, zmax) with 0 <= Rmin < Rmax, "
                             f"zmin < zmax [kpc], got {bounds!r}")
        self.func, self._bounds, self.name = func, b, name

    def contains(self, xyz) -> np.ndarray:
        p = U.points(xyz)
        out = np.asarray(self.func(p), dtype=bool)
        if out.shape != (len(p),):
            raise ValueError(f"Predicate {self.name!r}: func must return a bool array of shape ({len(p)},), "
                             f"got shape {out.shape}")
        Rmin, Rmax, zmin, zmax = self._bounds
        R = np.hypot(p[:, 0], p[:, 1])
        return out & (R >= Rmin) & (R <= Rmax) & (p[:, 2] >= zmin) & (p[:, 2] <= zmax)

    def bounds(self):
        return self._bounds

    def describe(self) -> dict:
        return {"type": "predicate", "name": self.name, "bounds_kpc": list(self._bounds)}


_STRING_FORMS = {
    "sphere": ("x,y,z,radius", 4),
    "cylinder": ("x,y,radius,zmin,zmax", 5),
    "annulus": ("Rmin,Rmax,zmin,zmax[,phimin,phimax]", (4, 6)),
}


def _region_from_string(spec: str) -> Region:
    shape, _, rest = spec.partition(":")
    shape = shape.strip().lower()
    if shape not in _STRING_FORMS:
        raise ValueError(f"region {spec!r}: unknown shape {shape!r}; allowed: sphere, cylinder, annulus")
    form, count = _STRING_FORMS[shape]
    try:
        vals = [float(v) for v in rest.split(",")] if rest.strip() else []
    except ValueError as exc:
        raise ValueError(f"region {spec!r}: expected '{shape}:{form}' with numbers (kpc, rad)") from exc
    counts = count if isinstance(count, tuple) else (count,)
    if len(vals) not in counts:
        raise ValueError(f"region {spec!r}: expected '{shape}:{form}' (kpc, rad), got {len(vals)} numbers")
    if shape == "sphere":
        return Sphere(vals[:3], vals[3])
    if shape == "cylinder":
        return Cylinder(vals[:2], vals[2], vals[3], vals[4])
    return Annulus(*vals)


def as_region(spec) -> Optional[Region]:
    """A :class:`Region` from a Region, None, a dict or a string naming a shape.

    Dict forms: ``{"shape": "sphere", "center": [x, y, z], "radius": r}``,
    ``{"shape": "cylinder", "center": [x, y], "radius": r, "zmin": a, "zmax": b}``,
    ``{"shape": "annulus", "Rmin": .., "Rmax": .., "zmin": .., "zmax": .., ["phimin", "phimax"]}`` (kpc, rad).
    String forms (e.g. for command lines): ``"sphere:x,y,z,radius"``,
    ``"cylinder:x,y,radius,zmin,zmax"``, ``"annulus:Rmin,Rmax,zmin,zmax[,phimin,phimax]"``.

    Raises
    ------
    ValueError
        Unknown shape (allowed ones listed) or missing/unknown parameters.
    """
    if spec is None or isinstance(spec, Region):
        return spec
    if isinstance(spec, str):
        return _region_from_string(spec)
    if isinstance(spec, dict):
        kw = {k: v for k, v in spec.items() if k != "shape"}
        shape = str(spec.get("shape", "")).lower()
        classes = {"sphere": Sphere, "cylinder": Cylinder, "annulus": Annulus}
        if shape not in classes:
            raise ValueError(f"region shape {spec.get('shape')!r} unknown; allowed: sphere, cylinder, annulus")
        try:
            return classes[shape](**kw)
        except TypeError as exc:
            raise ValueError(f"region {shape}: bad parameters {sorted(kw)} ({exc})") from exc
    raise ValueError(f"region: expected a Region, a dict or string naming a shape, or None; got {type(spec).__name__}")
