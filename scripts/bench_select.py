"""Throughput of the survey selection functions, and agreement of APOGEE with gaiaunlimited.

Prints one figure per line as ``name: value unit``. Usage::

    python scripts/bench_select.py [--sizes 1000000 10000000] [--gaiaunlimited] [--agreement 100000]

``--gaiaunlimited`` also times gaiaunlimited's ``apogee_sf`` (on 2000 stars); ``--agreement N`` compares
``apogee_dr17_probability(jk0_limits=False)`` with ``apogee_sf`` on N random stars (about 450 s per 1e5).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mocksky.select import (ApogeeDR17, ColourRange, ColumnRange, GaiaDR3Completeness, GaiaRVSCompleteness,  # noqa: E402
                            ParallaxOverError, load_apogee_fields, survey)


def mock_table(n, rng):
    f = load_apogee_fields()
    k = rng.integers(0, len(f.l), n // 2)
    l = np.r_[f.l[k] + rng.normal(0, 0.7, n // 2), rng.uniform(0, 360, n - n // 2)] % 360
    b = np.clip(np.r_[f.b[k] + rng.normal(0, 0.7, n // 2), np.degrees(np.arcsin(rng.uniform(-1, 1, n - n // 2)))], -90, 90)
    h = rng.uniform(4.0, 15.0, n)
    g = h + rng.uniform(1.0, 8.0, n)
    return {
        "ra": rng.uniform(0, 360, n), "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))), "l": l, "b": b,
        "phot_g_mean_mag": g, "grvs_mag": g - 1.0, "teff": rng.uniform(3000, 16000, n), "logg": rng.uniform(0, 5, n),
        "h_m": h, "j_m": h + rng.uniform(0.3, 1.2, n), "k_m": h - rng.uniform(0.0, 0.3, n),
        "a_j": np.full(n, 0.1), "a_ks": np.full(n, 0.04),
        "parallax": rng.exponential(0.5, n), "parallax_error": rng.uniform(0.01, 0.3, n),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--gaiaunlimited", action="store_true")
    ap.add_argument("--agreement", type=int, default=0)
    args = ap.parse_args(argv)
    sfs = {
        "gaia_dr3_completeness_maglim": GaiaDR3Completeness(backend="maglim"),
        "gaia_rvs": GaiaRVSCompleteness(),
        "apogee_dr17": ApogeeDR17(),
        "apogee_dr17_gaiaunlimited_mode": ApogeeDR17(jk0_limits=False),
        "range_logg": ColumnRange("logg", max=3.5),
        "colour_range_jk": ColourRange("j_m", "k_m", min=0.5),
        "parallax_over_error": ParallaxOverError(5.0),
        "survey_gaia_dr3_rvs": survey("gaia_dr3_rvs"),
        "survey_apogee_dr17": survey("apogee_dr17"),
    }
    rng = np.random.default_rng(1)
    warm = mock_table(1000, rng)
    for sf in sfs.values():
        sf.probability(warm)  # compile / load caches
    for n in args.sizes:
        t = mock_table(n, rng)
        for name, sf in sfs.items():
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                sf.probability(t)
                best = min(best, time.perf_counter() - t0)
            print(f"select_{name}_rate_n{n:.0e}: {n / best:.3g} stars/s")
        del t
    if args.gaiaunlimited or args.agreement:
        sys.path.insert(0, str(REPO / "tests"))
        from test_select_apogee import run_gaiaunlimited, random_stars
        from mocksky.select import apogee_dr17_probability
    if args.gaiaunlimited:
        l, b, H, jk = random_stars(2000, np.random.default_rng(2))
        t0 = time.perf_counter()
        run_gaiaunlimited(H, jk, l, b)
        print(f"gaiaunlimited_apogee_sf_rate_n2e3: {2000 / (time.perf_counter() - t0):.3g} stars/s")
    if args.agreement:
        n = args.agreement
        l, b, H, jk = random_stars(n, np.random.default_rng(12))
        mine = apogee_dr17_probability(l, b, H, jk, jk0_limits=False)
        ref, crashed = run_gaiaunlimited(H, jk, l, b)
        ran = ~np.isnan(ref)
        print(f"apogee_agreement_stars: {n} stars")
        print(f"apogee_agreement_gaiaunlimited_ran: {int(ran.sum())} stars")
        print(f"apogee_agreement_gaiaunlimited_indexerror: {len(crashed)} stars")
        print(f"apogee_agreement_nonzero: {int(np.count_nonzero(ref[ran]))} stars")
        print(f"apogee_agreement_mismatches: {int(np.count_nonzero(mine[ran] != ref[ran]))} stars")
        print(f"apogee_agreement_max_abs_diff: {float(np.max(np.abs(mine[ran] - ref[ran]))):.3g}")
        print(f"apogee_agreement_ours_nonzero_where_indexerror: {int(np.count_nonzero(mine[crashed]))} stars")


if __name__ == "__main__":
    main()
