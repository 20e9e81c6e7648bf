"""Accuracy of the Stäckel fudge against actions measured on integrated orbits.

For ~150 orbits (disc-like and halo-like) in the BV23 initial potential, the "true" actions are
measured from surfaces of section of long orbit integrations (as in Binney 2012):

* Jr = (area enclosed by the invariant curve in the (R, vR) section at z = 0, vz > 0) / (2 pi);
* Jz = (area of the invariant curve in the (v, p_v) section at u = u_mid, du/dt > 0) / (2 pi), in
  the prolate spheroidal coordinates (u, v) of the fudge for this orbit, u_mid the middle of the
  orbit's u range (the coordinate surface u = u_mid is crossed at every phase of the vertical
  oscillation, unlike a plane R = const for highly inclined orbits).

On a regular orbit each section is a closed loop homotopic to the theta_r (resp. theta_z) cycle of
the torus, so its area is 2 pi times the action (the other momentum term vanishes on the section).
Orbits trapped in resonances give islands instead of loops; they are part of the statistics (the
fudge cannot represent them), which is why the 90th percentiles are much larger than the medians.
The orbits are integrated in the meridional plane with a 4th-order symplectic scheme (Yoshida 1990)
in numba; crossings are located by cubic Hermite interpolation. The fudge is then evaluated at 25
points along each orbit and the relative errors |J_fudge / J_orbit - 1| are summarised.

Prints ``name: value unit`` lines. Usage::

    python scripts/fudge_accuracy.py [--norbits 150] [--seed 1]

(with mocksky installed, or ``PYTHONPATH=.`` from the repository root). The orbit integrator is
compiled at each run (no numba cache: the script is also imported by a slow test).
"""
from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np

from mocksky.model.actions import StaeckelFudge
from numba import types

from mocksky.model.actions._common import ARR1, ARR2, KERNEL_T, get_kernel
from mocksky.model.actions.staeckel import prolate_coords


def load_bv23():
    """The BV23 initial potential, or a documented analytic stand-in if it cannot be built."""
    try:
        from mocksky.model.potential import load_potential

        return load_potential("/work/shared/data/models/bv23/SCM_MW.ini"), "BV23 initial potential (SCM_MW.ini)"
    except Exception as exc:  # the Poisson solvers may not be available yet
        from mocksky.model.potential import Composite, Hernquist, MiyamotoNagai, NFW

        print(f"# FALLBACK: BV23 potential unavailable ({type(exc).__name__}: {exc}); using a "
              "MiyamotoNagai x2 + NFW + Hernquist stand-in", file=sys.stderr)
        pot = Composite([MiyamotoNagai(3.5e10, 2.5, 0.25), MiyamotoNagai(1.5e10, 2.1, 0.8), NFW(8.0e11, 18.0),
                         Hernquist(1.1e10, 0.7)])
        return pot, "stand-in MN+MN+NFW+Hernquist"


# Yoshida (1990) 4th-order symplectic coefficients
_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
_W0 = 1.0 - 2.0 * _W1
_C = np.array([_W1 / 2, (_W0 + _W1) / 2, (_W0 + _W1) / 2, _W1 / 2])
_D = np.array([_W1, _W0, _W1, 0.0])


@numba.njit
def _acc(f, p, R, z, Lz2):
    _, dR, dz = f(R, abs(z), p)
    if z < 0:
        dz = -dz
    return -dR + Lz2 / (R * R * R), -dz


@numba.njit
def _herm(y0, y1, d0, d1, h, t):
    t2 = t * t
    t3 = t2 * t
    return (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * h * d0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * h * d1


@numba.njit
def _root_herm(y0, y1, d0, d1, h):
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if (_herm(y0, y1, d0, d1, h, mid) < 0.0) == (y0 < 0.0):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@numba.njit
def _uv(R, z, delta):
    sh, ch, sv, cv, u, v = prolate_coords(R, abs(z), delta)
    if z < 0:
        v = np.pi - v
        cv = -cv
    return u, v, sh, ch, sv, cv


_ARR3 = types.Array(types.float64, 3, "C")
_IARR = types.Array(types.int64, 1, "C")


@numba.njit(types.Tuple((_ARR3, _ARR3, _IARR, _IARR, _ARR3))(KERNEL_T, ARR1, ARR2, ARR1, ARR1, _IARR, ARR1, ARR1,
                                                             types.int64, types.int64, ARR1, ARR1),
            parallel=True)
def integrate_sections(f, p, init, Lz, dt, nsteps, delta, umid, maxcross, nsample, C, D):
    """Integrate orbits (R, z, vR, vz) and record the two surfaces of section.

    Returns zsec (N, maxcross, 2) = (R, vR) at upward z = 0 crossings, usec (N, maxcross, 2) =
    (v, p_v) at outward crossings of u = umid, their counts, and nsample phase-space samples per orbit.
    """
    n = init.shape[0]
    zsec = np.full((n, maxcross, 2), np.nan)
    Rsec = np.full((n, maxcross, 2), np.nan)
    nz = np.zeros(n, np.int64)
    nR = np.zeros(n, np.int64)
    samples = np.empty((n, nsample, 4))
    for i in numba.prange(n):
        R, z, vR, vz = init[i, 0], init[i, 1], init[i, 2], init[i, 3]
        Lz2 = Lz[i] * Lz[i]
        h = dt[i]
        every = max(nsteps[i] // nsample, 1)
        aR, az = _acc(f, p, R, z, Lz2)
        js = 0
        for k in range(nsteps[i]):
            if k % every == 0 and js < nsample:
                samples[i, js, 0], samples[i, js, 1], samples[i, js, 2], samples[i, js, 3] = R, z, vR, vz
                js += 1
            R0, z0, vR0, vz0, aR0, az0 = R, z, vR, vz, aR, az
            for s in range(4):
                R += C[s] * h * vR
                z += C[s] * h * vz
                if D[s] != 0.0:
                    a1, a2 = _acc(f, p, R, z, Lz2)
                    vR += D[s] * h * a1
                    vz += D[s] * h * a2
            aR, az = _acc(f, p, R, z, Lz2)
            if z0 < 0.0 <= z and nz[i] < maxcross:
                t = _root_herm(z0, z, vz0, vz, h)
                zsec[i, nz[i], 0] = _herm(R0, R, vR0, vR, h, t)
                zsec[i, nz[i], 1] = _herm(vR0, vR, aR0, aR, h, t)
                nz[i] += 1
            if umid[i] > 0.0 and nR[i] < maxcross:
                ua = _uv(R0, z0, delta[i])[0]
                ub = _uv(R, z, delta[i])[0]
                if ua < umid[i] <= ub:
                    lo, hi = 0.0, 1.0
                    for _ in range(50):
                        mid = 0.5 * (lo + hi)
                        um = _uv(_herm(R0, R, vR0, vR, h, mid), _herm(z0, z, vz0, vz, h, mid), delta[i])[0]
                        if um < umid[i]:
                            lo = mid
                        else:
                            hi = mid
                    t = 0.5 * (lo + hi)
                    Rt, zt = _herm(R0, R, vR0, vR, h, t), _herm(z0, z, vz0, vz, h, t)
                    vRt, vzt = _herm(vR0, vR, aR0, aR, h, t), _herm(vz0, vz, az0, az, h, t)
                    u, v, sh, ch, sv, cv = _uv(Rt, zt, delta[i])
                    Rsec[i, nR[i], 0] = v
                    Rsec[i, nR[i], 1] = delta[i] * (sh * cv * vRt - ch * sv * vzt)
                    nR[i] += 1
    return zsec, Rsec, nz, nR, samples


def _u_mid(pot, f, p, pv, delta):
    """Middle of the u range of the fudge's u-motion for the point pv = (R, 0, z, vR, vT, vz)."""
    from mocksky.model.actions.staeckel import u_range

    R, z, vR, vT, vz = pv[0], pv[2], pv[3], pv[4], pv[5]
    sh, ch, sv, cv, u0, v0 = prolate_coords(R, abs(z), delta)
    vza = vz if z >= 0 else -vz
    Phi0 = f(R, abs(z), p)[0]
    E = Phi0 + 0.5 * (vR**2 + vT**2 + vz**2)
    Lz2 = (R * vT) ** 2
    pu = delta * (ch * sv * vR + sh * cv * vza)
    C = 2 * delta**2 * (E * sh**2 - (sh**2 + sv**2) * Phi0) - pu**2 - Lz2 / sh**2
    umin, umax, _, _, ok = u_range(u0, sv, cv, E, Lz2, delta, C, f, p)
    return 0.5 * (umin + umax) if ok else 0.0


def loop_area(pts):
    """Area enclosed by points scattered along a closed, star-shaped loop (sorted by angle)."""
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 20:
        return np.nan
    c = pts.mean(axis=0)
    scale = pts.std(axis=0) + 1e-300
    ang = np.arctan2((pts[:, 1] - c[1]) / scale[1], (pts[:, 0] - c[0]) / scale[0])
    q = pts[np.argsort(ang)]
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def initial_conditions(pot, norbits, rng):
    nd = int(0.8 * norbits)
    nh = norbits - nd
    R = np.concatenate([2.0 + rng.exponential(3.0, nd), rng.uniform(3.0, 25.0, nh)])
    z = np.concatenate([rng.normal(0, 0.4, nd), rng.normal(0, 5.0, nh)])
    vc = pot.vcirc(R)
    sig = np.concatenate([np.full(nd, 35.0), np.full(nh, 100.0)])
    vR = rng.normal(0, 1, norbits) * sig
    vz = rng.normal(0, 1, norbits) * np.concatenate([np.full(nd, 25.0), np.full(nh, 100.0)])
    vT = np.concatenate([vc[:nd] - 10 + rng.normal(0, 25, nd), rng.normal(0, 120, nh)])
    keep = np.abs(R * vT) > 100.0  # keep away from the z axis (meridional-plane integrator)
    return R[keep], z[keep], vR[keep], vz[keep], vT[keep]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--norbits", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--periods", type=float, default=300.0, help="number of z-oscillations to integrate")
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    pot, label = load_bv23()
    print(f"# potential: {label}")
    f, p = get_kernel(pot)
    R, z, vR, vz, vT = initial_conditions(pot, args.norbits, rng)
    n = len(R)
    pv = np.stack([R, np.zeros(n), z, vR, vT, vz], 1)
    t0 = time.time()
    fudge = {cut: StaeckelFudge(pot, u_cut=cut) for cut in ("point", "equator")}
    J0, _, Om = fudge["point"].actions_angles_frequencies(pv)
    ok = np.all(np.isfinite(Om), axis=1) & (Om[:, 0] > 0) & (Om[:, 1] > 0)
    R, z, vR, vz, vT, Om, pv = R[ok], z[ok], vR[ok], vz[ok], vT[ok], Om[ok], pv[ok]
    n = len(R)
    delta = fudge["point"].focal_distance(pv)
    umid = np.array([_u_mid(pot, f, p, pv[i], delta[i]) for i in range(n)])
    Lz = R * vT
    init = np.stack([R, z, vR, vz], 1)
    per = 2 * np.pi / np.maximum(Om[:, 0], Om[:, 1])
    dt = per / 150.0
    T = args.periods * 2 * np.pi / np.minimum(Om[:, 0], Om[:, 1])
    nsteps = np.ceil(T / dt).astype(np.int64)
    maxcross = int(args.periods * 3)
    zsec, Rsec, nzc, nRc, samples = integrate_sections(f, p, init, Lz, dt, nsteps, delta, umid, maxcross, 25, _C,
                                                       _D)
    t_int = time.time() - t0
    Jr_true = np.array([loop_area(zsec[i]) for i in range(n)]) / (2 * np.pi)
    Jz_true = np.array([loop_area(Rsec[i]) for i in range(n)]) / (2 * np.pi)
    good = np.isfinite(Jr_true) & np.isfinite(Jz_true) & (Jr_true > 0.5) & (Jz_true > 0.2)
    print(f"orbits_used: {good.sum()} of {n}")
    print(f"integration_time: {t_int:.1f} s")
    # fudge along the orbits
    S = samples[good]
    m = S.shape[1]
    Lzs = np.repeat(Lz[good], m)
    Rs, zs, vRs, vzs = (S[:, :, k].ravel() for k in range(4))
    pvs = np.stack([Rs, np.zeros_like(Rs), zs, vRs, Lzs / Rs, vzs], 1)
    Jr_t = np.repeat(Jr_true[good], m)
    Jz_t = np.repeat(Jz_true[good], m)
    for cut in ("point", "equator"):
        J = fudge[cut].actions(pvs)
        er = np.abs(J[:, 0] / Jr_t - 1)
        ez = np.abs(J[:, 1] / Jz_t - 1)
        tag = "" if cut == "point" else "_equatorcut"
        print(f"fudge{tag}_Jr_relerr_median: {np.nanmedian(er):.4g}")
        print(f"fudge{tag}_Jr_relerr_p90: {np.nanpercentile(er, 90):.4g}")
        print(f"fudge{tag}_Jz_relerr_median: {np.nanmedian(ez):.4g}")
        print(f"fudge{tag}_Jz_relerr_p90: {np.nanpercentile(ez, 90):.4g}")
        # scatter of the fudge along each orbit (rms / mean), independent of the sections
        Jo = J.reshape(-1, m, 3)
        sr = np.nanstd(Jo[:, :, 0], axis=1) / np.nanmean(Jo[:, :, 0], axis=1)
        sz = np.nanstd(Jo[:, :, 1], axis=1) / np.nanmean(Jo[:, :, 1], axis=1)
        print(f"fudge{tag}_Jr_along_orbit_scatter_median: {np.nanmedian(sr):.4g}")
        print(f"fudge{tag}_Jz_along_orbit_scatter_median: {np.nanmedian(sz):.4g}")


if __name__ == "__main__":
    main()
