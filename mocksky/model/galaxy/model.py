"""Self-consistent Galaxy models: build once from an INI file, cache, reload, and report.

:class:`GalaxyModel` holds the converged potential, the components (DFs with their interpolated
densities, static densities) and the per-iteration diagnostics. :meth:`GalaxyModel.load_or_build`
keeps built models in a cache directory (``$MOCKSKY_CACHE``, else ``$XDG_CACHE_HOME/mocksky``, else
``~/.cache/mocksky``) keyed by a hash of the INI text, the build options and :data:`MODEL_FORMAT`
with the package version, so that a model is built once. :func:`model_report` gives the numbers of
BV23 Table 4 and the rotation curve.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ... import __version__
from ...units import G
from ..ini import AgamaIni, parse_ini
from ..potential import Composite
from ..registry import builtin_grids, resolve_model_file
from .moments import VelocityIntegrator
from .selfconsistent import (ComponentSpec, IterationRecord, components_from_ini, grid_density, iterate_model,
                             make_action_finder)

log = logging.getLogger(__name__)

__all__ = ["GalaxyModel", "model_report", "default_cache_dir", "MODEL_FORMAT", "REPORT_RADII"]

#: Version of the cached-model file layout and of the build algorithm (part of the cache key).
MODEL_FORMAT = 1
#: Radii of the rotation curve in :func:`model_report` [kpc].
REPORT_RADII = (1.0, 2.0, 4.0, 6.0, 8.27, 10.0, 12.0, 15.0, 20.0)
#: Defaults of the options of :meth:`GalaxyModel.build` that enter the cache key.
_BUILD_DEFAULTS = dict(max_iterations=4, tol=1e-4, use_action_interpolation=None, integrator_options=None,
                       grids=None)


def default_cache_dir() -> Path:
    """``$MOCKSKY_CACHE``, else ``$XDG_CACHE_HOME/mocksky``, else ``~/.cache/mocksky``."""
    if os.environ.get("MOCKSKY_CACHE"):
        return Path(os.environ["MOCKSKY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mocksky"


def _potential_arrays(pot) -> Dict[str, np.ndarray]:
    from ..potential.cylspline import CylSpline
    from ..potential.multipole import Multipole

    parts = pot.components if isinstance(pot, Composite) else [pot]
    out: Dict[str, np.ndarray] = {}
    for i, p in enumerate(parts):
        if isinstance(p, Multipole):
            r, ph, dph, rho = p.coefficients()
            out.update({f"pot{i}_type": np.array("Multipole"), f"pot{i}_r": r, f"pot{i}_phi": ph,
                        f"pot{i}_dphi": dph, f"pot{i}_rho": rho, f"pot{i}_name": np.array(p.name)})
        elif isinstance(p, CylSpline):
            out.update({f"pot{i}_type": np.array("CylSpline"), f"pot{i}_node_data": p.node_data,
                        f"pot{i}_Rmap": np.array(p.Rmap), f"pot{i}_zmap": np.array(p.zmap),
                        f"pot{i}_r0": np.array(p.r0), f"pot{i}_a_l": p.a_l, f"pot{i}_b_l": p.b_l,
                        f"pot{i}_mass": np.array(p.mass), f"pot{i}_name": np.array(p.name)})
        else:
            raise TypeError(f"cannot save potential component {p!r} (only Multipole and CylSpline)")
    out["pot_count"] = np.array(len(parts))
    return out


def _potential_from_arrays(d) -> object:
    from ..potential.cylspline import CylSpline
    from ..potential.multipole import Multipole

    parts = []
    for i in range(int(d["pot_count"])):
        typ = str(d[f"pot{i}_type"])
        if typ == "Multipole":
            parts.append(Multipole(d[f"pot{i}_r"], d[f"pot{i}_phi"], d[f"pot{i}_dphi"], d[f"pot{i}_rho"],
                                   name=str(d[f"pot{i}_name"])))
        else:
            parts.append(CylSpline(d[f"pot{i}_node_data"], tuple(d[f"pot{i}_Rmap"]), tuple(d[f"pot{i}_zmap"]),
                                   float(d[f"pot{i}_r0"]), d[f"pot{i}_a_l"], d[f"pot{i}_b_l"],
                                   name=str(d[f"pot{i}_name"]), mass=float(d[f"pot{i}_mass"])))
    return parts[0] if len(parts) == 1 else Composite(parts)


class GalaxyModel:
    """A self-consistent Galaxy model built from an Agama INI file (BV23 Sect. 4.4; see :mod:`.selfconsistent`).

    Build with :meth:`build` or :meth:`load_or_build`; reload with :meth:`load`.

    Attributes
    ----------
    ini : AgamaIni
        The model file.
    potential : Potential
        Converged potential (Multipole + CylSpline).
    components : list of ComponentSpec
        DF components (``df`` and interpolated ``density``) and static ones (``static``), in INI order.
    iterations : list of IterationRecord
        Diagnostics of each iteration.
    build_seconds : float
        Wall-clock build time [s].
    R0 : float
        Solar radius from the INI's [Data] SolarRadius (default 8.27 kpc).
    use_action_interpolation : bool
        Action finder used for the build (and by :meth:`action_finder`).
    """

    def __init__(self, ini: AgamaIni, potential, components: List[ComponentSpec], iterations: List[IterationRecord],
                 build_seconds: float, use_action_interpolation: bool, integrator_options: Optional[dict] = None):
        self.ini = ini
        self.potential = potential
        self.components = components
        self.iterations = iterations
        self.build_seconds = float(build_seconds)
        self.use_action_interpolation = bool(use_action_interpolation)
        self.integrator_options = dict(integrator_options or {})
        #: {DF label: SelfConsistentModel label} grid override used in the build (see components_from_ini)
        self.grids: Dict[str, str] = {}
        data = ini.get("Data", "")
        self.R0 = float(data.get_float("SolarRadius", 8.27)) if data is not None else 8.27
        self._af = None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _read(source) -> AgamaIni:
        if isinstance(source, AgamaIni):
            return source
        path = resolve_model_file(source)
        return parse_ini(Path(path).read_text(), path=Path(path))

    @classmethod
    def build(cls, source, max_iterations: int = 4, tol: float = 1e-4, use_action_interpolation: Optional[bool] = None,
              integrator_options: Optional[dict] = None, callback=None,
              grids: Optional[Dict[str, str]] = None) -> "GalaxyModel":
        """Build a model by self-consistent iteration.

        Parameters
        ----------
        source : str, path or AgamaIni
            Built-in model name (``"bv23"``, ``"bv24_m0"``), INI path, or parsed file.
        max_iterations : int
            Maximum number of iterations (default 4, as Agama's example).
        tol : float
            Convergence threshold on the relative potential change (default 1e-4).
        use_action_interpolation : bool, optional
            Override the INI's ``useActionInterpolation``.
        integrator_options : dict, optional
            Options of :class:`~.moments.VelocityIntegrator`.
        callback : callable, optional
            Called with each :class:`~.selfconsistent.IterationRecord`.
        grids : dict, optional
            ``{DF label: SelfConsistentModel label}`` (see :func:`~.selfconsistent.components_from_ini`); default:
            the built-in model's own (``bv24_m0``: the bulge on the disc grid, as in the authors' code), else none.

        Returns
        -------
        GalaxyModel

        Raises
        ------
        FileNotFoundError, ValueError
            Unknown model or malformed INI sections.
        """
        ini = cls._read(source)
        t0 = time.perf_counter()
        if grids is None:
            grids = builtin_grids(source)
        comps = components_from_ini(ini, grids)
        if use_action_interpolation is None:
            sec = ini.get("SelfConsistentModel", "")
            use_action_interpolation = bool(sec.get_bool("useActionInterpolation", False)) if sec is not None else False
        data = ini.get("Data", "")
        R0 = float(data.get_float("SolarRadius", 8.27)) if data is not None else 8.27
        pot, recs = iterate_model(ini, comps, max_iterations=max_iterations, tol=tol,
                                  interpolate=use_action_interpolation, R0=R0, integrator_options=integrator_options,
                                  callback=callback)
        model = cls(ini, pot, comps, recs, time.perf_counter() - t0, use_action_interpolation, integrator_options)
        model.grids = dict(grids or {})
        return model

    @staticmethod
    def cache_key(source, **build_options) -> str:
        """Hex SHA-256 of the INI text, the build options (defaults filled in), :data:`MODEL_FORMAT` and the version."""
        if isinstance(source, AgamaIni):
            text = source.to_string()
        else:
            text = Path(resolve_model_file(source)).read_text()
        options = dict(_BUILD_DEFAULTS)
        options.update({k: v for k, v in build_options.items() if k != "callback"})
        if options.get("grids") is None:
            options["grids"] = builtin_grids(source)
        blob = json.dumps({"ini": text, "options": options, "format": MODEL_FORMAT, "version": __version__},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def load_or_build(cls, source, cache_dir: Optional[Union[str, os.PathLike]] = None, rebuild: bool = False,
                      **build_options) -> "GalaxyModel":
        """Load the model from the cache, or build and cache it.

        Parameters
        ----------
        source : str, path or AgamaIni
            Built-in name or INI file.
        cache_dir : path, optional
            Cache directory (default :func:`default_cache_dir`).
        rebuild : bool
            Ignore an existing cached file.
        **build_options
            Passed to :meth:`build` (part of the cache key).

        Returns
        -------
        GalaxyModel
        """
        key = cls.cache_key(source, **build_options)
        stem = "model" if isinstance(source, AgamaIni) else Path(str(source)).stem
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = cdir / f"{stem}-{key[:20]}.npz"
        if path.is_file() and not rebuild:
            try:
                model = cls.load(path)
                log.info("loaded cached model %s", path)
                return model
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cached model %s unreadable (%s); rebuilding", path, exc)
        model = cls.build(source, **build_options)
        cdir.mkdir(parents=True, exist_ok=True)
        model.save(path)
        log.info("built model in %.1f s, cached as %s", model.build_seconds, path)
        return model

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the model (potential coefficients, density grids, DF parameters, diagnostics) atomically (.npz)."""
        path = Path(path)
        arrays: Dict[str, np.ndarray] = _potential_arrays(self.potential)
        meta = {"format": MODEL_FORMAT, "version": __version__, "build_seconds": self.build_seconds,
                "use_action_interpolation": self.use_action_interpolation,
                "integrator_options": self.integrator_options,
                "grids": self.grids,
                "iterations": [r.as_dict() for r in self.iterations],
                "components": [{"name": c.name, "grid_kind": c.grid_kind, "grid": c.grid, "is_df": c.is_df}
                               for c in self.components]}
        arrays["meta"] = np.array(json.dumps(meta))
        arrays["ini_text"] = np.array(Path(self.ini.path).read_text() if self.ini.path else self.ini.to_string())
        arrays["ini_path"] = np.array(str(self.ini.path) if self.ini.path else "")
        for i, c in enumerate(self.components):
            if c.is_df:
                arrays[f"comp{i}_values"] = c.density.values
                arrays[f"comp{i}_dfparams"] = np.asarray(c.df.params)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "GalaxyModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            Not a mocksky model file, another format version, or inconsistent with its INI text.
        """
        with np.load(Path(path), allow_pickle=False) as d:
            if "meta" not in d:
                raise ValueError(f"{path}: not a mocksky GalaxyModel file")
            meta = json.loads(str(d["meta"]))
            if meta.get("format") != MODEL_FORMAT:
                raise ValueError(f"{path}: model format {meta.get('format')} (expected {MODEL_FORMAT})")
            ipath = str(d["ini_path"])
            ini = parse_ini(str(d["ini_text"]), path=Path(ipath) if ipath else None)
            comps = components_from_ini(ini, meta.get("grids") or None)
            if [c.name for c in comps] != [m["name"] for m in meta["components"]]:
                raise ValueError(f"{path}: components differ from those of the stored INI text")
            for i, c in enumerate(comps):
                if c.is_df:
                    if not np.array_equal(np.asarray(c.df.params), d[f"comp{i}_dfparams"]):
                        raise ValueError(f"{path}: DF parameters of {c.name!r} differ from the stored ones")
                    c.density = grid_density(c, d[f"comp{i}_values"])
            pot = _potential_from_arrays(d)
        recs = [IterationRecord(**r) for r in meta["iterations"]]
        model = cls(ini, pot, comps, recs, meta["build_seconds"], meta["use_action_interpolation"],
                    meta.get("integrator_options"))
        model.grids = dict(meta.get("grids") or {})
        return model

    # ------------------------------------------------------------------ access
    def component(self, name: str) -> ComponentSpec:
        """The component with this name (case-insensitive).

        Raises
        ------
        KeyError
            Unknown name (the known names are listed).
        """
        for c in self.components:
            if c.name.lower() == str(name).lower():
                return c
        raise KeyError(f"no component {name!r}; components: {[c.name for c in self.components]}")

    @property
    def dfs(self) -> Dict[str, object]:
        """Component name -> DF, for the DF-based components."""
        return {c.name: c.df for c in self.components if c.is_df}

    def action_finder(self):
        """Action finder of the converged potential (built on first use; the build's type)."""
        if self._af is None:
            self._af = make_action_finder(self.potential, self.use_action_interpolation)
        return self._af

    def _integrator(self, components, **options):
        names = list(self.dfs) if components is None else [self.component(n).name for n in components]
        bad = [n for n in names if not self.component(n).is_df]
        if bad:
            raise ValueError(f"components {bad} are static densities without a DF")
        opts = dict(self.integrator_options)
        opts.update(options)
        return names, VelocityIntegrator(self.potential, self.action_finder(), [self.dfs[n] for n in names], **opts)

    def moments(self, points, components: Optional[Sequence[str]] = None, second: bool = True, **options):
        """DF moments at positions (see :meth:`.moments.VelocityIntegrator.moments`).

        Parameters
        ----------
        points : array_like, shape (P, 3)
            Cartesian positions [kpc].
        components : sequence of str, optional
            DF component names (default: all, in model order).
        second : bool
            Also the mean velocity and dispersion tensor.

        Returns
        -------
        names : list of str
            Component order of the K axis.
        moments : DFMoments
        """
        names, vi = self._integrator(components, **options)
        return names, vi.moments(points, second)

    def velocity_distributions(self, points, components: Optional[Sequence[str]] = None, grid_R=None, grid_z=None,
                               grid_phi=None, **options):
        """1D velocity distributions (see :meth:`.moments.VelocityIntegrator.velocity_distributions`).

        Returns
        -------
        names : list of str
        result : dict
        """
        names, vi = self._integrator(components, **options)
        return names, vi.velocity_distributions(points, grid_R, grid_z, grid_phi)

    def density(self, points, component: str) -> np.ndarray:
        """Density of one component at positions from its interpolated grid (static: exact profile) [Msun/kpc^3]."""
        from ... import units as U

        p = U.points(points, "points")
        return np.asarray(self.component(component).density._density(np.hypot(p[:, 0], p[:, 1]), p[:, 2]))


# --------------------------------------------------------------------------- report
def model_report(name_or_file, use_cache: bool = True, cache_dir=None, **build_options) -> dict:
    """Table-4-like summary of a model (BV23 Table 4, Sect. 4.4.2).

    Local values come from the DFs directly (velocity integrals at R0), not from the grid interpolants:
    rho(R0, 0) and Sigma(R0, |z| < 1.1 kpc) = 2 int_0^1.1 rho dz (20 Gauss-Legendre nodes on
    [0, 0.2], [0.2, 0.5], [0.5, 1.1] kpc); static components use their exact profile.

    Parameters
    ----------
    name_or_file : str or path
        Built-in model name or INI file.
    use_cache : bool
        Use :meth:`GalaxyModel.load_or_build` (default) or always build.
    cache_dir : path, optional
        Cache directory.
    **build_options
        Passed to the build.

    Returns
    -------
    dict
        ``model``, ``R0_kpc``, ``R_kpc`` (list), ``vc_kms`` (list), ``components`` -> name ->
        {``mass_Msun``, ``rho_R0_Msun_pc3``, ``Sigma_R0_1.1kpc_Msun_pc2``}, ``totals`` (stars / all),
        ``Kz_1.1kpc_over_2piG_Msun_pc2``, ``vc_R0_kms``, ``iterations``, ``delta_phi`` (list),
        ``build_seconds``.
    """
    if use_cache:
        model = GalaxyModel.load_or_build(name_or_file, cache_dir=cache_dir, **build_options)
    else:
        model = GalaxyModel.build(name_or_file, **build_options)
    R0 = model.R0
    pot = model.potential
    R = np.array(REPORT_RADII)
    x, w = np.polynomial.legendre.leggauss(7)
    zs, wz = [], []
    for a, b in ((0.0, 0.2), (0.2, 0.5), (0.5, 1.1)):
        zs.append(0.5 * (a + b) + 0.5 * (b - a) * x)
        wz.append(0.5 * (b - a) * w)
    zs, wz = np.concatenate(zs), np.concatenate(wz)
    pts = np.column_stack([np.full(len(zs) + 1, R0), np.zeros(len(zs) + 1), np.concatenate([[0.0], zs])])
    names, mom = model.moments(pts, second=False)
    comps: Dict[str, dict] = {}
    for c in model.components:
        if c.is_df:
            rho = mom.density[:, names.index(c.name)]
            mass = float(c.df.mass)
        else:
            rho = np.asarray(c.static._density(pts[:, 0], pts[:, 2]))
            mass = float(c.static.total_mass())
        comps[c.name] = {"mass_Msun": mass, "rho_R0_Msun_pc3": float(rho[0]) * 1e-9,
                         "Sigma_R0_1.1kpc_Msun_pc2": float(2 * np.sum(wz * rho[1:])) * 1e-6,
                         "grid_mass_Msun": float(c.density.total_mass())}
    stars = [c.name for c in model.components if c.is_df and "dark" not in c.name.lower()]
    totals = {}
    for label, members in (("stars", stars), ("all", list(comps))):
        totals[label] = {k: float(sum(comps[n][k] for n in members))
                         for k in ("rho_R0_Msun_pc3", "Sigma_R0_1.1kpc_Msun_pc2")}
    _, gz = pot._grad(np.array([R0]), np.array([1.1]))
    return {
        "model": str(name_or_file),
        "R0_kpc": R0,
        "R_kpc": [float(r) for r in R],
        "vc_kms": [float(v) for v in pot.vcirc(R)],
        "vc_R0_kms": float(pot.vcirc(np.array([R0]))[0]),
        "components": comps,
        "totals": totals,
        "Kz_1.1kpc_over_2piG_Msun_pc2": float(gz[0] / (2 * np.pi * G)) * 1e-6,
        "iterations": len(model.iterations),
        "delta_phi": [r.delta_phi for r in model.iterations],
        "build_seconds": model.build_seconds,
    }
