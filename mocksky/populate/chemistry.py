"""Chemistry from actions: [Fe/H], [alpha/Fe] and [M/H] of stars given their actions.

BV23 (Binney & Vasiliev 2023, MNRAS 520, 1832, Sect. 4.6, eqs. 18-21, Table 6)
    Each component's pdf is a 2D Gaussian in coordinates rotated by theta from ([Fe/H], [a/Fe]),
    x = cos(theta) [Fe/H] - sin(theta) [a/Fe], y = sin(theta) [Fe/H] + cos(theta) [a/Fe]  (eq. 18),
    with widths (sigma_x, sigma_y), mean y and mean x = x_sun + (dx/dJphi)(Jphi - Jphi_sun) (eq. 19),
    Jphi_sun = R0 Vc(R0) being the circular angular momentum at the Sun. Table 6 gives
    Vc dx/dJphi [dex/kpc], so dx/dJphi = (Vc dx/dJphi) / Vc. A thick-disc star belongs to the
    high-alpha population with probability P = (1/2)[1 + tanh((Jz - Jz0)/Delta_z)] (eq. 21) and then
    has the thick disc's Gaussian (independent of Jphi); otherwise it has the old disc's chemistry.
BV24 (Binney & Vasiliev 2024, MNRAS 527, 1915; model M0 file chem_params.dat)
    Centre linear in the actions: F0 = FeH_bar + dFeH/dJ . (Jr, Jz, Jphi - Jsun), M0 likewise for
    [Mg/Fe] (Jsun = 1992 kpc km/s); [Fe/H] = F0 + x cos(theta) - y sin(theta),
    [Mg/Fe] = M0 + x sin(theta) + y cos(theta), x ~ N(0, sigma_x), y ~ N(0, sigma_y)
    (``shared/docs/dynamics-spec.md``). [Mg/Fe] is used as [alpha/Fe].
[M/H] from [Fe/H] and [alpha/Fe]: Salaris, Chieffi & Straniero (1993, ApJ 414, 580):
    [M/H] = [Fe/H] + log10(0.638 * 10^[a/Fe] + 0.362).

Observational abundance errors are not added here (they belong to the error model).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from .. import data as _data
from . import _kernels as K

__all__ = ["salaris_mh", "ChemistryBV23", "ChemistryBV24", "make_chemistry", "read_bv24_params",
           "CHEMISTRY_MODELS"]

CHEMISTRY_MODELS = ("bv23", "bv24")


def salaris_mh(feh, alpha_fe) -> np.ndarray:
    """[M/H] = [Fe/H] + log10(0.638 * 10^[a/Fe] + 0.362) (Salaris, Chieffi & Straniero 1993, ApJ 414, 580)."""
    return np.asarray(feh, dtype=np.float64) + np.log10(0.638 * 10.0 ** np.asarray(alpha_fe, dtype=np.float64) + 0.362)


def _actions(actions) -> np.ndarray:
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"actions: expected shape (N, 3) = (Jr, Jz, Jphi) [kpc km/s], got {a.shape}")
    return a


@dataclass(frozen=True)
class _Gauss23:
    """One BV23 Table-6 Gaussian: x_sun, Vc dx/dJphi [dex/kpc], y, sigma_x, sigma_y, theta [deg]."""

    x_sun: float
    vc_dx_djphi: float
    y: float
    sigma_x: float
    sigma_y: float
    theta_deg: float

    def params(self, vc: float, jphi_sun: float) -> np.ndarray:
        th = np.deg2rad(self.theta_deg)
        return np.array([self.x_sun, self.vc_dx_djphi / vc, jphi_sun, self.y, self.sigma_x, self.sigma_y,
                         np.cos(th), np.sin(th)])

    def mean_feh_afe(self) -> tuple:
        """([Fe/H], [a/Fe]) at the centre (x_sun, y)."""
        th = np.deg2rad(self.theta_deg)
        return (np.cos(th) * self.x_sun + np.sin(th) * self.y, -np.sin(th) * self.x_sun + np.cos(th) * self.y)


class ChemistryBV23:
    """BV23 chemistry of one component (module docstring; seed eqs. 18-21, Table 6).

    Parameters
    ----------
    gauss : dict
        ``x_sun``, ``vc_dx_djphi`` [dex/kpc], ``y``, ``sigma_x``, ``sigma_y`` [dex], ``theta_deg``.
    vc : float
        Circular speed at the Sun [km/s] converting Table 6's Vc dx/dJphi to dx/dJphi.
    jphi_sun : float
        Circular angular momentum at the Sun [kpc km/s].
    normal_alpha : dict, optional
        The old disc's Gaussian, used with probability 1 - P(Jz) (thick disc only); requires ``jz0``.
    jz0, delta_z : float, optional
        eq. 21 [kpc km/s].

    Raises
    ------
    ValueError
        Missing or non-positive parameters (named).
    """

    n_uniform = 1

    def __init__(self, gauss: dict, vc: float, jphi_sun: float, normal_alpha: Optional[dict] = None,
                 jz0: Optional[float] = None, delta_z: Optional[float] = None, name: str = ""):
        self.name = name
        self.gauss = self._gauss(gauss, "chemistry")
        if not (vc > 0 and jphi_sun > 0):
            raise ValueError(f"chemistry (bv23): vc and jphi_sun must be positive, got {vc}, {jphi_sun}")
        self.vc, self.jphi_sun = float(vc), float(jphi_sun)
        self.normal_alpha = self._gauss(normal_alpha, "normal_alpha") if normal_alpha is not None else None
        if self.normal_alpha is not None:
            if jz0 is None or delta_z is None or not delta_z > 0:
                raise ValueError("chemistry (bv23): a two-population component needs jz0 and a positive delta_z")
        self.jz0 = float(jz0) if jz0 is not None else 0.0
        self.delta_z = float(delta_z) if delta_z is not None else 1.0
        self._pa = self.gauss.params(self.vc, self.jphi_sun)
        self._pb = (self.normal_alpha or self.gauss).params(self.vc, self.jphi_sun)

    @staticmethod
    def _gauss(d: dict, where: str) -> _Gauss23:
        need = ("x_sun", "vc_dx_djphi", "y", "sigma_x", "sigma_y", "theta_deg")
        missing = [k for k in need if k not in d]
        if missing:
            raise ValueError(f"{where} (bv23): missing {missing}; required {list(need)}")
        g = _Gauss23(*(float(d[k]) for k in need))
        if g.sigma_x <= 0 or g.sigma_y <= 0:
            raise ValueError(f"{where} (bv23): sigma_x and sigma_y must be positive")
        return g

    @property
    def two_populations(self) -> bool:
        return self.normal_alpha is not None

    def high_alpha_probability(self, jz) -> np.ndarray:
        """P(high alpha | Jz) = (1/2)[1 + tanh((Jz - Jz0)/Delta_z)] (BV23 eq. 21); 1 for one-population components."""
        jz = np.asarray(jz, dtype=np.float64)
        if not self.two_populations:
            return np.ones_like(jz)
        return 0.5 * (1.0 + np.tanh((jz - self.jz0) / self.delta_z))

    def draw(self, actions, n1, n2, u) -> Dict[str, np.ndarray]:
        """Chemistry from given standard normals n1, n2 and uniforms u (one each per star)."""
        a = _actions(actions)
        n = len(a)
        feh, afe, mh = np.empty(n), np.empty(n), np.empty(n)
        flag = np.empty(n, dtype=np.bool_)
        K.chem_bv23(np.ascontiguousarray(a[:, 1]), np.ascontiguousarray(a[:, 2]), n1, n2, u, self._pa, self._pb,
                    self.jz0, self.delta_z, self.two_populations, feh, afe, mh, flag)
        return {"feh": feh, "alpha_fe": afe, "mh": mh, "high_alpha": flag}

    def mh_candidates(self, jphi, n1, n2) -> np.ndarray:
        """[M/H] that :meth:`draw` gives with normals n1, n2 at angular momentum Jphi, for each Gaussian it can use.

        A star's [M/H] depends on its actions only through Jphi = R v_phi (and, for the thick disc, through Jz in the
        choice between its two Gaussians, eq. 21), so it is known before the actions are computed; samplers use it to
        thin points by a [M/H]-dependent selection (:meth:`mocksky.populate.MagnitudeSelection.velocity_factor`).

        Parameters
        ----------
        jphi, n1, n2 : array_like, shape (N,)
            [kpc km/s]; the standard normals :meth:`draw` would be given.

        Returns
        -------
        numpy.ndarray, shape (N, 1) or (N, 2)
            [M/H] [dex] from the component's own Gaussian, and (two-population components) from ``normal_alpha``.
        """
        jphi = np.ascontiguousarray(jphi, dtype=np.float64)
        n = len(jphi)
        n1 = np.ascontiguousarray(n1, dtype=np.float64)
        n2 = np.ascontiguousarray(n2, dtype=np.float64)
        out = np.empty((n, 2 if self.two_populations else 1))
        feh, afe, mh = np.empty(n), np.empty(n), np.empty(n)
        flag = np.empty(n, dtype=np.bool_)
        zero, u = np.zeros(n), np.zeros(n)
        for j, p in enumerate((self._pa, self._pb)[:out.shape[1]]):
            K.chem_bv23(zero, jphi, n1, n2, u, p, p, self.jz0, self.delta_z, False, feh, afe, mh, flag)
            out[:, j] = mh
        return out

    def sample(self, actions, rng=None) -> Dict[str, np.ndarray]:
        """Draw ``feh``, ``alpha_fe``, ``mh`` [dex] and ``high_alpha`` (bool) for stars with these actions.

        Parameters
        ----------
        actions : array_like, shape (N, 3)
            (Jr, Jz, Jphi) [kpc km/s].
        rng : int, numpy.random.Generator or None
        """
        rng = np.random.default_rng(rng)
        n = len(_actions(actions))
        return self.draw(actions, rng.standard_normal(n), rng.standard_normal(n), rng.random(n))

    def describe(self) -> dict:
        d = {"model": "bv23", "gauss": self.gauss.__dict__, "vc": self.vc, "jphi_sun": self.jphi_sun,
             "reference": "Binney & Vasiliev 2023, MNRAS 520, 1832, Sect. 4.6, eqs. 18-21, Table 6"}
        if self.two_populations:
            d.update(normal_alpha=self.normal_alpha.__dict__, jz0=self.jz0, delta_z=self.delta_z)
        return d


def read_bv24_params(path: Union[str, Path, None] = None) -> Dict[int, dict]:
    """Rows of the BV24 M0 chemistry table (``models/bv24_m0/chemistry_params.csv``) by component index.

    Raises
    ------
    mocksky.data.DataNotFoundError
        The file is missing.
    """
    if path is None:
        p = _data.find("models/bv24_m0/chemistry_params.csv")
    else:
        p = Path(path)
        if not p.is_file():
            p = _data.find(str(path))
    out = {}
    with open(p, newline="") as f:
        for row in csv.DictReader(f):
            idx = int(row.pop("component_index"))
            name = row.pop("component")
            out[idx] = {"component": name, **{k: float(v) for k, v in row.items()}}
    return out


class ChemistryBV24:
    """BV24 chemistry of one component (module docstring).

    Parameters
    ----------
    row : dict
        FeH_bar, MgFe_bar, sigma_x, sigma_y, theta_deg, dFeH_dJr, dFeH_dJz, dFeH_dJphi, dMgFe_dJr,
        dMgFe_dJz, dMgFe_dJphi (one row of ``chemistry_params.csv``).
    jphi_sun : float
        Jsun of the gradients [kpc km/s] (1992 = 8.3 x 240).

    Raises
    ------
    ValueError
        Missing parameters (named).
    """

    n_uniform = 0
    two_populations = False

    def __init__(self, row: dict, jphi_sun: float = 1992.0, name: str = ""):
        need = ("FeH_bar", "MgFe_bar", "sigma_x", "sigma_y", "theta_deg", "dFeH_dJr", "dFeH_dJz", "dFeH_dJphi",
                "dMgFe_dJr", "dMgFe_dJz", "dMgFe_dJphi")
        missing = [k for k in need if k not in row]
        if missing:
            raise ValueError(f"chemistry (bv24): missing {missing}")
        self.name = name
        self.row = {k: float(row[k]) for k in need}
        self.jphi_sun = float(jphi_sun)
        r = self.row
        th = np.deg2rad(r["theta_deg"])
        self._p = np.array([r["FeH_bar"], r["MgFe_bar"], r["sigma_x"], r["sigma_y"], np.cos(th), np.sin(th),
                            r["dFeH_dJr"], r["dFeH_dJz"], r["dFeH_dJphi"], r["dMgFe_dJr"], r["dMgFe_dJz"],
                            r["dMgFe_dJphi"], self.jphi_sun])

    def high_alpha_probability(self, jz) -> np.ndarray:
        return np.ones_like(np.asarray(jz, dtype=np.float64))

    def draw(self, actions, n1, n2, u=None) -> Dict[str, np.ndarray]:
        """Chemistry from given standard normals n1, n2 (one each per star)."""
        a = _actions(actions)
        n = len(a)
        feh, afe, mh = np.empty(n), np.empty(n), np.empty(n)
        K.chem_bv24(np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1]), np.ascontiguousarray(a[:, 2]),
                    n1, n2, self._p, feh, afe, mh)
        return {"feh": feh, "alpha_fe": afe, "mh": mh, "high_alpha": np.zeros(n, dtype=np.bool_)}

    def sample(self, actions, rng=None) -> Dict[str, np.ndarray]:
        """Draw ``feh``, ``alpha_fe`` (= [Mg/Fe]), ``mh`` [dex] for stars with actions (N, 3) [kpc km/s]."""
        rng = np.random.default_rng(rng)
        n = len(_actions(actions))
        return self.draw(actions, rng.standard_normal(n), rng.standard_normal(n))

    def describe(self) -> dict:
        return {"model": "bv24", **self.row, "jphi_sun": self.jphi_sun,
                "reference": "Binney & Vasiliev 2024, MNRAS 527, 1915 (model M0, chem_params.dat)"}


def make_chemistry(spec: dict, model: dict, components: dict, name: str = ""):
    """Chemistry object of one component from a population spec.

    Parameters
    ----------
    spec : dict
        The component's ``chemistry`` table. bv23: the Table-6 Gaussian keys, optionally ``normal_alpha``
        (name of the component whose Gaussian the normal-alpha stars take), ``jz0``, ``delta_z``.
        bv24: ``component_index`` into the CSV (``params_file``, default the shipped M0 file).
    model : dict
        The spec's ``[chemistry]`` table: ``model`` in :data:`CHEMISTRY_MODELS`, ``vc`` and ``jphi_sun``.
    components : dict
        All components' tables (to resolve ``normal_alpha``).

    Raises
    ------
    ValueError
        Unknown model (allowed values listed) or bad parameters.
    """
    kind = str(spec.get("model", model.get("model", ""))).lower()
    if kind == "bv23":
        na = spec.get("normal_alpha")
        other = None
        if na is not None:
            if na not in components or "chemistry" not in components[na]:
                raise ValueError(f"chemistry of {name!r}: normal_alpha names unknown component {na!r}")
            other = components[na]["chemistry"]
        return ChemistryBV23(spec, float(model.get("vc", 0)), float(model.get("jphi_sun", 0)), normal_alpha=other,
                             jz0=spec.get("jz0"), delta_z=spec.get("delta_z"), name=name)
    if kind == "bv24":
        rows = read_bv24_params(spec.get("params_file") or model.get("params_file"))
        idx = int(spec.get("component_index", -1))
        if idx not in rows:
            raise ValueError(f"chemistry of {name!r}: component_index {idx} not in the BV24 table {sorted(rows)}")
        return ChemistryBV24(rows[idx], float(model.get("jphi_sun", 1992.0)), name=name)
    raise ValueError(f"chemistry of {name!r}: unknown model {kind!r}; allowed: {list(CHEMISTRY_MODELS)}")
