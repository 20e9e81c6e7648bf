"""The star table passed between pipeline stages, its column schema, writers and readers."""
from .io import (CatalogueIntegrityError, open_vaex, open_vaex_batches, read_catalogue, read_metadata, verify_manifest,
                 write_catalogue, write_manifest, write_part)
from .schema import COLUMNS, Column, StarTable, column_unit

__all__ = ["COLUMNS", "Column", "StarTable", "column_unit", "write_catalogue", "read_catalogue", "read_metadata",
           "write_part", "write_manifest", "verify_manifest", "open_vaex", "open_vaex_batches",
           "CatalogueIntegrityError"]
