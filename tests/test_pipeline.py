"""``mocksky run``: the small_default recipe end to end at a reduced scale; outputs, metadata, reproducibility."""
import json

import h5py
import numpy as np
import pytest

from mocksky.catalogue import open_vaex, read_catalogue, read_metadata, verify_manifest
from mocksky.cli import main
from mocksky.pipeline import build_selection_function, run
from mocksky.recipe import RecipeError, load_recipe, parse_recipe

SCALE = 0.02


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    return run("small_default", out, seed=123, scale=SCALE)


def test_small_default_outputs(small_run):
    r = small_run
    assert r.catalogue.is_dir() and (r.catalogue / "manifest.json").is_file() and r.summary_path.is_file()
    assert verify_manifest(r.catalogue)["total_rows"] == r.n_rows
    assert r.n_rows > 100 and r.seed == 123
    assert all(p.is_file() and p.suffix == ".png" and p.stat().st_size > 1000 for p in r.plots) and r.plots
    s = json.loads(r.summary_path.read_text())
    assert s["n_rows"] == r.n_rows and s["run"]["seed"] == 123 and s["run"]["scale"] == SCALE
    assert s["comparison"]["scheme"] == "healpix"
    # HEALPix counts are the selection-weighted star counts: total = sum of selection_probability of the stars whose
    # observed G falls in the magnitude bins [0, 9)
    cat = read_catalogue(r.catalogue, columns=["selection_probability", "phot_g_mean_mag"])
    p, g = cat["selection_probability"], cat["phot_g_mean_mag"]
    inside = (g >= 0.0) & (g < 9.0)
    assert s["comparison"]["total"] == pytest.approx(p[inside].sum(), rel=1e-9)
    assert s["comparison"]["mag_edges"] == [0.0, 4.0, 6.0, 7.0, 8.0, 9.0]
    assert s["components"]  # per-component point/star diagnostics
    for k in ("model", "plan", "chunks", "manifest", "compare", "total"):
        assert k in s["timings_s"]
    for k in ("sample", "populate", "observe", "select", "write"):
        assert k in s["stage_seconds_summed"]
    tp = s["throughput"]
    assert tp["stars_kept"] == r.n_rows and tp["stars_generated"] == s["n_generated"] >= r.n_rows


def test_catalogue_content_and_metadata(small_run):
    r = small_run
    meta = read_metadata(r.catalogue)
    run_meta = meta["meta"]["run"]
    assert run_meta["recipe_text"] == load_recipe("small_default").text
    assert run_meta["seed"] == 123 and run_meta["mocksky_version"]
    assert run_meta["solar"]["name"] == "bv23" and run_meta["solar"]["R0"] == 8.27
    assert any("Binney & Vasiliev 2023" in ref for ref in run_meta["references"])
    cols = dict(read_catalogue(r.catalogue))
    # the magnitude limit is applied to the extincted true G; the region is a 1 kpc sphere around the Sun
    assert np.all(cols["phot_g_mean_mag_true"] <= 9.0)
    assert np.all(cols["distance"] <= 1.0 + 0.03)
    assert np.all((cols["selection_probability"] >= 0) & (cols["selection_probability"] <= 1))
    assert np.all(np.isfinite(cols["parallax_error"])) and np.all(cols["parallax_error"] > 0)
    names = meta["meta"]["populate"]["component_names"]
    assert set(np.unique(cols["component"])) <= set(range(len(names)))
    assert "young disk" in names
    # identical values through vaex
    df = open_vaex(r.catalogue)
    try:
        assert len(df) == r.n_rows
        for c in ("ra", "dec", "parallax", "phot_g_mean_mag", "selection_probability", "component", "feh"):
            np.testing.assert_array_equal(df[c].values, cols[c])
    finally:
        df.close()


def tiny_text(text=None):
    """small_default shrunk: 0.5 kpc sphere, two discs, small pilots (a few seconds at SCALE)."""
    text = text if text is not None else load_recipe("small_default").text
    return text.replace("radius = 1.0", "radius = 0.5").replace("pilot = 1000", "pilot = 300").replace(
        'components = ["young disk", "middle disk", "old disk", "highA disk", "stellar halo"]',
        'components = ["young disk", "old disk"]')


def test_reproducible(tmp_path):
    rec = parse_recipe(tiny_text(), source="tiny.toml")
    assert rec.sample.components == ("young disk", "old disk")
    a = run(rec, tmp_path / "a", seed=5, scale=SCALE)
    b = run(rec, tmp_path / "b", seed=5, scale=SCALE)
    ma, mb = read_metadata(a.catalogue), read_metadata(b.catalogue)
    assert [p["sha256"] for p in ma["parts"]] == [p["sha256"] for p in mb["parts"]]
    ta, tb = read_catalogue(a.catalogue), read_catalogue(b.catalogue)
    for c in ("parallax", "phot_g_mean_mag", "x", "feh"):
        np.testing.assert_array_equal(ta[c], tb[c])
    assert a.n_rows > 50


def test_selection_sample_mode_and_columns(tmp_path):
    text = tiny_text().replace(
        'mode = "weight"', 'mode = "sample"\ncuts = [{ type = "range", column = "logg", max = 4.0 }]').replace(
        'name = "catalogue"', 'name = "cat"\ncolumns = ["ra", "dec", "l", "b", "logg", "phot_g_mean_mag", '
                              '"selection_probability"]')
    rec = parse_recipe(text, source="sampled.toml")
    sf = build_selection_function(rec)
    assert sf is not None
    r = run(rec, tmp_path, seed=1, scale=SCALE)
    cat = read_catalogue(r.catalogue)
    assert sorted(cat) == sorted(["ra", "dec", "l", "b", "logg", "phot_g_mean_mag", "selection_probability"])
    logg, p = cat["logg"], cat["selection_probability"]
    assert np.all(logg <= 4.0) and np.all(p > 0)


def test_bad_arguments_fail_before_computing(tmp_path):
    with pytest.raises(RecipeError, match="scale"):
        run("small_default", tmp_path, scale=0.0)
    with pytest.raises(RecipeError, match="not a built-in recipe"):
        run("nope", tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nsource = 'bv23'\n[seleciton]\n")
    with pytest.raises(SystemExit) as ei:
        main(["run", str(bad), "--out", str(tmp_path / "o")])
    assert ei.value.code == 2
    assert not (tmp_path / "o").exists()


def test_cli_run(tmp_path, capsys):
    rec = tmp_path / "tiny.toml"
    rec.write_text(tiny_text())
    assert main(["run", str(rec), "--out", str(tmp_path / "o"), "--seed", "3", "--scale", str(SCALE)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "seed 3" in out
    assert (tmp_path / "o" / "catalogue" / "manifest.json").is_file() and (tmp_path / "o" / "summary.json").is_file()
    assert "stars generated" in out and "stars/s" in out


def test_nbody_ics_recipe(tmp_path):
    r = run("nbody_ics", tmp_path, seed=2, scale=3e-4)
    assert r.catalogue.name == "bv23_ics.hdf5" and r.n_rows == 300
    with h5py.File(r.catalogue) as f:
        n = sum(f[g]["Coordinates"].shape[0] for g in f if g.startswith("PartType"))
    assert n == 300
    s = json.loads(r.summary_path.read_text())
    assert s["n_particles"] == 300 and sum(c["n"] for c in s["components"].values()) == 300


def test_low_acceptance_falls_back_to_weighted(tmp_path, monkeypatch):
    """A component whose rejection acceptance in the plan is below pipeline._MIN_ACCEPTANCE is importance-weighted
    (forced here by raising the threshold above any acceptance): rows carry 'weight', the plan records it, and the
    weighted mock estimates the same number of stars as the rejection one."""
    import mocksky.pipeline as P

    rec = parse_recipe(tiny_text(), source="tiny.toml")
    plain = run(rec, tmp_path / "plain", seed=5, scale=SCALE)
    monkeypatch.setattr(P, "_MIN_ACCEPTANCE", 1.1)
    r = run(rec, tmp_path / "w", seed=5, scale=SCALE)
    assert all(c["weighted"] for c in r.summary["components"].values())
    cat = read_catalogue(r.catalogue)
    assert "weight" in cat and np.all(np.asarray(cat["weight"]) > 0)
    n_w = float(np.sum(cat["weight"]))
    assert abs(n_w - plain.n_rows) < 5 * np.sqrt(plain.n_rows) + 0.1 * plain.n_rows, (n_w, plain.n_rows)
