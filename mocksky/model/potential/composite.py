"""Sum of potentials."""
from __future__ import annotations

import numpy as np

from .base import Potential, _bcast


class Composite(Potential):
    """Sum of axisymmetric potentials, Phi = sum_k Phi_k.

    Parameters
    ----------
    components : sequence of Potential
        Nested composites are flattened.

    Raises
    ------
    TypeError
        If a component is not a :class:`Potential`.
    ValueError
        If no component is given.
    """

    def __init__(self, components, name: str = ""):
        flat = []
        for c in components:
            if not isinstance(c, Potential):
                raise TypeError(f"Composite components must be Potential instances, got {type(c).__name__}")
            flat.extend(c.components if isinstance(c, Composite) else [c])
        if not flat:
            raise ValueError("Composite needs at least one component")
        self.components = flat
        self.spherical = all(c.spherical for c in flat)
        self.name = name

    def _phi(self, R, z):
        R, z = _bcast(R, z)
        return sum(c._phi(R, z) for c in self.components)

    def _grad(self, R, z):
        R, z = _bcast(R, z)
        gR = np.zeros(R.shape)
        gz = np.zeros(R.shape)
        for c in self.components:
            a, b = c._grad(R, z)
            gR = gR + a
            gz = gz + b
        return gR, gz

    def _hess(self, R, z):
        R, z = _bcast(R, z)
        out = [np.zeros(R.shape) for _ in range(3)]
        for c in self.components:
            for i, h in enumerate(c._hess(R, z)):
                out[i] = out[i] + h
        return tuple(out)

    def _density(self, R, z):
        R, z = _bcast(R, z)
        return sum(c._density(R, z) for c in self.components)

    def __len__(self) -> int:
        return len(self.components)

    def __getitem__(self, i) -> Potential:
        return self.components[i]
