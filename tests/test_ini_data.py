import numpy as np
import pytest

from mocksky import data
from mocksky.model.ini import parse_ini, read_ini, write_ini
from mocksky.model.potential import Disk, Spheroid, density_from_section
from mocksky.model.registry import MODELS, resolve_model_file


def test_read_bv23_ini(bv23_ini):
    ini = read_ini(bv23_ini)
    assert [s.label for s in ini.of_kind("Potential")] == ["thin disk", "thick disk", "gas disk", "dark halo", "bulge"]
    assert len(ini.of_kind("DF")) == 7
    halo = ini.get("DF", "dark halo")
    assert halo.get_str("type") == "NewDoublePowerLaw"
    assert halo.get_float("mass") == pytest.approx(0.98e12)
    assert halo.get_float("SLOPEIN") == 1.6  # keys are case-insensitive
    scm = ini.get("SelfConsistentModel", "")
    assert scm.get_int("sizeRadialCyl") == 30 and scm.get_bool("useActionInterpolation") is False
    assert ini.get("Data").get_float("SolarRadius") == 8.27


def test_bv24_lowercase_key(shared_data):
    ini = read_ini(shared_data / "models" / "bv24_m0" / "m.ini")
    assert ini.get("DF", "dark halo").get_float("Jcutoff") == 20000  # written 'jcutoff' in the file


def test_ini_roundtrip(tmp_path, bv23_ini):
    ini = read_ini(bv23_ini)
    out = tmp_path / "copy.ini"
    write_ini(ini, out)
    again = read_ini(out)
    assert [(s.header, s.items) for s in again] == [(s.header, s.items) for s in ini]
    assert [p.name for p in tmp_path.iterdir()] == ["copy.ini"]  # no temporary left behind


def test_ini_errors_name_the_line():
    with pytest.raises(ValueError, match=":2: expected 'key = value'"):
        parse_ini("[Potential a]\nnonsense line\n")
    with pytest.raises(ValueError, match="before the first"):
        parse_ini("mass = 1\n")
    sec = parse_ini("[Potential a]\ntype = Disk\nscaleRadius = two\n").get("Potential", "a")
    with pytest.raises(ValueError, match=r"\[Potential a\] scaleRadius = 'two': expected a number"):
        sec.get_float("scaleRadius")


def test_density_sections_and_masses(bv23_ini):
    ini = read_ini(bv23_ini)
    gas = density_from_section(ini.get("Potential", "gas disk"))
    assert isinstance(gas, Disk)
    # BV23 eq. 16: the gas disc has mass 1.04e10 Msun (dynamics spec)
    assert gas.total_mass() == pytest.approx(1.04e10, rel=5e-3)
    halo = density_from_section(ini.get("Potential", "dark halo"))
    assert isinstance(halo, Spheroid) and halo.spherical
    bulge = density_from_section(ini.get("Potential", "bulge"))
    assert not bulge.spherical and bulge.q == 0.5
    with pytest.raises(ValueError, match="unknown key"):
        density_from_section(parse_ini("[Potential x]\ntype = Disk\nsurfaceDensity = 1\nscaleHieght = 1\n").get("Potential", "x"))


def test_disk_profiles_normalised():
    from scipy import integrate
    for h in (0.3, -0.3):
        d = Disk(1.0, 2.0, h)
        zint, _ = integrate.quad(lambda z: float(d.vertical(z)), -np.inf, np.inf)
        assert zint == pytest.approx(1.0, rel=1e-10)
    assert Disk(5e8, 2.5, -0.18).total_mass() == pytest.approx(2 * np.pi * 5e8 * 2.5**2, rel=1e-9)


def test_spheroid_hernquist_mass():
    # gamma=1, beta=4, alpha=1 is the Hernquist profile, total mass 2 pi rho0 a^3
    s = Spheroid(1e8, 3.0, gamma=1, beta=4, alpha=1)
    assert s.total_mass() == pytest.approx(2 * np.pi * 1e8 * 27, rel=1e-8)
    with pytest.raises(ValueError, match="outerCutoffRadius"):
        Spheroid(1e8, 3.0, gamma=1, beta=3)


def test_data_locator(tmp_path, monkeypatch):
    assert data.find("models/bv23/SCM_MW.ini").is_file()  # package data
    assert data.find("isochrones").is_dir()  # development tree ../shared/data
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    (tmp_path / "empty.fits").write_bytes(b"")  # a failed download
    (tmp_path / "x.txt").write_text("ok")
    assert data.find("x.txt") == tmp_path / "x.txt"
    with pytest.raises(data.DataNotFoundError, match="(?s)empty.fits.*MOCKSKY_DATA"):
        data.find("empty.fits")


def test_model_registry():
    assert set(MODELS) >= {"bv23", "bv24_m0"}
    assert resolve_model_file("BV23").name == "SCM_MW.ini"
    with pytest.raises(FileNotFoundError, match="bv23"):
        resolve_model_file("bv99")
