"""Observed velocity histograms: the BV24 APOGEE DR17 x Gaia DR3 giant sample and its binning.

The file ``observed/bv24_apogee_gaia/velocity_histograms_apogee_gaia.csv`` (located with :func:`mocksky.data.find`)
holds, for the 72 (R, |z|) cells of Binney & Vasiliev 2024 (MNRAS 527, 1915) and each of vR, vz, vphi, 50 bins with
their edges ``v_lo, v_hi`` and ``v_lo_eff`` (bin 0 also holds ``(v_lo_eff, v_lo]``), the observed star counts
``count_obs`` (~2.1e5 stars) and the published M0 model's counts ``count_model_M0`` (a finite model sample
normalised to about the cell's observed total), plus ``R_mean, absz_mean`` of the observed stars per cell.

:func:`bv24_scheme` builds the binning from the file's own edges, so histograms of a mock catalogue made with it
(:func:`mocksky.compare.binning.bin_velocities`) are bin-for-bin comparable with the data.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

import numpy as np

from .. import data
from .binning import COMPONENTS, CellGrid, VelocityBins, VelocityHistograms, VelocityScheme, bin_velocities
from .likelihood import DEFAULT_P_FLOOR, Comparison, compare_histograms

__all__ = ["BV24_HISTOGRAMS", "BV24Observed", "load_bv24", "bv24_scheme", "scheme_from_frame",
           "histograms_from_frame", "compare_catalogue_bv24"]

#: Data-relative path of the BV24 observed histograms.
BV24_HISTOGRAMS = "observed/bv24_apogee_gaia/velocity_histograms_apogee_gaia.csv"
_REQUIRED = ("cell_index", "iR", "iz", "R_min", "R_max", "absz_min", "absz_max", "component", "bin_index", "v_lo",
             "v_hi", "v_lo_eff")
_REFERENCE = ("Binney & Vasiliev 2024, MNRAS 527, 1915; APOGEE DR17 (Abdurro'uf et al. 2022) x Gaia DR3; "
              "histograms from GalacticDynamics-Oxford/AgamaChemo M0/histograms")


def _read_frame(path: Optional[Union[str, os.PathLike]]):
    import pandas as pd

    p = Path(path) if path is not None else data.find(
        BV24_HISTOGRAMS, hint="It ships in shared/data/observed/bv24_apogee_gaia (see its SOURCE.txt).")
    frame = pd.read_csv(p)
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing}; required {list(_REQUIRED)}")
    return frame, p


def scheme_from_frame(frame, name: str = "bv24", reference: str = _REFERENCE) -> VelocityScheme:
    """The binning described by a long-format table with the columns of the BV24 file.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per (cell, component, bin) with ``cell_index, iR, iz, R_min, R_max, absz_min, absz_max,
        component, bin_index, v_lo, v_hi, v_lo_eff``.
    name, reference : str

    Returns
    -------
    VelocityScheme
        Cells from the distinct R and |z| edges (``cell_index`` must equal ``nR * iz + iR``); per cell and
        component the edges ``v_lo`` of bins 0..n-1 and ``v_hi`` of bin n-1, and ``lo_eff = v_lo_eff`` of bin 0.

    Raises
    ------
    ValueError
        If cells or bins are incomplete, edges are not contiguous (``v_hi[k] != v_lo[k+1]``), cell edges are
        inconsistent with ``iR, iz``, or ``v_lo_eff`` differs from ``v_lo`` for a bin other than 0.
    """
    R_edges = np.unique(np.concatenate([frame["R_min"].to_numpy(float), frame["R_max"].to_numpy(float)]))
    z_edges = np.unique(np.concatenate([frame["absz_min"].to_numpy(float), frame["absz_max"].to_numpy(float)]))
    cells = CellGrid(tuple(R_edges), tuple(z_edges), name=name)
    ct = cells.table().set_index("cell_index")
    got = frame.groupby("cell_index")[["iR", "iz", "R_min", "R_max", "absz_min", "absz_max"]].first()
    if len(got) != cells.ncell or not np.array_equal(got.index.to_numpy(), np.arange(cells.ncell)):
        raise ValueError(f"table has cells {sorted(got.index)[:5]}..., expected 0..{cells.ncell - 1}")
    for col in got.columns:
        if not np.allclose(got[col].to_numpy(float), ct[col].to_numpy(float), rtol=0, atol=1e-9):
            raise ValueError(f"column {col!r} is inconsistent with cell_index = {cells.nR} * iz + iR")
    comps = [c for c in COMPONENTS if c in set(frame["component"])]
    extra = sorted(set(frame["component"]) - set(COMPONENTS))
    if extra or not comps:
        raise ValueError(f"components {extra or 'none'} not allowed; allowed {list(COMPONENTS)}")
    bins = {}
    for comp in comps:
        f = frame[frame["component"] == comp].sort_values(["cell_index", "bin_index"])
        nb = int(f["bin_index"].max()) + 1
        if len(f) != cells.ncell * nb or not np.array_equal(f["bin_index"].to_numpy(), np.tile(np.arange(nb),
                                                                                              cells.ncell)):
            raise ValueError(f"component {comp!r}: expected bins 0..{nb - 1} in each of {cells.ncell} cells")
        lo = f["v_lo"].to_numpy(float).reshape(cells.ncell, nb)
        hi = f["v_hi"].to_numpy(float).reshape(cells.ncell, nb)
        lo_eff = f["v_lo_eff"].to_numpy(float).reshape(cells.ncell, nb)
        if not np.array_equal(hi[:, :-1], lo[:, 1:]):
            raise ValueError(f"component {comp!r}: bin edges are not contiguous (v_hi[k] != v_lo[k+1])")
        if not np.array_equal(lo_eff[:, 1:], lo[:, 1:]):
            raise ValueError(f"component {comp!r}: v_lo_eff differs from v_lo for a bin other than 0")
        edges = np.concatenate([lo, hi[:, -1:]], axis=1)
        bins[comp] = VelocityBins(edges, lo_eff[:, 0])
    return VelocityScheme(name, cells, bins, reference=reference)


def histograms_from_frame(frame, scheme: VelocityScheme, count_column: str, label: str = "",
                          poisson: bool = True) -> VelocityHistograms:
    """Histograms from a count column of a long-format table laid out like the BV24 file.

    Parameters
    ----------
    frame : pandas.DataFrame
    scheme : VelocityScheme
        The scheme of the table (e.g. from :func:`scheme_from_frame`).
    count_column : str
    label : str
    poisson : bool
        Store ``sumw2 = counts`` (integer data counts); False leaves ``sumw2`` None (unknown variance).

    Returns
    -------
    VelocityHistograms
        With ``R_mean, absz_mean`` from the table when present.
    """
    if count_column not in frame.columns:
        raise KeyError(f"no column {count_column!r}; columns: {list(frame.columns)}")
    counts = {}
    nc = scheme.cells.ncell
    for comp in scheme.components:
        f = frame[frame["component"] == comp].sort_values(["cell_index", "bin_index"])
        counts[comp] = f[count_column].to_numpy(float).reshape(nc, scheme.bins[comp].nbins)
    per_cell = frame.groupby("cell_index").first()
    R_mean = per_cell["R_mean"].to_numpy(float) if "R_mean" in per_cell else None
    z_mean = per_cell["absz_mean"].to_numpy(float) if "absz_mean" in per_cell else None
    sumw2 = {c: h.copy() for c, h in counts.items()} if poisson else None
    return VelocityHistograms(scheme, counts, sumw2, None, R_mean, z_mean, label=label,
                              meta={"count_column": count_column})


@dataclasses.dataclass(eq=False)
class BV24Observed:
    """The BV24 observed histograms with their binning and the published M0 model's counts.

    Attributes
    ----------
    scheme : VelocityScheme
        72 cells x (vR, vz, vphi) x 50 bins, edges from the file.
    observed : VelocityHistograms
        ``count_obs`` (Poisson counts; ``R_mean, absz_mean`` of the observed stars).
    m0 : VelocityHistograms
        ``count_model_M0`` (the published model; variance unknown).
    path : pathlib.Path
    """

    scheme: VelocityScheme
    observed: VelocityHistograms
    m0: VelocityHistograms
    path: Path


def load_bv24(path: Optional[Union[str, os.PathLike]] = None) -> BV24Observed:
    """Load the BV24 observed histograms (default: the data file :data:`BV24_HISTOGRAMS`).

    Raises
    ------
    mocksky.data.DataNotFoundError
        If the file is not found.
    ValueError
        If its layout is not the expected one.
    """
    frame, p = _read_frame(path)
    scheme = scheme_from_frame(frame)
    obs = histograms_from_frame(frame, scheme, "count_obs", label="APOGEE DR17 x Gaia DR3 (BV24)", poisson=True)
    m0 = histograms_from_frame(frame, scheme, "count_model_M0", label="BV24 M0 (published)", poisson=False)
    return BV24Observed(scheme, obs, m0, Path(p))


def bv24_scheme(path: Optional[Union[str, os.PathLike]] = None) -> VelocityScheme:
    """The BV24 binning read from the observed histograms file (see :func:`scheme_from_frame`)."""
    frame, _ = _read_frame(path)
    return scheme_from_frame(frame)


def compare_catalogue_bv24(source, columns: Optional[Mapping[str, str]] = None, weight: Optional[str] = None,
                           selection: Optional[str] = None, p_floor: float = DEFAULT_P_FLOOR,
                           observed: Optional[BV24Observed] = None, label: str = "model"
                           ) -> Tuple[Comparison, VelocityHistograms, Comparison]:
    """Bin a catalogue with the BV24 scheme and compare it, and the published M0 model, with the observed histograms.

    Parameters
    ----------
    source : str, os.PathLike or vaex DataFrame
        The catalogue (file, glob, manifest, dataset directory or open DataFrame).
    columns, weight, selection
        As in :func:`mocksky.compare.binning.bin_velocities` (e.g. ``weight="selection_probability"``).
    p_floor : float
        Floor of the model bin fractions (:mod:`mocksky.compare.likelihood`).
    observed : BV24Observed, optional
        Pre-loaded data (default :func:`load_bv24`).
    label : str

    Returns
    -------
    (Comparison, VelocityHistograms, Comparison)
        The catalogue's comparison, its histograms, and M0's comparison with the same statistic (the anchor:
        ``comparison.total_lnL - m0_comparison.total_lnL > 0`` means the catalogue fits better than M0).
    """
    obs = observed if observed is not None else load_bv24()
    model = bin_velocities(source, obs.scheme, columns=columns, weight=weight, selection=selection, label=label)
    return (compare_histograms(obs.observed, model, p_floor=p_floor), model,
            compare_histograms(obs.observed, obs.m0, p_floor=p_floor))
