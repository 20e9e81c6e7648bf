"""Self-consistent Galaxy models defined by action-based DFs (BV23 Sect. 4.4; Agama's SelfConsistentModel).

* :mod:`.moments`: density, mean velocity, dispersion tensor and 1D velocity distributions of DFs
  (:class:`VelocityIntegrator`);
* :mod:`.selfconsistent`: components, grid densities and the iteration (:func:`iterate_model`);
* :mod:`.model`: :class:`GalaxyModel` (build, cache, reload) and :func:`model_report` (BV23 Table 4).
"""
from .model import GalaxyModel, default_cache_dir, model_report
from .moments import DFMoments, VelocityIntegrator, df_moments, velocity_distributions
from .selfconsistent import (ComponentSpec, CylindricalGridDensity, IterationRecord, SphericalGridDensity,
                             components_from_ini, iterate_model)

__all__ = ["GalaxyModel", "model_report", "default_cache_dir", "VelocityIntegrator", "DFMoments", "df_moments",
           "velocity_distributions", "ComponentSpec", "CylindricalGridDensity", "SphericalGridDensity",
           "IterationRecord", "components_from_ini", "iterate_model"]
