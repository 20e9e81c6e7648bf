"""The star table passed between pipeline stages, its column schema, writers and readers."""
from .schema import COLUMNS, Column, StarTable, column_unit

__all__ = ["COLUMNS", "Column", "StarTable", "column_unit"]
