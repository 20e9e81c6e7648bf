"""Benchmark: build the BV23 self-consistent model from scratch and print ``name: value unit`` lines.

Usage: python scripts/bench_model.py [--model bv23] [--iterations 4] [--report]

Prints the build wall time, the per-iteration breakdown (action-finder construction, action evaluations,
the rest of the velocity integrals, Poisson solvers), the number of action evaluations and the
relative potential change, and with --report the BV23 Table 4 numbers of the built model.
"""
from __future__ import annotations

import argparse
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bv23", help="built-in model name or INI file (default bv23)")
    ap.add_argument("--iterations", type=int, default=4, help="iterations (default 4, as Agama's example)")
    ap.add_argument("--report", action="store_true", help="also print the Table-4 numbers of the built model")
    ap.add_argument("--n-sample", type=float, default=1e6,
                    help="stellar particles to sample from the six stellar components (default 1e6; 0 = skip)")
    args = ap.parse_args(argv)

    from mocksky.model.galaxy import GalaxyModel, model_report

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        model = GalaxyModel.load_or_build(args.model, cache_dir=cache, max_iterations=args.iterations)
        wall = time.perf_counter() - t0
        print(f"build_wall_time: {wall:.1f} s")
        print(f"build_seconds_model: {model.build_seconds:.1f} s")
        print(f"iterations: {len(model.iterations)} count")
        setup = model.build_seconds - sum(r.t_total for r in model.iterations)
        print(f"setup_time (DFs, initial potential): {setup:.1f} s")
        for r in model.iterations:
            i = r.iteration
            print(f"iter{i}_total: {r.t_total:.1f} s")
            print(f"iter{i}_action_finder: {r.t_finder:.2f} s")
            print(f"iter{i}_actions: {r.t_actions:.1f} s")
            print(f"iter{i}_moments_other: {r.t_moments:.1f} s")
            print(f"iter{i}_poisson: {r.t_poisson:.1f} s")
            print(f"iter{i}_n_actions: {r.n_actions} count")
            print(f"iter{i}_time_per_action: {1e6 * r.t_actions / max(r.n_actions, 1):.2f} us")
            print(f"iter{i}_delta_phi: {r.delta_phi:.3e} relative")
            print(f"iter{i}_vc_R0: {r.vc_R0:.2f} km/s")
        if args.report:
            t1 = time.perf_counter()
            rep = model_report(args.model, cache_dir=cache, max_iterations=args.iterations)
            print(f"report_time: {time.perf_counter() - t1:.1f} s")
            print(f"vc_R0: {rep['vc_R0_kms']:.2f} km/s")
            print(f"Kz_1.1kpc_over_2piG: {rep['Kz_1.1kpc_over_2piG_Msun_pc2']:.2f} Msun/pc^2")
            for label, tot in rep["totals"].items():
                print(f"Sigma_R0_1.1kpc_{label}: {tot['Sigma_R0_1.1kpc_Msun_pc2']:.2f} Msun/pc^2")
                print(f"rho_R0_{label}: {tot['rho_R0_Msun_pc3']:.5f} Msun/pc^3")
            for name, c in rep["components"].items():
                key = name.replace(" ", "_")
                print(f"Sigma_R0_1.1kpc_{key}: {c['Sigma_R0_1.1kpc_Msun_pc2']:.3f} Msun/pc^2")
                print(f"rho_R0_{key}: {c['rho_R0_Msun_pc3']:.5f} Msun/pc^3")
            for R, v in zip(rep["R_kpc"], rep["vc_kms"]):
                print(f"vc_{R:g}kpc: {v:.2f} km/s")
        if args.n_sample > 0:
            from mocksky.model.sampling import sample_galaxy_model

            stellar = [c.name for c in model.components if getattr(c, "is_df", False) and "dark" not in c.name.lower()]
            t2 = time.perf_counter()
            sample_galaxy_model(model, 1000, components=stellar[:1], rng=0)  # builds the sampling finder once
            t3 = time.perf_counter()
            parts = sample_galaxy_model(model, int(args.n_sample), components=stellar, rng=42)
            t4 = time.perf_counter()
            print(f"sample_components: {len(stellar)} count")
            print(f"sample_setup (interpolated action finder of the converged potential): {t3 - t2:.1f} s")
            print(f"sample_{int(args.n_sample):d}_stellar_particles: {t4 - t3:.1f} s")
            print(f"sample_rate: {len(parts.mass) / (t4 - t3):.3g} particles/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
