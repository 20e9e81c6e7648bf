import numpy as np
import pytest

from mocksky.catalogue import COLUMNS, StarTable, column_unit


def test_gaia_archive_names_and_units():
    for name, unit in [("ra", "deg"), ("parallax", "mas"), ("pmra", "mas/yr"), ("radial_velocity", "km/s"),
                       ("phot_g_mean_mag", "mag"), ("grvs_mag", "mag"), ("parallax_true", "mas"), ("Jphi", "kpc km/s")]:
        assert column_unit(name) == unit
    import astropy.units as u
    for name, col in COLUMNS.items():
        u.Unit(col.unit)  # every unit string parses


def test_star_table_rules():
    t = StarTable({"x": np.zeros(4), "feh": np.linspace(-1, 0, 4)}, meta={"seed": 1})
    assert len(t) == 4 and t.ncols == 2 and t.meta["seed"] == 1
    with pytest.raises(KeyError, match="close matches.*'feh'"):
        t["fe_h"] = np.zeros(4)
    with pytest.raises(ValueError, match="length 3 differs"):
        t["y"] = np.zeros(3)
    sub = t.select(t["feh"] > -0.5)
    assert len(sub) == 2 and sub.meta == t.meta
    assert t.units() == {"x": "kpc", "feh": "dex"}
