"""Catalogue files: HDF5 (vaex layout), Parquet and FITS writers and readers, partitioned datasets with a manifest.

Formats (chosen from the file suffix unless ``format`` is given):

* ``"hdf5"`` (``.hdf5``, ``.h5``): vaex's column layout, ``/table/columns/<name>/data`` (one contiguous, uncompressed
  1D dataset per column, so that ``vaex.open`` memory-maps it), ``/table/columns`` attribute ``column_order``, per
  column group the attributes ``unit`` (astropy string), ``description`` and, when the schema gives one, ``ucd``;
  the metadata document (below) is the JSON string attribute ``mocksky`` of ``/table``. Written with h5py; datasets
  do not record modification times, so the same table gives the same bytes.
* ``"parquet"`` (``.parquet``, ``.pq``): pyarrow, one row group per ``row_group_size`` rows, Snappy compression; the
  metadata document is the schema metadata key ``mocksky``, each field carries ``unit`` and ``description``.
* ``"fits"`` (``.fits``, ``.fit``): one binary-table HDU (``EXTNAME = 'CATALOGUE'``) with units in ``TUNITn``; the
  metadata document is the long-string keyword ``MSKYMETA`` (FITS ``CONTINUE`` convention, ASCII JSON). Boolean
  columns are stored as unsigned bytes 0/1 (vaex's FITS reader does not decode FITS logicals); :func:`read_catalogue`
  restores them from the document's dtype.

The metadata document is a JSON object ``{"format": "mocksky-catalogue", "format_version": 1, "mocksky_version",
"meta": <table.meta>, "columns": {name: {"unit", "description", "dtype"}}}``; ``meta`` holds the provenance the
pipeline stages record (recipe, seed, solar parameters, references, ...). NumPy scalars and arrays, tuples,
dataclasses and paths in ``meta`` are converted to JSON types; anything else raises ``TypeError`` naming the key.

Every file is written under a temporary name in the destination directory and renamed with :func:`os.replace`
once complete and flushed, so a reader never sees a half-written file and an interrupted write leaves none.

Partitioned datasets: :func:`write_part` writes ``<prefix>-<index:05d>.<ext>`` files (e.g. one per pipeline chunk),
:func:`write_manifest` lists them in ``manifest.json`` with row counts, byte sizes and SHA-256 checksums, and
:func:`verify_manifest` detects missing, truncated or corrupted parts. :func:`open_vaex` opens a single file, a glob
pattern, a manifest or a directory holding one as one vaex DataFrame (``vaex.open_many`` over the parts);
:func:`read_catalogue` reads any of them into a :class:`~mocksky.catalogue.schema.StarTable` with the independent
readers (h5py, pyarrow, astropy) only.
"""
from __future__ import annotations

import dataclasses
import gc
import glob as _glob
import hashlib
import json
import logging
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .schema import COLUMNS, StarTable

__all__ = [
    "FORMATS", "MANIFEST_NAME", "CatalogueIntegrityError", "PartInfo", "write_catalogue", "read_catalogue",
    "read_metadata", "write_part", "write_manifest", "verify_manifest", "open_vaex", "open_vaex_batches", "file_sha256",
    "format_from_path",
]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: File formats and the suffixes that select them.
FORMATS: Dict[str, tuple] = {"hdf5": (".hdf5", ".h5"), "parquet": (".parquet", ".pq"), "fits": (".fits", ".fit")}
#: Default file name of a partitioned dataset's manifest.
MANIFEST_NAME = "manifest.json"
_DOC_FORMAT = "mocksky-catalogue"
_MANIFEST_FORMAT = "mocksky-partitioned-catalogue"
_FORMAT_VERSION = 1
_FITS_META_KEY = "MSKYMETA"
_PART_RE = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5,})$")


class CatalogueIntegrityError(ValueError):
    """A partitioned dataset does not match its manifest (missing, truncated or corrupted parts)."""

    def __init__(self, manifest: PathLike, problems: Sequence[str]):
        self.manifest = str(manifest)
        self.problems = list(problems)
        super().__init__(f"{manifest}: {len(self.problems)} problem(s):\n  " + "\n  ".join(self.problems))


@dataclasses.dataclass(frozen=True)
class PartInfo:
    """One part of a partitioned dataset as recorded in the manifest.

    Attributes
    ----------
    file : str
        File name relative to the manifest's directory.
    rows : int
    sha256 : str
        Hex digest of the file's bytes.
    bytes : int
        File size.
    """

    file: str
    rows: int
    sha256: str
    bytes: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------

def format_from_path(path: PathLike, format: Optional[str] = None) -> str:
    """The file format: ``format`` if given (validated), else from the suffix of ``path``.

    Raises
    ------
    ValueError
        If ``format`` is not one of :data:`FORMATS` or the suffix is not recognised.
    """
    if format is not None:
        f = str(format).lower()
        if f not in FORMATS:
            raise ValueError(f"format={format!r} is not supported; allowed: {sorted(FORMATS)}")
        return f
    suffix = Path(path).suffix.lower()
    for f, suffixes in FORMATS.items():
        if suffix in suffixes:
            return f
    allowed = {f: list(s) for f, s in FORMATS.items()}
    raise ValueError(f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
                     f"give format= or use one of {allowed}")


def file_sha256(path: PathLike, blocksize: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(blocksize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _jsonable(obj: Any, where: str) -> Any:
    """A JSON-serialisable copy of ``obj`` (NumPy types, tuples, dataclasses and paths converted)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"metadata key {where}[{k!r}] is not a string; JSON needs string keys")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"metadata value {where} of type {type(obj).__name__} cannot be stored as JSON; "
                    "use str, numbers, bool, None, lists or dicts")


def _column_doc(name: str, arr: np.ndarray) -> dict:
    col = COLUMNS.get(name)
    return {"unit": col.unit if col else "", "description": col.description if col else "",
            "dtype": "?" if arr.dtype == np.bool_ else arr.dtype.str.lstrip("<>=|")}


def _as_columns(table) -> "Dict[str, np.ndarray]":
    if not isinstance(table, Mapping):
        raise TypeError("table must be a StarTable or a mapping of column name to 1D array, "
                        f"got {type(table).__name__}")
    cols: Dict[str, np.ndarray] = {}
    n = None
    for name, values in table.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"column names must be non-empty strings, got {name!r}")
        if "," in name or "/" in name:
            raise ValueError(f"column name {name!r} contains ',' or '/', which the HDF5 layout cannot store")
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"column {name!r}: expected a 1D array, got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"column {name!r} has dtype {arr.dtype}; catalogue files hold bool, integer or float "
                            "columns only")
        if n is not None and len(arr) != n:
            raise ValueError(f"column {name!r}: length {len(arr)} differs from the table's {n} rows")
        n = len(arr)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        cols[name] = np.ascontiguousarray(arr)
    if not cols:
        raise ValueError("the table has no columns; nothing to write")
    return cols


def _document(cols: Mapping[str, np.ndarray], meta: Mapping) -> dict:
    from .. import __version__

    return {"format": _DOC_FORMAT, "format_version": _FORMAT_VERSION, "mocksky_version": __version__,
            "meta": _jsonable(dict(meta), "meta"),
            "columns": {k: _column_doc(k, v) for k, v in cols.items()}}


def _dumps(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=True, sort_keys=False, separators=(",", ":"))


def _atomic_target(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist")
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename durable (best effort: not every file system supports directory fsync)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------------------------
# format-specific writers and readers
# --------------------------------------------------------------------------------------------------------------

def _write_hdf5(cols: Mapping[str, np.ndarray], doc: dict, path: Path) -> None:
    import h5py

    with h5py.File(path, "w", track_order=False) as f:
        table = f.create_group("table")
        table.attrs["type"] = "table"
        table.attrs["mocksky"] = _dumps(doc)
        table.attrs["description"] = "mocksky catalogue"
        columns = table.create_group("columns")
        columns.attrs["column_order"] = ",".join(cols)
        for name, arr in cols.items():
            g = columns.create_group(name)
            d = doc["columns"][name]
            g.attrs["unit"] = d["unit"]
            g.attrs["description"] = d["description"]
            ucd = getattr(COLUMNS.get(name), "ucd", "")
            if ucd:
                g.attrs["ucd"] = ucd
            g.create_dataset("data", data=arr, track_times=False)


def _read_hdf5(path: Path, columns: Optional[Sequence[str]]):
    import h5py

    with h5py.File(path, "r") as f:
        if "table" not in f or "columns" not in f["table"]:
            raise ValueError(f"{path}: not a vaex-layout HDF5 table (no /table/columns group)")
        h5cols = f["table/columns"]
        order = [c for c in _attr_str(h5cols.attrs.get("column_order", "")).split(",") if c]
        names = [c for c in order if c in h5cols] + [c for c in h5cols if c not in order]
        doc = _parse_doc(_attr_str(f["table"].attrs.get("mocksky", "")), path)
        names = _pick(names, columns, path)
        data = {}
        for name in names:
            dset = h5cols[name]["data"]
            data[name] = dset[()] if dset.shape != (0,) else np.empty(0, dset.dtype)
            if "unit" in h5cols[name].attrs and name not in doc["columns"]:
                doc["columns"][name] = {"unit": _attr_str(h5cols[name].attrs["unit"])}
    return data, doc


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _write_parquet(cols: Mapping[str, np.ndarray], doc: dict, path: Path, row_group_size: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields, arrays = [], []
    for name, arr in cols.items():
        d = doc["columns"][name]
        a = pa.array(arr)
        fields.append(pa.field(name, a.type, nullable=False,
                               metadata={"unit": d["unit"], "description": d["description"]}))
        arrays.append(a)
    schema = pa.schema(fields, metadata={"mocksky": _dumps(doc)})
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, row_group_size=row_group_size,
                   compression="snappy")


def _read_parquet(path: Path, columns: Optional[Sequence[str]]):
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    md = schema.metadata or {}
    doc = _parse_doc(md.get(b"mocksky", b"").decode(), path)
    names = _pick(list(schema.names), columns, path)
    table = pf.read(columns=names)
    data = {}
    for name in names:
        col = table.column(name)
        if col.null_count:
            raise ValueError(f"{path}: column {name!r} has {col.null_count} null values; mocksky catalogues have none")
        data[name] = np.asarray(col.to_numpy())
    return data, doc


def _write_fits(cols: Mapping[str, np.ndarray], doc: dict, path: Path) -> None:
    from astropy.io import fits

    lowered = {}
    for name in cols:
        if name.lower() in lowered:
            raise ValueError(f"FITS column names are case-insensitive: {name!r} clashes with {lowered[name.lower()]!r}")
        lowered[name.lower()] = name
    fcols = []
    for name, arr in cols.items():
        unit = _fits_unit(doc["columns"][name]["unit"])
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        fcols.append(fits.Column(name=name, array=arr, unit=unit, format=_fits_format(arr.dtype)))
    hdu = fits.BinTableHDU.from_columns(fcols, name="CATALOGUE")
    hdu.header[_FITS_META_KEY] = (_dumps(doc), "mocksky metadata document (JSON)")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, checksum=True)


def _fits_unit(unit: str) -> Optional[str]:
    """The FITS spelling of a unit string (e.g. ``km/s`` -> ``km s-1``); the string itself if it has none."""
    if not unit:
        return None
    import astropy.units as u

    try:
        return u.Unit(unit).to_string("fits")
    except ValueError:
        return unit


def _fits_format(dtype: np.dtype) -> str:
    table = {"u1": "B", "i1": "B", "i2": "I", "i4": "J", "i8": "K", "f4": "E", "f8": "D"}
    key = dtype.str.lstrip("<>=|")
    if key == "i1":
        raise TypeError("int8 columns are not representable in FITS (signed bytes); use int16")
    if key not in table:
        raise TypeError(f"dtype {dtype} cannot be written to FITS; allowed: bool, uint8, int16, int32, int64, "
                        "float32, float64")
    return table[key]


def _read_fits(path: Path, columns: Optional[Sequence[str]]):
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        hdu = None
        for h in hdul[1:]:
            if isinstance(h, fits.BinTableHDU):
                hdu = h
                break
        if hdu is None:
            raise ValueError(f"{path}: no binary-table HDU")
        doc = _parse_doc(str(hdu.header.get(_FITS_META_KEY, "")), path)
        names = _pick(list(hdu.columns.names), columns, path)
        data = {}
        for name in names:
            arr = np.asarray(hdu.data[name])
            arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)
            if doc["columns"].get(name, {}).get("dtype") == "?":
                arr = arr.astype(np.bool_)
            data[name] = arr
            if name not in doc["columns"]:
                unit = hdu.columns[name].unit
                doc["columns"][name] = {"unit": unit or ""}
    return data, doc


def _parse_doc(text: str, path: Path) -> dict:
    if not text:
        return {"meta": {}, "columns": {}}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the mocksky metadata document is not valid JSON ({e})") from None
    if doc.get("format") != _DOC_FORMAT:
        raise ValueError(f"{path}: metadata format {doc.get('format')!r}, expected {_DOC_FORMAT!r}")
    doc.setdefault("meta", {})
    doc.setdefault("columns", {})
    return doc


def _pick(names: List[str], columns: Optional[Sequence[str]], path: Path) -> List[str]:
    if columns is None:
        return names
    missing = [c for c in columns if c not in names]
    if missing:
        raise KeyError(f"{path}: no column(s) {missing}; the file has {names}")
    return list(columns)


_READERS = {"hdf5": _read_hdf5, "parquet": _read_parquet, "fits": _read_fits}


# --------------------------------------------------------------------------------------------------------------
# public API: single files
# --------------------------------------------------------------------------------------------------------------

def write_catalogue(table, path: PathLike, format: Optional[str] = None, overwrite: bool = False, *,
                    row_group_size: int = 1 << 20) -> Path:
    """Write a star table to one HDF5, Parquet or FITS file, atomically.

    Parameters
    ----------
    table : StarTable or mapping of str to 1D array
        Columns (bool, integer or float, equal lengths); ``table.meta`` (if present) is stored as the ``meta`` part
        of the metadata document (see the module docstring).
    path : str or os.PathLike
        Destination; its directory must exist.
    format : {"hdf5", "parquet", "fits"}, optional
        Default: from the suffix of ``path`` (:data:`FORMATS`).
    overwrite : bool
        Replace an existing file (default False).
    row_group_size : int
        Parquet rows per row group (vaex reads a row group at a time).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError, TypeError
        For an unknown format, unequal column lengths, non-numeric columns, or metadata that JSON cannot hold.
    """
    path = Path(path)
    fmt = format_from_path(path, format)
    cols = _as_columns(table)
    doc = _document(cols, getattr(table, "meta", {}) or {})
    tmp = _atomic_target(path, overwrite)
    try:
        if fmt == "hdf5":
            _write_hdf5(cols, doc, tmp)
        elif fmt == "parquet":
            _write_parquet(cols, doc, tmp, int(row_group_size))
        else:
            _write_fits(cols, doc, tmp)
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug("wrote %d rows x %d columns to %s (%s)", len(next(iter(cols.values()))), len(cols), path, fmt)
    return path


def read_metadata(path: PathLike) -> dict:
    """The metadata document of a catalogue file, or the manifest of a partitioned dataset.

    Returns
    -------
    dict
        For a file: ``{"format", "format_version", "mocksky_version", "meta", "columns"}`` (only ``meta`` and
        ``columns``, possibly empty, for files not written by mocksky); for a manifest (``.json`` file or a directory
        holding :data:`MANIFEST_NAME`): the manifest.
    """
    p = Path(path)
    mpath = _manifest_path(p)
    if mpath is not None:
        return _load_manifest(mpath)
    fmt = format_from_path(p)
    if fmt == "hdf5":
        import h5py

        with h5py.File(p, "r") as f:
            return _parse_doc(_attr_str(f["table"].attrs.get("mocksky", "")) if "table" in f else "", p)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(p).metadata or {}
        return _parse_doc(md.get(b"mocksky", b"").decode(), p)
    from astropy.io import fits

    with fits.open(p) as hdul:
        return _parse_doc(str(hdul[1].header.get(_FITS_META_KEY, "")) if len(hdul) > 1 else "", p)


def read_catalogue(path: PathLike, columns: Optional[Sequence[str]] = None, verify: bool = False) -> StarTable:
    """Read a catalogue file, or all parts of a partitioned dataset, into a :class:`StarTable`.

    Uses h5py, pyarrow or astropy only (not vaex), so it doubles as the independent check of :func:`open_vaex`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.hdf5/.h5``, ``.parquet/.pq`` or ``.fits/.fit`` file, a manifest ``.json`` or a directory containing
        :data:`MANIFEST_NAME` (parts are concatenated in manifest order).
    columns : sequence of str, optional
        Read only these columns (default all, in file order).
    verify : bool
        For a partitioned dataset, check every part's checksum first (:func:`verify_manifest`); sizes and row
        counts are always checked.

    Returns
    -------
    StarTable
        Native-byte-order arrays; ``meta`` is the stored metadata; ``strict`` is False if a column is not in the
        schema. Boolean FITS columns are restored from the stored dtype.

    Raises
    ------
    KeyError
        If a requested column is missing.
    CatalogueIntegrityError
        If a partitioned dataset does not match its manifest.
    """
    p = Path(path)
    mpath = _manifest_path(p)
    if mpath is not None:
        man = verify_manifest(mpath, checksums=verify)
        parts = [read_catalogue(mpath.parent / part["file"], columns=columns) for part in man["parts"]]
        if not parts:
            raise ValueError(f"{mpath}: the manifest lists no parts")
        names = list(parts[0])
        data = {k: np.concatenate([t[k] for t in parts]) for k in names}
        return StarTable(data, meta=man.get("meta", {}), strict=all(k in COLUMNS for k in names))
    if not p.is_file():
        raise FileNotFoundError(f"catalogue file {p} does not exist")
    data, doc = _READERS[format_from_path(p)](p, columns)
    return StarTable(data, meta=doc.get("meta", {}), strict=all(k in COLUMNS for k in data))


# --------------------------------------------------------------------------------------------------------------
# partitioned datasets
# --------------------------------------------------------------------------------------------------------------

def _part_name(prefix: str, index: int, fmt: str) -> str:
    if not prefix or "/" in prefix or os.sep in prefix:
        raise ValueError(f"prefix={prefix!r} must be a non-empty file-name stem without directory separators")
    if int(index) < 0:
        raise ValueError(f"index={index} must be >= 0")
    return f"{prefix}-{int(index):05d}{FORMATS[fmt][0]}"


def _count_rows(path: Path) -> int:
    fmt = format_from_path(path)
    if fmt == "hdf5":
        import h5py

        with h5py.File(path, "r") as f:
            cols = f["table/columns"]
            lengths = {len(cols[k]["data"]) for k in cols}
            if len(lengths) > 1:
                raise ValueError(f"{path}: columns have different lengths {sorted(lengths)}")
            return lengths.pop() if lengths else 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    from astropy.io import fits

    with fits.open(path) as hdul:
        return int(hdul[1].header["NAXIS2"])


def _is_part(name: str, prefix: str) -> bool:
    """True for ``<prefix>-NNNNN<suffix>`` with a catalogue suffix (temporaries start with '.', never match)."""
    stem, suffix = os.path.splitext(name)
    m = _PART_RE.match(stem)
    return bool(m) and m.group("prefix") == prefix and any(suffix.lower() in s for s in FORMATS.values())


def write_part(table, directory: PathLike, index: int, format: str = "hdf5", prefix: str = "part",
               overwrite: bool = False) -> PartInfo:
    """Write one part of a partitioned dataset (atomically) and describe it for the manifest.

    Parameters
    ----------
    table : StarTable or mapping
        The part's rows; every part of a dataset must have the same columns and dtypes.
    directory : str or os.PathLike
        The dataset directory (created if missing).
    index : int
        Part number, >= 0; the file is ``<prefix>-<index:05d>.<ext>``.
    format : {"hdf5", "parquet", "fits"}
    prefix : str
    overwrite : bool

    Returns
    -------
    PartInfo
        File name, rows, SHA-256 and size; pass the list of them to :func:`write_manifest`.
    """
    fmt = format_from_path("", format)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = write_catalogue(table, d / _part_name(prefix, index, fmt), format=fmt, overwrite=overwrite)
    return PartInfo(file=path.name, rows=len(next(iter(_as_columns(table).values()))),
                    sha256=file_sha256(path), bytes=path.stat().st_size)


def write_manifest(directory: PathLike, parts: Optional[Iterable[Union[PartInfo, Mapping]]] = None,
                   meta: Optional[Mapping] = None, name: str = MANIFEST_NAME, prefix: str = "part",
                   overwrite: bool = True) -> Path:
    """Write the manifest of a partitioned dataset (atomically).

    Parameters
    ----------
    directory : str or os.PathLike
        The dataset directory.
    parts : iterable of PartInfo or dict, optional
        The parts, as returned by :func:`write_part` (in any order; the manifest sorts them by file name). Default:
        every ``<prefix>-NNNNN.<ext>`` file in ``directory``, described by reading it (rows, checksum, size).
    meta : mapping, optional
        Dataset metadata (default: the ``meta`` stored in the first part).
    name : str
        Manifest file name.
    prefix : str
        Part-file prefix used when ``parts`` is None.
    overwrite : bool
        Replace an existing manifest (default True: a manifest is rewritten when parts are added).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If there are no parts, a part is missing, formats are mixed, or parts have different columns or dtypes
        (vaex could not concatenate them).
    """
    d = Path(directory)
    if parts is None:
        found = sorted(p for p in d.iterdir() if p.is_file() and _is_part(p.name, prefix))
        infos = [PartInfo(file=p.name, rows=_count_rows(p), sha256=file_sha256(p), bytes=p.stat().st_size)
                 for p in found]
    else:
        infos = [p if isinstance(p, PartInfo) else PartInfo(**{k: p[k] for k in ("file", "rows", "sha256", "bytes")})
                 for p in parts]
    if not infos:
        raise ValueError(f"no parts to list in the manifest of {d}")
    infos = sorted(infos, key=lambda p: p.file)
    if len({p.file for p in infos}) != len(infos):
        raise ValueError("the same part file is listed twice")
    fmts = set()
    columns = None
    for p in infos:
        fp = d / p.file
        if not fp.is_file():
            raise ValueError(f"part {fp} does not exist")
        fmts.add(format_from_path(fp))
        doc = read_metadata(fp)
        cols = {k: v.get("dtype") for k, v in doc["columns"].items()}
        if columns is None:
            columns, first_doc = cols, doc
        elif cols != columns:
            raise ValueError(f"part {p.file} has columns/dtypes {cols}, differing from {infos[0].file}'s {columns}")
    if len(fmts) > 1:
        raise ValueError(f"parts mix file formats {sorted(fmts)}")
    man = {"format": _MANIFEST_FORMAT, "format_version": _FORMAT_VERSION, "file_format": fmts.pop(),
           "total_rows": int(sum(p.rows for p in infos)), "columns": first_doc["columns"],
           "meta": _jsonable(dict(meta) if meta is not None else first_doc.get("meta", {}), "meta"),
           "parts": [p.to_dict() for p in infos]}
    path = d / name
    tmp = _atomic_target(path, overwrite)
    try:
        with open(tmp, "w", encoding="ascii") as f:
            json.dump(man, f, indent=1, ensure_ascii=True)
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _manifest_path(p: Path) -> Optional[Path]:
    if p.is_dir():
        m = p / MANIFEST_NAME
        if not m.is_file():
            raise FileNotFoundError(f"directory {p} has no {MANIFEST_NAME}")
        return m
    if p.suffix.lower() == ".json":
        return p
    return None


def _load_manifest(path: Path) -> dict:
    try:
        with open(path, encoding="ascii") as f:
            man = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatalogueIntegrityError(path, [f"manifest unreadable: {e}"]) from None
    if man.get("format") != _MANIFEST_FORMAT:
        raise CatalogueIntegrityError(path, [f"format {man.get('format')!r}, expected {_MANIFEST_FORMAT!r}"])
    return man


def verify_manifest(path: PathLike, checksums: bool = True) -> dict:
    """Check a partitioned dataset against its manifest.

    Every part must exist with the recorded size and row count, and (``checksums=True``) the recorded SHA-256;
    the row counts must add up to ``total_rows``.

    Parameters
    ----------
    path : str or os.PathLike
        The manifest file, or the dataset directory holding :data:`MANIFEST_NAME`.
    checksums : bool
        Also hash every part (reads all bytes; sizes and row counts are always checked).

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    CatalogueIntegrityError
        Listing every problem found (missing, truncated, resized, corrupted or unreadable part, wrong row count).
    """
    mpath = _manifest_path(Path(path))
    man = _load_manifest(mpath)
    problems: List[str] = []
    total = 0
    for part in man.get("parts", []):
        fp = mpath.parent / part["file"]
        if not fp.is_file():
            problems.append(f"{part['file']}: missing")
            continue
        size = fp.stat().st_size
        if size != part["bytes"]:
            kind = "truncated" if size < part["bytes"] else "size changed"
            problems.append(f"{part['file']}: {kind} ({size} bytes, manifest says {part['bytes']})")
            continue
        if checksums:
            digest = file_sha256(fp)
            if digest != part["sha256"]:
                problems.append(f"{part['file']}: corrupted (sha256 {digest[:16]}..., manifest says "
                                f"{part['sha256'][:16]}...)")
                continue
        try:
            rows = _count_rows(fp)
        except Exception as e:  # unreadable part: report it with the others
            problems.append(f"{part['file']}: unreadable ({type(e).__name__}: {e})")
            continue
        if rows != part["rows"]:
            problems.append(f"{part['file']}: {rows} rows, manifest says {part['rows']}")
        total += part["rows"]
    if not problems and total != man.get("total_rows"):
        problems.append(f"parts hold {total} rows, manifest total_rows says {man.get('total_rows')}")
    if problems:
        raise CatalogueIntegrityError(mpath, problems)
    return man


# --------------------------------------------------------------------------------------------------------------
# vaex
# --------------------------------------------------------------------------------------------------------------

def _vaex_files(path: PathLike, verify: bool = False) -> Tuple[List[str], Optional[List[int]]]:
    """The files :func:`open_vaex` opens for ``path``, and their row counts when a manifest gives them."""
    p = Path(path)
    s = os.fspath(path)
    rows = None
    if any(ch in s for ch in "*?["):
        files = sorted(_glob.glob(s))
        if not files:
            raise FileNotFoundError(f"no files match {s!r}")
    else:
        mpath = _manifest_path(p) if p.exists() or p.suffix.lower() == ".json" else None
        if mpath is not None:
            man = verify_manifest(mpath, checksums=verify)
            # empty parts add nothing, and vaex cannot open an empty FITS table
            parts = [part for part in man["parts"] if part["rows"] > 0] or man["parts"][:1]
            files = [str(mpath.parent / part["file"]) for part in parts]
            rows = [int(part["rows"]) for part in parts]
        else:
            if not p.is_file():
                raise FileNotFoundError(f"catalogue file {p} does not exist")
            format_from_path(p)
            files = [s]
    return files, rows


def _open_files(files: Sequence[str]):
    import vaex

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        df = vaex.open(files[0]) if len(files) == 1 else vaex.open_many(files)
        gc.collect()
    return df


def open_vaex(path: PathLike, verify: bool = False):
    """Open a catalogue as a vaex DataFrame (memory-mapped HDF5; Parquet/FITS through vaex's readers).

    Parameters
    ----------
    path : str or os.PathLike
        A catalogue file, a glob pattern of files with the same columns (e.g. ``"run/part-*.hdf5"``), a manifest
        ``.json`` or a directory holding :data:`MANIFEST_NAME` (its parts are opened with ``vaex.open_many`` as one
        table, in manifest order, after :func:`verify_manifest`).
    verify : bool
        Hash every part of a manifest before opening (sizes and row counts are always checked).

    Returns
    -------
    vaex.dataframe.DataFrame
        Call ``df.close()`` when done to release the files.

    Notes
    -----
    Parts of a manifest with no rows are skipped (vaex 4.19 cannot open an empty FITS table; empty HDF5 and Parquet
    files open fine). vaex 4.19 leaves an unclosed event loop and file object behind when it opens a file, which
    Python reports as ``ResourceWarning``; those warnings are silenced (and the garbage collected) inside this call
    only.
    """
    files, _ = _vaex_files(path, verify)
    return _open_files(files)


def open_vaex_batches(path: PathLike, max_rows: int = 4_000_000, verify: bool = False) -> Iterator:
    """Open a catalogue as consecutive vaex DataFrames of whole parts, each closed before the next opens.

    Aggregations that add up over rows (counts, sums, histograms) run batch by batch in memory bounded by
    ``max_rows``, whatever the catalogue's size: vaex memory-maps its files, and the pages it has read stay resident
    until the file is closed (binning the four columns of a 1e8-row star-count mock at once held 3.2 GB).

    Parameters
    ----------
    path : str or os.PathLike
        As for :func:`open_vaex`.
    max_rows : int
        Largest number of rows per batch (a part with more rows is a batch of its own). Parts without a manifest
        (a glob) count as ``max_rows`` each: one file per batch.
    verify : bool
        As for :func:`open_vaex`.

    Yields
    ------
    vaex.dataframe.DataFrame
        Closed after the consumer asks for the next one (or stops iterating).

    Raises
    ------
    ValueError
        ``max_rows`` < 1.
    """
    if isinstance(max_rows, bool) or int(max_rows) < 1:
        raise ValueError(f"max_rows: need a positive integer, got {max_rows!r}")
    files, rows = _vaex_files(path, verify)
    rows = rows if rows is not None else [int(max_rows)] * len(files)
    batch, n = [], 0
    groups = []
    for f, r in zip(files, rows):
        if batch and n + r > max_rows:
            groups.append(batch)
            batch, n = [], 0
        batch.append(f)
        n += r
    groups.append(batch)
    for g in groups:
        df = _open_files(g)
        try:
            yield df
        finally:
            df.close()

