"""The GitHub Actions workflows: what they run, when, with which rights and pins.

They cannot run here; besides these checks, scripts/test validates them against
GitHub's workflow schema (check-jsonschema) and audits them with zizmor --offline,
and the tests below show both tools catch a broken workflow.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
yaml = importlib.import_module("yaml")  # PyYAML has no type hints
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
BUILDER = "home-assistant/builder/actions/"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads a bare `on` key as the boolean true.
    keys: dict[Any, Any] = dict(workflow)
    found: dict[str, Any] = keys["on"] if "on" in keys else keys[True]
    return found


def steps(workflow: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [workflow["jobs"][job]] if job else list(workflow["jobs"].values())
    return [step for item in jobs for step in item.get("steps", [])]


def step_using(workflow: dict[str, Any], action: str) -> dict[str, Any]:
    (found,) = [
        s for s in steps(workflow) if s.get("uses", "").startswith(action + "@")
    ]
    return found


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text())
    return data


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(
        name
    )
    assert found, f"{name} is missing: pip install -r requirements/test.txt"
    return found


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


def test_the_workflows() -> None:
    assert [p.name for p in workflow_files()] == ["ci.yaml", "release.yaml"]


@pytest.mark.parametrize("name", ["ci.yaml", "release.yaml"])
def test_every_action_is_pinned_to_a_commit_and_named(name: str) -> None:
    for step in steps(load(name)):
        if "uses" in step:
            assert PINNED.match(step["uses"]), step["uses"]
    # The comment after each pin (or the line above it) says which release it is.
    lines = (WORKFLOWS / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s*(?:- )?uses: ", line):
            assert " # " in line or lines[number - 1].strip().startswith("#"), line


@pytest.mark.parametrize("name", ["ci.yaml", "release.yaml"])
def test_rights_are_granted_per_job(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {}
    for job_name, job in workflow["jobs"].items():
        assert "permissions" in job, job_name
        # Only the job that creates the GitHub release may write to the repository.
        contents = "write" if job_name == "github-release" else "read"
        assert job["permissions"].get("contents", "read") == contents, job_name


@pytest.mark.parametrize("name", ["ci.yaml", "release.yaml"])
def test_checkouts_keep_no_credentials(name: str) -> None:
    checkouts = [
        s
        for s in steps(load(name))
        if s.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


# ---------------------------------------------------------------------------
# CI


def test_ci_runs_on_every_push_and_pull_request() -> None:
    assert triggers(load("ci.yaml")) == {"push": None, "pull_request": None}


def test_ci_runs_the_test_suite() -> None:
    ci = load("ci.yaml")
    runs = [s["run"] for s in steps(ci, "test") if "run" in s]
    assert "scripts/test" in runs
    python = step_using(ci, "actions/setup-python")
    # The project's Python and the oldest admitted Home Assistant's (the last is the
    # default python3).
    assert python["with"]["python-version"].split() == ["3.13", "3.14"]
    installed = " ".join(runs)
    for package in ("shellcheck", "socat", "apparmor"):
        assert package in installed  # what scripts/test needs from apt


def test_ci_runs_the_ecosystem_validators() -> None:
    ci = load("ci.yaml")
    step_using(ci, "home-assistant/actions/hassfest")
    hacs = step_using(ci, "hacs/action")
    assert hacs["with"]["category"] == "integration"
    assert hacs["with"]["ignore"] == "brands"
    linter = step_using(ci, "frenck/action-addon-linter")
    assert linter["with"]["path"] == "."


def test_hassfest_sees_only_the_integration() -> None:
    checkout = steps(load("ci.yaml"), "hassfest")[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["sparse-checkout"] == "/integration/"
    assert checkout["with"]["sparse-checkout-cone-mode"] is False
    manifests = sorted((ROOT / "integration").rglob("manifest.json"))
    assert manifests == [
        ROOT / "integration/custom_components/apsystems_ema_proxy/manifest.json"
    ]


def test_ci_builds_the_image_for_every_arch_without_pushing() -> None:
    ci = load("ci.yaml")
    matrix = ci["jobs"]["image"]["strategy"]["matrix"]["include"]
    assert {entry["arch"] for entry in matrix} == set(config()["arch"])
    build = step_using(ci, BUILDER + "build-image")
    assert build["with"]["push"] == "false"


# ---------------------------------------------------------------------------
# Release


def test_release_runs_on_version_tags_only() -> None:
    assert triggers(load("release.yaml")) == {"push": {"tags": ["v*"]}}


def test_release_checks_versions_against_the_tag_first() -> None:
    release = load("release.yaml")
    runs = [s.get("run", "") for s in steps(release, "prepare")]
    assert any('scripts/release --check "$TAG"' in run for run in runs)
    for job_name, job in release["jobs"].items():
        if job_name != "prepare":
            needs = job["needs"]
            assert "prepare" in ([needs] if isinstance(needs, str) else needs)


def test_release_builds_the_arches_config_yaml_lists() -> None:
    release = load("release.yaml")
    assert sorted(json.loads(release["env"]["ARCHITECTURES"])) == sorted(
        config()["arch"]
    )
    matrix = step_using(release, BUILDER + "prepare-multi-arch-matrix")
    assert matrix["with"]["architectures"] == "${{ env.ARCHITECTURES }}"
    manifest = step_using(release, BUILDER + "publish-multi-arch-manifest")
    assert manifest["with"]["architectures"] == "${{ env.ARCHITECTURES }}"


def test_release_pushes_the_image_config_yaml_names() -> None:
    release = load("release.yaml")
    build = step_using(release, BUILDER + "build-image")
    assert build["with"]["push"] == "true"
    assert "io.hass.type=addon" in build["with"]["labels"].split("\n")
    version = "${{ needs.prepare.outputs.version }}"
    assert build["with"]["version"] == version
    assert version in build["with"]["image-tags"].split("\n")
    manifest = step_using(release, BUILDER + "publish-multi-arch-manifest")
    assert version in manifest["with"]["image-tags"].split("\n")
    names = " ".join(s.get("run", "") for s in steps(release, "prepare"))
    assert "${IMAGE##*/}" in names  # image_name: the last part of config's image
    assert "${IMAGE%/*}" in names  # registry_prefix: everything before it


def test_release_attaches_the_hacs_zip_after_the_image() -> None:
    release = load("release.yaml")
    job = release["jobs"]["github-release"]
    assert "manifest" in job["needs"]
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "scripts/build-hacs-zip" in runs
    assert "gh release create" in runs
    assert "jq -r .filename hacs.json" in runs
    assert 'scripts/release --notes "$VERSION"' in runs


def test_dependabot_keeps_the_pinned_actions_current() -> None:
    config_data = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    ecosystems = {update["package-ecosystem"] for update in config_data["updates"]}
    assert "github-actions" in ecosystems


# ---------------------------------------------------------------------------
# The validators scripts/test runs, shown to catch mistakes


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def zizmor(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_workflows_fit_githubs_schema() -> None:
    result = check_jsonschema(*workflow_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_config_fits_its_schema() -> None:
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.dependabot",
            str(ROOT / ".github" / "dependabot.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = load("ci.yaml")
    del broken["jobs"]["test"]["runs-on"]
    path = tmp_path / "broken.yaml"
    path.write_text(json.dumps(broken))
    assert check_jsonschema(path).returncode != 0


def test_zizmor_finds_nothing() -> None:
    result = zizmor(ROOT / ".github")
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_catches_unpinned_actions_and_injection(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yaml").write_text(
        "on: [issues]\n"
        "permissions: {}\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-24.04\n"
        "    permissions: {}\n"
        "    steps:\n"
        "      - uses: hacs/action@main\n"
        "      - run: echo ${{ github.event.issue.title }}\n"
    )
    result = zizmor(tmp_path / ".github")
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout
    assert "template-injection" in result.stdout
