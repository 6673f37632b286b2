"""Turn the service options (and the Supervisor's MQTT service) into settings."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..options import MQTT_AUTO, OptionsError

if TYPE_CHECKING:
    from ..options import Options


@dataclass(frozen=True, slots=True)
class BrokerService:
    """The broker the Supervisor offers (``GET /services/mqtt``)."""

    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how to publish."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: Path | None
    client_id: str
    topic_prefix: str
    retain: bool
    discovery: bool
    discovery_prefix: str

    @property
    def broker(self) -> str:
        """Return ``host:port`` for logs and health."""
        return f"{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """Return the TLS context (the CA file, else the system CAs), or None.

        Raise OSError naming the CA file when it cannot be read.
        """
        if not self.tls:
            return None
        if self.ca_file is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as err:
            raise OSError(f"cannot use mqtt_ca_file {self.ca_file}: {err}") from None


def resolve_settings(
    options: Options, server_id: str, service: BrokerService | None
) -> MqttSettings:
    """Combine the options with the Supervisor's broker when the host is "auto".

    Credentials given in the options win over the Supervisor's. Raise OptionsError
    when the host is "auto" but no broker is offered.
    """
    host, port = options.mqtt_host, options.mqtt_port
    username, password, tls = (
        options.mqtt_username,
        options.mqtt_password,
        options.mqtt_tls,
    )
    if host == MQTT_AUTO:
        if service is None:
            raise OptionsError(
                'mqtt_host is "auto" but no MQTT broker is offered by the Supervisor '
                "(install the Mosquitto broker add-on, or set mqtt_host)"
            )
        host, port, tls = service.host, service.port, tls or service.ssl
        if username is None:
            username, password = service.username, service.password
    return MqttSettings(
        host=host,
        port=port,
        username=username,
        password=password,
        tls=tls,
        ca_file=options.mqtt_ca_file,
        client_id=options.mqtt_client_id or f"apsystems_ecu_proxy_{server_id[:12]}",
        topic_prefix=options.mqtt_topic_prefix,
        retain=options.mqtt_retain,
        discovery=options.mqtt_discovery,
        discovery_prefix=options.mqtt_discovery_prefix,
    )
