"""Catalogue recipes: validation names the bad key before any computation; every built-in recipe validates."""
import textwrap

import pytest

from mocksky.recipe import (Recipe, RecipeError, available_recipes, load_recipe, parse_recipe, resolve_recipe)

BUILTIN = ["small_default", "apogee_dr17_gaia", "gaia_dr3_rvs", "gaia_dr3_starcounts", "nbody_ics"]

MINIMAL = """
[model]
source = "bv23"
"""


def _parse(extra: str) -> Recipe:
    return parse_recipe(MINIMAL + textwrap.dedent(extra), source="t.toml")


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_recipes_validate(name):
    assert name in available_recipes()
    r = load_recipe(name)
    assert r.name == name and r.text and r.description
    assert resolve_recipe(name).stem == name
    d = r.to_dict()
    assert d["model"]["source"] == r.model.source and "text" not in d


def test_builtin_recipe_contents():
    apo = load_recipe("apogee_dr17_gaia")
    assert apo.model.source == "bv24_m0" and apo.selection.surveys == ("apogee_dr17",)
    cuts = {c["column"]: c["max"] for c in apo.selection.cuts}
    assert cuts == {"logg": 3.5, "teff": 5500.0, "distance_error": 0.75}
    assert apo.compare.scheme == "bv24" and "apogee_bv24" in apo.errors.models
    assert load_recipe("nbody_ics").populations.mode == "none"
    assert load_recipe("gaia_dr3_starcounts").compare.nside == 32


def test_defaults():
    r = parse_recipe(MINIMAL)
    assert r.populations.mode == "magnitude" and r.populations.limit == 14.0
    assert r.errors.models == ("gaia_dr3", "exact") and r.output.format == "hdf5" and r.compare is None
    with pytest.raises(Exception):
        r.name = "other"  # frozen


@pytest.mark.parametrize("extra, words", [
    ("[seleciton]\nsurveys = []\n", ["unknown key 'seleciton'", "allowed", "selection"]),
    ("[selection]\nsurvey = ['gaia_dr3']\n", ["[selection]", "unknown key 'survey'", "surveys"]),
    ("[selection]\nsurveys = ['gaia_dr9']\n", ["[selection].surveys", "gaia_dr9", "apogee_dr17"]),
    ("[selection]\ncuts = [{type = 'range', colum = 'logg', max = 3.5}]\n", ["[selection].cuts[0]", "colum"]),
    ("[selection]\ncuts = [{type = 'rnage', column = 'logg'}]\n", ["[selection].cuts[0]", "rnage"]),
    ("[populations]\nlimit = '14 mag'\n", ["[populations].limit", "expected a number"]),
    ("[populations]\nlimit = true\n", ["[populations].limit", "expected a number"]),
    ("[populations]\nmode = 'volumetric'\n", ["[populations].mode", "volumetric", "magnitude"]),
    ("[populations]\nband = 'V'\n", ["[populations].band", "'V'", "GRVS"]),
    ("[populations]\nspec = 'nosuch'\n", ["[populations].spec", "nosuch", "bv23"]),
    ("[populations]\nm_min = 0.01\n", ["[populations].m_min", "Msun"]),
    ("[solar]\nname = 'sun'\n", ["[solar].name", "'sun'", "bv24"]),
    ("[dust]\nmap = 'bayestar'\n", ["[dust].map", "bayestar", "combined19"]),
    ("[errors]\nmodels = ['gaia_dr2']\n", ["[errors].models", "gaia_dr2", "gaia_dr3"]),
    ("[errors]\nmodels = 'gaia_dr3'\n", ["[errors].models", "expected an array"]),
    ("[sample]\nregion = {shape = 'cube', side = 1}\n", ["[sample].region", "cube"]),
    ("[sample]\nmax_points = 1e5\n", ["[sample].max_points", "expected an integer"]),
    ("[sample]\nradius = 1.0\n", ["[sample]", "unknown key 'radius'"]),
    ("[sample]\nmethod = 'importance'\n", ["[sample].method", "importance", "weighted"]),
    ("[sample]\nproposal = 'helio'\n", ["[sample].proposal", "helio", "heliocentric"]),
    ("[sample]\nproposal = 'heliocentric'\nazimuth_copies = 8\n", ["[sample].azimuth_copies", "heliocentric"]),
    ("[output]\nformat = 'csv'\n", ["[output].format", "csv", "hdf5"]),
    ("[output]\ncolumns = ['ra', 'declination']\n", ["[output].columns", "declination"]),
    ("[compare]\nscheme = 'bv25'\n", ["[compare].scheme", "bv25", "bv24"]),
    ("[compare]\nscheme = 'healpix'\nnside = 12\n", ["[compare].nside", "power of 2"]),
    ("[compare]\nscheme = 'healpix'\nobserved = 'x.csv'\n", ["[compare].observed", "bv24"]),
    ("[compare]\nscheme = 'bv24'\nobserved = 'missing.csv'\n", ["[compare].observed", "missing.csv"]),
    ("[recipe]\ntitle = 'x'\n", ["[recipe]", "unknown key 'title'"]),
    ("[populations]\nmode = 'none'\n[compare]\nscheme = 'healpix'\n", ["mode = 'none'", "[compare]"]),
])
def test_errors_name_the_key(extra, words):
    with pytest.raises(RecipeError) as ei:
        _parse(extra)
    msg = str(ei.value)
    assert msg.startswith("t.toml: ")
    for w in words:
        assert w in msg, (w, msg)


def test_model_and_toml_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"\[model\].source: 'bv99'.*bv23"):
        parse_recipe("[model]\nsource = 'bv99'\n")
    with pytest.raises(RecipeError, match=r"\[model\]: section required"):
        parse_recipe("[solar]\nname = 'bv23'\n")
    with pytest.raises(RecipeError, match="invalid TOML"):
        parse_recipe("[model\nsource = 'bv23'\n")
    with pytest.raises(RecipeError, match=r"\[model\].iterations: must be >= 1"):
        parse_recipe("[model]\nsource = 'bv23'\niterations = 0\n")
    with pytest.raises(RecipeError, match="not a built-in recipe.*small_default"):
        load_recipe("no_such_recipe")


def test_relative_paths_resolve_against_recipe_dir(tmp_path, bv23_ini):
    (tmp_path / "m.ini").write_text(bv23_ini.read_text())
    f = tmp_path / "mine.toml"
    f.write_text("[model]\nsource = 'm.ini'\n[selection]\nmode = 'sample'\n")
    r = load_recipe(f)
    assert r.model.source == str(tmp_path / "m.ini") and r.name == "mine" and r.selection.mode == "sample"


def test_output_columns_must_cover_compare():
    with pytest.raises(RecipeError, match=r"\[output\].columns: the \[compare\] scheme 'healpix' needs \['b', 'l'"):
        _parse("[output]\ncolumns = ['ra', 'dec', 'phot_g_mean_mag', 'selection_probability']\n"
               "[compare]\nscheme = 'healpix'\n")


def test_survey_file_relative_to_recipe(tmp_path):
    from mocksky.pipeline import build_selection_function
    from mocksky.select import available_surveys

    (tmp_path / "my_survey.toml").write_text(available_surveys()["gaia_dr3"].read_text())
    f = tmp_path / "r.toml"
    f.write_text("[model]\nsource = 'bv23'\n[selection]\nsurveys = ['my_survey.toml', 'apogee_dr17']\n")
    r = load_recipe(f)
    assert r.selection.surveys == (str(tmp_path / "my_survey.toml"), "apogee_dr17")
    assert "phot_g_mean_mag" in build_selection_function(r).required_columns
