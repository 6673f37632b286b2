"""Installing the bundled integration into a temporary Home Assistant config dir."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ecu_proxy import integration_install
from ecu_proxy.contract.constants import DOMAIN
from ecu_proxy.integration_install import (
    InstallResult,
    bundle_path,
    config_dir,
    install_integration,
    version_key,
)


def make_integration(folder: Path, version: str, *, domain: str = DOMAIN) -> Path:
    """Write a small integration folder with a manifest and two modules."""
    folder.mkdir(parents=True)
    manifest = {"domain": domain, "name": "APsystems EMA Proxy", "version": version}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "__init__.py").write_text(f'VERSION = "{version}"\n', encoding="utf-8")
    (folder / "translations").mkdir()
    (folder / "translations" / "en.json").write_text("{}", encoding="utf-8")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    return folder


def installed_version(config: Path) -> Any:
    manifest = config / "custom_components" / DOMAIN / "manifest.json"
    return json.loads(manifest.read_text(encoding="utf-8"))["version"]


def siblings(config: Path) -> list[str]:
    return sorted(p.name for p in (config / "custom_components").iterdir())


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_integration(tmp_path / "image" / DOMAIN, "0.2.0")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "homeassistant"
    folder.mkdir()
    return folder


def test_fresh_install(bundle: Path, config: Path) -> None:
    result = install_integration(bundle, config)

    assert result == InstallResult("installed", "installed integration 0.2.0")
    assert result.changed
    target = config / "custom_components" / DOMAIN
    assert installed_version(config) == "0.2.0"
    assert (target / "translations" / "en.json").read_text() == "{}"
    assert not (target / "__pycache__").exists()
    assert siblings(config) == [DOMAIN]


def test_second_run_is_up_to_date(bundle: Path, config: Path) -> None:
    install_integration(bundle, config)
    result = install_integration(bundle, config)
    assert result.action == "up_to_date"
    assert not result.changed


def test_upgrade_replaces_older_version(
    bundle: Path, config: Path, tmp_path: Path
) -> None:
    old = make_integration(config / "custom_components" / DOMAIN, "0.1.9")
    (old / "removed_module.py").write_text("", encoding="utf-8")

    result = install_integration(bundle, config)

    assert result.action == "upgraded"
    assert "0.1.9" in result.detail
    assert "0.2.0" in result.detail
    assert installed_version(config) == "0.2.0"
    assert not (old / "removed_module.py").exists()
    assert siblings(config) == [DOMAIN]


@pytest.mark.parametrize("version", ["0.2.1", "0.10.0", "1.0.0b1", "0.2.0.post1"])
def test_newer_version_left_alone(bundle: Path, config: Path, version: str) -> None:
    make_integration(config / "custom_components" / DOMAIN, version)

    result = install_integration(bundle, config)

    assert result.action == "newer_present"
    assert installed_version(config) == version


def test_foreign_folder_left_alone(bundle: Path, config: Path) -> None:
    make_integration(config / "custom_components" / DOMAIN, "0.0.1", domain="other")
    assert install_integration(bundle, config).action == "foreign"
    assert installed_version(config) == "0.0.1"


def test_folder_without_manifest_left_alone(bundle: Path, config: Path) -> None:
    target = config / "custom_components" / DOMAIN
    target.mkdir(parents=True)
    (target / "mine.py").write_text("x = 1\n", encoding="utf-8")

    assert install_integration(bundle, config).action == "foreign"
    assert sorted(p.name for p in target.iterdir()) == ["mine.py"]


def test_symlinked_folder_left_alone(
    bundle: Path, config: Path, tmp_path: Path
) -> None:
    checkout = make_integration(tmp_path / "checkout" / DOMAIN, "0.0.1")
    (config / "custom_components").mkdir()
    (config / "custom_components" / DOMAIN).symlink_to(checkout)

    assert install_integration(bundle, config).action == "foreign"
    assert (config / "custom_components" / DOMAIN).resolve() == checkout.resolve()


def test_unreadable_installed_version_left_alone(bundle: Path, config: Path) -> None:
    make_integration(config / "custom_components" / DOMAIN, "latest")
    result = install_integration(bundle, config)
    assert result.action == "error"
    assert installed_version(config) == "latest"


def test_disabled(bundle: Path, config: Path) -> None:
    assert install_integration(bundle, config, enabled=False).action == "disabled"
    assert not (config / "custom_components").exists()


def test_missing_config_dir(bundle: Path, tmp_path: Path) -> None:
    result = install_integration(bundle, tmp_path / "not-mapped")
    assert result.action == "no_config_dir"
    assert not (tmp_path / "not-mapped").exists()


@pytest.mark.parametrize("domain", [DOMAIN, "other"])
def test_broken_bundle_is_an_error(tmp_path: Path, config: Path, domain: str) -> None:
    broken = make_integration(tmp_path / "image" / DOMAIN, "nope", domain=domain)
    assert install_integration(broken, config).action == "error"
    assert not (config / "custom_components").exists()


def test_missing_bundle_is_an_error(tmp_path: Path, config: Path) -> None:
    result = install_integration(tmp_path / "absent", config)
    assert result.action == "error"


def test_failure_mid_copy_keeps_old_version(
    bundle: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_integration(config / "custom_components" / DOMAIN, "0.1.0")
    copied: list[str] = []
    real_copyfile = shutil.copyfile

    def failing_copyfile(src: Any, dst: Any, **kwargs: Any) -> Any:
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(str(src))
        return real_copyfile(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", failing_copyfile)

    result = install_integration(bundle, config)

    assert result.action == "error"
    assert "No space left on device" in result.detail
    assert copied  # the copy really started before failing
    assert installed_version(config) == "0.1.0"
    assert (config / "custom_components" / DOMAIN / "__init__.py").read_text() == (
        'VERSION = "0.1.0"\n'
    )
    assert siblings(config) == [DOMAIN]


def test_failure_at_swap_restores_old_version(
    bundle: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_integration(config / "custom_components" / DOMAIN, "0.1.0")
    real_rename = os.rename
    calls: list[str] = []

    def failing_rename(src: Any, dst: Any) -> None:
        calls.append(Path(src).name)
        if Path(src).name.startswith(integration_install.NEW_PREFIX):
            raise OSError(5, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)

    result = install_integration(bundle, config)

    assert result.action == "error"
    assert len(calls) == 3  # move aside, failed swap, move back
    assert installed_version(config) == "0.1.0"
    assert siblings(config) == [DOMAIN]


def test_leftovers_of_an_interrupted_run_are_removed(
    bundle: Path, config: Path
) -> None:
    components = config / "custom_components"
    make_integration(components / f".{DOMAIN}.old-abc", "0.0.1")
    make_integration(components / f".{DOMAIN}.new-def", "0.0.2")
    other = make_integration(components / "someone_else", "1.0")

    assert install_integration(bundle, config).action == "installed"

    assert siblings(config) == [DOMAIN, "someone_else"]
    assert (other / "manifest.json").exists()


def test_env_overrides() -> None:
    assert bundle_path({}) == Path("/usr/share/apsystems_ecu_proxy/apsystems_ema_proxy")
    assert config_dir({}) == Path("/homeassistant")
    env = {
        "ECU_PROXY_INTEGRATION_BUNDLE": "/opt/bundle",
        "ECU_PROXY_HA_CONFIG": "/config",
    }
    assert bundle_path(env) == Path("/opt/bundle")
    assert config_dir(env) == Path("/config")


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("0.1.0", "0.2.0"),
        ("0.9.0", "0.10.0"),
        ("1.0.dev1", "1.0a1"),
        ("1.0a1", "1.0a2"),
        ("1.0a2", "1.0b1"),
        ("1.0b1", "1.0rc1"),
        ("1.0rc1", "1.0"),
        ("1.0", "1.0.post1"),
        ("1.0.post1.dev1", "1.0.post1"),
        ("1.0a1.dev1", "1.0a1"),
        ("2025.1.0", "2026.1"),
    ],
)
def test_version_order(older: str, newer: str) -> None:
    old_key, new_key = version_key(older), version_key(newer)
    assert old_key is not None
    assert new_key is not None
    assert old_key < new_key


def test_version_equivalence_and_garbage() -> None:
    assert version_key("1.0") == version_key("1.0.0") == version_key("v1.0")
    assert version_key("") is None
    assert version_key("latest") is None
    assert version_key("1.0-beta-x") is None


def test_the_shipped_integration_installs(tmp_path: Path, config: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "integration" / "custom_components"
    result = install_integration(shipped / DOMAIN, config)
    assert result.action == "installed"
    manifest = json.loads((shipped / DOMAIN / "manifest.json").read_text())
    assert installed_version(config) == manifest["version"]
