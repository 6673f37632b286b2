"""Fixtures of the browser tests (see harness.py)."""

from .harness import browser, hosts_file, plant, plant_options

__all__ = ["browser", "hosts_file", "plant", "plant_options"]
