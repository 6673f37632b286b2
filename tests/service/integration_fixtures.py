"""Build the integration tests' fixtures with the real service, or write them out.

The state documents and frame lists the integration tests start from are what the
service itself sends after real frames: the public capture (an ECU-R with a YC600
and a QS1, tests/fixtures/vectors) and a record of three inverter families built
with the service's encoder. A fixed server id, version and arrival time keep the
output stable; tests/contract/test_service_fixtures.py checks the committed files
against this builder. After changing the service's output, run from the
repository root::

    .venv/bin/python tests/service/integration_fixtures.py
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecu_proxy import frame_json
from ecu_proxy.contract.codec import encode
from ecu_proxy.contract.messages import FramesPage
from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.hub import Hub
from ecu_proxy.models import (
    Channel,
    DecodedFrame,
    Direction,
    FrameEvent,
    FrameKind,
    Inverter,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.options import Options

TESTS = Path(__file__).parents[1]
FIXTURES = TESTS / "integration" / "fixtures"
CAPTURE = TESTS / "fixtures" / "vectors" / "ECU-R_YC600-QS1_1.txt"

SERVER_ID = "9f0c2d4e6a8b4c1d9e0f1a2b3c4d5e6f"
VERSION = "0.1.0"
RECEIVED = datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC)
PEER = "192.168.1.50"  # the relay reports the host only
DATA_PORT = 8995
# EMA's acknowledgement of the capture's record (status 1, its timestamp).
EMA_ACK = b"10120240206112214"


def _mixed_record() -> bytes:
    """Return an ECU-C record with a three-phase YC1000, a QS1 and a YC600."""
    yc1000 = Inverter(
        id="502000006223",
        type_code="04",
        family="YC1000",
        ac_voltage_v=230.0,
        frequency_hz=50.0,
        temperature_c=21,
        power_w=412,
        round_energy_wh=34.2,
        channels=(
            Channel(1, 36.1, 2.9, 104, 8.6),
            Channel(2, 35.8, 2.8, 100, 8.3),
            Channel(3, 36.4, 3.0, 109, 9.1),
            Channel(4, 35.9, 2.8, 99, 8.2),
        ),
        phase_voltages_v=(229.0, 231.0, 230.0),
    )
    qs1 = Inverter(
        id="801000012345",
        type_code="08",
        family="QS1",
        ac_voltage_v=231,
        frequency_hz=50.0,
        temperature_c=19,
        power_w=241,
        round_energy_wh=19.9,
        channels=(
            Channel(1, 32.0, 1.9, 61, 5.0),
            Channel(2, 32.4, 1.8, 58, 4.8),
            Channel(3, 31.8, 2.0, 63, 5.2),
            Channel(4, 32.1, 1.9, 59, 4.9),
        ),
    )
    yc600 = Inverter(
        id="408000222333",
        type_code="07",
        family="YC600",
        ac_voltage_v=230,
        frequency_hz=50.0,
        temperature_c=17,
        power_w=96,
        round_energy_wh=7.9,
        channels=(Channel(1, 34.0, 1.4, 47, 3.9), Channel(2, 34.2, 1.4, 49, 4.0)),
    )
    return encode_data_record(
        DecodedFrame(
            kind=FrameKind.DATA,
            version="18",
            length=0,
            ecu_id="215000000001",
            ecu_model="ECU-C",
            timestamp=datetime(2024, 2, 6, 11, 22, 14),
            power_w=749,
            round_energy_kwh=0.062,
            lifetime_energy_kwh=10543.2,
            inverter_count=3,
            inverters=(yc1000, qs1, yc600),
        )
    )


def _event(wire: bytes, direction: Direction) -> FrameEvent:
    """Return a frame as the relay reports it: without the LF that may follow it."""
    raw = wire.rstrip(b"\n")
    return FrameEvent(1, DATA_PORT, PEER, direction, raw, decode_frame(raw), RECEIVED)


def _hub(data_dir: Path) -> Hub:
    options = Options(data_dir=data_dir, capture_frames=True)
    return Hub(options, server_id=SERVER_ID, version=VERSION, clock=lambda: RECEIVED)


def _upload(
    hub: Hub, ecu_id: str, result: UpstreamResult, rtt_ms: float | None
) -> None:
    hub.upstream_result(UpstreamReport(ecu_id, DATA_PORT, result, RECEIVED, rtt_ms))


def build() -> dict[str, Any]:
    """Return every fixture file's JSON content by file name."""
    with tempfile.TemporaryDirectory() as folder:
        empty = _hub(Path(folder) / "empty")
        capture = _hub(Path(folder) / "capture")
        capture.frame_received(_event(CAPTURE.read_bytes(), Direction.ECU_TO_EMA))
        capture.frame_received(_event(EMA_ACK, Direction.EMA_TO_ECU))
        _upload(capture, "216000064136", UpstreamResult.OK, 83.1)
        mixed = _hub(Path(folder) / "mixed")
        mixed.frame_received(_event(_mixed_record(), Direction.ECU_TO_EMA))
        _upload(mixed, "215000000001", UpstreamResult.UNREACHABLE, None)
        return {
            "state_empty.json": empty.snapshot(),
            "state_capture.json": capture.snapshot(),
            "state_mixed.json": mixed.snapshot(),
            "frames_capture.json": encode(
                FramesPage([frame_json.captured(f) for f in capture.captured()])
            ),
        }


def text(document: Any) -> str:
    """Return a fixture file's text."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Write the fixtures."""
    for name, document in build().items():
        (FIXTURES / name).write_text(text(document), encoding="utf-8")


if __name__ == "__main__":
    main()
