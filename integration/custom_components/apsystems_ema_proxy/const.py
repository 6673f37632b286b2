"""Constants of the APsystems ECU Proxy integration."""

import logging
from typing import Final

from homeassistant.const import Platform

from .contract import constants

DOMAIN: Final = constants.DOMAIN
LOGGER: Final = logging.getLogger(__package__)

PLATFORMS: Final = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR]

CONF_ADDON_SLUG: Final = "addon_slug"
CONF_NO_DATA_TIMEOUT: Final = "no_data_timeout"

DEFAULT_NAME: Final = "APsystems ECU Proxy"
DEFAULT_NO_DATA_TIMEOUT: Final = 15  # minutes
MIN_NO_DATA_TIMEOUT: Final = 1
MAX_NO_DATA_TIMEOUT: Final = 1440

MANUFACTURER: Final = "APsystems"
# The service is not an APsystems product: its device names the project instead.
SERVICE_MANUFACTURER: Final = "APsystems ECU Proxy project"
PROJECT_URL: Final = "https://github.com/apsystems-ecu-proxy/apsystems-ecu-proxy"
ISSUE_TRACKER_URL: Final = f"{PROJECT_URL}/issues"
EMA_URL: Final = constants.EMA_URL

# How long without any ECU data before the "no ECU data" repair issue is raised.
NO_ECU_DATA_ISSUE_AFTER_HOURS: Final = 24

# Reconnect backoff, in seconds: doubles from the first to the last value. The cap
# is low so that a service that comes back (an add-on restart or update) is picked
# up within 10 s; one WebSocket attempt every 10 s costs the service nothing.
RECONNECT_MIN_DELAY: Final = 1.0
RECONNECT_MAX_DELAY: Final = 10.0

# How many raw frames the diagnostics download asks the service for.
DIAGNOSTICS_FRAMES: Final = 20

ISSUE_NO_ECU_DATA: Final = "no_ecu_data"
ISSUE_INCOMPATIBLE_SCHEMA: Final = "incompatible_schema"
ISSUE_UNKNOWN_INVERTER_PREFIX: Final = "unknown_inverter_"
ISSUE_EMA_COMMAND_GUARD_OFF: Final = "ema_command_guard_off"


def addon_page_url(slug: str) -> str:
    """Return the link to the add-on's page in Home Assistant."""
    return f"homeassistant://hassio/addon/{slug}/info"
