"""Static files of the integration: manifest, translations, icons, brand, scale."""

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
from homeassistant.util.yaml import load_yaml_dict
from PIL import Image

from custom_components.apsystems_ema_proxy import binary_sensor, sensor

PACKAGE = (
    Path(__file__).parents[2]
    / "integration"
    / "custom_components"
    / "apsystems_ema_proxy"
)
QUALITY_SCALE_RULES = {
    # Bronze
    "action-setup", "appropriate-polling", "brands", "common-modules",
    "config-flow-test-coverage", "config-flow", "dependency-transparency",
    "docs-actions", "docs-high-level-description", "docs-installation-instructions",
    "docs-removal-instructions", "entity-event-setup", "entity-unique-id",
    "has-entity-name", "runtime-data", "test-before-configure", "test-before-setup",
    "unique-config-entry", "docs-conditions", "docs-triggers",
    # Silver
    "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
    "docs-installation-parameters", "entity-unavailable", "integration-owner",
    "log-when-unavailable", "parallel-updates", "reauthentication-flow",
    "test-coverage",
    # Gold
    "devices", "diagnostics", "discovery-update-info", "discovery", "docs-data-update",
    "docs-examples", "docs-known-limitations", "docs-supported-devices",
    "docs-supported-functions", "docs-troubleshooting", "docs-use-cases",
    "dynamic-devices", "entity-category", "entity-device-class",
    "entity-disabled-by-default", "entity-translations", "exception-translations",
    "icon-translations", "reconfiguration-flow", "repair-issues", "stale-devices",
    # Platinum
    "async-dependency", "inject-websession", "strict-typing",
}  # fmt: skip


def load(name: str) -> Any:
    """Load a JSON file of the integration."""
    return json.loads((PACKAGE / name).read_text(encoding="utf-8"))


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested translation objects to dotted keys."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def placeholders(text: str) -> set[str]:
    """Return the {placeholders} a translation uses."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_manifest() -> None:
    """Domain and name first, the rest sorted; required custom keys present."""
    manifest = load("manifest.json")
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["domain"] == PACKAGE.name
    assert manifest["integration_type"] == "hub"
    assert manifest["iot_class"] == "local_push"
    assert manifest["config_flow"] is True
    assert manifest["requirements"] == []
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert manifest["codeowners"]
    assert manifest["documentation"].startswith("https://")
    assert manifest["issue_tracker"].startswith("https://")
    assert not (PACKAGE / "strings.json").exists()


def test_english_covers_every_entity() -> None:
    """Every translation key used by a description has an English name."""
    en = load("translations/en.json")
    sensor_keys = {
        d.translation_key
        for d in (
            *sensor.ECU_SENSORS,
            *sensor.INVERTER_SENSORS,
            *sensor.CHANNEL_SENSORS,
            *sensor.SERVICE_SENSORS,
            sensor.ENERGY_THIS_HOUR_SENSOR,
            sensor.AC_VOLTAGE_SENSOR,
            sensor.phase_voltage_description(1),
        )
    }
    binary_keys = {
        d.translation_key
        for d in (
            *binary_sensor.ECU_BINARY_SENSORS,
            *binary_sensor.INVERTER_BINARY_SENSORS,
            binary_sensor.REPORTING_SENSOR,
            binary_sensor.EMA_REACHABLE_SENSOR,
        )
    }
    assert set(en["entity"]["sensor"]) == sensor_keys
    assert set(en["entity"]["binary_sensor"]) == binary_keys
    for key in (
        "channel_power",
        "channel_voltage",
        "channel_current",
        "channel_energy",
    ):
        assert placeholders(en["entity"]["sensor"][key]["name"]) == {"channel"}
    assert placeholders(en["entity"]["sensor"]["ac_voltage_phase"]["name"]) == {"phase"}


@pytest.mark.parametrize("language", ["de", "nl", "fr"])
def test_translations_match_english(language: str) -> None:
    """Other languages translate every English text, with the same placeholders."""
    en = leaves(load("translations/en.json"))
    other = leaves(load(f"translations/{language}.json"))
    assert set(other) == set(en)
    for key, text in other.items():
        assert text.strip()
        assert placeholders(text) == placeholders(en[key]), key


def test_icons_refer_to_translated_entities() -> None:
    """Every icon belongs to an entity translation key."""
    icons = load("icons.json")["entity"]
    en = load("translations/en.json")["entity"]
    for platform, keys in icons.items():
        assert set(keys) <= set(en[platform])
        for icon in keys.values():
            assert icon["default"].startswith("mdi:")


def test_brand_images() -> None:
    """Icons are square (256 and 512), logos are wide PNGs."""
    expected = {
        "icon.png": (256, 256),
        "icon@2x.png": (512, 512),
        "logo.png": (512, 128),
        "logo@2x.png": (1024, 256),
    }
    for name, size in expected.items():
        with Image.open(PACKAGE / "brand" / name) as image:
            assert image.format == "PNG"
            assert image.size == size


def test_quality_scale_is_complete() -> None:
    """Every rule is done, or exempt with a reason."""
    rules = load_yaml_dict(PACKAGE / "quality_scale.yaml")["rules"]
    assert set(rules) == QUALITY_SCALE_RULES
    for name, rule in rules.items():
        if isinstance(rule, str):
            assert rule == "done", name
        else:
            assert rule["status"] in ("done", "exempt"), name
            if rule["status"] == "exempt":
                assert rule["comment"].strip(), name
