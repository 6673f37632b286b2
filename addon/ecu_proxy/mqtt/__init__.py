"""MQTT output: state topics, availability and Home Assistant discovery."""

from .config import MqttSettings, resolve_settings
from .publisher import MqttPublisher
from .status import MqttStatus

__all__ = ["MqttPublisher", "MqttSettings", "MqttStatus", "resolve_settings"]
