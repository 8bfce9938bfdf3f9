"""The installed version of ocpprpc."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ocpprpc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
