"""Age distributions (star-formation histories) of Galaxy components.

An :class:`AgeDistribution` is the star-formation rate as a function of stellar age, psi(tau) (initial
mass formed per unit age, normalised to unit integral), on [age_min, age_max] [Gyr]. Since every star
formed is still a star today (living or remnant), psi is also the age distribution of stars by
number, independent of mass. It is represented on a fine grid of equal cells with constant density
(exact for ``uniform``); draws invert the cumulative distribution on the same cells, and the
expectations of :mod:`mocksky.populate` use the same cells, so the two agree exactly.

Kinds
-----
``uniform``      constant SFR: psi = 1 / (age_max - age_min).
``exponential``  SFR declining with time since star formation began age_max ago with e-folding time
                 ``tau`` [Gyr]: psi(age) ~ exp((age - age_max) / tau) (older stars more numerous;
                 tau < 0 gives a rising SFR). Binney (1996, seed) used tau = 12 Gyr for the disc.
``gaussian``     psi ~ exp(-(age - mean)^2 / (2 sigma^2)) truncated to [age_min, age_max].
``tabulated``    piecewise-linear psi through (``ages``, ``weights``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import _kernels as K

__all__ = ["AgeDistribution", "make_age_distribution", "AGE_KINDS"]

AGE_KINDS = ("uniform", "exponential", "gaussian", "tabulated")
#: Universe age bound for ages [Gyr].
AGE_MAX_ALLOWED = 14.0


@dataclass
class AgeDistribution:
    """Normalised star-formation history psi(age) on [age_min, age_max] [Gyr].

    Parameters
    ----------
    kind : str
        One of :data:`AGE_KINDS`.
    age_min, age_max : float
        Support [Gyr], 0 <= age_min < age_max <= 14.
    params : dict
        ``tau`` (exponential), ``mean``/``sigma`` (gaussian), ``ages``/``weights`` (tabulated).
    n_cells : int
        Number of equal-width cells of the piecewise-constant representation (default 1024).
    reference : str
        Literature reference of the choice.

    Raises
    ------
    ValueError
        Unknown kind, bad range or missing/invalid parameters (named).
    """

    kind: str
    age_min: float
    age_max: float
    params: dict = field(default_factory=dict)
    n_cells: int = 1024
    reference: str = ""

    def __post_init__(self):
        self.kind = str(self.kind).lower()
        if self.kind not in AGE_KINDS:
            raise ValueError(f"age.kind: unknown {self.kind!r}; allowed: {list(AGE_KINDS)}")
        self.age_min, self.age_max = float(self.age_min), float(self.age_max)
        if not (0.0 <= self.age_min < self.age_max <= AGE_MAX_ALLOWED):
            raise ValueError(f"age: need 0 <= min < max <= {AGE_MAX_ALLOWED} Gyr, got [{self.age_min}, {self.age_max}]")
        n = int(self.n_cells)
        if n < 1:
            raise ValueError(f"age: n_cells must be >= 1, got {n}")
        self.grid = np.linspace(self.age_min, self.age_max, n + 1)
        mid = 0.5 * (self.grid[1:] + self.grid[:-1])
        dens = self._density(mid)
        if not np.all(np.isfinite(dens)) or np.any(dens < 0) or dens.sum() <= 0:
            raise ValueError(f"age ({self.kind}): the density must be finite, non-negative and not all zero")
        w = dens * np.diff(self.grid)
        self.cell_prob = w / w.sum()
        self.cdf = np.concatenate([[0.0], np.cumsum(self.cell_prob)])
        self.cdf[-1] = 1.0

    def _density(self, a: np.ndarray) -> np.ndarray:
        p = self.params
        if self.kind == "uniform":
            return np.ones_like(a)
        if self.kind == "exponential":
            if "tau" not in p or float(p["tau"]) == 0:
                raise ValueError("age (exponential): give a non-zero 'tau' [Gyr]")
            return np.exp((a - self.age_max) / float(p["tau"]))
        if self.kind == "gaussian":
            if "mean" not in p or "sigma" not in p or float(p["sigma"]) <= 0:
                raise ValueError("age (gaussian): give 'mean' and a positive 'sigma' [Gyr]")
            return np.exp(-0.5 * ((a - float(p["mean"])) / float(p["sigma"])) ** 2)
        ages = np.asarray(p.get("ages", []), dtype=np.float64)
        wts = np.asarray(p.get("weights", []), dtype=np.float64)
        if ages.ndim != 1 or len(ages) < 2 or ages.shape != wts.shape or np.any(np.diff(ages) <= 0):
            raise ValueError("age (tabulated): 'ages' (increasing) and 'weights' of equal length >= 2 are needed")
        return np.interp(a, ages, wts, left=0.0, right=0.0)

    # ------------------------------------------------------------------ use
    @property
    def cell_ages(self) -> np.ndarray:
        """Mid-cell ages [Gyr] (the quadrature nodes of expectations)."""
        return 0.5 * (self.grid[1:] + self.grid[:-1])

    def ppf(self, u) -> np.ndarray:
        """Ages [Gyr] at cumulative probabilities u in [0, 1]."""
        u = np.ascontiguousarray(np.asarray(u, dtype=np.float64).ravel())
        return K.age_ppf_vec(u, self.grid, self.cdf)

    def sample(self, n: int, rng=None) -> np.ndarray:
        """n ages [Gyr]."""
        rng = np.random.default_rng(rng)
        return self.ppf(rng.random(int(n)))

    def expectation(self, f, n_sub: int = 1) -> float:
        """E[f(age)] under this distribution (midpoint rule on ``n_sub`` sub-cells of every cell)."""
        edges = self.grid
        tot = 0.0
        for j in range(n_sub):
            a = edges[:-1] + (j + 0.5) / n_sub * np.diff(edges)
            tot += np.sum(self.cell_prob * np.asarray(f(a), dtype=np.float64)) / n_sub
        return float(tot)

    def mean(self) -> float:
        """Mean age [Gyr]."""
        return self.expectation(lambda a: a)

    def describe(self) -> dict:
        """JSON-friendly summary."""
        return {"kind": self.kind, "age_min": self.age_min, "age_max": self.age_max, "params": dict(self.params),
                "mean_age": self.mean(), "reference": self.reference}


def make_age_distribution(spec: dict, reference: Optional[str] = None) -> AgeDistribution:
    """An :class:`AgeDistribution` from a population-spec table.

    ``spec`` has ``kind`` and ``min``/``max`` [Gyr] plus the kind's parameters (``tau``; ``mean``,
    ``sigma``; ``ages``, ``weights``).

    Raises
    ------
    ValueError
        Missing range or bad parameters (named).
    """
    if "min" not in spec or "max" not in spec:
        raise ValueError(f"age: 'min' and 'max' [Gyr] are required, got keys {sorted(spec)}")
    params = {k: v for k, v in spec.items() if k not in ("kind", "min", "max", "reference")}
    return AgeDistribution(spec.get("kind", "uniform"), spec["min"], spec["max"], params,
                           reference=str(spec.get("reference", reference or "")))
