"""Named, referenced sets of solar parameters: the Sun's Galactocentric position and velocity.

Every set is a frozen :class:`SolarParameters`; look one up with :func:`solar_parameters` (``"bv23"``, ``"bv24"``,
``"astropy"``) or build your own. ``params.meta()`` is the dict recorded in catalogue metadata.

Conventions (mocksky's Galactocentric frame, see :mod:`mocksky.observe.frames`): the Sun is at
``(x, y, z) = (-R0, 0, z_sun)`` and moves with ``(vx, vy, vz) = (U, -V, W)``, where U points from the Sun towards the
Galactic centre, V is along Galactic rotation and W towards the north Galactic pole. V > 0 is prograde; the Sun's
azimuthal velocity is ``vphi = +V`` and its angular momentum ``Lz = R0 V > 0``. ``R0`` is the in-plane distance; the
Sun-centre distance (astropy's ``galcen_distance``) is ``hypot(R0, z_sun)``. (U, V, W) are the Sun's *total*
Galactocentric velocity components, i.e. astropy's ``galcen_v_sun``, not the peculiar velocity.

All sets share the direction of the Galactic centre, Sgr A* at ICRS (ra, dec) = (266.4051, -28.936175) deg
(Reid & Brunthaler 2004, ApJ 616, 872; astropy's default since v4.0) and roll 0, except ``"astropy"``, which takes
all its values from ``astropy.coordinates.galactocentric_frame_defaults`` at the time of the call.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Tuple, Union

__all__ = ["SolarParameters", "solar_parameters", "available_solar_parameters", "SGR_A_ICRS_DEG"]

#: ICRS (ra, dec) of Sgr A* in degrees (Reid & Brunthaler 2004), astropy's default ``galcen_coord``.
SGR_A_ICRS_DEG = (266.4051, -28.936175)


@dataclass(frozen=True)
class SolarParameters:
    """Position and velocity of the Sun in the Galaxy, with their reference.

    Parameters
    ----------
    name : str
        Registry name (or any label for a custom set).
    R0 : float
        In-plane distance of the Sun from the Galactic centre [kpc]; the Sun is at x = -R0.
    z_sun : float
        Height of the Sun above the Galactic mid-plane [kpc].
    U, V, W : float
        Galactocentric velocity of the Sun [km/s]: towards the Galactic centre, along Galactic rotation (V > 0) and
        towards the north Galactic pole.
    reference : str
        Literature source of the values.
    galcen_ra, galcen_dec : float
        ICRS direction of the Galactic centre [deg].
    roll : float
        Roll angle of the Galactocentric frame about the Sun-centre line [deg] (astropy's ``roll``).

    Raises
    ------
    ValueError
        If ``R0 <= 0`` or any value is not finite.
    """

    name: str
    R0: float
    z_sun: float
    U: float
    V: float
    W: float
    reference: str
    galcen_ra: float = SGR_A_ICRS_DEG[0]
    galcen_dec: float = SGR_A_ICRS_DEG[1]
    roll: float = 0.0

    def __post_init__(self):
        for field in ("R0", "z_sun", "U", "V", "W", "galcen_ra", "galcen_dec", "roll"):
            v = getattr(self, field)
            if not math.isfinite(float(v)):
                raise ValueError(f"SolarParameters {self.name!r}: {field} = {v!r} is not finite")
            object.__setattr__(self, field, float(v))
        if self.R0 <= 0:
            raise ValueError(f"SolarParameters {self.name!r}: R0 = {self.R0} must be > 0 kpc")

    @property
    def galcen_distance(self) -> float:
        """Sun - Galactic-centre distance [kpc], ``hypot(R0, z_sun)`` (astropy's ``galcen_distance``)."""
        return math.hypot(self.R0, self.z_sun)

    @property
    def position(self) -> Tuple[float, float, float]:
        """The Sun's (x, y, z) in mocksky's Galactocentric frame [kpc]: ``(-R0, 0, z_sun)``."""
        return (-self.R0, 0.0, self.z_sun)

    @property
    def velocity(self) -> Tuple[float, float, float]:
        """The Sun's (vx, vy, vz) in mocksky's Galactocentric frame [km/s]: ``(U, -V, W)`` (vphi = V)."""
        return (self.U, -self.V, self.W)

    def meta(self) -> dict:
        """Plain-type dict for catalogue metadata (all fields plus derived position/velocity, units)."""
        d = asdict(self)
        d.update(galcen_distance=self.galcen_distance, position_kpc=list(self.position),
                 velocity_kms=list(self.velocity),
                 units={"R0": "kpc", "z_sun": "kpc", "U": "km/s", "V": "km/s", "W": "km/s",
                        "galcen_ra": "deg", "galcen_dec": "deg", "roll": "deg"},
                 frame="mocksky Galactocentric = astropy Galactocentric with y and vy reversed")
        return d

    def astropy_frame(self):
        """The equivalent ``astropy.coordinates.Galactocentric`` frame (right-handed, y not reversed)."""
        import astropy.units as u
        from astropy.coordinates import ICRS, CartesianDifferential, Galactocentric

        return Galactocentric(
            galcen_coord=ICRS(ra=self.galcen_ra * u.deg, dec=self.galcen_dec * u.deg),
            galcen_distance=self.galcen_distance * u.kpc,
            galcen_v_sun=CartesianDifferential([self.U, self.V, self.W] * (u.km / u.s)),
            z_sun=self.z_sun * u.kpc,
            roll=self.roll * u.deg,
        )


def _astropy_current() -> SolarParameters:
    import astropy.units as u
    from astropy.coordinates import ICRS, galactocentric_frame_defaults

    p = galactocentric_frame_defaults.get()
    refs = galactocentric_frame_defaults.references
    d = p["galcen_distance"].to_value(u.kpc)
    z = p["z_sun"].to_value(u.kpc)
    v = p["galcen_v_sun"]
    comps = (v.d_x, v.d_y, v.d_z) if hasattr(v, "d_x") else (v.x, v.y, v.z)  # CartesianDifferential or -Representation
    vx, vy, vz = (float(c.to_value(u.km / u.s)) for c in comps)
    icrs = p["galcen_coord"].transform_to(ICRS())
    ref = "; ".join(f"{k}: {', '.join(r) if isinstance(r, (list, tuple)) else r}" for k, r in refs.items() if r)
    return SolarParameters(
        name="astropy", R0=math.sqrt(d * d - z * z), z_sun=z, U=vx, V=vy, W=vz,
        reference=f"astropy galactocentric_frame_defaults (current set) - {ref}",
        galcen_ra=float(icrs.ra.deg), galcen_dec=float(icrs.dec.deg), roll=float(p["roll"].to_value(u.deg)),
    )


_REGISTRY: Dict[str, Callable[[], SolarParameters]] = {
    "bv23": lambda: SolarParameters(
        name="bv23", R0=8.27, z_sun=0.0, U=11.1, V=250.0, W=7.47,
        reference=("Binney & Vasiliev 2023, MNRAS 520, 1832, Sect. 4.1, adopting Schoenrich et al. 2019, MNRAS 487, "
                   "3568 (R0 = 8.27 kpc, (U, V, W) = (11.1, 250, 7.47) km/s); z_sun not stated there, taken as 0"),
    ),
    "bv24": lambda: SolarParameters(
        name="bv24", R0=8.27, z_sun=0.025, U=14.0, V=251.3, W=7.0,
        reference=("Binney & Vasiliev 2024, MNRAS 527, 1915 (AgamaChemo code): Sun at x = -8.27 kpc, z = +0.025 kpc, "
                   "v = (14, 251.3, 7) km/s"),
    ),
    "astropy": _astropy_current,
}


def available_solar_parameters() -> Tuple[str, ...]:
    """Names accepted by :func:`solar_parameters`."""
    return tuple(_REGISTRY)


def solar_parameters(name: Union[str, SolarParameters] = "bv24") -> SolarParameters:
    """Look up a named set of solar parameters.

    Parameters
    ----------
    name : str or SolarParameters
        ``"bv23"``, ``"bv24"`` (default) or ``"astropy"`` (case-insensitive); a :class:`SolarParameters` instance is
        returned unchanged.

    Returns
    -------
    SolarParameters

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the allowed names.
    """
    if isinstance(name, SolarParameters):
        return name
    key = str(name).lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown solar parameters {name!r}; allowed: {list(_REGISTRY)} "
                       "(or pass a SolarParameters instance)")
    return _REGISTRY[key]()
