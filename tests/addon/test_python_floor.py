"""One Python floor everywhere, and the oldest Home Assistant's harness runs on it.

The integration and its contract package run inside Home Assistant's interpreter, so
the oldest Home Assistant the add-on and hacs.json admit (2025.12, Python 3.13) sets
the floor; the service shares the contract package and keeps the same one.
"""

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _floor() -> str:
    """Return the X.Y of requires-python, which must be a plain lower bound."""
    match = re.fullmatch(r">=(3\.\d+)", PYPROJECT["project"]["requires-python"])
    assert match is not None, "requires-python is one lower bound, >=3.N"
    return match.group(1)


def _ha_oldest_series() -> str:
    """Return the Python series scripts/bootstrap gives the oldest harness."""
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text(encoding="utf-8")
    match = re.search(
        r"^  ha-oldest\)\n(?:    .*\n)*?    series=(3\.\d+)$", bootstrap, re.M
    )
    assert match is not None, "scripts/bootstrap names the ha-oldest series"
    return match.group(1)


def test_ruff_and_mypy_check_for_the_floor() -> None:
    floor = _floor()
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + floor.replace(".", "")
    assert PYPROJECT["tool"]["mypy"]["python_version"] == floor


def test_the_oldest_harness_runs_on_the_floor() -> None:
    assert _ha_oldest_series() == _floor()


def test_the_oldest_harness_pins_the_admitted_minimum() -> None:
    """The requirements file says which Home Assistant its harness release is for."""
    admitted = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    pins = (ROOT / "requirements" / "test-ha-oldest.txt").read_text(encoding="utf-8")
    minimum = admitted["homeassistant"]
    assert re.search(rf"is the release for Home Assistant {re.escape(minimum)}\.", pins)
    assert re.search(r"^pytest-homeassistant-custom-component==\S+$", pins, re.M)


def test_the_docs_name_the_floor() -> None:
    floor = _floor()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"**Python {floor} or newer**" in readme
    assert f'requires-python = ">={floor}"' in readme
    development = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    assert f"Python {floor}" in development
