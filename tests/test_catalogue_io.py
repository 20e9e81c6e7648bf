"""Catalogue writers/readers: round trips through vaex and the independent readers, atomic writes, manifests."""
import json
import os

import numpy as np
import pytest

from mocksky.catalogue import StarTable
from mocksky.catalogue import io as cio
from mocksky.catalogue.io import (CatalogueIntegrityError, open_vaex, read_catalogue, read_metadata, verify_manifest,
                                  write_catalogue, write_manifest, write_part)

FORMATS = ["hdf5", "parquet", "fits"]
META = {"recipe": "test_recipe", "seed": np.int64(42), "solar_parameters": {"name": "bv24", "R0": 8.27, "z_sun": 0.025,
        "velocity": (14.0, 251.3, 7.0)}, "references": {"model": "Binney & Vasiliev 2024", "dust": "Green+2019"},
        "unicode": "Schönrich", "grid": np.arange(3.0)}


def make_table(n=500, seed=0, meta=META):
    rng = np.random.default_rng(seed)
    return StarTable({
        "source_id": np.arange(n, dtype=np.int64) + 10 ** 15,
        "component": rng.integers(0, 6, n).astype(np.int16),
        "x": rng.normal(-8, 3, n), "z": rng.normal(0, 1, n), "vR": rng.normal(0, 40, n),
        "Jphi": rng.normal(1500, 300, n), "feh": rng.normal(-0.2, 0.3, n).astype(np.float32),
        "is_remnant": rng.random(n) < 0.3, "phase": rng.integers(0, 9, n).astype(np.int16),
        "parallax": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0.1, 2, n)),
        "selection_probability": rng.random(n),
    }, meta=meta)


def vaex_values(df, name):
    return np.array(df[name].to_numpy(), copy=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_vaex_and_independent_reader_identical(tmp_path, fmt):
    t = make_table()
    path = write_catalogue(t, tmp_path / f"cat.{fmt}")
    back = read_catalogue(path)  # h5py / pyarrow / astropy
    assert list(back) == list(t)
    for k in t:
        assert back[k].dtype == t[k].dtype, k
        np.testing.assert_array_equal(back[k], t[k], err_msg=k)
    df = open_vaex(path)
    try:
        assert len(df) == len(t)
        assert set(df.get_column_names()) == set(t)
        for k in t:
            v = vaex_values(df, k)
            np.testing.assert_array_equal(v, back[k], err_msg=k)  # bools read by vaex from FITS as 0/1
            if fmt != "fits":
                assert v.dtype == t[k].dtype, k
        if fmt in ("hdf5", "fits"):  # vaex picks the units up from the file
            assert str(df.units["vR"]) == "km / s" and str(df.units["Jphi"]) in ("kpc km / s", "km kpc / s")
    finally:
        df.close()
    # metadata: JSON-converted copy of table.meta
    assert back.meta["seed"] == 42 and back.meta["recipe"] == "test_recipe"
    assert back.meta["solar_parameters"]["velocity"] == [14.0, 251.3, 7.0]
    assert back.meta["references"]["dust"] == "Green+2019" and back.meta["unicode"] == "Schönrich"
    assert back.meta["grid"] == [0.0, 1.0, 2.0]
    doc = read_metadata(path)
    assert doc["format"] == "mocksky-catalogue" and doc["columns"]["vR"]["unit"] == "km/s"
    assert doc["columns"]["is_remnant"]["dtype"] == "?"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_hdf5_layout_is_vaex_and_units_are_attributes(tmp_path):
    import h5py

    path = write_catalogue(make_table(20), tmp_path / "c.h5")
    with h5py.File(path, "r") as f:
        cols = f["table/columns"]
        assert f["table"].attrs["type"] == "table"
        assert cols.attrs["column_order"].split(",")[:3] == ["source_id", "component", "x"]
        assert cols["vR"].attrs["unit"] == "km/s" and "radial velocity" in cols["vR"].attrs["description"]
        assert cols["x"]["data"].id.get_offset() is not None  # contiguous: vaex memory-maps it
        json.loads(f["table"].attrs["mocksky"])


def test_parquet_and_fits_units(tmp_path):
    import pyarrow.parquet as pq
    from astropy.io import fits

    t = make_table(10)
    p = write_catalogue(t, tmp_path / "c.parquet")
    assert pq.read_schema(p).field("vR").metadata[b"unit"] == b"km/s"
    f = write_catalogue(t, tmp_path / "c.fits")
    with fits.open(f) as h:
        cols = h["CATALOGUE"].columns
        assert cols["vR"].unit == "km s-1" and cols["x"].unit == "kpc"
        assert h["CATALOGUE"].header["MSKYMETA"].startswith("{")


def test_deterministic_bytes(tmp_path):
    t = make_table(300)
    for fmt in ("hdf5", "parquet"):
        a = write_catalogue(t, tmp_path / f"a.{fmt}")
        b = write_catalogue(t, tmp_path / f"b.{fmt}")
        assert cio.file_sha256(a) == cio.file_sha256(b), fmt


def test_overwrite_and_atomic_failure(tmp_path, monkeypatch):
    t = make_table(50)
    path = write_catalogue(t, tmp_path / "c.hdf5")
    digest = cio.file_sha256(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_catalogue(t, path)

    def boom(cols, doc, tmp):  # fail half way through writing
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(cio, "_write_hdf5", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_catalogue(make_table(60, seed=1), path, overwrite=True)
    assert cio.file_sha256(path) == digest  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.hdf5"]  # temporary removed
    monkeypatch.undo()
    write_catalogue(make_table(60, seed=1), path, overwrite=True)
    assert len(read_catalogue(path)) == 60


def test_bad_input_errors(tmp_path):
    t = make_table(5)
    with pytest.raises(ValueError, match="suffix '.csv'"):
        write_catalogue(t, tmp_path / "c.csv")
    with pytest.raises(ValueError, match="format='votable' is not supported"):
        write_catalogue(t, tmp_path / "c.hdf5", format="votable")
    with pytest.raises(TypeError, match=r"meta\['bad'\].*cannot be stored as JSON"):
        write_catalogue(StarTable({"x": np.zeros(3)}, meta={"bad": object()}), tmp_path / "m.hdf5")
    assert not (tmp_path / "m.hdf5").exists()
    with pytest.raises(TypeError, match="column 'name' has dtype"):
        write_catalogue({"name": np.array(["a", "b"])}, tmp_path / "s.hdf5")
    with pytest.raises(ValueError, match="length 2 differs"):
        write_catalogue({"x": np.zeros(3), "y": np.zeros(2)}, tmp_path / "l.hdf5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_catalogue(t, tmp_path / "nodir" / "c.hdf5")
    with pytest.raises(ValueError, match="case-insensitive"):
        write_catalogue({"a": np.zeros(2), "A": np.zeros(2)}, tmp_path / "c.fits")
    path = write_catalogue(t, tmp_path / "ok.parquet")
    with pytest.raises(KeyError, match="no column"):
        read_catalogue(path, columns=["x", "nope"])
    # non-schema columns are fine (strict=False on reading)
    p2 = write_catalogue({"x": np.arange(3.0), "my_weight": np.ones(3)}, tmp_path / "w.hdf5")
    back = read_catalogue(p2)
    assert back.strict is False and list(back) == ["x", "my_weight"] and back.meta == {}


def test_real_gaia_fits_file_read_by_both(shared_data):
    path = shared_data / "observed" / "gaia_small" / "gdr3_sm.fits"
    cols = ["source_id", "ra", "dec", "parallax", "pmra", "phot_g_mean_mag", "radial_velocity"]
    t = read_catalogue(path, columns=cols)
    assert len(t) == 1000 and np.isnan(t["radial_velocity"]).sum() == 976
    df = open_vaex(path)
    try:
        for k in cols:
            np.testing.assert_array_equal(vaex_values(df, k), t[k], err_msg=k)
    finally:
        df.close()


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_partitioned_dataset_opens_as_one_table(tmp_path, fmt):
    d = tmp_path / "run"
    parts = [make_table(n, seed=i) for i, n in enumerate([120, 0 + 75, 200])]
    infos = [write_part(p, d, i, format=fmt) for i, p in reversed(list(enumerate(parts)))]
    man_path = write_manifest(d, infos, meta={"recipe": "r", "seed": 7})
    man = verify_manifest(man_path)
    assert man["total_rows"] == 395 and [p["file"] for p in man["parts"]] == [
        f"part-{i:05d}.{fmt}" for i in range(3)]
    assert man["meta"] == {"recipe": "r", "seed": 7} and man["columns"]["vR"]["unit"] == "km/s"
    # scanning the directory gives the same manifest
    man2_path = write_manifest(d, name="manifest2.json")
    man2 = json.loads(man2_path.read_text())
    assert man2["parts"] == man["parts"] and man2["meta"]["recipe"] == "test_recipe"
    full = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    for src in (d, man_path, str(d / f"part-*.{fmt}")):
        df = open_vaex(src)
        try:
            assert len(df) == 395
            for k in ("source_id", "vR", "is_remnant", "feh"):
                np.testing.assert_array_equal(vaex_values(df, k), full[k], err_msg=f"{src} {k}")
        finally:
            df.close()
    back = read_catalogue(d, verify=True)
    for k in full:
        np.testing.assert_array_equal(back[k], full[k])
    assert back.meta["seed"] == 7


def test_manifest_detects_missing_truncated_corrupted(tmp_path):
    d = tmp_path / "run"
    infos = [write_part(make_table(100, seed=i), d, i) for i in range(4)]
    write_manifest(d, infos)
    verify_manifest(d)
    p0, p1, p2 = (d / infos[i].file for i in range(3))
    # truncate part 0, flip one byte of part 1 (same size), delete part 2
    data = p0.read_bytes()
    p0.write_bytes(data[: len(data) // 2])
    b = bytearray(p1.read_bytes())
    b[-100] ^= 0xFF
    p1.write_bytes(bytes(b))
    os.remove(p2)
    with pytest.raises(CatalogueIntegrityError) as e:
        verify_manifest(d)
    msg = str(e.value)
    assert "part-00000.hdf5: truncated" in msg and "part-00001.hdf5: corrupted" in msg
    assert "part-00002.hdf5: missing" in msg and "part-00003" not in msg and len(e.value.problems) == 3
    # without checksums the flipped byte goes unnoticed, the others not
    with pytest.raises(CatalogueIntegrityError) as e:
        verify_manifest(d, checksums=False)
    assert len(e.value.problems) == 2
    with pytest.raises(CatalogueIntegrityError):
        open_vaex(d)
    with pytest.raises(CatalogueIntegrityError):
        read_catalogue(d)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_part_in_dataset(tmp_path, fmt):
    d = tmp_path / "run"
    t = make_table(30)
    infos = [write_part(t.select(slice(0, 20)), d, 0, format=fmt), write_part(t.select(slice(0, 0)), d, 1, format=fmt),
             write_part(t.select(slice(20, 30)), d, 2, format=fmt)]
    write_manifest(d, infos)
    assert [p["rows"] for p in verify_manifest(d)["parts"]] == [20, 0, 10]
    df = open_vaex(d)
    try:
        np.testing.assert_array_equal(vaex_values(df, "vR"), t["vR"])
    finally:
        df.close()
    np.testing.assert_array_equal(read_catalogue(d)["source_id"], t["source_id"])


def test_manifest_rejects_inconsistent_parts(tmp_path):
    d = tmp_path / "run"
    a = write_part(make_table(10), d, 0)
    t = make_table(10)
    del t["feh"]
    b = write_part(t, d, 1)
    with pytest.raises(ValueError, match="differing from"):
        write_manifest(d, [a, b])
    with pytest.raises(ValueError, match="no parts"):
        write_manifest(tmp_path, [])
    with pytest.raises(ValueError, match="prefix"):
        write_part(make_table(3), d, 2, prefix="a/b")
