"""Acceptance: the BV23 model built from SCM_MW.ini reproduces BV23 Table 4 (slow: a full 4-iteration build)."""
import pytest

from mocksky.model.galaxy import model_report

# BV23 Table 4 and Sect. 4.4.2 (Sigma in Msun/pc^2 within |z| < 1.1 kpc, rho in Msun/pc^3 at (R0, 0))
TABLE4 = {"Sigma_all": 61.2, "Sigma_stars": 21.6, "Sigma_dm": 26.0, "Sigma_gas": 13.6,
          "rho_stars": 0.0317, "rho_dm": 0.0121, "Kz": 64.1}


@pytest.mark.slow
def test_bv23_table4(tmp_path):
    rep = model_report("bv23", cache_dir=tmp_path, max_iterations=4)
    comps, tot = rep["components"], rep["totals"]
    got = {"Sigma_all": tot["all"]["Sigma_R0_1.1kpc_Msun_pc2"], "Sigma_stars": tot["stars"]["Sigma_R0_1.1kpc_Msun_pc2"],
           "Sigma_dm": comps["dark halo"]["Sigma_R0_1.1kpc_Msun_pc2"],
           "Sigma_gas": comps["gas disk"]["Sigma_R0_1.1kpc_Msun_pc2"],
           "rho_stars": tot["stars"]["rho_R0_Msun_pc3"], "rho_dm": comps["dark halo"]["rho_R0_Msun_pc3"],
           "Kz": rep["Kz_1.1kpc_over_2piG_Msun_pc2"]}
    for key, ref in TABLE4.items():
        assert got[key] == pytest.approx(ref, rel=0.03), key
    assert rep["vc_R0_kms"] == pytest.approx(237.0, rel=0.01)
    assert rep["R0_kpc"] == 8.27 and rep["iterations"] == 4
    # the iteration converges (relative potential change falls every iteration)
    assert all(b < a for a, b in zip(rep["delta_phi"][:-1], rep["delta_phi"][1:]))
