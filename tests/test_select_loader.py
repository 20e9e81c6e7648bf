"""Survey definitions in selection/*.toml, their validation, and the simple cuts."""
from pathlib import Path

import numpy as np
import pytest

from mocksky.select import (ApogeeDR17, ColourRange, ColumnRange, ConfigError, GaiaDR3Completeness,
                            GaiaRVSCompleteness, MagnitudeRange, ParallaxOverError, Product, available_surveys,
                            build_selection, load_selection, survey)

REPO = Path(__file__).resolve().parent.parent


def test_shipped_surveys():
    found = available_surveys()
    assert {"gaia_dr3", "gaia_dr3_rvs", "apogee_dr17"} <= set(found)
    for name in ("gaia_dr3", "gaia_dr3_rvs", "apogee_dr17"):
        sf = survey(name)
        assert sf.meta["name"] == name and Path(sf.meta["source"]) == REPO / "selection" / f"{name}.toml"
        assert len(sf.meta["references"]) >= 3 and sf.meta["title"]
    assert isinstance(survey("gaia_dr3"), GaiaDR3Completeness)
    rvs = survey("gaia_dr3_rvs")
    assert isinstance(rvs, Product) and [type(f) for f in rvs.factors] == [GaiaDR3Completeness, GaiaRVSCompleteness]
    ap = survey("apogee_dr17")
    assert isinstance(ap, ApogeeDR17) and ap.jk0_limits is True
    # a path works as a name too
    assert isinstance(survey(str(REPO / "selection" / "apogee_dr17.toml")), ApogeeDR17)


def test_unknown_survey_lists_available():
    with pytest.raises(KeyError, match="unknown survey 'gaia_dr4'.*apogee_dr17"):
        survey("gaia_dr4")


def test_user_survey_directory(tmp_path, monkeypatch):
    (tmp_path / "apogee_giants.toml").write_text(
        '[survey]\nname = "apogee_giants"\nreferences = ["this test"]\n\n'
        '[[factor]]\ntype = "apogee_dr17"\n\n'
        '[[factor]]\ntype = "range"\ncolumn = "logg"\nmax = 3.5\n\n'
        '[[factor]]\ntype = "parallax_over_error"\nmin = 5\n')
    monkeypatch.setenv("MOCKSKY_SELECTION_PATH", str(tmp_path))
    sf = survey("apogee_giants")
    assert isinstance(sf, Product) and len(sf.factors) == 3
    assert sf.required_columns[-3:] == ("logg", "parallax", "parallax_error")


@pytest.mark.parametrize("text, match", [
    ('[[factor]]\ntype = "range"\ncolumn = "logg"\nmaximum = 3\n',
     r"unknown key 'maximum' for selection type 'range'; allowed keys: \['type', 'column', 'min', 'max'\]"),
    ('[[factor]]\ntype = "apogee_dr17"\njk0_limit = true\n', r"unknown key 'jk0_limit'.*'jk0_limits'"),
    ('[[factor]]\ntype = "gaia_dr3_completness"\n', r"unknown type 'gaia_dr3_completness'; allowed types: \[.*'gaia_dr3_completeness'"),
    ('[[factor]]\ncolumn = "logg"\n', r"factor\[0\] has no 'type'"),
    ('[[factor]]\ntype = "range"\nmax = 3\n', r"needs key\(s\) \['column'\]"),
    ('[[factor]]\ntype = "range"\ncolumn = "logg"\nmin = 4\nmax = 3\n', r"min = 4.0 exceeds max = 3.0"),
    ('[[factor]]\ntype = "range"\ncolumn = "logg"\n', r"at least one of 'min' and 'max'"),
    ('[[factor]]\ntype = "magnitude_range"\ncolumn = "logg"\nmax = 3\n', r"unit 'dex', not 'mag'"),
    ('[[factor]]\ntype = "magnitude_range"\ncolumn = "g_mag"\nmax = 3\n', r"unknown column 'g_mag'"),
    ('[[factor]]\ntype = "gaia_dr3_completeness"\nbackend = "online"\n', r"backend must be one of"),
    ('[[factor]]\ntype = "apogee_dr17"\njk0_limits = "yes"\n', r"jk0_limits must be true or false"),
    ('[survey]\nname = "x"\nauthor = "me"\n[[factor]]\ntype = "constant"\nvalue = 1\n',
     r"unknown key 'author' in \[survey\]; allowed keys: \['name', 'title', 'description', 'references', 'notes'\]"),
    ('[survey]\nreferences = "one"\n[[factor]]\ntype = "constant"\nvalue = 1\n', r"references must be a list"),
    ('[surveys]\nname = "x"\n', r"unknown top-level key 'surveys'; allowed keys: \['survey', 'factor'\]"),
    ('[survey]\nname = "x"\n', r"no \[\[factor\]\] table"),
    ('[[factor]\n', r"invalid TOML"),
])
def test_validation_errors(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_selection(p)


def test_error_names_the_file_and_factor(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[[factor]]\ntype = "constant"\nvalue = 1\n\n[[factor]]\ntype = "range"\ncolum = "logg"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: factor\[1\]: unknown key 'colum'"):
        load_selection(p)


def test_cuts_closed_intervals_and_nan():
    x = np.array([0.9, 1.0, 2.0, 3.0, 3.1, np.nan])
    np.testing.assert_array_equal(ColumnRange("logg", min=1.0, max=3.0).probability({"logg": x}), [0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(ColumnRange("logg", max=3.0).probability({"logg": x}), [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(ColumnRange("teff", min=4000).probability({"teff": np.array([3999.0, 4000.0])}), [0, 1])
    t = {"j_m": np.array([10.0, 10.4, 10.6]), "k_m": np.array([10.0, 10.0, 10.0])}
    np.testing.assert_array_equal(ColourRange("j_m", "k_m", min=0.5).probability(t), [0, 0, 1])
    m = MagnitudeRange("phot_g_mean_mag", max=17.0).probability({"phot_g_mean_mag": np.array([16.9, 17.0, 17.1])})
    np.testing.assert_array_equal(m, [1, 1, 0])
    with pytest.raises(ValueError, match="same column"):
        ColourRange("j_m", "j_m", min=0)


def test_parallax_over_error():
    sf = ParallaxOverError(5.0)
    t = {"parallax": np.array([1.0, 1.0, 0.4, -1.0, 1.0]), "parallax_error": np.array([0.2, 0.19, 0.1, 0.1, 0.0])}
    np.testing.assert_array_equal(sf.probability(t), [1, 1, 0, 0, 0])  # error <= 0 -> 0
    true = ParallaxOverError(5.0, parallax_column="parallax_true")
    assert true.required_columns == ("parallax_true", "parallax_error")


def test_build_selection_from_dict_sets_meta():
    sf = build_selection({"survey": {"name": "g17"}, "factor": [{"type": "magnitude_range", "column": "phot_g_mean_mag", "max": 17}]})
    assert sf.meta == {"name": "g17", "source": "<dict>"} and isinstance(sf, MagnitudeRange)
