"""Model-data comparison of velocity histograms with a free normalisation in every cell.

The statistic (the "quasi-likelihood" of Binney & Vasiliev 2023, sect. 4.3, and Vasiliev's 2023 MW-Gaia talk:
histograms compared "ignoring (freely adjusting) the overall normalisation in each bin"), for one cell and one
velocity component with observed counts ``n_i`` and model (weighted) counts ``w_i`` in bins ``i = 1..B``:

* ``N = sum n_i``, ``W = sum w_i``; model bin fractions ``q_i = w_i / W`` (``1/B`` if ``W = 0``);
* floor for empty model bins: ``p_i = max(q_i, p_floor) / sum_j max(q_j, p_floor)`` (default ``p_floor = 1e-5``);
* expected counts normalised to the cell's observed total: ``m_i = N p_i`` (this is the maximum-likelihood
  normalisation of a Poisson model, so no normalisation parameter remains);
* Poisson log-likelihood ``ln L = sum_i [n_i ln m_i - m_i - ln n_i!]`` (``ln n! = lgamma(n + 1)``, so non-integer
  counts are allowed);
* saturated ``ln L_sat = sum_i [n_i ln n_i - n_i - ln n_i!]`` (``0 ln 0 = 0``) and deviance
  ``D = 2 (ln L_sat - ln L) = 2 sum_i n_i ln(n_i / m_i)``, asymptotically chi-squared with ``ndof = B_used - 1``
  degrees of freedom, ``B_used`` = bins where ``n_i > 0`` or ``w_i > 0``;
* Pearson ``chi2 = sum_used (n_i - m_i)^2 / (m_i + s_i^2)`` with the model's own sampling variance when the model
  histogram carries ``sumw2`` (a finite mock sample): ``s_i^2 = (N / W)^2 sumw2_i`` in bins with model stars and,
  in empty model bins, the variance of one effective model star, ``s_i^2 = (N / n_eff)^2`` with
  ``n_eff = W^2 / sum_j sumw2_j`` (Kish's effective sample size); ``s_i = 0`` without ``sumw2`` (e.g. the published
  M0 counts), when ``chi2`` is dominated by observed stars in bins the model leaves (nearly) empty and depends on
  ``p_floor`` - the deviance is the robust goodness-of-fit number.

Totals add ``ln L`` over cells and components. The three components are marginals of the same stars, so the sum
is a quasi-likelihood, not a joint likelihood; differences between models, not absolute values, are meaningful.
Means and dispersions per cell are computed the same way from both histograms (bin centres, bin 0 including its
extension).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict

import numpy as np
from scipy.special import gammaln, xlogy

from .binning import VelocityHistograms, VelocityScheme

__all__ = ["DEFAULT_P_FLOOR", "poisson_quasi_lnlike", "compare_histograms", "Comparison", "schemes_match"]

#: Default floor of a model bin fraction (see the module docstring).
DEFAULT_P_FLOOR = 1e-5


def poisson_quasi_lnlike(n_obs, w_model, p_floor: float = DEFAULT_P_FLOOR, sumw2=None) -> Dict[str, np.ndarray]:
    """The per-histogram statistic of the module docstring, vectorised over leading axes.

    Parameters
    ----------
    n_obs : array_like, shape (..., B)
        Observed counts (>= 0).
    w_model : array_like, shape (..., B)
        Model (weighted) counts (>= 0), any normalisation.
    p_floor : float
        Floor of the model bin fraction, in [0, 1/B); 0 disables it (then an observed star in an empty model bin
        gives ``ln L = -inf``).
    sumw2 : array_like, shape (..., B), optional
        Sum of squared model weights per bin (model sampling variance for ``chi2``, see the module docstring).

    Returns
    -------
    dict of str to ndarray, shape (...)
        ``n_obs`` (N), ``w_model`` (W), ``lnL``, ``lnL_sat``, ``deviance``, ``chi2``, ``nbins`` (B_used),
        ``ndof``, ``model_empty`` (W = 0 while N > 0). Histograms with N = 0 give zeros.

    Raises
    ------
    ValueError
        For negative counts, shape mismatch or ``p_floor`` outside [0, 1/B).
    """
    n = np.asarray(n_obs, dtype=float)
    w = np.asarray(w_model, dtype=float)
    if n.shape != w.shape or n.ndim < 1:
        raise ValueError(f"n_obs shape {n.shape} and w_model shape {w.shape} must be equal and at least 1D")
    if np.any(n < 0) or np.any(w < 0) or not (np.all(np.isfinite(n)) and np.all(np.isfinite(w))):
        raise ValueError("counts must be finite and >= 0")
    B = n.shape[-1]
    if not (0.0 <= p_floor < 1.0 / B):
        raise ValueError(f"p_floor={p_floor} must be in [0, 1/B) = [0, {1.0 / B:g})")
    N = n.sum(axis=-1)
    W = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(W[..., None] > 0, w / np.where(W > 0, W, 1.0)[..., None], 1.0 / B)
        p = np.maximum(q, p_floor)
        p = p / p.sum(axis=-1, keepdims=True)
        m = N[..., None] * p
        lnfact = gammaln(n + 1.0)
        lnL = (xlogy(n, m) - m - lnfact).sum(axis=-1)
        lnL_sat = (xlogy(n, n) - n - lnfact).sum(axis=-1)
        used = (n > 0) | (w > 0)
        var = m.copy()
        if sumw2 is not None:
            s2 = np.asarray(sumw2, dtype=float)
            if s2.shape != n.shape:
                raise ValueError(f"sumw2 shape {s2.shape} differs from the counts' {n.shape}")
            scale = np.where(W > 0, N / np.where(W > 0, W, 1.0), 0.0)
            # an empty model bin is uncertain by about one (effective) model star, N / n_eff = N sum(w^2) / W^2
            one_star = scale * s2.sum(axis=-1) / np.where(W > 0, W, 1.0)
            var = var + np.where(w > 0, scale[..., None] ** 2 * s2, one_star[..., None] ** 2)
        chi2 = np.where(used & (var > 0), (n - m) ** 2 / np.where(var > 0, var, 1.0), 0.0).sum(axis=-1)
    nb = used.sum(axis=-1)
    empty = N <= 0
    zero = np.zeros_like(N)
    return {"n_obs": N, "w_model": W, "lnL": np.where(empty, zero, lnL), "lnL_sat": np.where(empty, zero, lnL_sat),
            "deviance": np.where(empty, zero, 2.0 * (lnL_sat - lnL)), "chi2": np.where(empty, zero, chi2),
            "nbins": np.where(empty, 0, nb), "ndof": np.where(empty, 0, np.maximum(nb - 1, 0)),
            "model_empty": (W <= 0) & ~empty}


def schemes_match(a: VelocityScheme, b: VelocityScheme) -> bool:
    """True if two schemes have the same cells, components and (effective) bin edges."""
    if a is b:
        return True
    if a.cells.R_edges != b.cells.R_edges or a.cells.absz_edges != b.cells.absz_edges:
        return False
    if a.components != b.components:
        return False
    return all(np.array_equal(a.bins[c].edges, b.bins[c].edges) and np.array_equal(a.bins[c].lo_eff, b.bins[c].lo_eff)
               for c in a.components)


@dataclasses.dataclass(eq=False)
class Comparison:
    """Result of :func:`compare_histograms`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (cell, component): cell geometry, ``R_mean_obs, absz_mean_obs, R_mean_model,
        absz_mean_model``, ``n_obs, w_model, nstars_model``, ``nbins, ndof, lnL, lnL_sat, deviance, chi2,
        model_empty``, ``mean_obs, mean_model, sigma_obs, sigma_model`` [km/s].
    p_floor : float
    labels : tuple of str
        (observed label, model label).
    """

    table: "object"
    p_floor: float
    labels: tuple

    @property
    def total_lnL(self) -> float:
        """Sum of ``lnL`` over cells and components."""
        return float(self.table["lnL"].sum())

    @property
    def total_deviance(self) -> float:
        return float(self.table["deviance"].sum())

    def by_component(self):
        """Totals per component (``lnL, lnL_sat, deviance, chi2, ndof, n_obs``)."""
        return self.table.groupby("component", sort=False)[["lnL", "lnL_sat", "deviance", "chi2", "ndof",
                                                            "n_obs"]].sum()

    def by_cell(self):
        """Totals per cell over the components (``lnL, deviance, chi2, ndof``; ``n_obs`` of the cell), with the
        cell geometry and ``deviance_per_dof``."""
        t = self.table
        geo = t.groupby("cell_index")[["iR", "iz", "R_min", "R_max", "absz_min", "absz_max", "n_obs"]].first()
        s = t.groupby("cell_index")[["lnL", "lnL_sat", "deviance", "chi2", "ndof"]].sum()
        out = geo.join(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["deviance_per_dof"] = out["deviance"] / out["ndof"]
        return out.reset_index()

    def worst(self, n: int = 5, by: str = "deviance"):
        """The ``n`` cells with the largest ``by`` (a column of :meth:`by_cell`, default the deviance)."""
        c = self.by_cell()
        if by not in c.columns:
            raise KeyError(f"by={by!r} is not a column of by_cell(): {list(c.columns)}")
        return c.sort_values(by, ascending=False).head(n)

    def to_csv(self, path) -> Path:
        """Write the per-(cell, component) table as CSV; returns the path."""
        path = Path(path)
        self.table.to_csv(path, index=False)
        return path

    def summary(self) -> dict:
        """Totals as plain numbers: ``lnL, deviance, chi2, ndof, n_obs, p_floor`` and per-component ``lnL``."""
        t = self.table
        bc = self.by_component()
        return {"lnL": self.total_lnL, "deviance": self.total_deviance, "chi2": float(t["chi2"].sum()),
                "ndof": int(t["ndof"].sum()), "n_obs_per_component": {c: float(bc.loc[c, "n_obs"]) for c in bc.index},
                "lnL_per_component": {c: float(bc.loc[c, "lnL"]) for c in bc.index}, "p_floor": self.p_floor,
                "observed": self.labels[0], "model": self.labels[1]}


def compare_histograms(observed: VelocityHistograms, model: VelocityHistograms,
                       p_floor: float = DEFAULT_P_FLOOR) -> Comparison:
    """Compare model and observed velocity histograms cell by cell with a free normalisation per cell.

    Parameters
    ----------
    observed : VelocityHistograms
        Data counts ``n_i``.
    model : VelocityHistograms
        Model counts ``w_i`` in the same scheme (any normalisation; ``sumw2`` used for ``chi2`` if present).
    p_floor : float
        Floor of the model bin fraction (module docstring).

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        If the two use different binning schemes or components.

    References
    ----------
    Binney & Vasiliev 2023, MNRAS 519, 2493 (sect. 4.3); Binney & Vasiliev 2024, MNRAS 527, 1915.
    """
    import pandas as pd

    if not schemes_match(observed.scheme, model.scheme):
        raise ValueError(f"observed scheme {observed.scheme.name!r} and model scheme {model.scheme.name!r} differ "
                         "(cells or bin edges); bin the model with the observed scheme")
    comps = [c for c in observed.components if c in model.components]
    if not comps:
        raise ValueError("no velocity component in common")
    cells = observed.scheme.cells.table()
    nc = len(cells)
    nan = np.full(nc, np.nan)
    frames = []
    for c in comps:
        s2 = model.sumw2[c] if model.sumw2 is not None else None
        st = poisson_quasi_lnlike(observed.counts[c], model.counts[c], p_floor=p_floor, sumw2=s2)
        mo, so = observed.moments(c)
        mm, sm = model.moments(c)
        f = cells.copy()
        f["R_mean_obs"] = observed.R_mean if observed.R_mean is not None else nan
        f["absz_mean_obs"] = observed.absz_mean if observed.absz_mean is not None else nan
        f["R_mean_model"] = model.R_mean if model.R_mean is not None else nan
        f["absz_mean_model"] = model.absz_mean if model.absz_mean is not None else nan
        f["component"] = c
        f["n_obs"] = st["n_obs"]
        f["w_model"] = st["w_model"]
        f["nstars_model"] = model.nstars[c].sum(axis=1) if model.nstars is not None else -1
        for k in ("nbins", "ndof", "lnL", "lnL_sat", "deviance", "chi2", "model_empty"):
            f[k] = st[k]
        f["mean_obs"], f["mean_model"], f["sigma_obs"], f["sigma_model"] = mo, mm, so, sm
        frames.append(f)
    table = pd.concat(frames, ignore_index=True)
    return Comparison(table, float(p_floor), (observed.label, model.label))
