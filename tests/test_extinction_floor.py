"""ExtinctionFloor: a lower bound of band extinctions, and magnitude-limited populate with it is complete."""
import numpy as np
import pytest

from mocksky.observe import ExtinctionFloor, ExtinctionModel, observe
from mocksky.observe.dust import dust_map
from mocksky.populate import load_populations, populate


def test_floor_is_a_lower_bound_and_monotone():
    rng = np.random.default_rng(3)
    n = 100_000
    l, b = rng.uniform(0, 360, n), rng.uniform(-10, 10, n)
    d = rng.uniform(0.01, 30, n)
    teff = np.exp(rng.uniform(np.log(2500), np.log(40000), n))
    a0 = dust_map("combined19").a0(l, b, d)
    assert a0.max() > 10  # the test reaches the heavily extincted plane
    for band in ("G", "BP", "RP", "GRVS", "J", "H", "Ks"):
        f = ExtinctionFloor(band)
        A = ExtinctionModel().extinction(band.lower(), a0, teff)
        fl = f(l, b, d)
        assert np.all(fl <= A), band
        assert np.all(fl >= 0)
        # not a trivial bound: within 30 % of the hottest-to-coolest spread (G: k ranges ~0.6-0.95)
        big = a0 > 1
        assert np.median(fl[big] / A[big]) > 0.7, band
        grid = np.linspace(0, 40, 2001)
        assert np.all(np.diff(f.from_a0(grid)) >= 0), band


def test_floor_errors():
    with pytest.raises(KeyError, match="allowed"):
        ExtinctionFloor("V")
    with pytest.raises(ValueError, match="margin"):
        ExtinctionFloor("G", margin=-0.1)
    with pytest.raises(KeyError):
        ExtinctionFloor("G", dust="nosuchmap")


def test_magnitude_limited_populate_with_floor_is_complete():
    """Same points, populated with the floor or with no extinction, then observed through Combined19 and cut at
    the extincted limit: the star counts agree within Poisson noise, and the floor generates far fewer stars."""
    pops = load_populations("bv23")
    rng = np.random.default_rng(7)
    n = 60_000
    sun = np.array([-8.27, 0.0, 0.0])
    # towards the inner Galaxy in the plane (l in [20, 40] deg, |b| < 2 deg), 0.5-4 kpc: A0 up to several mag
    l, b = np.radians(rng.uniform(20, 40, n)), np.radians(rng.uniform(-2, 2, n))
    d = rng.uniform(0.5, 4.0, n)
    pos = sun + np.column_stack([d * np.cos(b) * np.cos(l), -d * np.cos(b) * np.sin(l), d * np.sin(b)])
    vel = np.column_stack([rng.normal(0, 30, n), rng.normal(230, 25, n), rng.normal(0, 20, n)])
    act = np.column_stack([rng.exponential(30, n), rng.exponential(20, n), rng.normal(1950, 250, n)])
    pts = {"posvel": np.hstack([pos, vel]), "actions": act, "component": np.zeros(n, dtype=int),
           "component_names": ("old disk",), "mass": np.full(n, 2.0)}
    lim = 14.0
    counts, generated = {}, {}
    for key, ext in (("none", None), ("floor", ExtinctionFloor("G", "combined19"))):
        tab = populate(pts, pops, mode="magnitude", limit=lim, extinction=ext, rng=11 if ext is None else 12,
                       solar="bv23")
        generated[key] = len(tab)
        observe(tab, solar="bv23", dust="combined19", errors=["exact"], rng=1)
        counts[key] = int(np.count_nonzero(np.asarray(tab["phot_g_mean_mag_true"]) <= lim))
    a, c = counts["none"], counts["floor"]
    assert a > 300
    assert abs(a - c) < 4 * np.sqrt(a + c), counts
    assert generated["floor"] < 0.6 * generated["none"], generated
