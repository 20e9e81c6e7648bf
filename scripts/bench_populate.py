#!/usr/bin/env python
"""Benchmark of star tagging (mocksky.populate): ages, masses, chemistry and isochrone photometry.

Part 1 tags ``--n`` stars (default 1e7) of one BV23 component with :func:`mocksky.populate.tag_stars`
in chunks (actions are made up beforehand and not timed) with 1 and with all numba threads, and prints
stars/s and stars/s per core. Part 2 (``--demo``) runs the magnitude-limited pipeline end to end:
BV23 disc/halo points sampled from the DF in a 150 pc sphere 1 kpc from the Sun with the
:class:`MagnitudeSelection` selection function (G < 16, A_G = 0.1 mag/kpc; enough points that each
stands for <= 1 expected star), then :func:`mocksky.populate.populate` in mode 'magnitude', and prints
the fraction of generated stars that fail the limit (the waste; Galaxia discards ~74 %).

glibc returns large freed arrays to the OS, and this machine's first touch of fresh memory costs
~5 ns/byte, more than the tagging itself; like a long-running pipeline that recycles its buffers, the
script re-executes itself with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` raised (pass
``--no-malloc-tuning`` to measure without).

Prints ``name: value unit`` lines.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 32), "MALLOC_TRIM_THRESHOLD_": str(2 ** 34)}
DEMO_LIMIT = 16.0
DEMO_OFFSET = np.array([0.0, -1.0, 0.3])  # kpc from the Sun (towards l = 90 deg, above the plane)
DEMO_RADIUS = 0.15


def _tagging(n, chunk, component, threads, seed):
    import numba

    from mocksky.populate import load_populations, tag_stars

    pops = load_populations("bv23")
    cp = pops[component]
    rng = np.random.default_rng(seed)
    m = min(chunk, n)
    actions = np.column_stack([rng.exponential(30, m), rng.exponential(15, m), rng.normal(1950, 300, m)])
    tag_stars(cp, actions[:1000], rng=0)  # compile / load caches, build the mass tables
    results = {}
    for th in threads:
        numba.set_num_threads(th)
        done, t_total = 0, 0.0
        k = 0
        while done < n:
            c = min(chunk, n - done)
            t = time.perf_counter()
            out = tag_stars(cp, actions[:c], rng=seed + k)
            t_total += time.perf_counter() - t
            done += c
            k += 1
            del out
        results[th] = n / t_total
        print(f"tagging_threads_{th}_stars_per_s: {n / t_total:.3e} stars/s")
        print(f"tagging_threads_{th}_stars_per_s_per_core: {n / t_total / th:.3e} stars/s/core")
        print(f"tagging_threads_{th}_wall: {t_total:.2f} s for {n:.0f} stars")
    return results


def _demo(seed, max_points):
    from mocksky.model.galaxy import GalaxyModel
    from mocksky.model.sampling import Sphere, sample_particles
    from mocksky.observe.solar import solar_parameters
    from mocksky.populate import MagnitudeSelection, load_populations, populate

    model = GalaxyModel.load_or_build("bv23")
    pops = load_populations("bv23")
    sp = solar_parameters("bv23")
    limit, a_per_kpc = DEMO_LIMIT, 0.1
    centre = np.array(sp.position) + DEMO_OFFSET
    region = Sphere(tuple(centre), DEMO_RADIUS)

    def extinction(l, b, d):
        return a_per_kpc * np.asarray(d)

    names = ["young disk", "middle disk", "old disk", "highA disk", "stellar halo"]
    gen = faint = kept = points = 0
    t0 = time.perf_counter()
    for k, name in enumerate(names):
        sel = MagnitudeSelection(pops[name], limit, "G", extinction, sp)
        args = (model.potential, [model.dfs[name]], model.action_finder())
        kw = dict(densities=[model.component(name).density], region=region, selection=sel)
        pilot = sample_particles(*args, 2000, rng=seed + k, **kw)
        # every point may become a star only if its mass is <= 1 / D_max: N >= D_max * (selected mass)
        n = int(min(max_points, np.ceil(1.05 * pilot.mass.sum() * sel.d_max)))
        P = sample_particles(*args, max(n, 100), rng=seed + 50 + k, **kw)
        tab = populate(P, pops, mode="magnitude", limit=limit, band="G", extinction=extinction, solar=sp,
                       mass=sel.point_mass(P), rng=seed + 100 + k, overflow="clip")
        info = tab.meta["populate"]["components"][name]
        gen += info["generated"]
        faint += info["fainter_than_limit"]
        kept += info["kept"]
        points += info["points"]
        key = name.replace(" ", "_")
        print(f"demo_{key}_points: {info['points']} points")
        print(f"demo_{key}_generated: {info['generated']} stars (expected {info['expected']:.1f}, "
              f"max point expectation {info['max_point_expectation']:.3f})")
    print(f"demo_region: sphere r = {DEMO_RADIUS} kpc centred {DEMO_OFFSET.tolist()} kpc from the Sun, "
          f"G < {limit}, A_G = {a_per_kpc} mag/kpc")
    print(f"demo_points_total: {points} points")
    print(f"demo_generated_stars: {gen} stars")
    print(f"demo_kept_stars: {kept} stars")
    print(f"demo_waste_fraction: {faint / max(gen, 1):.4f} (generated stars failing the limit; Galaxia ~0.74)")
    print(f"demo_points_to_stars: {gen / max(points, 1):.3f} (fraction of sampled points that became stars)")
    print(f"demo_wall: {time.perf_counter() - t0:.1f} s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e7, help="stars to tag (default 1e7)")
    ap.add_argument("--chunk", type=float, default=1e6, help="stars per call (default 1e6)")
    ap.add_argument("--component", default="old disk")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--demo", action="store_true", help="also run the magnitude-limited pipeline demo")
    ap.add_argument("--demo-max-points", type=int, default=200000)
    ap.add_argument("--no-malloc-tuning", action="store_true")
    a = ap.parse_args(argv)
    if not a.no_malloc_tuning and any(os.environ.get(k) != v for k, v in _MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **_MALLOC_ENV})
    import numba

    print(f"numba_threads: {numba.config.NUMBA_NUM_THREADS} threads")
    print(f"load_average_1min_before: {os.getloadavg()[0]:.2f} (machine shared with other jobs)")
    threads = sorted({1, numba.config.NUMBA_NUM_THREADS})
    _tagging(int(a.n), int(a.chunk), a.component, threads, a.seed)
    print(f"load_average_1min_after: {os.getloadavg()[0]:.2f}")
    if a.demo:
        _demo(a.seed, a.demo_max_points)


if __name__ == "__main__":
    main()
