"""Band extinctions A_X from A0 and Teff (dustapprox polynomial models) and apparent magnitudes.

The models are those of dustapprox (Fouesneau et al. 2022, A&A 662, A125, Sect. 3): for each passband X the ratio
``k_X = A_X / A0`` is a full cubic polynomial in ``(A0, R0, teffnorm = Teff / 5040 K)``,

    k_X = sum_i c_i A0^p_i0 R0^p_i1 teffnorm^p_i2        (20 monomials of total degree <= 3),

fitted to synthetic photometry of Kurucz spectra reddened by an extinction law. Shipped: Gaia DR3 G, BP, RP and
2MASS J, H, Ks for the laws Fitzpatrick 1999 (``"F99"``, default, as used for Gaia DR3 Apsis) and Gordon et al. 2023
(``"G23"``); G_RVS has no dustapprox model, so mocksky ships one of the same form fitted to the GeDR3mock RVS passband
(``scripts/build_observe_data.py``, ``fit_grvs``; black-body SEDs, fit rms ~3e-4 in k). Columns written:
``a_g, a_bp, a_rp, a_grvs, a_j, a_h, a_ks``.

Validity ranges of the fits (dustapprox metadata): Teff 3500 - 50000 K, A0 0.01 - 20 mag, R0 2.3 - 5.1 (Kurucz
logg 0 - 5, [Fe/H] -4 - 0.5). Outside them mocksky **clips** the inputs of the polynomial - Teff to [3500, 50000] K
and A0 to [0.01, 20] mag - and multiplies k by the actual A0: ``A_X = A0 * k_X(clip(A0), R0, clip(Teff))``. So cool
M dwarfs (Teff < 3500 K) get the 3500 K coefficients, A0 -> 0 gives A_X -> 0 and A0 > 20 scales linearly. R0 outside
[2.3, 5.1] raises ValueError. NaN A0 or Teff gives NaN.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Dict, Iterable, Optional, Sequence

import numba
import numpy as np

from .. import data
from ..catalogue.schema import StarTable

__all__ = ["ExtinctionModel", "ExtinctionFloor", "BANDS", "EXTINCTION_COLUMNS", "MAGNITUDE_COLUMNS", "add_band_extinctions",
           "add_apparent_magnitudes", "distance_modulus"]

#: mocksky band names, in column order.
BANDS = ("g", "bp", "rp", "grvs", "j", "h", "ks")
#: band -> extinction column
EXTINCTION_COLUMNS = {b: f"a_{b}" for b in BANDS}
#: band -> (absolute magnitude column, true apparent magnitude column)
MAGNITUDE_COLUMNS = {
    "g": ("abs_g", "phot_g_mean_mag_true"), "bp": ("abs_bp", "phot_bp_mean_mag_true"),
    "rp": ("abs_rp", "phot_rp_mean_mag_true"), "grvs": ("abs_grvs", "grvs_mag_true"),
    "j": ("abs_j", "j_m_true"), "h": ("abs_h", "h_m_true"), "ks": ("abs_ks", "k_m_true"),
}

_LAW_REFERENCES = {
    "F99": "Fitzpatrick 1999, PASP 111, 63",
    "G23": "Gordon et al. 2023, ApJ 950, 86",
}


@lru_cache(maxsize=1)
def _load_polynomials() -> dict:
    path = data.find("observe/extinction_polynomials.json",
                     hint="It is mocksky package data; rebuild it with scripts/build_observe_data.py.")
    return json.loads(path.read_text())


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _poly_kernel(a0, teff, a0_lo, a0_hi, t_lo, t_hi, tnorm, C, out):
    """out[j, i] = a0 * sum_{p,q} C[j, p, q] A^p T^q with A, T the clipped A0 and Teff/tnorm (Horner in both)."""
    nb = C.shape[0]
    for i in numba.prange(a0.shape[0]):
        A = a0[i]
        T = teff[i]
        if not (np.isfinite(A) and np.isfinite(T)):
            for j in range(nb):
                out[j, i] = np.nan
            continue
        Ac = min(max(A, a0_lo), a0_hi)
        Tc = min(max(T, t_lo), t_hi) / tnorm
        for j in range(nb):
            s = 0.0
            for p in range(3, -1, -1):
                inner = ((C[j, p, 3] * Tc + C[j, p, 2]) * Tc + C[j, p, 1]) * Tc + C[j, p, 0]
                s = s * Ac + inner
            out[j, i] = A * s


class ExtinctionModel:
    """Band extinctions A_X(A0, Teff) from the dustapprox polynomial models at a fixed R0.

    Parameters
    ----------
    law : {"F99", "G23"}
        Extinction law of the model grid (Fitzpatrick 1999 or Gordon et al. 2023).
    R0 : float
        Total-to-selective extinction ratio (default 3.1), within the fit range [2.3, 5.1].

    Attributes
    ----------
    teff_range, a0_range, r0_range : tuple of float
        Validity ranges of the fits; inputs are clipped to the first two (see the module docstring).

    Raises
    ------
    KeyError
        Unknown law (the message lists the allowed laws).
    ValueError
        R0 outside the fit range.
    """

    def __init__(self, law: str = "F99", R0: float = 3.1):
        polys = _load_polynomials()
        laws = polys["laws"]
        key = {k.lower(): k for k in laws}.get(str(law).lower())
        if key is None:
            raise KeyError(f"unknown extinction law {law!r}; allowed: {sorted(laws)}")
        entry = laws[key]
        rng = entry["ranges"]
        self.law = key
        self.teff_range = tuple(rng["teff"])
        self.a0_range = tuple(rng["A0"])
        self.r0_range = tuple(rng["R0"])
        # float32 metadata edges (2.2999999523) - accept the nominal 2.3 / 5.1
        if not (round(self.r0_range[0], 4) <= R0 <= round(self.r0_range[1], 4)):
            raise ValueError(f"ExtinctionModel: R0 = {R0} outside the fit range "
                             f"[{self.r0_range[0]:.2f}, {self.r0_range[1]:.2f}] of law {key}")
        self.R0 = float(R0)
        self.teff_norm = float(polys["teffnorm"])
        bands = entry["bands"]
        powers = np.array(bands[BANDS[0]]["powers"], dtype=np.int64)
        for b in BANDS:
            if np.array(bands[b]["powers"]).tolist() != powers.tolist():
                raise ValueError(f"extinction_polynomials.json: band {b} of law {key} has different monomials")
        self._powers = powers
        self._coeffs = np.array([bands[b]["coeffs"] for b in BANDS], dtype=np.float64)
        # R0 is fixed: fold its powers in, leaving a cubic in (A0, teffnorm) per band, C[band, pA, pT]
        C = np.zeros((len(BANDS), 4, 4))
        for k, (pa, pr, pt) in enumerate(powers):
            C[:, pa, pt] += self._coeffs[:, k] * self.R0 ** pr
        self._C = C
        self._passbands = {b: bands[b]["passband"] for b in BANDS}
        self._files = entry["files"]

    @property
    def bands(self) -> Sequence[str]:
        """Supported band names (``g, bp, rp, grvs, j, h, ks``)."""
        return BANDS

    def extinctions(self, a0, teff, bands: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
        """A_X [mag] for several bands.

        Parameters
        ----------
        a0 : array_like
            A0 [mag], >= 0.
        teff : array_like
            Effective temperature [K]; broadcast with ``a0``.
        bands : iterable of str, optional
            Subset of :data:`BANDS` (default all).

        Returns
        -------
        dict of band -> ndarray (broadcast shape)

        Raises
        ------
        KeyError
            For an unknown band name.
        """
        sel = list(BANDS) if bands is None else [str(b).lower() for b in bands]
        bad = [b for b in sel if b not in BANDS]
        if bad:
            raise KeyError(f"unknown band(s) {bad}; allowed: {list(BANDS)}")
        A, T = np.broadcast_arrays(np.asarray(a0, dtype=np.float64), np.asarray(teff, dtype=np.float64))
        shape = A.shape
        A = np.ascontiguousarray(A).ravel()
        T = np.ascontiguousarray(T).ravel()
        idx = [BANDS.index(b) for b in sel]
        out = np.empty((len(idx), A.size))
        _poly_kernel(A, T, self.a0_range[0], self.a0_range[1], self.teff_range[0], self.teff_range[1],
                     self.teff_norm, np.ascontiguousarray(self._C[idx]), out)
        return {b: out[j].reshape(shape) for j, b in enumerate(sel)}

    def extinction(self, band: str, a0, teff) -> np.ndarray:
        """A_X [mag] in one band (see :meth:`extinctions`)."""
        return self.extinctions(a0, teff, [band])[str(band).lower()]

    def k(self, band: str, a0, teff) -> np.ndarray:
        """The ratio k_X = A_X / A0 at the (clipped) model inputs (A0 > 0)."""
        a0 = np.asarray(a0, dtype=np.float64)
        return self.extinction(band, a0, teff) / a0

    def meta(self) -> dict:
        return {"kind": "dustapprox polynomial k_X(A0, R0, Teff/5040)", "law": self.law,
                "law_reference": _LAW_REFERENCES.get(self.law, ""), "R0": self.R0,
                "reference": "Fouesneau et al. 2022, A&A 662, A125 (dustapprox 0.2.0 oct2025 Kurucz models); "
                             "G_RVS: mocksky fit (scripts/build_observe_data.py)",
                "passbands": dict(self._passbands), "files": list(self._files),
                "teff_range_K": list(self.teff_range), "a0_range_mag": list(self.a0_range),
                "outside_range": "Teff and A0 clipped to the range inside the polynomial; A_X = A0 * k_X"}

    def __repr__(self) -> str:
        return f"ExtinctionModel(law={self.law!r}, R0={self.R0})"


class ExtinctionFloor:
    """Lower bound of a band's extinction along lines of sight, for magnitude-limited sampling.

    ``A_floor(l, b, d) = g(A0(l, b, d)) - margin`` (>= 0), where A0 is the dust map's value and
    ``g(A0) = min over Teff of A_X(A0, Teff)`` (the :class:`ExtinctionModel`'s polynomial, Teff over its fit
    range), made non-decreasing in A0 and tabulated on 241 A0 nodes (0 and 1e-3 ... 20 mag, geometric; beyond
    20 mag A_X is linear in A0, as in the model). Every star whose extinction the same map and model give has
    ``A_X >= A_floor``, so a sampler or :func:`mocksky.populate.populate` that drops stars fainter than the limit
    with ``A_floor`` keeps every star the extincted limit can keep (the ``margin`` covers the interpolation
    between nodes).

    Parameters
    ----------
    band : str
        ``G, BP, RP, GRVS, J, H, Ks`` (case-insensitive; also ``g, bp, ..., ks``).
    dust : str or DustMap
        As in :func:`mocksky.observe.dust_map`.
    model : ExtinctionModel, optional
        Default ``ExtinctionModel("F99", R0=3.1)`` (the default of :func:`mocksky.observe.observe`).
    margin : float
        Subtracted from the bound [mag] (default 0.01).

    Raises
    ------
    KeyError
        Unknown band or dust map (the message lists the allowed names).
    ValueError
        Negative margin.
    """

    def __init__(self, band: str, dust="combined19", model: Optional["ExtinctionModel"] = None,
                 margin: float = 0.01):
        from .dust import dust_map

        key = str(band).lower()
        if key not in BANDS:
            raise KeyError(f"ExtinctionFloor: unknown band {band!r}; allowed: {[b.upper() for b in BANDS]}")
        if not margin >= 0:
            raise ValueError(f"ExtinctionFloor: margin must be >= 0 mag, got {margin}")
        self.band, self.margin = key, float(margin)
        self.dust = dust_map(dust)
        self.model = model if model is not None else ExtinctionModel()
        a0 = np.concatenate([[0.0], np.geomspace(1e-3, self.model.a0_range[1], 240)])
        teff = np.geomspace(self.model.teff_range[0], self.model.teff_range[1], 96)
        ax = self.model.extinction(key, a0[:, None], teff[None, :]).min(axis=1)
        self._a0 = a0
        self._ax = np.minimum.accumulate(ax[::-1])[::-1]   # the largest non-decreasing function below ax
        self._slope = float(self._ax[-1] / a0[-1])

    def from_a0(self, a0) -> np.ndarray:
        """The bound for given A0 values [mag]."""
        a0 = np.asarray(a0, dtype=np.float64)
        a = np.where(a0 > self._a0[-1], a0 * self._slope, np.interp(a0, self._a0, self._ax))
        return np.maximum(a - self.margin, 0.0)

    def __call__(self, l_deg, b_deg, distance_kpc) -> np.ndarray:
        """``A_floor`` [mag] at Galactic (l, b) [deg] and distance [kpc] (broadcast)."""
        return self.from_a0(self.dust.a0(l_deg, b_deg, distance_kpc))

    def __repr__(self) -> str:
        return f"ExtinctionFloor(band={self.band!r}, dust={self.dust!r}, margin={self.margin})"


def add_band_extinctions(table: StarTable, model: Optional[ExtinctionModel] = None,
                         bands: Optional[Iterable[str]] = None) -> StarTable:
    """Add ``a_g, a_bp, a_rp, a_grvs, a_j, a_h, a_ks`` (or the given ``bands``) to a star table, in place.

    Reads ``A0`` (from :func:`mocksky.observe.dust.add_dust`) and ``teff``. Records ``model.meta()`` in
    ``table.meta["extinction"]``.

    Raises
    ------
    ValueError
        If ``A0`` or ``teff`` is missing.
    """
    missing = [c for c in ("A0", "teff") if c not in table]
    if missing:
        raise ValueError(f"add_band_extinctions: the star table lacks column(s) {missing}")
    model = model or ExtinctionModel()
    for b, a in model.extinctions(table["A0"], table["teff"], bands).items():
        table[EXTINCTION_COLUMNS[b]] = a
    table.meta["extinction"] = model.meta()
    return table


def distance_modulus(distance_kpc) -> np.ndarray:
    """5 log10(d / 10 pc) for d in kpc (NaN for d <= 0 or NaN)."""
    d = np.asarray(distance_kpc, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = 5.0 * np.log10(d) + 10.0
    return np.where(d > 0, mu, np.nan)


def add_apparent_magnitudes(table: StarTable, bands: Optional[Iterable[str]] = None) -> StarTable:
    """Add true apparent magnitudes ``m_X = M_X + 5 log10(d / 10 pc) + A_X``, in place.

    For each band with an absolute-magnitude column present (``abs_g`` -> ``phot_g_mean_mag_true``, ``abs_bp`` ->
    ``phot_bp_mean_mag_true``, ``abs_rp``, ``abs_grvs`` -> ``grvs_mag_true``, ``abs_j`` -> ``j_m_true``, ``abs_h``,
    ``abs_ks`` -> ``k_m_true``); without the extinction column ``a_X`` the magnitude is extinction-free.

    Parameters
    ----------
    bands : iterable of str, optional
        Bands to compute; each must then have its ``abs_*`` column. Default: every band whose ``abs_*`` exists.

    Raises
    ------
    ValueError
        If ``distance`` is missing, or a requested band has no absolute magnitude column.
    """
    if "distance" not in table:
        raise ValueError("add_apparent_magnitudes: the star table lacks column 'distance'")
    if bands is None:
        sel = [b for b in BANDS if MAGNITUDE_COLUMNS[b][0] in table]
    else:
        sel = [str(b).lower() for b in bands]
        bad = [b for b in sel if b not in BANDS]
        if bad:
            raise KeyError(f"unknown band(s) {bad}; allowed: {list(BANDS)}")
        missing = [MAGNITUDE_COLUMNS[b][0] for b in sel if MAGNITUDE_COLUMNS[b][0] not in table]
        if missing:
            raise ValueError(f"add_apparent_magnitudes: the star table lacks column(s) {missing}")
    mu = distance_modulus(table["distance"])
    for b in sel:
        absc, appc = MAGNITUDE_COLUMNS[b]
        m = table[absc] + mu
        ext = EXTINCTION_COLUMNS[b]
        if ext in table:
            m = m + table[ext]
        table[appc] = m
    return table
