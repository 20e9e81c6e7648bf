"""Where a chunk's time goes, per stellar component, on the ``gaia_dr3_starcounts`` recipe (all-sky Gaia G < 20.7).

Usage::

    PYTHONPATH=. python scripts/bench_components.py [--scale 0.01] [--chunks 1] [--seed 1] [--recipe NAME]

Builds the run's plan at ``--scale`` (in process, as ``mocksky run`` does), then runs the first ``--chunks`` chunks of
every component one after the other on one Numba thread and prints, one figure per line (``name: value unit``), per
component:

* ``us_per_row``: chunk wall time per catalogue row (one thread), and ``run_time_share`` / ``run_row_share``: the
  component's share of the whole run's chunk time and rows (the chunks run, scaled to all the component's planned
  points);
* ``proposals_per_row``, ``actions_per_row`` and ``accepted_per_action`` (the rejection step's acceptance per
  action evaluation: how well the velocity proposal fits f);
* ``exact_fudge_fraction``: the share of the action evaluations that the interpolated Stäckel fudge hands to the
  exact fudge (nearly radial orbits, xi > ``exact_xi``, and energies outside its tables), measured on the points
  the chunk evaluated (a second, untimed run of the same chunk records them; at most 200 000 per component);
* ``us_per_exact_action`` (the finder's ``fallback``) / ``us_per_interpolated_action`` on those points (one
  thread), and
  ``exact_fudge_time_share``: the chunk time these exact evaluations take (fraction x count x cost / chunk time).

Then the whole run's figures, scaled the same way (``run_*``; ``run_us_per_row`` is one thread's chunk time per row
of the whole run). The chunks are the run's own (same seeds), so a chunk
gives the same rows as in ``mocksky run``.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numba
import numpy as np

from mocksky.model.galaxy import GalaxyModel
from mocksky.pipeline import make_plan, run_chunk
from mocksky.recipe import load_recipe

MAX_RECORDED = 200_000


class _Recorder:
    """Stands in for a sampler's action finder: delegates and keeps (up to MAX_RECORDED) of the points."""

    def __init__(self, finder):
        self.finder, self.kept, self.n = finder, [], 0

    def actions(self, posvel):
        if self.n < MAX_RECORDED:
            take = posvel[: MAX_RECORDED - self.n]
            self.kept.append(np.array(take))
            self.n += len(take)
        return self.finder.actions(posvel)

    def __getattr__(self, name):
        return getattr(self.finder, name)


def _per_point_seconds(fn, pv):
    if len(pv) == 0:
        return float("nan")
    fn(pv[:10])  # compiled already; warm the caches
    t = time.perf_counter()
    fn(pv)
    return (time.perf_counter() - t) / len(pv)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="gaia_dr3_starcounts")
    ap.add_argument("--scale", type=float, default=0.01, help="fraction of the full mock the plan is made for")
    ap.add_argument("--chunks", type=int, default=1, help="chunks run per component (the first ones)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 0 < args.scale <= 1:
        raise SystemExit(f"--scale must be in (0, 1], got {args.scale}")
    if args.chunks < 1:
        raise SystemExit(f"--chunks must be >= 1, got {args.chunks}")
    rec = load_recipe(args.recipe)
    model = GalaxyModel.load_or_build(rec.model.source)
    t = time.perf_counter()
    plan = make_plan(rec, model, args.seed, args.scale)
    print(f"plan_seconds: {time.perf_counter() - t:.1f} s")
    numba.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="mocksky_bench_components_")
    run_chunk(plan, 0, out)  # compile / load every kernel before timing
    rows = {}
    for ci, name in enumerate(plan.names):
        idx = [c.index for c in plan.chunks if c.component == ci][: args.chunks]
        sec = n_rows = n_prop = n_act = n_acc = n_pts = 0.0
        for i in idx:
            n_pts += plan.chunks[i].n_points
            t = time.perf_counter()
            r = run_chunk(plan, i, out)
            sec += time.perf_counter() - t
            n_rows += r["n_rows"]
            n_prop += r["n_proposals"]
            n_act += r["n_actions"]
            n_acc += r["n_accepted"]
        smp = plan.samplers[ci]
        finder = smp.finder
        rec_ = _Recorder(finder)
        smp.finder = rec_
        try:
            run_chunk(plan, idx[0], out)  # the same chunk again, recording the points whose actions it needs
        finally:
            smp.finder = finder
        pv = np.concatenate(rec_.kept) if rec_.kept else np.empty((0, 6))
        if hasattr(finder, "exact_mask") and len(pv):
            mask = finder.exact_mask(pv)
            frac = float(mask.mean())
            t_ex = _per_point_seconds(getattr(finder, "fallback", finder.exact).actions, pv[mask])
            t_in = _per_point_seconds(finder.actions, pv[~mask])
        else:  # an exact finder: every evaluation is exact
            frac, t_ex, t_in = 1.0, _per_point_seconds(finder.actions, pv), float("nan")
        ex_s = n_act * frac * t_ex if np.isfinite(t_ex) else 0.0
        up = sum(c.n_points for c in plan.chunks if c.component == ci) / n_pts  # the run's chunks / the ones run
        rows[name] = dict(up=up, sec=sec, n_rows=n_rows, n_prop=n_prop, n_act=n_act, n_acc=n_acc, frac=frac, t_ex=t_ex,
                          t_in=t_in, ex_s=ex_s)
    T = sum(d["sec"] * d["up"] for d in rows.values())
    N = sum(d["n_rows"] * d["up"] for d in rows.values())
    for name, d in rows.items():
        tag = name.replace(" ", "_")
        nr = max(d["n_rows"], 1)
        print(f"{tag}_rows: {int(d['n_rows'])} stars")
        print(f"{tag}_us_per_row: {d['sec'] / nr * 1e6:.2f} us")
        print(f"{tag}_run_time_share: {d['sec'] * d['up'] / T:.3f}")
        print(f"{tag}_run_row_share: {d['n_rows'] * d['up'] / max(N, 1):.3f}")
        print(f"{tag}_proposals_per_row: {d['n_prop'] / nr:.2f} proposals")
        print(f"{tag}_actions_per_row: {d['n_act'] / nr:.2f} actions")
        print(f"{tag}_accepted_per_action: {d['n_acc'] / max(d['n_act'], 1):.3f}")
        print(f"{tag}_exact_fudge_fraction: {d['frac']:.3f}")
        print(f"{tag}_us_per_exact_action: {d['t_ex'] * 1e6:.2f} us")
        print(f"{tag}_us_per_interpolated_action: {d['t_in'] * 1e6:.2f} us")
        print(f"{tag}_exact_fudge_time_share: {d['ex_s'] / d['sec']:.3f}")
    print(f"run_rows: {int(N)} stars")
    print(f"run_us_per_row: {T / max(N, 1) * 1e6:.2f} us")
    print(f"run_exact_fudge_time_share: {sum(d['ex_s'] * d['up'] for d in rows.values()) / T:.3f}")

if __name__ == "__main__":
    main()
