"""The comparison stage of ``mocksky run``: bin the written catalogue (vaex), compare with observed data, plot."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

__all__ = ["compare_recipe"]


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
                                         title=f"{recipe.name} vs observed: {comp}"))
    return {"scheme": "bv24", "weight": weight, "total_lnL": float(cmp_.total_lnL),
            "m0_total_lnL": float(cmp_m0.total_lnL), "delta_lnL_vs_m0": float(cmp_.total_lnL - cmp_m0.total_lnL),
            "total_deviance": float(cmp_.total_deviance), "m0_total_deviance": float(cmp_m0.total_deviance),
            "ncell": int(obs.scheme.cells.ncell)}, plots
