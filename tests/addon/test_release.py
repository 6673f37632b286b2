"""Release metadata: one version everywhere, scripts/release, HACS and image names."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
yaml = importlib.import_module("yaml")  # PyYAML has no type hints
MANIFEST = "integration/custom_components/apsystems_ema_proxy/manifest.json"
VERSIONED = ("config.yaml", "pyproject.toml", MANIFEST, "manifest.json")
# The keys HACS's hacs.json schema accepts ("name" is required).
HACS_KEYS = {
    "content_in_root",
    "country",
    "filename",
    "hacs",
    "hide_default_branch",
    "homeassistant",
    "name",
    "persistent_directory",
    "render_readme",
    "zip_release",
}


def versions(root: Path) -> dict[str, str]:
    """Read every version with the file format's own parser."""
    config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return {
        "config.yaml": config["version"],
        "pyproject.toml": project["project"]["version"],
        MANIFEST: json.loads((root / MANIFEST).read_text(encoding="utf-8"))["version"],
        "manifest.json": json.loads((root / "manifest.json").read_text())["version"],
    }


def test_every_version_agrees() -> None:
    found = versions(ROOT)
    assert len(set(found.values())) == 1, found


def test_service_reports_the_version_of_pyproject() -> None:
    # ecu_proxy.__version__ comes from the installed package's metadata, which
    # pyproject.toml sets; there is no fifth place to bump.
    from ecu_proxy import __version__

    assert __version__ == versions(ROOT)["pyproject.toml"]


def test_changelog_has_the_released_version() -> None:
    version = versions(ROOT)["config.yaml"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(version)}\]", changelog, re.M)


def test_root_manifest_is_the_integrations_manifest() -> None:
    # HACS reads manifest.json at the root (content_in_root) to learn the domain
    # and version of what the release zip installs.
    root_copy = (ROOT / "manifest.json").read_bytes()
    assert root_copy == (ROOT / MANIFEST).read_bytes(), f"cp {MANIFEST} manifest.json"


def test_hacs_json() -> None:
    hacs = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    assert set(hacs) <= HACS_KEYS
    assert hacs["name"] == config["name"]
    assert hacs["content_in_root"] is True
    assert hacs["zip_release"] is True
    domain = json.loads((ROOT / MANIFEST).read_text())["domain"]
    assert hacs["filename"] == f"{domain}.zip"
    assert hacs["homeassistant"] == config["homeassistant"]
    # The default branch carries no zip: HACS must only offer releases.
    assert hacs["hide_default_branch"] is True


def test_image_is_the_generic_name_of_this_repository() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    owner_repo = config["url"].removeprefix("https://github.com/").lower()
    assert config["image"] == f"ghcr.io/{owner_repo}"


# ---------------------------------------------------------------------------
# scripts/release on a copy of the repository's versioned files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in (*VERSIONED, "CHANGELOG.md", "scripts/release"):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return tmp_path


def release(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(tree / "scripts" / "release"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def add_changelog_entry(tree: Path, version: str) -> None:
    path = tree / "CHANGELOG.md"
    text = path.read_text(encoding="utf-8")
    entry = f"## [{version}] - 2026-12-24\n\n### Fixed\n\n- Something.\n\n"
    path.write_text(text.replace("## [0.", entry + "## [0.", 1), encoding="utf-8")


def snapshot(tree: Path) -> dict[str, bytes]:
    return {name: (tree / name).read_bytes() for name in VERSIONED}


def test_release_sets_every_version(tree: Path) -> None:
    old_version = versions(tree)["config.yaml"]
    before = snapshot(tree)
    add_changelog_entry(tree, "7.8.9")

    result = release(tree, "7.8.9")

    assert result.returncode == 0, result.stderr
    assert set(versions(tree).values()) == {"7.8.9"}
    # Nothing but the version changed in any file.
    for name, content in snapshot(tree).items():
        restored = content.decode().replace('"7.8.9"', f'"{old_version}"')
        assert restored.encode() == before[name], name
    assert release(tree, "--check", "v7.8.9").returncode == 0


def test_release_refuses_without_a_changelog_entry(tree: Path) -> None:
    before = snapshot(tree)
    result = release(tree, "7.8.9")
    assert result.returncode == 1
    assert '"## [7.8.9]"' in result.stderr
    assert snapshot(tree) == before


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "1.2.3-beta", ""])
def test_release_refuses_a_malformed_version(tree: Path, version: str) -> None:
    add_changelog_entry(tree, version)
    before = snapshot(tree)
    result = release(tree, version)
    assert result.returncode != 0
    assert snapshot(tree) == before


@pytest.mark.parametrize("name", VERSIONED)
def test_check_fails_when_one_version_differs(tree: Path, name: str) -> None:
    path = tree / name
    text = path.read_text(encoding="utf-8")
    version = versions(tree)["config.yaml"]
    path.write_text(text.replace(f'"{version}"', '"9.9.9"', 1), encoding="utf-8")
    assert versions(tree)[name] == "9.9.9"  # the edit hit the real version

    result = release(tree, "--check")

    assert result.returncode == 1
    assert "versions disagree" in result.stderr
    assert f"{name} 9.9.9" in result.stderr


def test_check_reports_version_and_image_for_the_workflow(tree: Path) -> None:
    config: dict[str, Any] = yaml.safe_load((tree / "config.yaml").read_text())
    result = release(tree, "--check", f"v{config['version']}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"version={config['version']}",
        f"image={config['image']}",
    ]


def test_check_refuses_a_tag_of_another_version(tree: Path) -> None:
    result = release(tree, "--check", "v99.0.0")
    assert result.returncode == 1
    assert "does not name version" in result.stderr


def test_check_refuses_a_version_without_changelog_entry(tree: Path) -> None:
    version = versions(tree)["config.yaml"]
    changelog = tree / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace(f"## [{version}]", "## [0.0.0]"),
        encoding="utf-8",
    )
    result = release(tree, "--check")
    assert result.returncode == 1
    assert "CHANGELOG.md" in result.stderr


def test_notes_print_the_changelog_entry(tree: Path) -> None:
    add_changelog_entry(tree, "7.8.9")
    result = release(tree, "--notes", "7.8.9")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "### Fixed\n\n- Something.\n"


def test_notes_of_the_last_entry_stop_before_the_link_list(tree: Path) -> None:
    version = versions(tree)["config.yaml"]
    result = release(tree, "--notes", version)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("### ")
    assert "## [" not in result.stdout
    assert "]: https://" not in result.stdout


def test_notes_refuse_a_version_without_entry(tree: Path) -> None:
    result = release(tree, "--notes", "7.8.9")
    assert result.returncode == 1
    assert '"## [7.8.9]"' in result.stderr


def test_check_fails_when_the_root_manifest_is_stale(tree: Path) -> None:
    manifest = json.loads((tree / MANIFEST).read_text())
    manifest["dependencies"] = ["mqtt"]
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    result = release(tree, "--check")
    assert result.returncode == 1
    assert f"cp {MANIFEST} manifest.json" in result.stderr


def test_release_brings_the_root_manifest_up_to_date(tree: Path) -> None:
    manifest = json.loads((tree / MANIFEST).read_text())
    manifest["dependencies"] = ["mqtt"]
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    add_changelog_entry(tree, "7.8.9")
    result = release(tree, "7.8.9")
    assert result.returncode == 0, result.stderr
    assert (tree / "manifest.json").read_bytes() == (tree / MANIFEST).read_bytes()
    assert json.loads((tree / "manifest.json").read_text())["dependencies"] == ["mqtt"]
