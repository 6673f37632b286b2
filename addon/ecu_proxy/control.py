"""Decode what a control-port (8997) frame asks for or reports.

The outer command id sits at [10:14]. When it is ``A101`` (EMA's answer to a poll)
or ``A100`` (an acknowledgement, or EMA's "no more commands"), the command the frame
is really about sits at [30:34]. Ids, names and layouts come from the protocol spec
sections 5.2-5.4 and the published frames in tests/fixtures/vectors/control; what
is not known is kept as raw text, never guessed. ``decode_control`` never raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

POLL = "A101"
ACK = "A100"
HEADER_LEN = 30  # APS13 + length + command + sequence + ECU id
TIMESTAMP_LEN = 14
MAX_RAW_TEXT = 512


class Action(enum.StrEnum):
    """What a control frame asks for or reports, in our words."""

    POLL = "poll"
    NO_MORE_COMMANDS = "no_more_commands"
    ACKNOWLEDGEMENT = "acknowledgement"
    REQUEST_REPORTS = "request_reports"
    INVERTER_LIST_REPORT = "inverter_list_report"
    SET_INVERTER_LIST = "set_inverter_list"
    TIME_ZONE_REPORT = "time_zone_report"
    SET_TIME_ZONE = "set_time_zone"
    EMA_SERVER_REPORT = "ema_server_report"
    SET_EMA_SERVER = "set_ema_server"
    CUSTOM_COMMAND = "custom_command"
    SET_MAX_POWER = "set_max_power"
    MAX_POWER_REPORT = "max_power_report"
    SWITCH_INVERTERS = "switch_inverters"
    CLEAR_GFDI = "clear_gfdi"
    SET_REPORTING = "set_reporting"
    IRD_REPORT = "ird_report"
    SET_IRD = "set_ird"
    PROTECTION_REPORT = "protection_report"
    INVERTER_PROTECTION_REPORT = "inverter_protection_report"
    SET_PROTECTION = "set_protection"
    FIRMWARE_UPDATE = "firmware_update"
    POWER_FACTOR_REPORT = "power_factor_report"
    SET_POWER_FACTOR = "set_power_factor"
    REPORT = "report"
    UNKNOWN = "unknown"


# Command id -> action (docs/protocol.md §7.3); the ids EMA asks for in an A118
# bundle are reports.
COMMANDS: dict[str, Action] = {
    "A102": Action.INVERTER_LIST_REPORT,
    "A103": Action.SET_INVERTER_LIST,
    "A104": Action.TIME_ZONE_REPORT,
    "A105": Action.SET_TIME_ZONE,
    "A106": Action.EMA_SERVER_REPORT,
    "A107": Action.SET_EMA_SERVER,
    "A108": Action.CUSTOM_COMMAND,
    "A110": Action.SET_MAX_POWER,
    "A111": Action.SWITCH_INVERTERS,
    "A112": Action.CLEAR_GFDI,
    "A113": Action.PROTECTION_REPORT,
    "A114": Action.REPORT,
    "A117": Action.MAX_POWER_REPORT,
    "A118": Action.REQUEST_REPORTS,
    "A119": Action.SET_REPORTING,
    "A120": Action.PROTECTION_REPORT,
    "A121": Action.REPORT,
    "A124": Action.REPORT,
    "A126": Action.IRD_REPORT,
    "A127": Action.SET_IRD,
    "A130": Action.PROTECTION_REPORT,
    "A131": Action.INVERTER_PROTECTION_REPORT,
    "A132": Action.SET_PROTECTION,
    "A136": Action.FIRMWARE_UPDATE,
    "A145": Action.POWER_FACTOR_REPORT,
    "A146": Action.SET_POWER_FACTOR,
}

# Actions that change the ECU or its inverters when EMA sends them. Unknown ids
# count as changes: nobody can say they are harmless.
PLANT_CHANGING: frozenset[Action] = frozenset(
    {
        Action.SET_INVERTER_LIST,
        Action.SET_TIME_ZONE,
        Action.SET_EMA_SERVER,
        Action.CUSTOM_COMMAND,
        Action.SET_MAX_POWER,
        Action.SWITCH_INVERTERS,
        Action.CLEAR_GFDI,
        Action.SET_REPORTING,
        Action.SET_IRD,
        Action.SET_PROTECTION,
        Action.FIRMWARE_UPDATE,
        Action.SET_POWER_FACTOR,
        Action.UNKNOWN,
    }
)

# A111: the digit after the ECU id. PROVENANCE of the control vectors.
SWITCH_SCOPES = {"0": "all_on", "1": "all_off", "2": "list"}
# A100 acknowledgement flag. docs/protocol.md §7.4.
ACK_RESULTS = {"0": "done", "2": "unknown_command"}
# A103: the digit after the ECU id.
INVERTER_LIST_MODES = {"0": "clear", "1": "add"}


class ControlError(ValueError):
    """A control frame is too short for the layout of its command."""


@dataclass(frozen=True, slots=True)
class ControlDetails:
    """What a control frame is about, beyond its outer command id.

    ``parameters`` holds only fields whose meaning is known and safe to show
    (strings, integers, lists of strings); ``raw_text`` keeps the payload after
    the ECU id of a command whose layout is not known.
    """

    inner_command: str | None
    action: Action
    changes_plant: bool
    parameters: dict[str, Any]
    raw_text: str | None = None
    problem: str | None = None


def decode_control(text: str) -> ControlDetails | str:
    """Decode an APS13 control frame (LF removed); return details or an error.

    A frame too short for the layout of its command keeps the action of its id
    (so the guard still sees what it asks for) with no parameters, its payload as
    ``raw_text`` and the reason in ``problem``. A string result means there is no
    command id to read at all. Never raises.
    """
    try:
        return _decode(text)
    except Exception as err:  # noqa: BLE001 - the contract is "never raises"
        reason = (
            str(err)
            if isinstance(err, ControlError)
            else f"control decoder error: {type(err).__name__}: {err}"
        )
        if len(text) < HEADER_LEN:
            return reason
        outer = text[10:14]
        inner = text[30:34] if outer in (POLL, ACK) and len(text) >= 34 else outer
        if outer == ACK:
            action = Action.ACKNOWLEDGEMENT
        elif inner == POLL:
            action = Action.POLL
        else:
            action = action_of(inner)
        return ControlDetails(
            inner_command=inner,
            action=action,
            changes_plant=action in PLANT_CHANGING,
            parameters={},
            raw_text=_raw(text),
            problem=reason,
        )


def action_of(command: str) -> Action:
    """Return the action of a command id, ``unknown`` when the id is not known."""
    return COMMANDS.get(command, Action.UNKNOWN)


def _details(
    inner: str | None,
    action: Action,
    parameters: dict[str, Any] | None = None,
    raw_text: str | None = None,
) -> ControlDetails:
    return ControlDetails(
        inner_command=inner,
        action=action,
        changes_plant=action in PLANT_CHANGING,
        parameters=parameters or {},
        raw_text=raw_text,
    )


def _need(text: str, size: int, what: str) -> None:
    if len(text) < size:
        raise ControlError(
            f"truncated: {what} needs at least {size} characters, got {len(text)}"
        )


def _timestamp(field: str) -> str | None:
    """Return a 14-digit wire timestamp, or None when it is zeros or not digits."""
    if len(field) == TIMESTAMP_LEN and field.isdigit() and field.strip("0"):
        return field
    return None


def _sections(text: str, start: int) -> list[str]:
    """Return the END-terminated sections from ``start``, without their END."""
    body = text[start:]
    if body.endswith("END"):
        body = body[:-3]
    return body.split("END") if body else []


def _ids(sections: list[str]) -> list[str]:
    """Return the 12-digit inverter ids that open each section."""
    return [s[:12] for s in sections if len(s) >= 12 and s[:12].isdigit()]


def _raw(text: str) -> str:
    return text[HEADER_LEN:][:MAX_RAW_TEXT]


def _decode(text: str) -> ControlDetails:
    _need(text, HEADER_LEN, "a control frame")
    outer = text[10:14]
    if outer == ACK:
        return _ack(text)
    if outer == POLL:
        _need(text, HEADER_LEN + 4, "a poll or its answer")
        inner = text[30:34]
        if inner == POLL:
            return _details(inner, Action.POLL)
        return _command(inner, text, inner_at=HEADER_LEN + 4)
    return _command(outer, text, inner_at=HEADER_LEN)


def _ack(text: str) -> ControlDetails:
    """A100: EMA's "no more commands" (A101 inside) or the ECU's acknowledgement."""
    _need(text, HEADER_LEN + 4, "an A100 frame")
    inner = text[30:34]
    if inner == POLL:
        return _details(inner, Action.NO_MORE_COMMANDS)
    _need(text, HEADER_LEN + 4 + TIMESTAMP_LEN + 1, "an acknowledgement")
    flag = text[48]
    return _details(
        inner,
        Action.ACKNOWLEDGEMENT,
        {
            "acknowledged": inner,
            "acknowledged_action": action_of(inner).value,
            "timestamp": _timestamp(text[34:48]),
            "result": ACK_RESULTS.get(flag, f"flag {flag}"),
        },
    )


def _command(command: str, text: str, inner_at: int) -> ControlDetails:
    """Decode the payload of ``command`` starting at ``inner_at``."""
    action = action_of(command)
    parser = _PARSERS.get(command)
    if action is Action.UNKNOWN:
        return _details(command, action, raw_text=_raw(text))
    if parser is None:
        return _details(command, action)
    return _details(command, action, parser(text, inner_at))


def _inverter_list_report(text: str, at: int) -> dict[str, Any]:
    """A102: version length (2) + version + count (3) + timestamp + END + ids."""
    _need(text, at + 2, "an A102 report")
    if not text[at : at + 2].isdigit():
        raise ControlError(f"A102: bad version length {text[at : at + 2]!r}")
    size = int(text[at : at + 2])
    version = text[at + 2 : at + 2 + size]
    pos = at + 2 + size
    _need(text, pos + 3 + TIMESTAMP_LEN + 3, "an A102 report")
    count = text[pos : pos + 3]
    ids = _ids(_sections(text, pos + 3 + TIMESTAMP_LEN + 3))
    return {
        "firmware": version,
        "count": int(count) if count.isdigit() else None,
        "inverter_ids": ids,
    }


def _set_inverter_list(text: str, at: int) -> dict[str, Any]:
    """A103: mode digit + count (3) + timestamp + END + ids."""
    _need(text, at + 4 + TIMESTAMP_LEN + 3, "an A103 command")
    mode = text[at]
    count = text[at + 1 : at + 4]
    return {
        "mode": INVERTER_LIST_MODES.get(mode, f"mode {mode}"),
        "count": int(count) if count.isdigit() else None,
        "inverter_ids": _ids(_sections(text, at + 4 + TIMESTAMP_LEN + 3)),
    }


def _zone(text: str, start: int) -> dict[str, Any]:
    name = text[start:].removesuffix("END")
    return {"time_zone": name[:64]}


def _time_zone_report(text: str, at: int) -> dict[str, Any]:
    """A104: two timestamps, then the zone name up to END."""
    _need(text, at + 2 * TIMESTAMP_LEN + 3, "an A104 report")
    return _zone(text, at + 2 * TIMESTAMP_LEN)


def _set_time_zone(text: str, at: int) -> dict[str, Any]:
    """A105: timestamp, then the zone name up to END."""
    _need(text, at + TIMESTAMP_LEN + 3, "an A105 command")
    return _zone(text, at + TIMESTAMP_LEN)


def _server_settings(text: str, at: int) -> dict[str, Any]:
    """A106/A107: count digit + timestamp + END, then one section per channel.

    A section is channel (1) + port (5) + port (5) + 6 digits of timing settings
    + host name or IP; only the host and ports are shown.
    """
    _need(text, at + 1 + TIMESTAMP_LEN + 3, "an EMA server settings frame")
    servers = []
    for section in _sections(text, at + 1 + TIMESTAMP_LEN + 3):
        ports = (section[1:6], section[6:11])
        if len(section) <= 17 or not all(p.isdigit() for p in ports):
            continue
        servers.append(
            {
                "channel": section[0],
                "host": section[17:][:253],
                "ports": [int(p) for p in ports],
            }
        )
    return {"servers": servers}


def _switch_inverters(text: str, at: int) -> dict[str, Any]:
    """A111/A112: scope digit + count (4) + timestamp + END + id-and-flag sections."""
    _need(text, at + 5 + TIMESTAMP_LEN + 3, "an inverter command")
    scope = text[at]
    count = text[at + 1 : at + 5]
    return {
        "scope": SWITCH_SCOPES.get(scope, f"scope {scope}"),
        "count": int(count) if count.isdigit() else None,
        "inverter_ids": _ids(_sections(text, at + 5 + TIMESTAMP_LEN + 3)),
    }


def _clear_gfdi(text: str, at: int) -> dict[str, Any]:
    """A112: same head as A111; the ids of a list follow END."""
    params = _switch_inverters(text, at)
    del params["scope"]
    return params


def _custom_command(text: str, at: int) -> dict[str, Any]:
    """A108: 14 digits + END + the command text + END."""
    _need(text, at + TIMESTAMP_LEN + 3, "an A108 command")
    sections = _sections(text, at + TIMESTAMP_LEN + 3)
    return {"text": "END".join(sections)[:MAX_RAW_TEXT]}


def _set_reporting(text: str, at: int) -> dict[str, Any]:
    """A119: 14 digits + the reporting flag (1 on, 0 off)."""
    _need(text, at + TIMESTAMP_LEN + 1, "an A119 frame")
    flag = text[at + TIMESTAMP_LEN]
    return {"reporting": {"1": "on", "0": "off"}.get(flag, f"flag {flag}")}


_PARSERS: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "A102": _inverter_list_report,
    "A103": _set_inverter_list,
    "A104": _time_zone_report,
    "A105": _set_time_zone,
    "A106": _server_settings,
    "A107": _server_settings,
    "A108": _custom_command,
    "A111": _switch_inverters,
    "A112": _clear_gfdi,
    "A119": _set_reporting,
}
