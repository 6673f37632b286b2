"""The HACS release zip: built reproducibly, unpacked as HACS does, loaded by HA."""

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components

from .fake_service import FakeService

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "integration" / "custom_components" / "apsystems_ema_proxy"
PACKAGE = "custom_components.apsystems_ema_proxy"


def build_zip(output: Path) -> Path:
    """Run scripts/build-hacs-zip and return the zip it wrote."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-hacs-zip"), "--output", output],
        check=True,
        capture_output=True,
    )
    return output


def shipped_files() -> set[str]:
    """Return the integration's files as the zip should hold them."""
    return {
        path.relative_to(SOURCE).as_posix()
        for path in SOURCE.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix not in (".pyc", ".pyo")
    }


def test_zip_holds_the_integration_at_its_root(tmp_path: Path) -> None:
    """Every file of the integration, at the root, byte for byte, no caches."""
    archive = build_zip(tmp_path / "integration.zip")
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        assert names == sorted(names)
        assert set(names) == shipped_files()
        assert "manifest.json" in names
        for name in names:
            assert zipped.read(name) == (SOURCE / name).read_bytes(), name
        for info in zipped.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644


def test_zip_is_reproducible(tmp_path: Path) -> None:
    """Two builds of the same tree are identical byte for byte."""
    first = build_zip(tmp_path / "a.zip").read_bytes()
    second = build_zip(tmp_path / "b.zip").read_bytes()
    assert first == second


def test_zip_name_is_the_one_hacs_json_promises(tmp_path: Path) -> None:
    """The default output carries the asset name HACS downloads."""
    hacs = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    assert hacs["zip_release"] is True
    assert hacs["filename"].endswith(".zip")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-hacs-zip"), "--help"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "--output" in result.stdout


@pytest.fixture
def unpacked_integration(tmp_path: Path) -> Iterator[Path]:
    """Unpack the zip into a fresh custom_components/ and make HA load it from there.

    Home Assistant finds custom integrations through the ``custom_components``
    package's ``__path__``; pointing it at the temporary folder (and forgetting the
    modules already imported from the source tree) makes every import of the
    integration come from the unpacked copy. Everything is restored afterwards.
    """
    archive = build_zip(tmp_path / "release.zip")
    components = tmp_path / "config" / "custom_components"
    target = components / "apsystems_ema_proxy"
    target.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(target)  # what HACS does with the release asset

    saved_modules = {
        name: module
        for name, module in sys.modules.items()
        if name == PACKAGE or name.startswith(PACKAGE + ".")
    }
    saved_path = list(custom_components.__path__)
    for name in saved_modules:
        del sys.modules[name]
    custom_components.__path__[:] = [str(components)]
    try:
        yield target
    finally:
        for name in [n for n in sys.modules if n.split(".")[:2] == PACKAGE.split(".")]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
        custom_components.__path__[:] = saved_path


async def test_unpacked_zip_loads_in_home_assistant(
    unpacked_integration: Path,
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
) -> None:
    """The unpacked copy sets up against the service and creates entities."""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert mock_config_entry.state is ConfigEntryState.LOADED
    assert hass.states.get("sensor.ecu_r_216000064136_power") is not None
    loaded = {
        name: module
        for name, module in sys.modules.items()
        if name == PACKAGE or name.startswith(PACKAGE + ".")
    }
    # The package, its coordinator and the entity platforms all came from the zip.
    assert {PACKAGE, f"{PACKAGE}.coordinator", f"{PACKAGE}.sensor"} <= set(loaded)
    for name, module in loaded.items():
        assert module.__file__ is not None, name
        assert Path(module.__file__).is_relative_to(unpacked_integration), name
