"""The command line: decode's output contract and exit codes."""

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecu_proxy.cli import EXIT_BAD_FRAMES, EXIT_OK, EXIT_USAGE, busy_port, main

VECTORS = Path(__file__).parent.parent / "fixtures" / "vectors"
CAPTURE = VECTORS / "ECU-R_YC600-QS1_1.txt"

DATA_KEYS = {
    "kind",
    "version",
    "length",
    "ecu_id",
    "ecu_model",
    "timestamp",
    "power_w",
    "round_energy_kwh",
    "lifetime_energy_kwh",
    "inverter_count",
    "more_records",
    "inverters",
    "warnings",
}


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line]


def test_decode_capture_prints_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(CAPTURE)]) == EXIT_OK
    (frame,) = _lines(capsys.readouterr().out)
    assert set(frame) == DATA_KEYS
    assert frame["kind"] == "data"
    assert frame["power_w"] == 190
    assert frame["lifetime_energy_kwh"] == 2127.9
    assert frame["timestamp"] == "2024-02-06T11:22:14"
    inverters = frame["inverters"]
    assert isinstance(inverters, list)
    currents = [[c["dc_current_a"] for c in inv["channels"]] for inv in inverters]
    assert currents == [[0.5, 0.5], [1.0, 1.2, 1.4, 1.4]]


def test_decode_several_files_and_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        CAPTURE,
        VECTORS / "synthetic" / "ECU-R_control-A101_1.txt",
        VECTORS / "synthetic" / "ECU-R_resend-query_1.txt",
        VECTORS / "synthetic" / "EMA-reply_data-ack_1.txt",
    ]
    assert main(["decode", *map(str, files)]) == EXIT_OK
    kinds = [f["kind"] for f in _lines(capsys.readouterr().out)]
    assert kinds == ["data", "control", "reconcile_query", "ema_reply"]


def test_garbage_is_reported_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(CAPTURE.read_bytes()[:150])  # truncated record
    assert main(["decode", str(bad)]) == EXIT_BAD_FRAMES
    frames = _lines(capsys.readouterr().out)
    assert frames
    assert frames[-1]["kind"] == "invalid"
    assert frames[-1]["error"]


def test_missing_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", str(tmp_path / "nope.txt")]) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err


def test_usage_errors_are_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["decode"])
    assert exc.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == EXIT_USAGE


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ecu_proxy", "decode", str(CAPTURE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent.parent / "addon",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert json.loads(proc.stdout)["ecu_id"] == "216000064136"


def test_check_options_creates_server_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"mode": "cloudless"}))
    args = ["check-options", "--options", str(options), "--data-dir", str(tmp_path)]
    assert main(args) == EXIT_OK
    server_id = (tmp_path / "server_id").read_text().strip()
    assert server_id in capsys.readouterr().out
    options.write_text(json.dumps({"mode": "sideways"}))
    assert main(args) == EXIT_USAGE
    assert "mode" in capsys.readouterr().err


@pytest.fixture
def taken_port() -> Iterator[int]:
    """Listen on a free loopback port, as a running service would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_busy_api_port_is_one_line_and_exit_2(
    command: str,
    taken_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    args = [command, "--api-port", str(taken_port), "--ports", "0"]
    args += ["--data-dir", str(tmp_path)]
    if command == "serve":
        args += ["--api-host", "127.0.0.1", "--listen", "127.0.0.1"]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"apsystems-ecu-proxy: port {taken_port} on 127.0.0.1 is already in use "
        "(is the service or the demo already running?)"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_demo_busy_relay_port_is_named(
    taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--api-port", "0", "--ports", f"{taken_port}"]
    assert main([*args, "--data-dir", str(tmp_path)]) == EXIT_USAGE
    assert (
        f"port {taken_port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    )


def test_busy_port_ignores_free_and_any_ports(taken_port: int) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
    assert busy_port("127.0.0.1", [0, free_port]) is None
    assert busy_port("127.0.0.1", [free_port, taken_port]) == taken_port


def test_demo_interval_below_a_second_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--interval", "0.5"])
    assert exc.value.code == EXIT_USAGE
    assert "at least 1 second" in capsys.readouterr().err
