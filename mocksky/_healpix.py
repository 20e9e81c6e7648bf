"""HEALPix NESTED pixel index of sky positions, in numba (no healpy dependency).

Implements the ``ang2pix_nest`` mapping of Górski et al. (2005, ApJ 622, 759, Sect. 4 and 5): the sphere is
cut into 12 base faces (4 around each pole, 4 on the equator), each split into nside x nside pixels whose
(x, y) indices inside the face are bit-interleaved into the NESTED index. Polar caps (|z| > 2/3) and the
equatorial belt use the two projections of the paper. Near the poles (|z| > 0.99), 1 - |z| is obtained from
cos(lat) to avoid cancellation, as in the reference implementation.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["ang2pix_nest"]

_HALFPI = 0.5 * math.pi


@numba.njit(cache=True, nogil=True, fastmath=False)
def _spread_bits(v):
    # put the bits of v (< 2**16) on the even bit positions of the result
    v = v & 0xFFFF
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    v = (v | (v << 1)) & 0x55555555
    return v


@numba.njit(cache=True, nogil=True, fastmath=False)
def _ang2pix_nest_one(nside, lon_deg, lat_deg):
    """NESTED pixel of one position (lon, lat in degrees); -1 for non-finite input."""
    if not (math.isfinite(lon_deg) and math.isfinite(lat_deg)):
        return -1
    lat = math.radians(lat_deg)
    z = math.sin(lat)
    za = abs(z)
    lon = math.radians(lon_deg) % (2.0 * math.pi)
    tt = lon / _HALFPI  # in [0, 4)
    if tt >= 4.0:
        tt = 0.0
    if za <= 2.0 / 3.0:
        t1 = nside * (0.5 + tt)
        t2 = nside * (z * 0.75)
        jp = np.int64(t1 - t2)  # index of the ascending edge line
        jm = np.int64(t1 + t2)  # index of the descending edge line
        ifp = jp // nside
        ifm = jm // nside
        if ifp == ifm:
            face = ifp | 4
        elif ifp < ifm:
            face = ifp
        else:
            face = ifm + 8
        ix = jm & (nside - 1)
        iy = nside - (jp & (nside - 1)) - 1
    else:
        ntt = np.int64(tt)
        if ntt > 3:
            ntt = 3
        tp = tt - ntt
        if za > 0.99:
            tmp = nside * math.cos(lat) / math.sqrt((1.0 + za) / 3.0)
        else:
            tmp = nside * math.sqrt(3.0 * (1.0 - za))
        jp = np.int64(tp * tmp)
        jm = np.int64((1.0 - tp) * tmp)
        if jp > nside - 1:
            jp = nside - 1
        if jm > nside - 1:
            jm = nside - 1
        if z >= 0:
            face = ntt
            ix = nside - jm - 1
            iy = nside - jp - 1
        else:
            face = ntt + 8
            ix = jp
            iy = jm
    return face * nside * nside + _spread_bits(ix) + 2 * _spread_bits(iy)


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _ang2pix_nest_arr(nside, lon, lat, out):
    for i in numba.prange(lon.shape[0]):
        out[i] = _ang2pix_nest_one(nside, lon[i], lat[i])


def ang2pix_nest(nside: int, lon_deg, lat_deg) -> np.ndarray:
    """HEALPix NESTED pixel indices.

    Parameters
    ----------
    nside : int
        HEALPix resolution, a power of 2 not above 2**16.
    lon_deg, lat_deg : array_like, shape (n,)
        Longitude and latitude [deg] in the frame the map is defined in (e.g. ICRS ra, dec).

    Returns
    -------
    ndarray of int64, shape (n,)
        Pixel index in [0, 12 nside**2); -1 where an input is not finite.

    Raises
    ------
    ValueError
        If ``nside`` is not a power of 2 in [1, 65536].
    """
    nside = int(nside)
    if nside < 1 or nside > 65536 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of 2 in [1, 65536], got {nside}")
    lon = np.ascontiguousarray(lon_deg, dtype=np.float64).ravel()
    lat = np.ascontiguousarray(lat_deg, dtype=np.float64).ravel()
    if lon.shape != lat.shape:
        raise ValueError(f"lon and lat differ in shape: {lon.shape} vs {lat.shape}")
    out = np.empty(lon.shape[0], dtype=np.int64)
    _ang2pix_nest_arr(np.int64(nside), lon, lat, out)
    return out
