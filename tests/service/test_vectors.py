"""Every protocol vector decodes to what vectors.json says it holds.

The expectations are read from tests/fixtures/vectors/vectors.json, field by field;
nothing here restates them. Fields the decoder does not report (raw header parts,
undecoded inverter fields) are checked in the frame text at docs/protocol.md offsets,
so a key nobody handles makes the test fail instead of passing unchecked.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

import pytest
from documents import frame_json
from records import VECTORS

from ecu_proxy.decoder import decode_frame
from ecu_proxy.framing import Framer
from ecu_proxy.models import DecodedFrame, Direction, FrameKind, Inverter
from ecu_proxy.wire import ecu_model

MANIFEST = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = MANIFEST["vectors"]
BY_FILE = {entry["file"]: entry for entry in ENTRIES}

# Scale of the raw DC fields of APS15 blocks (docs/decoder.md: V x10, A x10).
APS15_DC_SCALE = 10


def test_manifest_lists_every_vector_file() -> None:
    # control/ holds the published 8997 frames, listed by its own PROVENANCE.md and
    # checked by test_control.py.
    on_disk = {
        p.relative_to(VECTORS).as_posix()
        for p in VECTORS.rglob("*.txt")
        if p.is_file() and p.parent.name != "control"
    }
    assert on_disk == set(BY_FILE)
    assert MANIFEST["real_capture_count"] == sum(
        1 for e in ENTRIES if e["kind"] == "capture"
    )


def expected_of(entry: dict[str, Any]) -> dict[str, Any]:
    """Return the entry's expectations, resolving "identical to X except a='b'"."""
    expected = entry["expected"]
    if isinstance(expected, dict):
        return expected
    match = re.fullmatch(r"identical to (\S+) except (.+)", expected)
    assert match, f"cannot read expectation {expected!r}"
    base = copy.deepcopy(expected_of(BY_FILE[match[1]]))
    parents: list[str] = []
    for path, value in re.findall(r"([\w.]+)='([^']*)'", match[2]):
        # "header.a='1', b='2'": b is in header too (it inherits the prefix).
        *prefix, leaf = path.split(".")
        parents = prefix or parents
        target = base
        for key in parents:
            target = target[key]
        assert leaf in target, f"{path} is not a field of {match[1]}"
        target[leaf] = value
    return base


def capture_inverter(inverter_id: str) -> dict[str, Any]:
    """Return the expectations of an inverter described in another vector."""
    for entry in ENTRIES:
        expected = entry["expected"]
        if isinstance(expected, dict):
            for inverter in expected.get("inverters", []):
                if inverter["id"] == inverter_id:
                    return dict(inverter)
    raise AssertionError(f"no vector describes inverter {inverter_id}")


def inverter_ids(spec: list[str] | str) -> list[str]:
    """Return the ids of a list or of a range written "first .. last"."""
    if isinstance(spec, list):
        return spec
    first, last = (part.strip() for part in spec.split(".."))
    return [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]


def check_inverter(got: Inverter, text: str, want: dict[str, Any]) -> None:
    start = text.index(got.id + got.type_code)  # the block, from the inverter id
    for key, value in want.items():
        match key:
            case "id" | "type_code" | "family" | "ac_voltage_v" | "frequency_hz":
                assert getattr(got, key) == value, key
            case "temperature_c":
                assert got.temperature_c == value
            case "channels":
                assert len(got.channels) == value
            case "ac_reactive_raw":
                assert text[start + 25 : start + 30] == value
            case "ac_active_raw":
                assert text[start + 30 : start + 35] == value
            case "ac_active_w_assuming_x100":
                assert int(text[start + 30 : start + 35]) / 100 == value
            case "inverter_energy_counter_raw":
                assert text[start + 35 : start + 45] == value
            case "ac_active_note":
                pass  # prose
            case "dc":
                assert [c.channel for c in got.channels] == [
                    d["channel"] for d in value
                ]
                for channel, dc in zip(got.channels, value, strict=True):
                    assert channel.dc_voltage_v == dc["voltage_v"]
                    assert channel.dc_current_a == dc["current_a"]
                    assert channel.power_w == dc["power_w"]
                    assert channel.round_energy_wh == dc["energy_this_round_wh"]
            case _:
                raise AssertionError(f"inverter field {key!r} is not checked")


def check_aps15_block(frame: DecodedFrame, block: dict[str, Any]) -> None:
    (inverter,) = [i for i in frame.inverters if i.id == block["id"]]
    number = {"0": 1, "A": 1, "B": 2}[block["channel"]]
    (channel,) = [c for c in inverter.channels if c.channel == number]
    assert block["channel"] in inverter.type_code
    for key, value in block.items():
        match key:
            case "id" | "channel":
                pass  # used above to find the block
            case "dc_voltage_raw":
                assert channel.dc_voltage_v == value / APS15_DC_SCALE
            case "dc_current_raw":
                assert channel.dc_current_a == value / APS15_DC_SCALE
            case "power_w":
                assert channel.power_w == value
            case "frequency_hz" | "temperature_c" | "ac_voltage_v":
                assert getattr(inverter, key) == value
            case "energy_this_round_kwh":
                assert channel.round_energy_wh == pytest.approx(value * 1000)
            case _:
                raise AssertionError(f"APS15 block field {key!r} is not checked")


def check(frame: DecodedFrame, text: str, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        match key:
            case "header":
                check(frame, text, value)
            case "signature":
                assert text[:3] == value
            case "version":
                assert frame.version == value
            case "length":
                assert frame.length == value == len(text)
            case "length_field_raw":
                assert text[5:10] == value
            case "command_raw" | "command":
                assert text[10:14] == value
                if frame.kind is FrameKind.CONTROL:
                    assert frame.command == value
            case "sequence_raw" | "sequence":
                assert text[14:18] == value
            case "ecu_id":
                assert frame.ecu_id == value
            case "ecu_model" if value.startswith("unknown"):
                pass  # the vector makes no claim
            case "ecu_model":
                model = frame.ecu_model or ecu_model(frame.ecu_id or "")
                assert value == model or value.startswith(f"{model} (")
            case "current_power_w":
                assert frame.power_w == value
            case "power_raw":
                assert text[30:40] == value
                assert frame.power_w == int(value)
            case "energy_this_round_kwh":
                assert frame.round_energy_kwh == value
            case "lifetime_energy_kwh":
                assert frame.lifetime_energy_kwh == value
            case "timestamp" if frame.kind is FrameKind.CONTROL:
                assert text[34:48] == value
            case "timestamp":
                assert frame.timestamp == datetime.fromisoformat(value)
            case "timestamp_zone":
                assert frame.timestamp is not None
                assert frame.timestamp.tzinfo is None  # wall clock, no zone
            case "online_inverters" | "inverter_count":
                assert frame.inverter_count == value
            case "timezone_changed_flag":
                assert text[77] == value
            case "more_records_flag":
                assert frame.more_records is (value == "1")
            case "inverters":
                assert [i.id for i in frame.inverters] == [i["id"] for i in value]
                for got, want in zip(frame.inverters, value, strict=True):
                    check_inverter(got, text, want)
            case "inverter_ids":
                assert [i.id for i in frame.inverters] == inverter_ids(value)
            case "each_inverter":
                found = re.match(
                    r"same values as inverter (\d{12}) in the capture", value
                )
                assert found, value
                want = capture_inverter(found[1])
                for got in frame.inverters:
                    check_inverter(got, text, want | {"id": got.id})
            case "consistency_checks":
                check_consistency(frame, value)
            case "requested_command":
                assert text[30:34] == value
            case "status":
                assert frame.status == value
            case "count":
                assert len(frame.timestamps) == value == int(text[1:3])
            case "timestamps":
                assert list(frame.timestamps) == value
            case "ecu_effect":
                pass  # prose about the ECU's reaction
            case "blocks":
                assert sum(len(i.channels) for i in frame.inverters) == len(value)
                for block in value:
                    check_aps15_block(frame, block)
            case _:
                raise AssertionError(f"expected field {key!r} is not checked")


def check_consistency(frame: DecodedFrame, checks: dict[str, Any]) -> None:
    channels = [c for i in frame.inverters for c in i.channels]
    for key, value in checks.items():
        match key:
            case "sum_of_channel_power_w":
                assert sum(c.power_w for c in channels) == value
            case "equals_ecu_power":
                assert (frame.power_w == sum(c.power_w for c in channels)) is value
                assert (not any("ECU power" in w for w in frame.warnings)) is value
            case "inverter_block_count":
                assert len(frame.inverters) == value
            case "equals_online_inverters":
                assert (frame.inverter_count == len(frame.inverters)) is value
                assert (not any("inverter_count" in w for w in frame.warnings)) is value
            case "sum_of_channel_round_energy_wh":
                total = sum(i.round_energy_wh or 0.0 for i in frame.inverters)
                assert round(total, 3) == value
            case "ecu_round_energy_field_is_zero_although_channels_report_energy":
                assert (frame.round_energy_kwh == 0 and bool(channels)) is value
            case _:
                raise AssertionError(f"consistency check {key!r} is not checked")


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_vector_decodes_as_documented(entry: dict[str, Any]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    assert len(data) == entry["bytes"]
    assert data.endswith(b"\n") is entry["trailing_newline"]
    direction = (
        Direction.EMA_TO_ECU
        if entry["direction"] == "EMA->ECU"
        else Direction.ECU_TO_EMA
    )
    # Cut by the framer, in the 1000-byte slices of an ECU-R, then decoded.
    framer = Framer()
    frames: list[bytes] = []
    for i in range(0, len(data), 1000):
        frames += framer.feed(data[i : i + 1000])
    frames += framer.flush()
    (raw,) = frames
    assert raw == data.rstrip(b"\n")
    frame = decode_frame(raw, direction)
    assert frame.kind not in (FrameKind.INVALID, FrameKind.UNKNOWN), frame.error
    assert frame == decode_frame(data, direction)  # the file as it is, LF and all
    check(frame, raw.decode("ascii"), expected_of(entry))
    json.dumps(frame_json(frame))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_documented_disagreements_are_resolved_the_spec_way(
    entry: dict[str, Any],
) -> None:
    frame = decode_frame((VECTORS / entry["file"]).read_bytes())
    for disagreement in entry.get("disagreements", []):
        spec = disagreement["spec_reading"]
        match disagreement["field"]:
            case "per-channel DC current":
                currents = [c.dc_current_a for i in frame.inverters for c in i.channels]
                assert currents == spec
                assert currents != disagreement["implementation_reading"]
            case "lifetime energy":
                assert str(frame.lifetime_energy_kwh) in spec
            case "current power":
                assert f"{frame.power_w} W" in spec
            case other:
                raise AssertionError(f"disagreement about {other!r} is not checked")
