"""Names and numbers the service and the integration must agree on (docs/api.md)."""

from __future__ import annotations

import enum
from typing import Final

# The API schema this contract describes, and the oldest one a peer may still speak.
SCHEMA_VERSION: Final = 1
MIN_SCHEMA_VERSION: Final = 1

# The integration's domain; the add-on installs it and announces itself under it.
DOMAIN: Final = "apsystems_ema_proxy"
# The name ECUs upload to; the user points it at the proxy in the LAN's DNS.
EMA_HOST: Final = "ecu.apsystemsema.com"
# EMA's web site, for links.
EMA_URL: Final = "https://www.apsystemsema.com"
# The service's API port unless configured otherwise.
DEFAULT_API_PORT: Final = 8990


class CloseCode(enum.IntEnum):
    """WebSocket close codes of the service."""

    GOING_AWAY = 1001
    AUTH_FAILED = 4001
    TOO_SLOW = 4002
    INCOMPATIBLE_SCHEMA = 4003


class ErrorCode(enum.StrEnum):
    """The ``error_code`` of a failed command result."""

    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ARGS = "invalid_args"
    NOT_AUTHENTICATED = "not_authenticated"
    INTERNAL_ERROR = "internal_error"
    BUSY = "busy"


class UpstreamResult(enum.StrEnum):
    """Outcome of relaying one ECU upload to EMA (or answering it locally)."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    CLOUDLESS = "cloudless"


class GuardMode(enum.StrEnum):
    """What the EMA command guard blocks."""

    OFF = "off"
    BLOCK_CHANGES = "block_changes"
    BLOCK_LISTED = "block_listed"


class CommandOutcome(enum.StrEnum):
    """What the proxy did with a command EMA sent."""

    FORWARDED = "forwarded"
    BLOCKED = "blocked"


# The family the service gives an inverter whose type code it does not know.
UNKNOWN_FAMILY: Final = "unknown"
