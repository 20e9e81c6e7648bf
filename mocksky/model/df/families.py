"""Action-based distribution functions f(J) with Agama's mass normalisation.

Convention (Agama; shared/docs/dynamics-spec.md): the total mass of a DF is
M = (2 pi)^3 * integral of f(J) over Jr >= 0, Jz >= 0 and all Jphi. Each family is built with a
``mass``; the overall factor ``norm`` is then fixed so that this integral equals ``mass``.

References
----------
BV23: Binney & Vasiliev 2023, MNRAS 520, 1832, eqs. 1-4 (discs) and 8-15 (spheroids).
BV24: Binney & Vasiliev 2024, MNRAS 527, 1915 (taperExp, SinDoublePowerLaw).
Posti et al. 2015, MNRAS 447, 3060; Vasiliev 2019, MNRAS 482, 1525, eq. 21 (DoublePowerLaw).
Cole & Binney 2017, MNRAS 465, 798 (core).
Binney & McMillan 2011, MNRAS 413, 1889, eqs. 4-6 (QuasiIsothermal).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from scipy import optimize

from ... import units as U
from . import _kernels as K


def _ln_nodes(lo: float, hi: float, panels: int = 72, order: int = 4):
    """Composite Gauss-Legendre nodes and weights on [lo, hi] (in ln J)."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(lo, hi, panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    nodes = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel()
    return nodes, weights


class DistributionFunction:
    """Base class of DF families: a compiled kernel, its parameters and the mass normalisation.

    Attributes
    ----------
    mass : float
        Total mass [Msun] = (2 pi)^3 int f d^3J.
    params : numpy.ndarray
        Kernel parameters; params[0] is the normalisation factor.
    name : str
        Component label (e.g. the INI section label).
    """

    code: int = 0
    #: Jphi <= 0 never populated (disc families)
    prograde_only: bool = False
    #: action scale [kpc km/s] used to centre the normalisation quadrature
    action_scale: float = 1.0

    def __init__(self, mass: float, params, name: str = ""):
        self.mass = float(U.to_internal(mass, U.MASS, "mass"))
        if not (np.isfinite(self.mass) and self.mass > 0):
            raise ValueError(f"DF {name!r}: mass must be a positive number, got {self.mass}")
        self.name = name
        self.params = np.asarray(params, dtype=np.float64).copy()
        self.params[0] = 1.0
        unit_mass = self.integrate_mass()
        if not (np.isfinite(unit_mass) and unit_mass > 0):
            raise ValueError(f"DF {name!r}: the DF does not integrate to a finite positive mass (got {unit_mass})")
        self.params[0] = self.mass / unit_mass

    @property
    def norm(self) -> float:
        """Overall factor multiplying the kernel (chosen so the total mass is ``mass``)."""
        return float(self.params[0])

    def integrate_mass(self, panels: int = 48, order: int = 4) -> float:
        """(2 pi)^3 int f d^3J by tensor Gauss-Legendre quadrature in ln J over 1e-7..1e6 action scales [Msun]."""
        s = np.log(self.action_scale)
        nodes, weights = _ln_nodes(s - 16.0, s + 14.0, panels, order)
        partial = K.df_mass_integral(self.code, self.params, nodes, weights, not self.prograde_only)
        return float((2.0 * np.pi) ** 3 * np.sum(partial))  # summed here: thread-count independent

    def __call__(self, J) -> np.ndarray:
        """f(J) [Msun / (kpc km/s)^3].

        Parameters
        ----------
        J : array_like or Quantity, shape (N, 3) or (3,)
            Actions (Jr, Jz, Jphi) [kpc km/s].

        Returns
        -------
        numpy.ndarray, shape (N,)
        """
        J = np.atleast_2d(U.to_internal(J, U.ACTION, "J"))
        if J.shape[1] != 3:
            raise ValueError(f"J: expected shape (N, 3) (Jr, Jz, Jphi), got {J.shape}")
        return K.df_values(self.code, self.params, np.ascontiguousarray(J))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} mass={self.mass:.4g} Msun>"


class NewExponential(DistributionFunction):
    """BV23 disc DF (BV23 eqs. 1-4).

    f = norm [xr e^(-xr Jr)] [xz e^(-xz Jz)] [Jphi / Jphi0^2 e^(-Jden/Jphi0)] for Jphi > 0, else 0, with
    xr = (Jvel/Jphi0)^pr / Jr0, xz = (Jvel/Jphi0)^pz / Jz0, Jvel = Jphi + addJvel, Jden = Jphi + addJden.

    Parameters
    ----------
    mass : float
        Total mass [Msun].
    Jr0, Jz0, Jphi0 : float
        Scale actions [kpc km/s] (> 0).
    pr, pz : float
        Exponents of the radial variation of the dispersions.
    addJden, addJvel : float
        Action offsets [kpc km/s] (>= 0).
    """

    code = K.NEW_EXPONENTIAL
    prograde_only = True

    def __init__(self, mass, Jr0, Jz0, Jphi0, pr=0.0, pz=0.0, addJden=0.0, addJvel=0.0, name=""):
        for k, v in dict(Jr0=Jr0, Jz0=Jz0, Jphi0=Jphi0).items():
            if not v > 0:
                raise ValueError(f"DF {name!r}: {k} must be > 0, got {v}")
        for k, v in dict(addJden=addJden, addJvel=addJvel).items():
            if v < 0:
                raise ValueError(f"DF {name!r}: {k} must be >= 0, got {v}")
        self.action_scale = float(Jphi0) / 30
        super().__init__(mass, [1.0, Jr0, Jz0, Jphi0, pr, pz, addJden, addJvel], name)


class TaperExp(DistributionFunction):
    """BV24 disc/bulge DF ``taperExp`` (dynamics spec).

    f = norm [xr e^(-xr Jr)] [xz e^(-xz Jz)] [(Jden/Jphi0) e^(-Jden/Jphi0) / Jphi0] T C for Jphi > 0, with
    Jt = Jr + Jz + Jphi, Jvel = Jt + addJvel, Jden = Jt + addJden, T = (1 + tanh((Jphi - Jtaper)/Jtrans))/2
    (if Jtrans > 0), C = (1 - tanh((Jphi - Jcut)/Delta))/2 (if Delta > 0).
    """

    code = K.TAPER_EXP
    prograde_only = True

    def __init__(self, mass, Jr0, Jz0, Jphi0, pr=0.0, pz=0.0, addJden=0.0, addJvel=0.0,
                 Jtaper=0.0, Jtrans=0.0, Jcut=0.0, Delta=0.0, name=""):
        for k, v in dict(Jr0=Jr0, Jz0=Jz0, Jphi0=Jphi0).items():
            if not v > 0:
                raise ValueError(f"DF {name!r}: {k} must be > 0, got {v}")
        self.action_scale = float(Jphi0) / 30
        super().__init__(mass, [1.0, Jr0, Jz0, Jphi0, pr, pz, addJden, addJvel, Jtaper, Jtrans, Jcut, Delta], name)


def cole_binney_zeta(J0: float, slopeIn: float, slopeOut: float, Jcore: float, Jcutoff: float = 0.0,
                     cutoffStrength: float = 2.0) -> float:
    """Root zeta in [0, 2) that keeps the mass of a cored double-power-law DF unchanged (dynamics spec).

    int_0^inf h^2 (1 + J0/h)^slopeIn (1 + h/J0)^-slopeOut ([1 + (Jcore/h)(Jcore/h - zeta)]^(-slopeIn/2) - 1) dh = 0.

    This integral (without the cutoff factor) diverges for slopeOut <= 2 (the BV23 bulge has slopeOut = 1.8);
    in that case only, the factor exp(-(h/Jcutoff)^cutoffStrength) is included, which makes the condition
    exactly "the core leaves the mass unchanged".

    Raises
    ------
    ValueError
        If the integral has no root in [0, 2].
    """
    if Jcore <= 0:
        return 0.0

    # fixed composite Gauss-Legendre quadrature in t = ln h (deterministic, no adaptive warnings)
    t, w = _ln_nodes(np.log(Jcore) - 30.0, np.log(max(J0, Jcore)) + 60.0, panels=360, order=6)
    h = np.exp(t)
    y = Jcore / h
    base = w * h**3 * (1 + J0 / h) ** slopeIn * (1 + h / J0) ** (-slopeOut)
    if slopeOut <= 2 and Jcutoff > 0:
        base = base * np.exp(-np.minimum((h / Jcutoff) ** cutoffStrength, 700.0))

    def F(zeta):
        return float(np.sum(base * ((1 + y * (y - zeta)) ** (-0.5 * slopeIn) - 1)))

    if slopeOut <= 2 and not Jcutoff > 0:
        raise ValueError(f"Cole-Binney core: slopeOut = {slopeOut} <= 2 needs Jcutoff > 0")
    hi = 1.99
    f0, f2 = F(0.0), F(hi)
    if f0 * f2 > 0:
        raise ValueError(f"Cole-Binney core: no zeta in [0, 2) conserves the mass (J0={J0}, Jcore={Jcore})")
    return float(optimize.brentq(F, 0.0, hi, xtol=1e-14))


class NewDoublePowerLaw(DistributionFunction):
    """BV23 spheroid DF with the Cole-Binney core (BV23 eqs. 8-15; dynamics spec).

    f = norm / (2 pi J0)^3 (1 + J0/h)^slopeIn (1 + h/J0)^-slopeOut exp(-(h/Jcutoff)^cutoffStrength)
        [1 + (Jcore/h)(Jcore/h - zeta)]^(-slopeIn/2) [1 + rotFrac tanh(Jphi/Jphi0)],
    with h(J) of BV23 eq. 9 (:func:`mocksky.model.df._kernels.binney_h`) and zeta from
    :func:`cole_binney_zeta`. ``beta`` is the anisotropy parameter, not an outer slope.
    """

    code = K.NEW_DOUBLE_POWER_LAW

    def __init__(self, mass, J0, slopeIn, slopeOut, alpha=0.6, L0=1e5, beta=0.0, Fin=1.0, Fout=1.0,
                 Jcutoff=0.0, cutoffStrength=2.0, Jcore=0.0, rotFrac=0.0, Jphi0=0.0, name=""):
        if not J0 > 0:
            raise ValueError(f"DF {name!r}: J0 must be > 0, got {J0}")
        if not slopeOut > 3 and not Jcutoff > 0:
            raise ValueError(f"DF {name!r}: slopeOut must be > 3 unless Jcutoff > 0 (infinite mass), got {slopeOut}")
        if not slopeIn < 3:
            raise ValueError(f"DF {name!r}: slopeIn must be < 3, got {slopeIn}")
        if rotFrac != 0 and not Jphi0 > 0:
            raise ValueError(f"DF {name!r}: rotFrac != 0 needs Jphi0 > 0")
        self.zeta = cole_binney_zeta(J0, slopeIn, slopeOut, Jcore, Jcutoff, cutoffStrength)
        self.action_scale = float(J0)
        super().__init__(mass, [1.0, J0, slopeIn, slopeOut, alpha, L0, beta, Fin, Fout, Jcutoff, cutoffStrength,
                                Jcore, self.zeta, rotFrac, Jphi0], name)


class SinDoublePowerLaw(NewDoublePowerLaw):
    """BV24 spheroid DF ``SinDoublePowerLaw``: same h(J) and factors as :class:`NewDoublePowerLaw` (dynamics spec)."""

    code = K.SIN_DOUBLE_POWER_LAW


class DoublePowerLaw(DistributionFunction):
    """Agama's DoublePowerLaw (Posti et al. 2015; Vasiliev 2019, eq. 21).

    f = norm / (2 pi J0)^3 [1 + (J0/h)^eta]^(slopeIn/eta) [1 + (g/J0)^eta]^(-slopeOut/eta)
        exp(-(g/Jcutoff)^cutoffStrength) [1 + (Jcore/h)(Jcore/h - zeta)]^(-slopeIn/2) [1 + rotFrac tanh(Jphi/Jphi0)],
    h = coefJrIn Jr + coefJzIn Jz + (3 - coefJrIn - coefJzIn)|Jphi|, g likewise with the *Out coefficients.
    """

    code = K.DOUBLE_POWER_LAW

    def __init__(self, mass, J0, slopeIn, slopeOut, steepness=1.0, coefJrIn=1.0, coefJzIn=1.0, coefJrOut=1.0,
                 coefJzOut=1.0, Jcutoff=0.0, cutoffStrength=2.0, Jcore=0.0, rotFrac=0.0, Jphi0=0.0, name=""):
        if not J0 > 0:
            raise ValueError(f"DF {name!r}: J0 must be > 0, got {J0}")
        if not slopeOut > 3 and not Jcutoff > 0:
            raise ValueError(f"DF {name!r}: slopeOut must be > 3 unless Jcutoff > 0 (infinite mass), got {slopeOut}")
        for k, v in dict(coefJrIn=coefJrIn, coefJzIn=coefJzIn, coefJrOut=coefJrOut, coefJzOut=coefJzOut).items():
            if not 0 < v < 3:
                raise ValueError(f"DF {name!r}: {k} must be in (0, 3), got {v}")
        self.zeta = cole_binney_zeta(J0, slopeIn, slopeOut, Jcore, Jcutoff, cutoffStrength) if Jcore > 0 else 0.0
        self.action_scale = float(J0)
        super().__init__(mass, [1.0, J0, slopeIn, slopeOut, steepness, coefJrIn, coefJzIn, coefJrOut, coefJzOut,
                                Jcutoff, cutoffStrength, Jcore, self.zeta, rotFrac, Jphi0], name)


class QuasiIsothermal(DistributionFunction):
    """Quasi-isothermal disc DF (Binney & McMillan 2011, eqs. 4-6) in a given potential.

    f = Omega Sigma / (2 pi^2 kappa^2) [1 + tanh(Jphi/Jphi0)] (kappa/sigma_R^2) e^(-kappa Jr/sigma_R^2)
        (nu/sigma_z^2) e^(-nu Jz/sigma_z^2),
    with Sigma = exp(-Rc/Rdisk), sigma_R = sigmar0 exp(-Rc/Rsigmar), sigma_z = sigmaz0 exp(-Rc/Rsigmaz), and Rc,
    kappa, nu, Omega evaluated at the radius of the circular orbit with angular momentum |Jphi| (tabulated from
    the potential).

    Parameters
    ----------
    mass : float
        Total mass [Msun].
    potential : Potential
        Potential giving Rc(Lz) and the epicycle frequencies.
    Rdisk : float
        Scale length of the surface density [kpc].
    sigmar0, sigmaz0 : float
        Dispersions at R = 0 [km/s].
    Rsigmar, Rsigmaz : float, optional
        Scale lengths of the dispersions [kpc] (default 2 Rdisk).
    Jphi0 : float
        Scale of the rotation factor [kpc km/s] (0 = only prograde orbits).
    """

    code = K.QUASI_ISOTHERMAL
    prograde_only = False

    def __init__(self, mass, potential, Rdisk, sigmar0, sigmaz0, Rsigmar=None, Rsigmaz=None, Jphi0=0.0, name="",
                 ntab=256):
        Rsigmar = 2 * Rdisk if Rsigmar is None else Rsigmar
        Rsigmaz = 2 * Rdisk if Rsigmaz is None else Rsigmaz
        for k, v in dict(Rdisk=Rdisk, sigmar0=sigmar0, sigmaz0=sigmaz0, Rsigmar=Rsigmar, Rsigmaz=Rsigmaz).items():
            if not v > 0:
                raise ValueError(f"DF {name!r}: {k} must be > 0, got {v}")
        R = np.geomspace(1e-3, 1e3, 2000)
        vc = potential.vcirc(R)
        Lz = R * vc
        if np.any(np.diff(Lz) <= 0):
            raise ValueError("QuasiIsothermal: Lz(R) of circular orbits is not monotonic in this potential")
        kappa, nu, Om = potential.epicycle_frequencies(R)
        lnL = np.linspace(np.log(Lz[0]), np.log(Lz[-1]), ntab)
        tabs = [np.interp(lnL, np.log(Lz), np.log(q)) for q in (R, kappa, nu, Om)]
        self.action_scale = float(Rdisk * np.interp(Rdisk, R, vc))
        params = np.concatenate([[1.0, Rdisk, sigmar0, sigmaz0, Rsigmar, Rsigmaz, Jphi0, 0.0, ntab, lnL[0],
                                  lnL[1] - lnL[0]], *tabs])
        super().__init__(mass, params, name)


#: Agama INI DF type names -> classes (case-insensitive lookup).
DF_TYPES: Dict[str, type] = {
    "newexponential": NewExponential,
    "taperexp": TaperExp,
    "newdoublepowerlaw": NewDoublePowerLaw,
    "sindoublepowerlaw": SinDoublePowerLaw,
    "doublepowerlaw": DoublePowerLaw,
    "quasiisothermal": QuasiIsothermal,
}

_IGNORED_KEYS = {"type", "mass", "norm", "js"}


def df_from_section(sec, potential: Optional[object] = None) -> DistributionFunction:
    """Build a DF from an INI ``[DF ...]`` section (keys case-insensitive).

    ``mass`` is required; a ``norm`` beside it is ignored (BV24 files carry stale values), as is the
    BV23 de-dimensioning action ``Js``. QuasiIsothermal needs ``potential``.

    Raises
    ------
    ValueError
        Unknown type (allowed types listed) or unknown key (allowed keys listed), missing mass.
    """
    import inspect

    typ = (sec.get_str("type") or "").lower()
    cls = DF_TYPES.get(typ)
    if cls is None:
        raise ValueError(f"[{sec.header}] type = {sec.get_str('type')!r}: unknown DF type; allowed: "
                         "NewExponential, taperExp, NewDoublePowerLaw, SinDoublePowerLaw, DoublePowerLaw, QuasiIsothermal")
    if "mass" not in sec:
        raise ValueError(f"[{sec.header}]: 'mass' is required (total mass of the component in Msun)")
    sig = inspect.signature(cls.__init__)
    allowed = {p.lower(): p for p in sig.parameters if p not in ("self", "mass", "name", "potential", "ntab")}
    kwargs = {}
    for key, val in sec.items.items():
        low = key.lower()
        if low in _IGNORED_KEYS:
            continue
        if low not in allowed:
            raise ValueError(f"[{sec.header}]: unknown key {key!r} for {cls.__name__}; allowed: {sorted(allowed.values())}")
        kwargs[allowed[low]] = sec.get_float(key)
    if cls is QuasiIsothermal:
        if potential is None:
            raise ValueError(f"[{sec.header}]: QuasiIsothermal needs a potential")
        return cls(sec.get_float("mass"), potential, name=sec.label, **kwargs)
    return cls(sec.get_float("mass"), name=sec.label, **kwargs)
