"""Raise the open-file limit so many LAN connections cannot starve the service."""

from __future__ import annotations

import logging
import resource

_LOGGER = logging.getLogger(__name__)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard in (resource.RLIM_INFINITY, soft):
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as err:
        _LOGGER.warning("Cannot raise the open-file limit from %d: %s", soft, err)
        return soft
    _LOGGER.debug("Open-file limit raised from %d to %d", soft, hard)
    return hard
