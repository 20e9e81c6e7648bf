"""mocksky's build of the BV24 model M0 against the published M0's own moments.

Reference: GalacticDynamics-Oxford/AgamaChemo (commit 008de715), file ``M0/stellar_dens.radial``, written by the
authors' Agama build of M0 (Binney & Vasiliev 2024, MNRAS 527, 1915): per stellar component at z = 0, the density
[Msun/pc^3], the mean v_phi and the dispersions sigma_R, sigma_z, sigma_phi [km/s]. Component order there: young,
middle, old, high-alpha disc, stellar halo (the bulge is negligible at these radii and left out).

Measured (mocksky 4 iterations, the bulge on the disc grid as in the authors' getPhi.cpp): densities within 2.4 %,
dispersions within 0.6 %, mean v_phi within 0.85 km/s (our v_c is 0.3-0.8 km/s below the published rotation curve
at 4-20 kpc). Tolerances: density 4 % (the thick components' outer tails depend on how far the iteration has
settled), dispersions 1.5 %, mean v_phi 1.5 km/s. With the bulge on its own lmax = 4 spherical grid instead, the
bulge lost 7 % of its mass, v_c fell 16 km/s short at 1 kpc and 2.2 km/s at the Sun, and this test failed.
"""
import numpy as np
import pytest

from mocksky.model.galaxy import GalaxyModel

NAMES = ["young disk", "middle disk", "old disk", "highA disk", "stellar halo"]
# R [kpc]: (density [Msun/pc^3], <v_phi>, sigma_R, sigma_z, sigma_phi [km/s]) per component, in NAMES order
PUBLISHED = {
    4.5: {"rho": [0.0531273, 0.0659696, 0.0257732, 0.0158661, 0.000169933],
          "vphi": [235.885, 229.363, 214.787, 179.922, 0.00222217],
          "sR": [15.3335, 43.1281, 56.0455, 82.0384, 144.895],
          "sz": [12.2865, 21.8906, 45.2379, 61.1869, 106.558],
          "sphi": [10.7117, 30.938, 43.308, 68.0398, 107.288]},
    8.5: {"rho": [0.013242, 0.0156403, 0.00289788, 0.00119487, 1.95024e-05],
          "vphi": [232.579, 226.871, 215.825, 182.282, 0.00175391],
          "sR": [13.7426, 32.5998, 40.3479, 59.1401, 136.15],
          "sz": [9.79767, 18.1689, 32.8737, 42.7127, 92.8171],
          "sphi": [9.51673, 22.9655, 29.6223, 44.8101, 99.1561]},
    10.5: {"rho": [0.00692129, 0.00806012, 0.00103504, 0.000262258, 8.95356e-06],
           "vphi": [230.012, 224.71, 214.593, 169.169, 0.00289594],
           "sR": [13.1459, 29.539, 35.9158, 53.9767, 133.07],
           "sz": [8.84021, 16.706, 29.0223, 37.5003, 88.078],
           "sphi": [9.00351, 20.5891, 26.0646, 34.323, 96.5181]},
}


@pytest.fixture(scope="module")
def m0_moments(tmp_path_factory):
    model = GalaxyModel.load_or_build("bv24_m0", cache_dir=tmp_path_factory.mktemp("m0cache"))
    R = np.array(sorted(PUBLISHED))
    names, mo = model.moments(np.column_stack([R, np.zeros_like(R), np.zeros_like(R)]), components=NAMES)
    assert names == NAMES
    assert model.grids == {"bulge": "disk"} and model.component("bulge").grid_section == "SelfConsistentModel disk"
    return R, mo


def test_m0_grid_assignment():
    """The built-in M0 puts its bulge on the disc grid (AgamaChemo getPhi.cpp), and builds record it."""
    from mocksky.model.galaxy import components_from_ini
    from mocksky.model.ini import read_ini
    from mocksky.model.registry import MODELS

    ini = read_ini(MODELS["bv24_m0"].path)
    default = {c.name: c.grid_section for c in components_from_ini(ini)}
    assert default["bulge"] == "SelfConsistentModel bulge"
    over = {c.name: c.grid_section for c in components_from_ini(ini, MODELS["bv24_m0"].grids)}
    assert over["bulge"] == "SelfConsistentModel disk" and over["dark halo"] == "SelfConsistentModel halo"
    with pytest.raises(ValueError, match="no \\[DF bulgee\\]"):
        components_from_ini(ini, {"bulgee": "disk"})
    with pytest.raises(ValueError, match="no \\[SelfConsistentModel disc\\]"):
        components_from_ini(ini, {"bulge": "disc"})


@pytest.mark.slow
def test_m0_moments_match_published(m0_moments):
    R, mo = m0_moments
    for i, r in enumerate(R):
        ref = PUBLISHED[float(r)]
        rho = mo.density[i] / 1e9  # Msun/kpc^3 -> Msun/pc^3
        np.testing.assert_allclose(rho, ref["rho"], rtol=0.04, err_msg=f"density at R={r}")
        disp = np.sqrt(np.diagonal(mo.dispersion[i], axis1=-2, axis2=-1))  # (K, 3): R, z, phi
        np.testing.assert_allclose(disp[:, 0], ref["sR"], rtol=0.015, err_msg=f"sigma_R at R={r}")
        np.testing.assert_allclose(disp[:, 1], ref["sz"], rtol=0.015, err_msg=f"sigma_z at R={r}")
        np.testing.assert_allclose(disp[:, 2], ref["sphi"], rtol=0.015, err_msg=f"sigma_phi at R={r}")
        # discs: mean v_phi to 1.5 km/s; the stellar halo does not rotate (|<v_phi>| < 2 km/s)
        np.testing.assert_allclose(mo.mean_velocity[i, :4, 2], ref["vphi"][:4], atol=1.5, rtol=0,
                                   err_msg=f"vphi at R={r}")
        assert abs(mo.mean_velocity[i, 4, 2]) < 2.0
