"""Contract shared by every selection function: shape, range, NaN policy, missing-column errors, composition."""
import numpy as np
import pytest

from mocksky.catalogue import StarTable
from mocksky.select import (REGISTRY, ApogeeDR17, ColourRange, ColumnRange, Constant, GaiaDR3Completeness,
                            GaiaRVSCompleteness, MagnitudeRange, MissingColumnError, ParallaxOverError, Product,
                            build_selection, load_apogee_fields, survey)


def mock_table(n, seed=0):
    """Plausible star table; half of the stars near APOGEE field centres so every function is exercised."""
    rng = np.random.default_rng(seed)
    f = load_apogee_fields()
    k = rng.integers(0, len(f.l), n // 2)
    l = np.r_[f.l[k] + rng.normal(0, 0.5, n // 2), rng.uniform(0, 360, n - n // 2)] % 360
    b = np.clip(np.r_[f.b[k] + rng.normal(0, 0.5, n // 2), np.degrees(np.arcsin(rng.uniform(-1, 1, n - n // 2)))], -90, 90)
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    icrs = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
    h = rng.uniform(4.0, 15.0, n)
    a_ks = rng.exponential(0.1, n)
    plx = rng.exponential(0.5, n)
    g = h + rng.uniform(1.0, 8.0, n)
    return StarTable({
        "ra": icrs.ra.deg, "dec": icrs.dec.deg, "l": l, "b": b,
        "phot_g_mean_mag": g, "grvs_mag": g - rng.uniform(0.3, 1.5, n), "teff": rng.uniform(3000, 16000, n),
        "logg": rng.uniform(0.0, 5.0, n),
        "h_m": h, "j_m": h + rng.uniform(0.3, 1.2, n), "k_m": h - rng.uniform(0.0, 0.3, n),
        "a_j": 2.5 * a_ks, "a_ks": a_ks,
        "parallax": plx + rng.normal(0, 0.1, n), "parallax_error": rng.uniform(0.01, 0.3, n),
    })


def instances():
    return {
        "range": ColumnRange("logg", max=3.5),
        "magnitude_range": MagnitudeRange("phot_g_mean_mag", min=8.0, max=17.0),
        "colour_range": ColourRange("j_m", "k_m", min=0.5),
        "parallax_over_error": ParallaxOverError(5.0),
        "constant": Constant(0.3),
        "gaia_dr3_completeness": GaiaDR3Completeness(backend="maglim"),
        "gaia_rvs": GaiaRVSCompleteness(),
        "apogee_dr17": ApogeeDR17(),
        "apogee_dr17_gaiaunlimited": ApogeeDR17(jk0_limits=False),
        "survey:gaia_dr3": survey("gaia_dr3"),
        "survey:gaia_dr3_rvs": survey("gaia_dr3_rvs"),
        "survey:apogee_dr17": survey("apogee_dr17"),
        "product": ApogeeDR17() * ColumnRange("logg", max=3.5) * 0.5,
    }


INSTANCES = instances()
TABLE = mock_table(20_000)


def test_every_registered_type_is_covered():
    assert set(REGISTRY) <= set(INSTANCES)


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_shape_range_and_dtype(name):
    sf = INSTANCES[name]
    p = sf.probability(TABLE)
    assert p.dtype == np.float64 and p.shape == (len(TABLE),)
    assert np.all((p >= 0) & (p <= 1))
    assert np.array_equal(sf(dict(TABLE)), p)  # plain dicts work too, __call__ = probability
    if name != "constant":
        assert p.min() < 0.01 and p.max() > 0.2, "the mock table should exercise both outcomes"
    empty = {c: np.empty(0) for c in TABLE}
    assert sf.probability(empty).shape == (0,)


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_non_finite_inputs_give_zero(name):
    sf = INSTANCES[name]
    for col in sf.required_columns:
        for bad in (np.nan, np.inf, -np.inf):
            t = {c: np.array(v[:50], dtype=float) for c, v in TABLE.items()}
            t[col][::3] = bad
            p = sf.probability(t)
            assert np.all(p[::3] == 0), f"{col} = {bad}"
            keep = np.ones(50, dtype=bool)
            keep[::3] = False
            assert np.array_equal(p[keep], sf.probability({c: v[:50] for c, v in TABLE.items()})[keep])


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_missing_column_is_named(name):
    sf = INSTANCES[name]
    for col in sf.required_columns:
        t = {c: v for c, v in TABLE.items() if c != col}
        with pytest.raises(MissingColumnError, match=f"'{col}'"):
            sf.probability(t)


def test_bad_shapes():
    sf = ColumnRange("logg", max=3.5)
    with pytest.raises(ValueError, match="1D"):
        sf.probability({"logg": np.zeros((2, 2))})
    sf2 = ColourRange("j_m", "k_m", min=0.5)
    with pytest.raises(ValueError, match="rows"):
        sf2.probability({"j_m": np.zeros(3), "k_m": np.zeros(4)})
    with pytest.raises(TypeError, match="mapping"):
        sf.probability(np.zeros(3))


def test_product_and_constant():
    a, b = INSTANCES["apogee_dr17"], ColumnRange("logg", max=3.5)
    prod = a * b
    assert isinstance(prod, Product) and len((prod * Constant(0.5)).factors) == 3  # flattened
    np.testing.assert_array_equal(prod.probability(TABLE), a.probability(TABLE) * b.probability(TABLE))
    assert set(prod.required_columns) == set(a.required_columns) | {"logg"}
    np.testing.assert_allclose((0.25 * a).probability(TABLE), 0.25 * a.probability(TABLE))
    np.testing.assert_allclose((a * 0.25).probability(TABLE), 0.25 * a.probability(TABLE))
    with pytest.raises(TypeError):
        a * "x"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Constant(1.5)


@pytest.mark.parametrize("name", [n for n in sorted(INSTANCES) if not n.startswith(("survey:", "product"))])
def test_config_round_trip(name):
    sf = INSTANCES[name]
    again = build_selection({"factor": [sf.config()]})
    assert type(again) is type(sf)
    np.testing.assert_array_equal(again.probability(TABLE), sf.probability(TABLE))


def test_apply_and_sample():
    t = mock_table(5000, seed=1)
    a, b = INSTANCES["gaia_dr3_completeness"], INSTANCES["gaia_rvs"]
    a.apply(t)
    b.apply(t)  # multiplies the existing column
    np.testing.assert_allclose(t["selection_probability"], (a * b).probability(t))
    m1 = (a * b).sample(t, rng=42)
    m2 = (a * b).sample(t, rng=np.random.default_rng(42))
    assert m1.dtype == bool and np.array_equal(m1, m2)
    p = t["selection_probability"]
    assert abs(m1.sum() - p.sum()) < 5 * np.sqrt(np.sum(p * (1 - p))) + 1


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_footprint_bounds_probability(name):
    """footprint(l, b) is in [0, 1] and never below the probability of a star at (l, b); APOGEE's is 0 away from
    every field and positive at every field centre, and reached by some star there."""
    sf = INSTANCES[name]
    fp = sf.footprint(TABLE["l"], TABLE["b"])
    p = sf.probability(TABLE)
    assert fp.shape == p.shape and np.all((fp >= 0) & (fp <= 1))
    assert np.all(p <= fp + 1e-12)
    if "apogee" in name or name == "product":
        f = load_apogee_fields()
        assert np.all(sf.footprint(f.l, f.b) > 0)
        assert 0.001 < fp.mean() < 0.9 and np.any(fp == 0)
        inside = fp > 0
        assert np.max(p[inside] / fp[inside]) > 0.4  # a tight bound somewhere
