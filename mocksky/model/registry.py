"""Built-in Galaxy models, addressable by name. Each is an Agama INI file shipped as package data."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

from .. import data


@dataclass(frozen=True)
class BuiltinModel:
    """A named model file with its reference.

    ``grids`` maps DF labels to the ``[SelfConsistentModel <label>]`` section whose grid represents their
    density when the authors' code differs from the default mapping of
    :func:`mocksky.model.galaxy.components_from_ini`; ``grids_reference`` says where that comes from.
    """

    name: str
    relpath: str
    reference: str
    description: str
    grids: Dict[str, str] = field(default_factory=dict)
    grids_reference: str = ""

    @property
    def path(self) -> Path:
        return data.find(self.relpath)


MODELS: Dict[str, BuiltinModel] = {
    "bv23": BuiltinModel(
        "bv23",
        "models/bv23/SCM_MW.ini",
        "Binney & Vasiliev 2023, MNRAS 520, 1832 (arXiv:2206.03523)",
        "Self-consistent Milky Way: 4 discs, bulge, stellar halo, dark halo (DF) + static gas disc",
    ),
    "bv24_m0": BuiltinModel(
        "bv24_m0",
        "models/bv24_m0/m.ini",
        "Binney & Vasiliev 2024, MNRAS 527, 1915 (arXiv:2306.11602), model M0",
        "Chemodynamical Milky Way model M0: taperExp discs and bulge, SinDoublePowerLaw haloes, gas disc",
        grids={"bulge": "disk"},
        grids_reference="GalacticDynamics-Oxford/AgamaChemo mains/getPhi.cpp: the six stellar DFs (bulge included) "
                        "form one ComponentWithDisklikeDF on [SelfConsistentModel disk]; [SelfConsistentModel bulge] "
                        "is not used (on its lmax = 4 spherical grid the flattened bulge loses ~7% of its mass)",
    ),
}


def resolve_model_file(source: Union[str, os.PathLike]) -> Path:
    """Path of an INI file given a built-in model name or a path.

    Raises
    ------
    FileNotFoundError
        If ``source`` is neither a built-in name (listed in the message) nor an existing file.
    """
    key = str(source)
    if key.lower() in MODELS:
        return MODELS[key.lower()].path
    p = Path(source)
    if p.is_file():
        return p
    raise FileNotFoundError(
        f"model {key!r}: not a built-in model name (allowed: {sorted(MODELS)}) nor an existing INI file"
    )


def builtin_grids(source) -> Optional[Dict[str, str]]:
    """The grid override of a built-in model name (None for other sources)."""
    if isinstance(source, str) and source.lower() in MODELS:
        return dict(MODELS[source.lower()].grids) or None
    return None
