"""Stellar populations: ages, masses, chemistry and isochrone photometry of stars at DF samples.

* :mod:`.imf`: Kroupa (2001) / Chabrier (2003) IMFs as exact piecewise power laws;
* :mod:`.sfh`: age distributions (star-formation histories) of components;
* :mod:`.chemistry`: [Fe/H], [alpha/Fe], [M/H] from actions (BV23 eqs. 18-21 / BV24 M0);
* :mod:`.isochrones`: the shipped compact PARSEC grid and its EEP interpolation, remnants, G_RVS;
* :mod:`.populate`: population specs (``mocksky/data/populations/*.toml``), the mass budget and the
  generation of stars at sampled phase-space points (volume-complete or magnitude-limited).
"""
from .chemistry import ChemistryBV23, ChemistryBV24, make_chemistry, read_bv24_params, salaris_mh
from .imf import IMF, chabrier2003, kroupa2001, make_imf
from .isochrones import BANDS, PARSEC_LABELS, PHASE_NAMES, REMNANT_CODES, IsochroneGrid, grvs_from_g_rp, remnant_mass
from .populate import (MODES, ComponentPopulation, MagnitudeSelection, StellarPopulations, expected_counts,
                       load_populations, mass_table, populate, tag_stars)
from .sfh import AGE_KINDS, AgeDistribution, make_age_distribution

__all__ = ["IMF", "kroupa2001", "chabrier2003", "make_imf", "AgeDistribution", "make_age_distribution", "AGE_KINDS",
           "ChemistryBV23", "ChemistryBV24", "make_chemistry", "read_bv24_params", "salaris_mh", "IsochroneGrid",
           "remnant_mass", "grvs_from_g_rp", "BANDS", "PHASE_NAMES", "PARSEC_LABELS", "REMNANT_CODES",
           "ComponentPopulation", "StellarPopulations", "load_populations", "populate", "expected_counts",
           "MagnitudeSelection", "mass_table", "tag_stars", "MODES"]
