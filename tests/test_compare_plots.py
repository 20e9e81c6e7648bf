"""Comparison figures, and the chain catalogue file -> vaex binning -> likelihood -> plots end to end."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mocksky.catalogue.io import write_catalogue  # noqa: E402
from mocksky.compare import (COMPONENTS, HealpixScheme, bin_healpix, compare_catalogue_bv24,  # noqa: E402
                             load_bv24)
from mocksky.compare.plots import plot_cell_column, plot_component_grid, plot_healpix_map  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def bv24():
    return load_bv24()


def mock_from_model(bv24, factor, rng):
    """A star catalogue drawn from the M0 histograms: per cell factor x N_obs stars, velocities per component
    drawn from M0's bin fractions, uniform inside the counted interval of the bin."""
    s = bv24.scheme
    cells = s.cells
    cols = {k: [] for k in ("R", "z", "vR", "vz", "vphi")}
    for c in range(cells.ncell):
        iz, iR = divmod(c, cells.nR)
        n = int(factor * bv24.observed.total("vR")[c])
        cols["R"].append(rng.uniform(cells.R_edges[iR], cells.R_edges[iR + 1], n))
        cols["z"].append(rng.uniform(cells.absz_edges[iz], cells.absz_edges[iz + 1], n) * rng.choice([-1, 1], n))
        for k in COMPONENTS:
            w = bv24.m0.counts[k][c]
            kb = rng.choice(w.size, n, p=w / w.sum())
            e = s.bins[k].effective_edges()[c]
            cols[k].append(e[kb] + rng.uniform(0.001, 0.999, n) * (e[kb + 1] - e[kb]))
    return {k: np.concatenate(v) for k, v in cols.items()}


def test_end_to_end_mock_file_binned_compared_plotted(tmp_path, bv24):
    rng = np.random.default_rng(7)
    cat = mock_from_model(bv24, 3, rng)
    path = write_catalogue(cat, tmp_path / "mock_m0.hdf5")
    c, model, c_m0 = compare_catalogue_bv24(path, observed=bv24, label="mock drawn from M0")
    assert c_m0.total_lnL == pytest.approx(-43027.4308, abs=1e-3)
    # a finite (3 x N_obs) resampling of M0 fits the data a little worse than M0 itself: its own Poisson noise adds
    # roughly ndof / 3 to the expected deviance (measured: 47173 vs 41361, ndof 10046 vs 10229)
    ndof = c.summary()["ndof"]
    assert c_m0.total_deviance < c.total_deviance < c_m0.total_deviance + ndof
    assert np.all(c.table["nstars_model"] > 0)
    p1 = plot_cell_column(bv24.observed, model, 7, tmp_path / "col.png", comparison=c, iz=[0, 2, 4])
    w, h = png_size(p1)
    assert w > 600 and h > 400
    p2 = plot_component_grid(bv24.observed, bv24.m0, "vz", tmp_path / "grid.png", comparison=c_m0)
    w, h = png_size(p2)
    assert w > 1500 and h > 500
    with pytest.raises(ValueError, match="iR=12"):
        plot_cell_column(bv24.observed, model, 12, tmp_path / "x.png")
    with pytest.raises(KeyError, match="component"):
        plot_component_grid(bv24.observed, None, "vx", tmp_path / "x.png")


def test_healpix_map_png(tmp_path):
    rng = np.random.default_rng(1)
    n = 30000
    b = np.degrees(np.arcsin(rng.uniform(-1, 1, n) ** 3))  # concentrated to the plane
    cat = {"l": rng.uniform(0, 360, n), "b": b, "phot_g_mean_mag": rng.uniform(8, 20, n)}
    path = write_catalogue(cat, tmp_path / "sky.parquet")
    counts = bin_healpix(path, HealpixScheme(nside=16))
    p = plot_healpix_map(counts, tmp_path / "map.png", mag_max=17)
    w, h = png_size(p)
    assert w > 500 and h > 300
    p2 = plot_healpix_map(counts.map(), tmp_path / "map_ring.png", nest=True, log=False, title="all")
    assert png_size(p2)[0] > 500
    with pytest.raises(ValueError, match="nest="):
        plot_healpix_map(counts.map(), tmp_path / "x.png")
    with pytest.raises(ValueError, match="disagrees"):
        plot_healpix_map(counts, tmp_path / "x.png", nest=False)


def test_component_grid_with_reference(tmp_path):
    """The published M0 counts drawn as a reference curve beside a model."""
    from mocksky.compare import load_bv24
    from mocksky.compare.plots import plot_component_grid

    obs = load_bv24()
    p = plot_component_grid(obs.observed, obs.m0, "vphi", tmp_path / "g.png", reference=obs.m0)
    assert p.is_file() and p.stat().st_size > 10000
