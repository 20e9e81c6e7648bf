"""Exporters of sampled models: N-body snapshots (Gadget-4 HDF5, Agama/NEMO text, HDF5 table)."""
from .nbody import FORMATS, export_nbody, gadget_part_types, write_gadget4, write_hdf5_table, write_text

__all__ = ["export_nbody", "write_gadget4", "write_text", "write_hdf5_table", "gadget_part_types", "FORMATS"]
