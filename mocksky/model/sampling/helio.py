"""Heliocentric position proposals for samplers of magnitude-limited (observer-centred) targets.

A magnitude-limited survey sees f(x, v) S(x), where the selection S (the fraction of a population's stars brighter
than the limit at distance d behind the dust A(l, b, d)) falls by orders of magnitude from the Sun outwards. A
position proposal on a Galactocentric (R, z) grid cannot follow that within a cell, and the rejection envelope is set
by the cells' brightest corner next to the Sun. :class:`HeliocentricCells` proposes positions on cells of the
observer's sky and distance instead: HEALPix pixels (NESTED, Galactic, ``nside`` 64 by default: 0.92 deg) times
distance shells (a central sphere of radius ``d_min``, then ``shells_per_decade`` logarithmic shells per factor 10),
uniform in volume inside each cell, so that the proposal density of a point in cell c is q_x = P_c / V_c with

    V_c = (4 pi / N_pix) (d_b^3 - d_a^3) / 3.

Directions inside a pixel are drawn uniformly among its 4^k NESTED sub-pixels of ``nside = 2^24`` (0.013 arcsec)
and placed at the sub-pixel's centre: uniform in solid angle at that resolution.

Cell probabilities (:meth:`HeliocentricCells.initial_probabilities`) follow the component's density times an upper
bound of the selection in the cell: S_up = the largest S at the shell's inner distance at the pixel's centre and
just inside its four corners. For a magnitude limit behind a HEALPix dust map whose pixels contain ours (Combined19:
nside 32; the 2D maps: nside 64) S is the same everywhere in our pixel at a given distance and does not increase with
distance, so S <= S_up holds in the whole cell; the corners also catch most pixels that a footprint's edge crosses
(an APOGEE field's rim). With a sampling region, cells that cannot meet it get no probability
(:meth:`HeliocentricCells.region_mask`). The sampler then thins a proposal with probability rho / rho_up
(rho_up = 1.1 x the largest density at the cell's probe points, :meth:`HeliocentricCells.density_bounds`) and
S / S_up *before* drawing its velocity and computing its actions, so the weight of a survivor no longer depends on
the magnitude limit, the dust or the density's variation inside the cell: the rejection envelope is set by how well
the velocity proposal fits f. (A density or selection that breaks its bound somewhere is still sampled exactly -
that factor does not thin the point - only less efficiently.)

References
----------
Gorski et al. 2005, ApJ 622, 759 (HEALPix); Owen & Zhou 2000, JASA 95, 135 (defensive importance sampling); Sharma
et al. 2011, ApJ 730, 3 (Galaxia: sampling in heliocentric cells).
"""
from __future__ import annotations

import math

import healpy as hp
import numpy as np

__all__ = ["HeliocentricCells"]

#: NESTED resolution of the directions drawn inside a pixel
_FINE_ORDER = 24
#: factor on the largest probed density in a cell's density bound k rho_c (:meth:`HeliocentricCells.density_bounds`:
#: the probes miss at most 4 % on BV23's components; a point above the bound is still sampled exactly)
_RHO_SAFETY = 1.1


class HeliocentricCells:
    """Cells of HEALPix pixel x heliocentric distance shell, and uniform positions inside them.

    Cell index c = shell * n_sky + pixel (NESTED pixel of ``nside`` in Galactic coordinates).

    Parameters
    ----------
    position : array_like, shape (3,)
        Observer's position in the model's Galactocentric frame [kpc].
    rotation : array_like, shape (3, 3)
        Rotation taking Galactic Cartesian unit vectors (x to l = 0, z to b = 90 deg) to the model's axes.
    d_max : float
        Outer distance of the grid [kpc].
    nside : int
        HEALPix resolution of the sky cells, a power of 2 (default 64).
    d_min : float
        Radius of the central sphere [kpc] (default 0.005).
    shells_per_decade : int
        Logarithmic distance shells per factor 10 between d_min and d_max (default 16).

    Raises
    ------
    ValueError
        Bad nside, sizes, distances, rotation or position (named).
    """

    def __init__(self, position, rotation, d_max: float, nside: int = 64, d_min: float = 0.005,
                 shells_per_decade: int = 16):
        pos = np.asarray(position, dtype=np.float64)
        rot = np.asarray(rotation, dtype=np.float64)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"position: need 3 finite coordinates [kpc], got {position!r}")
        if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-9):
            raise ValueError("rotation: need an orthogonal 3 x 3 matrix (Galactic -> model axes)")
        if isinstance(nside, bool) or int(nside) != nside or int(nside) < 1 or (int(nside) & (int(nside) - 1)):
            raise ValueError(f"nside: need a power of 2, got {nside!r}")
        if int(nside) > 1 << 12:
            raise ValueError(f"nside: at most 4096, got {nside!r}")
        if isinstance(shells_per_decade, bool) or int(shells_per_decade) != shells_per_decade \
                or int(shells_per_decade) < 1:
            raise ValueError(f"shells_per_decade: need an integer >= 1, got {shells_per_decade!r}")
        if not (0 < d_min < d_max and np.isfinite(d_max)):
            raise ValueError(f"d_min, d_max: need 0 < d_min < d_max < inf [kpc], got {d_min!r}, {d_max!r}")
        self.position, self.rotation = pos, np.ascontiguousarray(rot)
        self.nside = int(nside)
        self.order = self.nside.bit_length() - 1
        n_d = max(int(math.ceil(math.log10(d_max / d_min) * int(shells_per_decade))), 1)
        self.d_edges = np.concatenate([[0.0], np.geomspace(d_min, d_max, n_d + 1)])
        self.n_d = len(self.d_edges) - 1
        self.n_sky = 12 * self.nside ** 2
        self.n_cells = self.n_sky * self.n_d
        #: solid angle of a pixel [sr]
        self.pixel_solid_angle = 4 * np.pi / self.n_sky
        #: (d_b^3 - d_a^3) / 3 of every shell [kpc^3 / sr]
        self.shell_d3 = np.diff(self.d_edges ** 3) / 3.0

    @classmethod
    def for_solar(cls, solar, d_max: float, **options) -> "HeliocentricCells":
        """Cells centred on the Sun of a set of solar parameters (:func:`mocksky.observe.solar_parameters` name or
        object); ``options`` as for the constructor."""
        from ...observe.frames import frame_matrices

        fm = frame_matrices(solar)
        GB = fm["G"] @ fm["B"]  # model axes -> Galactic
        return cls(fm["sun_position"], GB.T, d_max, **options)

    # ------------------------------------------------------------------ cells
    def cell_index(self, c):
        """(shell, pixel) of cells ``c``."""
        c = np.asarray(c, dtype=np.int64)
        return c // self.n_sky, c % self.n_sky

    def log_volume(self, c) -> np.ndarray:
        """ln of the volume of cells ``c`` [ln kpc^3]."""
        shell = np.asarray(c, dtype=np.int64) // self.n_sky
        return np.log(self.shell_d3[shell]) + math.log(self.pixel_solid_angle)

    @property
    def cell_volume(self) -> np.ndarray:
        """Volume of every cell [kpc^3], shape (n_cells,)."""
        return np.repeat(self.shell_d3 * self.pixel_solid_angle, self.n_sky)

    def _directions(self, ipix_nest, nside) -> np.ndarray:
        """Unit vectors (N, 3) in the model's axes of NESTED Galactic pixel centres."""
        g = np.column_stack(hp.pix2vec(nside, ipix_nest, nest=True))
        return g @ self.rotation.T

    def draw(self, c, rng) -> np.ndarray:
        """Positions uniform in volume inside cells ``c``.

        Parameters
        ----------
        c : array_like of int, shape (N,)
            Cell indices in [0, n_cells).
        rng : numpy.random.Generator

        Returns
        -------
        numpy.ndarray, shape (N, 3)
            Galactocentric (x, y, z) in the model frame [kpc].
        """
        shell, pix = self.cell_index(c)
        k = _FINE_ORDER - self.order
        sub = pix * (1 << (2 * k)) + rng.integers(0, 1 << (2 * k), len(pix))
        u = self._directions(sub, 1 << _FINE_ORDER)
        a3, b3 = self.d_edges[shell] ** 3, self.d_edges[shell + 1] ** 3
        d = np.cbrt(a3 + rng.random(len(pix)) * (b3 - a3))
        return u * d[:, None] + self.position

    def probe_points(self, shell: int):
        """Probe points of every pixel of one shell: the pixel's centre at the shell's inner, middle and outer
        distance and its 4 corners at the middle distance; array (7, n_sky, 3) [kpc], model frame."""
        U = self._probe_directions()
        da, db = self.d_edges[shell], self.d_edges[shell + 1]
        dm = 0.5 * (da + db)
        d = np.array([da, dm, db, dm, dm, dm, dm])
        return U[[0, 0, 0, 1, 2, 3, 4]] * d[:, None, None] + self.position

    def _probe_directions(self) -> np.ndarray:
        """Unit vectors (5, n_sky, 3), model axes: pixel centres, then the 4 corners (computed once)."""
        if getattr(self, "_probe_dirs", None) is None:
            pix = np.arange(self.n_sky)
            ctr = self._directions(pix, self.nside)
            corners = hp.boundaries(self.nside, pix, step=1, nest=True)  # (n_sky, 3, 4), Galactic
            corners = np.einsum("ij,njk->kni", self.rotation, corners)  # (4, n_sky, 3)
            self._probe_dirs = np.concatenate([ctr[None], corners])
        return self._probe_dirs

    def _selection_directions(self) -> np.ndarray:
        """Unit vectors (5, n_sky, 3), model axes, where the selection bound is probed: the pixel centres and four
        points just inside the corners (1 % of the way to the centre), so that a sky footprint edge crossing a
        pixel (an APOGEE field's rim) is seen from the pixel's corner inside the footprint."""
        U = self._probe_directions()
        inner = 0.99 * U[1:] + 0.01 * U[0][None]
        inner /= np.linalg.norm(inner, axis=-1, keepdims=True)
        return np.concatenate([U[:1], inner])

    def region_mask(self, bounds) -> np.ndarray:
        """Cells that may meet a region with (R, z) bounds ``(Rmin, Rmax, zmin, zmax)`` [kpc]
        (:meth:`mocksky.model.sampling.regions.Region.bounds`): those whose bounding ball meets the box.

        The ball of cell (shell [d_a, d_b], pixel with centre direction u_0 and largest centre-to-corner angle
        theta) is centred on d_m u_0 (d_m = (d_a + d_b) / 2) with radius max over d in {d_a, d_b} of
        sqrt(d^2 + d_m^2 - 2 d d_m cos theta), which holds the whole cell; the test is conservative (a cell
        outside the region may be kept, a cell meeting it never dropped).

        Returns
        -------
        numpy.ndarray of bool, shape (n_cells,)
        """
        Rmin, Rmax, zmin, zmax = (float(v) for v in bounds)
        U = self._probe_directions()
        cos_t = np.clip(np.einsum("kni,ni->kn", U[1:], U[0]).min(axis=0), -1.0, 1.0) - 1e-12
        out = np.zeros((self.n_d, self.n_sky), dtype=bool)
        for sh in range(self.n_d):
            da, db = self.d_edges[sh], self.d_edges[sh + 1]
            dm = 0.5 * (da + db)
            rad = np.sqrt(np.maximum(np.maximum(da * da + dm * dm - 2 * da * dm * cos_t,
                                                db * db + dm * dm - 2 * db * dm * cos_t), 0.0)) * (1 + 1e-9) + 1e-12
            c = U[0] * dm + self.position
            Rc = np.hypot(c[:, 0], c[:, 1])
            out[sh] = (Rc + rad >= Rmin) & (Rc - rad <= Rmax) & (c[:, 2] + rad >= zmin) & (c[:, 2] - rad <= zmax)
        return out.ravel()

    def _closest_distances(self) -> np.ndarray:
        """Distances (2, 5, n_sky) along the probe directions (:meth:`_probe_directions`) of the points closest to
        the model's z axis (smallest R) and to its centre (smallest r); negative where that point is behind the
        observer (computed once)."""
        if getattr(self, "_closest", None) is None:
            U, P = self._probe_directions(), self.position
            with np.errstate(divide="ignore", invalid="ignore"):
                dR = -(U[..., 0] * P[0] + U[..., 1] * P[1]) / (U[..., 0] ** 2 + U[..., 1] ** 2)
            dR = np.where(np.isfinite(dR), dR, -1.0)
            self._closest = np.stack([dR, -(U @ P)])
        return self._closest

    def density_bounds(self, rho) -> np.ndarray:
        """Largest density at every cell's probe points, rho_c [Msun / kpc^3], shape (n_shells, n_sky).

        A cell's probe points are its pixel's centre and 4 corners (:meth:`_probe_directions`) at the shell's inner,
        middle and outer distance (15 points; the inner and outer ones are shared with the neighbouring shells and
        computed once), and, where the shell holds it, the point of each of those 5 lines of sight closest to the
        model's z axis and to its centre (where a line of sight passes a cusp or the inner disc, the density peaks
        inside the cell, between the shell's ends). On BV23's components, positions drawn uniformly in their cells
        exceed 1.04 rho_c at most (1e6 proposals per component; with the centre-only probes of earlier versions,
        up to 10 rho_c).

        Parameters
        ----------
        rho : callable
            ``rho(R, z)`` [Msun / kpc^3], vectorised.

        Returns
        -------
        numpy.ndarray of float64, shape (n_shells, n_sky)
        """
        U = self._probe_directions()  # (5, n_sky, 3)
        # a pixel corner is shared by ~4 pixels: the density is evaluated once per distinct direction
        Du, inv = np.unique(np.round(U.reshape(-1, 3), 10), axis=0, return_inverse=True)
        Du = U.reshape(-1, 3)[np.unique(inv.ravel(), return_index=True)[1]]
        inv = inv.reshape(len(U), -1)

        def _max_at(d):  # largest density over the 5 directions of every pixel at distance d
            xyz = Du * float(d) + self.position
            r = np.asarray(rho(np.hypot(xyz[:, 0], xyz[:, 1]), xyz[:, 2]), dtype=np.float64)
            return np.where(np.isfinite(r) & (r > 0), r, 0.0)[inv].max(axis=0)

        edge = np.array([_max_at(d) for d in self.d_edges])  # (n_d + 1, n_sky)
        mid = np.array([_max_at(0.5 * (self.d_edges[sh] + self.d_edges[sh + 1])) for sh in range(self.n_d)])
        rho_c = np.maximum(np.maximum(edge[:-1], edge[1:]), mid)
        # the closest points to the axis and to the centre, in the shell that holds them
        dc = self._closest_distances().reshape(-1)  # (2 * 5 * n_sky,)
        kk = np.tile(np.repeat(np.arange(len(U)), self.n_sky), 2)
        pix = np.tile(np.arange(self.n_sky), 2 * len(U))
        ok = (dc > 0) & (dc < self.d_edges[-1])
        dc, kk, pix = dc[ok], kk[ok], pix[ok]
        if len(dc):
            xyz = U[kk, pix] * dc[:, None] + self.position
            r = np.asarray(rho(np.hypot(xyz[:, 0], xyz[:, 1]), xyz[:, 2]), dtype=np.float64)
            r = np.where(np.isfinite(r) & (r > 0), r, 0.0)
            sh = np.clip(np.searchsorted(self.d_edges, dc, side="right") - 1, 0, self.n_d - 1)
            np.maximum.at(rho_c, (sh, pix), r)
        return rho_c

    def initial_probabilities(self, rho, selection=None, eps: float = 0.01, bounds=None):
        """Starting cell probabilities and upper bounds of the selection in every cell.

        Per cell c: rho_c = the largest density at the cell's probe points (:meth:`density_bounds`); S_c = the
        largest selection at the shell's inner distance in five directions: the pixel's centre and just inside its
        four corners (an upper bound of S over the cell for a magnitude limit behind a dust map whose pixels contain
        ours, see the module docstring; the corners catch most pixels that a footprint's edge crosses); P_c = (1 - eps)
        m_c / sum(m) + eps d_c / sum(d), with m_c = V_c rho_c S_c and d_c = V_c rho_c (the defensive part keeps
        q_x > 0 wherever the component has mass).

        Parameters
        ----------
        rho : callable
            ``rho(R, z)`` [Msun / kpc^3], vectorised.
        selection : callable, optional
            ``selection(posvel (N, 6)) -> (N,)`` in [0, 1] (velocities are passed as 0: a selection used with
            heliocentric cells must depend on position only).
        eps : float
            Defensive fraction in (0, 1) (default 0.01).
        bounds : tuple of 4 floats, optional
            (R, z) bounds of the sampling region, ``(Rmin, Rmax, zmin, zmax)`` [kpc]: cells that cannot meet it
            (:meth:`region_mask`) get probability 0 (they would only propose points outside the region).

        Returns
        -------
        P : numpy.ndarray of float64, shape (n_cells,)
            Probabilities summing to 1.
        S_up : numpy.ndarray of float32, shape (n_cells,)
            Upper bounds of the selection per cell (1 without a selection; rounded up to float32).
        rho_up : numpy.ndarray of float32, shape (n_cells,)
            Density bounds per cell, k rho_c with k = 1.1 (the probes miss at most 4 % on BV23's components)
            [Msun / kpc^3], rounded up to float32: the sampler thins a position x in cell c with probability
            rho(x) / rho_up,c, then S(x) / S_c, before its velocity is drawn.

        Raises
        ------
        ValueError
            If the density is zero in every cell or ``eps`` is outside (0, 1).
        """
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps: need a defensive fraction in (0, 1), got {eps!r}")
        rho_c = self.density_bounds(rho)
        S_up = np.ones((self.n_d, self.n_sky), dtype=np.float32)
        sdir = self._selection_directions()
        if selection is not None:
            for sh in range(1, self.n_d):
                pv = np.zeros((len(sdir) * self.n_sky, 6))
                pv[:, :3] = sdir.reshape(-1, 3) * self.d_edges[sh] + self.position
                sv = np.clip(np.asarray(selection(pv), dtype=np.float64), 0.0, 1.0).reshape(len(sdir), -1).max(axis=0)
                S_up[sh] = np.nextafter(sv.astype(np.float32), np.float32(2))  # never rounded below S
                S_up[sh][sv <= 0] = 0.0
        S_up = np.minimum(S_up, np.float32(1.0)).ravel()
        d = (rho_c * (self.shell_d3 * self.pixel_solid_angle)[:, None]).ravel()
        if bounds is not None:
            d = d * self.region_mask(bounds)
        m = d * S_up
        if not d.sum() > 0:
            raise ValueError("heliocentric cells: the density is zero at every probe point (of the cells that can "
                             "meet the region)")
        P = eps * d / d.sum()
        P += (1 - eps) * (m / m.sum() if m.sum() > 0 else d / d.sum())
        G = _RHO_SAFETY * rho_c.ravel()
        G32 = np.nextafter(np.minimum(G, np.finfo(np.float32).max).astype(np.float32), np.float32(np.inf))
        G32[G <= 0] = 0.0
        return P / P.sum(), S_up, G32

    def describe(self) -> dict:
        return {"nside": self.nside, "n_shells": self.n_d, "d_min": float(self.d_edges[1]),
                "d_max": float(self.d_edges[-1]), "position": self.position.tolist()}
