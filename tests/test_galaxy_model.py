"""Self-consistent models: grid densities, component mapping, iteration, caching, report."""
import json

import numpy as np
import pytest

from mocksky.model.galaxy import (CylindricalGridDensity, GalaxyModel, SphericalGridDensity, components_from_ini,
                                  model_report)
from mocksky.model.galaxy.selfconsistent import grid_points
from mocksky.model.ini import parse_ini, read_ini
from mocksky.model.potential import Disk, Spheroid
from mocksky.model.registry import resolve_model_file

SMALL_INI = """
[Potential guess]
type = Spheroid
densityNorm = 1.27e8
scaleRadius = 5
gamma = 1
beta = 4

[DF halo]
type = DoublePowerLaw
mass = 1e11
J0 = 1500
slopeIn = 1.0
slopeOut = 5.0
Jcore = 0

[SelfConsistentModel halo]
rminSph = 0.05
rmaxSph = 300
sizeRadialSph = 20
lmaxAngularSph = 0

[SelfConsistentModel]
rminSph = 0.01
rmaxSph = 1000
sizeRadialSph = 30
lmaxAngularSph = 0
useActionInterpolation = False

[Data]
SolarRadius = 8
"""


# --------------------------------------------------------------------------- grid densities
def test_cylindrical_grid_density_exponential_disc():
    disc = Disk(1e9, 2.5, 0.3)
    g = dict(Rmin=0.1, Rmax=30.0, nR=20, zmin=0.05, zmax=10.0, nz=16)
    probe = CylindricalGridDensity(**g, values=np.ones((20, 16)))
    vals = disc._density(probe.Rnodes[:, None], probe.znodes[None, :])
    dens = CylindricalGridDensity(**g, values=vals)
    R = np.array([0.37, 1.3, 4.4, 8.27, 13.0, 22.0])
    z = np.array([0.02, 0.13, 0.5, 1.1, 2.7, 6.0])
    RR, ZZ = np.meshgrid(R, z, indexing="ij")
    np.testing.assert_allclose(dens._density(RR, ZZ), disc._density(RR, ZZ), rtol=3e-3)
    assert dens._density(np.array([31.0]), np.array([0.0]))[0] == 0.0       # zero outside the grid
    assert dens._density(np.array([1.0]), np.array([-10.5]))[0] == 0.0
    # a component that vanishes on the axis (disc DFs): bilinear next to the zeros, no negative values
    vals0 = vals.copy()
    vals0[0] = 0.0
    d0 = CylindricalGridDensity(**g, values=vals0)
    v = d0._density(np.linspace(0, 0.3, 31), np.full(31, 0.1))
    assert np.all(v >= 0) and v[0] == 0.0 and v[-1] > 0
    assert abs(dens.total_mass() / disc.total_mass() - 1) < 5e-3   # most of the mass is inside the grid
    with pytest.raises(ValueError, match="shape"):
        CylindricalGridDensity(**g, values=np.ones((3, 3)))


def test_spherical_grid_density_flattened_spheroid():
    sph = Spheroid(1e8, 5.0, gamma=1.0, beta=4.0, axis_ratio_z=0.85)
    r = np.geomspace(0.1, 500, 40)
    x, _ = np.polynomial.legendre.leggauss(3)
    mu = 0.5 * (x + 1)
    rr, mm = np.meshgrid(r, mu, indexing="ij")
    vals = sph._density(rr * np.sqrt(1 - mm**2), rr * mm)
    dens = SphericalGridDensity(r, mu, vals, lmax=4)
    R = np.array([0.3, 2.0, 7.0, 30.0, 100.0])
    for ang in (0.1, 0.7, 1.4):
        np.testing.assert_allclose(dens._density(R * np.cos(ang), R * np.sin(ang)),
                                   sph._density(R * np.cos(ang), R * np.sin(ang)), rtol=1e-2)
    assert abs(dens.total_mass() / sph.total_mass() - 1) < 2e-3
    with pytest.raises(ValueError, match="Gauss-Legendre"):
        SphericalGridDensity(r, np.array([0.1, 0.5, 0.9]), vals, lmax=4)


# --------------------------------------------------------------------------- component mapping
def test_components_of_builtin_models():
    bv23 = components_from_ini(read_ini(resolve_model_file("bv23")))
    kinds = {c.name: (c.grid_kind, c.grid_section, c.is_df) for c in bv23}
    assert kinds["dark halo"] == ("spherical", "SelfConsistentModel halo", True)
    for n in ("bulge", "stellar halo", "young disk", "middle disk", "old disk", "highA disk"):
        assert kinds[n] == ("cylindrical", "SelfConsistentModel disk", True)
    assert kinds["gas disk"] == ("cylindrical", "Potential gas disk", False)
    assert "thin disk" not in kinds
    pts, shape, _ = grid_points([c for c in bv23 if c.name == "young disk"][0])
    assert shape == (20, 16) and pts.shape == (320, 3) and pts[0, 0] == 0 and pts[1, 2] == pytest.approx(0.05)
    pts, shape, _ = grid_points(bv23[0])
    assert shape == (50, 3)


MAPPING_INI = """
[Potential gas disk]
type = Disk
surfaceDensity = 1e8
scaleRadius = 5
scaleHeight = -0.06
[DF dark halo]
type = DoublePowerLaw
mass = 1e12
J0 = 10000
slopeIn = 1.5
slopeOut = 5
[DF bulge]
type = NewExponential
mass = 1e10
Jr0 = 100
Jz0 = 30
Jphi0 = 120
[DF thin disk]
type = NewExponential
mass = 3e10
Jr0 = 20
Jz0 = 3
Jphi0 = 600
[SelfConsistentModel halo]
rminSph = 0.1
rmaxSph = 500
sizeRadialSph = 30
lmaxAngularSph = 4
[SelfConsistentModel bulge]
rminSph = 0.01
rmaxSph = 4
sizeRadialSph = 30
lmaxAngularSph = 4
[SelfConsistentModel disk]
RminCyl = 0.1
RmaxCyl = 30
sizeRadialCyl = 20
zminCyl = 0.05
zmaxCyl = 10
sizeVerticalCyl = 16
"""


def test_component_mapping_bv24_style():
    """A [SelfConsistentModel <label>] section named like the DF (BV24's bulge) takes precedence."""
    comps = {c.name: c for c in components_from_ini(parse_ini(MAPPING_INI))}
    assert comps["bulge"].grid_kind == "spherical" and comps["bulge"].grid["rmaxSph"] == 4.0
    assert comps["dark halo"].grid_section == "SelfConsistentModel halo"
    assert comps["thin disk"].grid_kind == "cylindrical"
    assert comps["gas disk"].static is not None and comps["gas disk"].grid_kind == "cylindrical"
    pts, shape, _ = grid_points(comps["bulge"])
    assert shape == (30, 3) and np.allclose(np.linalg.norm(pts, axis=1)[::3], np.geomspace(0.01, 4, 30))


def test_component_errors():
    ini = parse_ini(SMALL_INI.replace("[SelfConsistentModel halo]", "[SelfConsistentModel other]"))
    with pytest.raises(ValueError, match="no grid section"):
        components_from_ini(ini)
    ini = parse_ini(SMALL_INI.replace("sizeRadialSph = 20\n", ""))
    with pytest.raises(ValueError, match="rminSph"):
        components_from_ini(ini)
    with pytest.raises(ValueError, match="no \\[DF"):
        components_from_ini(parse_ini("[Potential a]\ntype = Plummer\nmass = 1\n"))


# --------------------------------------------------------------------------- small self-consistent model
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    path = d / "small.ini"
    path.write_text(SMALL_INI)
    model = GalaxyModel.load_or_build(path, cache_dir=d / "cache", max_iterations=8)
    return path, d / "cache", model


def test_small_model_iteration(small):
    _, _, model = small
    recs = model.iterations
    assert len(recs) == 8                         # converges by a factor ~2 per iteration
    assert all(b.delta_phi < 0.7 * a.delta_phi for a, b in zip(recs[:-1], recs[1:]))
    assert recs[-1].delta_phi < 3e-3
    assert all(r.n_actions > 0 and r.t_total > 0 for r in recs)
    # the DF's mass is recovered by its grid density (grid 0.05-300 kpc, power-law continuations)
    assert model.component("halo").density.total_mass() == pytest.approx(1e11, rel=1e-2)
    # self-consistency: density of the final potential vs the DF's density in it
    pts = np.array([[0.5, 0, 0], [3.0, 0, 0], [8.0, 0, 4.0], [40.0, 0, 0]])
    _, mom = model.moments(pts, second=False)
    rho_pot = model.potential.density(pts)
    np.testing.assert_allclose(rho_pot, mom.density[:, 0], rtol=1e-2)
    np.testing.assert_allclose(model.density(pts, "halo"), mom.density[:, 0], rtol=1e-2)


def test_small_model_cache_roundtrip(small, monkeypatch):
    path, cache, model = small
    files = list(cache.glob("small-*.npz"))
    assert len(files) == 1

    def fail(*a, **k):
        raise AssertionError("should load from the cache")

    monkeypatch.setattr(GalaxyModel, "build", classmethod(fail))
    again = GalaxyModel.load_or_build(path, cache_dir=cache, max_iterations=8)
    R = np.geomspace(0.01, 500, 30)
    np.testing.assert_array_equal(again.potential._phi(R, 0.3 * R), model.potential._phi(R, 0.3 * R))
    np.testing.assert_array_equal(again.density(np.column_stack([R, 0 * R, 0 * R]), "halo"),
                                  model.density(np.column_stack([R, 0 * R, 0 * R]), "halo"))
    assert [r.as_dict() for r in again.iterations] == [r.as_dict() for r in model.iterations]
    assert again.R0 == 8.0
    # another option set is another cache entry
    assert GalaxyModel.cache_key(path, max_iterations=8) != GalaxyModel.cache_key(path, max_iterations=4)
    assert GalaxyModel.cache_key(path) == GalaxyModel.cache_key(path, max_iterations=4, tol=1e-4)
    with pytest.raises(KeyError, match="halo"):
        model.component("nope")


def test_small_model_report(small):
    path, cache, model = small
    rep = model_report(path, cache_dir=cache, max_iterations=8)
    json.dumps(rep)
    assert rep["R_kpc"][4] == 8.27 and len(rep["vc_kms"]) == len(rep["R_kpc"])
    np.testing.assert_allclose(rep["vc_kms"], model.potential.vcirc(np.array(rep["R_kpc"])))
    c = rep["components"]["halo"]
    assert c["mass_Msun"] == pytest.approx(1e11)
    assert c["rho_R0_Msun_pc3"] > 0 and c["Sigma_R0_1.1kpc_Msun_pc2"] > 2 * 1.1e3 * c["rho_R0_Msun_pc3"] * 0.9
    # for a spherical model Kz(z)/(2 pi G) ~ Sigma(|z|<z) + z/R d(vc^2)/dR / (2 pi G) (BV23 eq. 17): positive
    assert rep["Kz_1.1kpc_over_2piG_Msun_pc2"] > 0
    for key in ("iterations", "build_seconds", "totals"):
        assert key in rep


def test_bad_build_options():
    with pytest.raises(ValueError, match="max_iterations"):
        GalaxyModel.build(parse_ini(SMALL_INI), max_iterations=0)
    with pytest.raises(FileNotFoundError):
        GalaxyModel.build("no_such_model")


def test_action_interpolation_option():
    """useActionInterpolation = True (or the build option) selects the interpolated Staeckel fudge."""
    from mocksky.model.actions.interpolated import InterpolatedStaeckelFudge

    ini = parse_ini(SMALL_INI.replace("useActionInterpolation = False", "useActionInterpolation = True"))
    model = GalaxyModel.build(ini, max_iterations=1)
    assert model.use_action_interpolation and isinstance(model.action_finder(), InterpolatedStaeckelFudge)
    assert model.component("halo").density.total_mass() == pytest.approx(1e11, rel=1e-2)
    assert not GalaxyModel.build(ini, max_iterations=1, use_action_interpolation=False).use_action_interpolation


def test_cli_model_report(small, capsys):
    """`mocksky model report FILE --json` prints the report of the cached model; the table form prints v_c."""
    from mocksky.cli import main

    path, cache, model = small
    assert main(["model", "report", str(path), "--json", "--cache-dir", str(cache), "--iterations", "8"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["components"]["halo"]["mass_Msun"] == pytest.approx(1e11)
    assert main(["model", "report", str(path), "--cache-dir", str(cache), "--iterations", "8"]) == 0
    out = capsys.readouterr().out
    assert "v_c[km/s]" in out and "halo" in out


def test_cli_model_sample_exports_text_snapshot(small, tmp_path, capsys):
    """`mocksky model sample` draws particles from the cached model and writes an N-body file."""
    from mocksky.cli import main

    path, cache, model = small
    out = tmp_path / "ics.txt"
    assert main(["model", "sample", str(path), "--n", "3000", "--out", str(out), "--format", "text",
                 "--cache-dir", str(cache), "--seed", "3"]) == 0
    assert "sampled 3000 particles" in capsys.readouterr().out
    snap = np.loadtxt(out)
    assert snap.shape == (3000, 7)
    assert snap[:, 6].sum() == pytest.approx(1e11, rel=1e-6)  # particle masses add up to the DF mass
