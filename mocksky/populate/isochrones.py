"""PARSEC isochrones: the compact grid shipped with mocksky and its interpolation.

The grid (``mocksky/data/isochrones/parsec_eep.npz``, built by ``scripts/build_isochrone_grid.py`` from
the PARSEC v1.2S + COLIBRI grid; provenance and licence in the SOURCE.txt beside it) stores 11 [M/H] x
36 log-age isochrones cut into nine EEP phases by the PARSEC labels: 0 PMS + MS (PARSEC's PMS label
flickers near the ZAMS of low-mass stars, so the PMS/MS boundary is kept for labelling only), 1 the
main-sequence hook (zero width where there is none), 2 SGB, 3 RGB, 4-6 core-He burning, 7 early AGB,
8 TP-AGB. In each phase, a star's phase-normalised mass coordinate u in [0, 1] is the fraction of the
phase's initial-mass range it sits at (logarithmic in mass for phase 0); the phase is resampled at
nodes equally spaced in an EEP coordinate (mostly the arc length of the track in the HR diagram),
storing every quantity and the node's u.

Interpolation (equivalent evolutionary points)
----------------------------------------------
For a star (log age, [M/H], initial mass m): the phase boundaries b_s of the four neighbouring
isochrones are interpolated bilinearly (in log mass) in (log age, [M/H]); the phase s with
b_s <= m < b_{s+1} and the star's coordinate u in it follow; the star lies between the two nodes whose
interpolated u bracket it, and every quantity is the bilinear combination of the four isochrones'
values at the same nodes, linear in u between them. Thus the
interpolation never mixes, e.g., a red-giant-tip star of one isochrone with a horizontal-branch star
of another, as naive interpolation at fixed mass does. Outside the grid (log age < 6 or > 10.2,
[M/H] < -2.19 or > +0.3) the nearest edge is used. Stars above the last living mass b_9 are
remnants (:func:`remnant_mass`), with no photometry.

Outputs: current mass, Teff, log g (from mass, Teff, L with the constant fitted to PARSEC's LOGG),
log L, phase (the PARSEC label, made monotonic along the isochrone; remnants: 10 white dwarf,
11 neutron star, 12 black hole), absolute Vega magnitudes G, BP, RP (Gaia EDR3), G_RVS (from G and
G - G_RP, Sartoretti et al. 2023, A&A 674, A6, eqs. 9-10, colour clamped to their range
-0.15 <= G - G_RP <= 1.7) and 2MASS J, H, Ks.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from .. import data as _data
from . import _kernels as K

log = logging.getLogger(__name__)

__all__ = ["IsochroneGrid", "remnant_mass", "grvs_from_g_rp", "BANDS", "PHASE_NAMES", "PARSEC_LABELS", "REMNANT_CODES",
           "GRID_FILE"]

#: Relative path of the compact grid among mocksky's data files.
GRID_FILE = "isochrones/parsec_eep.npz"
#: Band names accepted by :meth:`IsochroneGrid.mass_low` (and the abs_* output columns, lower case).
BANDS = K.BANDS
#: Names of the EEP phases 0-8 (the ``phase`` argument of :meth:`IsochroneGrid.evaluate_eep`).
PHASE_NAMES = ("PMS+MS", "MS-hook", "SGB", "RGB", "CHeB", "CHeB-blue", "CHeB-red", "EAGB", "TPAGB")
#: PARSEC labels (the ``phase`` output of :meth:`IsochroneGrid.evaluate`): 0 PMS, 1 MS, 2 SGB, 3 RGB,
#: 4-6 core-He burning, 7 early AGB, 8 TP-AGB.
PARSEC_LABELS = ("PMS", "MS", "SGB", "RGB", "CHeB", "CHeB-blue", "CHeB-red", "EAGB", "TPAGB")
#: Phase codes of remnants.
REMNANT_CODES = {"white dwarf": K.WD, "neutron star": K.NS, "black hole": K.BH}
_OUT_COLUMNS = ("mass_current", "teff", "logg", "logl", "abs_g", "abs_bp", "abs_rp", "abs_grvs", "abs_j", "abs_h",
                "abs_ks")
#: Safety margin [mag] of :meth:`IsochroneGrid.mass_low` for G_RVS, which is not linear in the node values.
GRVS_MARGIN = 0.05
#: Column of the log g running minimum in ``IsochroneGrid.runmin`` (after the seven bands).
LOGG_COLUMN = 7
#: Safety margin [dex] of :meth:`IsochroneGrid.mass_low_logg` (log g is not linear in the node values).
LOGG_MARGIN = 0.05


def remnant_mass(m_init) -> tuple:
    """Remnant mass and code for initial masses past the end of their tracks.

    White dwarfs for m < 8.5 Msun: M_WD = 0.109 m + 0.394 (Kalirai et al. 2008, ApJ 676, 594, their
    linear initial-final mass relation); neutron stars of 1.4 Msun for 8.5 <= m < 40 and black holes
    of 0.5 m above (Renzini & Ciotti 1993, ApJ 416, L49; Maraston 1998, MNRAS 300, 872).

    Parameters
    ----------
    m_init : array_like
        Initial masses [Msun].

    Returns
    -------
    mass : numpy.ndarray
        Remnant masses [Msun].
    code : numpy.ndarray of int16
        10 white dwarf, 11 neutron star, 12 black hole.
    """
    m = np.asarray(m_init, dtype=np.float64)
    mass = np.where(m < K.WD_MAX, 0.109 * m + 0.394, np.where(m < K.NS_MAX, 1.4, 0.5 * m))
    code = np.where(m < K.WD_MAX, K.WD, np.where(m < K.NS_MAX, K.NS, K.BH)).astype(np.int16)
    return mass, code


def grvs_from_g_rp(g, rp) -> np.ndarray:
    """G_RVS from G and G_RP (Sartoretti et al. 2023, A&A 674, A6, eqs. 9 and 10).

    With x = G - G_RP clamped to [-0.15, 1.7]: G_RVS - G_RP = -0.0397 - 0.2852 x - 0.0330 x^2 - 0.0867 x^3
    for x <= 1.2 and -4.0618 + 10.0187 x - 9.0532 x^2 + 2.6089 x^3 above.
    """
    g = np.asarray(g, dtype=np.float64)
    rp = np.asarray(rp, dtype=np.float64)
    x = np.clip(g - rp, -0.15, 1.7)
    blue = -0.0397 - 0.2852 * x - 0.0330 * x ** 2 - 0.0867 * x ** 3
    red = -4.0618 + 10.0187 * x - 9.0532 * x ** 2 + 2.6089 * x ** 3
    return rp + np.where(x <= 1.2, blue, red)


def _band_index(band: str) -> int:
    b = str(band).upper().replace("_", "")
    aliases = {"G": "G", "BP": "BP", "GBP": "BP", "RP": "RP", "GRP": "RP", "GRVS": "GRVS", "RVS": "GRVS", "J": "J",
               "H": "H", "K": "KS", "KS": "KS"}
    if b not in aliases:
        raise ValueError(f"band: unknown band {band!r}; allowed: {list(BANDS)}")
    return BANDS.index(aliases[b])


class IsochroneGrid:
    """The compact PARSEC grid and its interpolation (see the module docstring).

    Parameters
    ----------
    mh : numpy.ndarray, shape (nz,)
        [M/H] nodes (increasing).
    logage : numpy.ndarray, shape (na,)
        log10(age / yr) nodes (increasing).
    log_b : numpy.ndarray, shape (nz, na, 10)
        log10 initial mass at the start of phases 0-8 and at the end of the track (phase 0 has zero
        width: the PMS is part of phase 1).
    log_pms : numpy.ndarray, shape (nz, na)
        log10 initial mass at the end of the PMS (labels stars of phase 1 below it as phase 0).
    u_nodes : numpy.ndarray, shape (K,)
        EEP coordinates of the nodes; phase s uses ``u_nodes[offsets[s]:offsets[s+1]]``.
    offsets : numpy.ndarray of int, shape (10,)
    values : numpy.ndarray of float32, shape (nz, na, K, 10)
        MASS, LOGTE, LOGL, G, BP, RP, J, H, KS and U (the phase-normalised mass coordinate) at the nodes.
    meta : dict
        Provenance; ``logg_const`` and ``m_floor`` are used.
    path : path, optional
        File the grid came from.

    Raises
    ------
    ValueError
        Inconsistent array shapes.
    """

    def __init__(self, mh, logage, log_b, log_pms, u_nodes, offsets, values, meta: dict, path: Optional[Path] = None):
        self.mh = np.ascontiguousarray(mh, dtype=np.float64)
        self.logage = np.ascontiguousarray(logage, dtype=np.float64)
        self.log_b = np.ascontiguousarray(log_b, dtype=np.float64)
        self.log_pms = np.ascontiguousarray(log_pms, dtype=np.float64)
        self.u_nodes = np.ascontiguousarray(u_nodes, dtype=np.float64)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.values = np.ascontiguousarray(values, dtype=np.float32)
        self.meta = dict(meta)
        self.path = path
        nz, na = len(self.mh), len(self.logage)
        Kn = len(self.u_nodes)
        if self.log_b.shape != (nz, na, len(self.offsets)) or self.values.shape[:3] != (nz, na, Kn) \
                or self.log_pms.shape != (nz, na) \
                or self.offsets[-1] != Kn or nz < 2 or na < 2:
            raise ValueError(f"IsochroneGrid: inconsistent shapes mh {self.mh.shape}, logage {self.logage.shape}, "
                             f"log_b {self.log_b.shape}, u_nodes {self.u_nodes.shape}, offsets {self.offsets}, "
                             f"values {self.values.shape}")
        self.logg_const = float(self.meta.get("logg_const", -10.61))
        mags = self.values[..., K.Q_G:K.Q_KS + 1].astype(np.float64)
        grvs = grvs_from_g_rp(mags[..., 0], mags[..., 2])
        # log g = log10 M + 4 log10 Teff - log10 L + const per node: its running minimum (column LOGG_COLUMN) gives
        # the lowest mass that can be a giant (mass_low_logg)
        with np.errstate(divide="ignore", invalid="ignore"):
            logg = (np.log10(np.maximum(self.values[..., K.Q_MASS].astype(np.float64), 1e-30))
                    + 4.0 * self.values[..., K.Q_LOGTE] - self.values[..., K.Q_LOGL] + self.logg_const)
        bands = np.stack([mags[..., 0], mags[..., 1], mags[..., 2], grvs, mags[..., 3], mags[..., 4], mags[..., 5],
                          logg], axis=-1)
        self.runmin = np.ascontiguousarray(np.minimum.accumulate(bands, axis=2), dtype=np.float64)
        self._grid_tuple = self._build_tuple()

    def _build_tuple(self):
        def lut(axis):
            x0, x1 = axis[0], axis[-1]
            nbin = int(np.ceil(4 * (x1 - x0) / np.min(np.diff(axis))))  # bins 4x narrower than any cell
            edges = x0 + (x1 - x0) * np.arange(nbin) / nbin
            idx = np.clip(np.searchsorted(axis, edges, side="right") - 1, 0, len(axis) - 2)
            return idx.astype(np.int64), nbin / (x1 - x0)

        zlut, zinv = lut(self.mh)
        alut, ainv = lut(self.logage)
        nz, na = len(self.mh), len(self.logage)
        nph = len(self.offsets) - 1
        ulut = np.empty((nz, na, nph, K.N_ULUT), np.int64)
        ubins = np.arange(K.N_ULUT) / K.N_ULUT
        U = self.values[..., K.Q_U].astype(np.float64)
        for s in range(nph):
            k0, k1 = int(self.offsets[s]), int(self.offsets[s + 1])
            seg = U[:, :, k0:k1]
            for iz in range(nz):
                for ia in range(na):
                    j = np.searchsorted(seg[iz, ia], ubins, side="right") - 1
                    ulut[iz, ia, s] = k0 + np.clip(j, 0, k1 - k0 - 2)
        par = np.array([self.logg_const, self.mh[0], zinv, self.logage[0], ainv])
        return (self.mh, self.logage, self.log_b, self.log_pms, self.u_nodes, self.offsets, self.values, self.runmin,
                ulut, zlut, alut, par)

    def kernel_grid(self) -> tuple:
        """The grid tuple of the numba kernels (see :mod:`._kernels`)."""
        return self._grid_tuple

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: Union[str, Path, None] = None) -> "IsochroneGrid":
        """Read a grid written by ``scripts/build_isochrone_grid.py`` (default: the shipped one).

        Raises
        ------
        mocksky.data.DataNotFoundError
            The default grid is missing.
        ValueError
            Not a grid file.
        """
        p = Path(path) if path is not None else _data.find(
            GRID_FILE, hint="Rebuild it with scripts/build_isochrone_grid.py from shared/data/isochrones.")
        with np.load(p, allow_pickle=False) as d:
            missing = {"mh", "logage", "log_b", "log_pms", "u_nodes", "offsets", "values", "meta"} - set(d.files)
            if missing:
                raise ValueError(f"{p}: not an isochrone grid (missing {sorted(missing)})")
            meta = json.loads(str(d["meta"]))
            return cls(d["mh"], d["logage"], d["log_b"], d["log_pms"], d["u_nodes"], d["offsets"], d["values"], meta,
                       path=p)

    @classmethod
    @functools.lru_cache(maxsize=1)
    def default(cls) -> "IsochroneGrid":
        """The shipped grid, loaded once per process."""
        return cls.load()

    def without(self, mh_index: Optional[int] = None, age_index: Optional[int] = None) -> "IsochroneGrid":
        """A copy with one [M/H] and/or one age column removed (for leave-one-out tests)."""
        iz = np.ones(len(self.mh), bool)
        ia = np.ones(len(self.logage), bool)
        if mh_index is not None:
            iz[mh_index] = False
        if age_index is not None:
            ia[age_index] = False
        return IsochroneGrid(self.mh[iz], self.logage[ia], self.log_b[iz][:, ia], self.log_pms[iz][:, ia],
                             self.u_nodes, self.offsets, self.values[iz][:, ia], self.meta, self.path)

    # ------------------------------------------------------------------ properties
    @property
    def m_floor(self) -> float:
        """Lowest initial mass of the tracks [Msun] (0.08)."""
        return float(np.max(10.0 ** self.log_b[:, :, 0]))

    @property
    def n_phases(self) -> int:
        return len(self.offsets) - 1

    @staticmethod
    def logage_of(age_gyr) -> np.ndarray:
        """log10(age / yr) of ages in Gyr (ages <= 0 map to the grid's youngest isochrone)."""
        a = np.asarray(age_gyr, dtype=np.float64)
        return np.log10(np.maximum(a, 1e-9)) + 9.0

    def clamp(self, logage, mh):
        """(logage, mh) clamped to the grid, and the number of values that were outside."""
        la = np.asarray(logage, dtype=np.float64)
        z = np.asarray(mh, dtype=np.float64)
        la_c = np.clip(la, self.logage[0], self.logage[-1])
        z_c = np.clip(z, self.mh[0], self.mh[-1])
        return la_c, z_c, int(np.count_nonzero(la_c != la)), int(np.count_nonzero(z_c != z))

    # ------------------------------------------------------------------ evaluation
    def _prep(self, logage, mh, n=None):
        shape = (n,) if n else np.shape(logage)
        la = np.ascontiguousarray(np.broadcast_to(np.asarray(logage, dtype=np.float64), shape))
        z = np.ascontiguousarray(np.broadcast_to(np.asarray(mh, dtype=np.float64), la.shape))
        return la.ravel(), z.ravel()

    def evaluate(self, logage, mh, m_init) -> Dict[str, np.ndarray]:
        """Stellar parameters and absolute magnitudes of stars (see the module docstring).

        Parameters
        ----------
        logage : array_like
            log10(age / yr); broadcast against ``m_init``.
        mh : array_like
            [M/H] [dex].
        m_init : array_like, shape (N,)
            Initial masses [Msun] (>= :attr:`m_floor`; lower masses are treated as the floor's star).

        Returns
        -------
        dict
            ``mass_current`` [Msun], ``teff`` [K], ``logg`` [dex], ``logl`` [dex], ``phase`` (int16),
            ``is_remnant`` (bool), ``abs_g``, ``abs_bp``, ``abs_rp``, ``abs_grvs``, ``abs_j``, ``abs_h``,
            ``abs_ks`` [mag]; remnants have NaN in every column but ``mass_current`` and ``phase``.
        """
        m = np.ascontiguousarray(np.asarray(m_init, dtype=np.float64).ravel())
        la, z = self._prep(logage, mh, len(m))
        out = K.evaluate_vec(la, z, m, self._grid_tuple)
        return self._columns(out)

    @staticmethod
    def _columns(out: np.ndarray) -> Dict[str, np.ndarray]:
        res = {name: out[:, j] for j, name in enumerate(_OUT_COLUMNS)}
        res["phase"] = out[:, 11].astype(np.int16)
        res["is_remnant"] = res["phase"] >= K.WD
        return res

    def evaluate_eep(self, logage, mh, phase, u) -> Dict[str, np.ndarray]:
        """As :meth:`evaluate` at given EEP phase (0-8, :data:`PHASE_NAMES`) and phase coordinate u in
        [0, 1] instead of mass; the result also holds ``mass_initial`` (``phase`` is the EEP phase).

        Raises
        ------
        ValueError
            Phase outside 0-8 or u outside [0, 1].
        """
        u = np.ascontiguousarray(np.asarray(u, dtype=np.float64).ravel())
        ph = np.ascontiguousarray(np.broadcast_to(np.asarray(phase, dtype=np.int64), u.shape))
        if np.any((ph < 0) | (ph >= self.n_phases)) or np.any((u < 0) | (u > 1)):
            raise ValueError(f"evaluate_eep: phase must be in 0..{self.n_phases - 1} and u in [0, 1]")
        la, z = self._prep(logage, mh, len(u))
        out = K.evaluate_eep_vec(la, z, ph, u, self._grid_tuple)
        res = {name: out[:, j] for j, name in enumerate(_OUT_COLUMNS)}
        res["mass_initial"] = out[:, 11]
        res["phase"] = ph.astype(np.int16)
        return res

    def phase_boundaries(self, logage, mh) -> np.ndarray:
        """Initial masses b_0..b_9 at the start of the EEP phases 0-8 and at the end of the track, shape (N, 10)."""
        la, z = self._prep(logage, mh)
        return K.boundaries_vec(la, z, self._grid_tuple)

    def m_end(self, logage, mh) -> np.ndarray:
        """Initial mass at the end of the track (heavier stars are remnants) [Msun]."""
        la, z = self._prep(logage, mh)
        return K.m_end_vec(la, z, self._grid_tuple).reshape(np.shape(logage))

    def mass_low(self, logage, mh, abs_mag_limit, band: str = "G") -> np.ndarray:
        """Lowest initial mass a living star of this age and [M/H] needs to be as bright as ``abs_mag_limit``.

        Every living star with absolute magnitude <= abs_mag_limit in ``band`` has an initial mass at
        least this (exact for the interpolation of :meth:`evaluate`; for G_RVS a margin of
        :data:`GRVS_MARGIN` mag is added); some heavier stars may still be fainter (e.g. the red clump
        when the limit is above it). +inf where no living star reaches the limit.

        Raises
        ------
        ValueError
            Unknown band (the allowed names are listed).
        """
        b = _band_index(band)
        lim = np.asarray(abs_mag_limit, dtype=np.float64) + (GRVS_MARGIN if BANDS[b] == "GRVS" else 0.0)
        shape = np.broadcast(np.asarray(logage), np.asarray(mh), lim).shape
        la = np.ascontiguousarray(np.broadcast_to(np.asarray(logage, dtype=np.float64), shape)).ravel()
        z = np.ascontiguousarray(np.broadcast_to(np.asarray(mh, dtype=np.float64), shape)).ravel()
        lim = np.ascontiguousarray(np.broadcast_to(lim, shape)).ravel()
        out = K.mass_low_vec(la, z, lim, b, self._grid_tuple)
        return out.reshape(shape)

    def mass_low_logg(self, logage, mh, logg_max) -> np.ndarray:
        """Lowest initial mass a living star of this age and [M/H] needs to have log g <= ``logg_max``.

        Every living star with log g <= logg_max (a giant, for logg_max ~ 3.5) has an initial mass at least
        this (a margin of :data:`LOGG_MARGIN` dex covers the interpolation of log g between nodes). +inf where
        no living star gets there (young isochrones may have no giants yet).

        Parameters
        ----------
        logage, mh, logg_max : array_like
            log10 age [yr], [M/H] [dex] and the log g limit [dex, cgs], broadcast together.

        Returns
        -------
        numpy.ndarray
            [Msun], broadcast shape.
        """
        lim = np.asarray(logg_max, dtype=np.float64) + LOGG_MARGIN
        shape = np.broadcast(np.asarray(logage), np.asarray(mh), lim).shape
        la = np.ascontiguousarray(np.broadcast_to(np.asarray(logage, dtype=np.float64), shape)).ravel()
        z = np.ascontiguousarray(np.broadcast_to(np.asarray(mh, dtype=np.float64), shape)).ravel()
        lim = np.ascontiguousarray(np.broadcast_to(lim, shape)).ravel()
        return K.mass_low_vec(la, z, lim, LOGG_COLUMN, self._grid_tuple).reshape(shape)

    def present_mass_fraction(self, logage, mh, imf, m_cap: float = np.inf) -> np.ndarray:
        """Present-day stellar mass (living stars + remnants) per unit initial mass, r(age, [M/H]).

        Living stars contribute their interpolated current mass (4-point Gauss-Legendre on every node
        interval of the interpolated isochrone), remnants their IFMR mass (:func:`remnant_mass`, exact),
        stars of the IMF below the isochrones' lowest mass their initial mass.

        Parameters
        ----------
        logage, mh : array_like
            Broadcast together.
        imf : IMF
        m_cap : float
            Count only stars of initial mass below m_cap [Msun] (default: all).
        """
        shape = np.broadcast(np.asarray(logage), np.asarray(mh)).shape
        la = np.ascontiguousarray(np.broadcast_to(np.asarray(logage, dtype=np.float64), shape)).ravel()
        z = np.ascontiguousarray(np.broadcast_to(np.asarray(mh, dtype=np.float64), shape)).ravel()
        out = K.present_mass_vec(la, z, self._grid_tuple, *imf.arrays(), float(m_cap))
        return out.reshape(shape)

    def describe(self) -> dict:
        """JSON-friendly summary for catalogue metadata."""
        return {"file": str(self.path) if self.path else "", "mh": [float(self.mh[0]), float(self.mh[-1])],
                "logage": [float(self.logage[0]), float(self.logage[-1])], "nodes": int(len(self.u_nodes)),
                "source": self.meta.get("source", ""), "input_sha256": self.meta.get("input_sha256", "")}
