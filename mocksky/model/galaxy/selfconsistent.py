"""Self-consistent iteration of multi-component Galaxy models defined by DFs (Agama's SelfConsistentModel).

Procedure (Binney 2014, MNRAS 440, 787; Vasiliev 2019, MNRAS 482, 1525, Sect. 4.3; BV23 Sect. 4.4)
---------------------------------------------------------------------------------------------------
Start from the potential of the INI's ``[Potential ...]`` sections; then repeat

1. build an action finder for Phi (exact Staeckel fudge, or the interpolated one when the global
   ``[SelfConsistentModel]`` section sets ``useActionInterpolation = True``);
2. compute the density of every DF component, rho_k = int f_k(J) d^3v (:mod:`.moments`), at the
   nodes of its density grid and interpolate it (:class:`SphericalGridDensity`,
   :class:`CylindricalGridDensity`);
3. solve Poisson's equation: the spheroidal components in one
   :class:`~mocksky.model.potential.multipole.Multipole` expansion and the flattened components
   (DF-based ones and the static gas disc) in one
   :class:`~mocksky.model.potential.cylspline.CylSpline`, both on the grids of the global
   ``[SelfConsistentModel]`` section; the new Phi is their sum;

until the relative change of Phi, max |Phi_new - Phi_old| / |Phi_old| over a fixed set of points
(R = 0.1-100 kpc, |z| = 0-10 kpc), is below the tolerance (1e-4) or a maximum number of iterations
is reached (default 4, as in Agama's example_self_consistent_model_mw).

Mapping of INI sections to components (following the section comments of the BV23/BV24 files and
Agama's example_self_consistent_model_mw.py, where the dark halo is a spheroidal component and the
bulge, the discs and the stellar halo form one disc-like component)
--------------------------------------------------------------------------------------------------
* every ``[DF <label>]`` section is a component. Its density grid is the section named by the
  ``grids`` override if given (``{DF label: SelfConsistentModel label}``; the built-in ``bv24_m0``
  maps ``bulge`` to ``disk``, as the authors' AgamaChemo ``mains/getPhi.cpp`` puts all six stellar DFs,
  bulge included, into one ComponentWithDisklikeDF on ``[SelfConsistentModel disk]`` and never reads
  ``[SelfConsistentModel bulge]``); else the ``[SelfConsistentModel <label>]`` section with the same
  label if there is one; else ``[SelfConsistentModel halo]`` if the label contains ``dark`` (the dark
  halo); else ``[SelfConsistentModel disk]`` (discs, stellar halo, BV23's bulge).
* A grid section with ``rminSph/rmaxSph/sizeRadialSph/lmaxAngularSph`` is spherical: log-spaced radii
  and lmax/2 + 1 Gauss-Legendre nodes in cos(theta) in [0, 1] (Agama's "beams"), projected on even
  Legendre polynomials; the component goes into the Multipole. A section with
  ``RminCyl/RmaxCyl/sizeRadialCyl/zminCyl/zmaxCyl/sizeVerticalCyl`` is cylindrical: the nodes
  0, Rmin, ..., Rmax x 0, zmin, ..., zmax (geometric growth, Agama's nonuniform grid with a zero node);
  the component goes into the CylSpline.
* ``[Potential <label>]`` sections whose label contains ``gas`` are static density components (in the
  CylSpline if flattened, the Multipole if spherical); all other ``[Potential ...]`` sections only
  define the initial guess.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numba
import numpy as np
from scipy.interpolate import CubicSpline

from ..ini import AgamaIni, IniSection
from ..potential import Composite
from ..potential.density import Density, DensitySum
from ..potential.factory import density_from_section, grids_from_ini, potential_from_ini
from ..potential._spline2d import nonuniform_grid
from .moments import VelocityIntegrator

log = logging.getLogger(__name__)

__all__ = ["SphericalGridDensity", "CylindricalGridDensity", "ComponentSpec", "IterationRecord",
           "components_from_ini", "iterate_model", "make_action_finder", "potential_change"]

_SPH_KEYS = ("rminSph", "rmaxSph", "sizeRadialSph", "lmaxAngularSph")
_CYL_KEYS = ("RminCyl", "RmaxCyl", "sizeRadialCyl", "zminCyl", "zmaxCyl", "sizeVerticalCyl")


# --------------------------------------------------------------------------- grid densities
class SphericalGridDensity(Density):
    """Density known at the nodes of a spherical grid, as a Legendre expansion in cos(theta).

    rho(r, theta) = sum_{l = 0, 2, .., lmax} rho_l(r) P_l(cos theta); ln rho_0 and rho_l / rho_0 are
    natural cubic splines in ln r, continued as power laws (ln rho_0 linear in ln r, fixed ratios)
    inside the first and beyond the last node.

    Parameters
    ----------
    r : array_like, shape (K,)
        Radii [kpc], increasing.
    mu : array_like, shape (M,)
        cos(theta) nodes in [0, 1] (Gauss-Legendre on [0, 1]).
    values : array_like, shape (K, M)
        rho(r_i, mu_j) [Msun/kpc^3], >= 0.
    lmax : int
        Highest even Legendre order (<= 2 M - 2).
    name : str

    Raises
    ------
    ValueError
        Bad shapes, negative or non-finite values.
    """

    def __init__(self, r, mu, values, lmax: int, name: str = ""):
        r = np.asarray(r, dtype=np.float64)
        mu = np.asarray(mu, dtype=np.float64)
        vals = np.asarray(values, dtype=np.float64)
        if vals.shape != (len(r), len(mu)):
            raise ValueError(f"values must have shape (len(r), len(mu)) = {(len(r), len(mu))}, got {vals.shape}")
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ValueError("values must be finite and >= 0")
        lmax = int(lmax) - int(lmax) % 2
        if lmax > 2 * len(mu) - 2:
            raise ValueError(f"lmax = {lmax} needs at least lmax/2 + 1 angular nodes, got {len(mu)}")
        self.r, self.mu, self.values, self.lmax, self.name = r, mu, vals, lmax, name
        self.spherical = lmax == 0
        ls = np.arange(0, lmax + 1, 2)
        # projection weights: the Gauss-Legendre rule on [0, 1] with len(mu) nodes (exact for the grid's beams)
        x, w = np.polynomial.legendre.leggauss(len(mu))
        xr = 0.5 * (x + 1)
        if not np.allclose(np.sort(xr), np.sort(mu), atol=1e-10):
            raise ValueError("mu must be the Gauss-Legendre nodes on [0, 1] (lmax/2 + 1 'beams')")
        order = np.argsort(mu)
        wm = np.empty(len(mu))
        wm[order] = 0.5 * w[np.argsort(xr)]
        P = _legendre(ls, mu)                                   # (L, M)
        rho_l = (2 * ls[:, None] + 1) * (P * wm[None, :]) @ vals.T  # (L, K)
        floor = 1e-300
        rho0 = np.maximum(rho_l[0], floor)
        self.rho_l = rho_l
        lnr = np.log(r)
        self._lnr = lnr
        self._s0 = CubicSpline(lnr, np.log(rho0), bc_type="natural")
        self._ratio = [CubicSpline(lnr, rho_l[i] / rho0, bc_type="natural") for i in range(1, len(ls))]
        self._slope_in = (math.log(rho0[1]) - math.log(rho0[0])) / (lnr[1] - lnr[0])
        self._slope_out = (math.log(rho0[-1]) - math.log(rho0[-2])) / (lnr[-1] - lnr[-2])
        self._ls = ls

    def _rho0(self, lnr):
        """Monopole rho_0 at ln r, and ln r clipped to the grid."""
        lo, hi = self._lnr[0], self._lnr[-1]
        x = np.clip(lnr, lo, hi)
        ln0 = self._s0(x)
        ln0 = np.where(lnr < lo, ln0 + self._slope_in * (lnr - lo), ln0)
        ln0 = np.where(lnr > hi, ln0 + self._slope_out * (lnr - hi), ln0)
        with np.errstate(under="ignore"):
            return np.exp(ln0), x

    def _density(self, R, z):
        R, z = np.broadcast_arrays(np.asarray(R, dtype=np.float64), np.asarray(z, dtype=np.float64))
        r = np.sqrt(R * R + z * z)
        with np.errstate(divide="ignore", invalid="ignore"):
            lnr = np.log(np.maximum(r, 1e-300))
            mu = np.where(r > 0, np.abs(z) / np.where(r > 0, r, 1.0), 1.0)
        rho0, x = self._rho0(lnr)
        tot = np.ones_like(rho0)
        if len(self._ls) > 1:
            P = _legendre(self._ls, mu.ravel()).reshape((len(self._ls),) + mu.shape)
            for i in range(1, len(self._ls)):
                tot = tot + self._ratio[i - 1](x) * P[i]
        return np.maximum(rho0 * tot, 0.0)

    def total_mass(self) -> float:
        """4 pi int rho_0 r^2 dr [Msun] (Gauss-Legendre in ln r over the grid and 12 e-folds beyond each end)."""
        edges = np.linspace(self._lnr[0] - 12.0, self._lnr[-1] + 12.0, 600)
        x, w = np.polynomial.legendre.leggauss(6)
        mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
        u = (mid[:, None] + half[:, None] * x).ravel()
        wu = (half[:, None] * w).ravel()
        rho0, _ = self._rho0(u)
        return float(4 * np.pi * np.sum(wu * rho0 * np.exp(3 * u)))


def _legendre(ls, x):
    """P_l(x) for the (even) orders ls, shape (len(ls), len(x))."""
    x = np.asarray(x, dtype=np.float64)
    lmax = int(max(ls))
    P = np.empty((lmax + 1,) + x.shape)
    P[0] = 1.0
    if lmax >= 1:
        P[1] = x
    for l in range(1, lmax):
        P[l + 1] = ((2 * l + 1) * x * P[l] - l * P[l - 1]) / (l + 1)
    return P[np.asarray(ls, dtype=np.int64)]


@numba.njit(cache=True, nogil=True)
def _cyl_interp(R, z, A_R, beta_R, A_z, beta_z, logtab, lintab, allpos, Rmax, zmax):
    n = R.shape[0]
    nR, nz = lintab.shape
    out = np.zeros(n)
    for i in range(n):
        Ri = R[i]
        zi = abs(z[i])
        if Ri > Rmax or zi > zmax:
            continue
        u = math.log1p(Ri / A_R) / beta_R
        v = math.log1p(zi / A_z) / beta_z
        iu = min(int(u), nR - 2)
        iv = min(int(v), nz - 2)
        tu = u - iu
        tv = v - iv
        # local bicubic Lagrange stencil in (u, v), in ln rho if the 4 x 4 stencil is positive
        su = min(max(iu - 1, 0), nR - 4)
        sv = min(max(iv - 1, 0), nz - 4)
        ok = True
        for a in range(4):
            for b in range(4):
                if not allpos[su + a, sv + b]:
                    ok = False
        if ok:
            wu = _lag4(u - su)
            wv = _lag4(v - sv)
            acc = 0.0
            for a in range(4):
                row = 0.0
                for b in range(4):
                    row += wv[b] * logtab[su + a, sv + b]
                acc += wu[a] * row
            out[i] = math.exp(acc)
        else:
            out[i] = ((1 - tu) * (1 - tv) * lintab[iu, iv] + tu * (1 - tv) * lintab[iu + 1, iv]
                      + (1 - tu) * tv * lintab[iu, iv + 1] + tu * tv * lintab[iu + 1, iv + 1])
    return out


@numba.njit(cache=True, nogil=True)
def _lag4(t):
    t0, t1, t2, t3 = t, t - 1.0, t - 2.0, t - 3.0
    return (-t1 * t2 * t3 / 6.0, 0.5 * t0 * t2 * t3, -0.5 * t0 * t1 * t3, t0 * t1 * t2 / 6.0)


class CylindricalGridDensity(Density):
    """Density known on an (R, z) grid of Agama's nonuniform type (nodes 0, xmin, ..., xmax).

    Interpolated with local bicubic (4 x 4 Lagrange) polynomials in the grid-index coordinates
    u = ln(1 + R/A_R)/beta_R, v = ln(1 + |z|/A_z)/beta_z, applied to ln rho where the stencil is
    positive (exponential profiles are then nearly exact) and bilinearly to rho next to zeros (e.g. disc
    DFs vanish on the axis). Zero outside the grid (R > Rmax or |z| > zmax), as in Agama.

    Parameters
    ----------
    Rmin, Rmax, nR, zmin, zmax, nz
        Grid parameters [kpc] (Agama RminCyl, RmaxCyl, sizeRadialCyl, zminCyl, zmaxCyl, sizeVerticalCyl).
    values : array_like, shape (nR, nz)
        rho at the nodes [Msun/kpc^3], >= 0.
    name : str

    Raises
    ------
    ValueError
        Bad grid parameters or values.
    """

    def __init__(self, Rmin, Rmax, nR, zmin, zmax, nz, values, name: str = ""):
        self.Rnodes, self.A_R, self.beta_R = nonuniform_grid(Rmin, Rmax, int(nR), "R")
        self.znodes, self.A_z, self.beta_z = nonuniform_grid(zmin, zmax, int(nz), "z")
        vals = np.asarray(values, dtype=np.float64)
        if vals.shape != (len(self.Rnodes), len(self.znodes)):
            raise ValueError(f"values must have shape {(len(self.Rnodes), len(self.znodes))}, got {vals.shape}")
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ValueError("values must be finite and >= 0")
        self.grid = dict(Rmin=float(Rmin), Rmax=float(Rmax), nR=int(nR), zmin=float(zmin), zmax=float(zmax), nz=int(nz))
        self.values = vals
        self.name = name
        self.spherical = False
        self._allpos = vals > 0
        with np.errstate(divide="ignore"):
            self._log = np.ascontiguousarray(np.where(vals > 0, np.log(np.where(vals > 0, vals, 1.0)), -745.0))

    def _density(self, R, z):
        R, z = np.broadcast_arrays(np.asarray(R, dtype=np.float64), np.asarray(z, dtype=np.float64))
        shape = R.shape
        out = _cyl_interp(np.ascontiguousarray(R.ravel()), np.ascontiguousarray(z.ravel()), self.A_R, self.beta_R,
                          self.A_z, self.beta_z, self._log, self.values, self._allpos, self.Rnodes[-1], self.znodes[-1])
        return out.reshape(shape)

    def total_mass(self) -> float:
        """4 pi int int rho R dR dz over the grid [Msun] (6 x 6 Gauss-Legendre nodes per cell)."""
        x, w = np.polynomial.legendre.leggauss(6)

        def mesh(nodes):
            mid, half = 0.5 * (nodes[1:] + nodes[:-1]), 0.5 * np.diff(nodes)
            return (mid[:, None] + half[:, None] * x).ravel(), (half[:, None] * w).ravel()

        Rg, wR = mesh(self.Rnodes)
        zg, wz = mesh(self.znodes)
        rho = self._density(Rg[:, None], zg[None, :])
        return float(4 * np.pi * np.sum(rho * (wR * Rg)[:, None] * wz[None, :]))


# --------------------------------------------------------------------------- components
@dataclass
class ComponentSpec:
    """One model component.

    Attributes
    ----------
    name : str
        The INI section label (e.g. ``"young disk"``, ``"gas disk"``).
    df : DistributionFunction or None
        The DF (None for a static density).
    static : Density or None
        The fixed density of a static component.
    grid_kind : str
        ``"spherical"`` or ``"cylindrical"`` (static components: by the profile's flattening).
    grid : dict
        Grid parameters (Agama names) of DF components.
    grid_section : str
        Header of the INI section that gave the grid.
    density : Density or None
        Current density (static profile, or the interpolated DF density after an iteration).
    """

    name: str
    df: Optional[object] = None
    static: Optional[Density] = None
    grid_kind: str = "cylindrical"
    grid: Dict[str, float] = field(default_factory=dict)
    grid_section: str = ""
    density: Optional[Density] = None

    @property
    def is_df(self) -> bool:
        return self.df is not None


def _grid_of(sec: IniSection):
    if all(k in sec for k in _SPH_KEYS):
        g = {k: sec.get_float(k) for k in _SPH_KEYS}
        if g["sizeRadialSph"] < 3 or g["lmaxAngularSph"] < 0 or not 0 < g["rminSph"] < g["rmaxSph"]:
            raise ValueError(f"[{sec.header}]: need 0 < rminSph < rmaxSph, sizeRadialSph >= 3, lmaxAngularSph >= 0")
        return "spherical", g
    if all(k in sec for k in _CYL_KEYS):
        return "cylindrical", {k: sec.get_float(k) for k in _CYL_KEYS}
    raise ValueError(f"[{sec.header}]: a component grid needs either {list(_SPH_KEYS)} (spherical) or "
                     f"{list(_CYL_KEYS)} (cylindrical)")


def components_from_ini(ini: AgamaIni, grids: Optional[Dict[str, str]] = None) -> List[ComponentSpec]:
    """The components of a self-consistent model described by an INI file (mapping in the module docstring).

    Parameters
    ----------
    ini : AgamaIni
    grids : dict, optional
        ``{DF label: SelfConsistentModel label}`` overriding the default grid of those components
        (case-insensitive), e.g. ``{"bulge": "disk"}``.

    Raises
    ------
    ValueError
        No [DF ...] section, a DF has no usable [SelfConsistentModel ...] grid section, or ``grids`` names an
        unknown DF or grid section.
    """
    from ..df import df_from_section

    dfsecs = ini.of_kind("DF")
    if not dfsecs:
        raise ValueError(f"{ini.path or 'INI'}: no [DF ...] section: nothing to make self-consistent")
    scm = {s.label.lower(): s for s in ini.of_kind("SelfConsistentModel") if s.label}
    over = {str(k).lower(): str(v).lower() for k, v in (grids or {}).items()}
    labels = {s.label.lower() for s in dfsecs}
    for k, v in over.items():
        if k not in labels:
            raise ValueError(f"grids: no [DF {k}] section; DF components: {sorted(labels)}")
        if v not in scm:
            raise ValueError(f"grids[{k!r}]: no [SelfConsistentModel {v}] section; grid sections: {sorted(scm)}")
    comps: List[ComponentSpec] = []
    for sec in dfsecs:
        label = sec.label.lower()
        if label in over:
            gsec = scm[over[label]]
        elif label in scm:
            gsec = scm[label]
        elif "dark" in label and "halo" in scm:
            gsec = scm["halo"]
        elif "disk" in scm:
            gsec = scm["disk"]
        else:
            raise ValueError(f"[{sec.header}]: no grid section for this component: expected [SelfConsistentModel "
                             f"{sec.label}], [SelfConsistentModel halo] (dark haloes) or [SelfConsistentModel disk]")
        kind, grid = _grid_of(gsec)
        comps.append(ComponentSpec(sec.label, df=df_from_section(sec), grid_kind=kind, grid=grid,
                                   grid_section=gsec.header))
    for sec in ini.of_kind("Potential"):
        if "gas" in sec.label.lower():
            d = density_from_section(sec)
            comps.append(ComponentSpec(sec.label, static=d, grid_kind="spherical" if d.spherical else "cylindrical",
                                       density=d, grid_section=sec.header))
    return comps


def grid_points(comp: ComponentSpec):
    """Evaluation points of a DF component's grid: (points (P, 3) [kpc], shape of the value table, extra).

    spherical: values (K, M) at r_i x mu_j, extra = (r, mu); cylindrical: values (nR, nz), extra = (Rnodes, znodes).
    """
    g = comp.grid
    if comp.grid_kind == "spherical":
        r = np.geomspace(g["rminSph"], g["rmaxSph"], int(g["sizeRadialSph"]))
        M = int(g["lmaxAngularSph"]) // 2 + 1
        x, _ = np.polynomial.legendre.leggauss(M)
        mu = 0.5 * (x + 1)
        rr, mm = np.meshgrid(r, mu, indexing="ij")
        pts = np.stack([rr * np.sqrt(1 - mm**2), np.zeros_like(rr), rr * mm], axis=-1).reshape(-1, 3)
        return pts, (len(r), M), (r, mu)
    Rn, _, _ = nonuniform_grid(g["RminCyl"], g["RmaxCyl"], int(g["sizeRadialCyl"]), "R")
    zn, _, _ = nonuniform_grid(g["zminCyl"], g["zmaxCyl"], int(g["sizeVerticalCyl"]), "z")
    RR, ZZ = np.meshgrid(Rn, zn, indexing="ij")
    pts = np.stack([RR, np.zeros_like(RR), ZZ], axis=-1).reshape(-1, 3)
    return pts, (len(Rn), len(zn)), (Rn, zn)


def grid_density(comp: ComponentSpec, values: np.ndarray) -> Density:
    """Interpolated density of a DF component from its values at :func:`grid_points`."""
    g = comp.grid
    if comp.grid_kind == "spherical":
        r = np.geomspace(g["rminSph"], g["rmaxSph"], int(g["sizeRadialSph"]))
        M = int(g["lmaxAngularSph"]) // 2 + 1
        x, _ = np.polynomial.legendre.leggauss(M)
        return SphericalGridDensity(r, 0.5 * (x + 1), values, int(g["lmaxAngularSph"]), name=comp.name)
    return CylindricalGridDensity(g["RminCyl"], g["RmaxCyl"], int(g["sizeRadialCyl"]), g["zminCyl"], g["zmaxCyl"],
                                  int(g["sizeVerticalCyl"]), values, name=comp.name)


# --------------------------------------------------------------------------- Poisson
def solve_potential(comps: List[ComponentSpec], grids: Dict[str, float]):
    """Potential of the current component densities: Multipole (spherical grids) + CylSpline (the rest)."""
    from ..potential.cylspline import CylSpline
    from ..potential.multipole import Multipole

    sph = [c.density for c in comps if c.grid_kind == "spherical"]
    cyl = [c.density for c in comps if c.grid_kind == "cylindrical"]
    parts = []
    if sph:
        dens = sph[0] if len(sph) == 1 else DensitySum(sph)
        parts.append(Multipole.from_density(dens, rmin=grids["rminSph"], rmax=grids["rmaxSph"],
                                            gridsize=int(grids["sizeRadialSph"]), lmax=int(grids["lmaxAngularSph"]),
                                            name="spheroidal components"))
    if cyl:
        dens = cyl[0] if len(cyl) == 1 else DensitySum(cyl)
        parts.append(CylSpline.from_density(dens, Rmin=grids["RminCyl"], Rmax=grids["RmaxCyl"],
                                            nR=int(grids["sizeRadialCyl"]), zmin=grids["zminCyl"],
                                            zmax=grids["zmaxCyl"], nz=int(grids["sizeVerticalCyl"]),
                                            name="flattened components"))
    return parts[0] if len(parts) == 1 else Composite(parts)


_TEST_R = np.geomspace(0.1, 100.0, 25)
_TEST_Z = np.array([0.0, 0.3, 1.0, 3.0, 10.0])


def potential_change(old, new) -> float:
    """max |Phi_new - Phi_old| / |Phi_old| on R = 0.1-100 kpc (25 log-spaced) x |z| = 0, 0.3, 1, 3, 10 kpc."""
    R, z = np.meshgrid(_TEST_R, _TEST_Z, indexing="ij")
    a = np.asarray(old._phi(R, z))
    b = np.asarray(new._phi(R, z))
    return float(np.max(np.abs(b - a) / np.abs(a)))


def make_action_finder(pot, interpolate: bool):
    """Staeckel fudge for ``pot``: the interpolated variant if ``interpolate`` (Agama useActionInterpolation)."""
    from ..actions import StaeckelFudge

    if interpolate:
        from ..actions.interpolated import InterpolatedStaeckelFudge
        return InterpolatedStaeckelFudge(pot)
    return StaeckelFudge(pot)


@dataclass
class IterationRecord:
    """Diagnostics of one iteration (all times wall-clock seconds).

    Attributes
    ----------
    iteration : int
        1-based.
    masses : dict
        Component name -> mass of its density [Msun] (DF components: of the interpolated grid density).
    rho_R0 : dict
        Component name -> rho(R0, z = 0) [Msun/pc^3] of the interpolated density.
    vc_R0 : float
        Circular speed at R0 in the new potential [km/s].
    delta_phi : float
        Relative change of the potential (:func:`potential_change`).
    t_finder, t_actions, t_moments, t_poisson, t_total : float
        Time to build the action finder, in action evaluations, in the rest of the velocity integrals
        (node placement, DF evaluation, sums), in the Poisson solvers, and in total.
    n_actions : int
        Number of action evaluations.
    """

    iteration: int
    masses: Dict[str, float]
    rho_R0: Dict[str, float]
    vc_R0: float
    delta_phi: float
    t_finder: float
    t_actions: float
    t_moments: float
    t_poisson: float
    t_total: float
    n_actions: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def iterate_model(ini: AgamaIni, comps: List[ComponentSpec], potential=None, max_iterations: int = 4,
                  tol: float = 1e-4, interpolate: Optional[bool] = None, R0: float = 8.27,
                  integrator_options: Optional[dict] = None,
                  callback: Optional[Callable[[IterationRecord], None]] = None):
    """Run the self-consistent iteration (see the module docstring).

    Parameters
    ----------
    ini : AgamaIni
        The model file (global grids, initial potential, useActionInterpolation).
    comps : list of ComponentSpec
        From :func:`components_from_ini`; their ``density`` attributes are updated in place.
    potential : Potential, optional
        Initial potential (default: the INI's [Potential ...] sections).
    max_iterations : int
        Maximum number of iterations (>= 1).
    tol : float
        Stop when the relative potential change is below this.
    interpolate : bool, optional
        Use the interpolated action finder (default: the INI's useActionInterpolation, else False).
    R0 : float
        Solar radius for the diagnostics [kpc].
    integrator_options : dict, optional
        Options of :class:`~.moments.VelocityIntegrator`.
    callback : callable, optional
        Called with each :class:`IterationRecord`.

    Returns
    -------
    potential : Potential
        The final potential.
    records : list of IterationRecord

    Raises
    ------
    ValueError
        If max_iterations < 1 or tol <= 0.
    """
    if int(max_iterations) < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    grids = grids_from_ini(ini)
    if interpolate is None:
        sec = ini.get("SelfConsistentModel", "")
        interpolate = bool(sec.get_bool("useActionInterpolation", False)) if sec is not None else False
    pot = potential if potential is not None else potential_from_ini(ini, grids)
    opts = dict(integrator_options or {})
    dfcomps = [c for c in comps if c.is_df]
    # DF components sharing a grid are integrated together (one action evaluation per node)
    groups: Dict[tuple, List[ComponentSpec]] = {}
    for c in dfcomps:
        groups.setdefault((c.grid_kind, tuple(sorted(c.grid.items()))), []).append(c)
    records: List[IterationRecord] = []
    for it in range(1, int(max_iterations) + 1):
        t0 = time.perf_counter()
        af = make_action_finder(pot, interpolate)
        t1 = time.perf_counter()
        t_act = t_mom = 0.0
        n_act = 0
        for members in groups.values():
            pts, shape, _ = grid_points(members[0])
            vi = VelocityIntegrator(pot, af, [c.df for c in members], **opts)
            ta = time.perf_counter()
            rho = vi.density(pts)
            tb = time.perf_counter()
            t_act += vi.timings["actions"]
            t_mom += (tb - ta) - vi.timings["actions"]
            n_act += vi.timings["n_actions"]
            for k, c in enumerate(members):
                c.density = grid_density(c, rho[:, k].reshape(shape))
        t2 = time.perf_counter()
        new = solve_potential(comps, grids)
        t3 = time.perf_counter()
        dphi = potential_change(pot, new)
        pot = new
        rec = IterationRecord(
            iteration=it,
            masses={c.name: float(c.density.total_mass()) for c in comps},
            rho_R0={c.name: float(c.density._density(np.array([R0]), np.array([0.0]))[0]) * 1e-9 for c in comps},
            vc_R0=float(pot.vcirc(np.array([R0]))[0]), delta_phi=dphi, t_finder=t1 - t0, t_actions=t_act,
            t_moments=t_mom, t_poisson=t3 - t2, t_total=time.perf_counter() - t0, n_actions=int(n_act))
        records.append(rec)
        log.info("iteration %d: dPhi/Phi = %.2e, v_c(R0) = %.2f km/s, %d actions, %.1f s (finder %.1f, actions %.1f, "
                 "moments %.1f, Poisson %.1f)", it, dphi, rec.vc_R0, n_act, rec.t_total, rec.t_finder, t_act, t_mom,
                 rec.t_poisson)
        if callback is not None:
            callback(rec)
        if dphi < tol:
            break
    return pot, records
