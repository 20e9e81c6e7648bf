"""Gaia DR3 selection functions: catalogue completeness in G and the radial-velocity (RVS) sample.

Gaia DR3 completeness (Cantat-Gaudin et al. 2023, A&A 669, A55, "CG23")
----------------------------------------------------------------------
CG23 model the probability that a source of observed magnitude G at a sky position is in Gaia DR3 as a
generalised sigmoid whose three parameters depend only on M10, the median G of the DR3 sources with
``astrometric_matched_transits <= 10`` in the HEALPix pixel containing the position::

    C(G; M10) = 1 - [ (tanh((G - G0) / w) + 1) / 2 ] ** s

    X(M10) = a_X M10 + b_X                            for M10 <= M_lim
           = c_X M10 + (a_X - c_X) M_lim + b_X         for M10 >  M_lim      (X = G0, w, s)

with the best-fit (a, b, c) per parameter and M_lim = 20.52 (:data:`CG23_PARAMETERS`, the values published
with the model in gaiaunlimited 0.3.3). The model is calibrated for 17.5 <~ M10 <~ 21.5; above M10 ~ 22 the
width w becomes negative and the formula is meaningless. We evaluate it as 1 - exp(-s log(1 + exp(-2x))),
x = (G - G0)/w, which is the same function free of the cancellation in tanh(x) + 1 for x << 0. Where
gaiaunlimited's direct evaluation loses digits (x < -5, i.e. G brighter than G0 by more than ~0.8 mag,
C > 0.95) the two differ by up to 4e-3 (at x ~ -18, C ~ 0.99, where the exact value is ours); for |x| < 5
they agree to 1e-10.

Two sources of M10 per pixel (HEALPix order 7, nside 128, NESTED, ICRS):

* ``backend="gaiaunlimited"``: the CG23 map ``allsky_M10_hpx7.hdf5`` read through gaiaunlimited's
  ``DR3SelectionFunctionTCG`` from gaiaunlimited's data directory (``$GAIAUNLIMITED_DATADIR``, default
  ``~/.gaiaunlimited``). mocksky never downloads it: a missing file raises :class:`GaiaDataUnavailable`;
  a 0-byte file (left by a failed gaiaunlimited download) is removed and reported.
* ``backend="maglim"`` (offline, the packaged default): M10 approximated from the Gaia DR2 per-pixel magnitude
  limit of Rybizki et al. (2020, PASP 132, 074501; ``gdr2_completeness``), the G of the peak of the DR2
  magnitude histogram of sources with BP and RP photometry::

      M10 ~ maglim_G + m10_offset,   m10_offset = 0.3 mag (default)

  The offset was set from real DR3 sources: in the 1000-row random Gaia DR3 sample of ``pyia``
  (shared/data/observed/gaia_small), the median of G - maglim_G(pixel) is 0.27 mag for the 3 sources with
  ``astrometric_matched_transits <= 10``, 0.33 mag for the 15 with <= 12 and 0.24 mag for the 49 with <= 15;
  we adopt 0.3 +- 0.1 mag. Consistency check with the definition of maglim: with this offset the counts
  predicted by CG23 for star counts rising as 10**(0.3 G), N(G) ~ 10**(0.3 G) C(G; M10), peak at
  G = maglim for maglim <= 20 and at maglim + 0.1 for maglim = 20.5-20.7 (DR3 slightly deeper than DR2);
  the 50 % completeness magnitude is then maglim + 0.32 (maglim = 18-20) to maglim + 0.40 (maglim = 20.5).
  This is an approximation: it inherits the 0.1-mag quantisation of maglim and the DR2 (22-month)
  scanning-law pattern instead of the DR3 (34-month) one.
* ``backend="auto"``: gaiaunlimited when its file is usable, otherwise maglim (logged).

Gaia DR3 radial-velocity sample
-------------------------------
:class:`GaiaRVSCompleteness` models the extra selection of the stars with a published ``radial_velocity``
(Katz et al. 2023, A&A 674, A5; Sartoretti et al. 2023, A&A 674, A6): RVS spectra were processed to
G_RVS = 14 for stars with 3100 <= Teff <= 6750 K and to G_RVS = 12 for hotter stars up to 14500 K. The
limit was applied to a G_RVS estimate with ~0.1 mag scatter, which we model as a logistic roll-off::

    P_RVS = plateau / (1 + exp((G_RVS - G_lim(Teff)) / width)),  0 outside [teff_min, teff_max]

(plateau = 1, width = 0.1 mag by default). Multiply by :class:`GaiaDR3Completeness` for the full RVS
sample (``selection/gaia_dr3_rvs.toml``). Not modelled: the crowding/scanning-law structure of the RVS
internal completeness (Castro-Ginard et al. 2023, A&A 677, A37; its map is not available offline).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from pathlib import Path
from typing import Dict, Tuple

import numba
import numpy as np

from .. import data as _data
from .._healpix import _ang2pix_nest_one
from .base import SelectionFunction, register

__all__ = [
    "CG23_PARAMETERS", "cg23_completeness", "GaiaDR3Completeness", "GaiaRVSCompleteness", "GaiaDataUnavailable",
    "gaiaunlimited_datadir", "load_gaiaunlimited_m10_map", "load_maglim_m10_map", "GAIAUNLIMITED_M10_FILE",
    "MAGLIM_FILE",
]

log = logging.getLogger(__name__)

#: CG23 best-fit parameters: G0 = (ax, bx, cx), w = (ay, by, cy), s = (az, bz, cz), break at ``lim``
#: (Cantat-Gaudin et al. 2023, Sect. 4; values as distributed with gaiaunlimited 0.3.3).
CG23_PARAMETERS: Dict[str, float] = dict(
    ax=0.9848761394197864, bx=0.6473155510230146, cx=0.6929084598209412,
    ay=-0.003935382139847386, by=0.2230529402297744, cy=-0.09331877468160235,
    az=0.006144107896473064, bz=0.03681705933744438, cz=0.35140564525722895,
    lim=20.519369625540833,
)
_P = np.array([CG23_PARAMETERS[k] for k in ("ax", "bx", "cx", "ay", "by", "cy", "az", "bz", "cz", "lim")])

GAIAUNLIMITED_M10_FILE = "allsky_M10_hpx7.hdf5"
MAGLIM_FILE = "select/gaia_dr2_maglim/maglim_g_nside128.npz"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class GaiaDataUnavailable(_data.DataNotFoundError):
    """The gaiaunlimited CG23 M10 map is missing, empty or unreadable."""


# ---------------------------------------------------------------------------------------------------------
# the CG23 completeness formula
@numba.njit(cache=True, nogil=True, fastmath=False)
def _cg23_one(g, m10, p):
    ax, bx, cx, ay, by, cy, az, bz, cz, lim = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
    if m10 > lim:
        g0 = cx * m10 + (ax - cx) * lim + bx
        w = cy * m10 + (ay - cy) * lim + by
        s = cz * m10 + (az - cz) * lim + bz
    else:
        g0 = ax * m10 + bx
        w = ay * m10 + by
        s = az * m10 + bz
    # 1 - [(tanh(x) + 1) / 2]**s with (tanh(x) + 1) / 2 = 1 / (1 + exp(-2x)), evaluated as
    # 1 - exp(-s log(1 + exp(-2x))) without the cancellation of tanh(x) + 1 for x << 0
    t = -2.0 * (g - g0) / w
    if t > 0.0:
        lb = t + math.log1p(math.exp(-t))
    else:
        lb = math.log1p(math.exp(t))
    return -math.expm1(-s * lb)


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _cg23_arr(g, m10, p, out):
    for i in numba.prange(g.shape[0]):
        if math.isnan(g[i]) or math.isnan(m10[i]):
            out[i] = math.nan
        else:
            out[i] = _cg23_one(g[i], m10[i], p)


@numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
def _cg23_sky(nside, m10map, ra, dec, g, p, out):
    for i in numba.prange(g.shape[0]):
        pix = _ang2pix_nest_one(nside, ra[i], dec[i])
        if pix < 0 or math.isnan(g[i]):
            out[i] = math.nan
            continue
        m10 = m10map[pix]
        if math.isnan(m10):
            out[i] = math.nan
        else:
            out[i] = _cg23_one(g[i], m10, p)


def cg23_completeness(G, m10) -> np.ndarray:
    """Gaia DR3 completeness of CG23 at observed magnitude G in a pixel with median magnitude M10.

    Parameters
    ----------
    G : array_like
        Observed Gaia G magnitude.
    m10 : array_like
        M10 of the pixel [mag] (broadcast against ``G``).

    Returns
    -------
    ndarray of float64
        Completeness in [0, 1] (broadcast shape); NaN where G or M10 is NaN.

    References
    ----------
    Cantat-Gaudin et al. 2023, A&A 669, A55 (generalised sigmoid, piecewise-linear parameters in M10).
    """
    g, m = np.broadcast_arrays(np.asarray(G, dtype=np.float64), np.asarray(m10, dtype=np.float64))
    shape = g.shape
    out = np.empty(g.size)
    _cg23_arr(np.ascontiguousarray(g).ravel(), np.ascontiguousarray(m).ravel(), _P, out)
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------------------
# M10 maps
def gaiaunlimited_datadir() -> Path:
    """gaiaunlimited's data directory: ``$GAIAUNLIMITED_DATADIR`` or ``~/.gaiaunlimited`` (its own rule).

    Computed without importing gaiaunlimited (whose import contacts the Gaia archive through astroquery).
    """
    return Path(os.getenv("GAIAUNLIMITED_DATADIR", "~/.gaiaunlimited")).expanduser().resolve()


def _check_gaiaunlimited_file(path: Path) -> None:
    hint = ("Get it from Zenodo record 8063930 (Cantat-Gaudin et al. 2023) and put it in that directory, "
            "or use backend='maglim'.")
    if not path.is_file():
        raise GaiaDataUnavailable(f"gaiaunlimited M10 map {path.name!r} not found in {path.parent} "
                                  f"(gaiaunlimited data directory, $GAIAUNLIMITED_DATADIR). {hint}")
    if path.stat().st_size == 0:
        try:
            path.unlink()
            what = "removed it"
        except OSError as exc:  # read-only directory
            what = f"could not remove it ({exc}); delete it by hand"
        log.warning("%s is a 0-byte file (a failed gaiaunlimited download): %s", path, what)
        raise GaiaDataUnavailable(f"gaiaunlimited M10 map {path} was an empty file left by a failed download; "
                                  f"{what}. {hint}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head != _HDF5_SIGNATURE:
        raise GaiaDataUnavailable(f"gaiaunlimited M10 map {path} is not an HDF5 file (truncated or failed "
                                  f"download?); delete it. {hint}")


def _dense_map(rows: np.ndarray, source: str) -> Tuple[np.ndarray, int]:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.shape[0] == 0:
        raise GaiaDataUnavailable(f"{source}: expected an (N, 3) array of (order, pixel, M10), got shape {rows.shape}")
    order = rows[:, 0].astype(np.int64)
    if np.any(order != order[0]) or not 0 <= order[0] <= 16:
        raise GaiaDataUnavailable(f"{source}: mixed or invalid HEALPix orders {np.unique(order)[:5]}")
    nside = 2 ** int(order[0])
    npix = 12 * nside * nside
    pix = rows[:, 1].astype(np.int64)
    if pix.min() < 0 or pix.max() >= npix:
        raise GaiaDataUnavailable(f"{source}: pixel index outside [0, {npix})")
    dense = np.full(npix, np.nan)
    dense[pix] = rows[:, 2]
    nmiss = int(np.isnan(dense).sum())
    if nmiss:
        log.warning("%s: %d of %d pixels have no M10; stars there get probability 0", source, nmiss, npix)
    return dense, nside


def load_gaiaunlimited_m10_map() -> Tuple[np.ndarray, int, str]:
    """The CG23 all-sky M10 map (HEALPix order 7) as a dense NESTED array, through gaiaunlimited.

    Reads ``allsky_M10_hpx7.hdf5`` from :func:`gaiaunlimited_datadir` with
    ``gaiaunlimited.selectionfunctions.DR3SelectionFunctionTCG(mode="hpx7")`` (its stdout is captured and
    logged), or directly with h5py (dataset ``data``, rows of (order, pixel, M10)) when gaiaunlimited is not
    installed. Never triggers a download.

    Returns
    -------
    m10 : ndarray of float64, shape (12 nside**2,)
        M10 per NESTED ICRS pixel [mag], NaN where the map has no value.
    nside : int
    source : str
        Path of the file read.

    Raises
    ------
    GaiaDataUnavailable
        If the file is missing, empty (then removed), not HDF5 or malformed.
    """
    path = gaiaunlimited_datadir() / GAIAUNLIMITED_M10_FILE
    _check_gaiaunlimited_file(path)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            from gaiaunlimited.selectionfunctions.surveyTCG import DR3SelectionFunctionTCG
    except ImportError:
        rows = None
    else:
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                rows = DR3SelectionFunctionTCG(mode="hpx7").m10map
        except (OSError, KeyError, ValueError) as exc:
            raise GaiaDataUnavailable(f"gaiaunlimited could not read {path}: {exc}") from exc
    if rows is None:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                rows = f["data"][()]
        except (OSError, KeyError) as exc:
            raise GaiaDataUnavailable(f"could not read dataset 'data' of {path}: {exc}") from exc
    if captured.getvalue().strip():
        log.debug("gaiaunlimited output: %s", captured.getvalue().strip())
    m10, nside = _dense_map(rows, str(path))
    return m10, nside, str(path)


def load_maglim_m10_map(m10_offset: float = 0.3, maglim_file: str = MAGLIM_FILE) -> Tuple[np.ndarray, int, str]:
    """Offline M10 map: Rybizki et al. (2020) Gaia DR2 G magnitude limit + ``m10_offset``.

    Parameters
    ----------
    m10_offset : float
        M10 - maglim_G [mag] (see the module notes for its calibration).
    maglim_file : str
        Data path (resolved by :func:`mocksky.data.find`) or absolute path of the packaged ``.npz``
        (array ``maglim_centimag``, int16 centi-magnitudes, nside 128 NESTED ICRS).

    Returns
    -------
    m10 : ndarray of float64, shape (196608,)
    nside : int
    source : str

    Raises
    ------
    mocksky.data.DataNotFoundError
        If the file is not found.
    """
    p = Path(maglim_file)
    path = p if p.is_absolute() else _data.find(maglim_file, hint="Run scripts/build_select_data.py.")
    with np.load(path) as z:
        maglim = z["maglim_centimag"].astype(np.float64) / 100.0
        nside = int(z["nside"])
    if maglim.shape != (12 * nside * nside,):
        raise ValueError(f"{path}: maglim array of shape {maglim.shape} does not match nside {nside}")
    return maglim + float(m10_offset), nside, str(path)


# ---------------------------------------------------------------------------------------------------------
@register
class GaiaDR3Completeness(SelectionFunction):
    """Probability that a star is in the Gaia DR3 catalogue (CG23 model; see the module notes).

    Parameters
    ----------
    backend : {"auto", "gaiaunlimited", "maglim"}
        Source of the per-pixel M10: the CG23 map through gaiaunlimited, the offline DR2-maglim
        approximation, or the first one available.
    m10_offset : float
        M10 - maglim_G [mag] for the maglim backend (default 0.3).
    magnitude_column : str
        Observed G column (default ``phot_g_mean_mag``).
    maglim_file : str
        Packaged maglim map (data path or absolute path).

    Attributes
    ----------
    backend_used : str
        ``"gaiaunlimited"`` or ``"maglim"``.
    source : str
        File the M10 map came from.
    m10_map : ndarray, shape (12 nside**2,)
    nside : int

    Raises
    ------
    GaiaDataUnavailable
        With ``backend="gaiaunlimited"`` when its M10 file is missing, empty or unreadable.

    Notes
    -----
    Required columns: ``ra``, ``dec`` [deg, ICRS] and the G column. Stars in a pixel without M10 and stars
    with non-finite inputs get probability 0. Throughput ~1e7 stars/s on 2 cores.
    """

    type_name = "gaia_dr3_completeness"
    _BACKENDS = ("auto", "gaiaunlimited", "maglim")

    def __init__(self, backend: str = "auto", m10_offset: float = 0.3, magnitude_column: str = "phot_g_mean_mag",
                 maglim_file: str = MAGLIM_FILE):
        if backend not in self._BACKENDS:
            raise ValueError(f"backend must be one of {list(self._BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.m10_offset = float(m10_offset)
        self.magnitude_column = magnitude_column
        self.maglim_file = maglim_file
        if backend in ("auto", "gaiaunlimited"):
            try:
                self.m10_map, self.nside, self.source = load_gaiaunlimited_m10_map()
                self.backend_used = "gaiaunlimited"
                return
            except GaiaDataUnavailable as exc:
                if backend == "gaiaunlimited":
                    raise
                log.info("Gaia DR3 completeness: using the offline DR2-maglim approximation (%s)", exc)
        self.m10_map, self.nside, self.source = load_maglim_m10_map(self.m10_offset, maglim_file)
        self.backend_used = "maglim"

    @property
    def required_columns(self):
        return ("ra", "dec", self.magnitude_column)

    def _probability(self, cols, n):
        out = np.empty(n)
        _cg23_sky(np.int64(self.nside), self.m10_map, np.ascontiguousarray(cols["ra"]),
                  np.ascontiguousarray(cols["dec"]), np.ascontiguousarray(cols[self.magnitude_column]), _P, out)
        return np.where(np.isnan(out), 0.0, out)

    def m10(self, ra, dec) -> np.ndarray:
        """M10 [mag] of the pixels containing the ICRS positions ``ra``, ``dec`` [deg] (NaN if none)."""
        from .._healpix import ang2pix_nest

        pix = ang2pix_nest(self.nside, ra, dec)
        out = np.full(pix.shape, np.nan)
        ok = pix >= 0
        out[ok] = self.m10_map[pix[ok]]
        return out


@register
class GaiaRVSCompleteness(SelectionFunction):
    """Probability that a Gaia DR3 star has a published radial velocity, given it is in DR3.

    ``P = plateau / (1 + exp((G_RVS - G_lim) / width))`` with ``G_lim = grvs_max_cool`` for
    ``teff_min <= Teff <= teff_hot`` and ``grvs_max_hot`` for ``teff_hot < Teff <= teff_max``, 0 outside
    (Katz et al. 2023, A&A 674, A5). See the module notes.

    Parameters
    ----------
    grvs_column : str
        G_RVS column (default the observed ``grvs_mag``).
    teff_column : str
        Effective-temperature column [K]; ``""`` disables the temperature dependence (G_lim =
        ``grvs_max_cool`` for all stars).
    grvs_max_cool, grvs_max_hot : float
        Processing limits [mag] (14 and 12 in DR3).
    teff_hot, teff_min, teff_max : float
        Temperature boundaries [K] (6750, 3100, 14500 in DR3).
    width : float
        Logistic roll-off width [mag] (>= 0; 0 gives a step, with P = plateau at G_RVS = G_lim).
    plateau : float
        Completeness of bright stars, in [0, 1].
    """

    type_name = "gaia_rvs"

    def __init__(self, grvs_column: str = "grvs_mag", teff_column: str = "teff", grvs_max_cool: float = 14.0,
                 grvs_max_hot: float = 12.0, teff_hot: float = 6750.0, teff_min: float = 3100.0,
                 teff_max: float = 14500.0, width: float = 0.1, plateau: float = 1.0):
        self.grvs_column = grvs_column
        self.teff_column = teff_column
        self.grvs_max_cool = float(grvs_max_cool)
        self.grvs_max_hot = float(grvs_max_hot)
        self.teff_hot = float(teff_hot)
        self.teff_min = float(teff_min)
        self.teff_max = float(teff_max)
        self.width = float(width)
        self.plateau = float(plateau)
        if not self.width >= 0:
            raise ValueError(f"width must be >= 0, got {width}")
        if not 0.0 <= self.plateau <= 1.0:
            raise ValueError(f"plateau must be in [0, 1], got {plateau}")
        if not self.teff_min <= self.teff_hot <= self.teff_max:
            raise ValueError(f"need teff_min <= teff_hot <= teff_max, got {teff_min}, {teff_hot}, {teff_max}")

    @property
    def required_columns(self):
        return (self.grvs_column, self.teff_column) if self.teff_column else (self.grvs_column,)

    def _probability(self, cols, n):
        grvs = cols[self.grvs_column]
        if self.teff_column:
            teff = cols[self.teff_column]
            glim = np.where(teff > self.teff_hot, self.grvs_max_hot, self.grvs_max_cool)
            inside = (teff >= self.teff_min) & (teff <= self.teff_max)
        else:
            glim = self.grvs_max_cool
            inside = np.ones(n, dtype=bool)
        if self.width > 0:
            x = np.clip((grvs - glim) / self.width, -700.0, 700.0)
            p = self.plateau / (1.0 + np.exp(x))
        else:
            p = np.where(grvs <= glim, self.plateau, 0.0)
        return np.where(inside, p, 0.0)
