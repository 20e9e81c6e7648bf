"""Binning catalogues (vaex) and comparing them with observed histograms and star counts."""
from .binning import (COMPONENTS, CellGrid, HealpixCounts, HealpixScheme, VelocityBins, VelocityHistograms,
                      VelocityScheme, bin_healpix, bin_velocities, bv23_cells, bv23_scheme, bv24_cells, cell_moments,
                      moments_rule_scheme, resolve_velocity_columns)
from .likelihood import DEFAULT_P_FLOOR, Comparison, compare_histograms, poisson_quasi_lnlike, schemes_match
from .observed import (BV24Observed, bv24_scheme, compare_catalogue_bv24, histograms_from_frame, load_bv24,
                       scheme_from_frame)

__all__ = [
    "COMPONENTS", "CellGrid", "VelocityBins", "VelocityScheme", "VelocityHistograms", "HealpixScheme",
    "HealpixCounts", "bin_velocities", "bin_healpix", "cell_moments", "bv23_cells", "bv23_scheme", "bv24_cells",
    "moments_rule_scheme", "resolve_velocity_columns", "DEFAULT_P_FLOOR", "Comparison", "compare_histograms",
    "poisson_quasi_lnlike", "schemes_match", "BV24Observed", "load_bv24", "bv24_scheme", "scheme_from_frame",
    "histograms_from_frame", "compare_catalogue_bv24",
]
