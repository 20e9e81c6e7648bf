"""N-body snapshot writers: files re-read by independent readers (h5py, numpy.loadtxt) give back the
particles exactly; Gadget-4 header and particle-type mapping; atomic writes."""
import json
import os

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from mocksky.export import export_nbody, gadget_part_types, write_gadget4, write_text
from mocksky.export import nbody as NB
from mocksky.model.sampling import Particles

NAMES = ("dark halo", "bulge", "stellar halo", "young disk", "highA disk")


@pytest.fixture()
def particles():
    rng = np.random.default_rng(42)
    counts = [50, 20, 7, 13, 10]
    comp = np.repeat(np.arange(5), counts).astype(np.int32)
    perm = rng.permutation(len(comp))  # components interleaved, as a reader must not rely on order
    comp = comp[perm]
    n = len(comp)
    posvel = np.column_stack([rng.normal(0, 10, (n, 3)), rng.normal(0, 150, (n, 3))])
    mass = np.array([9.8e9, 4.07e7, 4.1e7, 4.075e7, 4.0734e7])[comp] * (1 + 1e-13 * rng.random(n))
    actions = rng.random((n, 3)) * 100
    return Particles(posvel, mass, comp, actions, NAMES)


def _read_gadget(path):
    out = {}
    with h5py.File(path, "r") as f:
        hdr = dict(f["Header"].attrs)
        for t in range(6):
            g = f"PartType{t}"
            if g in f:
                out[t] = {k: f[g][k][()] for k in ("Coordinates", "Velocities", "Masses", "ParticleIDs")}
        meta = {k: json.loads(v) for k, v in f["mocksky"].attrs.items() if k != "units"}
        par = dict(f["Parameters"].attrs)
    return hdr, out, meta, par


def test_gadget4_roundtrip_exact(particles, tmp_path):
    path = export_nbody(particles, tmp_path / "snap.hdf5", format="gadget4")
    hdr, data, meta, par = _read_gadget(path)
    types = {"dark halo": 1, "bulge": 3, "stellar halo": 4, "young disk": 2, "highA disk": 2}
    assert meta["part_types"] == types
    expected = np.array([types[NAMES[c]] for c in particles.component])
    counts = np.bincount(expected, minlength=6)
    assert list(hdr["NumPart_ThisFile"]) == list(counts) and list(hdr["NumPart_Total"]) == list(counts)
    assert hdr["NumPart_Total"].dtype == np.uint64 and hdr["NumPart_ThisFile"].dtype == np.uint32
    assert list(hdr["MassTable"]) == [0.0] * 6
    assert hdr["Time"] == 0.0 and hdr["Redshift"] == 0.0 and hdr["BoxSize"] == 0.0 and hdr["NumFilesPerSnapshot"] == 1
    assert hdr["UnitLength_in_cm"] == pytest.approx(3.0856775814913673e21, rel=1e-15)
    assert hdr["UnitMass_in_g"] == pytest.approx(1.988409870698051e33, rel=1e-15)
    assert hdr["UnitVelocity_in_cm_per_s"] == 1e5
    assert par["UnitLength_in_cm"] == hdr["UnitLength_in_cm"]
    # every particle comes back bit-identical, in its type group
    ids = np.concatenate([data[t]["ParticleIDs"] for t in sorted(data)])
    assert np.array_equal(np.sort(ids), np.arange(1, len(particles) + 1))
    for t, d in data.items():
        sel = np.flatnonzero(expected == t)
        # within a type the writer keeps the particles ordered by (component, original index)
        sel = sel[np.lexsort((sel, particles.component[sel]))]
        assert np.array_equal(d["Coordinates"], particles.posvel[sel, :3])
        assert np.array_equal(d["Velocities"], particles.posvel[sel, 3:])
        assert np.array_equal(d["Masses"], particles.mass[sel])
        assert d["Coordinates"].dtype == np.float64 and d["ParticleIDs"].dtype == np.uint32
    assert meta["component_counts"]["dark halo"] == 50


def test_gadget4_options(particles, tmp_path):
    path = write_gadget4(particles, tmp_path / "s.hdf5", mass_unit_msun=1e10, double_precision=False, time=0.5,
                         part_types={"bulge": 4, "stellar halo": 5}, id_offset=1000)
    hdr, data, meta, _ = _read_gadget(path)
    assert hdr["UnitMass_in_g"] == pytest.approx(1.988409870698051e43, rel=1e-15) and hdr["Time"] == 0.5
    assert set(data) == {1, 2, 4, 5}
    sel = particles.component == 1
    assert np.allclose(np.sort(data[4]["Masses"]) * 1e10, np.sort(particles.mass[sel]), rtol=1e-7)
    assert data[4]["Coordinates"].dtype == np.float32
    assert np.concatenate([d["ParticleIDs"] for d in data.values()]).min() == 1000


def test_part_type_mapping_errors():
    assert gadget_part_types(["thin disc", "Thick_Disk", "halo", "Stellar Halo"]) == {
        "thin disc": 2, "Thick_Disk": 2, "halo": 1, "Stellar Halo": 4}
    with pytest.raises(ValueError, match="no default Gadget particle type.*'gas cloud'"):
        gadget_part_types(["dark halo", "gas cloud"])
    with pytest.raises(ValueError, match="unknown component"):
        gadget_part_types(["dark halo"], {"bulge": 3})
    with pytest.raises(ValueError, match="0-5"):
        gadget_part_types(["dark halo"], {"dark halo": 7})


def test_text_roundtrip_exact(particles, tmp_path):
    path = export_nbody(particles, tmp_path / "snap.txt", format="text")
    with open(path) as fh:
        first = fh.readline()
    assert first.startswith("#") and "x y z vx vy vz m" in first
    back = np.loadtxt(path)
    assert back.shape == (len(particles), 7)
    assert np.array_equal(back[:, :6], particles.posvel)
    assert np.array_equal(back[:, 6], particles.mass)


def test_hdf5_table_roundtrip(particles, tmp_path):
    path = export_nbody(particles, tmp_path / "table.h5", format="hdf5")
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["component_names"]) == list(NAMES)
        for i, k in enumerate(("x", "y", "z", "vx", "vy", "vz")):
            assert np.array_equal(f[k][()], particles.posvel[:, i])
            assert f[k].attrs["unit"] == ("kpc" if i < 3 else "km/s")
        assert np.array_equal(f["mass"][()], particles.mass) and f["mass"].attrs["unit"] == "Msun"
        assert np.array_equal(f["component"][()], particles.component)
        assert np.array_equal(f["Jphi"][()], particles.actions[:, 2])


def test_mapping_input_and_bad_format(tmp_path):
    p = {"posvel": np.ones((3, 6)), "mass": np.ones(3)}
    back = np.loadtxt(write_text(p, tmp_path / "a.txt"))
    assert back.shape == (3, 7)
    with pytest.raises(ValueError, match="allowed: gadget4, text, hdf5"):
        export_nbody(p, tmp_path / "a.bin", format="nemo-binary")
    with pytest.raises(ValueError, match="posvel"):
        export_nbody({"mass": np.ones(3)}, tmp_path / "b.txt", format="text")
    with pytest.raises(ValueError, match="finite"):
        export_nbody({"posvel": np.full((2, 6), np.nan), "mass": np.ones(2)}, tmp_path / "c.txt", format="text")


@pytest.mark.parametrize("fmt", ["gadget4", "text", "hdf5"])
def test_atomic_write_on_error(particles, tmp_path, monkeypatch, fmt):
    """An error while writing leaves neither a partial file nor a temporary one, and an existing file intact."""
    target = tmp_path / f"out.{fmt}"
    target.write_text("previous content")

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if fmt == "text":
        monkeypatch.setattr(NB.np, "savetxt", boom)
    else:
        monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(OSError, match="simulated"):
        export_nbody(particles, target, format=fmt)
    assert target.read_text() == "previous content"
    assert sorted(os.listdir(tmp_path)) == [target.name]


def test_written_file_permissions(particles, tmp_path):
    path = export_nbody(particles, tmp_path / "perm.txt", format="text")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
