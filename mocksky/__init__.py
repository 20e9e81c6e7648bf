"""mocksky: self-consistent dynamical models of the Milky Way turned into mock survey catalogues."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mocksky")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
