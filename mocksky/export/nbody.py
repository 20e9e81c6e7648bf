"""Writers of sampled models as N-body snapshots: Gadget-4 HDF5, Agama/NEMO text, plain HDF5 table.

All writers are atomic: the file is written under a temporary name in the target directory and
moved into place with :func:`os.replace` only when complete, so an error never leaves a
half-written file (nor replaces an existing one).

Gadget-4 particle types
-----------------------
Gadget groups particles in six types; mocksky's default mapping of component names (matched
case-insensitively on words of the name) is

========================  =====  =========================================
component name contains   type   example (BV23)
========================  =====  =========================================
"dark" or a bare "halo"   1      dark halo
"disk" / "disc"           2      young/middle/old/highA disk, thin/thick disc
"bulge"                   3      bulge
"stellar" + "halo"        4      stellar halo
========================  =====  =========================================

Type 0 (gas, which needs SPH fields) and 5 are never used by default. Override or complete the
mapping with ``part_types={"component name": type}``; a component the rules cannot place raises
an error naming it.

References
----------
Springel et al. 2021, MNRAS 506, 2871 (GADGET-4) and its documentation, "Snapshot file format".
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["export_nbody", "write_gadget4", "write_text", "write_hdf5_table", "gadget_part_types",
           "FORMATS", "KPC_IN_CM", "MSUN_IN_G", "KMS_IN_CM_PER_S"]

#: 1 kpc in cm (IAU 2012 au and parsec definitions, as astropy).
KPC_IN_CM = 3.0856775814913673e21
#: 1 Msun in g (IAU 2015 nominal GM_sun / CODATA 2018 G, as astropy).
MSUN_IN_G = 1.988409870698051e33
#: 1 km/s in cm/s.
KMS_IN_CM_PER_S = 1.0e5

FORMATS = ("gadget4", "text", "hdf5")


# --------------------------------------------------------------------------- input
def _as_arrays(particles):
    """(posvel (N, 6), mass (N,), component (N,) int, names tuple, actions or None) from a
    :class:`~mocksky.model.sampling.Particles` or a mapping with the same keys."""
    get = (lambda k, d=None: particles.get(k, d)) if isinstance(particles, Mapping) else \
        (lambda k, d=None: getattr(particles, k, d))
    posvel = get("posvel")
    mass = get("mass")
    if posvel is None or mass is None:
        raise ValueError("particles: need 'posvel' (N, 6) [kpc, km/s] and 'mass' (N,) [Msun]")
    posvel = np.asarray(posvel, dtype=np.float64)
    mass = np.asarray(mass, dtype=np.float64)
    n = len(posvel)
    if posvel.ndim != 2 or posvel.shape[1] != 6:
        raise ValueError(f"particles.posvel: expected shape (N, 6), got {posvel.shape}")
    if mass.shape != (n,):
        raise ValueError(f"particles.mass: expected shape ({n},), got {mass.shape}")
    if not (np.all(np.isfinite(posvel)) and np.all(np.isfinite(mass))):
        raise ValueError("particles: positions, velocities and masses must be finite")
    comp = get("component")
    comp = np.zeros(n, dtype=np.int64) if comp is None else np.asarray(comp).astype(np.int64)
    if comp.shape != (n,):
        raise ValueError(f"particles.component: expected shape ({n},), got {comp.shape}")
    names = get("component_names")
    if names is None:
        names = tuple(f"component{i}" for i in range(int(comp.max()) + 1 if n else 1))
    names = tuple(str(s) for s in names)
    if n and (comp.min() < 0 or comp.max() >= len(names)):
        raise ValueError(f"particles.component: indices must be in [0, {len(names)}) (component_names {names})")
    actions = get("actions")
    if actions is not None:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (n, 3):
            actions = None
    return posvel, mass, comp, names, actions


class _AtomicPath:
    """Context manager yielding a temporary path beside ``path``; renamed onto it on success."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # mkstemp creates the file private (0600): give it the usual permissions
            umask = os.umask(0o022)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        else:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass
        return False


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is installed in the test environment
        raise ImportError("HDF5 output needs the h5py package: pip install h5py") from exc
    return h5py


# --------------------------------------------------------------------------- Gadget-4
def _default_part_type(name: str) -> Optional[int]:
    words = name.lower().replace("_", " ").replace("-", " ").split()
    if "stellar" in words and "halo" in words:
        return 4
    if "dark" in words or words == ["halo"] or ("halo" in words and "stellar" not in words):
        return 1
    if "bulge" in words:
        return 3
    if "disk" in words or "disc" in words or any(w.endswith(("disk", "disc")) for w in words):
        return 2
    return None


def gadget_part_types(names: Sequence[str], part_types: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Gadget particle type of each component (default rules of the module docstring + overrides).

    Parameters
    ----------
    names : sequence of str
        Component names.
    part_types : mapping, optional
        ``{component name: type}`` overriding the defaults (types 0-5).

    Returns
    -------
    dict
        ``{name: type}`` for every name.

    Raises
    ------
    ValueError
        A type outside 0-5, an override naming an unknown component, or a component the default
        rules cannot place (named, with the override to use).
    """
    part_types = dict(part_types or {})
    unknown = set(part_types) - set(names)
    if unknown:
        raise ValueError(f"part_types: unknown component(s) {sorted(unknown)}; components are {list(names)}")
    out = {}
    missing = []
    for nm in names:
        t = part_types.get(nm, _default_part_type(nm))
        if t is None:
            missing.append(nm)
            continue
        if int(t) != t or not 0 <= int(t) <= 5:
            raise ValueError(f"part_types[{nm!r}] = {t!r}: Gadget particle types are integers 0-5")
        out[nm] = int(t)
    if missing:
        raise ValueError(f"no default Gadget particle type for component(s) {missing}; pass "
                         f"part_types={{{', '.join(repr(m) + ': <0-5>' for m in missing)}}}")
    return out


def write_gadget4(particles, path, *, part_types: Optional[Mapping[str, int]] = None, time: float = 0.0,
                  redshift: float = 0.0, box_size: float = 0.0, mass_unit_msun: float = 1.0,
                  double_precision: bool = True, id_offset: int = 1) -> Path:
    """Write a Gadget-4 HDF5 snapshot (usable as initial conditions, ``ICFormat = 3``).

    Layout: group ``Header`` with attributes NumPart_ThisFile (uint32 x 6), NumPart_Total (uint64
    x 6), MassTable (float64 x 6, all 0: masses are in the ``Masses`` datasets), Time, Redshift,
    BoxSize, NumFilesPerSnapshot = 1 and the unit attributes UnitLength_in_cm, UnitMass_in_g,
    UnitVelocity_in_cm_per_s (repeated in a ``Parameters`` group, where Gadget-4 writes them);
    groups ``PartType<k>`` with datasets Coordinates (N, 3), Velocities (N, 3), Masses (N,) and
    ParticleIDs (N,), particles ordered by type and, within a type, by component. A ``mocksky``
    group records the component names, their types and particle counts.

    Units: length kpc, velocity km/s, mass ``mass_unit_msun`` Msun (1 by default; 1e10 is Gadget's
    customary choice). Gadget's time unit is then kpc / (km/s) = 0.9778 Gyr.

    Parameters
    ----------
    particles : Particles or mapping
        ``posvel`` (N, 6) [kpc, km/s], ``mass`` (N,) [Msun], ``component`` (N,), ``component_names``.
    path : str or path-like
        Output file (conventionally ``*.hdf5``).
    part_types : mapping, optional
        Component name -> Gadget type overrides (see :func:`gadget_part_types`).
    time, redshift, box_size : float
        Header values (box_size 0: no periodic box).
    mass_unit_msun : float
        Mass unit [Msun].
    double_precision : bool
        Coordinates, velocities and masses as float64 (default) or float32.
    id_offset : int
        First particle ID (IDs are consecutive; uint32 when they fit, else uint64).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Bad particles or options (named).
    """
    h5py = _h5py()
    posvel, mass, comp, names, _ = _as_arrays(particles)
    if not mass_unit_msun > 0:
        raise ValueError(f"mass_unit_msun must be positive, got {mass_unit_msun}")
    if int(id_offset) < 0:
        raise ValueError(f"id_offset must be >= 0, got {id_offset}")
    types = gadget_part_types(names, part_types)
    ftype = np.float64 if double_precision else np.float32
    ptype = np.array([types[nm] for nm in names], dtype=np.int64)[comp] if len(comp) else np.empty(0, np.int64)
    order = np.lexsort((np.arange(len(comp)), comp, ptype))
    counts = np.bincount(ptype, minlength=6)[:6]
    n = len(posvel)
    last_id = int(id_offset) + max(n - 1, 0)
    idtype = np.uint32 if last_id < 2 ** 32 else np.uint64
    units = {"UnitLength_in_cm": KPC_IN_CM, "UnitMass_in_g": MSUN_IN_G * float(mass_unit_msun),
             "UnitVelocity_in_cm_per_s": KMS_IN_CM_PER_S}
    path = Path(path)
    with _AtomicPath(path) as tmp:
        with h5py.File(tmp, "w") as f:
            h = f.create_group("Header")
            h.attrs["NumPart_ThisFile"] = counts.astype(np.uint32)
            h.attrs["NumPart_Total"] = counts.astype(np.uint64)
            h.attrs["MassTable"] = np.zeros(6, dtype=np.float64)
            h.attrs["Time"] = float(time)
            h.attrs["Redshift"] = float(redshift)
            h.attrs["BoxSize"] = float(box_size)
            h.attrs["NumFilesPerSnapshot"] = np.int32(1)
            par = f.create_group("Parameters")
            for k, v in units.items():
                h.attrs[k] = v
                par.attrs[k] = v
            ids = (np.arange(n, dtype=np.uint64) + np.uint64(id_offset)).astype(idtype)
            start = 0
            for t in range(6):
                k = int(counts[t])
                if k == 0:
                    continue
                sel = order[start:start + k]
                g = f.create_group(f"PartType{t}")
                g.create_dataset("Coordinates", data=posvel[sel, :3].astype(ftype))
                g.create_dataset("Velocities", data=posvel[sel, 3:].astype(ftype))
                g.create_dataset("Masses", data=(mass[sel] / mass_unit_msun).astype(ftype))
                g.create_dataset("ParticleIDs", data=ids[start:start + k])
                start += k
            m = f.create_group("mocksky")
            m.attrs["component_names"] = json.dumps(list(names))
            m.attrs["part_types"] = json.dumps(types)
            m.attrs["component_counts"] = json.dumps({nm: int(np.sum(comp == i)) for i, nm in enumerate(names)})
            m.attrs["units"] = "length kpc, velocity km/s, mass %g Msun" % mass_unit_msun
    return path


# --------------------------------------------------------------------------- text
def write_text(particles, path, *, header: bool = True) -> Path:
    """Write an Agama/NEMO-style text snapshot: columns x y z vx vy vz m.

    One particle per line, whitespace separated, full float64 precision (17 significant digits:
    values read back with ``numpy.loadtxt`` are bit-identical). With ``header``, the file starts
    with comment lines (``#``) naming the columns and units [kpc, km/s, Msun].

    Parameters
    ----------
    particles : Particles or mapping
    path : str or path-like
    header : bool

    Returns
    -------
    pathlib.Path
    """
    posvel, mass, _, names, _ = _as_arrays(particles)
    path = Path(path)
    data = np.column_stack([posvel, mass])
    with _AtomicPath(path) as tmp:
        hdr = ""
        if header:
            hdr = ("x y z vx vy vz m\nunits: kpc kpc kpc km/s km/s km/s Msun; components: " + ", ".join(names))
        np.savetxt(tmp, data, fmt="%.17g", header=hdr, comments="# ")
    return path


# --------------------------------------------------------------------------- HDF5 table
def write_hdf5_table(particles, path, *, include_actions: bool = True) -> Path:
    """Write a plain HDF5 table: one dataset per column with a ``unit`` attribute.

    Datasets x, y, z [kpc], vx, vy, vz [km/s], mass [Msun], component (int32; index into the root
    attribute ``component_names``, a JSON list) and, if available and requested, Jr, Jz, Jphi
    [kpc km/s].

    Parameters
    ----------
    particles : Particles or mapping
    path : str or path-like
    include_actions : bool

    Returns
    -------
    pathlib.Path
    """
    h5py = _h5py()
    posvel, mass, comp, names, actions = _as_arrays(particles)
    cols = [("x", posvel[:, 0], "kpc"), ("y", posvel[:, 1], "kpc"), ("z", posvel[:, 2], "kpc"),
            ("vx", posvel[:, 3], "km/s"), ("vy", posvel[:, 4], "km/s"), ("vz", posvel[:, 5], "km/s"),
            ("mass", mass, "Msun"), ("component", comp.astype(np.int32), "")]
    if include_actions and actions is not None:
        cols += [("Jr", actions[:, 0], "kpc km/s"), ("Jz", actions[:, 1], "kpc km/s"),
                 ("Jphi", actions[:, 2], "kpc km/s")]
    path = Path(path)
    with _AtomicPath(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for nm, arr, unit in cols:
                d = f.create_dataset(nm, data=np.ascontiguousarray(arr))
                d.attrs["unit"] = unit
            f.attrs["component_names"] = json.dumps(list(names))
            f.attrs["columns"] = json.dumps([c[0] for c in cols])
            f.attrs["frame"] = "Galactocentric model frame (Sun on the +x axis); Jphi > 0 prograde"
    return path


# --------------------------------------------------------------------------- dispatcher
def export_nbody(particles, path: Union[str, os.PathLike], format: str = "gadget4", **kwargs) -> Path:
    """Write a sampled model as an N-body snapshot.

    Parameters
    ----------
    particles : Particles or mapping
        From :func:`mocksky.model.sampling.sample_particles` (or a mapping with ``posvel``, ``mass``
        and optionally ``component``, ``component_names``, ``actions``).
    path : str or path-like
        Output file.
    format : {'gadget4', 'text', 'hdf5'}
        Gadget-4 HDF5 snapshot (:func:`write_gadget4`), Agama/NEMO text (:func:`write_text`) or a
        plain HDF5 table (:func:`write_hdf5_table`).
    **kwargs
        Passed to the writer (e.g. ``part_types``, ``mass_unit_msun`` for Gadget-4).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        Unknown format (allowed ones listed) or bad particles/options.
    """
    fmt = str(format).lower()
    writers = {"gadget4": write_gadget4, "text": write_text, "hdf5": write_hdf5_table}
    if fmt not in writers:
        raise ValueError(f"format {format!r} unknown; allowed: {', '.join(FORMATS)}")
    return writers[fmt](particles, path, **kwargs)
