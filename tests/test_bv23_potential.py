"""The BV23 initial potential built from the [Potential ...] sections of SCM_MW.ini, and the CLI report."""
import json

import numpy as np
import pytest
from scipy import integrate

from mocksky.cli import REPORT_RADII, main
from mocksky.model.potential import Composite, CylSpline, Multipole, load_potential
from mocksky.model.potential.factory import density_from_section
from mocksky.model.ini import read_ini
from mocksky.units import G

from potential_contract import check_potential_contract


@pytest.fixture(scope="module")
def bv23_pot(bv23_ini):
    return load_potential(bv23_ini)


def test_structure_and_contract(bv23_pot):
    assert isinstance(bv23_pot, Composite)
    kinds = sorted(type(c).__name__ for c in bv23_pot.components)
    assert kinds == ["CylSpline", "Multipole"]  # spherical halo -> Multipole; discs + flattened bulge -> CylSpline
    R = np.geomspace(0.3, 40, 40)
    z = np.linspace(-8, 8, 40)
    check_potential_contract(bv23_pot, grad_tol=1e-5, hess_tol=2e-3, rho_tol=2e-2, kernel_tol=5e-5, points=(R, z))


def test_mass_and_vc_against_direct_sums(bv23_pot, bv23_ini):
    """Far away the potential is Keplerian with the total mass of the five profiles; in the plane v_c^2 = R dPhi/dR."""
    ini = read_ini(bv23_ini)
    masses = {s.label: density_from_section(s).total_mass() for s in ini.of_kind("Potential")}
    # the dark halo is truncated at 300 kpc: at r = 3000 kpc essentially all mass is enclosed
    M = sum(masses.values())
    r = 3000.0
    assert -bv23_pot._phi(np.array([r]), np.array([0.0]))[0] * r / G == pytest.approx(M, rel=2e-3)
    # monotonic, plausible Milky-Way-like rotation curve (the converged model has 237 km/s at R0)
    vc = bv23_pot.vcirc(np.array(REPORT_RADII))
    assert np.all((vc > 180) & (vc < 260))


def test_cli_report_json(capsys, bv23_ini):
    assert main(["potential", "report", str(bv23_ini), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    for key in ("R_kpc", "vc_kms", "Phi_km2_s2", "kappa_kms_kpc", "nu_kms_kpc", "Omega_kms_kpc"):
        assert len(rep[key]) == len(REPORT_RADII)
    assert rep["R_kpc"] == list(REPORT_RADII)
    i = rep["R_kpc"].index(8.27)
    assert rep["Omega_kms_kpc"][i] == pytest.approx(rep["vc_kms"][i] / 8.27, rel=1e-12)


def test_cli_report_table_and_errors(capsys):
    assert main(["potential", "report", "bv23"]) == 0
    out = capsys.readouterr().out
    assert "8.27" in out and "v_c[km/s]" in out
    with pytest.raises(SystemExit) as exc:
        main(["potential", "report", "no-such-model"])
    assert exc.value.code == 2
    assert "allowed: ['bv23', 'bv24_m0']" in capsys.readouterr().err


def test_coefficient_files_roundtrip_via_ini(tmp_path, bv23_pot):
    """Save the expansions and reload them through [Potential] sections with type = Multipole / CylSpline."""
    mp = next(c for c in bv23_pot.components if isinstance(c, Multipole))
    cs = next(c for c in bv23_pot.components if isinstance(c, CylSpline))
    mp.to_file(tmp_path / "halo.coef_mul")
    cs.to_file(tmp_path / "disc.coef_cyl")
    (tmp_path / "saved.ini").write_text("[Potential halo]\ntype = Multipole\nfile = halo.coef_mul\n\n"
                                        "[Potential disc]\ntype = CylSpline\nfile = disc.coef_cyl\n")
    again = load_potential(tmp_path / "saved.ini")
    R, z = np.array([0.5, 8.27, 30.0]), np.array([0.1, 1.0, -5.0])
    assert np.array_equal(again._phi(R, z), bv23_pot._phi(R, z))
