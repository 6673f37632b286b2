"""APsystems ECU Proxy: relay ECU uploads to EMA and decode a copy of each."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("apsystems-ecu-proxy")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
