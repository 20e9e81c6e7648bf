"""Benchmark of the whole chunked chain (plan -> sample -> populate -> observe -> select -> write) on the
``gaia_dr3_starcounts`` recipe (all-sky Gaia G < 20.7) at increasing sizes.

Usage::

    PYTHONPATH=. python scripts/bench_pipeline.py [--sizes 1e6 1e7 1e8] [--workers 2] [--threads T] [--out DIR] [--keep]

The first run (at the smallest size's scale guess) calibrates the number of catalogue rows of the full mock
(rows / scale); the other sizes use scale = size / full_rows. For each size it prints, one figure per line
(``name: value unit``): rows (catalogue stars kept), stars generated, wall seconds of the chain (model load and the
comparison stage excluded, the plan included), stars/s/core (kept rows per second per core), peak RSS (the sum over
the driver and every worker process, sampled by psutil every 0.2 s), and the projected wall time of the full-sky
mock on this machine's cores (the largest run's plan time, which does not grow with the size, plus full_rows times
its chunk seconds per kept row). ``chunk_stars_per_s_per_core`` leaves the plan out. Outputs are deleted unless
--keep.
"""
from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

import psutil

from mocksky.pipeline import run

# rows of the full G < 20.7 mock per unit scale, a first guess refined by the first run
FULL_ROWS_GUESS = 1.0e9


class PeakRSS:
    """Peak of the summed RSS of this process and all its descendants (sampled in a thread)."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me] + me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8], help="target catalogue rows")
    ap.add_argument("--workers", type=int, default=0,
                    help="Dask local workers (0: in process, one chunk per core at a time)")
    ap.add_argument("--threads", type=int, default=None, help="Numba threads per chunk (default: mocksky's)")
    ap.add_argument("--out", default="/tmp/mocksky_bench_pipeline", help="scratch directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    full_rows = FULL_ROWS_GUESS
    last = None
    for size in sorted(args.sizes):
        scale = min(size / full_rows, 1.0)
        out = Path(args.out) / f"n{size:.0e}"
        with PeakRSS() as mem:
            res = run("gaia_dr3_starcounts", out, seed=args.seed, scale=scale, overwrite=True,
                      workers=args.workers or None, threads=args.threads, progress=False)
        tp = res.summary["throughput"]
        full_rows = tp["stars_kept"] / scale
        rate = tp["stars_kept"] / tp["seconds"]
        tag = f"n{size:.0e}"
        print(f"{tag}_scale: {scale:.4g}")
        print(f"{tag}_rows: {tp['stars_kept']} stars")
        print(f"{tag}_generated: {tp['stars_generated']} stars")
        print(f"{tag}_chain_seconds: {tp['seconds']:.1f} s")
        print(f"{tag}_plan_seconds: {res.timings['plan']:.1f} s")
        print(f"{tag}_stars_per_s_per_core: {rate / cores:.4g} stars/s/core")
        chunk_s = tp["seconds"] - res.timings["plan"]
        print(f"{tag}_chunk_stars_per_s_per_core: {tp['stars_kept'] / chunk_s / cores:.4g} stars/s/core")
        print(f"{tag}_generated_per_s_per_core: {tp['stars_generated'] / tp['seconds'] / cores:.4g} stars/s/core")
        print(f"{tag}_peak_rss: {mem.peak / 2**30:.3f} GB")
        for k, v in res.summary["stage_seconds_summed"].items():
            print(f"{tag}_stage_{k}: {v:.1f} s")
        props = sum(c["n_proposals"] for c in res.summary["components"].values())
        acts = sum(c["n_actions"] for c in res.summary["components"].values())
        print(f"{tag}_proposals_per_row: {props / max(tp['stars_kept'], 1):.1f} proposals")
        print(f"{tag}_actions_per_row: {acts / max(tp['stars_kept'], 1):.1f} actions")
        print(f"{tag}_full_mock_rows_estimate: {full_rows:.4g} stars", flush=True)
        last = (res.timings["plan"], chunk_s / max(tp["stars_kept"], 1))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print(f"cores: {cores} cores")
    plan_s, s_per_row = last
    print(f"full_sky_projected_wall_time: {(plan_s + full_rows * s_per_row) / 3600:.3g} h")


if __name__ == "__main__":
    main()
