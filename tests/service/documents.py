"""The JSON form of the service's objects as the API sends them (via document.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ecu_proxy import document
from ecu_proxy.contract.codec import encode
from ecu_proxy.frame_json import decoded

if TYPE_CHECKING:
    from ecu_proxy.contract.state import EmaCommand
    from ecu_proxy.ecu_state import EcuState
    from ecu_proxy.guard import Guard
    from ecu_proxy.models import DecodedFrame
    from ecu_proxy.state import LiveState


def frame_json(frame: DecodedFrame) -> dict[str, Any]:
    """Return a decoded frame as the API and ``decode`` show it."""
    data: dict[str, Any] = encode(decoded(frame))
    return data


def ecu_json(ecu: EcuState) -> dict[str, Any]:
    """Return an ECU as a record event shows it."""
    data: dict[str, Any] = encode(document.ecu(ecu))
    return data


def ecus_json(state: LiveState) -> dict[str, Any]:
    """Return every ECU of the state, by id, in id order."""
    return {ecu_id: ecu_json(state.ecus[ecu_id]) for ecu_id in sorted(state.ecus)}


def command_json(entry: EmaCommand) -> dict[str, Any]:
    """Return an EMA command as the state document lists it."""
    data: dict[str, Any] = encode(entry)
    return data


def guard_json(guard: Guard) -> dict[str, Any]:
    """Return the guard as the state document shows it."""
    data: dict[str, Any] = encode(document.guard(guard))
    return data
