"""The version of ocpprpc (read by the build backend; no importlib.metadata at import time)."""

__version__ = "0.1.0.dev0"
