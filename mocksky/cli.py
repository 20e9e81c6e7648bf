"""The ``mocksky`` command line: subcommands mirror the pipeline stages."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import List, Optional

import numpy as np

#: Radii of the potential report [kpc] (issue #2; 8.27 kpc is R0 of BV23).
REPORT_RADII = (1.0, 2.0, 4.0, 6.0, 8.27, 10.0, 12.0, 15.0, 20.0)


def potential_report(source, radii=REPORT_RADII) -> dict:
    """In-plane circular speed, potential and epicycle frequencies of a model's potential.

    Parameters
    ----------
    source : str or path
        Built-in model name or Agama INI file (its ``[Potential ...]`` sections).
    radii : sequence of float
        R [kpc].

    Returns
    -------
    dict
        Keys ``R_kpc``, ``vc_kms``, ``Phi_km2_s2``, ``kappa_kms_kpc``, ``nu_kms_kpc``, ``Omega_kms_kpc``
        (lists, one value per radius), ``source`` and ``build_seconds``.
    """
    from .model.potential import load_potential

    t0 = time.perf_counter()
    pot = load_potential(source)
    t1 = time.perf_counter()
    R = np.asarray(radii, dtype=float)
    kappa, nu, Omega = pot.epicycle_frequencies(R)
    return {
        "source": str(source),
        "build_seconds": round(t1 - t0, 3),
        "R_kpc": R.tolist(),
        "vc_kms": pot.vcirc(R).tolist(),
        "Phi_km2_s2": pot._phi(R, np.zeros_like(R)).tolist(),
        "kappa_kms_kpc": kappa.tolist(),
        "nu_kms_kpc": nu.tolist(),
        "Omega_kms_kpc": Omega.tolist(),
    }


def _print_table(rep: dict, out) -> None:
    out.write(f"# potential of {rep['source']} (built in {rep['build_seconds']:.2f} s)\n")
    out.write(f"{'R[kpc]':>8} {'v_c[km/s]':>10} {'Phi[km2/s2]':>13} {'kappa':>9} {'nu':>9} {'Omega':>9}  [km/s/kpc]\n")
    for i, R in enumerate(rep["R_kpc"]):
        out.write(f"{R:8.2f} {rep['vc_kms'][i]:10.2f} {rep['Phi_km2_s2'][i]:13.1f} {rep['kappa_kms_kpc'][i]:9.2f} "
                  f"{rep['nu_kms_kpc'][i]:9.2f} {rep['Omega_kms_kpc'][i]:9.2f}\n")


def _cmd_potential_report(args) -> int:
    rep = potential_report(args.model)
    if args.json:
        json.dump(rep, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print_table(rep, sys.stdout)
    return 0


def _print_model_table(rep: dict, out) -> None:
    out.write(f"# model {rep['model']}: {rep['iterations']} iterations, built/loaded in {rep['build_seconds']:.1f} s\n")
    out.write(f"# R0 = {rep['R0_kpc']} kpc, v_c(R0) = {rep['vc_R0_kms']:.2f} km/s, "
              f"Kz(1.1 kpc)/(2 pi G) = {rep['Kz_1.1kpc_over_2piG_Msun_pc2']:.2f} Msun/pc^2\n")
    out.write(f"{'component':<16} {'mass[Msun]':>12} {'rho(R0,0)[Msun/pc3]':>20} {'Sigma(R0,|z|<1.1)[Msun/pc2]':>28}\n")
    rows = list(rep["components"].items()) + [(k, v) for k, v in rep.get("totals", {}).items()]
    for name, c in rows:
        mass = f"{c['mass_Msun']:12.4g}" if "mass_Msun" in c else f"{'':12}"
        out.write(f"{name:<16} {mass} {c['rho_R0_Msun_pc3']:20.5f} {c['Sigma_R0_1.1kpc_Msun_pc2']:28.2f}\n")
    out.write(f"{'R[kpc]':>8} {'v_c[km/s]':>10}\n")
    for R, v in zip(rep["R_kpc"], rep["vc_kms"]):
        out.write(f"{R:8.2f} {v:10.2f}\n")


def _cmd_model_report(args) -> int:
    from .model.galaxy import GalaxyModel, model_report

    opts = {"max_iterations": args.iterations} if args.iterations else {}
    if args.rebuild:
        GalaxyModel.load_or_build(args.model, cache_dir=args.cache_dir, rebuild=True, **opts)
    rep = model_report(args.model, use_cache=not args.no_cache, cache_dir=args.cache_dir, **opts)
    if args.json:
        json.dump(rep, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print_model_table(rep, sys.stdout)
    return 0


def _cmd_model_sample(args) -> int:
    from .export import export_nbody
    from .model.galaxy import GalaxyModel
    from .model.sampling import sample_galaxy_model

    model = GalaxyModel.load_or_build(args.model, cache_dir=args.cache_dir)
    t0 = time.perf_counter()
    parts = sample_galaxy_model(model, args.n, components=args.components, rng=args.seed, region=args.region)
    t1 = time.perf_counter()
    path = export_nbody(parts, args.out, format=args.format)
    sys.stdout.write(f"sampled {len(parts.mass)} particles of {', '.join(parts.component_names)} in {t1 - t0:.1f} s; "
                     f"wrote {path} ({args.format})\n")
    return 0


def _cmd_run(args) -> int:
    from .pipeline import run

    res = run(args.recipe, args.out, seed=args.seed, scale=args.scale, cache_dir=args.cache_dir,
              overwrite=args.overwrite, workers=args.workers, scheduler=args.scheduler, threads=args.threads,
              progress=False if args.no_progress else None)
    sys.stdout.write(f"wrote {res.n_rows} rows to {res.catalogue} in {res.timings['total']:.1f} s (seed {res.seed}); "
                     f"summary {res.summary_path}\n")
    tp = res.summary.get("throughput")
    if tp:
        sys.stdout.write(f"stars generated {tp['stars_generated']}, kept {tp['stars_kept']}, {tp['seconds']:.1f} s, "
                         f"{tp['stars_per_s']:.4g} stars/s ({tp['chunks']} chunks, {tp['chunks_resumed']} resumed)\n")
    cmp_ = res.summary.get("comparison")
    if cmp_ and cmp_.get("scheme") == "bv24":
        sys.stdout.write(f"BV24 comparison: total lnL = {cmp_['total_lnL']:.1f}, published M0 lnL = "
                         f"{cmp_['m0_total_lnL']:.1f}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mocksky", description="Mock survey catalogues from self-consistent Milky Way models.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    pot = sub.add_parser("potential", help="gravitational potentials")
    potsub = pot.add_subparsers(dest="action", required=True)
    rep = potsub.add_parser("report", help="v_c, Phi, kappa, nu, Omega in the plane at R = " + ", ".join(map(str, REPORT_RADII)) + " kpc")
    rep.add_argument("model", help="built-in model name (bv23, bv24_m0) or Agama INI file; its [Potential ...] sections are used")
    rep.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rep.set_defaults(func=_cmd_potential_report)

    mod = sub.add_parser("model", help="self-consistent Galaxy models")
    modsub = mod.add_subparsers(dest="action", required=True)
    mrep = modsub.add_parser("report", help="build (or load from the cache) a model and print its key numbers "
                                            "(BV23 Table 4: masses, rho and Sigma at R0 per component, v_c(R), Kz)")
    mrep.add_argument("model", help="built-in model name (bv23, bv24_m0) or Agama INI file")
    mrep.add_argument("--json", action="store_true", help="print JSON instead of a table")
    mrep.add_argument("--iterations", type=int, default=None, help="self-consistent iterations (default 4)")
    mrep.add_argument("--no-cache", action="store_true", help="always build; do not read or write the cache")
    mrep.add_argument("--rebuild", action="store_true", help="rebuild and overwrite the cached model")
    mrep.add_argument("--cache-dir", default=None, help="cache directory (default $MOCKSKY_CACHE or ~/.cache/mocksky)")
    mrep.set_defaults(func=_cmd_model_report)

    msam = modsub.add_parser("sample", help="sample N-body particles from a model's DFs and export them "
                                            "(N-body initial conditions)")
    msam.add_argument("model", help="built-in model name (bv23, bv24_m0) or Agama INI file")
    msam.add_argument("--n", type=int, required=True, help="total number of particles (split by component mass)")
    msam.add_argument("--out", required=True, help="output file")
    msam.add_argument("--format", choices=["gadget4", "text", "hdf5"], default="gadget4",
                      help="Gadget-4 HDF5 snapshot (PartType1 dark halo, 2 discs, 3 bulge, 4 stellar halo), "
                           "Agama/NEMO text (x y z vx vy vz m), or a plain HDF5 table (default gadget4)")
    msam.add_argument("--components", nargs="+", default=None, help="DF components to sample (default: all)")
    msam.add_argument("--region", default=None, help="restrict to a region, e.g. 'sphere:-8.27,0,0,3' (x,y,z,r in kpc)")
    msam.add_argument("--seed", type=int, default=None, help="random seed (default: fresh entropy)")
    msam.add_argument("--cache-dir", default=None, help="model cache directory")
    msam.set_defaults(func=_cmd_model_sample)

    runp = sub.add_parser("run", help="run a catalogue recipe (TOML; built-in names: see catalogues/): model -> sample "
                                      "-> populate -> observe -> select -> catalogue -> compare")
    runp.add_argument("recipe", help="recipe file or built-in recipe name (e.g. small_default)")
    runp.add_argument("--out", default="mocksky_run", help="output directory (default ./mocksky_run)")
    runp.add_argument("--seed", type=int, default=None, help="random seed (default: fresh entropy, recorded)")
    runp.add_argument("--scale", type=float, default=1.0, help="fraction in (0, 1] of the full mock to generate")
    runp.add_argument("--cache-dir", default=None, help="model cache directory")
    runp.add_argument("--workers", type=int, default=None,
                      help="run the chunks on a local Dask cluster of N worker processes (default: in this process)")
    runp.add_argument("--scheduler", default=None,
                      help="address of a running Dask scheduler (e.g. tcp://host:8786) to run the chunks on")
    runp.add_argument("--threads", type=int, default=None,
                      help="Numba threads per chunk (default: 1 in process, with cores // threads chunks at once; "
                           "cores / workers on a cluster)")
    runp.add_argument("--no-progress", action="store_true", help="no progress bar")
    runp.add_argument("--overwrite", action="store_true",
                      help="replace a run with a different recipe, seed or scale in --out (a run with the same ones "
                           "is resumed)")
    runp.set_defaults(func=_cmd_run)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``mocksky`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"mocksky: error: {exc}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
