"""The API projection: the service's live objects as contract messages (docs/api.md).

The contract package (``ecu_proxy.contract``) defines what the API sends; this module
only picks the values out of the state, the command log and the guard. Energy is
kept in integer mWh and shown in kWh.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from .contract.constants import SCHEMA_VERSION
from .contract.messages import EmaCommandData
from .contract.state import (
    Channel,
    Document,
    Ecu,
    EmaCommand,
    Guard,
    Inverter,
    Upstream,
)
from .ecu_state import kwh
from .peaks import Peak

if TYPE_CHECKING:
    from .ecu_state import ChannelState, EcuState, InverterState, UpstreamState
    from .guard import Guard as CommandGuard


def channel(state: ChannelState) -> Channel:
    """Return one DC channel of an inverter."""
    return Channel(
        channel=state.channel,
        dc_voltage_v=state.dc_voltage_v,
        dc_current_a=state.dc_current_a,
        power_w=state.power_w,
        energy_today_kwh=kwh(state.today_mwh),
        energy_total_kwh=kwh(state.total_mwh),
    )


def inverter(state: InverterState, peak: Peak) -> Inverter:
    """Return one inverter with its peaks."""
    return Inverter(
        id=state.id,
        type_code=state.type_code,
        family=state.family,
        online=state.online,
        last_seen=state.last_seen,
        last_record_at=state.last_record_at,
        ac_voltage_v=state.ac_voltage_v,
        phase_voltages_v=(
            list(state.phase_voltages_v) if state.phase_voltages_v else None
        ),
        frequency_hz=state.frequency_hz,
        temperature_c=state.temperature_c,
        power_w=state.power_w,
        energy_today_kwh=kwh(state.today_mwh),
        energy_total_kwh=kwh(state.total_mwh),
        raw=state.raw,
        channels=[channel(state.channels[n]) for n in sorted(state.channels)],
        peak_power_today_w=peak.today_w,
        peak_power_ever_w=peak.ever_w,
    )


def upstream(state: UpstreamState) -> Upstream:
    """Return how the ECU's last upload went."""
    return Upstream(state.result, state.at, state.rtt_ms, state.detail)


def ecu(state: EcuState, commands: list[EmaCommand] | None = None) -> Ecu:
    """Return one ECU; ``commands`` only in the state document."""
    peaks = state.peaks
    return Ecu(
        ecu_id=state.ecu_id,
        model=state.model,
        last_seen=state.last_seen,
        last_record_at=state.last_record_at,
        power_w=state.power_w,
        lifetime_energy_kwh=state.lifetime_energy_kwh,
        energy_today_kwh=kwh(state.today_mwh),
        today=state.today,
        inverter_count=state.inverter_count,
        inverters_online=state.inverters_online,
        warnings=list(state.warnings),
        upstream=upstream(state.upstream),
        inverters={
            inv_id: inverter(
                state.inverters[inv_id], peaks.inverters.get(inv_id, Peak())
            )
            for inv_id in sorted(state.inverters)
        },
        peak_power_today_w=peaks.ecu.today_w,
        peak_power_ever_w=peaks.ecu.ever_w,
        energy_this_hour_kwh=kwh(peaks.hour_mwh),
        hour_start=peaks.hour,
        commands=commands,
    )


def ema_command_data(command: EmaCommand, blocked_count: int) -> EmaCommandData:
    """Return the ``data`` of an ``ema_command`` event."""
    values = {item.name: getattr(command, item.name) for item in fields(command)}
    return EmaCommandData(**values, blocked_count=blocked_count)


def guard(state: CommandGuard) -> Guard:
    """Return the guard's options and what it blocked."""
    counts = state.counts
    return Guard(
        mode=state.settings.mode,
        blocked_actions=sorted(set(state.settings.blocked_actions)),
        blocked_total=counts.total,
        blocked_by_ecu=dict(sorted(counts.by_ecu.items())),
        blocked_by_action=dict(sorted(counts.by_action.items())),
    )


def document(
    server_id: str,
    version: str,
    ecus: dict[str, EcuState],
    commands: dict[str, list[EmaCommand]],
    command_guard: CommandGuard,
) -> Document:
    """Return the state document."""
    return Document(
        server_id=server_id,
        version=version,
        schema_version=SCHEMA_VERSION,
        ecus={
            ecu_id: ecu(ecus[ecu_id], commands.get(ecu_id, []))
            for ecu_id in sorted(ecus)
        },
        guard=guard(command_guard),
    )
