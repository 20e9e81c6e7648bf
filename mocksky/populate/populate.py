"""Stellar populations of Galaxy components and stars generated at sampled phase-space points.

The population-synthesis recipe is Binney (1996, seed, Sect. 4.4): draw (x, v) from a component's DF,
assign age, initial mass and metallicity, and read magnitudes and colours off isochrones. Here every
star is its own DF sample: the caller samples phase-space points (e.g. :func:`mocksky.model.sampling.
sample_particles`), each carrying the present-day stellar mass it represents, and each point becomes
at most one star.

Mass budget
-----------
A component's DF mass is its present-day stellar mass: living stars plus remnants. With the
star-formation history psi(age) (:mod:`.sfh`, by number of stars formed), the IMF xi(m) normalised
to unit initial mass (:mod:`.imf`) and the present-day mass per unit initial mass r(age, [M/H])
(:meth:`.isochrones.IsochroneGrid.present_mass_fraction`: current masses of living stars, IFMR masses
of remnants), one Msun of present-day mass at metallicity [M/H] formed 1 / <r>_psi([M/H]) Msun of
stars, <r>_psi = int psi(age) r(age, [M/H]) d age, i.e.

    n([M/H]; m_min) = N(m_min, m_upper) / <r>_psi([M/H])   stars per Msun of present-day mass,

N(a, b) being the IMF's number of stars in [a, b) per unit initial mass. r is tabulated on a fine
(log age, [M/H]) grid (every isochrone interval split 12 x in age and 10 x in [M/H]), and <r>_psi uses
the age distribution's own cells, so that expected counts and the stars actually drawn agree (the
present-day mass of the generated stars sums to the DF mass; tests check 0.1 %).

Modes (one star per point at most; a point of mass M_i is kept with probability p_i)
-----------------------------------------------------------------------------------------
``volume``:    every star with initial mass >= m_min: p_i = M_i n([M/H]_i; m_min) ([M/H]_i is drawn
               from the point's actions). Ages ~ psi, masses ~ xi truncated to [m_min, m_upper].
``magnitude``: only stars that can be brighter than ``limit`` in ``band`` at the point's distance
               modulus DM_i and extinction A_i (from the caller's A(l, b, d)): an age is drawn from
               psi, the lowest initial mass able to reach the limit, m_low (:meth:`~.isochrones.
               IsochroneGrid.mass_low`, exact for the interpolation), and the last living mass
               m_end follow, p_i = M_i N(max(m_low, m_min), m_end) / <r>_psi, and the mass is drawn
               from xi truncated to that range. Stars below m_low and remnants are accounted for
               analytically, not generated; the expected number of stars brighter than the limit is
               exact. Some generated stars still fail the limit (non-monotonic isochrones, e.g. the
               red clump below the tip): they are counted and dropped (``keep_faint=False``).

p_i must not exceed 1: the caller supplies enough points (``ComponentPopulation.max_stars_per_mass``
gives the density needed; :class:`MagnitudeSelection` makes a selection function for the sampler that
concentrates points where stars can be seen and returns the point masses to use). Points sampled with a
:class:`MagnitudeSelection` are populated with ``selection=`` it: the age is then drawn from one of its
equal-probability age bins, chosen in proportion to the bin's envelope at the point, and p_i is reweighted so
that counts and ages are those of the plain draw (:meth:`MagnitudeSelection.draw_ages`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from .. import data as _data
from ..catalogue.schema import StarTable
from . import _kernels as K
from .chemistry import make_chemistry
from .imf import IMF, make_imf
from .isochrones import BANDS, IsochroneGrid, _band_index
from .sfh import AgeDistribution, make_age_distribution

log = logging.getLogger(__name__)

__all__ = ["ComponentPopulation", "StellarPopulations", "load_populations", "populate", "expected_counts",
           "MagnitudeSelection", "mass_table", "tag_stars", "MODES"]

MODES = ("volume", "magnitude")
#: Subdivision of each isochrone-grid interval for the r(age, [M/H]) table.
Z_SUBDIV, AGE_SUBDIV = 10, 12
_ABS_COLUMN = {"G": "abs_g", "BP": "abs_bp", "RP": "abs_rp", "GRVS": "abs_grvs", "J": "abs_j", "H": "abs_h",
               "KS": "abs_ks"}
_OUT_COLS = ("mass_current", "teff", "logg", "logl", "abs_g", "abs_bp", "abs_rp", "abs_grvs", "abs_j", "abs_h",
             "abs_ks")
_TABLES: Dict[tuple, tuple] = {}


def _fine_axis(nodes: np.ndarray, sub: int) -> np.ndarray:
    parts = [np.linspace(nodes[i], nodes[i + 1], sub + 1)[:-1] for i in range(len(nodes) - 1)]
    return np.concatenate(parts + [nodes[-1:]])


def mass_table(grid: IsochroneGrid, imf: IMF, m_cap: float = np.inf):
    """r(log age, [M/H]) on the fine table grid (cached per grid, IMF and cap).

    Returns
    -------
    mh : numpy.ndarray, shape (nz,)
    logage : numpy.ndarray, shape (na,)
    r : numpy.ndarray, shape (nz, na)
        Present-day mass per unit initial mass of stars with initial mass below ``m_cap``.
    """
    key = (id(grid), imf.edges.tobytes(), imf.alpha.tobytes(), imf.coef.tobytes(), float(m_cap))
    if key not in _TABLES:
        zf = _fine_axis(grid.mh, Z_SUBDIV)
        laf = _fine_axis(grid.logage, AGE_SUBDIV)
        Z, A = np.meshgrid(zf, laf, indexing="ij")
        r = grid.present_mass_fraction(A.ravel(), Z.ravel(), imf, m_cap=m_cap).reshape(Z.shape)
        _TABLES[key] = (zf, laf, r, grid)  # keep the grid alive so that id() stays unique
    zf, laf, r, _ = _TABLES[key]
    return zf, laf, r


# =============================================================================== component
class ComponentPopulation:
    """Stellar population of one Galaxy component: IMF, age distribution(s), chemistry, isochrones.

    Parameters
    ----------
    name : str
        Component name (as in the model's INI file).
    imf : IMF
    ages : sequence of AgeDistribution
        ``ages[0]`` for the component's stars; ``ages[1]`` (optional) for the stars a two-population
        chemistry puts in its alternative population (the BV23 thick disc's normal-alpha stars).
    chemistry : ChemistryBV23 or ChemistryBV24
    isochrones : IsochroneGrid
    description : str
    references : sequence of str
    """

    def __init__(self, name: str, imf: IMF, ages: Sequence[AgeDistribution], chemistry, isochrones: IsochroneGrid,
                 description: str = "", references: Sequence[str] = ()):
        if not ages:
            raise ValueError(f"component {name!r}: at least one age distribution is needed")
        self.name = name
        self.imf = imf
        self.ages = list(ages)
        self.chemistry = chemistry
        self.isochrones = isochrones
        self.description = description
        self.references = list(references)
        self._rbar: Dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ mass budget
    @property
    def n_sub(self) -> int:
        """Number of sub-populations (age distributions)."""
        return len(self.ages)

    def _rbar_table(self, sub: int, m_cap: float = np.inf) -> tuple:
        key = (sub, float(m_cap))
        if key not in self._rbar:
            zf, laf, r = mass_table(self.isochrones, self.imf, m_cap)
            ad = self.ages[sub]
            la = np.clip(IsochroneGrid.logage_of(ad.cell_ages), laf[0], laf[-1])
            j = np.clip(np.searchsorted(laf, la, side="right") - 1, 0, len(laf) - 2)
            w = (la - laf[j]) / (laf[j + 1] - laf[j])
            rc = r[:, j] * (1 - w) + r[:, j + 1] * w  # (nz, ncells)
            self._rbar[key] = (zf, rc @ ad.cell_prob)
        return self._rbar[key]

    def present_mass_fraction(self, mh, sub=0) -> np.ndarray:
        """<r>_psi([M/H]): present-day stellar mass per unit initial mass formed (living + remnants).

        Parameters
        ----------
        mh : array_like
            [M/H] [dex] (clamped to the isochrone grid).
        sub : int or array_like of int
            Sub-population (age distribution) index, broadcast with ``mh``.
        """
        mh = np.asarray(mh, dtype=np.float64)
        sub = np.broadcast_to(np.asarray(sub, dtype=np.int64), mh.shape)
        out = np.empty(mh.shape)
        for s in range(self.n_sub):
            m = sub == s
            if np.any(m):
                zf, rb = self._rbar_table(s)
                out[m] = np.interp(mh[m], zf, rb)
        return out

    def _check_m_min(self, m_min) -> float:
        floor = max(self.imf.m_lower, self.isochrones.m_floor)
        m = floor if m_min is None else float(m_min)
        if not (floor - 1e-12 <= m < self.imf.m_upper):
            raise ValueError(f"m_min must be in [{floor:g}, {self.imf.m_upper:g}) Msun (the isochrones start at "
                             f"{self.isochrones.m_floor:g}, the IMF at {self.imf.m_lower:g}), got {m_min}")
        return max(m, floor)

    def stars_per_mass(self, mh, m_min: Optional[float] = None, sub=0) -> np.ndarray:
        """Expected stars (living + remnants) with initial mass >= m_min per Msun of present-day mass.

        Raises
        ------
        ValueError
            m_min below the isochrones' or the IMF's lowest mass or above the IMF's highest.
        """
        m = self._check_m_min(m_min)
        return float(self.imf.number(m, self.imf.m_upper)) / self.present_mass_fraction(mh, sub)

    def max_stars_per_mass(self, m_min: Optional[float] = None) -> float:
        """Largest :meth:`stars_per_mass` over [M/H] and sub-populations [1/Msun]: points of mass M_i need
        M_i <= 1 / this for every star to be representable."""
        m = self._check_m_min(m_min)
        return float(self.imf.number(m, self.imf.m_upper)) / min(float(self._rbar_table(s)[1].min())
                                                                  for s in range(self.n_sub))

    def mass_fraction_below(self, mh, m_min: float, sub=0) -> np.ndarray:
        """Fraction of the present-day mass in stars (and their remnants) with initial mass < m_min."""
        mh = np.asarray(mh, dtype=np.float64)
        sub = np.broadcast_to(np.asarray(sub, dtype=np.int64), mh.shape)
        out = np.empty(mh.shape)
        for s in range(self.n_sub):
            m = sub == s
            if np.any(m):
                zf, rb = self._rbar_table(s)
                _, rcap = self._rbar_table(s, float(m_min))
                out[m] = np.interp(mh[m], zf, rcap) / np.interp(mh[m], zf, rb)
        return out

    # ------------------------------------------------------------------ draws
    def draw_chemistry(self, actions, n1, n2, u) -> Dict[str, np.ndarray]:
        """Chemistry and sub-population from given random numbers (see :mod:`.chemistry`); adds ``sub``."""
        c = self.chemistry.draw(actions, n1, n2, u)
        if self.n_sub > 1 and getattr(self.chemistry, "two_populations", False):
            c["sub"] = np.where(c["high_alpha"], 0, 1).astype(np.int64)
        else:
            c["sub"] = np.zeros(len(c["feh"]), dtype=np.int64)
        return c

    def mh_candidates(self, jphi, n1, n2) -> Optional[np.ndarray]:
        """[M/H] each sub-population would get from :meth:`draw_chemistry` with normals n1, n2 at angular momentum
        Jphi, shape (N, n_sub) (NaN for a sub-population the chemistry cannot choose), or None when the chemistry
        needs other actions than Jphi (BV24: Jr and Jz) for [M/H]."""
        cand = getattr(self.chemistry, "mh_candidates", None)
        if cand is None:
            return None
        c = cand(jphi, n1, n2)
        out = np.full((len(c), self.n_sub), np.nan)
        if self.n_sub > 1 and getattr(self.chemistry, "two_populations", False):
            out[:, :2] = c[:, :2]  # sub 0: high alpha, sub 1: normal alpha (as draw_chemistry)
        else:
            out[:, 0] = c[:, 0]
        return out

    def draw_ages(self, u, sub) -> np.ndarray:
        """Ages [Gyr] from uniforms u for the given sub-populations."""
        u = np.asarray(u, dtype=np.float64)
        out = self.ages[0].ppf(u)
        for s in range(1, self.n_sub):
            m = sub == s
            if np.any(m):
                out[m] = self.ages[s].ppf(u[m])
        return out

    def describe(self) -> dict:
        """JSON-friendly summary (for catalogue metadata)."""
        return {"name": self.name, "description": self.description, "imf": self.imf.describe(),
                "ages": [a.describe() for a in self.ages], "chemistry": self.chemistry.describe(),
                "references": self.references}


class StellarPopulations(Mapping):
    """The stellar populations of a Galaxy model: name -> :class:`ComponentPopulation`.

    Components listed with ``stellar = false`` (dark halo) are in :attr:`non_stellar`.
    """

    def __init__(self, components: Dict[str, ComponentPopulation], non_stellar: Sequence[str] = (),
                 meta: Optional[dict] = None, isochrones: Optional[IsochroneGrid] = None, path: Optional[Path] = None):
        self._c = dict(components)
        self.non_stellar = tuple(non_stellar)
        self.meta = dict(meta or {})
        self.isochrones = isochrones
        self.path = path

    def __getitem__(self, name: str) -> ComponentPopulation:
        if name in self._c:
            return self._c[name]
        for k, v in self._c.items():
            if k.lower() == str(name).lower():
                return v
        raise KeyError(f"no stellar population {name!r}; have {list(self._c)} (non-stellar: {list(self.non_stellar)})")

    def __iter__(self) -> Iterator[str]:
        return iter(self._c)

    def __len__(self) -> int:
        return len(self._c)

    def is_stellar(self, name: str) -> bool:
        """Whether a component has stars (False for the listed non-stellar ones).

        Raises
        ------
        KeyError
            Component in neither list.
        """
        if any(k.lower() == str(name).lower() for k in self._c):
            return True
        if any(k.lower() == str(name).lower() for k in self.non_stellar):
            return False
        raise KeyError(f"component {name!r} is not in the population spec; stellar: {list(self._c)}, "
                       f"non-stellar: {list(self.non_stellar)}")

    @property
    def solar(self) -> str:
        """Name of the solar parameters of the model (``[model] solar``)."""
        return str(self.meta.get("model", {}).get("solar", "bv24"))

    def describe(self) -> dict:
        return {"spec": str(self.path) if self.path else "", "model": self.meta.get("model", {}),
                "isochrones": self.isochrones.describe() if self.isochrones else {},
                "components": {k: v.describe() for k, v in self._c.items()}}


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def load_populations(spec: Union[str, Path] = "bv23", isochrones: Optional[IsochroneGrid] = None) -> StellarPopulations:
    """Read a population spec (``mocksky/data/populations/<name>.toml`` or a TOML path).

    Parameters
    ----------
    spec : str or path
        Built-in name (``"bv23"``, ``"bv24_m0"``) or a TOML file.
    isochrones : IsochroneGrid, optional
        Default: the shipped PARSEC grid.

    Returns
    -------
    StellarPopulations

    Raises
    ------
    mocksky.data.DataNotFoundError
        Unknown name.
    ValueError
        Malformed spec (the bad field is named).
    """
    p = Path(spec)
    if not p.is_file():
        p = _data.find(f"populations/{spec}.toml", hint="Built-in population specs: bv23, bv24_m0.")
    d = _read_toml(p)
    for key in ("model", "imf", "chemistry", "components"):
        if key not in d:
            raise ValueError(f"{p}: missing [{key}] table")
    grid = isochrones if isochrones is not None else IsochroneGrid.default()
    comps_spec = d["components"]
    default_imf = make_imf(d["imf"])
    comps, non = {}, []
    for name, c in comps_spec.items():
        if not c.get("stellar", True):
            non.append(name)
            continue
        if "age" not in c or "chemistry" not in c:
            raise ValueError(f"{p}: component {name!r} needs 'age' and 'chemistry' (or stellar = false)")
        imf = make_imf(c["imf"]) if "imf" in c else default_imf
        ages = [make_age_distribution(c["age"], c.get("age_reference"))]
        if "age_normal_alpha" in c:
            ages.append(make_age_distribution(c["age_normal_alpha"], c.get("age_reference")))
        try:
            chem = make_chemistry(c["chemistry"], d["chemistry"], comps_spec, name)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None
        refs = list(d["model"].get("references", [])) + [r for r in (c.get("age_reference"),) if r]
        comps[name] = ComponentPopulation(name, imf, ages, chem, grid, str(c.get("description", "")), refs)
    return StellarPopulations(comps, non, {k: v for k, v in d.items() if k != "components"}, grid, p)


# =============================================================================== points
@dataclass
class _Points:
    posvel: np.ndarray
    actions: np.ndarray
    component: np.ndarray
    names: tuple
    mass: np.ndarray


def _as_points(points, mass=None) -> _Points:
    if hasattr(points, "posvel"):
        pv, act, comp, names = points.posvel, points.actions, points.component, tuple(points.component_names)
        m = points.mass if mass is None else mass
    elif isinstance(points, Mapping):
        try:
            pv = points["posvel"] if "posvel" in points else np.column_stack(
                [points[k] for k in ("x", "y", "z", "vx", "vy", "vz")])
            act = points["actions"] if "actions" in points else np.column_stack(
                [points[k] for k in ("Jr", "Jz", "Jphi")])
            comp = points["component"]
            names = tuple(points["component_names"])
        except KeyError as exc:
            raise ValueError(f"points: missing {exc}; need posvel (or x..vz), actions (or Jr, Jz, Jphi), component "
                             "and component_names") from None
        m = mass if mass is not None else points.get("mass", points.get("particle_mass"))
        if m is None:
            raise ValueError("points: need 'mass' (present-day stellar mass each point represents) [Msun]")
    else:
        raise ValueError(f"points: expected mocksky Particles or a mapping of arrays, got {type(points).__name__}")
    pv = np.asarray(pv, dtype=np.float64)
    act = np.asarray(act, dtype=np.float64)
    comp = np.asarray(comp, dtype=np.int64)
    n = len(pv)
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), (n,))
    if pv.shape != (n, 6) or act.shape != (n, 3) or comp.shape != (n,):
        raise ValueError(f"points: inconsistent shapes posvel {pv.shape}, actions {act.shape}, component {comp.shape}")
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise ValueError("points: masses must be finite and non-negative")
    if n and (comp.min() < 0 or comp.max() >= len(names)):
        raise ValueError(f"points: component indices must be in [0, {len(names)})")
    return _Points(pv, act, comp, names, m)


def _sky(posvel: np.ndarray, solar) -> Dict[str, np.ndarray]:
    from ..observe.frames import galactocentric_to_lbd

    return galactocentric_to_lbd(posvel[:, 0], posvel[:, 1], posvel[:, 2], solar=solar)


def _distance_modulus(d_kpc: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 5.0 * np.log10(np.maximum(d_kpc, 0.0)) + 10.0


def _extinction_values(extinction, sky, n) -> np.ndarray:
    if extinction is None:
        return np.zeros(n)
    if callable(extinction):
        a = np.asarray(extinction(sky["l"], sky["b"], sky["distance"]), dtype=np.float64)
    else:
        a = np.asarray(extinction, dtype=np.float64)
    a = np.broadcast_to(a, (n,))
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError("extinction: values must be finite and >= 0 [mag]")
    return a


@dataclass
class _Plan:
    """Per-point quantities of one component before thinning."""

    chem: Dict[str, np.ndarray]
    mh_iso: np.ndarray
    age: np.ndarray
    lam: np.ndarray
    m_lo: np.ndarray
    m_hi: np.ndarray
    u_mass: np.ndarray
    u_keep: np.ndarray
    dm_a: Optional[np.ndarray] = None


def _giant_floor(g: IsochroneGrid, imf, logage, mh, lo, hi, logg_max):
    """Raise the lower mass bound to the lowest mass with log g <= logg_max; the new bound and IMF number."""
    lo = np.maximum(lo, g.mass_low_logg(logage, mh, logg_max))
    num = np.where(hi > lo, imf.number(np.minimum(lo, hi), hi), 0.0)
    return lo, num


def _plan_component(cp: ComponentPopulation, posvel, actions, mass, rng, mode, m_min, band, limit, extinction,
                    solar, logg_max=None, selection=None, chem_noise=None) -> _Plan:
    n = len(mass)
    normals = rng.standard_normal((2, n))
    uni = rng.random((4 if selection is None else 5, n))
    if chem_noise is not None:
        normals = np.ascontiguousarray(chem_noise[:, :2].T)
        uni[0] = chem_noise[:, 2]
    chem = cp.draw_chemistry(actions, normals[0], normals[1], uni[0])
    g = cp.isochrones
    mh_iso = np.clip(chem["mh"], g.mh[0], g.mh[-1])
    rbar = cp.present_mass_fraction(mh_iso, chem["sub"])
    m_lo_c = cp._check_m_min(m_min)
    imf = cp.imf
    if mode == "volume":
        age = cp.draw_ages(uni[1], chem["sub"])
        lam = mass * float(imf.number(m_lo_c, imf.m_upper)) / rbar
        return _Plan(chem, mh_iso, age, lam, np.full(n, m_lo_c), np.full(n, imf.m_upper), uni[2], uni[3])
    if chem_noise is not None and chem_noise.shape[1] == 4:
        dm_a = np.ascontiguousarray(chem_noise[:, 3])  # the selection's mu of these points (see populate)
    else:
        sky = _sky(posvel, solar)
        dm_a = _distance_modulus(sky["distance"]) + _extinction_values(extinction, sky, n)
    if selection is None:
        age = cp.draw_ages(uni[1], chem["sub"])
        factor = 1.0
    else:
        age, factor = selection.draw_ages(dm_a, chem["sub"], uni[4], uni[1], mh=mh_iso)
        mass = mass * factor
    mlim = np.ascontiguousarray(limit - dm_a)
    b = _band_index(band)
    if BANDS[b] == "GRVS":
        mlim = mlim + 0.05
    logage = np.clip(IsochroneGrid.logage_of(age), g.logage[0], g.logage[-1])
    lo, hi, num = K.detectable_fraction(logage, mh_iso, mlim, b, m_lo_c, g.kernel_grid(), *imf.arrays())
    if logg_max is not None:
        lo, num = _giant_floor(g, imf, logage, mh_iso, lo, hi, logg_max)
    lam = mass * num / rbar
    return _Plan(chem, mh_iso, age, lam, lo, hi, uni[2], uni[3], dm_a)


def _check_selection(sel, cp: ComponentPopulation, mode, band, limit, m_min, logg_max) -> None:
    if not isinstance(sel, MagnitudeSelection):
        raise ValueError(f"selection: need a MagnitudeSelection, got {type(sel).__name__}")
    if mode != "magnitude":
        raise ValueError("selection: only with mode='magnitude'")
    if sel.pop.name != cp.name:
        raise ValueError(f"selection: made for component {sel.pop.name!r}, the points are {cp.name!r}")
    lg = None if logg_max is None else float(logg_max)
    if (sel.band != band or sel.limit != float(limit) or sel.m_min != cp._check_m_min(m_min) or sel.logg_max != lg):
        raise ValueError(f"selection: band, limit, m_min, logg_max ({sel.band}, {sel.limit}, {sel.m_min}, "
                         f"{sel.logg_max}) differ from this call's ({band}, {limit}, {m_min}, {logg_max})")


def _check_mode(mode, limit, logg_max=None):
    if mode not in MODES:
        raise ValueError(f"mode: unknown {mode!r}; allowed: {list(MODES)}")
    if mode == "magnitude" and (limit is None or not np.isfinite(limit)):
        raise ValueError("mode 'magnitude' needs a finite 'limit' [mag]")
    if logg_max is not None:
        if mode != "magnitude":
            raise ValueError("logg_max: only mode 'magnitude' can restrict the stars to giants")
        if not np.isfinite(logg_max):
            raise ValueError(f"logg_max: must be a finite log g [dex], got {logg_max!r}")


def expected_counts(points, populations: StellarPopulations, *, mode: str = "volume", m_min: Optional[float] = None,
                    band: str = "G", limit: Optional[float] = None, extinction=None, solar=None, rng=None,
                    mass=None, logg_max: Optional[float] = None) -> np.ndarray:
    """Expected number of stars each point stands for (unbiased, one random age/chemistry per point).

    Summing over points gives the expected number of stars (``volume``: with initial mass >= m_min;
    ``magnitude``: generated stars, i.e. those that can reach ``limit``) without generating any; the
    values may exceed 1. Parameters as :func:`populate`.

    Returns
    -------
    numpy.ndarray, shape (N,)
        0 for points of non-stellar components.
    """
    _check_mode(mode, limit, logg_max)
    rng = np.random.default_rng(rng)
    P = _as_points(points, mass)
    solar = solar if solar is not None else populations.solar
    out = np.zeros(len(P.mass))
    for ci, name in enumerate(P.names):
        idx = np.nonzero(P.component == ci)[0]
        if len(idx) == 0 or not populations.is_stellar(name):
            continue
        plan = _plan_component(populations[name], P.posvel[idx], P.actions[idx], P.mass[idx], rng, mode, m_min, band,
                               limit, extinction, solar, logg_max)
        out[idx] = plan.lam
    return out


def populate(points, populations: StellarPopulations, *, mode: str = "volume", m_min: Optional[float] = None,
             band: str = "G", limit: Optional[float] = None, extinction: Union[None, float, Callable] = None,
             solar=None, rng=None, mass=None, overflow: str = "error", keep_faint: bool = False,
             remnants: bool = True, logg_max: Optional[float] = None,
             selection: Optional["MagnitudeSelection"] = None, chem_noise=None) -> StarTable:
    """Generate stars at sampled phase-space points (see the module docstring).

    Parameters
    ----------
    points : mocksky.model.sampling.Particles or mapping
        ``posvel`` (N, 6) [kpc, km/s] (or columns x, y, z, vx, vy, vz), ``actions`` (N, 3) (Jr, Jz, Jphi)
        [kpc km/s] (or columns), ``component`` (N,) indices into ``component_names`` and ``mass`` (N,)
        [Msun]: the present-day stellar mass each point represents (for a selection-weighted sample,
        the particle mass divided by the selection probability; see :class:`MagnitudeSelection`).
    populations : StellarPopulations
        From :func:`load_populations`.
    mode : {'volume', 'magnitude'}
    m_min : float, optional
        Lowest initial mass [Msun] (default: the isochrones' 0.08).
    band : str
        Band of the magnitude limit (G, BP, RP, GRVS, J, H, Ks).
    limit : float
        Apparent-magnitude limit (mode 'magnitude').
    extinction : callable, float or None
        ``A(l [deg], b [deg], d [kpc]) -> extinction in `band` [mag]`` (or a constant). For a
        colour-dependent extinction pass the smallest value over colours to keep the sample complete.
    solar : str or SolarParameters, optional
        Solar parameters for (l, b, d) (default: the spec's ``[model] solar``).
    rng : int, numpy.random.Generator or None
    mass : array_like, optional
        Override the points' masses.
    overflow : {'error', 'clip', 'weight'}
        What to do when a point stands for more than one expected star: raise (default), or cap the
        probability at 1 and record the expected stars lost in the metadata ('clip'; biased where points are
        too sparse), or make every point with lam_i > 0 one star drawn from the same conditional distribution
        (age, [M/H], initial mass in [m_low, m_end]) carrying the column ``weight`` = lam_i, the expected number
        of stars it stands for ('weight': an importance-weighted mock, unbiased for any number of points;
        weighted sums estimate counts, and histograms must be weighted by ``weight``).
    keep_faint : bool
        Mode 'magnitude': keep the generated stars that turn out fainter than the limit.
    remnants : bool
        Mode 'volume': keep remnants (white dwarfs, neutron stars, black holes; no photometry).
    logg_max : float, optional
        Mode 'magnitude': generate only stars with log g <= logg_max [dex] (giants for a spectroscopic survey
        like APOGEE, e.g. 3.5 for Binney & Vasiliev 2024): the lowest initial mass of a point's star is also
        raised to :meth:`~.isochrones.IsochroneGrid.mass_low_logg`, so expected counts stay exact and the
        dwarfs that could pass the magnitude limit are neither generated nor need points. Generated stars with
        log g > logg_max (interpolation margin) are counted and dropped like faint ones.
    selection : MagnitudeSelection, optional
        Mode 'magnitude', points of one stellar component sampled with this selection and given the masses
        :meth:`MagnitudeSelection.point_mass`: each point's age is drawn from the selection's age bins in
        proportion to their envelopes at the point's distance modulus + extinction, and its expected count is
        reweighted by (mean envelope / chosen bin's envelope), which keeps every expectation <= 1 and the
        counts and age distributions those of the plain draw (see :meth:`MagnitudeSelection.draw_ages`). Its
        limit, band, m_min and logg_max must be this call's.
    chem_noise : array_like, shape (N, 3) or (N, 4), optional
        The random numbers (n1, n2, u) of each point's chemistry draw, when the sampler has already drawn them to
        thin the points by :meth:`MagnitudeSelection.velocity_factor` (the points' masses then include that
        factor, :meth:`MagnitudeSelection.point_mass`); by default they are drawn here. A fourth column is the
        point's distance modulus + extinction mu [mag] as ``selection`` computed it
        (:meth:`MagnitudeSelection.draw_velocity_factor`); it is used instead of recomputing mu when this call's
        ``extinction`` and ``solar`` are the selection's.

    Returns
    -------
    StarTable
        Columns component, particle_mass (the point's mass), weight (see ``overflow``), x, y, z, vx, vy, vz,
        Jr, Jz, Jphi, age, mass_initial, mass_current, feh, alpha_fe, mh, teff, logg, logl, phase, is_remnant and
        abs_g, abs_bp, abs_rp, abs_grvs, abs_j, abs_h, abs_ks (NaN for remnants). ``meta['populate']``
        holds the mode, limits, expected and generated counts per component and the waste fraction.

    Raises
    ------
    ValueError
        Bad arguments (named) or (overflow='error') points carrying too much mass.
    KeyError
        A component of the points is not in the population spec.
    """
    _check_mode(mode, limit, logg_max)
    if overflow not in ("error", "clip", "weight"):
        raise ValueError(f"overflow: unknown {overflow!r}; allowed: ['error', 'clip', 'weight']")
    rng = np.random.default_rng(rng)
    P = _as_points(points, mass)
    if chem_noise is not None:
        noise = np.asarray(chem_noise, dtype=np.float64)
        if noise.ndim != 2 or len(noise) != len(P.mass) or noise.shape[1] not in (3, 4) \
                or not np.all(np.isfinite(noise[:, :3])):
            raise ValueError(f"chem_noise: need finite (n1, n2, u[, mu]) per point, shape ({len(P.mass)}, 3) or "
                             f"({len(P.mass)}, 4), got {noise.shape}")
    solar = solar if solar is not None else populations.solar
    if chem_noise is not None and noise.shape[1] == 4 and not (
            selection is not None and extinction is selection.extinction
            and (solar is selection.solar or solar == selection.solar)):
        noise = noise[:, :3]  # mu of another extinction or observer: recomputed
    parts: List[dict] = []
    info: Dict[str, dict] = {}
    for ci, name in enumerate(P.names):
        idx = np.nonzero(P.component == ci)[0]
        if not populations.is_stellar(name):
            if len(idx):
                log.info("populate: %d points of non-stellar component %r skipped", len(idx), name)
            continue
        if len(idx) == 0:
            continue
        cp = populations[name]
        if selection is not None:
            _check_selection(selection, cp, mode, band, limit, m_min, logg_max)
        plan = _plan_component(cp, P.posvel[idx], P.actions[idx], P.mass[idx], rng, mode, m_min, band, limit,
                               extinction, solar, logg_max, selection, None if chem_noise is None else noise[idx])
        lam = plan.lam
        pmax = float(lam.max()) if len(lam) else 0.0
        lost = float(np.sum(np.maximum(lam - 1.0, 0.0))) if overflow != "weight" else 0.0
        if pmax > 1.0 and overflow == "error":
            raise ValueError(f"populate: component {name!r}: a point stands for up to {pmax:.3g} expected stars "
                             f"(> 1); sample at least {pmax:.3g} times more points (smaller point masses) or pass "
                             "overflow='clip'")
        keep = (lam > 0) if overflow == "weight" else (plan.u_keep < lam)
        k = np.nonzero(keep)[0]
        g = cp.isochrones
        logage = np.clip(IsochroneGrid.logage_of(plan.age[k]), g.logage[0], g.logage[-1])
        m_init, out = K.tag_stars(np.ascontiguousarray(logage), np.ascontiguousarray(plan.mh_iso[k]),
                                  np.ascontiguousarray(plan.u_mass[k]), np.ascontiguousarray(plan.m_lo[k]),
                                  np.ascontiguousarray(plan.m_hi[k]), g.kernel_grid(), *cp.imf.arrays())
        cols = {c: out[:, j] for j, c in enumerate(_OUT_COLS)}
        phase = out[:, 11].astype(np.int16)
        is_rem = phase >= K.WD
        sel = np.ones(len(k), bool)
        n_faint = 0
        if mode == "magnitude":
            app = cols[_ABS_COLUMN[BANDS[_band_index(band)]]] + plan.dm_a[k]
            faint = ~(app <= limit)
            if logg_max is not None:
                faint |= ~(cols["logg"] <= logg_max)
            n_faint = int(np.count_nonzero(faint))
            if not keep_faint:
                sel &= ~faint
        elif not remnants:
            sel &= ~is_rem
        src = idx[k[sel]]
        part = {"component": np.full(len(src), ci, np.int16), "particle_mass": P.mass[src],
                "weight": lam[k[sel]] if overflow == "weight" else np.ones(len(src))}
        for j, c in enumerate(("x", "y", "z", "vx", "vy", "vz")):
            part[c] = P.posvel[src, j]
        for j, c in enumerate(("Jr", "Jz", "Jphi")):
            part[c] = P.actions[src, j]
        part["age"] = plan.age[k[sel]]
        part["mass_initial"] = m_init[sel]
        for c in ("feh", "alpha_fe", "mh"):
            part[c] = plan.chem[c][k[sel]]
        for c in _OUT_COLS:
            part[c] = cols[c][sel]
        part["phase"] = phase[sel]
        part["is_remnant"] = is_rem[sel]
        parts.append(part)
        del out, cols, m_init
        n_clamped = int(np.count_nonzero(plan.mh_iso != plan.chem["mh"]))
        if n_clamped:
            log.info("populate: %s: [M/H] of %d of %d points outside the isochrones' [%.2f, %.2f] (clamped)", name,
                     n_clamped, len(idx), cp.isochrones.mh[0], cp.isochrones.mh[-1])
        info[name] = {"points": int(len(idx)), "expected": float(lam.sum()), "generated": int(len(k)),
                      "kept": int(np.count_nonzero(sel)), "fainter_than_limit": n_faint,
                      "waste_fraction": n_faint / len(k) if (mode == "magnitude" and len(k)) else 0.0,
                      "remnants": int(np.count_nonzero(is_rem)), "max_point_expectation": pmax,
                      "expected_lost_overflow": lost,
                      "mh_clamped": n_clamped}
    cols_all = ["component", "particle_mass", "weight", "x", "y", "z", "vx", "vy", "vz", "Jr", "Jz", "Jphi", "age",
                "mass_initial", "mass_current", "feh", "alpha_fe", "mh", "teff", "logg", "logl", "phase",
                "is_remnant", "abs_g", "abs_bp", "abs_rp", "abs_grvs", "abs_j", "abs_h", "abs_ks"]
    table = StarTable()
    for c in cols_all:
        # taken out of the parts column by column (a single part's arrays are used as they are): the chunk's
        # peak memory holds one copy of the table, not two
        arrs = [p.pop(c) for p in parts]
        if len(arrs) == 1:
            table[c] = arrs[0]
        else:
            table[c] = np.concatenate(arrs) if arrs else np.zeros(0, dtype=np.int16 if c in ("component", "phase")
                                                                 else (bool if c == "is_remnant" else np.float64))
    table.meta["populate"] = {"mode": mode, "m_min": m_min, "band": band if mode == "magnitude" else None,
                              "limit": limit, "logg_max": logg_max, "overflow": overflow, "solar": solar if isinstance(solar, str) else getattr(solar, "name", ""),
                              "component_names": list(P.names), "components": info,
                              "populations": populations.describe()}
    return table


# =============================================================================== selection for samplers
def _subdivided(x, parts: int):
    """Sorted nodes x with each interval between consecutive ones split into ``parts`` equal parts."""
    x = np.asarray(x, dtype=np.float64)
    t = np.arange(1, parts)[:, None] / parts
    return np.sort(np.concatenate([x, (x[:-1] + t * (x[1:] - x[:-1])).ravel()]))


class MagnitudeSelection:
    """Selection function for a phase-space sampler: where can stars of a component be seen?

    S(x) = D(mu(x)) / D_max in [0, 1], where mu = DM + A(l, b, d) and D(mu) bounds the expected number of generated
    stars per Msun of present-day mass in mode 'magnitude', and D_max is its bright-end value (all stars above
    m_min). Sample points from f(x, v) S(x) (``selection=`` of :func:`mocksky.model.sampling.sample_particles`),
    then pass ``mass=sel.point_mass(particles)`` and ``selection=sel`` to :func:`populate`: a particle of mass M_p
    stands for M_p / S(x) of present-day mass, and every point yields at most one star when M_p <= 1 / D_max.

    Age bins. The ages of each sub-population are split into ``age_bins`` bins of equal probability; E_k(mu) is an
    upper envelope (over [M/H] and the ages in bin k, times ``safety``; see Notes) of the expected stars per Msun, and
    D(mu) = max over sub-populations of (1/K) sum_k E_k(mu). :func:`populate` then draws a point's age bin k with
    probability E_k(mu) / sum_k E_k(mu), the age from the prior inside it, and multiplies the point's expected count
    by (sum_k E_k / K) / E_k(mu) (:meth:`draw_ages`): the expected count per point and the age distribution are
    those of the plain draw (age from the prior), and each expectation stays <= M_p D_max <= 1. With one bin this is
    the plain envelope (the largest over all ages); with 16 the young disc's magnitude-limited sample needs ~3x fewer
    points (the brightest, youngest ages set the one-bin envelope, but hold a small share of the mass).

    [M/H] cells. E_k is also tabulated per [M/H] cell j (the isochrone grid's intervals split in 4), E_kj, and
    :func:`populate` draws the age bin from the envelopes of the point's own cell (factor D_j / E_kj with
    D_j = (1/K) sum_k E_kj <= D). D(mu) is set by the metal-poor end of the grid (for the discs ~1.7x above the
    envelope at their own [M/H]); with a BV23 chemistry a star's [M/H] follows from Jphi and two normals, so a
    sampler can thin each point once its velocity is drawn, before its actions, by a = D_j(mu) / D(mu)
    (:meth:`velocity_factor`, ``ComponentSampler(velocity_thinning=True)``); :meth:`point_mass` and
    :func:`populate` (``chem_noise``) then use the same normals, and every expectation stays <= 1.

    Parameters
    ----------
    population : ComponentPopulation
    limit : float
        Apparent-magnitude limit.
    band : str
    extinction : callable or float, optional
        As in :func:`populate`.
    solar : str or SolarParameters
    m_min : float, optional
    safety : float
        Envelope factor (default 1.02; see Notes).
    logg_max : float, optional
        Only stars with log g <= logg_max count (as :func:`populate`'s ``logg_max``); D_max is then the
        envelope's bright-end value (the giants), not the all-star density.
    footprint : callable, optional
        ``footprint(l [deg], b [deg]) -> values in [0, 1]``, an upper bound of the survey's selection
        probability at each sky position (:meth:`mocksky.select.SelectionFunction.footprint`, e.g. APOGEE's
        fields): S(x) is multiplied by it, so points go only where the survey can select stars (a star
        outside the footprint would get selection probability 0 anyway).
    age_bins : int
        Equal-probability age bins K >= 1 (default 16).

    Raises
    ------
    ValueError
        Bad footprint, logg_max or age_bins (named), or no star of the component passes logg_max.

    Notes
    -----
    The expected count per Msun is a function of the isochrones interpolated in log age and [M/H], whose features
    sit at and between the grid's nodes; E_k is its largest value over the [M/H] nodes of the isochrone grid and
    the log-age nodes inside bin k with the bin's edges, each interval between these split into 4, made
    non-increasing in mu. It is tabulated every 0.05 mag in mu, each point holding the value of the point before it,
    so that linear interpolation in mu bounds it from above. Where E_k still falls short, a point's expectation
    exceeds M_p D_max and :func:`populate` clips it (``overflow='clip'``; the lost expectation is reported).
    Measured on 1e6 random (age, [M/H], mu) per component (G < 20.7): with ``safety`` = 1 one young-disc draw
    (log age 6.55, [M/H] 0.3, mu 27.5) exceeds E_k, by 1.4 %; with the default 1.02 none does (largest ratio
    0.994). The earlier envelope (5 ages per bin, 27 [M/H] values, every 0.2 mag, ``safety`` 1.1) was exceeded by
    2.6e-4 of the young disc's DF points of a G < 20.7 sample, by up to 3.4x at ages of a few Myr between its
    sampled ages.
    """

    #: the grid of mu = DM + A [mag] on which the envelopes are tabulated
    _MU0, _DMU, _N_MU = -15.0, 0.05, 1001
    #: parts into which the intervals between the log-age (and [M/H]) values above are split for the envelope
    _AGE_PARTS, _MH_PARTS = 4, 4

    def __init__(self, population: ComponentPopulation, limit: float, band: str = "G", extinction=None,
                 solar="bv24", m_min: Optional[float] = None, safety: float = 1.02, logg_max: Optional[float] = None,
                 footprint: Optional[Callable] = None, age_bins: int = 16):
        if footprint is not None and not callable(footprint):
            raise ValueError(f"footprint: must be callable (l, b) -> [0, 1], got {type(footprint).__name__}")
        if isinstance(age_bins, bool) or int(age_bins) != age_bins or int(age_bins) < 1:
            raise ValueError(f"age_bins: need an integer >= 1, got {age_bins!r}")
        self.footprint = footprint
        if logg_max is not None and not np.isfinite(logg_max):
            raise ValueError(f"logg_max: must be a finite log g [dex], got {logg_max!r}")
        self.logg_max = None if logg_max is None else float(logg_max)
        self.pop = population
        self.limit, self.band, self.extinction, self.solar = float(limit), band, extinction, solar
        self.m_min = population._check_m_min(m_min)
        self.safety = float(safety)
        self.age_bins = nb = int(age_bins)
        g, imf = population.isochrones, population.imf
        b = _band_index(band)
        mus = self._MU0 + self._DMU * np.arange(self._N_MU)
        mlim = self.limit - mus + (0.05 if BANDS[b] == "GRVS" else 0.0)  # as in populate
        # [M/H] cells: the intervals between the grid's nodes split in _MH_PARTS; a cell's envelope is the largest
        # value at its ends and its midpoint
        edges = _subdivided(g.mh, self._MH_PARTS)
        z_eval = _subdivided(g.mh, 2 * self._MH_PARTS)
        n_cells = len(edges) - 1
        cenv = np.zeros((population.n_sub, n_cells, nb, len(mus)))
        for s in range(population.n_sub):
            with np.errstate(divide="ignore"):
                la_edge = np.clip(IsochroneGrid.logage_of(population.ages[s].ppf(np.arange(nb + 1) / nb)),
                                  g.logage[0], g.logage[-1])
            la = np.unique(np.concatenate([la_edge, g.logage[(g.logage > la_edge[0]) & (g.logage < la_edge[-1])]]))
            la = _subdivided(la, self._AGE_PARTS)
            A, M = (np.ascontiguousarray(x.ravel()) for x in np.meshgrid(la, mlim, indexing="ij"))
            d = np.empty((len(z_eval), len(la), len(mlim)))  # (n_z, n_age, n_mu), one [M/H] at a time (memory)
            for iz, z in enumerate(z_eval):
                Z = np.full(A.shape, z)
                lo, hi, num = K.detectable_fraction(A, Z, M, b, self.m_min, g.kernel_grid(), *imf.arrays())
                if self.logg_max is not None:
                    lo, num = _giant_floor(g, imf, A, Z, lo, hi, self.logg_max)
                d[iz] = (num / population.present_mass_fraction(Z[:1], s)[0]).reshape(len(la), len(mlim))
            d = np.maximum(np.maximum(d[0:-1:2], d[1::2]), d[2::2])  # (n_cells, n_age, n_mu)
            for k in range(nb):
                d_k = d[:, (la >= la_edge[k]) & (la <= la_edge[k + 1])].max(axis=1)
                d_k = np.maximum.accumulate(d_k[:, ::-1], axis=1)[:, ::-1]  # non-increasing in mu
                # linear interpolation between the grid's points bounds a non-increasing function from above when
                # each point holds the value of the point before it
                cenv[s, :, k, 1:] = d_k[:, :-1]
                cenv[s, :, k, 0] = d_k[:, 0]
            cenv[s] *= self.safety
        #: E_k(mu) per sub-population and [M/H] cell, shape (n_sub, n_cells, K, n_mu) [stars / Msun]
        self.cell_envelope = cenv
        #: edges of the [M/H] cells [dex], shape (n_cells + 1,)
        self.mh_edges = edges
        #: E_k(mu) per sub-population (the largest over [M/H]), shape (n_sub, K, n_mu) [stars / Msun]
        self.bin_envelope = benv = cenv.max(axis=1)
        #: D_j(mu) = (1/K) sum_k E_k(mu) per sub-population and [M/H] cell, shape (n_sub, n_cells, n_mu)
        self.cell_density = cenv.mean(axis=2)
        env = benv.mean(axis=1).max(axis=0)
        self.mu_grid, self.envelope = mus, env
        if self.logg_max is None:
            self.d_max = max(float(env[0]), population.max_stars_per_mass(self.m_min) * self.safety)
        else:
            self.d_max = float(env[0])
            if not self.d_max > 0:
                raise ValueError(f"MagnitudeSelection: no star of component {population.name!r} has log g <= "
                                 f"{self.logg_max} at any distance")

    def draw_ages(self, mu, sub, u_bin, u_age, mh=None):
        """Ages from the age bins, and the factors on the points' expected counts (see the class docstring).

        Parameters
        ----------
        mu : array_like, shape (N,)
            Distance modulus + extinction in the selection's band [mag].
        sub : array_like of int, shape (N,)
            Sub-population of each point.
        u_bin, u_age : array_like, shape (N,)
            Uniforms in [0, 1) choosing the bin and the age inside it.
        mh : array_like, shape (N,), optional
            [M/H] of each point [dex]: the bins' envelopes of its [M/H] cell are used (E_kj, see the class
            docstring), otherwise those over all [M/H].

        Returns
        -------
        age : numpy.ndarray, shape (N,)
            [Gyr].
        factor : numpy.ndarray, shape (N,)
            (sum_k E_k(mu) / K) / E_k(mu) of the chosen bin k (0 where every E_k(mu) is 0).
        """
        mu = np.asarray(mu, dtype=np.float64)
        sub = np.broadcast_to(np.asarray(sub, dtype=np.int64), mu.shape)
        cell = np.zeros(mu.shape, dtype=np.int64) if mh is None else self.mh_cell(mh)
        nb = self.age_bins
        age = np.empty(mu.shape)
        factor = np.zeros(mu.shape)
        for s in range(self.pop.n_sub):
            idx = np.flatnonzero(sub == s)
            if not len(idx):
                continue
            table = self.bin_envelope[s][None] if mh is None else self.cell_envelope[s]
            k, factor[idx] = K.age_bin_draw(np.ascontiguousarray(mu[idx]),
                                            np.ascontiguousarray(np.asarray(u_bin, dtype=np.float64)[idx]),
                                            np.ascontiguousarray(cell[idx]),
                                            float(self.mu_grid[0]), float(self.mu_grid[1] - self.mu_grid[0]),
                                            np.ascontiguousarray(table))
            uu = np.clip((k + np.asarray(u_age)[idx]) / nb, 0.0, 1.0)
            age[idx] = self.pop.ages[s].ppf(uu)
        return age, factor

    def mh_cell(self, mh) -> np.ndarray:
        """Index of the [M/H] cell (:attr:`mh_edges`) of each [M/H] value, clamped to the isochrone grid."""
        mh = np.clip(np.asarray(mh, dtype=np.float64), self.mh_edges[0], self.mh_edges[-1])
        return np.clip(np.searchsorted(self.mh_edges, mh, side="right") - 1, 0, len(self.mh_edges) - 2)

    @property
    def velocity_thinning(self) -> bool:
        """Whether :meth:`velocity_factor` applies: the population's [M/H] depends on the actions only through Jphi
        (BV23 chemistry; not BV24, whose [M/H] also depends on Jr and Jz)."""
        return getattr(self.pop.chemistry, "mh_candidates", None) is not None

    def velocity_factor(self, posvel, chem_noise, mu=None) -> np.ndarray:
        """Second selection factor a = D_j(mu) / D(mu) in [0, 1] of phase-space points whose chemistry random
        numbers are known.

        A star's [M/H] follows from its Jphi = x v_y - y v_x and the normals (n1, n2) its chemistry draw will use
        (:meth:`ComponentPopulation.mh_candidates`), so once a point has a velocity, and before its actions are
        computed, it can be thinned by how much fainter its [M/H] makes its stars: D_j(mu) is the mean over the age
        bins of their envelopes in the point's [M/H] cell j (the largest over the sub-populations it can belong to),
        D(mu) the envelope over all [M/H] that S(x) uses. A sampler keeping points with probability a samples
        f S a; :meth:`point_mass` given the same numbers divides by S a, and :func:`populate` (``chem_noise``) draws
        the chemistry from them and the age from the bins of the cell: every expectation stays <= 1. For a
        disc's magnitude-limited sample ~1.6x fewer points (and action evaluations) per star, because D(mu) is set
        by the metal-poor end of the isochrone grid.

        Parameters
        ----------
        posvel : array_like, shape (N, 6)
            [kpc, km/s].
        chem_noise : array_like, shape (N, 3) or (N, 4)
            (n1, n2, u) per point: the standard normals and the uniform of the chemistry draw; a fourth column is
            mu (as :meth:`draw_velocity_factor` returns them).
        mu : array_like, shape (N,), optional
            The points' distance modulus + extinction [mag] if known (:meth:`evaluate`); otherwise the fourth
            column of ``chem_noise``, or computed.

        Returns
        -------
        numpy.ndarray, shape (N,)

        Raises
        ------
        ValueError
            The chemistry does not allow it (:attr:`velocity_thinning` is False) or bad shapes.
        """
        if not self.velocity_thinning:
            raise ValueError(f"velocity_factor: the chemistry of {self.pop.name!r} needs Jr and Jz for [M/H] "
                             "(velocity_thinning is False)")
        pv = np.atleast_2d(np.asarray(posvel, dtype=np.float64))
        noise = np.atleast_2d(np.asarray(chem_noise, dtype=np.float64))
        if pv.ndim != 2 or pv.shape[1] != 6 or noise.ndim != 2 or len(noise) != len(pv) \
                or noise.shape[1] not in (3, 4):
            raise ValueError(f"velocity_factor: need posvel (N, 6) and chem_noise (N, 3) or (N, 4), got {pv.shape} "
                             f"and {noise.shape}")
        if mu is None:
            mu = noise[:, 3] if noise.shape[1] == 4 else self._mu(pv)
        mu = np.ascontiguousarray(mu, dtype=np.float64)
        cand = self.pop.mh_candidates(pv[:, 0] * pv[:, 4] - pv[:, 1] * pv[:, 3], noise[:, 0], noise[:, 1])
        return K.velocity_factor(mu, np.ascontiguousarray(cand, dtype=np.float64), float(self.mu_grid[0]),
                                 float(self.mu_grid[1] - self.mu_grid[0]), self.envelope, float(self.d_max),
                                 self.mh_edges, np.ascontiguousarray(self.cell_density))

    #: columns of the per-point numbers :meth:`draw_velocity_factor` returns (a sampler stores them with each point)
    noise_columns = 4

    def draw_velocity_factor(self, posvel, rng, mu=None):
        """Chemistry random numbers (n1, n2, u) for each point, and its :meth:`velocity_factor` (``mu`` as there).

        Returns
        -------
        a : numpy.ndarray, shape (N,)
        chem_noise : numpy.ndarray, shape (N, 4)
            (n1, n2, u, mu): the chemistry's numbers and the points' distance modulus + extinction [mag], so that
            :meth:`point_mass` and :func:`populate` need not recompute mu (its extinction lookup).
        """
        pv = np.atleast_2d(np.asarray(posvel, dtype=np.float64))
        n = len(pv)
        mu = self._mu(pv) if mu is None else np.asarray(mu, dtype=np.float64)
        noise = np.column_stack([rng.standard_normal(n), rng.standard_normal(n), rng.random(n), mu])
        return self.velocity_factor(pv, noise), noise

    def density(self, mu) -> np.ndarray:
        """Envelope D(mu) [stars per Msun of present-day mass]."""
        return K.uniform_interp(np.ascontiguousarray(mu, dtype=np.float64).ravel(), float(self.mu_grid[0]),
                                float(self.mu_grid[1] - self.mu_grid[0]), self.envelope, float(self.d_max),
                                0.0).reshape(np.shape(mu))

    def __call__(self, posvel) -> np.ndarray:
        """S(x) in [0, 1] for phase-space points (N, 6)."""
        return self.evaluate(posvel)[0]

    def _mu(self, pv, sky=None):
        sky = _sky(pv, self.solar) if sky is None else sky
        return _distance_modulus(sky["distance"]) + _extinction_values(self.extinction, sky, len(pv))

    def evaluate(self, posvel):
        """S(x) in [0, 1] and mu = DM + A [mag] of phase-space points (N, 6): two arrays of shape (N,)."""
        pv = np.atleast_2d(np.asarray(posvel, dtype=np.float64))
        sky = _sky(pv, self.solar)
        mu = self._mu(pv, sky)
        return self._s_of_mu(mu, pv, sky), mu

    def _s_of_mu(self, mu, pv, sky=None):
        s = np.clip(self.density(mu) / self.d_max, 0.0, 1.0)
        if self.footprint is not None:
            sky = _sky(pv, self.solar) if sky is None else sky
            s = s * np.clip(np.asarray(self.footprint(sky["l"], sky["b"]), dtype=np.float64), 0.0, 1.0)
        return s

    def point_mass(self, particles, chem_noise=None) -> np.ndarray:
        """Present-day mass each particle of a selection-weighted sample stands for: M_p / S(x) [Msun], or
        M_p / (S(x) a) for points also thinned by :meth:`velocity_factor` a with these ``chem_noise`` (N, 3), or
        (N, 4) with mu, which then is not recomputed."""
        pv = np.atleast_2d(np.asarray(particles.posvel, dtype=np.float64))
        if chem_noise is not None and np.shape(chem_noise)[-1] == 4:
            mu = np.asarray(chem_noise, dtype=np.float64)[:, 3]
            s = self._s_of_mu(mu, pv) * self.velocity_factor(pv, chem_noise, mu)
        else:
            s = self(pv)
            if chem_noise is not None:
                s = s * self.velocity_factor(pv, chem_noise)
        with np.errstate(divide="ignore"):
            return np.where(s > 0, particles.mass / s, 0.0)

    @property
    def max_particle_mass(self) -> float:
        """Largest particle mass for which every point yields at most one star [Msun]."""
        return 1.0 / self.d_max


# =============================================================================== tagging benchmark helper
def tag_stars(population: ComponentPopulation, actions, rng=None,
              m_min: Optional[float] = None) -> Dict[str, np.ndarray]:
    """One star per action triple: chemistry, age, initial mass (IMF above m_min) and isochrone outputs.

    No thinning and no phase-space columns: this is the per-star cost of :func:`populate` (used by
    ``scripts/bench_populate.py``).

    Returns
    -------
    dict
        ``feh, alpha_fe, mh, age, mass_initial`` and the isochrone columns (mass_current, teff, logg, logl,
        abs_*, phase, is_remnant).
    """
    rng = np.random.default_rng(rng)
    a = np.asarray(actions, dtype=np.float64)
    n = len(a)
    normals = rng.standard_normal((2, n))
    uni = rng.random((3, n))
    chem = population.draw_chemistry(a, normals[0], normals[1], uni[0])
    g = population.isochrones
    age = population.draw_ages(uni[1], chem["sub"])
    logage = np.clip(IsochroneGrid.logage_of(age), g.logage[0], g.logage[-1])
    mh_iso = np.clip(chem["mh"], g.mh[0], g.mh[-1])
    m = population._check_m_min(m_min)
    imf = population.imf
    n0 = float(imf.cumulative_number(np.array(m)))
    n1 = float(imf.stars_per_mass)
    m_init = np.empty(n)
    out = np.empty((n, 12))
    K.tag_stars_const(logage, mh_iso, uni[2], n0, n1, g.kernel_grid(), *imf.arrays(), m_init, out)
    res = {"feh": chem["feh"], "alpha_fe": chem["alpha_fe"], "mh": chem["mh"], "age": age, "mass_initial": m_init}
    for j, c in enumerate(_OUT_COLS):
        res[c] = out[:, j]
    res["phase"] = out[:, 11].astype(np.int16)
    res["is_remnant"] = res["phase"] >= K.WD
    return res
