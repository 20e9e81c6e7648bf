"""APOGEE DR17 selection function: exact agreement with gaiaunlimited.apogee_sf, crash case, real footprint."""
import contextlib
import io

import numpy as np
import pytest

from mocksky.catalogue import StarTable
from mocksky.select import ApogeeDR17, apogee_dr17_probability, load_apogee_fields
from mocksky.select.base import MissingColumnError


def _gaiaunlimited_apogee_sf():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        mod = pytest.importorskip("gaiaunlimited.selectionfunctions.apogee")
    return mod.apogee_sf


class _Recorder:
    """Sequence wrapper remembering the last index read: tells at which star apogee_sf raised."""

    def __init__(self, a):
        self.a, self.last = a, -1

    def __len__(self):
        return len(self.a)

    def __getitem__(self, i):
        self.last = i
        return self.a[i]


def run_gaiaunlimited(H, jk, l, b, chunk=5000):
    """gaiaunlimited's apogee_sf on every star; NaN where it raises IndexError (indices returned too)."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    apogee_sf = _gaiaunlimited_apogee_sf()
    pos = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic")
    ref = np.full(len(H), np.nan)
    crashed = []
    todo = [(s, min(len(H), s + chunk)) for s in range(0, len(H), chunk)]
    while todo:
        s, e = todo.pop(0)
        if s >= e:
            continue
        rec = _Recorder(H[s:e])
        try:
            ref[s:e] = apogee_sf(rec, jk[s:e], pos[s:e])
        except IndexError:
            i = s + rec.last
            crashed.append(i)
            todo[:0] = [(s, i), (i + 1, e)]  # stars before i are redone (their results were lost)
    return ref, np.array(sorted(crashed), dtype=int)


def random_stars(n, rng):
    """80 % of the stars within 1.3 field radii of random field centres, 20 % uniform on the sky."""
    f = load_apogee_fields()
    nin = int(0.8 * n)
    k = rng.integers(0, len(f.l), nin)
    # uniform offsets in a disc around the centre (exact spherical offsets via rotation of unit vectors)
    r = np.radians(f.radius[k] * 1.3 * np.sqrt(rng.random(nin)))
    pa = rng.uniform(0, 2 * np.pi, nin)
    l0, b0 = np.radians(f.l[k]), np.radians(f.b[k])
    sb = np.sin(b0) * np.cos(r) + np.cos(b0) * np.sin(r) * np.cos(pa)
    b_in = np.arcsin(np.clip(sb, -1, 1))
    l_in = l0 + np.arctan2(np.sin(pa) * np.sin(r) * np.cos(b0), np.cos(r) - np.sin(b0) * sb)
    l = np.r_[np.degrees(l_in) % 360.0, rng.uniform(0, 360, n - nin)]
    b = np.r_[np.degrees(b_in), np.degrees(np.arcsin(rng.uniform(-1, 1, n - nin)))]
    H = rng.uniform(4.5, 14.2, n)
    jk = rng.uniform(-0.2, 1.8, n)
    return l, b, H, jk


def _agreement(n, seed):
    l, b, H, jk = random_stars(n, np.random.default_rng(seed))
    mine = apogee_dr17_probability(l, b, H, jk, jk0_limits=False)
    ref, crashed = run_gaiaunlimited(H, jk, l, b)
    ran = ~np.isnan(ref)
    return mine, ref, ran, crashed


def test_agrees_exactly_with_gaiaunlimited():
    mine, ref, ran, crashed = _agreement(3000, seed=11)
    assert ran.sum() > 2900 and np.count_nonzero(ref[ran]) > 700  # a meaningful sample: ~1/3 non-zero
    # bit-for-bit, except where gaiaunlimited's two-field rule exceeds 1 (mocksky caps probabilities at 1)
    assert np.array_equal(mine[ran], np.minimum(ref[ran], 1.0))
    assert np.all(mine[crashed] == 0.0)  # where gaiaunlimited raises IndexError, we return 0


@pytest.mark.slow
def test_agrees_exactly_with_gaiaunlimited_1e5():
    mine, ref, ran, crashed = _agreement(100_000, seed=12)
    assert np.array_equal(mine[ran], np.minimum(ref[ran], 1.0)), \
        f"{np.count_nonzero(mine[ran] != np.minimum(ref[ran], 1.0))} mismatches"
    assert np.all(mine[crashed] == 0.0)


def test_gaiaunlimited_crash_case_returns_zero():
    # two overlapping fields, both with zero sampling for this H: gaiaunlimited raises IndexError
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    apogee_sf = _gaiaunlimited_apogee_sf()
    pos = SkyCoord(l=[158.68] * u.deg, b=[-11.68] * u.deg, frame="galactic")
    with pytest.raises(IndexError):
        apogee_sf([12.33], [1.09], pos)
    assert apogee_dr17_probability([158.68], [-11.68], [12.33], [1.09], jk0_limits=False)[0] == 0.0
    assert apogee_dr17_probability([158.68], [-11.68], [12.33], [1.09], jk0_limits=True)[0] == 0.0
    # the same place is inside two fields, and bright stars there are selected
    f = load_apogee_fields()
    c = SkyCoord(l=f.l * u.deg, b=f.b * u.deg, frame="galactic")
    inside = c.separation(pos[0]).deg < f.radius
    assert inside.sum() == 2
    assert apogee_dr17_probability([158.68], [-11.68], [10.0], [1.09])[0] > 0


def test_hand_computed_cases():
    f = load_apogee_fields()
    i = f.names.index("000+17")  # plain field, short cohort 7 <= H < 12.2: fracSampling 0.3391, fracAK 0.9326
    p = apogee_dr17_probability([f.l[i]], [f.b[i]], [10.0], [1.0])
    assert p[0] == 0.3391 * 0.9326
    # H outside 5..13.8, outside the field, colour below JK0min (0.5) with and without the colour limits
    assert apogee_dr17_probability([f.l[i]], [f.b[i]], [13.9], [1.0])[0] == 0
    assert apogee_dr17_probability([f.l[i]], [f.b[i] + 0.81], [10.0], [1.0])[0] == 0  # radius 0.8 deg
    assert apogee_dr17_probability([f.l[i]], [f.b[i]], [10.0], [0.3], jk0_limits=True)[0] == 0
    assert apogee_dr17_probability([f.l[i]], [f.b[i]], [10.0], [0.3], jk0_limits=False)[0] == 0.3391 * 0.9326
    # a colour-binned field: blue and red cohorts differ
    j = int(np.flatnonzero(f.binned & (f.frac[:, 0, 0] != f.frac[:, 1, 0]))[0])
    pb = apogee_dr17_probability([f.l[j]], [f.b[j]], [9.0], [0.6])[0]
    pr = apogee_dr17_probability([f.l[j]], [f.b[j]], [9.0], [1.2])[0]
    assert pb == f.frac[j, 0, 0] * f.ak[j, 0, 0] and pr == f.frac[j, 1, 0] * f.ak[j, 1, 0]


def test_star_table_interface_and_dereddening():
    f = load_apogee_fields()
    i = f.names.index("000+17")
    sf = ApogeeDR17()
    t = StarTable({"l": [f.l[i]] * 3, "b": [f.b[i]] * 3, "h_m": [10.0, 10.0, np.nan], "j_m": [11.0, 11.0, 11.0],
                   "k_m": [10.6, 10.6, 10.6], "a_j": [0.0, 0.3, 0.0], "a_ks": [0.0, 0.1, 0.0]})
    # (J-Ks)0 = 0.4 (below 0.5: not targeted) and 0.4 - 0.2 = 0.2; NaN H -> 0
    assert np.allclose(sf.jk0(t), [0.4, 0.2, 0.4])
    assert np.all(sf.probability(t) == 0)
    t["j_m"] = np.array([11.6, 11.8, 11.6])
    p = sf.probability(t)
    assert p[0] == p[1] == 0.3391 * 0.9326 and p[2] == 0
    del t["a_ks"]
    with pytest.raises(MissingColumnError, match="a_ks"):
        sf.probability(t)


def test_dr14_footprint(shared_data):
    """Real APOGEE DR14 positions: every star inside a field of the DR17 table gets a non-zero probability.

    Probe magnitudes: H = 10.5, (J-Ks)0 = 1.0, inside the short cohort of every field (short cohorts span
    Hmin <= 10 to Hmax >= 11 and all have fracSampling > 0). About half of the DR14 stars lie in pointings
    that are not in the table (Kepler/APOKASC, clusters, Orion, M31, K2, ancillary programmes): the table
    holds only the 495 main-survey grid fields, so those stars get 0.
    """
    from astropy.coordinates import SkyCoord, search_around_sky
    import astropy.units as u

    d = np.load(shared_data / "observed" / "apogee_dr14_footprint" / "gaiadr2_apogeedr14_parallax.npz")
    c = SkyCoord(ra=d["RA"] * u.deg, dec=d["DEC"] * u.deg).galactic
    n = len(c)
    p = apogee_dr17_probability(c.l.deg, c.b.deg, np.full(n, 10.5), np.full(n, 1.0))
    f = load_apogee_fields()
    centres = SkyCoord(l=f.l * u.deg, b=f.b * u.deg, frame="galactic")
    istar, ifield, sep, _ = search_around_sky(c, centres, 1.5 * u.deg)
    inside = np.zeros(n, dtype=bool)
    inside[istar[sep.deg < f.radius[ifield]]] = True
    frac_inside = inside.mean()
    assert 0.48 < frac_inside < 0.50  # measured 0.4898 of 277,371
    assert np.mean(p[inside] > 0) > 0.999  # measured 1.0000
    assert np.all(p[~inside] == 0)


def test_two_field_probability_is_capped_at_one():
    """Fields 270+75 and 277+76 overlap with f1 = 0.7842, f2 = 0.8412 (short cohort): gaiaunlimited's two-field
    rule gives (f1 + f2) - f1 f2 (a1 + a2)/2 = 1.031; mocksky caps it at 1, and the footprint bounds it."""
    from mocksky.select import apogee_dr17_footprint

    l, b = np.array([271.2816550426086]), np.array([76.1169785564253])
    p = apogee_dr17_probability(l, b, np.array([9.0]), np.array([0.7]))
    assert p[0] == 1.0
    assert apogee_dr17_footprint(l, b)[0] == 1.0
