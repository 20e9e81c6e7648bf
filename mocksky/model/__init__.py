"""Dynamical models: potentials, action finders, distribution functions, self-consistent iteration."""
