"""Initial mass functions as normalised piecewise power laws.

An IMF is stored as K contiguous segments [m_k, m_{k+1}] on which xi(m) = c_k m^(-alpha_k), normalised
to unit initial mass: int m xi(m) dm = 1 over [m_lower, m_upper]. Numbers, masses and inverse-CDF
draws are then exact closed forms on each segment, so counting stars, budgeting mass and drawing
masses all use the same function (:mod:`mocksky.populate` relies on this for exact expected counts).

* Kroupa (2001, MNRAS 322, 231, eq. 2): alpha = 0.3 (0.01-0.08 Msun), 1.3 (0.08-0.5), 2.3 (> 0.5),
  continuous at the breaks. This is exact.
* Chabrier (2003, PASP 115, 763, Table 1, single-star disc IMF):
  xi(log m) = 0.158 exp[-(log m - log 0.079)^2 / (2 * 0.69^2)] for m <= 1 Msun and
  xi(log m) = 0.0443 m^-1.3 above (i.e. xi(m) ~ m^-2.3). The log-normal part is represented by
  power-law chords through nodes spaced 0.01 dex in log m (relative error < 3e-5).

The default stellar range is 0.08-100 Msun (the hydrogen-burning limit to the upper end of the
isochrones' use); brown dwarfs are not stars and are excluded from the DF's stellar mass by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _kernels as K

__all__ = ["IMF", "kroupa2001", "chabrier2003", "make_imf", "IMF_KINDS"]

IMF_KINDS = ("kroupa2001", "chabrier2003")


def _seg_number(c, a, m0, m1):
    """int_{m0}^{m1} c m^-a dm."""
    if abs(a - 1.0) < 1e-12:
        return c * np.log(m1 / m0)
    return c * (m1 ** (1 - a) - m0 ** (1 - a)) / (1 - a)


def _seg_mass(c, a, m0, m1):
    """int_{m0}^{m1} c m^(1-a) dm."""
    if abs(a - 2.0) < 1e-12:
        return c * np.log(m1 / m0)
    return c * (m1 ** (2 - a) - m0 ** (2 - a)) / (2 - a)


@dataclass(frozen=True)
class IMF:
    """A piecewise power-law IMF normalised to unit initial mass.

    Parameters
    ----------
    edges : array_like, shape (K+1,)
        Increasing segment edges [Msun]; edges[0] = m_lower, edges[-1] = m_upper.
    alpha : array_like, shape (K,)
        Slopes: xi(m) ~ m^-alpha on each segment.
    coef : array_like, shape (K,)
        Relative coefficients (the IMF is renormalised to unit mass).
    name : str
        Label for metadata.
    reference : str
        Literature reference.

    Raises
    ------
    ValueError
        Non-increasing edges, mismatched lengths, non-positive coefficients or m_lower <= 0.
    """

    edges: np.ndarray
    alpha: np.ndarray
    coef: np.ndarray
    name: str = "custom"
    reference: str = ""

    def __post_init__(self):
        e = np.asarray(self.edges, dtype=np.float64)
        a = np.asarray(self.alpha, dtype=np.float64)
        c = np.asarray(self.coef, dtype=np.float64)
        if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0) or e[0] <= 0:
            raise ValueError(f"IMF edges must be positive and strictly increasing, got {e}")
        if a.shape != (len(e) - 1,) or c.shape != a.shape:
            raise ValueError(f"IMF: alpha and coef need {len(e) - 1} values, got {a.shape} and {c.shape}")
        if np.any(~np.isfinite(c)) or np.any(c <= 0):
            raise ValueError("IMF: coefficients must be positive and finite")
        mass = sum(_seg_mass(ci, ai, e[i], e[i + 1]) for i, (ci, ai) in enumerate(zip(c, a)))
        c = c / mass
        cum = np.zeros(len(e))
        cmass = np.zeros(len(e))
        for i in range(len(a)):
            cum[i + 1] = cum[i] + _seg_number(c[i], a[i], e[i], e[i + 1])
            cmass[i + 1] = cmass[i] + _seg_mass(c[i], a[i], e[i], e[i + 1])
        object.__setattr__(self, "edges", e)
        object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "coef", c)
        object.__setattr__(self, "_cum", cum)
        object.__setattr__(self, "_cmass", cmass)

    # ------------------------------------------------------------------ properties
    @property
    def m_lower(self) -> float:
        """Lowest mass [Msun]."""
        return float(self.edges[0])

    @property
    def m_upper(self) -> float:
        """Highest mass [Msun]."""
        return float(self.edges[-1])

    @property
    def stars_per_mass(self) -> float:
        """Stars formed per Msun of initial mass over the whole range [1/Msun]."""
        return float(self._cum[-1])

    @property
    def mean_mass(self) -> float:
        """Mean initial mass [Msun]."""
        return 1.0 / self.stars_per_mass

    def arrays(self):
        """(edges, alpha, coef, cumulative number, cumulative mass at the edges) for the numba kernels."""
        return self.edges, self.alpha, self.coef, self._cum, self._cmass

    # ------------------------------------------------------------------ functions
    def pdf(self, m) -> np.ndarray:
        """xi(m): stars per unit mass per Msun of initial mass [1/Msun^2] (0 outside the range)."""
        m = np.asarray(m, dtype=np.float64)
        k = np.clip(np.searchsorted(self.edges, m, side="right") - 1, 0, len(self.alpha) - 1)
        out = np.where((m >= self.m_lower) & (m <= self.m_upper), self.coef[k] * m ** (-self.alpha[k]), 0.0)
        return float(out) if out.ndim == 0 else out

    def _apply(self, kernel, m):
        a = np.asarray(m, dtype=np.float64)
        out = kernel(np.ascontiguousarray(a.reshape(-1)), *self.arrays()).reshape(a.shape)
        return float(out) if out.ndim == 0 else out

    def cumulative_number(self, m) -> np.ndarray:
        """Stars per Msun of initial mass with initial mass below m [1/Msun]."""
        return self._apply(K.imf_cumnum_vec, m)

    def number(self, m0, m1) -> np.ndarray:
        """Stars per Msun of initial mass with m0 <= m < m1 [1/Msun] (0 where m1 <= m0)."""
        n = np.maximum(np.asarray(self.cumulative_number(m1)) - np.asarray(self.cumulative_number(m0)), 0.0)
        return float(n) if n.ndim == 0 else n

    def mass(self, m0, m1) -> np.ndarray:
        """Initial mass per Msun of initial mass in stars with m0 <= m < m1 (dimensionless)."""
        m0 = np.clip(np.asarray(m0, dtype=np.float64), self.m_lower, self.m_upper)
        m1 = np.clip(np.asarray(m1, dtype=np.float64), self.m_lower, self.m_upper)
        return self._apply(K.imf_cummass_vec, m1) - self._apply(K.imf_cummass_vec, m0)

    def sample(self, n: int, rng=None, m_min: Optional[float] = None, m_max: Optional[float] = None) -> np.ndarray:
        """Draw n initial masses [Msun] from the IMF truncated to [m_min, m_max].

        Raises
        ------
        ValueError
            If the truncation interval is empty or outside the IMF's range.
        """
        rng = np.random.default_rng(rng)
        lo = self.m_lower if m_min is None else float(m_min)
        hi = self.m_upper if m_max is None else float(m_max)
        if not (self.m_lower <= lo < hi <= self.m_upper):
            raise ValueError(f"IMF.sample: need {self.m_lower} <= m_min < m_max <= {self.m_upper}, got [{lo}, {hi}]")
        u = rng.random(int(n))
        return K.imf_ppf_vec(u, np.full(len(u), lo), np.full(len(u), hi), *self.arrays())

    def describe(self) -> dict:
        """JSON-friendly summary."""
        return {"name": self.name, "m_lower": self.m_lower, "m_upper": self.m_upper, "reference": self.reference,
                "mean_mass": self.mean_mass}


def kroupa2001(m_lower: float = 0.08, m_upper: float = 100.0) -> IMF:
    """Kroupa (2001, MNRAS 322, 231, eq. 2) IMF on [m_lower, m_upper] (0.01 <= m_lower).

    Raises
    ------
    ValueError
        If the range is empty or extends below 0.01 Msun.
    """
    if not (0.01 <= m_lower < m_upper):
        raise ValueError(f"kroupa2001: need 0.01 <= m_lower < m_upper, got {m_lower}, {m_upper}")
    breaks = [0.01, 0.08, 0.5, np.inf]
    slopes = [0.3, 1.3, 2.3]
    # continuity: c_k at each break
    cs = [1.0]
    for k in range(1, 3):
        b = breaks[k]
        cs.append(cs[-1] * b ** (-slopes[k - 1]) / b ** (-slopes[k]))
    edges, alpha, coef = [m_lower], [], []
    for k in range(3):
        lo, hi = max(breaks[k], m_lower), min(breaks[k + 1], m_upper)
        if hi > lo:
            if edges[-1] != lo:
                edges.append(lo)
            edges.append(hi)
            alpha.append(slopes[k])
            coef.append(cs[k])
    return IMF(np.array(edges), np.array(alpha), np.array(coef), name="kroupa2001",
               reference="Kroupa 2001, MNRAS 322, 231, eq. (2)")


def chabrier2003(m_lower: float = 0.08, m_upper: float = 100.0, dex: float = 0.01) -> IMF:
    """Chabrier (2003, PASP 115, 763, Table 1) single-star IMF on [m_lower, m_upper].

    The log-normal part (m <= 1 Msun; m_c = 0.079, sigma = 0.69) is represented by power-law chords
    through nodes ``dex`` apart in log m; above 1 Msun xi(m) ~ m^-2.3 exactly.

    Raises
    ------
    ValueError
        If the range is empty or m_lower < 0.01.
    """
    if not (0.01 <= m_lower < m_upper):
        raise ValueError(f"chabrier2003: need 0.01 <= m_lower < m_upper, got {m_lower}, {m_upper}")

    def xi(m):  # per unit mass, xi(m) = xi(log m) / (m ln 10)
        m = np.asarray(m, dtype=np.float64)
        low = 0.158 * np.exp(-(np.log10(m) - np.log10(0.079)) ** 2 / (2 * 0.69 ** 2))
        high = 0.0443 * m ** -1.3
        return np.where(m <= 1.0, low, high) / (m * np.log(10))

    edges: list = []
    if m_lower < 1.0:
        hi = min(1.0, m_upper)
        n = max(1, int(np.ceil(np.log10(hi / m_lower) / dex)))
        edges = list(np.logspace(np.log10(m_lower), np.log10(hi), n + 1))
    if m_upper > 1.0:
        edges = edges[:-1] + [max(1.0, m_lower), m_upper] if edges else [m_lower, m_upper]
    edges = np.array(edges)
    alpha, coef = [], []
    for k in range(len(edges) - 1):
        a, b = edges[k], edges[k + 1]
        if a >= 1.0:
            alpha.append(2.3)
            coef.append(0.0443 / np.log(10))
        else:
            sl = -np.log(xi(b) / xi(a)) / np.log(b / a)
            alpha.append(float(sl))
            coef.append(float(xi(a) * a ** sl))
    return IMF(edges, np.array(alpha), np.array(coef), name="chabrier2003",
               reference="Chabrier 2003, PASP 115, 763, Table 1 (single stars)")


def make_imf(spec: dict) -> IMF:
    """IMF from a population-spec table: ``kind`` in :data:`IMF_KINDS`, optional m_lower, m_upper.

    Raises
    ------
    ValueError
        Unknown kind (the allowed values are listed) or bad range.
    """
    kind = str(spec.get("kind", "kroupa2001")).lower()
    lo = float(spec.get("m_lower", 0.08))
    hi = float(spec.get("m_upper", 100.0))
    if kind == "kroupa2001":
        return kroupa2001(lo, hi)
    if kind == "chabrier2003":
        return chabrier2003(lo, hi)
    raise ValueError(f"imf.kind: unknown IMF {kind!r}; allowed: {list(IMF_KINDS)}")
