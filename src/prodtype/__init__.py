"""prodtype: multimodal product type classification for the Rakuten France catalogue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prodtype")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
