"""Binning schemes (spatial cells x velocity bins, HEALPix x magnitude), evaluated with vaex on catalogue files.

Velocity histograms (Binney & Vasiliev 2023, MNRAS 519, 2493, sect. 4.1 and Table 2; Binney & Vasiliev 2024,
MNRAS 527, 1915): stars are grouped into cells of a rectangular grid in Galactocentric (R, |z|); in each cell
the 1D distributions of vR, vz and vphi are histogrammed, each component with its own bins in every cell.

Conventions (fixed here, for every scheme):

* cell index ``cell = nR * iz + iR`` (BV24's ``cell_index = 12 iz + iR``);
* intervals are ``(lo, hi]`` - a value on an edge belongs to the bin below it - except that the first |z| interval
  is closed, ``[0, hi]``, so a star exactly in the plane is counted;
* velocity bins are stored per cell and component as an ``(ncell, nbins + 1)`` edge array plus ``lo_eff`` per
  cell: bin 0 also holds values in ``(lo_eff, edges[0]]`` (BV24's extension of bin 0 by one bin width below the
  nominal range; ``lo_eff = edges[0]`` means no extension). Values outside are not counted;
* HEALPix x magnitude counts use ``[lo, hi)`` magnitude intervals (magnitude-limit convention ``G < G_lim``) and
  healpy pixel numbers in the ordering the scheme states (NESTED by default, Gaia's convention).

Columns: every scheme bins named catalogue columns or vaex expressions. :func:`resolve_velocity_columns` picks, for
each of ``R, z, vR, vz, vphi``, the observed Galactocentric column ``<name>_obs`` when the catalogue has it and
otherwise the true column ``<name>`` (the schema's error-free phase-space columns), logging which; pass
``columns={"R": ..., ...}`` to choose explicitly (any vaex expression, e.g. ``"sqrt(x**2 + y**2)"``).

Evaluation: :func:`bin_velocities` and :func:`bin_healpix` run on a catalogue *file* (or a vaex DataFrame) in one
pass over the data with vaex. Per-cell bin edges differ, so the flat bin index ``cell * nbins + k`` of every star is
computed by a compiled (numba, GIL-free) binary search registered as a vaex function and then counted with
``df.count``/``df.sum(binby=index, shape=ncell * nbins)``; weights (e.g. ``selection_probability``) are supported,
with the sum of squared weights for the Poisson variance of the weighted counts.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numba
import numpy as np

__all__ = [
    "COMPONENTS", "CellGrid", "VelocityBins", "VelocityScheme", "VelocityHistograms", "HealpixScheme",
    "HealpixCounts", "bv23_cells", "bv23_scheme", "bv24_cells", "moments_rule_scheme", "resolve_velocity_columns",
    "bin_velocities", "cell_moments", "bin_healpix", "BV23_R_OFFSETS", "BV23_ABSZ_EDGES", "BV24_R_EDGES",
    "BV24_ABSZ_EDGES",
]

log = logging.getLogger(__name__)

#: Velocity components histogrammed per cell, in this order.
COMPONENTS: Tuple[str, ...] = ("vR", "vz", "vphi")
#: BV23 Table 2: R - R0 cell edges [kpc].
BV23_R_OFFSETS = (-3.0, -1.5, -0.5, 0.5, 1.5, 3.0)
#: BV23 Table 2: |z| cell edges [kpc].
BV23_ABSZ_EDGES = (0.0, 0.1, 0.2, 0.35, 0.5, 1.0, 1.75, 3.0)
#: BV24 (APOGEE DR17 x Gaia DR3 histograms) R cell edges [kpc].
BV24_R_EDGES = (0.5, 1.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.5, 13.0, 14.5)
#: BV24 |z| cell edges [kpc].
BV24_ABSZ_EDGES = (0.0, 0.3, 0.7, 1.0, 1.5, 2.0, 3.0)
#: BV23 velocity limits [km/s] used by :func:`bv23_scheme` when none are given (the paper does not tabulate them).
BV23_DEFAULT_LIMITS = {"vR": (-250.0, 250.0), "vz": (-200.0, 200.0), "vphi": (-150.0, 400.0)}

#: rows per batch of parts when a catalogue path is binned (:func:`_frames`): ~4 columns x 8 bytes x 4e6 rows of
#: memory-mapped pages resident at a time
BATCH_ROWS = 4_000_000

# --------------------------------------------------------------------------------------------------------------
# compiled kernels
# --------------------------------------------------------------------------------------------------------------

@numba.njit(cache=True, fastmath=False, nogil=True)
def _locate(x, edges):
    """Index k with edges[k] < x <= edges[k+1], or -1 (also for NaN)."""
    n = edges.size - 1
    if not (x > edges[0] and x <= edges[n]):
        return -1
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if edges[mid] < x:
            lo = mid
        else:
            hi = mid
    return lo


@numba.njit(cache=True, fastmath=False, nogil=True)
def _cell_kernel(R, z, R_edges, z_edges, out):
    nR = R_edges.size - 1
    for i in range(R.size):
        az = abs(z[i])
        iz = 0 if az == z_edges[0] else _locate(az, z_edges)
        iR = _locate(R[i], R_edges)
        out[i] = -1 if (iz < 0 or iR < 0) else iz * nR + iR


@numba.njit(cache=True, fastmath=False, nogil=True)
def _velocity_kernel(R, z, v, R_edges, z_edges, vedges, lo_eff, out):
    nR = R_edges.size - 1
    nb = vedges.shape[1] - 1
    for i in range(R.size):
        az = abs(z[i])
        iz = 0 if az == z_edges[0] else _locate(az, z_edges)
        iR = _locate(R[i], R_edges)
        if iz < 0 or iR < 0:
            out[i] = -1
            continue
        c = iz * nR + iR
        e = vedges[c]
        x = v[i]
        if x <= e[0]:
            k = 0 if x > lo_eff[c] else -1
        else:
            k = _locate(x, e)
        out[i] = -1 if k < 0 else c * nb + k


@numba.njit(cache=True, fastmath=False, nogil=True)
def _mag_kernel(pix, m, mag_edges, out):
    nm = mag_edges.size - 1
    for i in range(pix.size):
        x = m[i]
        k = -1
        if x >= mag_edges[0] and x < mag_edges[nm]:
            lo, hi = 0, nm
            while hi - lo > 1:  # edges[lo] <= x < edges[hi]
                mid = (lo + hi) // 2
                if mag_edges[mid] <= x:
                    lo = mid
                else:
                    hi = mid
            k = lo
        out[i] = -1 if (k < 0 or pix[i] < 0) else pix[i] * nm + k


def _f64(x) -> np.ndarray:
    """A contiguous float64 NumPy array from a NumPy/Arrow chunk handed over by vaex."""
    if not isinstance(x, np.ndarray) and hasattr(x, "to_numpy"):
        x = x.to_numpy(zero_copy_only=False)
    if isinstance(x, np.ma.MaskedArray):
        x = x.filled(np.nan)
    return np.ascontiguousarray(x, dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# schemes
# --------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CellGrid:
    """A rectangular grid of cells in Galactocentric (R, |z|).

    Parameters
    ----------
    R_edges : sequence of float
        Increasing cylindrical-radius edges [kpc], ``nR + 1`` values.
    absz_edges : sequence of float
        Increasing |z| edges [kpc], ``nz + 1`` values, the first >= 0.
    name : str

    Notes
    -----
    ``cell = nR * iz + iR``; intervals ``(lo, hi]`` except the first |z| interval ``[0, hi]``.

    Raises
    ------
    ValueError
        If edges are not strictly increasing, have fewer than 2 values, or |z| edges are negative.
    """

    R_edges: Tuple[float, ...]
    absz_edges: Tuple[float, ...]
    name: str = ""

    def __post_init__(self):
        for field, e in (("R_edges", self.R_edges), ("absz_edges", self.absz_edges)):
            a = np.asarray(e, dtype=float)
            if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)) or np.any(np.diff(a) <= 0):
                raise ValueError(f"CellGrid.{field} must be >= 2 finite strictly increasing values, got {e!r}")
            object.__setattr__(self, field, tuple(float(v) for v in a))
        if self.absz_edges[0] < 0:
            raise ValueError(f"CellGrid.absz_edges must start at >= 0, got {self.absz_edges[0]}")

    @property
    def nR(self) -> int:
        return len(self.R_edges) - 1

    @property
    def nz(self) -> int:
        return len(self.absz_edges) - 1

    @property
    def ncell(self) -> int:
        return self.nR * self.nz

    def cell_index(self, R, z) -> np.ndarray:
        """Cell of each star (-1 outside the grid or NaN).

        Parameters
        ----------
        R, z : array_like
            Galactocentric cylindrical radius and height [kpc] (the sign of z is ignored).

        Returns
        -------
        ndarray of int64, broadcast shape
        """
        R, z = np.broadcast_arrays(np.asarray(R, float), np.asarray(z, float))
        shape = R.shape
        out = np.empty(R.size, np.int64)
        _cell_kernel(_f64(R.ravel()), _f64(z.ravel()), np.asarray(self.R_edges), np.asarray(self.absz_edges), out)
        return out.reshape(shape)

    def table(self):
        """The cells as a pandas DataFrame: ``cell_index, iR, iz, R_min, R_max, absz_min, absz_max``."""
        import pandas as pd

        iz, iR = np.divmod(np.arange(self.ncell), self.nR)
        Re, ze = np.asarray(self.R_edges), np.asarray(self.absz_edges)
        return pd.DataFrame({"cell_index": np.arange(self.ncell), "iR": iR, "iz": iz, "R_min": Re[iR],
                             "R_max": Re[iR + 1], "absz_min": ze[iz], "absz_max": ze[iz + 1]})


def bv23_cells(R0: float = 8.27) -> CellGrid:
    """The 35 (R, |z|) cells of Binney & Vasiliev 2023, Table 2: R - R0 in (-3, -1.5, -0.5, 0.5, 1.5, 3) kpc,
    |z| in (0, 0.1, 0.2, 0.35, 0.5, 1, 1.75, 3) kpc.

    Parameters
    ----------
    R0 : float
        Solar radius [kpc]; BV23 used 8.27 kpc (Schoenrich et al. 2019).
    """
    return CellGrid(tuple(R0 + d for d in BV23_R_OFFSETS), BV23_ABSZ_EDGES, name=f"bv23_R0={R0:g}")


def bv24_cells() -> CellGrid:
    """The 72 (R, |z|) cells of the Binney & Vasiliev 2024 APOGEE DR17 x Gaia DR3 histograms (12 in R, 6 in |z|)."""
    return CellGrid(BV24_R_EDGES, BV24_ABSZ_EDGES, name="bv24")


@dataclasses.dataclass(frozen=True, eq=False)
class VelocityBins:
    """Per-cell bins of one velocity component.

    Parameters
    ----------
    edges : array_like, shape (ncell, nbins + 1)
        Increasing edges in every cell [km/s]; intervals ``(lo, hi]``.
    lo_eff : array_like, shape (ncell,), optional
        Bin 0 also holds ``(lo_eff, edges[:, 0]]``; default ``edges[:, 0]`` (no extension).

    Raises
    ------
    ValueError
        If shapes disagree, edges are not strictly increasing or ``lo_eff > edges[:, 0]``.
    """

    edges: np.ndarray
    lo_eff: Optional[np.ndarray] = None

    def __post_init__(self):
        e = np.array(self.edges, dtype=np.float64, order="C")
        if e.ndim != 2 or e.shape[1] < 2:
            raise ValueError(f"VelocityBins.edges must have shape (ncell, nbins + 1), got {e.shape}")
        if not np.all(np.isfinite(e)) or np.any(np.diff(e, axis=1) <= 0):
            raise ValueError("VelocityBins.edges must be finite and strictly increasing in every cell")
        lo = e[:, 0].copy() if self.lo_eff is None else np.array(self.lo_eff, dtype=np.float64)
        if lo.shape != (e.shape[0],):
            raise ValueError(f"VelocityBins.lo_eff must have shape ({e.shape[0]},), got {lo.shape}")
        if np.any(lo > e[:, 0]):
            raise ValueError("VelocityBins.lo_eff must be <= edges[:, 0]")
        e.setflags(write=False)
        lo.setflags(write=False)
        object.__setattr__(self, "edges", e)
        object.__setattr__(self, "lo_eff", lo)

    @property
    def ncell(self) -> int:
        return self.edges.shape[0]

    @property
    def nbins(self) -> int:
        return self.edges.shape[1] - 1

    def effective_edges(self) -> np.ndarray:
        """Edges with ``edges[:, 0]`` replaced by ``lo_eff``: the intervals actually counted, shape (ncell, nbins+1)."""
        e = self.edges.copy()
        e[:, 0] = self.lo_eff
        return e

    def centres(self) -> np.ndarray:
        """Centres of the counted intervals (bin 0 including its extension), shape (ncell, nbins)."""
        e = self.effective_edges()
        return 0.5 * (e[:, 1:] + e[:, :-1])

    @classmethod
    def uniform(cls, lo, hi, nbins: int, extend_first: bool = False) -> "VelocityBins":
        """``nbins`` equal bins on ``(lo, hi]`` per cell (``lo, hi`` arrays of shape (ncell,)); with
        ``extend_first`` bin 0 also holds one bin width below ``lo``."""
        lo, hi = np.atleast_1d(np.asarray(lo, float)), np.atleast_1d(np.asarray(hi, float))
        if int(nbins) < 1:
            raise ValueError(f"nbins={nbins} must be >= 1")
        t = np.linspace(0.0, 1.0, int(nbins) + 1)
        edges = lo[:, None] + (hi - lo)[:, None] * t[None, :]
        edges[:, -1] = hi
        lo_eff = lo - (hi - lo) / nbins if extend_first else lo
        return cls(edges, lo_eff)


@dataclasses.dataclass(frozen=True, eq=False)
class VelocityScheme:
    """Spatial cells with per-cell velocity bins for each component.

    Parameters
    ----------
    name : str
    cells : CellGrid
    bins : mapping of component name to VelocityBins
        Components among :data:`COMPONENTS` (in that order); each with ``cells.ncell`` rows.
    reference : str
        Literature source of the binning.

    Raises
    ------
    ValueError
        If a component is unknown or its bins do not have one row per cell.
    """

    name: str
    cells: CellGrid
    bins: Mapping[str, VelocityBins]
    reference: str = ""

    def __post_init__(self):
        unknown = [c for c in self.bins if c not in COMPONENTS]
        if unknown or not self.bins:
            raise ValueError(f"VelocityScheme.bins: unknown or no components {unknown}; allowed {list(COMPONENTS)}")
        for c, b in self.bins.items():
            if b.ncell != self.cells.ncell:
                raise ValueError(f"VelocityScheme.bins[{c!r}] has {b.ncell} cells, the grid {self.cells.ncell}")
        object.__setattr__(self, "bins", {c: self.bins[c] for c in COMPONENTS if c in self.bins})

    @property
    def components(self) -> Tuple[str, ...]:
        return tuple(self.bins)

    def assign(self, R, z, v, component: str) -> np.ndarray:
        """Flat bin index ``cell * nbins + k`` of each star for one component (-1 if not counted).

        Parameters
        ----------
        R, z, v : array_like
            Cylindrical radius [kpc], height [kpc] and the component's velocity [km/s]; broadcast together.
        component : str

        Returns
        -------
        ndarray of int64
        """
        b = self._bins(component)
        R, z, v = np.broadcast_arrays(np.asarray(R, float), np.asarray(z, float), np.asarray(v, float))
        out = np.empty(R.size, np.int64)
        _velocity_kernel(_f64(R.ravel()), _f64(z.ravel()), _f64(v.ravel()), np.asarray(self.cells.R_edges),
                         np.asarray(self.cells.absz_edges), b.edges, b.lo_eff, out)
        return out.reshape(R.shape)

    def histogram(self, R, z, v, component: str, weights=None) -> np.ndarray:
        """In-memory histogram of one component, shape (ncell, nbins) (a NumPy reference for :func:`bin_velocities`)."""
        b = self._bins(component)
        idx = self.assign(R, z, v, component).ravel()
        ok = idx >= 0
        w = None if weights is None else np.broadcast_to(np.asarray(weights, float), idx.shape)[ok]
        h = np.bincount(idx[ok], weights=w, minlength=self.cells.ncell * b.nbins)
        return h.reshape(self.cells.ncell, b.nbins)

    def _bins(self, component: str) -> VelocityBins:
        try:
            return self.bins[component]
        except KeyError:
            raise KeyError(f"component {component!r} not in scheme {self.name!r}; it has {list(self.bins)}") from None


def bv23_scheme(R0: float = 8.27, nbins: int = 50, limits: Optional[Mapping[str, Tuple[float, float]]] = None
                ) -> VelocityScheme:
    """The BV23 binning: 35 cells of Table 2 and ``nbins`` equal velocity bins, the same in every cell.

    Parameters
    ----------
    R0 : float
        Solar radius [kpc] placing the R - R0 edges.
    nbins : int
    limits : mapping of component to (lo, hi), optional
        Velocity ranges [km/s]; default :data:`BV23_DEFAULT_LIMITS` (vR, vz, vphi = (-250, 250), (-200, 200),
        (-150, 400)), chosen to cover the histograms of BV23 Figs 10-12, whose bins the paper does not tabulate.
        For data-driven per-cell ranges use :func:`moments_rule_scheme`.

    Returns
    -------
    VelocityScheme

    References
    ----------
    Binney & Vasiliev 2023, MNRAS 519, 2493, Table 2 and Figs 10-12.
    """
    lim = dict(BV23_DEFAULT_LIMITS)
    lim.update(limits or {})
    cells = bv23_cells(R0)
    bins = {}
    for c in COMPONENTS:
        lo, hi = lim[c]
        if not hi > lo:
            raise ValueError(f"limits[{c!r}] = {lim[c]} must have hi > lo")
        bins[c] = VelocityBins.uniform(np.full(cells.ncell, lo), np.full(cells.ncell, hi), nbins)
    return VelocityScheme("bv23", cells, bins, reference="Binney & Vasiliev 2023, MNRAS 519, 2493, Table 2")


def moments_rule_scheme(cells: CellGrid, rms_vR, rms_vz, mean_vphi, sigma_vphi, nbins: int = 50,
                        name: str = "moments_rule", vphi_min: float = -50.0) -> VelocityScheme:
    """Per-cell bins by the rule of the BV24 histograms, from the moments of the stars in each cell.

    vR and vz: ``nbins`` equal bins on ``[-3 rms, +3 rms]`` (rms about zero); vphi: on
    ``[vphi_min, |<vphi>| + 3 sigma_phi]``; bin 0 of every component extended by one bin width below.

    Parameters
    ----------
    cells : CellGrid
    rms_vR, rms_vz, mean_vphi, sigma_vphi : array_like, shape (ncell,)
        Moments per cell [km/s] (e.g. from :func:`cell_moments`); cells without stars may hold NaN and then get
        the median of the others.
    nbins : int
    name : str
    vphi_min : float
        Lower vphi limit [km/s] (-50 in BV24).

    Returns
    -------
    VelocityScheme

    References
    ----------
    Binney & Vasiliev 2024, MNRAS 527, 1915 (histogram ranges as in their published data, AgamaChemo M0).
    """
    def fill(a, what):
        a = np.array(a, dtype=float)
        if a.shape != (cells.ncell,):
            raise ValueError(f"{what} must have shape ({cells.ncell},), got {a.shape}")
        bad = ~np.isfinite(a)
        if bad.all():
            raise ValueError(f"{what}: no finite value")
        a[bad] = np.median(a[~bad])
        return a

    rR, rz = fill(rms_vR, "rms_vR"), fill(rms_vz, "rms_vz")
    top = np.abs(fill(mean_vphi, "mean_vphi")) + 3 * fill(sigma_vphi, "sigma_vphi")
    if np.any(top <= vphi_min):
        raise ValueError("|<vphi>| + 3 sigma_phi must exceed vphi_min in every cell")
    bins = {"vR": VelocityBins.uniform(-3 * rR, 3 * rR, nbins, extend_first=True),
            "vz": VelocityBins.uniform(-3 * rz, 3 * rz, nbins, extend_first=True),
            "vphi": VelocityBins.uniform(np.full(cells.ncell, vphi_min), top, nbins, extend_first=True)}
    return VelocityScheme(name, cells, bins, reference="Binney & Vasiliev 2024, MNRAS 527, 1915 (binning rule)")


# --------------------------------------------------------------------------------------------------------------
# histograms
# --------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class VelocityHistograms:
    """Histograms of the velocity components in the cells of a scheme.

    Attributes
    ----------
    scheme : VelocityScheme
    counts : dict of str to ndarray, shape (ncell, nbins)
        (Weighted) counts per component.
    sumw2 : dict of str to ndarray, optional
        Sum of squared weights per bin (the Poisson variance of a weighted count); None if unknown (e.g. data or
        a published model), when counts are taken as Poisson.
    nstars : dict of str to ndarray, optional
        Unweighted numbers of catalogue stars per bin.
    R_mean, absz_mean : ndarray, shape (ncell,), optional
        (Weighted) mean R and |z| of the stars in each cell [kpc].
    label : str
    meta : dict
        Provenance: columns, weight, selection, source.
    """

    scheme: VelocityScheme
    counts: Dict[str, np.ndarray]
    sumw2: Optional[Dict[str, np.ndarray]] = None
    nstars: Optional[Dict[str, np.ndarray]] = None
    R_mean: Optional[np.ndarray] = None
    absz_mean: Optional[np.ndarray] = None
    label: str = ""
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        counts = {}
        for c, h in self.counts.items():
            b = self.scheme._bins(c)
            h = np.asarray(h, dtype=float)
            if h.shape != (b.ncell, b.nbins):
                raise ValueError(f"counts[{c!r}] has shape {h.shape}, expected {(b.ncell, b.nbins)}")
            counts[c] = h
        self.counts = counts
        for what in ("sumw2", "nstars"):
            d = getattr(self, what)
            if d is not None and set(d) != set(counts):
                raise ValueError(f"{what} has components {sorted(d)}, counts {sorted(counts)}")

    @property
    def components(self) -> Tuple[str, ...]:
        return tuple(c for c in COMPONENTS if c in self.counts)

    def total(self, component: str) -> np.ndarray:
        """Total (weighted) count per cell, shape (ncell,)."""
        return self.counts[component].sum(axis=1)

    def moments(self, component: str) -> Tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation [km/s] per cell from the histogram (bin centres, bin 0 including its
        extension); NaN for empty cells. Shapes (ncell,)."""
        h = self.counts[component]
        x = self.scheme.bins[component].centres()
        n = h.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (h * x).sum(axis=1) / n
            var = (h * (x - mean[:, None]) ** 2).sum(axis=1) / n
        return mean, np.sqrt(var)

    def to_frame(self):
        """Long-format pandas DataFrame, one row per (cell, component, bin), with the columns of the BV24 file
        (``cell_index, iR, iz, R_min, R_max, absz_min, absz_max, R_mean, absz_mean, component, bin_index, v_lo,
        v_hi, v_lo_eff``) and ``count`` (plus ``sumw2`` and ``nstars`` when known)."""
        import pandas as pd

        cells = self.scheme.cells.table()
        R_mean = self.R_mean if self.R_mean is not None else np.full(len(cells), np.nan)
        z_mean = self.absz_mean if self.absz_mean is not None else np.full(len(cells), np.nan)
        cells["R_mean"], cells["absz_mean"] = R_mean, z_mean
        frames = []
        for c in self.components:
            b = self.scheme.bins[c]
            nc, nb = b.ncell, b.nbins
            f = cells.loc[np.repeat(np.arange(nc), nb)].reset_index(drop=True)
            f["component"] = c
            f["bin_index"] = np.tile(np.arange(nb), nc)
            f["v_lo"] = b.edges[:, :-1].ravel()
            f["v_hi"] = b.edges[:, 1:].ravel()
            lo_eff = b.edges[:, :-1].copy()
            lo_eff[:, 0] = b.lo_eff
            f["v_lo_eff"] = lo_eff.ravel()
            f["count"] = self.counts[c].ravel()
            if self.sumw2 is not None:
                f["sumw2"] = self.sumw2[c].ravel()
            if self.nstars is not None:
                f["nstars"] = self.nstars[c].ravel()
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def to_csv(self, path) -> Path:
        """Write :meth:`to_frame` as CSV; returns the path."""
        path = Path(path)
        self.to_frame().to_csv(path, index=False)
        return path


def resolve_velocity_columns(available: Sequence[str], columns: Optional[Mapping[str, str]] = None
                             ) -> Dict[str, str]:
    """The column (or vaex expression) used for each of ``R, z, vR, vz, vphi``.

    Parameters
    ----------
    available : sequence of str
        Column names of the catalogue.
    columns : mapping, optional
        Explicit choices (names or vaex expressions), used as given.

    Returns
    -------
    dict
        For each quantity not given explicitly: ``<name>_obs`` if available (observed Galactocentric value, with
        errors), else ``<name>`` (true value).

    Raises
    ------
    KeyError
        If neither is available (the message lists what is missing), or ``columns`` has an unknown key.
    """
    columns = dict(columns or {})
    keys = ("R", "z") + COMPONENTS
    unknown = [k for k in columns if k not in keys]
    if unknown:
        raise KeyError(f"columns: unknown key(s) {unknown}; allowed {list(keys)}")
    avail = set(available)
    out, missing = {}, []
    for q in keys:
        if q in columns:
            out[q] = columns[q]
        elif f"{q}_obs" in avail:
            out[q] = f"{q}_obs"
        elif q in avail:
            out[q] = q
        else:
            missing.append(q)
    if missing:
        raise KeyError(f"the catalogue has neither '<name>_obs' nor '<name>' for {missing}; pass columns={{...}} "
                       "with column names or vaex expressions")
    used_true = [q for q in keys if out[q] == q and q not in columns]
    if used_true:
        log.info("binning the TRUE (error-free) columns %s: the catalogue has no observed '<name>_obs' versions",
                 used_true)
    return out


def _cell_fn(cells: CellGrid):
    """vaex function (R, z) -> cell index of a grid (-1 outside)."""
    Re, ze = np.asarray(cells.R_edges), np.asarray(cells.absz_edges)

    def fn(R, z):
        R, z = _f64(R), _f64(z)
        out = np.empty(R.size, np.int64)
        _cell_kernel(R, z, Re, ze, out)
        return out
    return fn


def _frames(source):
    """vaex DataFrames covering a source: the DataFrame itself (left open), or a path's parts in batches of at most
    :data:`BATCH_ROWS` rows, each closed before the next (:func:`mocksky.catalogue.io.open_vaex_batches`), so
    that binning a catalogue of any size keeps a bounded number of memory-mapped pages resident."""
    if isinstance(source, (str, os.PathLike)):
        from ..catalogue.io import open_vaex_batches

        yield from open_vaex_batches(source, max_rows=BATCH_ROWS)
    elif hasattr(source, "count") and hasattr(source, "add_function"):
        yield source
    else:
        raise TypeError(f"source must be a catalogue path or a vaex DataFrame, got {type(source).__name__}")


def _add(acc: Optional[dict], res: dict) -> dict:
    return dict(res) if acc is None else {k: acc[k] + v for k, v in res.items()}


def _validate(df, exprs: Mapping[str, Optional[str]]) -> None:
    """Raise KeyError naming the argument whose column or expression the DataFrame cannot evaluate."""
    for what, expr in exprs.items():
        if expr is None:
            continue
        try:
            df.validate_expression(str(expr))
        except (NameError, SyntaxError) as e:
            raise KeyError(f"{what}={expr!r} is not a column or valid expression of the catalogue: {e}; "
                           f"columns: {df.get_column_names()}") from None


def _selection_arg(selection):
    return False if selection is None else selection


def _velocity_sums(df, scheme: VelocityScheme, cols: Mapping[str, str], weight: Optional[str],
                   selection: Optional[str]) -> dict:
    """Per-bin counts and weight sums of one DataFrame (see :func:`bin_velocities`), additive over rows."""
    _validate(df, {**cols, "weight": weight, "selection": selection})
    sel = _selection_arg(selection)
    cells = scheme.cells
    Re, ze = np.asarray(cells.R_edges), np.asarray(cells.absz_edges)
    cell_fn = _cell_fn(cells)

    def vel_fn_for(b: VelocityBins):
        def fn(R, z, v):
            R, z, v = _f64(R), _f64(z), _f64(v)
            out = np.empty(R.size, np.int64)
            _velocity_kernel(R, z, v, Re, ze, b.edges, b.lo_eff, out)
            return out
        return fn

    added = []
    try:
        f_cell = df.add_function("_mocksky_cell", cell_fn, unique=True)
        added.append(f_cell.name)
        R, z = df[cols["R"]], df[cols["z"]]
        cell = f_cell(R, z)
        w = df[weight] if weight is not None else None
        nc = cells.ncell
        climits = [-0.5, nc - 0.5]
        tasks = {}
        for comp in scheme.components:
            b = scheme.bins[comp]
            f_v = df.add_function(f"_mocksky_{comp}", vel_fn_for(b), unique=True)
            added.append(f_v.name)
            idx = f_v(R, z, df[cols[comp]])
            kw = dict(binby=idx, limits=[-0.5, nc * b.nbins - 0.5], shape=nc * b.nbins, selection=sel,
                      delay=True)
            tasks[comp, "n"] = df.count(**kw)
            if w is not None:
                tasks[comp, "w"] = df.sum(w, **kw)
                tasks[comp, "w2"] = df.sum(w * w, **kw)
        kw = dict(binby=cell, limits=climits, shape=nc, selection=sel, delay=True)
        absz = abs(z)
        if w is None:
            tasks["cell", "w"] = df.count(**kw)
            tasks["cell", "R"] = df.sum(R, **kw)
            tasks["cell", "z"] = df.sum(absz, **kw)
        else:
            tasks["cell", "w"] = df.sum(w, **kw)
            tasks["cell", "R"] = df.sum(w * R, **kw)
            tasks["cell", "z"] = df.sum(w * absz, **kw)
        df.execute()
        return {k: np.asarray(t.get(), dtype=float) for k, t in tasks.items()}
    finally:
        for name in added:
            df.functions.pop(name, None)


def bin_velocities(source, scheme: VelocityScheme, columns: Optional[Mapping[str, str]] = None,
                   weight: Optional[str] = None, selection: Optional[str] = None, label: str = "model"
                   ) -> VelocityHistograms:
    """Histogram the velocity components of a catalogue in the cells of a scheme, with vaex.

    Parameters
    ----------
    source : str, os.PathLike or vaex DataFrame
        A catalogue file, glob, manifest or dataset directory (see :func:`mocksky.catalogue.io.open_vaex`), or an
        open DataFrame.
    scheme : VelocityScheme
    columns : mapping, optional
        Columns/expressions for ``R, z, vR, vz, vphi`` (see :func:`resolve_velocity_columns`).
    weight : str, optional
        Column or expression weighting each star (e.g. ``"selection_probability"``); default unweighted.
    selection : str, optional
        vaex boolean expression restricting the stars (e.g. ``"logg < 3.5"``).
    label : str

    Returns
    -------
    VelocityHistograms
        With ``sumw2`` and ``nstars`` per bin and the weighted mean R, |z| per cell.
    """
    res, n_rows, cols = None, 0, None
    for df in _frames(source):
        cols = resolve_velocity_columns(df.get_column_names(), columns)
        res = _add(res, _velocity_sums(df, scheme, cols, weight, selection))
        n_rows += int(len(df))
    nc = scheme.cells.ncell
    counts, sumw2, nstars = {}, {}, {}
    for comp in scheme.components:
        shape = (nc, scheme.bins[comp].nbins)
        nstars[comp] = res[comp, "n"].reshape(shape).astype(np.int64)
        if weight is None:
            counts[comp] = nstars[comp].astype(float)
            sumw2[comp] = counts[comp].copy()
        else:
            counts[comp] = res[comp, "w"].reshape(shape).astype(float)
            sumw2[comp] = res[comp, "w2"].reshape(shape).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        R_mean = res["cell", "R"] / res["cell", "w"]
        z_mean = res["cell", "z"] / res["cell", "w"]
    meta = {"columns": cols, "weight": weight, "selection": selection,
            "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<DataFrame>",
            "rows": n_rows}
    return VelocityHistograms(scheme, counts, sumw2, nstars, R_mean, z_mean, label=label, meta=meta)


def cell_moments(source, cells: CellGrid, columns: Optional[Mapping[str, str]] = None,
                 weight: Optional[str] = None, selection: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Per-cell velocity moments with vaex: the inputs of :func:`moments_rule_scheme` and the raw (unbinned)
    means and dispersions of a catalogue.

    Parameters
    ----------
    source : str, os.PathLike or vaex DataFrame
        As for :func:`bin_velocities` (a path is read in batches of parts; the sums add up).
    cells : CellGrid
    columns, weight, selection
        As for :func:`bin_velocities`.

    Returns
    -------
    dict of str to ndarray, shape (ncell,)
        ``n`` (weighted count), ``mean_<c>``, ``sigma_<c>`` and ``rms_<c>`` (about zero) for c in vR, vz, vphi
        [km/s]; NaN where a cell is empty.
    """
    res = None
    for df in _frames(source):
        cols = resolve_velocity_columns(df.get_column_names(), columns)
        _validate(df, {**cols, "weight": weight, "selection": selection})
        f_cell = df.add_function("_mocksky_cell", _cell_fn(cells), unique=True)
        try:
            cell = f_cell(df[cols["R"]], df[cols["z"]])
            w = df[weight] if weight is not None else None
            kw = dict(binby=cell, limits=[-0.5, cells.ncell - 0.5], shape=cells.ncell,
                      selection=_selection_arg(selection), delay=True)
            tasks = {"n": df.count(**kw) if w is None else df.sum(w, **kw)}
            for c in COMPONENTS:
                v = df[cols[c]]
                tasks[c, 1] = df.sum(v if w is None else w * v, **kw)
                tasks[c, 2] = df.sum(v * v if w is None else w * v * v, **kw)
            df.execute()
            res = _add(res, {k: np.asarray(t.get(), dtype=float) for k, t in tasks.items()})
        finally:
            df.functions.pop(f_cell.name, None)
    n = res["n"]
    out = {"n": n}
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in COMPONENTS:
            m1, m2 = res[c, 1] / n, res[c, 2] / n
            out[f"mean_{c}"] = m1
            out[f"rms_{c}"] = np.sqrt(m2)
            out[f"sigma_{c}"] = np.sqrt(np.maximum(m2 - m1 ** 2, 0.0))
    for k in out:
        if k != "n":
            out[k][n <= 0] = np.nan
    return out


# --------------------------------------------------------------------------------------------------------------
# HEALPix x magnitude
# --------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HealpixScheme:
    """Star counts in HEALPix pixels x magnitude bins.

    Parameters
    ----------
    nside : int
        HEALPix resolution (a power of 2; ``12 nside^2`` pixels).
    nest : bool
        Pixel ordering: True = NESTED (Gaia's source_id convention, default), False = RING.
    frame : {"galactic", "icrs"}
        Sky coordinates pixelised: Galactic ``(l, b)`` or ICRS ``(ra, dec)`` [deg].
    mag_edges : sequence of float
        Increasing magnitude edges; intervals ``[lo, hi)``.
    mag_column : str
        Column or vaex expression of the magnitude (default the observed Gaia G, ``phot_g_mean_mag``).

    Raises
    ------
    ValueError
        For an invalid nside, frame or edges.

    Notes
    -----
    vaex accumulates into one grid of ``npix * nmag`` float64 values per thread (e.g. nside 256 with 18 magnitude
    bins: 113 MB per grid), so very fine grids are memory-bound.
    """

    nside: int = 32
    nest: bool = True
    frame: str = "galactic"
    mag_edges: Tuple[float, ...] = tuple(np.arange(3.0, 21.01, 1.0))
    mag_column: str = "phot_g_mean_mag"

    def __post_init__(self):
        import healpy as hp

        if not hp.isnsideok(int(self.nside), nest=True):
            raise ValueError(f"HealpixScheme.nside={self.nside} must be a power of 2")
        if self.frame not in ("galactic", "icrs"):
            raise ValueError(f"HealpixScheme.frame={self.frame!r}; allowed 'galactic', 'icrs'")
        e = np.asarray(self.mag_edges, float)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0) or not np.all(np.isfinite(e)):
            raise ValueError(f"HealpixScheme.mag_edges must be >= 2 finite increasing values, got {self.mag_edges!r}")
        object.__setattr__(self, "nside", int(self.nside))
        object.__setattr__(self, "mag_edges", tuple(float(x) for x in e))

    @property
    def npix(self) -> int:
        return 12 * self.nside ** 2

    @property
    def nmag(self) -> int:
        return len(self.mag_edges) - 1

    @property
    def ordering(self) -> str:
        return "NESTED" if self.nest else "RING"

    @property
    def lonlat_columns(self) -> Tuple[str, str]:
        return ("l", "b") if self.frame == "galactic" else ("ra", "dec")

    def pixel(self, lon, lat) -> np.ndarray:
        """HEALPix pixel of each direction (lon, lat in deg; -1 for NaN)."""
        import healpy as hp

        lon, lat = _f64(np.asarray(lon)), _f64(np.asarray(lat))
        ok = np.isfinite(lon) & np.isfinite(lat)
        pix = np.full(lon.shape, -1, np.int64)
        pix[ok] = hp.ang2pix(self.nside, lon[ok], lat[ok], nest=self.nest, lonlat=True)
        return pix

    def assign(self, lon, lat, mag) -> np.ndarray:
        """Flat index ``pixel * nmag + k`` (-1 if not counted)."""
        pix = self.pixel(lon, lat)
        out = np.empty(pix.size, np.int64)
        _mag_kernel(pix.ravel(), _f64(np.asarray(mag)).ravel(), np.asarray(self.mag_edges), out)
        return out.reshape(pix.shape)


@dataclasses.dataclass(eq=False)
class HealpixCounts:
    """Counts per HEALPix pixel and magnitude bin.

    Attributes
    ----------
    scheme : HealpixScheme
    counts : ndarray, shape (npix, nmag)
        (Weighted) counts, pixels in the scheme's ordering.
    sumw2 : ndarray, shape (npix, nmag)
    meta : dict
    """

    scheme: HealpixScheme
    counts: np.ndarray
    sumw2: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)

    def map(self, mag_min: Optional[float] = None, mag_max: Optional[float] = None) -> np.ndarray:
        """Counts per pixel summed over the magnitude bins inside ``[mag_min, mag_max]`` (all by default)."""
        e = np.asarray(self.scheme.mag_edges)
        keep = np.ones(self.scheme.nmag, bool)
        if mag_min is not None:
            keep &= e[:-1] >= mag_min - 1e-9
        if mag_max is not None:
            keep &= e[1:] <= mag_max + 1e-9
        return self.counts[:, keep].sum(axis=1)


def _healpix_sums(df, scheme: HealpixScheme, weight, selection, lon, lat) -> dict:
    """Weighted counts and sums of squared weights per (pixel x magnitude) bin of one DataFrame, additive over rows."""
    _validate(df, {"lon": lon, "lat": lat, "mag_column": scheme.mag_column, "weight": weight,
                   "selection": selection})

    def fn(a, b, m):
        return scheme.assign(_f64(a), _f64(b), _f64(m))

    f = df.add_function("_mocksky_healpix", fn, unique=True)
    try:
        idx = f(df[lon], df[lat], df[scheme.mag_column])
        n = scheme.npix * scheme.nmag
        kw = dict(binby=idx, limits=[-0.5, n - 0.5], shape=n, selection=_selection_arg(selection), delay=True)
        if weight is None:
            t = df.count(**kw)
            df.execute()
            counts = np.asarray(t.get(), dtype=float)
            return {"w": counts, "w2": counts.copy()}
        w = df[weight]
        t1, t2 = df.sum(w, **kw), df.sum(w * w, **kw)
        df.execute()
        return {"w": np.asarray(t1.get(), float), "w2": np.asarray(t2.get(), float)}
    finally:
        df.functions.pop(f.name, None)


def bin_healpix(source, scheme: HealpixScheme, weight: Optional[str] = None, selection: Optional[str] = None,
                lon: Optional[str] = None, lat: Optional[str] = None) -> HealpixCounts:
    """Count stars of a catalogue in HEALPix pixels x magnitude bins, with vaex.

    Parameters
    ----------
    source : str, os.PathLike or vaex DataFrame
    scheme : HealpixScheme
    weight : str, optional
        Column or expression weighting each star (e.g. ``"selection_probability"``).
    selection : str, optional
        vaex boolean expression restricting the stars.
    lon, lat : str, optional
        Columns of the sky coordinates [deg] (default ``l, b`` or ``ra, dec`` by ``scheme.frame``).

    Returns
    -------
    HealpixCounts
    """
    lon = lon or scheme.lonlat_columns[0]
    lat = lat or scheme.lonlat_columns[1]
    res = None
    for df in _frames(source):
        res = _add(res, _healpix_sums(df, scheme, weight, selection, lon, lat))
    counts, sumw2 = res["w"], res["w2"]
    meta = {"lon": lon, "lat": lat, "mag_column": scheme.mag_column, "weight": weight, "selection": selection,
            "ordering": scheme.ordering, "frame": scheme.frame, "nside": scheme.nside}
    shape = (scheme.npix, scheme.nmag)
    return HealpixCounts(scheme, counts.reshape(shape), sumw2.reshape(shape), meta)
