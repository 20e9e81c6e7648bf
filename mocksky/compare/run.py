"""The comparison stage of ``mocksky run``: bin the written catalogue (vaex), compare with observed data, plot."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

__all__ = ["compare_recipe", "bv24_cell_table", "worst_cells", "near_sun_cells", "hist_effective_stars",
           "cell_effective_stars"]


def compare_recipe(recipe, source, out: Union[str, os.PathLike], columns: Sequence[str]) -> Tuple[dict, List[Path]]:
    """Bin a written catalogue with the recipe's ``[compare]`` scheme, compare it and plot.

    Parameters
    ----------
    recipe : mocksky.recipe.Recipe
        With a ``compare`` section.
    source : path or list of paths
        The catalogue file, or the parts of a partitioned catalogue (opened by vaex as one table).
    out : path
        Directory for the histograms, counts and PNG plots.
    columns : sequence of str
        Columns of the catalogue (the recipe's weight column is used only if present).

    Returns
    -------
    summary : dict
        JSON-able summary of the comparison.
    plots : list of Path
        PNG files written.
    """
    from . import HealpixScheme, bin_healpix, bin_velocities, bv23_scheme, compare_catalogue_bv24, load_bv24
    from .plots import plot_component_grid, plot_healpix_map

    out = Path(out)
    path = source
    table = set(columns)

    C = recipe.compare
    # star weights: the recipe's column (e.g. the selection probability) times the mock's own 'weight' (expected
    # stars per row of an importance-weighted mock; 1 for a Poisson realisation)
    factors = [c for c in (C.weight, "weight") if c and c in table]
    weight = " * ".join(factors) if factors else None
    plots = []
    if C.scheme == "healpix":
        kw = {"mag_edges": C.mag_edges} if C.mag_edges else {}
        scheme = HealpixScheme(nside=C.nside, nest=True, frame="galactic", mag_column=C.mag_column, **kw)
        counts = bin_healpix(str(path), scheme, weight=weight)
        cmap = counts.map()
        np.savez_compressed(out / "healpix_counts.npz", counts=counts.counts, mag_edges=np.asarray(scheme.mag_edges),
                            nside=scheme.nside)
        plots.append(plot_healpix_map(counts, out / "healpix_counts.png",
                                      title=f"{recipe.name}: star counts (nside {C.nside})"))
        per_mag = np.asarray(counts.counts).sum(axis=0)
        return {"scheme": "healpix", "nside": C.nside, "weight": weight, "total": float(cmap.sum()),
                "mag_edges": list(scheme.mag_edges), "counts_per_mag_bin": per_mag.tolist(),
                "nonempty_pixels": int(np.count_nonzero(cmap))}, plots
    if C.scheme == "bv23":
        hist = bin_velocities(str(path), bv23_scheme(), weight=weight, label=recipe.name)
        hist.to_csv(out / "histograms_bv23.csv")
        for comp in hist.components:
            plots.append(plot_component_grid(hist, None, comp, out / f"bv23_{comp}.png", title=f"{recipe.name} {comp}"))
        return {"scheme": "bv23", "weight": weight,
                "stars_per_cell": np.asarray(hist.total(hist.components[0])).tolist()}, plots
    obs = load_bv24(None if C.observed == "bv24" else C.observed)
    cmp_, hist, cmp_m0 = compare_catalogue_bv24(str(path), weight=weight, observed=obs, label=recipe.name)
    hist.to_csv(out / "histograms_bv24.csv")
    for comp in hist.components:
        plots.append(plot_component_grid(obs.observed, hist, comp, out / f"bv24_{comp}.png", comparison=cmp_,
                                         title=f"{recipe.name} (red) vs APOGEE x Gaia (black) and published M0 "
                                               f"(blue dashed): {comp}", reference=obs.m0))
    table = bv24_cell_table(cmp_, cmp_m0, hist)
    _atomic_csv(table, out / "comparison_bv24.csv")
    neff = table["n_eff_model"].to_numpy()
    return {"scheme": "bv24", "weight": weight, "total_lnL": float(cmp_.total_lnL),
            "m0_total_lnL": float(cmp_m0.total_lnL), "delta_lnL_vs_m0": float(cmp_.total_lnL - cmp_m0.total_lnL),
            "total_deviance": float(cmp_.total_deviance), "m0_total_deviance": float(cmp_m0.total_deviance),
            "lnL_by_component": {k: float(v) for k, v in cmp_.by_component()["lnL"].items()},
            "m0_lnL_by_component": {k: float(v) for k, v in cmp_m0.by_component()["lnL"].items()},
            "model_stars_effective": float(hist_effective_stars(hist)),
            "model_stars_effective_per_cell": {"min": float(np.nanmin(neff)), "median": float(np.nanmedian(neff)),
                                               "sum": float(np.nansum(neff))},
            "worst_cells": _records(worst_cells(table, 5)), "near_sun": _records(near_sun_cells(table)),
            "ncell": int(obs.scheme.cells.ncell)}, plots


def bv24_cell_table(cmp_, cmp_m0, hist=None):
    """One row per (R, |z|) cell: observed count, lnL of the mock and of M0 (summed over vR, vz, vphi), the mock's
    deviance, the data's and the mock's mean R and |z| [kpc], the mock's effective number of stars, and per
    component the observed and model means and dispersions [km/s].

    Parameters
    ----------
    cmp_, cmp_m0 : mocksky.compare.Comparison
        The mock's and the published M0 counts' comparisons with the same observed histograms.
    hist : mocksky.compare.VelocityHistograms, optional
        The mock's histograms: column ``n_eff_model`` (:func:`cell_effective_stars`; NaN without it).

    Returns
    -------
    pandas.DataFrame
    """
    t, t0 = cmp_.table, cmp_m0.table
    cell = cmp_.by_cell().set_index("cell_index")
    cell["lnL_M0"] = t0.groupby("cell_index")["lnL"].sum()
    cell["dlnL_vs_M0"] = cell["lnL"] - cell["lnL_M0"]
    first = t.groupby("cell_index")
    cell["w_model"] = first["w_model"].first()
    for q in ("R_mean_obs", "R_mean_model", "absz_mean_obs", "absz_mean_model"):
        cell[q] = first[q].first()
    cell["n_eff_model"] = np.nan if hist is None else cell_effective_stars(hist)[cell.index.to_numpy()]
    for comp in t["component"].unique():
        sub = t[t["component"] == comp].set_index("cell_index")
        for q in ("mean_obs", "mean_model", "sigma_obs", "sigma_model"):
            cell[f"{q}_{comp}"] = sub[q]
        cell[f"lnL_{comp}"] = sub["lnL"]
        cell[f"lnL_M0_{comp}"] = t0[t0["component"] == comp].set_index("cell_index")["lnL"]
    return cell.reset_index()


def worst_cells(table, n: int = 5):
    """The ``n`` cells where the mock loses most against M0 (smallest ``dlnL_vs_M0``)."""
    return table.sort_values("dlnL_vs_M0").head(n)


def near_sun_cells(table, R_range=(7.0, 10.0), absz_max: float = 1.0):
    """Cells inside R_range and |z| < absz_max: mean vphi and sigma_vz of data and mock, and their differences."""
    sel = table[(table["R_min"] >= R_range[0]) & (table["R_max"] <= R_range[1]) & (table["absz_max"] <= absz_max)]
    out = sel[["cell_index", "R_min", "R_max", "absz_min", "absz_max", "n_obs"]].copy()
    out["mean_vphi_obs"], out["mean_vphi_model"] = sel["mean_obs_vphi"], sel["mean_model_vphi"]
    out["d_mean_vphi"] = sel["mean_model_vphi"] - sel["mean_obs_vphi"]
    out["sigma_vz_obs"], out["sigma_vz_model"] = sel["sigma_obs_vz"], sel["sigma_model_vz"]
    out["d_sigma_vz"] = sel["sigma_model_vz"] - sel["sigma_obs_vz"]
    return out


def cell_effective_stars(hist) -> np.ndarray:
    """Kish effective number of model stars in each cell, (sum w)^2 / sum w^2 over the cell's histogram of the first
    component (its total weight where the histograms carry no ``sumw2``, i.e. unit weights).

    A mock's own noise in a cell's normalised histogram of B bins costs about (B - 1) N_obs / (2 n_eff) in the
    Poisson quasi-likelihood, so cells with n_eff not much above their observed count are noise-dominated.

    Parameters
    ----------
    hist : mocksky.compare.VelocityHistograms

    Returns
    -------
    numpy.ndarray, shape (ncell,)
        NaN in cells without model weight.
    """
    c = hist.components[0]
    w = np.asarray(hist.total(c), dtype=float)
    s2 = getattr(hist, "sumw2", None)
    if s2 is None or c not in s2:
        return np.where(w > 0, w, np.nan)
    q = np.asarray(s2[c], dtype=float).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w > 0) & (q > 0), w * w / np.where(q > 0, q, 1.0), np.nan)


def hist_effective_stars(hist) -> float:
    """Kish effective number of model stars, (sum w)^2 / sum w^2, over the histograms of the first component."""
    c = hist.components[0]
    w = np.asarray(hist.total(c), dtype=float).sum()
    s2 = getattr(hist, "sumw2", None)
    if s2 is None or c not in s2:
        return w
    q = np.asarray(s2[c], dtype=float).sum()
    return w * w / q if q > 0 else float("nan")


def _records(df) -> list:
    return [{k: (float(v) if isinstance(v, (float, np.floating)) else int(v) if isinstance(v, (int, np.integer))
                 else v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _atomic_csv(df, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
