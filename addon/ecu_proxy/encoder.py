"""Build ECU -> EMA frames: version-18 data records, reconciliation queries, polls.

Used by the tests, the demo's simulated ECU and the benchmarks. The output decodes
back with ``decode_frame`` to the values it was built from (``encode_data_record``
round-trips). Fields the decoder does not report (reactive and active AC power,
inverter energy counters, status bits) are written as zeros. Values that do not fit
their fixed-width field raise ``ValueError``: an encoder must not write a record
that a real ECU could not have sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import DecodedFrame, FrameKind
from .wire import (
    BLOCK_TYPES,
    ECU_BLOCK_LEN,
    format_wire_timestamp,
)

if TYPE_CHECKING:
    from .models import Channel, Inverter

_MAX_LENGTH = 99_999


def _num(value: float | None, width: int, scale: float, name: str) -> str:
    """Return ``round(value * scale)`` zero-padded to ``width`` digits."""
    if value is None:
        raise ValueError(f"{name} is missing")
    number = round(value * scale)
    text = str(number)
    if number < 0 or len(text) > width:
        raise ValueError(f"{name} = {value} does not fit {width} digits (x{scale:g})")
    return text.zfill(width)


def format_signed_temperature(celsius: float) -> str:
    """Return the 3-character sign-coded temperature of type 03/05 blocks."""
    value = round(celsius)
    if value <= -100 or value > 999:
        raise ValueError(f"temperature {celsius} cannot be sign-coded in 3 characters")
    if value <= -10:
        return f"B{-value:02d}"
    if value < 0:
        return f"AB{-value}"
    if value < 10:
        return f"AA{value}"
    if value < 100:
        return f"A{value:02d}"
    return f"{value:03d}"


def _length_field(length: int, padding: str) -> str:
    if padding not in ("A", "0"):
        raise ValueError(f"padding must be 'A' or '0', not {padding!r}")
    if length > _MAX_LENGTH:
        raise ValueError(f"record of {length} characters exceeds the 5-digit length")
    return str(length).rjust(5, padding)


def _ecu_id(ecu_id: str | None) -> str:
    if ecu_id is None or len(ecu_id) != 12 or not ecu_id.isdigit():
        raise ValueError(f"ECU id must be 12 digits, not {ecu_id!r}")
    return ecu_id


def _check_channels(inverter: Inverter, count: int) -> tuple[Channel, ...]:
    if len(inverter.channels) != count:
        raise ValueError(
            f"inverter {inverter.id} (type {inverter.type_code}) needs {count} "
            f"channels, has {len(inverter.channels)}"
        )
    return inverter.channels


def _channel_group(channel: Channel, marker: str) -> str:
    """Marker + DC V x10 (5) + DC A x10 (3) + energy kWh x1e6 (6) + power W x100 (5)."""
    return (
        marker
        + _num(channel.dc_voltage_v, 5, 10, "DC voltage")
        + _num(channel.dc_current_a, 3, 10, "DC current")
        + _num(channel.round_energy_wh, 6, 1000, "channel energy")
        + _num(channel.power_w, 5, 100, "channel power")
    )


def _yc600_qs1(inverter: Inverter) -> str:
    channels = _check_channels(inverter, 2 if inverter.type_code == "07" else 4)
    head = (
        _num(inverter.ac_voltage_v, 3, 1, "AC voltage")
        + _num(inverter.frequency_hz, 5, 10, "frequency")
        + _num(_plus_100(inverter.temperature_c), 3, 1, "temperature + 100")
        + "0" * 20  # reactive power, active power, inverter energy counter
    )
    return head + "".join(
        _channel_group(ch, str(n)) for n, ch in enumerate(channels, 1)
    )


def _yc1000(inverter: Inverter) -> str:
    channels = _check_channels(inverter, 4)
    phases = inverter.phase_voltages_v or (inverter.ac_voltage_v or 0.0,) * 3
    if len(phases) != 3:
        raise ValueError(f"inverter {inverter.id}: type 04 needs 3 phase voltages")
    parts = [
        _num(channels[0].dc_voltage_v, 5, 10, "DC voltage"),
        _num(inverter.frequency_hz, 5, 10, "frequency"),
        _num(_plus_100(inverter.temperature_c), 3, 1, "temperature + 100"),
    ]
    for number, (channel, phase) in enumerate(zip(channels, phases, strict=False), 1):
        parts.append(
            str(number)
            + _num(channel.dc_current_a, 3, 10, "DC current")
            + _num(phase, 3, 1, "phase voltage")
            + "0" * 16  # reactive, active power, energy counter
            + _num(channel.round_energy_wh, 6, 1000, "channel energy")
            + _num(channel.power_w, 5, 100, "channel power")
        )
    fourth = channels[3]
    parts.append(
        "4"
        + _num(fourth.dc_current_a, 3, 10, "DC current")
        + _num(fourth.round_energy_wh, 6, 1000, "channel energy")
        + _num(fourth.power_w, 5, 100, "channel power")
    )
    return "".join(parts)


def _yc500_yc250(inverter: Inverter) -> str:
    channels = _check_channels(inverter, 2 if inverter.type_code == "03" else 1)
    if inverter.temperature_c is None:
        raise ValueError("temperature is missing")
    head = (
        _num(inverter.ac_voltage_v, 3, 1, "AC voltage")
        + _num(inverter.frequency_hz, 5, 10, "frequency")
        + format_signed_temperature(inverter.temperature_c)
        + "0" * 16  # reactive power, active power, inverter energy counter
    )
    return head + "".join(
        _channel_group(ch, letter) + "0" * 11  # status bits
        for letter, ch in zip("AB", channels, strict=False)
    )


def _plus_100(celsius: float | None) -> float | None:
    return None if celsius is None else celsius + 100


_BODIES = {
    "03": _yc500_yc250,
    "04": _yc1000,
    "05": _yc500_yc250,
    "07": _yc600_qs1,
    "08": _yc600_qs1,
}


def encode_inverter_block(inverter: Inverter) -> str:
    """Return one inverter block (ending in END) of a version-18 record.

    Known type codes are built from the values; for other codes ``raw`` (the whole
    block as received, ending in END) is written unchanged.
    """
    body = _BODIES.get(inverter.type_code)
    if body is None:
        raw = inverter.raw
        if not raw or not raw.endswith("END") or "END" in raw[:-3]:
            raise ValueError(
                f"inverter {inverter.id}: unknown type code {inverter.type_code!r} "
                "needs its raw block, ending in one END"
            )
        return raw
    if len(inverter.id) != 12 or not inverter.id.isdigit():
        raise ValueError(f"inverter id must be 12 digits, not {inverter.id!r}")
    block = inverter.id + inverter.type_code + body(inverter) + "END"
    expected = BLOCK_TYPES[inverter.type_code][1]
    if len(block) != expected:  # pragma: no cover - guards the layouts above
        raise AssertionError(f"type {inverter.type_code} block is {len(block)} chars")
    return block


def encode_data_record(
    record: DecodedFrame,
    *,
    padding: str = "A",
    command: str = "AAAA",
    sequence: str = "AAA1",
    trailing_lf: bool = True,
) -> bytes:
    """Build a version-18 data record from a ``DecodedFrame`` of kind DATA.

    ``inverter_count`` is written as given (it may differ from the number of
    blocks, to test the decoder's warning); if None the block count is used.
    ``padding`` is the length field's leading character: ``A`` (``AA302``, the
    ECU-R) or ``0`` (``00302``, the Linux fill-up path, with command ``0000`` and
    sequence ``0001``).
    """
    if record.kind is not FrameKind.DATA:
        raise ValueError(f"can only encode data records, not {record.kind.value}")
    if len(command) != 4 or len(sequence) != 4:
        raise ValueError("command and sequence must be 4 characters each")
    if record.timestamp is None:
        raise ValueError("timestamp is missing")
    count = (
        len(record.inverters)
        if record.inverter_count is None
        else record.inverter_count
    )
    ecu_block = (
        _ecu_id(record.ecu_id)
        + _num(record.power_w, 10, 1, "ECU power")
        + _num(record.round_energy_kwh or 0.0, 10, 1e6, "ECU round energy")
        + _num(record.lifetime_energy_kwh, 10, 10, "lifetime energy")
        + format_wire_timestamp(record.timestamp)
        + _num(count, 3, 1, "inverter count")
        + "0"  # time zone changed flag
        + ("1" if record.more_records else "0")
        + "0000END"
    )
    blocks = "".join(encode_inverter_block(inv) for inv in record.inverters)
    length = 18 + len(ecu_block) + len(blocks)
    assert 18 + len(ecu_block) == ECU_BLOCK_LEN
    text = (
        "APS18"
        + _length_field(length, padding)
        + command
        + sequence
        + ecu_block
        + blocks
        + ("\n" if trailing_lf else "")
    )
    return text.encode("ascii")


def encode_reconcile_query(ecu_id: str) -> bytes:
    """Build the night-time reconciliation query ``APS13AAA22`` + ECU id + LF."""
    return f"APS13AAA22{_ecu_id(ecu_id)}\n".encode("ascii")


def encode_control_poll(ecu_id: str, *, padding: str = "0") -> bytes:
    """Build the control-port poll (command A101), 51 characters + LF.

    ``padding="0"`` gives the production spelling ``APS1300051A101AAA0...``;
    ``"A"`` the ``APS13AAA51...`` one.
    """
    body = f"A101AAA0{_ecu_id(ecu_id)}A101{'0' * 14}END"
    return f"APS13{_length_field(10 + len(body), padding)}{body}\n".encode("ascii")


# -- ECU-3 typed record (APS15, command 0002) ---------------------------------------


def _apad(value: float | None, width: int, scale: float, name: str) -> str:
    """Return ``round(value * scale)`` padded to ``width`` with ``A`` (ECU-3 style)."""
    return (_num(value, width, scale, name).lstrip("0") or "0").rjust(width, "A")


def _ecu3_block(inverter: Inverter, status: str) -> str:
    if inverter.type_code == "04":
        channels = _check_channels(inverter, 4)
        phases = inverter.phase_voltages_v or (inverter.ac_voltage_v or 0.0,) * 3
        if inverter.temperature_c is None:
            raise ValueError("temperature is missing")
        parts = [
            _apad(channels[0].dc_voltage_v, 5, 10, "DC voltage"),
            _apad(inverter.frequency_hz, 5, 10, "frequency"),
            format_signed_temperature(inverter.temperature_c),
        ]
        for number, (channel, phase) in enumerate(
            zip(channels, phases, strict=False), 1
        ):
            parts.append(
                str(number)
                + _apad(channel.dc_current_a, 3, 10, "DC current")
                + _apad(phase, 3, 1, "phase voltage")
                + _apad(0, 5, 1, "reactive power")
                + _apad(0, 5, 1, "active power")
                + _apad(0, 6, 1, "energy counter")
                + _apad(channel.round_energy_wh, 6, 1000, "channel energy")
                + _apad(channel.power_w, 5, 100, "channel power")
                + status
            )
        fourth = channels[3]
        parts.append(
            "4"
            + _apad(fourth.dc_current_a, 3, 10, "DC current")
            + _apad(fourth.round_energy_wh, 6, 1000, "channel energy")
            + _apad(fourth.power_w, 5, 100, "channel power")
        )
        return inverter.id + "04" + "".join(parts) + "END"
    if inverter.type_code in ("03", "05"):
        channels = _check_channels(inverter, 2 if inverter.type_code == "03" else 1)
        if inverter.temperature_c is None:
            raise ValueError("temperature is missing")
        head = (
            _apad(inverter.ac_voltage_v, 3, 1, "AC voltage")
            + _apad(inverter.frequency_hz, 5, 10, "frequency")
            + format_signed_temperature(inverter.temperature_c)
            + _apad(0, 5, 1, "reactive power")
            + _apad(0, 5, 1, "active power")
            + _apad(0, 6, 1, "energy counter")
        )
        groups = "".join(
            letter
            + _apad(ch.dc_voltage_v, 5, 10, "DC voltage")
            + _apad(ch.dc_current_a, 3, 10, "DC current")
            + _apad(ch.round_energy_wh, 6, 1000, "channel energy")
            + _apad(ch.power_w, 5, 100, "channel power")
            + status
            for letter, ch in zip("AB", channels, strict=False)
        )
        return inverter.id + inverter.type_code + head + groups + "END"
    raise ValueError(
        f"inverter {inverter.id}: type {inverter.type_code!r} is not in the ECU-3 "
        "typed record (03, 04, 05)"
    )


def encode_ecu3_typed_record(
    record: DecodedFrame, *, status: str = "0" * 11, trailing_lf: bool = True
) -> bytes:
    """Build the ECU-3 (Linux, YC1000 build) record: APS15, command 0002.

    The layout follows the firmware source (docs/protocol.md §4.10); no capture confirms
    it. Numbers are padded with ``A``, the ECU power is W x100, and each channel
    group of types 03/04/05 carries the 11-character ``status``.
    """
    if record.kind is not FrameKind.DATA or record.timestamp is None:
        raise ValueError("can only encode data records with a timestamp")
    if len(status) != 11 or not status.isdigit():
        raise ValueError("status must be 11 digits")
    ecu_block = (
        _ecu_id(record.ecu_id)
        + _apad(record.power_w, 10, 100, "ECU power")
        + _apad(record.round_energy_kwh or 0.0, 10, 1e6, "ECU round energy")
        + _apad(record.lifetime_energy_kwh, 10, 10, "lifetime energy")
        + format_wire_timestamp(record.timestamp)
        + _num(len(record.inverters), 3, 1, "inverter count")
        + "0"  # time zone flag
        + "00000END"
    )
    blocks = "".join(_ecu3_block(inv, status) for inv in record.inverters)
    length = 18 + len(ecu_block) + len(blocks)
    text = f"APS15{_length_field(length, 'A')}0002AAA1{ecu_block}{blocks}" + (
        "\n" if trailing_lf else ""
    )
    return text.encode("ascii")
