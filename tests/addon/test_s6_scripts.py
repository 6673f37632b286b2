"""The s6-overlay services: layout, shellcheck, the finish logic, and the service
started exactly as the run script starts it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import aiohttp.test_utils
import aiohttp.web
import pytest
from stand_ins import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = Path(__file__).resolve().parents[2]
ROOTFS = ROOT / "addon" / "rootfs"
S6 = ROOTFS / "etc" / "s6-overlay" / "s6-rc.d"
SCRIPTS = ROOTFS / "etc" / "s6-overlay" / "scripts"
SERVICE = "ecu-proxy"
INIT = "init-ecu-proxy"
VENV_BIN = Path(sys.executable).parent

# bashio helpers the scripts use, stubbed for running them outside the image.
BASHIO_STUBS = """
bashio::log.info() { echo "INFO: $*" >&2; }
bashio::exit.nok() { echo "FATAL: $*" >&2; exit 1; }
"""


def shell_scripts() -> list[Path]:
    found = []
    for path in sorted(ROOTFS.rglob("*")):
        if not path.is_file():
            continue
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith("#!") and re.search(r"\b(bash|bashio|sh)\b", first):
            found.append(path)
    return found


def test_scripts_found() -> None:
    names = {p.relative_to(ROOTFS).as_posix() for p in shell_scripts()}
    assert names == {
        f"etc/s6-overlay/s6-rc.d/{SERVICE}/run",
        f"etc/s6-overlay/s6-rc.d/{SERVICE}/finish",
        f"etc/s6-overlay/scripts/{INIT}",
        "etc/s6-overlay/scripts/ecu-proxy-args",
    }


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck"
    scripts = [str(p.relative_to(ROOT)) for p in shell_scripts()]
    result = subprocess.run(
        [shellcheck, "-s", "bash", "-x", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bashio_scripts_declare_the_shell() -> None:
    for path in shell_scripts():
        text = path.read_text(encoding="utf-8")
        if text.startswith("#!/command/with-contenv bashio"):
            assert "# shellcheck shell=bash" in text, path


def test_service_tree() -> None:
    services = {p.name for p in S6.iterdir() if p.is_dir()} - {"user"}
    assert services == {SERVICE, INIT}
    assert (S6 / SERVICE / "type").read_text().strip() == "longrun"
    assert (S6 / INIT / "type").read_text().strip() == "oneshot"
    for name in ("run", "finish"):
        assert os.access(S6 / SERVICE / name, os.X_OK), name
    up = (S6 / INIT / "up").read_text().strip()
    assert up == f"/etc/s6-overlay/scripts/{INIT}"
    assert os.access(ROOTFS / up.lstrip("/"), os.X_OK)
    deps = {
        s: {p.name for p in (S6 / s / "dependencies.d").iterdir()} for s in services
    }
    assert deps == {SERVICE: {INIT}, INIT: {"base"}}
    registered = {p.name for p in (S6 / "user" / "contents.d").iterdir()}
    assert registered == services
    for path in (S6 / "user" / "contents.d").iterdir():
        assert path.read_text() == ""


def test_run_script_execs_the_documented_command() -> None:
    text = (S6 / SERVICE / "run").read_text(encoding="utf-8")
    assert text.startswith("#!/command/with-contenv bashio\n")
    exec_lines = [line for line in text.splitlines() if line.startswith("exec ")]
    assert exec_lines == ['exec apsystems-ecu-proxy serve "${ECU_PROXY_ARGS[@]}"']


# ---------------------------------------------------------------------------
# Running the scripts with bash, bashio stubbed, /data moved to a temp folder.


def staged_scripts(tmp_path: Path, data: Path, extra_args: str = "") -> Path:
    """Copy the scripts to tmp_path with /data and the scripts folder relocated."""
    stage = tmp_path / "stage"
    stage.mkdir()
    for source in (
        SCRIPTS / "ecu-proxy-args",
        SCRIPTS / INIT,
        S6 / SERVICE / "run",
        S6 / SERVICE / "finish",
    ):
        text = source.read_text(encoding="utf-8")
        text = text.replace("/etc/s6-overlay/scripts/", f"{stage}/")
        text = re.sub(r"(?<![\w/])/data\b", str(data), text)
        if source.name == "ecu-proxy-args" and extra_args:
            text += f"ECU_PROXY_ARGS+=({extra_args})\n"
        (stage / source.name).write_text(text, encoding="utf-8")
    return stage


def bash_command(script: Path, *args: str) -> list[str]:
    return ["bash", "-c", f'{BASHIO_STUBS}\nsource "$0" "$@"', str(script), *args]


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SUPERVISOR_TOKEN"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_finish(tmp_path: Path, code: int, sig: int, kept: str = "") -> tuple[str, bool]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    stage = staged_scripts(tmp_path, data)
    results = tmp_path / "exitcode"
    results.write_text(kept)
    marker = tmp_path / "halted"
    halt = tmp_path / "halt"
    halt.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    halt.chmod(0o755)
    env = script_env(ECU_PROXY_S6_RESULTS=str(results), ECU_PROXY_S6_HALT=str(halt))
    subprocess.run(
        bash_command(stage / "finish", str(code), str(sig)),
        env=env,
        check=True,
        capture_output=True,
    )
    return results.read_text().strip(), marker.exists()


@pytest.mark.parametrize(
    ("code", "sig", "kept", "expected"),
    [
        (0, 0, "", ("", False)),  # clean exit: s6 restarts the service in place
        (1, 0, "", ("1", True)),  # crash: keep the code, halt for the watchdog
        (3, 0, "1", ("1", True)),  # an earlier code is kept
        (256, 15, "", ("143", True)),  # SIGTERM: stop the container
        (256, 9, "", ("137", False)),  # other signals: s6 restarts the service
    ],
)
def test_finish_logic(
    tmp_path: Path,
    code: int,
    sig: int,
    kept: str,
    expected: tuple[str, bool],
) -> None:
    assert run_finish(tmp_path, code, sig, kept) == expected


def test_init_accepts_good_options_and_creates_the_server_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "options.json").write_text(
        json.dumps({"mode": "forward", "log_level": "info", "extra_ports": []})
    )
    stage = staged_scripts(tmp_path, data)

    result = subprocess.run(
        bash_command(stage / INIT),
        env=script_env(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    server_id = (data / "server_id").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", server_id)


def test_init_rejects_bad_options_clearly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "options.json").write_text(json.dumps({"mode": "sideways"}))
    stage = staged_scripts(tmp_path, data)

    result = subprocess.run(
        bash_command(stage / INIT),
        env=script_env(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "mode" in result.stderr
    assert "The add-on options are not valid" in result.stderr
    assert not (data / "server_id").exists()


@pytest.fixture
async def running_service(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "options.json").write_text(
        json.dumps({"mode": "forward", "log_level": "debug", "ema_host": "127.0.0.1"})
    )
    ports = [free_port() for _ in range(4)]
    relay = ",".join(str(p) for p in ports[:3])
    stage = staged_scripts(
        tmp_path,
        data,
        extra_args=f"--listen 127.0.0.1 --api-host 127.0.0.1 "
        f"--ports {relay} --api-port {ports[3]}",
    )
    process = await asyncio.create_subprocess_exec(
        *bash_command(stage / "run"),
        env=script_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process, ports[3], data
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_for_health(
    port: int, process: asyncio.subprocess.Process
) -> tuple[int, bytes]:
    """Wait for the service's "API listening" log line, then ask /api/health once.

    Returns the HTTP status and the log read so far (``communicate()`` returns
    only the rest).
    """
    assert process.stderr is not None
    seen: list[bytes] = []
    async with asyncio.timeout(30):
        while True:
            line = await process.stderr.readline()
            assert line, "the service exited during startup:\n" + b"".join(seen).decode(
                errors="replace"
            )
            seen.append(line)
            if b"API listening on" in line:
                break
    url = f"http://127.0.0.1:{port}/api/health"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, b"".join(seen)


async def test_run_script_starts_and_stops_on_sigterm(
    running_service: tuple[asyncio.subprocess.Process, int, Path],
) -> None:
    process, api_port, data = running_service

    status, early_log = await wait_for_health(api_port, process)
    assert status == 200

    # exec: the bash process became the service, so s6's SIGTERM reaches Python.
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        _stdout, stderr = await process.communicate()
    log = (early_log + stderr).decode()
    assert process.returncode == 0, log
    assert "Starting the APsystems ECU proxy" in log
    assert "Stopped; state saved" in log
    assert (data / "server_id").exists()


# ---------------------------------------------------------------------------
# The run script under a stand-in Supervisor: integration install, restart notice,
# discovery, SIGTERM.

BUNDLE = ROOT / "integration" / "custom_components" / "apsystems_ema_proxy"
SUPERVISOR_TOKEN = "supervisor-token-for-the-test"
API_TOKEN = "api-token-for-the-test"


class StandInSupervisor:
    """Record discovery and notification posts; fail the first discovery posts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.discoveries: list[tuple[str, dict[str, object]]] = []
        self.notifications: list[dict[str, object]] = []
        self.posted = asyncio.Event()

    async def discovery(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json()
        self.discoveries.append((request.headers.get("Authorization", ""), body))
        if self.failures:
            self.failures -= 1
            return aiohttp.web.json_response({"result": "error"}, status=500)
        self.posted.set()
        return aiohttp.web.json_response({"result": "ok", "data": {"uuid": "x"}})

    async def notify(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.notifications.append(await request.json())
        return aiohttp.web.json_response([])


def installed_version(config: Path) -> str | None:
    manifest = config / "custom_components" / "apsystems_ema_proxy" / "manifest.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text())["version"])


def prepare_config(config: Path, present: str) -> None:
    target = config / "custom_components" / "apsystems_ema_proxy"
    if present == "missing":
        return
    target.mkdir(parents=True)
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    if present == "older":
        manifest["version"] = "0.0.1"
    elif present == "newer":
        manifest["version"] = "99.0.0"
    elif present == "foreign":
        manifest["domain"] = "someone_else"
        manifest["version"] = "0.0.1"
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / "marker.txt").write_text(present)


@pytest.mark.parametrize(
    ("present", "expect_version", "expect_notice"),
    [
        ("missing", "bundle", True),
        ("older", "bundle", True),
        ("newer", "99.0.0", False),
        ("foreign", "0.0.1", False),
    ],
)
async def test_run_script_under_supervisor(
    tmp_path: Path, present: str, expect_version: str, expect_notice: bool
) -> None:
    bundle_version = json.loads((BUNDLE / "manifest.json").read_text())["version"]
    config = tmp_path / "homeassistant"
    config.mkdir()
    prepare_config(config, present)
    data = tmp_path / "data"
    data.mkdir()
    (data / "options.json").write_text(
        json.dumps({"mode": "cloudless", "api_token": API_TOKEN})
    )
    supervisor = StandInSupervisor(failures=1)
    app = aiohttp.web.Application()
    app.router.add_post("/discovery", supervisor.discovery)
    app.router.add_post(
        "/core/api/services/persistent_notification/create", supervisor.notify
    )
    server = aiohttp.test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    ports = [free_port() for _ in range(2)]
    stage = staged_scripts(
        tmp_path,
        data,
        extra_args=f"--listen 127.0.0.1 --api-host 127.0.0.1 "
        f"--ports {ports[0]} --api-port {ports[1]}",
    )
    env = script_env(
        SUPERVISOR_TOKEN=SUPERVISOR_TOKEN,
        SUPERVISOR_URL=str(server.make_url("")).rstrip("/"),
        ECU_PROXY_INTEGRATION_BUNDLE=str(BUNDLE),
        ECU_PROXY_HA_CONFIG=str(config),
    )
    process = await asyncio.create_subprocess_exec(
        *bash_command(stage / "run"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            await supervisor.posted.wait()
        status, early_log = await wait_for_health(ports[1], process)
        assert status == 200
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _stdout, stderr = await process.communicate()
        await server.close()
    log = (early_log + stderr).decode()
    assert process.returncode == 0, log
    assert "Stopped; state saved" in log
    assert (data / "state.json").exists()

    # Discovery: retried after the failure, posted with the right payload, then once.
    assert len(supervisor.discoveries) == 2
    server_id = (data / "server_id").read_text().strip()
    for auth, body in supervisor.discoveries:
        assert auth == f"Bearer {SUPERVISOR_TOKEN}"
        assert body == {
            "service": "apsystems_ema_proxy",
            "config": {
                "host": socket.gethostname(),
                "port": ports[1],
                "server_id": server_id,
                "token": API_TOKEN,
            },
        }
    assert SUPERVISOR_TOKEN not in log
    assert API_TOKEN not in log

    # The integration: installed or upgraded; a newer or foreign folder untouched.
    want = bundle_version if expect_version == "bundle" else expect_version
    assert installed_version(config) == want
    marker = config / "custom_components" / "apsystems_ema_proxy" / "marker.txt"
    assert marker.exists() == (present in ("newer", "foreign"))
    assert bool(supervisor.notifications) == expect_notice
    assert len(supervisor.notifications) <= 1
