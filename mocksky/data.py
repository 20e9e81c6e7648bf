"""Locating data files: package data, then user directories, then the development tree.

Search order for a relative path such as ``"models/bv23/SCM_MW.ini"``:

1. package data shipped inside ``mocksky/data`` (the offline default);
2. each directory listed in the environment variable ``MOCKSKY_DATA`` (``os.pathsep``-separated);
3. the user configuration directory ``$XDG_CONFIG_HOME/mocksky/data`` (default ``~/.config/mocksky/data``);
4. during development, ``shared/data`` beside the repository (``<repo>/../shared/data``) or beside the
   current working directory (``../shared/data``).

A file that is not found raises :class:`DataNotFoundError` naming the file, the places searched and
how to obtain it. Zero-byte files (left by failed downloads) are treated as missing.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import List

ENV_VAR = "MOCKSKY_DATA"


class DataNotFoundError(FileNotFoundError):
    """A data file mocksky needs is not present in any of the searched locations."""


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mocksky" / "data"


def search_dirs() -> List[Path]:
    """The directories searched for data files, in order."""
    dirs: List[Path] = [Path(str(resources.files("mocksky"))) / "data"]
    for d in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if d:
            dirs.append(Path(d).expanduser())
    dirs.append(_config_dir())
    repo = Path(__file__).resolve().parent.parent
    dirs.append(repo.parent / "shared" / "data")
    dirs.append(Path.cwd().parent / "shared" / "data")
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def find(relpath: str, hint: str = "") -> Path:
    """Absolute path of a data file or directory.

    Parameters
    ----------
    relpath : str
        Path relative to a data root, e.g. ``"models/bv23/SCM_MW.ini"``.
    hint : str
        How to obtain the file, appended to the error message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    DataNotFoundError
        If the file is in none of :func:`search_dirs` (or only as a 0-byte file).
    """
    for d in search_dirs():
        p = d / relpath
        if p.is_dir() or (p.is_file() and p.stat().st_size > 0):
            return p
    searched = "\n  ".join(str(d) for d in search_dirs())
    msg = (f"data file {relpath!r} not found; searched:\n  {searched}\n"
           f"Put the file under one of these directories or set {ENV_VAR} to a directory containing it.")
    if hint:
        msg += f" {hint}"
    raise DataNotFoundError(msg)
