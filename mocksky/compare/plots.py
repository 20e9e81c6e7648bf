"""Figures of the model-data comparison: velocity histograms per cell and HEALPix star-count maps (PNG).

Histogram figures are drawn on plain :class:`matplotlib.figure.Figure` objects with the Agg canvas, so they need no
display and do not touch pyplot's global state. HEALPix maps use ``healpy.mollview`` (which draws through pyplot;
the figure is closed after saving).

Histogram panels follow Binney & Vasiliev 2023, Figs 10-12: data as a black step histogram of counts per bin, the
model as a red curve normalised to the data's total in the cell (free normalisation), mean and standard deviation
of each at top left, the cell's mean (R, |z|) of the data at top right. Bin 0 is drawn over its nominal interval
(its extension below the range is counted in it but not drawn).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .binning import COMPONENTS, HealpixCounts, VelocityHistograms
from .likelihood import Comparison, schemes_match

__all__ = ["plot_cell_column", "plot_component_grid", "plot_healpix_map"]

log = logging.getLogger(__name__)

_LABEL = {"vR": r"$V_R$ [km/s]", "vz": r"$V_z$ [km/s]", "vphi": r"$V_\phi$ [km/s]"}


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _panel(ax, observed: VelocityHistograms, model: Optional[VelocityHistograms], comp: str, cell: int,
           comparison: Optional[Comparison], fontsize: float, show_cell: bool,
           reference: Optional[VelocityHistograms] = None):
    b = observed.scheme.bins[comp]
    e = b.edges[cell]
    n = observed.counts[comp][cell]
    N = n.sum()
    ax.stairs(n, e, color="k", lw=1.0)
    x = 0.5 * (e[1:] + e[:-1])
    top = n.max() if N > 0 else 0.0
    mo, so = observed.moments(comp)
    text = [f"{mo[cell]:.1f}, {so[cell]:.1f}"] if N > 0 else ["no data"]
    if model is not None:
        w = model.counts[comp][cell]
        W = w.sum()
        if W > 0 and N > 0:
            ax.plot(x, w * (N / W), color="r", lw=1.0)
            top = max(top, (w * (N / W)).max())
        mm, sm = model.moments(comp)
        text.append(f"{mm[cell]:.1f}, {sm[cell]:.1f}" if W > 0 else "no model")
    if reference is not None:
        w = reference.counts[comp][cell]
        W = w.sum()
        if W > 0 and N > 0:
            ax.plot(x, w * (N / W), color="tab:blue", lw=0.8, ls="--")
            top = max(top, (w * (N / W)).max())
    ax.text(0.03, 0.96, text[0], transform=ax.transAxes, va="top", ha="left", fontsize=fontsize, color="k")
    if len(text) > 1:
        ax.text(0.03, 0.84, text[1], transform=ax.transAxes, va="top", ha="left", fontsize=fontsize, color="r")
    if show_cell:
        Rm = observed.R_mean[cell] if observed.R_mean is not None else np.nan
        zm = observed.absz_mean[cell] if observed.absz_mean is not None else np.nan
        ax.text(0.97, 0.96, f"({Rm:.2f}, {zm:.2f})", transform=ax.transAxes, va="top", ha="right",
                fontsize=fontsize)
    if comparison is not None:
        t = comparison.table
        row = t[(t["cell_index"] == cell) & (t["component"] == comp)]
        if len(row) and row["ndof"].iloc[0] > 0:
            ax.text(0.97, 0.84, f"D/dof={row['deviance'].iloc[0] / row['ndof'].iloc[0]:.2f}",
                    transform=ax.transAxes, va="top", ha="right", fontsize=fontsize, color="b")
    ax.set_xlim(e[0], e[-1])
    ax.set_ylim(0, 1.4 * top if top > 0 else 1.0)  # head room for the annotations
    ax.tick_params(labelsize=fontsize)


def _check(observed: VelocityHistograms, model: Optional[VelocityHistograms]):
    if model is not None and not schemes_match(observed.scheme, model.scheme):
        raise ValueError("observed and model histograms use different binning schemes")


def plot_cell_column(observed: VelocityHistograms, model: Optional[VelocityHistograms], iR: int,
                     path: Union[str, Path], comparison: Optional[Comparison] = None,
                     components: Sequence[str] = COMPONENTS, iz: Optional[Sequence[int]] = None,
                     title: Optional[str] = None, dpi: int = 110) -> Path:
    """One radial column of cells, BV23 Figs 10-12 layout: rows = |z| cells (highest at the top), columns =
    velocity components.

    Parameters
    ----------
    observed : VelocityHistograms
        Data (black).
    model : VelocityHistograms or None
        Model in the same scheme (red, normalised to the data's total per cell).
    iR : int
        Radial index of the cells shown.
    path : str or Path
        Output PNG.
    comparison : Comparison, optional
        Adds ``D/dof`` (deviance per degree of freedom) per panel.
    components : sequence of str
    iz : sequence of int, optional
        |z| rows to show (default all; BV23 shows alternate ones).
    title : str, optional
    dpi : int

    Returns
    -------
    pathlib.Path
    """
    _check(observed, model)
    cells = observed.scheme.cells
    if not 0 <= iR < cells.nR:
        raise ValueError(f"iR={iR} must be in [0, {cells.nR})")
    rows = list(range(cells.nz)) if iz is None else [int(i) for i in iz]
    if any(not 0 <= i < cells.nz for i in rows):
        raise ValueError(f"iz={rows} must be in [0, {cells.nz})")
    comps = [c for c in components if c in observed.components]
    rows = rows[::-1]
    fig = _new_figure((3.4 * len(comps), 1.9 * len(rows) + 0.8))
    axes = fig.subplots(len(rows), len(comps), squeeze=False)
    for r, izr in enumerate(rows):
        cell = cells.nR * izr + iR
        for k, c in enumerate(comps):
            ax = axes[r, k]
            _panel(ax, observed, model, c, cell, comparison, 7, show_cell=True)
            if k == 0:
                ax.set_ylabel(f"|z| {cells.absz_edges[izr]:g}-{cells.absz_edges[izr + 1]:g}", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel(_LABEL.get(c, c), fontsize=9)
    R0, R1 = cells.R_edges[iR], cells.R_edges[iR + 1]
    lab = f"{observed.label} (black)" + (f" vs {model.label} (red)" if model is not None else "")
    fig.suptitle(title or f"R in ({R0:g}, {R1:g}] kpc: {lab}\n"
                 "top left: mean, dispersion [km/s]; top right: data's mean (R, |z|) [kpc]", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def plot_component_grid(observed: VelocityHistograms, model: Optional[VelocityHistograms], component: str,
                        path: Union[str, Path], comparison: Optional[Comparison] = None,
                        title: Optional[str] = None, dpi: int = 90,
                        reference: Optional[VelocityHistograms] = None) -> Path:
    """All cells for one velocity component: rows = |z| cells (highest at the top), columns = R cells.

    Parameters
    ----------
    observed, model, comparison
        As in :func:`plot_cell_column`.
    reference : VelocityHistograms, optional
        A second model drawn dashed blue (e.g. the published BV24 M0 counts), normalised like ``model``.
    component : str
        One of the scheme's components.
    path : str or Path
    title : str, optional
    dpi : int

    Returns
    -------
    pathlib.Path
    """
    _check(observed, model)
    _check(observed, reference)
    if component not in observed.components:
        raise KeyError(f"component {component!r} not in {observed.components}")
    cells = observed.scheme.cells
    fig = _new_figure((2.2 * cells.nR + 0.6, 1.7 * cells.nz + 0.8))
    axes = fig.subplots(cells.nz, cells.nR, squeeze=False)
    for r in range(cells.nz):
        izr = cells.nz - 1 - r
        for iR in range(cells.nR):
            ax = axes[r, iR]
            _panel(ax, observed, model, component, cells.nR * izr + iR, comparison, 5.5, show_cell=False,
                   reference=reference)
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"R {cells.R_edges[iR]:g}-{cells.R_edges[iR + 1]:g}", fontsize=7)
            if iR == 0:
                ax.set_ylabel(f"|z| {cells.absz_edges[izr]:g}-{cells.absz_edges[izr + 1]:g}", fontsize=7)
    lab = f"{observed.label} (black)" + (f" vs {model.label} (red)" if model is not None else "") + \
        (f", {reference.label} (blue dashed)" if reference is not None else "")
    fig.suptitle(title or f"{_LABEL.get(component, component)}: {lab}", fontsize=10)
    fig.subplots_adjust(left=0.03, right=0.995, bottom=0.03, top=0.93, wspace=0.12, hspace=0.25)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def plot_healpix_map(counts: Union[HealpixCounts, np.ndarray], path: Union[str, Path], nest: Optional[bool] = None,
                     mag_min: Optional[float] = None, mag_max: Optional[float] = None, title: Optional[str] = None,
                     log: bool = True, dpi: int = 100) -> Path:
    """Mollweide map of star counts per HEALPix pixel (``healpy.mollview``), saved as PNG.

    Parameters
    ----------
    counts : HealpixCounts or ndarray, shape (npix,)
        Counts; for :class:`HealpixCounts` the magnitude bins inside ``[mag_min, mag_max]`` are summed and the
        ordering is the scheme's.
    path : str or Path
    nest : bool, optional
        Pixel ordering of a plain array (required then); must agree with a :class:`HealpixCounts` if given.
    mag_min, mag_max : float, optional
    title : str, optional
    log : bool
        Colour by log10(counts); empty pixels are grey.
    dpi : int

    Returns
    -------
    pathlib.Path
    """
    import healpy as hp
    import matplotlib.pyplot as plt

    if isinstance(counts, HealpixCounts):
        sch = counts.scheme
        if nest is not None and bool(nest) != sch.nest:
            raise ValueError(f"nest={nest} disagrees with the scheme's {sch.ordering} ordering")
        nest = sch.nest
        m = counts.map(mag_min, mag_max).astype(float)
        lo = sch.mag_edges[0] if mag_min is None else mag_min
        hi = sch.mag_edges[-1] if mag_max is None else mag_max
        default_title = f"{sch.mag_column} in [{lo:g}, {hi:g}), nside={sch.nside} {sch.ordering}, {sch.frame}"
    else:
        if nest is None:
            raise ValueError("nest= (pixel ordering) is required for a plain array")
        m = np.asarray(counts, dtype=float)
        if not hp.isnpixok(m.size):
            raise ValueError(f"{m.size} is not a valid number of HEALPix pixels")
        default_title = f"nside={hp.npix2nside(m.size)} {'NESTED' if nest else 'RING'}"
    if log:
        with np.errstate(divide="ignore"):
            m = np.where(m > 0, np.log10(np.where(m > 0, m, 1.0)), hp.UNSEEN)
    with warnings.catch_warnings():
        # healpy 1.20 calls Colormap.set_over/set_under, which matplotlib >= 3.10 marks as pending deprecation
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="healpy")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="healpy")
        hp.mollview(m, nest=bool(nest), title=title or default_title, unit="log10 N" if log else "N",
                    cmap="viridis", badcolor="lightgrey")
        fig = plt.gcf()
        try:
            hp.graticule(dpar=30, dmer=60, alpha=0.4)
            path = Path(path)
            fig.savefig(path, dpi=dpi)
        finally:
            plt.close(fig)
    return path
