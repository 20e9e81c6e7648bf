"""Sampling particles (x, v) from action-based distribution functions.

:func:`sample_particles` draws equal-mass particles per component from a composite DF in a
potential (exact rejection sampling with adaptive envelopes, :mod:`.sampler`), optionally inside a
region (:mod:`.regions`) or weighted by a selection function, with importance-sampling estimates
of the sampled masses; :class:`ComponentSampler` is the per-component engine.
"""
from .proposal import ComponentScales, component_scales
from .regions import Annulus, Cylinder, Predicate, Region, Sphere, as_region
from .sampler import (ComponentDiagnostics, ComponentSampler, Particles, allocate_counts, sample_galaxy_model,
                      sample_particles)

__all__ = ["sample_particles", "sample_galaxy_model", "ComponentSampler", "Particles", "ComponentDiagnostics",
           "allocate_counts", "Region", "Sphere", "Cylinder", "Annulus", "Predicate", "as_region", "ComponentScales",
           "component_scales"]
