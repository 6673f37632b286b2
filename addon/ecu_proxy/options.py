"""Service settings: defaults, the add-on's options file, and validation."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import constants
from .contract.constants import GuardMode
from .guard import BLOCKABLE_ACTIONS, GuardSettings
from .wire import is_ecu_id

DEFAULT_EMA_HOST = constants.EMA_HOST
DEFAULT_PORTS = (8995, 8996, 8997)
DEFAULT_API_PORT = constants.DEFAULT_API_PORT
DEFAULT_RESOLVERS = ("1.1.1.1", "9.9.9.9", "8.8.8.8")
MQTT_AUTO = "auto"
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTT_TOPIC_PREFIX = "apsystems_ecu_proxy"
DEFAULT_MQTT_DISCOVERY_PREFIX = "homeassistant"
# A topic prefix: one or more levels without wildcards, no leading or trailing "/".
_TOPIC_PREFIX = re.compile(r"^[^/#+\s]+(/[^/#+\s]+)*$")
LOG_LEVELS = ("trace", "debug", "info", "notice", "warning", "error", "fatal")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class Mode(enum.StrEnum):
    """Whether uploads go on to EMA."""

    FORWARD = "forward"
    CLOUDLESS = "cloudless"


class OptionsError(ValueError):
    """An option has a value the service cannot use."""


@dataclass(frozen=True, slots=True)
class Options:
    """Everything the service can be told."""

    listen: str = "0.0.0.0"
    ports: tuple[int, ...] = DEFAULT_PORTS
    extra_ports: tuple[int, ...] = ()
    ema_host: str = DEFAULT_EMA_HOST
    mode: Mode = Mode.FORWARD
    api_host: str = "0.0.0.0"
    api_port: int = DEFAULT_API_PORT
    api_token: str | None = None
    data_dir: Path = Path("data")
    dns_resolvers: tuple[str, ...] = DEFAULT_RESOLVERS
    allowed_ecu_ids: tuple[str, ...] = ()
    # Extra names the API answers to as Host (and pages there as Origin), besides
    # IP addresses, localhost and this machine's own names; "*.example" = any below.
    allowed_hosts: tuple[str, ...] = ()
    capture_frames: bool = True
    log_level: str = "info"
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_connections: int = 64
    max_connections_per_address: int = 8
    install_integration: bool = True
    ema_command_guard: GuardMode = GuardMode.OFF
    blocked_actions: tuple[str, ...] = ()

    @property
    def guard(self) -> GuardSettings:
        """Return the settings of the EMA command guard."""
        return GuardSettings(self.ema_command_guard, self.blocked_actions)

    # MQTT output (ecu_proxy.mqtt); "auto" takes the broker from the Supervisor.
    mqtt_enabled: bool = False
    mqtt_host: str = MQTT_AUTO
    mqtt_port: int = DEFAULT_MQTT_PORT
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_client_id: str | None = None
    mqtt_topic_prefix: str = DEFAULT_MQTT_TOPIC_PREFIX
    mqtt_retain: bool = True
    mqtt_discovery: bool = True
    mqtt_discovery_prefix: str = DEFAULT_MQTT_DISCOVERY_PREFIX

    @property
    def all_ports(self) -> tuple[int, ...]:
        """Return the relay ports, defaults first, without duplicates."""
        return tuple(dict.fromkeys((*self.ports, *self.extra_ports)))

    def validate(self) -> Options:
        """Raise OptionsError naming the first bad option; return self when fine."""
        for port in (*self.all_ports, self.api_port):
            if not 0 <= port <= 65535:
                raise OptionsError(f"port {port} is outside 0-65535")
        if self.api_port and self.api_port in self.all_ports:
            raise OptionsError(f"api_port {self.api_port} is also a relay port")
        if not self.all_ports:
            raise OptionsError("no relay ports configured")
        if not _is_host(self.ema_host):
            raise OptionsError(f"ema_host {self.ema_host!r} is not a host name or IP")
        for resolver in self.dns_resolvers:
            if not _is_ip(resolver):
                raise OptionsError(f"DNS resolver {resolver!r} is not an IP address")
        if (
            self.mode is Mode.FORWARD
            and not self.dns_resolvers
            and not _is_ip(self.ema_host)
        ):
            raise OptionsError(
                "dns_resolvers is empty: list public DNS servers to find "
                f"{self.ema_host}, or set ema_host to an IP address"
            )
        for ecu_id in self.allowed_ecu_ids:
            if not is_ecu_id(ecu_id):
                raise OptionsError(f"allowed ECU id {ecu_id!r} is not 12 digits")
        for host in self.allowed_hosts:
            name = host.removeprefix("*.")
            if not _is_host(name) or (_is_ip(name) and host != name):
                raise OptionsError(f"allowed host {host!r} is not a host name or IP")
        if self.log_level not in LOG_LEVELS:
            raise OptionsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.connect_timeout <= 0 or self.idle_timeout <= 0:
            raise OptionsError("timeouts must be positive")
        if self.max_connections < 1:
            raise OptionsError("max_connections must be at least 1")
        for action in self.blocked_actions:
            if action not in BLOCKABLE_ACTIONS:
                raise OptionsError(
                    f"blocked_actions: {action!r} is not an action that changes the "
                    f"plant; use one of {', '.join(sorted(BLOCKABLE_ACTIONS))}"
                )
        if (
            self.ema_command_guard is GuardMode.BLOCK_LISTED
            and not self.blocked_actions
        ):
            raise OptionsError(
                "ema_command_guard is block_listed but blocked_actions is empty"
            )
        if self.max_connections_per_address < 1:
            raise OptionsError("max_connections_per_address must be at least 1")
        self._validate_mqtt()
        return self

    def _validate_mqtt(self) -> None:
        """Raise OptionsError for an unusable MQTT option (checked even when off)."""
        if self.mqtt_host != MQTT_AUTO and not _is_host(self.mqtt_host):
            raise OptionsError(
                f"mqtt_host {self.mqtt_host!r} is not a host name, an IP or auto"
            )
        if not 1 <= self.mqtt_port <= 65535:
            raise OptionsError(f"mqtt_port {self.mqtt_port} is outside 1-65535")
        for name in ("mqtt_topic_prefix", "mqtt_discovery_prefix"):
            if not _TOPIC_PREFIX.match(getattr(self, name)):
                raise OptionsError(
                    f"{name} must be topic levels without +, # or spaces, "
                    "and no leading or trailing /"
                )

    def replace(self, **changes: Any) -> Options:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# Keys of the add-on's /data/options.json, mapped to Options fields.
_ADDON_KEYS: dict[str, str] = {
    "ema_host": "ema_host",
    "mode": "mode",
    "extra_ports": "extra_ports",
    "api_token": "api_token",
    "allowed_ecu_ids": "allowed_ecu_ids",
    "allowed_hosts": "allowed_hosts",
    "capture_frames": "capture_frames",
    "log_level": "log_level",
    "dns_resolvers": "dns_resolvers",
    "install_integration": "install_integration",
    "idle_timeout": "idle_timeout",
    "max_connections": "max_connections",
    "ema_command_guard": "ema_command_guard",
    "blocked_actions": "blocked_actions",
    "max_connections_per_address": "max_connections_per_address",
    "mqtt_enabled": "mqtt_enabled",
    "mqtt_host": "mqtt_host",
    "mqtt_port": "mqtt_port",
    "mqtt_username": "mqtt_username",
    "mqtt_password": "mqtt_password",
    "mqtt_tls": "mqtt_tls",
    "mqtt_ca_file": "mqtt_ca_file",
    "mqtt_client_id": "mqtt_client_id",
    "mqtt_topic_prefix": "mqtt_topic_prefix",
    "mqtt_retain": "mqtt_retain",
    "mqtt_discovery": "mqtt_discovery",
    "mqtt_discovery_prefix": "mqtt_discovery_prefix",
}


def options_from_mapping(raw: dict[str, Any], base: Options | None = None) -> Options:
    """Build Options from the add-on's options mapping; unknown keys are errors."""
    base = base or Options()
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _ADDON_KEYS:
            raise OptionsError(f"unknown option {key!r}")
        name = _ADDON_KEYS[key]
        changes[name] = _coerce(name, value)
    return base.replace(**changes)


def load_options_file(path: Path, base: Options | None = None) -> Options:
    """Read an options.json file (the add-on's /data/options.json)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise OptionsError(f"cannot read options file {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise OptionsError(f"options file {path} is not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise OptionsError(f"options file {path} must hold a JSON object")
    return options_from_mapping(raw, base)


def _coerce(name: str, value: Any) -> Any:
    """Convert one option value to the field's type, or raise OptionsError."""
    try:
        match name:
            case "mode":
                return Mode(str(value))
            case "ema_command_guard":
                return GuardMode(str(value))
            case "blocked_actions":
                return tuple(str(v).strip() for v in (value or ()) if str(v).strip())
            case "extra_ports":
                return tuple(int(p) for p in (value or ()))
            case "allowed_ecu_ids" | "dns_resolvers" | "allowed_hosts":
                return tuple(str(v).strip() for v in (value or ()) if str(v).strip())
            case "api_token":
                return str(value) if value else None
            case (
                "capture_frames"
                | "install_integration"
                | "mqtt_enabled"
                | "mqtt_tls"
                | "mqtt_retain"
                | "mqtt_discovery"
            ):
                if not isinstance(value, bool):
                    raise TypeError("expected true or false")  # noqa: TRY301 - named below
                return value
            case "idle_timeout":
                return float(value)
            case "max_connections" | "max_connections_per_address" | "mqtt_port":
                return int(value)
            case "mqtt_username" | "mqtt_password" | "mqtt_client_id":
                return str(value) if value else None
            case "mqtt_ca_file":
                return Path(str(value)) if value else None
            case _:
                return str(value)
    except (TypeError, ValueError) as err:
        raise OptionsError(f"option {name!r}: {err}") from err


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    return _is_ip(text) or bool(_HOSTNAME.match(text))
