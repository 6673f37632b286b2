"""The integration's picture of the service: the state document, kept current by events.

The messages themselves are the contract's (``contract/``); this module only holds
what the integration adds: applying events to the last state it was sent, and the
words it shows for an EMA command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from .contract.messages import (
    EcuStatusEvent,
    EmaCommandData,
    Event,
    InverterAddedEvent,
    RecordEvent,
)
from .contract.state import Document, Ecu, Upstream


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything the service knows: ECUs by id."""

    server_id: str | None = None
    version: str | None = None
    ecus: Mapping[str, Ecu] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Document) -> ProxyState:
        """Start from a state document."""
        return cls(document.server_id, document.version, dict(document.ecus))

    def apply(self, event: Event) -> ProxyState:
        """Return the state with one event applied."""
        ecus = dict(self.ecus)
        match event:
            case RecordEvent(data=data):
                ecus[data.ecu_id] = data.ecu
            case InverterAddedEvent(data=data):
                if (ecu := ecus.get(data.ecu_id)) is None:
                    return self
                inverters = dict(ecu.inverters)
                inverters[data.inverter.id] = data.inverter.as_inverter()
                ecus[data.ecu_id] = dataclasses.replace(ecu, inverters=inverters)
            case EcuStatusEvent(data=data):
                # An ECU may be heard from (an upload attempt) before its first
                # record: the service then keeps it, so do the same.
                ecu = ecus.get(data.ecu_id) or empty_ecu(data.ecu_id)
                ecus[data.ecu_id] = dataclasses.replace(ecu, upstream=data.upstream)
            case _:
                return self
        return dataclasses.replace(self, ecus=ecus)


def empty_ecu(ecu_id: str) -> Ecu:
    """Return an ECU known by id only, with no record yet."""
    return Ecu(
        ecu_id=ecu_id,
        model=None,
        last_seen=None,
        last_record_at=None,
        power_w=None,
        lifetime_energy_kwh=None,
        energy_today_kwh=0.0,
        today=None,
        inverter_count=None,
        inverters_online=0,
        warnings=[],
        upstream=Upstream(None, None, None, None),
        inverters={},
        peak_power_today_w=None,
        peak_power_ever_w=None,
        energy_this_hour_kwh=0.0,
        hour_start=None,
    )


def command_name(command: EmaCommandData) -> str | None:
    """Return the command an EMA command frame is really about (A111, ...)."""
    return command.inner_command or command.command


def answer_text(command: EmaCommandData) -> str | None:
    """Return the ECU's answer: its action, and the result of an acknowledgement."""
    answer = command.answer
    if answer is None:
        return None
    if answer.result is not None:
        return f"{answer.action}: {answer.result}"
    return answer.action
