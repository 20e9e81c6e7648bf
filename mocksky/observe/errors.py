"""Observational error models: add uncertainties (``*_error``) and scattered observed values to a star table.

Every model follows the :class:`ErrorModel` protocol: ``uncertainties(table) -> {column: sigma}`` and
``apply(table, rng) -> table`` which writes the ``*_error`` columns and the observed columns
``observed = true + sigma * N(0, 1)`` (independent Gaussian errors, no correlations), keeping the ``*_true`` columns.

Gaia (:class:`GaiaErrorModel`, releases ``"dr3"``, ``"dr4"``, ``"dr5"``) - the end-of-mission performance model of the
Gaia science performance pages as coded in PyGaia 3.2.2 (A.G.A. Brown; its data tables are shipped, the formulas are
implemented here vectorised and checked against PyGaia in the tests):

* parallax: ``sigma_plx = sqrt(40 + 800 z + 30 z^2) * t_r`` [uas], ``z = 10^(0.4 (max(G, 13) - 15))``, with
  ``t_r = 1, 0.749, 0.527`` for DR3, DR4, DR5 (Lindegren et al. 2021, A&A 649, A2; mission length scaling);
* proper motions: ``sigma_pmra = s_r,a * sigma_plx``, ``sigma_pmdec = s_r,d * sigma_plx`` [uas/yr] with
  ``(s_a, s_d) = (1.03, 0.89), (0.58, 0.50), (0.29, 0.25)`` for DR3, DR4, DR5;
* sky dependence (optional, default on): each is multiplied by ``f_X(|sin beta|) / <f_X>``, the GeDR3mock /
  Gaia DR2 science-performance factors for parallax (pi), mu_alpha* and mu_delta in 20 bins of
  |sin(ecliptic latitude)| divided by their sky mean (the bin containing the star is used);
* photometry: ``log10 sigma_X = spline_X(m_X) - log10 sqrt(n_X / n_ref,X)`` [mag] for X = G, BP, RP (Riello et al.
  2021, A&A 649, A3; EDR3 uncertainty splines), ``n_ref = 200, 20, 20`` and ``n`` = (351, 40, 40), (620, 70, 70),
  (1240, 140, 140) field-of-view transits for DR3, DR4, DR5;
* radial velocity: the Katz et al. 2023 (A&A 674, A5) DR3 model ``sigma = floor + b exp(a (G_RVS - G_RVS,0))``
  per (Teff, logg) group, and for DR4/DR5 the signal-to-noise based model of the science performance pages, with
  PyGaia's groups and coefficients.

Validity and bad input (documented behaviour, no exceptions for out-of-range values):

* magnitudes brighter than the tables (G, BP, RP < 4) use the value at 4 (the bright-end floor); astrometry has its
  own floor at G = 13; fainter than the models (G > 21 for astrometry, any band > 21 for its photometry, G_RVS > 14
  for DR3 and > 16 for DR4/DR5 radial velocities, G_RVS > 12 with Teff > 7000 K for DR4/DR5, and DR3 sigma > 20 km/s)
  the uncertainty is NaN, and so is the observed value: the star has no such measurement. Teff/logg outside every
  group of the RV model likewise give NaN (as PyGaia). NaN inputs give NaN.
* a *missing column* the model needs raises ``ValueError`` naming it; negative ``parallax_true`` raises ValueError.

APOGEE-like (:class:`ApogeeErrorModel`, ``"apogee_bv24"``): the mean uncertainties of the APOGEE DR17 x Gaia DR3 giant
sample of Binney & Vasiliev 2024 (MNRAS 527, 1915) in 1-kpc bins of true distance (``observed/bv24_apogee_gaia/
gaia_errors.csv``; bins (k, k+1] kpc, last > 25 kpc): distance (StarHorse), pmra, pmdec, line-of-sight velocity,
[Fe/H] and [Mg/Fe] (-> ``alpha_fe``). It writes ``distance_error`` (the star table has no observed-distance column,
so distances are not scattered), ``pmra/pmdec/radial_velocity/feh/alpha_fe`` errors and the observed ``pmra, pmdec,
radial_velocity, feh_obs, alpha_fe_obs``. NaN distance -> NaN; negative distance -> ValueError.
"""
from __future__ import annotations

import csv
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, Optional, Protocol, Sequence, Union, runtime_checkable

import numba
import numpy as np

from .. import data
from ..catalogue.schema import StarTable

__all__ = ["ErrorModel", "GaiaErrorModel", "ApogeeErrorModel", "ExactMeasurements", "error_model",
           "available_error_models",
           "parallax_uncertainty", "proper_motion_uncertainty", "astrometric_uncertainties", "magnitude_uncertainty",
           "radial_velocity_uncertainty", "ecliptic_sin_latitude", "ecliptic_error_factors", "GAIA_RELEASES",
           "OBLIQUITY_J2000_DEG"]

log = logging.getLogger(__name__)

GAIA_RELEASES = ("dr3", "dr4", "dr5")
_T_FACTOR = {"dr3": 1.0, "dr4": 0.749, "dr5": 0.527}
_PM_SCALE = {"dr3": (1.03, 0.89), "dr4": (0.58, 0.50), "dr5": (0.29, 0.25)}
_PHOT_NOBS = {"dr3": {"g": 351, "bp": 40, "rp": 40}, "dr4": {"g": 620, "bp": 70, "rp": 70},
              "dr5": {"g": 1240, "bp": 140, "rp": 140}}
_PHOT_NOBS_REF = {"g": 200, "bp": 20, "rp": 20}
_PHOT_MAG_RANGE = (4.0, 21.0)
_ASTROMETRY_FAINT = 21.0
#: Mean obliquity of the ecliptic at J2000 (IAU 2006, 84381.406 arcsec) [deg].
OBLIQUITY_J2000_DEG = 84381.406 / 3600.0

_GAIA_REF = ("Gaia science performance pages (ESA); PyGaia 3.2.2 (Brown); Lindegren et al. 2021, A&A 649, A2; "
             "Riello et al. 2021, A&A 649, A3; Katz et al. 2023, A&A 674, A5; ecliptic factors: Rybizki et al. 2020 "
             "(GeDR3mock)")
_PHOT_COLS = {"g": "phot_g_mean_mag", "bp": "phot_bp_mean_mag", "rp": "phot_rp_mean_mag"}


def _check_release(release: str) -> str:
    r = str(release).lower()
    if r not in GAIA_RELEASES:
        raise ValueError(f"unknown Gaia release {release!r}; allowed: {list(GAIA_RELEASES)}")
    return r


# ------------------------------------------------------------------------------------------------ astrometry
def parallax_uncertainty(gmag, release: str = "dr3") -> np.ndarray:
    """Sky-averaged parallax uncertainty [mas] of the Gaia performance model.

    ``sigma = sqrt(40 + 800 z + 30 z^2) * t_r / 1000`` with ``z = 10^(0.4 (max(G, 13) - 15))``; NaN for G > 21 or NaN.

    Parameters
    ----------
    gmag : array_like
        Gaia G magnitude.
    release : {"dr3", "dr4", "dr5"}

    Raises
    ------
    ValueError
        Unknown release.
    """
    r = _check_release(release)
    g = np.asarray(gmag, dtype=np.float64)
    z = 10.0 ** (0.4 * (np.maximum(g, 13.0) - 15.0))
    sig = np.sqrt(40.0 + 800.0 * z + 30.0 * z * z) * (_T_FACTOR[r] / 1000.0)
    return np.where(g <= _ASTROMETRY_FAINT, sig, np.nan)


@lru_cache(maxsize=1)
def _ecliptic_table():
    path = data.find("observe/gaia_ecliptic_error_factors.txt",
                     hint="It is mocksky package data; rebuild it with scripts/build_observe_data.py.")
    rows, mean = [], None
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#Mean"):
            mean = [float(v) for v in s.split()[1:]]
        elif not s.startswith("#"):
            rows.append([float(v) for v in s.split()])
    tab = np.array(rows)
    if tab.shape != (20, 6) or mean is None or not np.allclose(tab[:, 0], 0.025 + 0.05 * np.arange(20)):
        raise ValueError(f"{path}: unexpected format of the ecliptic error-factor table")
    # columns: alpha*, delta, pi, mu_alpha*, mu_delta ; normalised by the sky mean
    return tab[:, 1:] / np.array(mean)[None, :]


def ecliptic_sin_latitude(ra_deg, dec_deg) -> np.ndarray:
    """sin(beta) of the ecliptic latitude from ICRS (ra, dec) [deg], using the J2000 mean obliquity
    (``sin beta = sin dec cos eps - cos dec sin eps sin ra``)."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    eps = np.radians(OBLIQUITY_J2000_DEG)
    return np.sin(dec) * np.cos(eps) - np.cos(dec) * np.sin(eps) * np.sin(ra)


def ecliptic_error_factors(sin_beta) -> Dict[str, np.ndarray]:
    """Factors multiplying the sky-averaged uncertainties at ecliptic latitude beta: ``f(|sin beta|) / <f>`` for
    ``"parallax"``, ``"pmra"``, ``"pmdec"`` (and ``"ra"``, ``"dec"``), from the 20-bin table (bin of the star)."""
    tab = _ecliptic_table()
    s = np.abs(np.asarray(sin_beta, dtype=np.float64))
    ok = np.isfinite(s)
    idx = np.clip((np.where(ok, s, 0.0) / 0.05).astype(np.int64), 0, 19)
    out = {}
    for j, name in enumerate(("ra", "dec", "parallax", "pmra", "pmdec")):
        out[name] = np.where(ok, tab[idx, j], np.nan)
    return out


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _astrometry_kernel(g, ra, dec, t_factor, sa, sd, faint, fac, use_ecl, sin_eps, cos_eps, plx, pma, pmd):
    """sigma_plx, sigma_pmra, sigma_pmdec [mas, mas/yr] per star; fac (20, 3) = normalised factors (pi, mua, mud)."""
    zfloor = 10.0 ** (0.4 * (13.0 - 15.0))
    for i in numba.prange(g.shape[0]):
        gi = g[i]
        if not (gi <= faint):
            plx[i] = np.nan
            pma[i] = np.nan
            pmd[i] = np.nan
            continue
        z = 10.0 ** (0.4 * (gi - 15.0))
        if z < zfloor:
            z = zfloor
        sp = np.sqrt(40.0 + 800.0 * z + 30.0 * z * z) * t_factor * 1e-3
        fp = 1.0
        fa = 1.0
        fd = 1.0
        if use_ecl:
            a = ra[i] * (np.pi / 180.0)
            d = dec[i] * (np.pi / 180.0)
            sb = abs(np.sin(d) * cos_eps - np.cos(d) * sin_eps * np.sin(a))
            if not np.isfinite(sb):
                plx[i] = np.nan
                pma[i] = np.nan
                pmd[i] = np.nan
                continue
            k = int(sb / 0.05)
            if k > 19:
                k = 19
            fp = fac[k, 0]
            fa = fac[k, 1]
            fd = fac[k, 2]
        plx[i] = sp * fp
        pma[i] = sa * sp * fa
        pmd[i] = sd * sp * fd


def astrometric_uncertainties(gmag, release: str = "dr3", ra=None, dec=None):
    """Parallax and proper-motion uncertainties in one pass (the fast path of :class:`GaiaErrorModel`).

    Parameters
    ----------
    gmag : array_like
        Gaia G magnitude; NaN or > 21 gives NaN.
    release : {"dr3", "dr4", "dr5"}
    ra, dec : array_like, optional
        ICRS position [deg]; when given, the ecliptic-latitude factors are applied.

    Returns
    -------
    sigma_parallax [mas], sigma_pmra [mas/yr], sigma_pmdec [mas/yr] : ndarray
    """
    r = _check_release(release)
    g = np.ascontiguousarray(np.asarray(gmag, dtype=np.float64))
    shape = g.shape
    g = g.ravel()
    use = ra is not None and dec is not None
    if use:
        A, D = (np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), shape)).ravel()
                for v in (ra, dec))
    else:
        A = D = g
    tab = _ecliptic_table()
    fac = np.ascontiguousarray(tab[:, 2:5])
    eps = np.radians(OBLIQUITY_J2000_DEG)
    out = [np.empty_like(g) for _ in range(3)]
    sa, sd = _PM_SCALE[r]
    _astrometry_kernel(g, A, D, _T_FACTOR[r], sa, sd, _ASTROMETRY_FAINT, fac, use, np.sin(eps), np.cos(eps), *out)
    return tuple(o.reshape(shape) for o in out)


def proper_motion_uncertainty(gmag, release: str = "dr3", sin_beta=None):
    """Proper-motion uncertainties (sigma_pmra, sigma_pmdec) [mas/yr]; sky-averaged, or at ecliptic latitude
    ``arcsin(sin_beta)`` when given. NaN for G > 21.

    Raises
    ------
    ValueError
        Unknown release.
    """
    r = _check_release(release)
    plx = parallax_uncertainty(gmag, r)
    sa, sd = _PM_SCALE[r]
    pa, pd = sa * plx, sd * plx
    if sin_beta is not None:
        f = ecliptic_error_factors(sin_beta)
        pa, pd = pa * f["pmra"], pd * f["pmdec"]
    return pa, pd


# ------------------------------------------------------------------------------------------------ photometry
@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _ppoly_kernel(x, brk, coef, lo, hi, shift, out):
    nb = brk.shape[0]
    for i in numba.prange(x.shape[0]):
        v = x[i]
        if not (v <= hi):  # NaN or too faint
            out[i] = np.nan
            continue
        if v < lo:
            v = lo
        a = 0
        b = nb - 1
        while b - a > 1:  # brk[a] <= v < brk[b]
            m = (a + b) >> 1
            if brk[m] <= v:
                a = m
            else:
                b = m
        t = v - brk[a]
        logs = ((coef[0, a] * t + coef[1, a]) * t + coef[2, a]) * t + coef[3, a]
        out[i] = 10.0 ** (logs - shift)


@lru_cache(maxsize=1)
def _phot_splines():
    from scipy.interpolate import BSpline, PPoly

    path = data.find("observe/gaia_phot_spline.csv",
                     hint="It is mocksky package data; rebuild it with scripts/build_observe_data.py.")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for band, key in (("g", "G"), ("bp", "BP"), ("rp", "RP")):
        knots = np.array([float(r[f"knots_{key}"]) for r in rows if r[f"knots_{key}"]])
        coeff = np.array([float(r[f"coeff_{key}"]) for r in rows if r[f"coeff_{key}"]])
        pp = PPoly.from_spline(BSpline(knots, coeff, 3, extrapolate=False))
        # keep intervals of positive length inside the knot span
        xb = pp.x
        keep = np.nonzero(np.diff(xb) > 0)[0]
        brk = np.append(xb[keep], xb[keep[-1] + 1])
        coef = np.ascontiguousarray(pp.c[:, keep])
        out[band] = (np.ascontiguousarray(brk), coef)
    return out


def magnitude_uncertainty(band: str, mag, release: str = "dr3") -> np.ndarray:
    """Gaia G, BP or RP photometric uncertainty [mag] of the EDR3-spline performance model.

    Parameters
    ----------
    band : {"g", "bp", "rp"}
    mag : array_like
        Magnitude in that band; < 4 is evaluated at 4, > 21 (or NaN) gives NaN.
    release : {"dr3", "dr4", "dr5"}

    Raises
    ------
    ValueError
        Unknown band or release.
    """
    r = _check_release(release)
    b = str(band).lower()
    if b not in _PHOT_NOBS_REF:
        raise ValueError(f"unknown Gaia photometric band {band!r}; allowed: {list(_PHOT_NOBS_REF)}")
    brk, coef = _phot_splines()[b]
    m = np.asarray(mag, dtype=np.float64)
    flat = np.ascontiguousarray(m).ravel()
    out = np.empty_like(flat)
    shift = np.log10(np.sqrt(_PHOT_NOBS[r][b] / _PHOT_NOBS_REF[b]))
    _ppoly_kernel(flat, brk, coef, _PHOT_MAG_RANGE[0], _PHOT_MAG_RANGE[1], shift, out)
    return out.reshape(m.shape)


# ------------------------------------------------------------------------------------------------ RV
@lru_cache(maxsize=1)
def _rv_groups():
    path = data.find("observe/gaia_rv_uncertainty_coeffs.json",
                     hint="It is mocksky package data; rebuild it with scripts/build_observe_data.py.")
    return json.loads(path.read_text())


def _in_interval(a, lo, hi, closed):
    left = a >= lo if closed in ("both", "left") else a > lo
    right = a <= hi if closed in ("both", "right") else a < hi
    return left & right


# Gaia RVS instrument constants of the DR4/DR5 signal-to-noise model (science performance pages / PyGaia)
_RVS = {"zeropoint": 21.317, "exposure": 4.4167032, "spectra_per_transit": 3, "pixel_al": 0.02453, "band_width": 24.0,
        "background": 4.7, "ac_bright": 10, "ac_faint": 1, "ron": 3.2, "transits": {"dr4": 32, "dr5": 64}}


def radial_velocity_uncertainty(grvs, teff, logg, release: str = "dr3") -> np.ndarray:
    """Gaia radial-velocity uncertainty [km/s] from G_RVS, Teff [K] and logg [dex].

    DR3: ``floor + b exp(a (G_RVS - G_RVS,0))`` (Katz et al. 2023, Sect. 6, their Fig. E.1/F.1 groups), NaN for
    G_RVS > 14 or sigma > 20 km/s. DR4/DR5: the smooth broken power law in the expected spectrum S/N of the Gaia
    science performance pages (32 / 64 transits), NaN for G_RVS > 16 or (G_RVS > 12 and Teff > 7000 K). Stars whose
    (Teff, logg) is in no group get NaN; where groups overlap the later group in the table wins (as in PyGaia).

    Raises
    ------
    ValueError
        Unknown release, or arrays of different shapes.
    """
    r = _check_release(release)
    g, t, lg = (np.asarray(v, dtype=np.float64) for v in (grvs, teff, logg))
    if not (g.shape == t.shape == lg.shape):
        raise ValueError(f"radial_velocity_uncertainty: grvs, teff, logg shapes differ: {g.shape}, {t.shape}, "
                         f"{lg.shape}")
    out = np.full(g.shape, np.nan)
    faint = 14.0 if r == "dr3" else 16.0
    live = g <= faint
    if r != "dr3":
        live &= ~((g > 12.0) & (t > 7000.0))
    if not np.any(live):
        return out
    gg, tt, ll = (g[live], t[live], lg[live])
    res = np.full(gg.shape, np.nan)
    if r != "dr3":
        c = _RVS
        n_tr = c["transits"][r]
        signal = 10.0 ** (0.4 * (c["zeropoint"] - gg)) * c["exposure"] * c["spectra_per_transit"] * n_tr * (
            c["pixel_al"] / c["band_width"])
        bck = c["background"] * c["spectra_per_transit"] * n_tr
        ron2 = c["ron"] ** 2 * c["spectra_per_transit"] * n_tr
        nac = np.where(gg <= 7.0, c["ac_bright"], c["ac_faint"])
        snr = signal / np.sqrt(signal + (bck + ron2) * nac)
        lsnr = np.log10(snr)
    for grp in _rv_groups().values():
        m = _in_interval(tt, *grp["teff"]) & _in_interval(ll, *grp["logg"])
        if not np.any(m):
            continue
        if r == "dr3":
            k = grp["dr3coeffs"]
            res[m] = k["sfloor"] + k["b"] * np.exp(k["a"] * (gg[m] - k["grvs0"]))
        else:
            k = grp["dr45coeffs"]
            x = lsnr[m] - np.log10(k["snrbreak"])
            low = k["sbreak"] * (snr[m] / k["snrbreak"]) ** k["f"]
            high = k["sfloor"] + (k["sbreak"] - k["sfloor"]) * np.exp(k["g"] * x)
            h = 0.5 * (1.0 + np.tanh(k["k"] * x))
            res[m] = h * high + (1.0 - h) * low
    if r == "dr3":
        res[res > 20.0] = np.nan
    out[live] = res
    return out


# ------------------------------------------------------------------------------------------------ models
@runtime_checkable
class ErrorModel(Protocol):
    """What every error model provides."""

    name: str

    def uncertainties(self, table: StarTable) -> Dict[str, np.ndarray]:
        """``{error column: sigma}`` for the stars of ``table`` (no randomness)."""
        ...

    def apply(self, table: StarTable, rng=None) -> StarTable:
        """Write the ``*_error`` and observed columns into ``table`` (in place) and return it."""
        ...

    def meta(self) -> dict:
        ...


def _need(table: StarTable, cols: Iterable[str], who: str) -> None:
    missing = [c for c in cols if c not in table]
    if missing:
        raise ValueError(f"{who}: the star table lacks column(s) {missing}")


@numba.njit(cache=True, nogil=True, fastmath=False)
def _scatter_kernel(true, sig, z, out):
    """out = true + sig * z[j] with j counting the stars with finite sig (in order); NaN where sig is not finite."""
    j = 0
    for i in range(true.shape[0]):
        s = sig[i]
        if np.isfinite(s):
            out[i] = true[i] + s * z[j]
            j += 1
        else:
            out[i] = np.nan


def _scatter(table: StarTable, sig: Dict[str, np.ndarray], pairs: Sequence, rng: np.random.Generator) -> None:
    """For (error column, true column, observed column) triples present in ``sig``: write sigma and observed
    (true + sigma N(0, 1), one normal per star with finite sigma, in table order; NaN elsewhere)."""
    for err_col, true_col, obs_col in pairs:
        if err_col not in sig:
            continue
        s = np.asarray(sig[err_col], dtype=np.float64)
        table[err_col] = s
        nok = int(np.count_nonzero(np.isfinite(s)))
        obs = np.empty(s.shape)
        _scatter_kernel(np.ascontiguousarray(table[true_col], dtype=np.float64), np.ascontiguousarray(s),
                        rng.standard_normal(nok), obs)
        table[obs_col] = obs


def _record(table: StarTable, meta: dict) -> None:
    models = list(table.meta.get("error_models", []))
    models.append(meta)
    table.meta["error_models"] = models


class GaiaErrorModel:
    """Gaia DR3/DR4/DR5 astrometric, photometric and radial-velocity uncertainties (module docstring).

    Parameters
    ----------
    release : {"dr3", "dr4", "dr5"}
    astrometry : bool
        Parallax and proper motions (needs ``phot_g_mean_mag_true``, ``parallax_true``, ``pmra_true``,
        ``pmdec_true`` and, with ``ecliptic_factors``, ``ra, dec``).
    photometry : sequence of {"g", "bp", "rp"}
        Bands to scatter (needs ``phot_<band>_mean_mag_true``); empty for none.
    radial_velocity : bool
        Needs ``grvs_mag_true``, ``teff``, ``logg``, ``radial_velocity_true``.
    ecliptic_factors : bool
        Apply the ecliptic-latitude dependence of the astrometric errors (default True).

    Raises
    ------
    ValueError
        Unknown release or band.
    """

    def __init__(self, release: str = "dr3", astrometry: bool = True, photometry: Sequence[str] = ("g", "bp", "rp"),
                 radial_velocity: bool = True, ecliptic_factors: bool = True):
        self.release = _check_release(release)
        self.astrometry = bool(astrometry)
        self.photometry = tuple(str(b).lower() for b in photometry)
        bad = [b for b in self.photometry if b not in _PHOT_COLS]
        if bad:
            raise ValueError(f"GaiaErrorModel: unknown photometric band(s) {bad}; allowed: {list(_PHOT_COLS)}")
        self.radial_velocity = bool(radial_velocity)
        self.ecliptic_factors = bool(ecliptic_factors)
        self.name = f"gaia_{self.release}"

    def required_columns(self) -> list:
        """Columns :meth:`uncertainties` / :meth:`apply` read, given the enabled measurements."""
        cols = []
        if self.astrometry:
            cols += ["phot_g_mean_mag_true", "parallax_true", "pmra_true", "pmdec_true"]
            if self.ecliptic_factors:
                cols += ["ra", "dec"]
        cols += [f"{_PHOT_COLS[b]}_true" for b in self.photometry]
        if self.radial_velocity:
            cols += ["grvs_mag_true", "teff", "logg", "radial_velocity_true"]
        return list(dict.fromkeys(cols))

    def uncertainties(self, table: StarTable) -> Dict[str, np.ndarray]:
        """Uncertainties of the enabled measurements: ``parallax_error, pmra_error, pmdec_error`` [mas, mas/yr],
        ``phot_<band>_mean_mag_error`` [mag], ``radial_velocity_error`` [km/s].

        Raises
        ------
        ValueError
            If a needed column is missing (named in the message) or ``parallax_true`` has negative values.
        """
        _need(table, self.required_columns(), f"GaiaErrorModel({self.release})")
        out = {}
        if self.astrometry:
            plx_true = np.asarray(table["parallax_true"], dtype=np.float64)
            if np.any(plx_true < 0):
                raise ValueError("GaiaErrorModel: column 'parallax_true' has negative values (true parallaxes are "
                                 "1/distance > 0)")
            pos = (table["ra"], table["dec"]) if self.ecliptic_factors else (None, None)
            plx, pa, pd = astrometric_uncertainties(table["phot_g_mean_mag_true"], self.release, *pos)
            out.update(parallax_error=plx, pmra_error=pa, pmdec_error=pd)
        for b in self.photometry:
            col = _PHOT_COLS[b]
            out[f"{col}_error"] = magnitude_uncertainty(b, table[f"{col}_true"], self.release)
        if self.radial_velocity:
            out["radial_velocity_error"] = radial_velocity_uncertainty(table["grvs_mag_true"], table["teff"],
                                                                       table["logg"], self.release)
        return out

    def apply(self, table: StarTable, rng=None) -> StarTable:
        """Add the ``*_error`` columns and the observed ``parallax, pmra, pmdec, phot_*_mean_mag,
        radial_velocity`` (true + sigma N(0, 1); NaN where sigma is NaN). Normals are drawn column by column in the
        order parallax, pmra, pmdec, G, BP, RP, radial_velocity, one per star with a finite sigma, so a given
        ``rng`` state gives reproducible catalogues.

        Raises
        ------
        ValueError
            As :meth:`uncertainties`.
        """
        rng = np.random.default_rng(rng)
        sig = self.uncertainties(table)
        pairs = [("parallax_error", "parallax_true", "parallax"), ("pmra_error", "pmra_true", "pmra"),
                 ("pmdec_error", "pmdec_true", "pmdec")]
        pairs += [(f"{_PHOT_COLS[b]}_error", f"{_PHOT_COLS[b]}_true", _PHOT_COLS[b]) for b in ("g", "bp", "rp")]
        pairs += [("radial_velocity_error", "radial_velocity_true", "radial_velocity")]
        _scatter(table, sig, pairs, rng)
        for k, s in sig.items():
            nbad = int(np.count_nonzero(np.isnan(s)))
            if nbad:
                log.debug("GaiaErrorModel(%s): %d stars without %s (outside the model range or NaN input)",
                          self.release, nbad, k)
        _record(table, self.meta())
        return table

    def meta(self) -> dict:
        return {"name": self.name, "release": self.release, "reference": _GAIA_REF,
                "astrometry": self.astrometry, "photometry": list(self.photometry),
                "radial_velocity": self.radial_velocity, "ecliptic_factors": self.ecliptic_factors,
                "errors": "independent Gaussian; NaN outside the model ranges"}

    def __repr__(self) -> str:
        return (f"GaiaErrorModel({self.release!r}, astrometry={self.astrometry}, photometry={self.photometry}, "
                f"radial_velocity={self.radial_velocity})")


_APOGEE_FILE = "observed/bv24_apogee_gaia/gaia_errors.csv"


class ApogeeErrorModel:
    """APOGEE DR17 x Gaia DR3 uncertainties per 1-kpc bin of true distance, as used by Binney & Vasiliev 2024.

    Parameters
    ----------
    table_path : path, optional
        The ``gaia_errors.csv`` table; default: located with :func:`mocksky.data.find` as
        ``observed/bv24_apogee_gaia/gaia_errors.csv`` (not shipped as package data: GPL-3.0 origin).
    proper_motions, radial_velocity, abundances : bool
        Which measurements to scatter (distance_error is always written).
    distance_error_cut : float or None
        The sample's cut on the distance uncertainty [kpc] (BV24: 0.75) that the table's rows are conditioned on:
        its ``Es_kpc`` is the mean uncertainty of the stars that *passed* the cut, so giving every mock star that
        mean would let every distant star pass. With a cut, each star's ``distance_error`` is drawn from a
        log-normal fractional error, ln(sigma_d / d) ~ N(mu0 + mu1 ln d, (exp(s0 + s1 ln d))^2), whose four
        parameters are fitted (least squares, rows weighted by sqrt(N)) so that the mean of the draws below the
        cut matches ``Es_kpc`` in every row; a ``distance_error < cut`` selection cut then removes distant stars as
        the real sample's cut did (completeness ~96 % at 4.5 kpc, ~50 % at 8.5 kpc). None: every star gets its
        row's mean (the table read literally; the cut then removes nobody).

    Attributes
    ----------
    fractional_error_params : tuple of float or None
        (mu0, mu1, s0, s1) of the fitted log-normal (None without a cut).

    Raises
    ------
    mocksky.data.DataNotFoundError
        If the table is not found.
    ValueError
        Malformed table, or a non-positive cut.
    """

    name = "apogee_bv24"
    _COLS = {"distance_error": "Es_kpc", "pmra_error": "Epmra_masyr", "pmdec_error": "Epmdec_masyr",
             "radial_velocity_error": "EVlos_kms", "feh_error": "EFeH_dex", "alpha_fe_error": "EMgFe_dex"}

    def __init__(self, table_path: Optional[Union[str, Path]] = None, proper_motions: bool = True,
                 radial_velocity: bool = True, abundances: bool = True, distance_error_cut: Optional[float] = 0.75):
        path = Path(table_path) if table_path is not None else data.find(
            _APOGEE_FILE, hint="It is derived from AgamaChemo (GPL-3.0) and not shipped: copy shared/data/"
                               "observed/bv24_apogee_gaia/gaia_errors.csv into a MOCKSKY_DATA directory.")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        hi = np.array([float(r["s_hi_kpc"]) for r in rows])
        if not (np.all(np.diff(hi) > 0) and np.isinf(hi[-1])):
            raise ValueError(f"{path}: distance bins must be increasing and end with an open (inf) bin")
        self.path = str(path)
        self.bin_hi = hi
        self.tables = {col: np.array([float(r[src]) for r in rows]) for col, src in self._COLS.items()}
        self.counts = np.array([float(r["N"]) for r in rows]) if "N" in rows[0] else np.ones(len(rows))
        if distance_error_cut is not None and not float(distance_error_cut) > 0:
            raise ValueError(f"ApogeeErrorModel: distance_error_cut must be > 0 kpc or None, got {distance_error_cut}")
        self.distance_error_cut = None if distance_error_cut is None else float(distance_error_cut)
        self.fractional_error_params = (None if self.distance_error_cut is None
                                        else _fit_fractional_errors(self.bin_centres(), self.tables["distance_error"],
                                                                    self.counts, self.distance_error_cut))
        self.proper_motions = bool(proper_motions)
        self.radial_velocity = bool(radial_velocity)
        self.abundances = bool(abundances)

    def bin_centres(self) -> np.ndarray:
        """Distance of each row [kpc]: its bin centre; the open last bin (> s_lo) at s_lo + 2 kpc."""
        lo = np.r_[0.0, self.bin_hi[:-1]]
        return np.where(np.isfinite(self.bin_hi), 0.5 * (lo + self.bin_hi), lo + 2.0)

    def distance_error_survivor_mean(self, d) -> np.ndarray:
        """Mean drawn distance uncertainty of stars at true distance d [kpc] that pass the cut [kpc] (the quantity
        the table's ``Es_kpc`` lists), and the fraction that passes: ``(mean, completeness)``.

        Raises
        ------
        ValueError
            Without a cut.
        """
        if self.fractional_error_params is None:
            raise ValueError("ApogeeErrorModel: no distance_error_cut, so no fitted fractional-error model")
        return _survivor_mean(np.asarray(d, dtype=np.float64), self.fractional_error_params, self.distance_error_cut)

    def draw_distance_errors(self, d, rng) -> np.ndarray:
        """Per-star distance uncertainties [kpc] at true distances d [kpc] from the fitted log-normal (one normal per
        star with a finite d > 0, in order); the table's row mean where there is no cut. NaN for non-finite d."""
        d = np.asarray(d, dtype=np.float64)
        if self.fractional_error_params is None:
            return self._row_values("distance_error", d)
        mu0, mu1, s0, s1 = self.fractional_error_params
        ok = np.isfinite(d) & (d > 0)
        out = np.full(d.shape, np.nan)
        out[np.isfinite(d) & (d == 0)] = 0.0
        dd = d[ok]
        ln_d = np.log(dd)
        out[ok] = dd * np.exp(mu0 + mu1 * ln_d + np.exp(s0 + s1 * ln_d) * rng.standard_normal(dd.size))
        return out

    def required_columns(self) -> list:
        """Columns :meth:`uncertainties` / :meth:`apply` read, given the enabled measurements."""
        cols = ["distance"]
        if self.proper_motions:
            cols += ["pmra_true", "pmdec_true"]
        if self.radial_velocity:
            cols += ["radial_velocity_true"]
        if self.abundances:
            cols += ["feh", "alpha_fe"]
        return cols

    def uncertainties(self, table: StarTable) -> Dict[str, np.ndarray]:
        """The table's bin-mean uncertainties at each star's true distance (bin (k, k+1] kpc; d = 0 in the first
        bin); :meth:`apply` replaces the distance uncertainty by a draw when there is a cut.

        Raises
        ------
        ValueError
            Missing columns or negative distances.
        """
        _need(table, self.required_columns(), "ApogeeErrorModel")
        d = np.asarray(table["distance"], dtype=np.float64)
        if np.any(d < 0):
            raise ValueError("ApogeeErrorModel: column 'distance' has negative values")
        cols = ["distance_error"]
        if self.proper_motions:
            cols += ["pmra_error", "pmdec_error"]
        if self.radial_velocity:
            cols += ["radial_velocity_error"]
        if self.abundances:
            cols += ["feh_error", "alpha_fe_error"]
        return {c: self._row_values(c, d) for c in cols}

    def _row_values(self, column: str, d: np.ndarray) -> np.ndarray:
        """The table's ``column`` in each distance's row (bin (k, k+1] kpc, d = 0 in the first); NaN for NaN d."""
        ok = np.isfinite(d)
        k = np.searchsorted(self.bin_hi, np.where(ok, d, 0.0), side="left")
        return np.where(ok, self.tables[column][k], np.nan)

    def apply(self, table: StarTable, rng=None) -> StarTable:
        """Write the uncertainties and the observed ``pmra, pmdec, radial_velocity, feh_obs, alpha_fe_obs,
        distance_obs`` (with a cut, the distance uncertainties are drawn first (:meth:`draw_distance_errors`); then
        normals in that order, one per star with a finite distance).

        Raises
        ------
        ValueError
            As :meth:`uncertainties`.
        """
        rng = np.random.default_rng(rng)
        sig = self.uncertainties(table)
        if self.distance_error_cut is not None:
            sig["distance_error"] = self.draw_distance_errors(table["distance"], rng)
        table["distance_error"] = sig["distance_error"]
        _scatter(table, sig, [("pmra_error", "pmra_true", "pmra"), ("pmdec_error", "pmdec_true", "pmdec"),
                              ("radial_velocity_error", "radial_velocity_true", "radial_velocity"),
                              ("feh_error", "feh", "feh_obs"), ("alpha_fe_error", "alpha_fe", "alpha_fe_obs")], rng)
        # the measured (StarHorse-like) distance: Gaussian about the true one, drawn last so that the draws of the
        # other measurements do not depend on it
        _scatter(table, sig, [("distance_error", "distance", "distance_obs")], rng)
        _record(table, self.meta())
        return table

    def meta(self) -> dict:
        return {"name": self.name, "reference": "Binney & Vasiliev 2024, MNRAS 527, 1915 (AgamaChemo Gaia_errors): "
                                                "APOGEE DR17 x Gaia DR3 x StarHorse mean uncertainties per 1-kpc bin",
                "table": self.path, "proper_motions": self.proper_motions, "radial_velocity": self.radial_velocity,
                "abundances": self.abundances,
                "errors": "independent Gaussian (distance too); alpha_fe error = [Mg/Fe] error",
                "distance_error_cut_kpc": self.distance_error_cut,
                "distance_error_model": (None if self.fractional_error_params is None else
                                         "ln(sigma_d/d) ~ N(mu0 + mu1 ln d, exp(s0 + s1 ln d)^2), (mu0, mu1, s0, s1) = "
                                         + json.dumps([round(float(x), 6) for x in self.fractional_error_params])
                                         + ", fitted to the table's means below the cut")}

    def __repr__(self) -> str:
        return f"ApogeeErrorModel({self.path!r})"


def _survivor_mean(d: np.ndarray, params, cut: float):
    """E[sigma | sigma < cut] and P(sigma < cut) for sigma = d f, ln f ~ N(mu0 + mu1 ln d, exp(s0 + s1 ln d)^2)."""
    from scipy.special import ndtr

    mu0, mu1, s0, s1 = params
    ln_d = np.log(d)
    mu, sg = mu0 + mu1 * ln_d, np.exp(s0 + s1 * ln_d)
    a = (np.log(cut / d) - mu) / sg
    p = ndtr(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = d * np.exp(mu + 0.5 * sg * sg) * ndtr(a - sg) / p
    return np.where(p > 0, mean, np.nan), p


def _fit_fractional_errors(d: np.ndarray, es: np.ndarray, n: np.ndarray, cut: float) -> tuple:
    """(mu0, mu1, s0, s1) with the survivors' mean uncertainty matching the table rows (see ApogeeErrorModel)."""
    from scipy.optimize import least_squares

    w = np.sqrt(np.maximum(n, 1.0))

    def resid(p):
        m, _ = _survivor_mean(d, p, cut)
        return np.where(np.isfinite(m), w * (m - es) / es, 1e3)

    f0 = float(np.median(es[d < 4] / d[d < 4])) if np.any(d < 4) else 0.08
    r = least_squares(resid, [np.log(f0), 0.0, np.log(0.3), 0.0], method="lm")
    if not r.success:
        raise ValueError(f"ApogeeErrorModel: fitting the fractional distance errors failed ({r.message})")
    return tuple(float(x) for x in r.x)


class ExactMeasurements:
    """Observed = true, for measurements mocksky has no error model for (by default G_RVS and 2MASS photometry).

    Copies ``<col>_true`` into ``<col>`` for each column present, so that selection functions reading observed
    values (e.g. APOGEE's ``h_m``, Gaia RVS's ``grvs_mag``) can run; no ``*_error`` column is written. A documented
    stop-gap: mocksky ships no data for G_RVS (Sartoretti et al. 2023) or 2MASS PSC photometric uncertainties.

    Parameters
    ----------
    columns : sequence of str
        Observed column names (default ``grvs_mag, j_m, h_m, k_m``).
    strict : bool
        Raise if a ``<col>_true`` column is missing (default False: skip it).
    """

    name = "exact"

    def __init__(self, columns: Sequence[str] = ("grvs_mag", "j_m", "h_m", "k_m"), strict: bool = False):
        self.columns = tuple(columns)
        self.strict = bool(strict)

    def uncertainties(self, table: StarTable) -> Dict[str, np.ndarray]:
        """No uncertainties (an empty dict); with ``strict`` raises ValueError for missing true columns."""
        if self.strict:
            _need(table, [f"{c}_true" for c in self.columns], "ExactMeasurements")
        return {}

    def apply(self, table: StarTable, rng=None) -> StarTable:
        """Copy ``<col>_true`` to ``<col>`` for the configured columns present (``rng`` is not used)."""
        self.uncertainties(table)
        for c in self.columns:
            if f"{c}_true" in table:
                table[c] = np.array(table[f"{c}_true"], dtype=np.float64)
        _record(table, self.meta())
        return table

    def meta(self) -> dict:
        return {"name": self.name, "columns": list(self.columns), "reference": "no error model: observed = true"}

    def __repr__(self) -> str:
        return f"ExactMeasurements({self.columns})"


_BUILTIN = {
    "gaia_dr3": lambda **kw: GaiaErrorModel("dr3", **kw),
    "gaia_dr4": lambda **kw: GaiaErrorModel("dr4", **kw),
    "gaia_dr5": lambda **kw: GaiaErrorModel("dr5", **kw),
    "apogee_bv24": lambda **kw: ApogeeErrorModel(**kw),
    "exact": lambda **kw: ExactMeasurements(**kw),
}


def available_error_models():
    """Names accepted by :func:`error_model`."""
    return tuple(_BUILTIN)


def error_model(name: Union[str, ErrorModel], **kwargs) -> ErrorModel:
    """A built-in error model by name (``"gaia_dr3"``, ``"gaia_dr4"``, ``"gaia_dr5"``, ``"apogee_bv24"``, ``"exact"``),
    constructed with ``kwargs``; an ErrorModel instance is returned as is.

    Raises
    ------
    KeyError
        Unknown name (the message lists the allowed names).
    """
    if not isinstance(name, str):
        if isinstance(name, ErrorModel):
            return name
        raise TypeError(f"error_model: expected a name or an ErrorModel, got {type(name)!r}")
    key = name.lower()
    if key not in _BUILTIN:
        raise KeyError(f"unknown error model {name!r}; allowed: {list(_BUILTIN)}")
    return _BUILTIN[key](**kwargs)
