"""Binning schemes and their vaex evaluation on written catalogue files."""
import time

import numpy as np
import pytest

from mocksky.catalogue.io import write_catalogue, write_manifest, write_part
from mocksky.compare import (COMPONENTS, CellGrid, HealpixScheme, VelocityBins, VelocityScheme, bin_healpix,
                             bin_velocities, bv23_scheme, bv24_cells, cell_moments, load_bv24, moments_rule_scheme,
                             resolve_velocity_columns)


@pytest.fixture(scope="module")
def bv24():
    return load_bv24()


# ---------------------------------------------------------------------------------------------------------------
# independent (slow, broadcast) reference of the binning rules
# ---------------------------------------------------------------------------------------------------------------

def ref_cell(cells, R, z):
    Re, ze = np.asarray(cells.R_edges), np.asarray(cells.absz_edges)
    az = np.abs(z)
    iR = (R[:, None] > Re[None, :-1]).sum(1) - 1
    iz = (az[:, None] > ze[None, :-1]).sum(1) - 1
    iz = np.where(az == ze[0], 0, iz)
    ok = (R > Re[0]) & (R <= Re[-1]) & (((az > ze[0]) & (az <= ze[-1])) | (az == ze[0]))
    return np.where(ok, iz * cells.nR + iR, -1)


def ref_index(scheme, comp, R, z, v):
    c = ref_cell(scheme.cells, R, z)
    b = scheme.bins[comp]
    e = b.edges[np.maximum(c, 0)]
    k = (v[:, None] > e[:, :-1]).sum(1) - 1
    k = np.where((v <= e[:, 0]) & (v > b.lo_eff[np.maximum(c, 0)]), 0, k)
    ok = (c >= 0) & (k >= 0) & (v <= e[:, -1]) & np.isfinite(v)
    return np.where(ok, c * b.nbins + k, -1)


def tricky_sample(scheme, n, rng):
    """Random stars plus values exactly on cell and bin edges, at lo_eff, z = 0, NaN."""
    cells = scheme.cells
    R = rng.uniform(cells.R_edges[0] - 1, cells.R_edges[-1] + 1, n)
    z = rng.uniform(-cells.absz_edges[-1] - 0.5, cells.absz_edges[-1] + 0.5, n)
    R[: n // 10] = rng.choice(cells.R_edges, n // 10)
    z[n // 10: n // 5] = rng.choice(np.concatenate([cells.absz_edges, -np.asarray(cells.absz_edges)]), n // 10)
    c = np.maximum(ref_cell(cells, R, z), 0)
    out = {"R": R, "z": z}
    for comp in scheme.components:
        b = scheme.bins[comp]
        lo, hi = b.lo_eff[c], b.edges[c, -1]
        v = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
        m = rng.random(n)
        v = np.where(m < 0.15, b.edges[c, rng.integers(0, b.nbins + 1, n)], v)  # on an edge
        v = np.where((m >= 0.15) & (m < 0.2), b.lo_eff[c], v)  # exactly at the extension's open end
        v[rng.random(n) < 0.01] = np.nan
        out[comp] = v
    return out


def test_cell_rules():
    g = CellGrid((1.0, 2.0, 4.0), (0.0, 0.5, 1.0))
    R = np.array([1.0, 1.0001, 2.0, 2.0001, 4.0, 4.0001, 1.5, 1.5, 1.5, np.nan])
    z = np.array([0.2, 0.0, -0.5, 0.5001, 1.0, 0.3, -1.0, 1.0001, -0.0, 0.1])
    np.testing.assert_array_equal(g.cell_index(R, z), [-1, 0, 0, 3, 3, -1, 2, -1, 0, -1])
    np.testing.assert_array_equal(g.cell_index(R, z), ref_cell(g, R, z))
    with pytest.raises(ValueError, match="strictly increasing"):
        CellGrid((1.0, 1.0, 2.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="start at >= 0"):
        CellGrid((1.0, 2.0), (-1.0, 1.0))


def test_velocity_bin_rules_with_extension():
    g = CellGrid((0.0, 1.0), (0.0, 1.0))
    s = VelocityScheme("t", g, {"vR": VelocityBins.uniform([-10.0], [10.0], 4, extend_first=True)})
    assert s.bins["vR"].lo_eff[0] == -15.0
    v = np.array([-15.0, -14.999, -10.0, -9.999, -5.0, -4.999, 0.0, 10.0, 10.0001, np.nan])
    idx = s.assign(np.full(v.size, 0.5), np.full(v.size, 0.5), v, "vR")
    np.testing.assert_array_equal(idx, [-1, 0, 0, 0, 0, 1, 1, 3, -1, -1])
    np.testing.assert_allclose(s.bins["vR"].centres()[0], [-10.0, -2.5, 2.5, 7.5])
    with pytest.raises(KeyError, match="component 'vz' not in scheme"):
        s.assign(0.5, 0.5, 0.0, "vz")
    with pytest.raises(ValueError, match="lo_eff must be <="):
        VelocityBins(np.array([[0.0, 1.0]]), [0.5])


def test_bv24_scheme_from_observed_file(bv24):
    s = bv24.scheme
    assert s.cells.ncell == 72 and s.cells.nR == 12 and s.cells.nz == 6
    assert s.cells.R_edges == (0.5, 1.5, 3, 4, 5, 6, 7, 8, 9, 10, 11.5, 13, 14.5)
    assert s.cells.absz_edges == (0, 0.3, 0.7, 1, 1.5, 2, 3)
    assert s.cells.R_edges == bv24_cells().R_edges and s.cells.absz_edges == bv24_cells().absz_edges
    for c in COMPONENTS:
        b = s.bins[c]
        assert b.edges.shape == (72, 51)
        w = np.diff(b.edges, axis=1)
        np.testing.assert_allclose(w, np.broadcast_to(w[:, :1], w.shape), atol=2e-4)  # equal bins (edges to 1e-4 km/s)
        np.testing.assert_allclose(b.edges[:, 0] - b.lo_eff, w[:, 0], atol=2e-4)  # bin 0 extended by one width
    np.testing.assert_allclose(s.bins["vphi"].edges[:, 0], -50.0)
    np.testing.assert_allclose(s.bins["vR"].edges[:, 0], -s.bins["vR"].edges[:, -1], atol=2e-4)
    assert s.bins["vR"].edges[0, 0] == -395.3886 and s.bins["vR"].lo_eff[0] == -411.2041
    assert bv24.observed.total("vR").sum() == 212184


def synth_from_histograms(hist, rng, weight=None):
    """A catalogue whose binned counts equal ``hist`` exactly: per cell, positions inside the cell and per component
    velocities drawn inside the counted interval of each bin (stars beyond the cell's count of a component get a
    velocity above the range, so they are not counted in that component)."""
    s = hist.scheme
    cells = s.cells
    cols = {k: [] for k in ("R", "z", "vR", "vz", "vphi")}
    for c in range(cells.ncell):
        iz, iR = divmod(c, cells.nR)
        n = int(max(hist.counts[k][c].sum() for k in s.components))
        u = rng.uniform(0.01, 0.99, n)
        cols["R"].append(cells.R_edges[iR] + u * (cells.R_edges[iR + 1] - cells.R_edges[iR]))
        az = cells.absz_edges[iz] + rng.uniform(0.01, 0.99, n) * (cells.absz_edges[iz + 1] - cells.absz_edges[iz])
        cols["z"].append(az * rng.choice([-1.0, 1.0], n))
        for k in s.components:
            e = s.bins[k].effective_edges()[c]
            cnt = hist.counts[k][c].astype(int)
            kb = np.repeat(np.arange(cnt.size), cnt)
            v = e[kb] + rng.uniform(0.01, 0.99, kb.size) * (e[kb + 1] - e[kb])
            v = np.concatenate([v, e[-1] + rng.uniform(1, 50, n - kb.size)])
            cols[k].append(rng.permutation(v))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    if weight is not None:
        out["selection_probability"] = np.full(len(out["R"]), weight)
    return out


def test_vaex_binning_reproduces_observed_counts_exactly(tmp_path, bv24):
    rng = np.random.default_rng(3)
    cat = synth_from_histograms(bv24.observed, rng, weight=0.25)
    path = write_catalogue(cat, tmp_path / "mock.hdf5")
    h = bin_velocities(path, bv24.scheme)
    hw = bin_velocities(path, bv24.scheme, weight="selection_probability")
    for c in COMPONENTS:
        np.testing.assert_array_equal(h.counts[c], bv24.observed.counts[c], err_msg=c)
        np.testing.assert_array_equal(h.nstars[c], bv24.observed.counts[c], err_msg=c)
        np.testing.assert_allclose(hw.counts[c], 0.25 * bv24.observed.counts[c], rtol=1e-12)
        np.testing.assert_allclose(hw.sumw2[c], 0.0625 * bv24.observed.counts[c], rtol=1e-12)
    assert h.meta["columns"] == {"R": "R", "z": "z", "vR": "vR", "vz": "vz", "vphi": "vphi"}
    # mean R, |z| per cell lie inside the cells
    t = bv24.scheme.cells.table()
    assert np.all((h.R_mean > t["R_min"]) & (h.R_mean < t["R_max"]))
    assert np.all((h.absz_mean > t["absz_min"]) & (h.absz_mean < t["absz_max"]))
    # the long table has the observed file's layout
    f = h.to_frame()
    assert len(f) == 72 * 3 * 50 and {"v_lo", "v_hi", "v_lo_eff", "count", "sumw2", "nstars"} <= set(f.columns)


@pytest.mark.parametrize("scheme_name", ["bv24", "bv23"])
def test_vaex_matches_reference_on_edges_weights_selection(tmp_path, bv24, scheme_name):
    rng = np.random.default_rng(11)
    scheme = bv24.scheme if scheme_name == "bv24" else bv23_scheme(R0=8.27, nbins=30)
    cat = tricky_sample(scheme, 40000, rng)
    cat["selection_probability"] = rng.random(40000)
    cat["feh"] = rng.normal(0, 0.3, 40000)
    path = write_catalogue(cat, tmp_path / "c.parquet")
    h = bin_velocities(path, scheme, weight="selection_probability", selection="feh > -0.2")
    sel = cat["feh"] > -0.2
    for c in COMPONENTS:
        idx = ref_index(scheme, c, cat["R"], cat["z"], cat[c])
        np.testing.assert_array_equal(scheme.assign(cat["R"], cat["z"], cat[c], c), idx, err_msg=c)
        ok = (idx >= 0) & sel
        nb = scheme.bins[c].nbins * scheme.cells.ncell
        w = cat["selection_probability"][ok]
        np.testing.assert_array_equal(h.nstars[c].ravel(), np.bincount(idx[ok], minlength=nb), err_msg=c)
        np.testing.assert_allclose(h.counts[c].ravel(), np.bincount(idx[ok], weights=w, minlength=nb),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h.sumw2[c].ravel(), np.bincount(idx[ok], weights=w * w, minlength=nb),
                                   rtol=1e-12, atol=1e-12)


def test_sources_and_column_resolution(tmp_path, bv24):
    rng = np.random.default_rng(5)
    cat = synth_from_histograms(bv24.observed, rng)
    n = len(cat["R"])
    phi = rng.uniform(0, 2 * np.pi, n)
    cat_obs = {"x": cat["R"] * np.cos(phi), "y": cat["R"] * np.sin(phi), "z_obs": cat["z"],
               "vR_obs": cat["vR"], "vz_obs": cat["vz"], "vphi_obs": cat["vphi"],
               "R": np.full(n, 100.0), "z": cat["z"], "vR": cat["vR"], "vz": cat["vz"], "vphi": cat["vphi"]}
    assert resolve_velocity_columns(list(cat_obs), {"R": "sqrt(x**2 + y**2)"}) == {
        "R": "sqrt(x**2 + y**2)", "z": "z_obs", "vR": "vR_obs", "vz": "vz_obs", "vphi": "vphi_obs"}
    d = tmp_path / "parts"
    bounds = np.linspace(0, n, 4).astype(int)
    infos = [write_part({k: v[a:b] for k, v in cat_obs.items()}, d, i) for i, (a, b) in
             enumerate(zip(bounds[:-1], bounds[1:]))]
    write_manifest(d, infos)
    h = bin_velocities(d, bv24.scheme, columns={"R": "sqrt(x**2 + y**2)"})
    assert h.meta["columns"]["vR"] == "vR_obs" and h.meta["rows"] == n
    for c in COMPONENTS:
        np.testing.assert_array_equal(h.counts[c], bv24.observed.counts[c])
    with pytest.raises(KeyError, match=r"neither '<name>_obs' nor '<name>' for \['R', 'vphi'\]"):
        resolve_velocity_columns(["z", "vR", "vz"])
    with pytest.raises(KeyError, match="unknown key"):
        resolve_velocity_columns(list(cat_obs), {"Vr": "vR"})
    with pytest.raises(KeyError, match="weight='nope' is not a column"):
        bin_velocities(d, bv24.scheme, columns={"R": "sqrt(x**2 + y**2)"}, weight="nope")
    with pytest.raises(TypeError, match="catalogue path or a vaex DataFrame"):
        bin_velocities(cat, bv24.scheme)


def test_cell_moments_and_moments_rule(tmp_path):
    rng = np.random.default_rng(8)
    n = 60000
    cells = bv24_cells()
    cat = {"R": rng.uniform(0, 15, n), "z": rng.normal(0, 1.2, n), "vR": rng.normal(5, 40, n),
           "vz": rng.normal(-2, 25, n), "vphi": rng.normal(200, 30, n), "selection_probability": rng.random(n)}
    path = write_catalogue(cat, tmp_path / "m.hdf5")
    mo = cell_moments(path, cells, weight="selection_probability")
    c = cells.cell_index(cat["R"], cat["z"])
    w = cat["selection_probability"]
    for k in (3, 30, 50):
        s = c == k
        W = w[s].sum()
        m1 = (w[s] * cat["vR"][s]).sum() / W
        assert mo["n"][k] == pytest.approx(W, rel=1e-12)
        assert mo["mean_vR"][k] == pytest.approx(m1, rel=1e-10)
        assert mo["rms_vz"][k] == pytest.approx(np.sqrt((w[s] * cat["vz"][s] ** 2).sum() / W), rel=1e-10)
        assert mo["sigma_vphi"][k] == pytest.approx(
            np.sqrt((w[s] * (cat["vphi"][s] - (w[s] * cat["vphi"][s]).sum() / W) ** 2).sum() / W), rel=1e-8)
    s = moments_rule_scheme(cells, mo["rms_vR"], mo["rms_vz"], mo["mean_vphi"], mo["sigma_vphi"])
    np.testing.assert_allclose(s.bins["vR"].edges[:, -1], 3 * mo["rms_vR"])
    np.testing.assert_allclose(s.bins["vz"].edges[:, 0], -3 * mo["rms_vz"])
    np.testing.assert_allclose(s.bins["vphi"].edges[:, -1], np.abs(mo["mean_vphi"]) + 3 * mo["sigma_vphi"])
    np.testing.assert_allclose(s.bins["vphi"].edges[:, 0] - s.bins["vphi"].lo_eff,
                               np.diff(s.bins["vphi"].edges[:, :2], axis=1)[:, 0])


def test_bv23_scheme():
    s = bv23_scheme(R0=8.2)
    assert s.cells.ncell == 35 and s.cells.nR == 5 and s.cells.nz == 7
    np.testing.assert_allclose(s.cells.R_edges, [5.2, 6.7, 7.7, 8.7, 9.7, 11.2])
    assert s.cells.absz_edges == (0, 0.1, 0.2, 0.35, 0.5, 1, 1.75, 3)
    assert s.bins["vphi"].nbins == 50 and s.bins["vphi"].edges[0, 0] == -150.0
    with pytest.raises(ValueError, match="hi > lo"):
        bv23_scheme(limits={"vz": (10.0, -10.0)})


def test_healpix_counts(tmp_path):
    import healpy as hp

    rng = np.random.default_rng(2)
    n = 50000
    l, b = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    G = rng.uniform(2, 22, n)
    G[:200] = rng.choice(np.arange(3.0, 22.0), 200)  # exactly on magnitude edges: [lo, hi)
    w = rng.random(n)
    path = write_catalogue({"l": l, "b": b, "phot_g_mean_mag": G, "selection_probability": w}, tmp_path / "s.hdf5")
    sn = HealpixScheme(nside=8, nest=True)
    cn = bin_healpix(path, sn, weight="selection_probability")
    cr = bin_healpix(path, HealpixScheme(nside=8, nest=False))
    e = np.asarray(sn.mag_edges)
    k = np.searchsorted(e, G, side="right") - 1
    ok = (k >= 0) & (k < sn.nmag)
    pix = hp.ang2pix(8, l, b, nest=True, lonlat=True)
    ref = np.zeros((sn.npix, sn.nmag))
    np.add.at(ref, (pix[ok], k[ok]), w[ok])
    np.testing.assert_allclose(cn.counts, ref, rtol=1e-12, atol=1e-12)
    assert cr.counts.sum() == ok.sum()
    np.testing.assert_array_equal(cr.counts[hp.nest2ring(8, np.arange(sn.npix))].sum(1),
                                  np.bincount(pix[ok], minlength=sn.npix))
    assert cn.meta["ordering"] == "NESTED" and cr.meta["ordering"] == "RING"
    np.testing.assert_allclose(cn.map(10, 15), ref[:, 7:12].sum(1))
    with pytest.raises(ValueError, match="power of 2"):
        HealpixScheme(nside=12)
    with pytest.raises(ValueError, match="frame"):
        HealpixScheme(frame="ecliptic")


def test_binning_partitioned_catalogues_in_batches(tmp_path, bv24, monkeypatch):
    """A dataset directory is binned batch by batch (each batch of whole parts closed before the next, so the
    memory-mapped pages held do not grow with the catalogue): the same HEALPix counts and velocity histograms as
    binning the open DataFrame of all parts at once."""
    import mocksky.compare.binning as B
    from mocksky.catalogue import open_vaex, open_vaex_batches

    rng = np.random.default_rng(9)
    cat = synth_from_histograms(bv24.observed, rng)
    n = len(cat["R"])
    cat = {**cat, "l": rng.uniform(0, 360, n), "b": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
           "phot_g_mean_mag": rng.uniform(3, 20.7, n), "selection_probability": rng.random(n)}
    d = tmp_path / "parts"
    bounds = np.linspace(0, n, 8).astype(int)
    write_manifest(d, [write_part({k: v[a:b] for k, v in cat.items()}, d, i)
                       for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))])
    per_part = int(np.diff(bounds).max())
    monkeypatch.setattr(B, "BATCH_ROWS", 2 * per_part)
    seen = []
    for df in open_vaex_batches(d, max_rows=2 * per_part):
        seen.append(len(df))
    assert len(seen) == 4 and sum(seen) == n and max(seen) <= 2 * per_part
    with pytest.raises(ValueError, match="max_rows"):
        next(open_vaex_batches(d, max_rows=0))
    sch = HealpixScheme(nside=8, nest=True)
    whole = open_vaex(d)
    try:
        ref_h = bin_healpix(whole, sch, weight="selection_probability")
        ref_v = bin_velocities(whole, bv24.scheme, weight="selection_probability")
    finally:
        whole.close()
    h = bin_healpix(d, sch, weight="selection_probability")
    v = bin_velocities(d, bv24.scheme, weight="selection_probability")
    np.testing.assert_allclose(h.counts, ref_h.counts, rtol=1e-12)
    np.testing.assert_allclose(h.sumw2, ref_h.sumw2, rtol=1e-12)
    assert v.meta["rows"] == n
    for c in COMPONENTS:
        np.testing.assert_allclose(v.counts[c], ref_v.counts[c], rtol=1e-12)
        np.testing.assert_array_equal(v.nstars[c], ref_v.nstars[c])
    np.testing.assert_allclose(v.R_mean, ref_v.R_mean, rtol=1e-12)


def test_binning_speed(tmp_path, bv24):
    """2e6 stars, BV24 scheme, weighted: one vaex pass over the written file."""
    rng = np.random.default_rng(0)
    n = 2_000_000
    cat = {"R": rng.uniform(0, 15, n), "z": rng.normal(0, 1, n), "vR": rng.normal(0, 40, n),
           "vz": rng.normal(0, 30, n), "vphi": rng.normal(200, 40, n), "selection_probability": rng.random(n)}
    path = write_catalogue(cat, tmp_path / "big.hdf5")
    bin_velocities(path, bv24.scheme)  # warm up (numba cache, vaex threads)
    t0 = time.perf_counter()
    h = bin_velocities(path, bv24.scheme, weight="selection_probability")
    dt = time.perf_counter() - t0
    assert h.nstars["vR"].sum() > 0.5 * n
    assert dt < 15.0, f"binning 2e6 stars took {dt:.1f} s"
