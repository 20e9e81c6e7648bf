#!/usr/bin/env python
"""Stars within 100 pc of the Sun with G < 20 predicted by the BV23 model, against the Gaia Catalogue
of Nearby Stars (Smart et al. 2021, A&A 649, A6: 331,312 objects within 100 pc).

Method
------
* Local mass per component: the mass of each stellar component inside the 100-pc sphere, from (i) the
  DF itself (importance-sampling estimate of the phase-space sampler restricted to the sphere), (ii)
  the built model's density grid integrated over the sphere (vertical profile included), and (iii)
  rho(R0, 0) of the model (``model_report``, BV23 Table 4) times the sphere's volume (uniform
  density). (i) is used for the counts; (ii) and (iii) are printed to show the vertical-profile effect.
* Stars: N_c points are drawn from each component's DF inside the sphere
  (:func:`mocksky.model.sampling.sample_particles`, region = sphere), each standing for M_c / N_c of
  present-day mass; every point gets an age, [Fe/H], [alpha/Fe] from its actions (BV23 Table 6) and the
  expected number of stars with G < 20 at its distance follows exactly from the IMF and the isochrones
  (:func:`mocksky.populate.expected_counts`, mode 'magnitude'). No extinction (E(B-V) < 0.02 within
  100 pc). The Sun: the 'bv23' solar parameters (R0 = 8.27 kpc, z_sun = 0) unless --z-sun is given.
* White dwarfs have no photometry in mocksky (remnants): their number within 100 pc is printed separately.

Prints ``name: value unit`` lines.

Usage: ``python scripts/gcns_count.py [--n 20000] [--seed 1] [--z-sun 0.0]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

GCNS_OBJECTS = 331312
RADIUS = 0.1  # kpc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="DF points per component (default 20000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--z-sun", type=float, default=None, help="height of the Sun [kpc] (default: bv23's 0)")
    ap.add_argument("--limit", type=float, default=20.0, help="G limit (default 20)")
    a = ap.parse_args(argv)

    from mocksky.model.galaxy import GalaxyModel, model_report
    from mocksky.model.sampling import Sphere, sample_particles
    from mocksky.observe.solar import solar_parameters
    from mocksky.populate import expected_counts, load_populations, tag_stars

    t0 = time.perf_counter()
    model = GalaxyModel.load_or_build("bv23")
    pops = load_populations("bv23")
    sp = solar_parameters("bv23")
    if a.z_sun is not None:
        sp = dataclasses.replace(sp, name="bv23-zsun", z_sun=a.z_sun)
    sun = np.array(sp.position)
    rep = model_report("bv23")
    rng = np.random.default_rng(a.seed)
    vol_pc3 = 4.0 / 3.0 * np.pi * (RADIUS * 1e3) ** 3

    # density-grid integral over the sphere (uniform points)
    nmc = 400000
    r = RADIUS * rng.random(nmc) ** (1 / 3)
    v = rng.normal(size=(nmc, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    xyz = sun + r[:, None] * v

    total = total_err2 = total_m01 = 0.0
    n_all = n_wd = n_living = 0.0
    print(f"gcns_objects_100pc: {GCNS_OBJECTS} objects")
    print(f"sun_position: ({sun[0]:.4f}, {sun[1]:.4f}, {sun[2]:.4f}) kpc")
    print("extinction: 0 mag (assumed within 100 pc)")
    for name in pops:
        cp = pops[name]
        df = model.dfs[name]
        P = sample_particles(model.potential, [df], model.action_finder(), a.n,
                             densities=[model.component(name).density], region=Sphere(tuple(sun), RADIUS),
                             rng=rng)
        M_df = float(P.mass.sum())
        M_grid = float(np.mean(model.density(xyz, name)) * vol_pc3 * 1e-9)
        rho0 = rep["components"][name]["rho_R0_Msun_pc3"]
        lam = expected_counts(P, pops, mode="magnitude", limit=a.limit, band="G", solar=sp, rng=rng)
        lam01 = expected_counts(P, pops, mode="magnitude", limit=a.limit, band="G", solar=sp, m_min=0.1, rng=rng)
        vol = expected_counts(P, pops, mode="volume", rng=rng)
        N, err = float(lam.sum()), float(lam.std() * np.sqrt(len(lam)))
        # remnant / white-dwarf fraction among all stars >= 0.08 Msun (10 draws per point)
        tags = tag_stars(cp, np.repeat(P.actions, 10, axis=0), rng=rng)
        f_wd = float(np.mean(tags["phase"] == 10))
        f_rem = float(np.mean(tags["is_remnant"]))
        key = name.replace(" ", "_")
        print(f"{key}_mass_df_sphere: {M_df:.1f} Msun")
        print(f"{key}_mass_density_grid_sphere: {M_grid:.1f} Msun")
        print(f"{key}_mass_uniform_rho0_sphere: {rho0 * vol_pc3:.1f} Msun")
        print(f"{key}_stars_G_lt_{a.limit:g}: {N:.0f} +- {err:.0f} stars")
        total += N
        total_err2 += err ** 2
        total_m01 += N - float(lam01.sum())
        n_all += float(vol.sum())
        n_wd += float(vol.sum()) * f_wd
        n_living += float(vol.sum()) * (1 - f_rem)
    print(f"model_stars_G_lt_{a.limit:g}_100pc: {total:.0f} +- {np.sqrt(total_err2):.0f} stars")
    print(f"model_over_gcns: {total / GCNS_OBJECTS:.3f}")
    print(f"model_stars_0.08_to_0.1_Msun_G_lt_{a.limit:g}: {total_m01:.0f} stars (extrapolated isochrone range)")
    print(f"model_living_stars_100pc_all_G: {n_living:.0f} stars")
    print(f"model_white_dwarfs_100pc: {n_wd:.0f} stars (no photometry in mocksky)")
    print(f"model_all_stars_and_remnants_100pc: {n_all:.0f} objects")
    print(f"runtime: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
