"""APOGEE DR17 (APOGEE-1 + APOGEE-2) targeting selection function, vectorised.

The field/cohort table (``select/apogee_dr17/apogee_sampling_fractions.csv``, from gaiaunlimited 0.3.3) lists
for each of the 495 APOGEE plug-plate fields its centre (GLON, GLAT), radius, and per cohort (short, medium,
long; in colour-binned APOGEE-2 fields separately for blue and red stars) the H range, the (J-Ks)0 range,
the sampling fraction ``fracSampling`` (targeted / candidates) and ``fracAK`` (fraction of candidates with an
A_K estimate). The probability that a star of apparent H, dereddened colour (J-Ks)0 and position is
targeted follows the definition of ``gaiaunlimited.selectionfunctions.apogee.apogee_sf`` (GaiaUnlimited;
Cantat-Gaudin et al. 2023), re-implemented here in numba:

1. 0 unless 5 <= H <= 13.8.
2. The fields containing the star are those with angular separation < RADIUS from the centre (astropy's
   Vincenty formula, in Galactic coordinates), in the lexicographic order of their FIELD names.
3. Per field: in colour-binned fields the blue cohorts apply if (J-Ks)0 < JK0max(short_blue), the red ones
   otherwise. Then (f, a) = (fracSampling, fracAK) of the short cohort if Hmin(short) <= H < Hmax(short);
   of the medium cohort if Hmin(medium) < H < Hmax(medium); of the long cohort if Hmin(long) < H < Hmax(long);
   (0, 0) otherwise (including H < Hmin(short) or H > Hmax(long)).
4. One field: P = f a. Two fields with f1, f2 both non-zero: P = (f1 + f2) - f1 f2 (a1 + a2)/2, capped at 1
   (gaiaunlimited's value exceeds 1 in a few overlaps, e.g. 1.031 for fields 270+75 and 277+76).
   Otherwise P = f a of the first field with non-zero f, and 0 if there is none (where gaiaunlimited raises
   IndexError, e.g. at l = 158.68, b = -11.68, H = 12.33, (J-Ks)0 = 1.09).

gaiaunlimited never applies the cohorts' lower colour limit JK0min (0.5, or 0.3/0.0 in halo fields; 0.8
for red cohorts), although APOGEE targeted only stars with (J-Ks)0 >= JK0min (Zasowski et al. 2013, 2017).
With ``jk0_limits=True`` (the default of :class:`ApogeeDR17` and of ``selection/apogee_dr17.toml``) a field
contributes (0, 0) unless JK0min <= (J-Ks)0 <= JK0max of the chosen cohort; ``jk0_limits=False`` reproduces
gaiaunlimited exactly.

References: Zasowski et al. 2013 AJ 146, 81; Zasowski et al. 2017 AJ 154, 198; Beaton et al. 2021 AJ 162,
302; Santana et al. 2021 AJ 162, 303; Abdurro'uf et al. 2022 ApJS 259, 35 (DR17).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import numba
import numpy as np

from .. import data as _data
from .base import SelectionFunction, register

__all__ = ["ApogeeFields", "load_apogee_fields", "apogee_dr17_probability", "apogee_dr17_footprint", "ApogeeDR17",
           "APOGEE_TABLE"]

APOGEE_TABLE = "select/apogee_dr17/apogee_sampling_fractions.csv"
H_MIN, H_MAX = 5.0, 13.8  # no APOGEE target outside (gaiaunlimited's first test)
_COHORTS_PLAIN = ("short", "medium", "long")
_COHORTS_BINNED = ("short_blue", "short_red", "medium_blue", "medium_red", "long_blue", "long_red")
_CELL = 0.25  # deg, size of the (l, b) lookup grid cells


@dataclass(frozen=True)
class ApogeeFields:
    """The APOGEE field/cohort table as arrays, fields in lexicographic FIELD order.

    Arrays of shape (nfield,) : ``l``, ``b`` (centre [deg], Galactic), ``radius`` [deg], ``binned`` (bool),
    ``jk_split`` (blue/red boundary of (J-Ks)0, +inf if not binned). Arrays of shape (nfield, 2, 3),
    indexed [field, colour variant (0 blue, 1 red; identical if not binned), cohort (short, medium, long)]:
    ``hmin``, ``hmax``, ``jkmin``, ``jkmax``, ``frac`` (fracSampling), ``ak`` (fracAK). ``names`` are the
    FIELD names, ``source`` the file read.
    """

    names: Tuple[str, ...]
    l: np.ndarray
    b: np.ndarray
    radius: np.ndarray
    binned: np.ndarray
    jk_split: np.ndarray
    hmin: np.ndarray
    hmax: np.ndarray
    jkmin: np.ndarray
    jkmax: np.ndarray
    frac: np.ndarray
    ak: np.ndarray
    source: str


def _resolve(path: str) -> Path:
    p = Path(path)
    if p.is_absolute():
        if not p.is_file():
            raise _data.DataNotFoundError(f"APOGEE field table {p} not found")
        return p
    return _data.find(path, hint="Run scripts/build_select_data.py.")


@lru_cache(maxsize=4)
def load_apogee_fields(table: str = APOGEE_TABLE) -> ApogeeFields:
    """Read and validate the APOGEE field/cohort table.

    Parameters
    ----------
    table : str
        Data path (resolved by :func:`mocksky.data.find`) or absolute path of the CSV.

    Returns
    -------
    ApogeeFields

    Raises
    ------
    mocksky.data.DataNotFoundError
        If the file is not found.
    ValueError
        If a column is missing or a field's cohorts are not (short, medium, long) or the six colour-binned
        cohorts in the order short_blue, short_red, medium_blue, medium_red, long_blue, long_red.
    """
    path = _resolve(table)
    need = ("FIELD", "RADIUS", "GLON", "GLAT", "cohort", "Hmin", "Hmax", "JK0min", "JK0max", "fracSampling", "fracAK")
    groups = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
        for row in reader:
            groups.setdefault(row["FIELD"], []).append(row)
    names = tuple(sorted(groups))
    nf = len(names)
    l, b, radius = np.empty(nf), np.empty(nf), np.empty(nf)
    binned = np.zeros(nf, dtype=np.bool_)
    jk_split = np.full(nf, np.inf)
    arrs = {k: np.empty((nf, 2, 3)) for k in ("hmin", "hmax", "jkmin", "jkmax", "frac", "ak")}
    cols = {"hmin": "Hmin", "hmax": "Hmax", "jkmin": "JK0min", "jkmax": "JK0max", "frac": "fracSampling", "ak": "fracAK"}
    for i, name in enumerate(names):
        rows = groups[name]
        cohorts = tuple(r["cohort"] for r in rows)
        first = rows[0]
        l[i], b[i], radius[i] = float(first["GLON"]), float(first["GLAT"]), float(first["RADIUS"])
        if cohorts == _COHORTS_PLAIN:
            variants = (rows, rows)
        elif cohorts == _COHORTS_BINNED:
            binned[i] = True
            jk_split[i] = float(first["JK0max"])
            variants = (rows[0::2], rows[1::2])
        else:
            raise ValueError(f"{path}: field {name!r} has cohorts {list(cohorts)}; expected {list(_COHORTS_PLAIN)} "
                             f"or {list(_COHORTS_BINNED)}")
        for v, vrows in enumerate(variants):
            for k, r in enumerate(vrows):
                for key, col in cols.items():
                    arrs[key][i, v, k] = float(r[col])
    return ApogeeFields(names=names, l=l, b=b, radius=radius, binned=binned, jk_split=jk_split, source=str(path), **arrs)


# ---------------------------------------------------------------------------------------------------------
# (l, b) grid of candidate fields
@numba.njit(cache=True, nogil=True, fastmath=False)
def _gc_dist_deg(l1, b1, l2, b2):
    # haversine great-circle distance [deg] (only used to build the conservative candidate lists)
    d2r = math.pi / 180.0
    sb = math.sin(0.5 * (b2 - b1) * d2r)
    sl = math.sin(0.5 * (l2 - l1) * d2r)
    h = sb * sb + math.cos(b1 * d2r) * math.cos(b2 * d2r) * sl * sl
    return 2.0 * math.asin(math.sqrt(min(1.0, h))) / d2r


@numba.njit(cache=True, nogil=True, fastmath=False)
def _build_grid(fl, fb, frad, cell, nl, nb):
    margin = cell  # >= the largest distance from a cell centre to a point of the cell
    counts = np.zeros(nl * nb + 1, dtype=np.int64)
    for sweep in range(2):
        if sweep == 1:
            for c in range(nl * nb):
                counts[c + 1] += counts[c]
            fill = counts[:-1].copy()
            out = np.empty(counts[nl * nb], dtype=np.int32)
        for f in range(fl.shape[0]):
            reach = frad[f] + margin
            j0 = max(0, int(math.floor((fb[f] - reach + 90.0) / cell)))
            j1 = min(nb - 1, int(math.floor((fb[f] + reach + 90.0) / cell)))
            for j in range(j0, j1 + 1):
                bc = -90.0 + (j + 0.5) * cell
                for k in range(nl):
                    lc = (k + 0.5) * cell
                    if _gc_dist_deg(fl[f], fb[f], lc, bc) <= reach:
                        c = j * nl + k
                        if sweep == 0:
                            counts[c + 1] += 1
                        else:
                            out[fill[c]] = f
                            fill[c] += 1
    return counts, out


@lru_cache(maxsize=4)
def _grid(table: str):
    fields = load_apogee_fields(table)
    nl, nb = int(round(360.0 / _CELL)), int(round(180.0 / _CELL))
    start, idx = _build_grid(fields.l, fields.b, fields.radius, _CELL, nl, nb)
    return fields, start, idx, nl, nb


# ---------------------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, fastmath=False)
def _field_fa(f, h, c, jk_split, hmin, hmax, jkmin, jkmax, frac, ak, jk_limits):
    v = 0 if c < jk_split[f] else 1
    if h < hmin[f, v, 0] or h > hmax[f, v, 2]:
        return 0.0, 0.0
    if h < hmax[f, v, 0]:
        k = 0
    elif h < hmax[f, v, 1] and h > hmin[f, v, 1]:
        k = 1
    elif h < hmax[f, v, 2] and h > hmin[f, v, 2]:
        k = 2
    else:
        return 0.0, 0.0
    if jk_limits and not (c >= jkmin[f, v, k] and c <= jkmax[f, v, k]):
        return 0.0, 0.0
    return frac[f, v, k], ak[f, v, k]


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _apogee_kernel(l, b, h, jk, fl, fb, frad, jk_split, hmin, hmax, jkmin, jkmax, frac, ak,
                   start, idx, cell, nl, nb, jk_limits, out):
    d2r = math.pi / 180.0
    r2d = 180.0 / math.pi
    for i in numba.prange(l.shape[0]):
        hi, li, bi, ci = h[i], l[i], b[i], jk[i]
        out[i] = 0.0
        if not (math.isfinite(hi) and math.isfinite(li) and math.isfinite(bi) and math.isfinite(ci)):
            continue
        if hi < H_MIN or hi > H_MAX:
            continue
        lw = li % 360.0
        kk = min(nl - 1, int(lw / cell))
        jj = min(nb - 1, max(0, int((bi + 90.0) / cell)))
        c = jj * nl + kk
        slat1 = math.sin(bi * d2r)
        clat1 = math.cos(bi * d2r)
        nfound = 0
        f1 = a1 = f2 = a2 = 0.0
        fnz = anz = 0.0
        have_nz = False
        for q in range(start[c], start[c + 1]):
            f = idx[q]
            # Vincenty angular separation (as astropy's angular_separation), star = 1, field centre = 2
            dlon = (fl[f] - li) * d2r
            sdlon = math.sin(dlon)
            cdlon = math.cos(dlon)
            slat2 = math.sin(fb[f] * d2r)
            clat2 = math.cos(fb[f] * d2r)
            num1 = clat2 * sdlon
            num2 = clat1 * slat2 - slat1 * clat2 * cdlon
            den = slat1 * slat2 + clat1 * clat2 * cdlon
            sep = math.atan2(math.hypot(num1, num2), den) * r2d
            if not sep < frad[f]:
                continue
            fa, aa = _field_fa(f, hi, ci, jk_split, hmin, hmax, jkmin, jkmax, frac, ak, jk_limits)
            nfound += 1
            if nfound == 1:
                f1, a1 = fa, aa
            elif nfound == 2:
                f2, a2 = fa, aa
            if fa != 0.0 and not have_nz:
                fnz, anz = fa, aa
                have_nz = True
        if nfound == 0:
            continue
        if nfound == 1:
            out[i] = f1 * a1
        elif nfound == 2 and f1 != 0.0 and f2 != 0.0:
            out[i] = min(1.0, (f1 + f2) - (f1 * f2) * ((a1 + a2) / 2.0))
        elif have_nz:
            out[i] = fnz * anz


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _footprint_kernel(l, b, fl, fb, frad, fa_max, f_max, start, idx, cell, nl, nb, out):
    """Upper bound of the targeting probability at (l, b) over H and colour (see :func:`apogee_dr17_footprint`)."""
    d2r = math.pi / 180.0
    r2d = 180.0 / math.pi
    for i in numba.prange(l.shape[0]):
        li, bi = l[i], b[i]
        out[i] = 0.0
        if not (math.isfinite(li) and math.isfinite(bi)):
            continue
        kk = min(nl - 1, int((li % 360.0) / cell))
        jj = min(nb - 1, max(0, int((bi + 90.0) / cell)))
        c = jj * nl + kk
        slat1 = math.sin(bi * d2r)
        clat1 = math.cos(bi * d2r)
        nfound = 0
        best = 0.0
        fsum = 0.0
        for q in range(start[c], start[c + 1]):
            f = idx[q]
            dlon = (fl[f] - li) * d2r
            slat2 = math.sin(fb[f] * d2r)
            clat2 = math.cos(fb[f] * d2r)
            num1 = clat2 * math.sin(dlon)
            num2 = clat1 * slat2 - slat1 * clat2 * math.cos(dlon)
            den = slat1 * slat2 + clat1 * clat2 * math.cos(dlon)
            if math.atan2(math.hypot(num1, num2), den) * r2d < frad[f]:
                nfound += 1
                best = max(best, fa_max[f])
                if nfound <= 2:
                    fsum += f_max[f]
        if nfound == 2:
            best = max(best, min(1.0, fsum))
        out[i] = best


def apogee_dr17_footprint(l, b, table: str = APOGEE_TABLE) -> np.ndarray:
    """Upper bound of the APOGEE DR17 targeting probability at each sky position, over H and (J-Ks)0.

    0 outside the fields; in one field (or where the first field with a non-zero fraction decides, three or more
    fields) the largest fracSampling x fracAK of its cohorts; in two overlapping fields min(1, f1_max + f2_max)
    (the two-field rule of :func:`apogee_dr17_probability` never exceeds f1 + f2).

    Parameters
    ----------
    l, b : array_like, shape (n,)
        Galactic longitude and latitude [deg].
    table : str
        Field/cohort table (data path or absolute path).

    Returns
    -------
    ndarray of float64, shape (n,)
        Values in [0, 1].
    """
    fields, start, idx, nl, nb = _grid(table)
    la = np.ascontiguousarray(np.asarray(l, dtype=np.float64).ravel())
    ba = np.ascontiguousarray(np.asarray(b, dtype=np.float64).ravel())
    if la.shape != ba.shape:
        raise ValueError(f"l and b differ in length: {la.shape[0]}, {ba.shape[0]}")
    fa_max = np.ascontiguousarray(np.nan_to_num(fields.frac * fields.ak).reshape(len(fields.l), -1).max(axis=1))
    f_max = np.ascontiguousarray(np.nan_to_num(fields.frac).reshape(len(fields.l), -1).max(axis=1))
    out = np.empty(la.shape[0])
    _footprint_kernel(la, ba, fields.l, fields.b, fields.radius, fa_max, f_max, start, idx, _CELL, nl, nb, out)
    return np.clip(out, 0.0, 1.0).reshape(np.shape(np.asarray(l)))


def apogee_dr17_probability(l, b, H, jk0, jk0_limits: bool = True, table: str = APOGEE_TABLE) -> np.ndarray:
    """APOGEE DR17 targeting probability (see the module notes for the definition).

    Parameters
    ----------
    l, b : array_like, shape (n,)
        Galactic longitude and latitude [deg].
    H : array_like, shape (n,)
        Apparent 2MASS H [mag].
    jk0 : array_like, shape (n,)
        Dereddened colour (J - Ks)0 [mag].
    jk0_limits : bool
        Apply each cohort's [JK0min, JK0max] colour range (True) or only the blue/red split as
        gaiaunlimited's ``apogee_sf`` does (False, agrees with it exactly).
    table : str
        Field/cohort table (data path or absolute path).

    Returns
    -------
    ndarray of float64, shape (n,)
        Probabilities in [0, 1]; 0 where any input is not finite.
    """
    fields, start, idx, nl, nb = _grid(table)
    arrs = [np.ascontiguousarray(np.asarray(x, dtype=np.float64).ravel()) for x in (l, b, H, jk0)]
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise ValueError(f"l, b, H, jk0 differ in length: {[a.shape[0] for a in arrs]}")
    out = np.empty(n)
    _apogee_kernel(*arrs, fields.l, fields.b, fields.radius, fields.jk_split, fields.hmin, fields.hmax,
                   fields.jkmin, fields.jkmax, fields.frac, fields.ak, start, idx, _CELL, nl, nb,
                   bool(jk0_limits), out)
    return out


@register
class ApogeeDR17(SelectionFunction):
    """APOGEE DR17 targeting probability of each star (see the module notes).

    (J-Ks)0 = (j_m - a_j) - (k_m - a_ks): observed 2MASS colour dereddened with the star's true extinction
    (a stand-in for APOGEE's RJCE dereddening); H is the observed ``h_m``.

    Parameters
    ----------
    table : str
        Field/cohort table (data path resolved by :func:`mocksky.data.find`, or absolute path).
    jk0_limits : bool
        Apply the cohorts' (J-Ks)0 ranges (default True; False reproduces gaiaunlimited's ``apogee_sf``).
    h_column, j_column, k_column : str
        Apparent H, J, Ks columns.
    a_j_column, a_k_column : str
        Extinction columns used to deredden J - Ks; both ``""`` if J and Ks are already dereddened.

    Notes
    -----
    Required columns: ``l``, ``b`` and the magnitude/extinction columns above.
    """

    type_name = "apogee_dr17"

    def __init__(self, table: str = APOGEE_TABLE, jk0_limits: bool = True, h_column: str = "h_m",
                 j_column: str = "j_m", k_column: str = "k_m", a_j_column: str = "a_j", a_k_column: str = "a_ks"):
        if not isinstance(jk0_limits, bool):
            raise ValueError(f"jk0_limits must be true or false, got {jk0_limits!r}")
        if bool(a_j_column) != bool(a_k_column):
            raise ValueError("give both a_j_column and a_k_column, or neither (\"\")")
        self.table = table
        self.jk0_limits = jk0_limits
        self.h_column, self.j_column, self.k_column = h_column, j_column, k_column
        self.a_j_column, self.a_k_column = a_j_column, a_k_column
        self.fields = _grid(table)[0]  # load and validate now: errors at construction

    @property
    def required_columns(self):
        cols = ("l", "b", self.h_column, self.j_column, self.k_column)
        return cols + ((self.a_j_column, self.a_k_column) if self.a_j_column else ())

    def jk0(self, table) -> np.ndarray:
        """Dereddened (J - Ks)0 [mag] of the stars of ``table``."""
        cols = self._gather(table)
        return self._jk0(cols)

    def _jk0(self, cols):
        jk = cols[self.j_column] - cols[self.k_column]
        if self.a_j_column:
            jk = jk - (cols[self.a_j_column] - cols[self.a_k_column])
        return jk

    def footprint(self, l, b) -> np.ndarray:
        """Largest targeting probability at each position over H and colour (:func:`apogee_dr17_footprint`)."""
        return apogee_dr17_footprint(l, b, table=self.table)

    def _probability(self, cols, n):
        return apogee_dr17_probability(cols["l"], cols["b"], cols[self.h_column], self._jk0(cols),
                                       jk0_limits=self.jk0_limits, table=self.table)
