"""Reader and writer for Agama's INI model files.

An Agama INI file is a sequence of sections ``[Kind label]`` (``Potential``, ``DF``,
``SelfConsistentModel``, or anything else such as ``Data``) holding ``key = value`` lines; lines
starting with ``#`` or ``;`` are comments. Keys are case-insensitive (the BV24 M0 file writes
``jcutoff`` for ``Jcutoff``). Values are kept as written and converted on access.

References
----------
Vasiliev 2019, MNRAS 482, 1525 (Agama), and the Agama reference manual, "INI files".
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

_SECTION = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]\s*$")


@dataclass
class IniSection:
    """One ``[Kind label]`` section.

    Attributes
    ----------
    kind : str
        First word of the header (e.g. ``"Potential"``, ``"DF"``, ``"SelfConsistentModel"``).
    label : str
        Rest of the header (e.g. ``"thin disk"``); empty for a bare ``[SelfConsistentModel]``.
    items : dict
        Original key -> value string, in file order.
    """

    kind: str
    label: str = ""
    items: Dict[str, str] = field(default_factory=dict)

    @property
    def header(self) -> str:
        return f"{self.kind} {self.label}".strip()

    def _key(self, key: str) -> Optional[str]:
        low = key.lower()
        for k in self.items:
            if k.lower() == low:
                return k
        return None

    def __contains__(self, key: str) -> bool:
        return self._key(key) is not None

    def get_str(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """Value of ``key`` (case-insensitive) as a string, or ``default``."""
        k = self._key(key)
        return self.items[k] if k is not None else default

    def get_float(self, key: str, default: Optional[float] = None) -> Optional[float]:
        """Value of ``key`` (case-insensitive) as a float.

        Raises
        ------
        ValueError
            If the value is not a number (the message names section and key).
        """
        s = self.get_str(key)
        if s is None:
            return default
        try:
            return float(s)
        except ValueError:
            raise ValueError(f"[{self.header}] {key} = {s!r}: expected a number") from None

    def get_int(self, key: str, default: Optional[int] = None) -> Optional[int]:
        v = self.get_float(key)
        if v is None:
            return default
        if v != int(v):
            raise ValueError(f"[{self.header}] {key} = {v}: expected an integer")
        return int(v)

    def get_bool(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        s = self.get_str(key)
        if s is None:
            return default
        low = s.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"[{self.header}] {key} = {s!r}: expected true/false")

    def lower_items(self) -> Dict[str, str]:
        """Keys lower-cased -> value strings."""
        return {k.lower(): v for k, v in self.items.items()}

    def check_keys(self, allowed) -> None:
        """Raise ValueError naming any key not in ``allowed`` (case-insensitive)."""
        allowed_low = {a.lower() for a in allowed}
        bad = [k for k in self.items if k.lower() not in allowed_low]
        if bad:
            raise ValueError(f"[{self.header}]: unknown key(s) {bad}; allowed: {sorted(allowed)}")


@dataclass
class AgamaIni:
    """Parsed Agama INI file: an ordered list of sections."""

    sections: List[IniSection] = field(default_factory=list)
    path: Optional[Path] = None

    def of_kind(self, kind: str) -> List[IniSection]:
        """Sections whose kind equals ``kind`` (case-insensitive), in file order."""
        return [s for s in self.sections if s.kind.lower() == kind.lower()]

    def get(self, kind: str, label: str = "") -> Optional[IniSection]:
        for s in self.of_kind(kind):
            if s.label.lower() == label.lower():
                return s
        return None

    def __iter__(self) -> Iterator[IniSection]:
        return iter(self.sections)

    def to_string(self) -> str:
        out = []
        for s in self.sections:
            out.append(f"[{s.header}]")
            out.extend(f"{k} = {v}" for k, v in s.items.items())
            out.append("")
        return "\n".join(out)


def parse_ini(text: str, path: Optional[Path] = None) -> AgamaIni:
    """Parse the text of an Agama INI file.

    Raises
    ------
    ValueError
        On a ``key = value`` line outside any section or a line that is neither (file and line number named).
    """
    ini = AgamaIni(path=path)
    cur: Optional[IniSection] = None
    where = str(path) if path else "<string>"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            words = m.group(1).split(None, 1)
            if not words:
                raise ValueError(f"{where}:{n}: empty section header")
            cur = IniSection(kind=words[0], label=words[1].strip() if len(words) > 1 else "")
            ini.sections.append(cur)
            continue
        if "=" not in line:
            raise ValueError(f"{where}:{n}: expected 'key = value' or '[section]', got {raw!r}")
        if cur is None:
            raise ValueError(f"{where}:{n}: 'key = value' before the first [section]")
        key, value = line.split("=", 1)
        value = re.split(r"\s[#;]", value, maxsplit=1)[0].strip()
        cur.items[key.strip()] = value
    return ini


def read_ini(path: Union[str, os.PathLike]) -> AgamaIni:
    """Read an Agama INI file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        On malformed lines (see :func:`parse_ini`).
    """
    p = Path(path)
    return parse_ini(p.read_text(), path=p)


def write_atomic(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_ini(ini: AgamaIni, path: Union[str, os.PathLike]) -> None:
    """Write ``ini`` in Agama's INI format (atomically)."""
    write_atomic(path, ini.to_string())
