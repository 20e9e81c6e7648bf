"""Benchmark of the observe stage (frames, dust, band extinction, errors) and, if present, Gaia selection.

Stars: ``--n`` (default 1e7) synthetic stars processed in chunks of ``--chunk`` (default 1e6) so memory stays
bounded: a disc (exponential in R with scale 2.6 kpc, Laplace in z with scale 0.3 kpc) with 10% halo-like stars,
Schwarzschild-like velocities, Teff uniform in 3000-9000 K, logg uniform 0-5, absolute magnitudes G uniform in
[-2, 10] with BP/RP/G_RVS/J/H/Ks offsets, [Fe/H], [alpha/Fe] ~ N(0, 0.2) / N(0.1, 0.1).

Stages, each timed separately over all chunks (building the input chunk is not timed):

* ``frame``: :func:`mocksky.observe.add_sky_coordinates` (13 columns);
* ``dust``: :func:`mocksky.observe.add_dust` with the built-in Combined19 3D map (A0, ebv);
* ``extinction``: :func:`add_band_extinctions` (7 bands) + :func:`add_apparent_magnitudes`;
* ``errors``: :class:`GaiaErrorModel` ``"dr3"`` (parallax, pm, G/BP/RP, RV) + ``"exact"`` (G_RVS/2MASS copies);
* ``selection``: ``GaiaDR3Completeness().apply`` from ``mocksky.select``, when that package is importable.

Memory: by default the previous chunk is alive while the next one is built (a plain loop ``t = make_chunk(...)``),
so the allocator reuses memory; ``--free-between-chunks`` drops it first, which makes glibc return the columns to the
OS and every chunk page-faults fresh memory - on this project's VMs first-touch page faults are expensive and that
mode measures ~1.5-2x lower throughput for the stages that allocate many columns (errors, extinction).

Prints ``name: value unit`` lines: per-stage CPU and wall time, throughput in stars/s/core = stars per CPU-second of
this process (``time.process_time``, summed over threads, so other load on the machine does not distort it) and the
sums. Numba uses ``--threads`` threads (default 1).

Usage::

    python scripts/bench_observe.py [--n 10000000] [--chunk 1000000] [--threads 1] [--seed 1] [--free-between-chunks]
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from mocksky.catalogue import StarTable
from mocksky.observe import (ExtinctionModel, GaiaErrorModel, add_apparent_magnitudes, add_band_extinctions,
                             add_dust, add_sky_coordinates, dust_map, error_model)


def make_chunk(n: int, rng: np.random.Generator) -> StarTable:
    nh = n // 10
    nd = n - nh
    R = np.concatenate([rng.gamma(2.0, 2.6, nd), rng.uniform(0.5, 40.0, nh)])
    z = np.concatenate([rng.laplace(0.0, 0.3, nd), rng.normal(0.0, 8.0, nh)])
    phi = rng.uniform(0, 2 * np.pi, n)
    vR = rng.normal(0, 1, n) * np.r_[np.full(nd, 35.0), np.full(nh, 140.0)]
    vz = rng.normal(0, 1, n) * np.r_[np.full(nd, 20.0), np.full(nh, 100.0)]
    vphi = np.r_[rng.normal(220.0, 25.0, nd), rng.normal(0.0, 100.0, nh)]
    c, s = np.cos(phi), np.sin(phi)
    G = rng.uniform(-2.0, 10.0, n)
    teff = rng.uniform(3000.0, 9000.0, n)
    col = np.clip((9000.0 - teff) / 3000.0, 0.0, 3.0)
    return StarTable({
        "x": R * c, "y": R * s, "z": z, "vx": vR * c - vphi * s, "vy": vR * s + vphi * c, "vz": vz,
        "teff": teff, "logg": rng.uniform(0.0, 5.0, n), "feh": rng.normal(0, 0.2, n),
        "alpha_fe": rng.normal(0.1, 0.1, n),
        "abs_g": G, "abs_bp": G + 0.4 * col, "abs_rp": G - 0.6 * col, "abs_grvs": G - 0.9 * col,
        "abs_j": G - 1.2 * col, "abs_h": G - 1.6 * col, "abs_ks": G - 1.7 * col,
    })


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--free-between-chunks", action="store_true",
                    help="drop each chunk before building the next (memory returns to the OS and is faulted in again)")
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    dmap = dust_map("combined19")
    ext = ExtinctionModel("F99")
    gaia = GaiaErrorModel("dr3")
    exact = error_model("exact")
    try:
        from mocksky.select.gaia import GaiaDR3Completeness

        selection = GaiaDR3Completeness()
    except ImportError:
        selection = None

    clock = time.process_time  # CPU time of this process, summed over threads: robust to other load on the machine

    def run(t: StarTable, timings: dict, err_rng) -> None:
        stages = [("frame", lambda: add_sky_coordinates(t, "bv24")),
                  ("dust", lambda: add_dust(t, dmap)),
                  ("extinction", lambda: (add_band_extinctions(t, ext), add_apparent_magnitudes(t))),
                  ("errors", lambda: (gaia.apply(t, err_rng), exact.apply(t, err_rng)))]
        if selection is not None:
            stages.append(("selection", lambda: selection.apply(t)))
        for name, fn in stages:
            c0, w0 = clock(), time.perf_counter()
            fn()
            cpu, wall = timings.get(name, (0.0, 0.0))
            timings[name] = (cpu + clock() - c0, wall + time.perf_counter() - w0)

    # warm-up, not timed: JIT (numba caches), data loading, and one full chunk so that the process has touched the
    # memory it reuses for every chunk (first-touch page faults are expensive in a VM and are not per-star work)
    run(make_chunk(10_000, rng), {}, rng)
    run(make_chunk(min(args.chunk, args.n), rng), {}, rng)
    timings: dict = {}
    done = 0
    while done < args.n:
        m = min(args.chunk, args.n - done)
        if args.free_between_chunks:
            t = None  # release the previous chunk's columns before building the next one
        t = make_chunk(m, rng)
        run(t, timings, rng)
        done += m
    threads = numba.get_num_threads()
    print(f"# stars: {done}; chunk: {args.chunk}; numba threads: {threads}; free between chunks: "
          f"{args.free_between_chunks}; "
          f"selection: {'GaiaDR3Completeness(' + selection.backend_used + ')' if selection else 'not available'}")
    print("# rates are stars per CPU-second (process CPU time summed over threads) = stars/s/core")
    import resource

    print(f"peak_rss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    for k, (cpu, wall) in timings.items():
        print(f"{k}_cpu_time: {cpu:.3f} s")
        print(f"{k}_wall_time: {wall:.3f} s")
        print(f"{k}_rate: {done / cpu:.3e} stars/s/core")

    def rate(keys):
        return done / sum(timings[k][0] for k in keys if k in timings)

    print(f"frame_dust_errors_rate: {rate(['frame', 'dust', 'errors']):.3e} stars/s/core")
    print(f"frame_dust_errors_selection_rate: {rate(['frame', 'dust', 'errors', 'selection']):.3e} stars/s/core")
    print(f"observe_total_rate: {rate(['frame', 'dust', 'extinction', 'errors']):.3e} stars/s/core")
    print(f"total_rate: {rate(list(timings)):.3e} stars/s/core")


if __name__ == "__main__":
    main()
