"""Base class of the action-finder plug-in family."""
from __future__ import annotations

import numpy as np

from ._common import parse_posvel


class ActionFinder:
    """Actions, angles and frequencies of Cartesian phase-space points (plug-in base class).

    Subclasses implement ``_run(pv, want_angles) -> numpy.ndarray`` of shape (N, 9) on a parsed
    float64 (N, 6) array: columns (Jr, Jz, Jphi, theta_r, theta_z, theta_phi, Omega_r, Omega_z,
    Omega_phi); the angle and frequency columns may be left unfilled when ``want_angles`` is false.
    Conventions follow Agama: Jphi = Lz = x vy - y vx (> 0 prograde), angles in [0, 2 pi),
    frequencies in km/s/kpc, NaN rows for unbound points.
    """

    def _run(self, pv: np.ndarray, want_angles: bool) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _run(pv, want_angles)")

    def actions(self, posvel) -> np.ndarray:
        """Actions of phase-space points.

        Parameters
        ----------
        posvel : array_like, shape (N, 6) or (6,), or pair of Quantities (xyz, vxyz)
            Cartesian (x, y, z, vx, vy, vz) [kpc, km/s].

        Returns
        -------
        numpy.ndarray, shape (N, 3)
            (Jr, Jz, Jphi) [kpc km/s]; NaN rows for unbound points.

        Raises
        ------
        ValueError
            If ``posvel`` does not have 6 columns.
        """
        return self._run(parse_posvel(posvel), False)[:, :3].copy()

    def actions_angles_frequencies(self, posvel):
        """Actions, angles and frequencies of phase-space points.

        Parameters
        ----------
        posvel : array_like, shape (N, 6) or (6,), or pair of Quantities (xyz, vxyz)
            Cartesian (x, y, z, vx, vy, vz) [kpc, km/s].

        Returns
        -------
        actions : numpy.ndarray, shape (N, 3)
            (Jr, Jz, Jphi) [kpc km/s].
        angles : numpy.ndarray, shape (N, 3)
            (theta_r, theta_z, theta_phi) [rad] in [0, 2 pi).
        frequencies : numpy.ndarray, shape (N, 3)
            (Omega_r, Omega_z, Omega_phi) [km/s/kpc].
        """
        out = self._run(parse_posvel(posvel), True)
        return out[:, :3].copy(), out[:, 3:6].copy(), out[:, 6:9].copy()
