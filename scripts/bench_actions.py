"""Benchmark of the action finders on 1e6 disc-like points in the BV23 initial potential.

Points: 95% from an exponential disc (R_d = 2.6 kpc, exponential vertical profile h = 0.3 kpc) with
Schwarzschild-like velocities (sigma_R = 35 km/s, sigma_z = 20 km/s, sigma_phi = 25 km/s around
v_phi = v_c - 10 km/s) and 5% halo-like points (R uniform in [0.5, 40] kpc, z ~ N(0, 8 kpc),
velocity dispersions (140, 100, 100) km/s, no rotation).

Prints ``name: value unit`` lines:

* ``actions_exact_per_s``: exact Stäckel fudge (focal distances from the shell-orbit table);
* ``interp_build_time``: construction of :class:`InterpolatedStaeckelFudge` (tables included);
* ``actions_interp_per_s``: interpolated fudge;
* accuracy of the interpolated actions against the exact fudge (the same focal distances, i.e.
  ``interp.exact``) for Jr and Jz: median, 99th
  percentile and maximum of |J_interp - J_exact| / max(J_exact, 1 kpc km/s) (per-action relative
  error with a 1 kpc km/s floor) and of |J_interp - J_exact| / (Jr + Jz + |Jphi|) (relative to
  the total action).

The JIT is warmed (and the table built once) before timing; numba uses ``--threads`` threads.

Usage::

    python scripts/bench_actions.py [--n 1000000] [--threads 2] [--seed 42]

(with mocksky installed, or ``PYTHONPATH=.`` from the repository root).
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from mocksky.model.actions import InterpolatedStaeckelFudge, StaeckelFudge

def load_bv23():
    """The BV23 initial potential ([Potential ...] sections of the built-in model file)."""
    from mocksky.model.potential import load_potential

    return load_potential("bv23"), "BV23 initial potential (SCM_MW.ini)"


def sample_points(pot, n, rng):
    """n phase-space points (N, 6): 95% disc-like, 5% halo-like (see the module docstring)."""
    nh = n // 20
    nd = n - nh
    R = np.concatenate([rng.gamma(2.0, 2.6, nd), rng.uniform(0.5, 40.0, nh)])  # exponential surface density
    z = np.concatenate([rng.laplace(0.0, 0.3, nd), rng.normal(0.0, 8.0, nh)])
    phi = rng.uniform(0, 2 * np.pi, n)
    vc = pot.vcirc(R)
    vR = rng.normal(0, 1, n) * np.r_[np.full(nd, 35.0), np.full(nh, 140.0)]
    vz = rng.normal(0, 1, n) * np.r_[np.full(nd, 20.0), np.full(nh, 100.0)]
    vphi = np.r_[vc[:nd] - 10.0 + rng.normal(0, 25.0, nd), rng.normal(0, 100.0, nh)]
    c, s = np.cos(phi), np.sin(phi)
    return np.stack([R * c, R * s, z, vR * c - vphi * s, vR * s + vphi * c, vz], axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    pot, label = load_bv23()
    print(f"# potential: {label}; numba threads: {numba.get_num_threads()}; points: {args.n}")
    pv = sample_points(pot, args.n, rng)

    # warm-up: compile everything and build the tables once
    exact = StaeckelFudge(pot)
    exact.actions(pv[:1000])
    InterpolatedStaeckelFudge(pot).actions(pv[:1000])

    t0 = time.perf_counter()
    exact = StaeckelFudge(pot)
    t_exact_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    J_exact = exact.actions(pv)
    t_exact = time.perf_counter() - t0

    t0 = time.perf_counter()
    interp = InterpolatedStaeckelFudge(pot)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    J_interp = interp.actions(pv)
    t_interp = time.perf_counter() - t0
    # reference: the exact fudge with the same focal-distance table as the interpolated finder
    J_exact = interp.exact.actions(pv)

    print(f"exact_focal_table_build_time: {t_exact_build:.3f} s")
    print(f"actions_exact_per_s: {args.n / t_exact:.4g} 1/s")
    print(f"interp_build_time: {t_build:.3f} s")
    print(f"actions_interp_per_s: {args.n / t_interp:.4g} 1/s")
    ok = np.all(np.isfinite(J_exact), axis=1) & np.all(np.isfinite(J_interp), axis=1)
    print(f"points_unbound_or_failed: {int((~ok).sum())}")
    total = J_exact[ok, 0] + J_exact[ok, 1] + np.abs(J_exact[ok, 2])
    for k, name in ((0, "Jr"), (1, "Jz")):
        err = np.abs(J_interp[ok, k] - J_exact[ok, k])
        rel = err / np.maximum(J_exact[ok, k], 1.0)
        reltot = err / total
        print(f"interp_{name}_relerr_median: {np.median(rel):.3g}")
        print(f"interp_{name}_relerr_p99: {np.percentile(rel, 99):.3g}")
        print(f"interp_{name}_relerr_max: {np.max(rel):.3g}")
        print(f"interp_{name}_err_over_Jtot_median: {np.median(reltot):.3g}")
        print(f"interp_{name}_err_over_Jtot_p99: {np.percentile(reltot, 99):.3g}")
        print(f"interp_{name}_err_over_Jtot_max: {np.max(reltot):.3g}")


if __name__ == "__main__":
    main()
