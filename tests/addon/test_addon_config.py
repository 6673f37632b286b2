"""The add-on files checked against the rules the Supervisor applies when it loads them.

The Supervisor package itself is too heavy to install for tests, so its validation
rules are restated here: the config keys and their types, the option schema grammar,
option values against the schema, build.yaml, repository.yaml, translations, and the
way the store finds add-ons in a repository.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from ecu_proxy.contract.constants import DOMAIN
from ecu_proxy.options import _ADDON_KEYS as ADDON_KEYS
from ecu_proxy.options import DEFAULT_API_PORT, DEFAULT_PORTS, Options
from ecu_proxy.supervisor import DISCOVERY_SERVICE

ROOT = Path(__file__).resolve().parents[2]
# PyYAML ships no type hints; a plain module object keeps mypy from asking for stubs.
yaml = importlib.import_module("yaml")

ARCHES = {"aarch64", "amd64"}
STARTUPS = {"initialize", "system", "services", "application", "once"}
STAGES = {"stable", "experimental", "deprecated"}
MAP_TYPES = {
    "homeassistant_config",
    "addon_config",
    "app_config",
    "all_addon_configs",
    "all_app_configs",
    "ssl",
    "addons",
    "apps",
    "backup",
    "share",
    "media",
    "config",
}
SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
PORT_KEY = re.compile(r"^\d+(?:/(?:tcp|udp))?$")
HA_VERSION = re.compile(r"^\d{4}\.\d{1,2}(?:\.\d+)?(?:b\d+)?$")
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The schema element grammar: a type, optional bounds or argument, optional "?".
SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"bool|email|url|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?[\d.]+)?,(?P<f_max>-?[\d.]+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")(?P<optional>\?)?$"
)

# Keys the Supervisor's add-on config schema knows, with a checker for each.
_BOOL_KEYS = {
    "init",
    "homeassistant_api",
    "hassio_api",
    "host_network",
    "host_pid",
    "host_ipc",
    "host_dbus",
    "host_uts",
    "ingress",
    "panel_admin",
    "stdin",
    "legacy",
    "apparmor",
    "auth_api",
    "full_access",
    "docker_api",
    "gpio",
    "usb",
    "uart",
    "udev",
    "kernel_modules",
    "realtime",
    "video",
    "audio",
    "backup_pre",
    "backup_post",
    "advanced",
}


def load_yaml(name: str) -> Any:
    with (ROOT / name).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data = load_yaml("config.yaml")
    assert isinstance(data, dict)
    return data


def config_problems(config: dict[str, Any]) -> list[str]:
    """Return every way config breaks the Supervisor's add-on config schema."""
    problems: list[str] = []
    for key in ("name", "version", "slug", "description", "arch"):
        if key not in config:
            problems.append(f"missing required key {key}")
    checks: dict[str, Any] = {
        "name": lambda v: isinstance(v, str) and v.strip(),
        "version": lambda v: isinstance(v, str) and v.strip(),
        "slug": lambda v: isinstance(v, str) and SLUG.match(v),
        "description": lambda v: isinstance(v, str) and v.strip(),
        "url": lambda v: isinstance(v, str) and URL.match(v),
        "arch": lambda v: isinstance(v, list) and v and set(v) <= ARCHES,
        "startup": lambda v: v in STARTUPS,
        "boot": lambda v: v in {"auto", "manual", "manual_only"},
        "stage": lambda v: v in STAGES,
        "homeassistant": lambda v: isinstance(v, str) and HA_VERSION.match(v),
        "timeout": lambda v: type(v) is int and 10 <= v <= 300,
        "discovery": lambda v: (
            isinstance(v, list) and all(isinstance(s, str) and s for s in v)
        ),
        "ports": _ports_ok,
        "services": lambda v: (
            isinstance(v, list)
            and all(re.match(r"^(mqtt|mysql):(provide|want|need)$", s) for s in v)
        ),
        "ports_description": lambda v: isinstance(v, dict),
        "map": _map_ok,
        "options": lambda v: isinstance(v, dict),
        "schema": lambda v: v is False or isinstance(v, dict),
        "image": lambda v: isinstance(v, str) and "{arch}" not in v,
        "backup_exclude": lambda v: isinstance(v, list),
        "webui": lambda v: isinstance(v, str),
        "watchdog": lambda v: isinstance(v, str),
        "ingress_port": lambda v: type(v) is int and 0 <= v <= 65535,
        "panel_icon": lambda v: isinstance(v, str) and v.startswith("mdi:"),
        "panel_title": lambda v: isinstance(v, str) and v.strip(),
    }
    for key, value in config.items():
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                problems.append(f"{key} must be true or false")
            continue
        check = checks.get(key)
        if check is None:
            problems.append(f"unknown key {key}")
        elif not check(value):
            problems.append(f"bad value for {key}: {value!r}")
    return problems


def _ports_ok(ports: Any) -> bool:
    if not isinstance(ports, dict):
        return False
    for key, value in ports.items():
        if not PORT_KEY.match(str(key)):
            return False
        if value is not None and not (type(value) is int and 1 <= value <= 65535):
            return False
    return True


def _map_ok(entries: Any) -> bool:
    if not isinstance(entries, list):
        return False
    for entry in entries:
        if isinstance(entry, str):
            name, _, mode = entry.partition(":")
            if name not in MAP_TYPES or mode not in ("", "rw", "ro"):
                return False
            continue
        if not isinstance(entry, dict) or set(entry) - {"type", "read_only", "path"}:
            return False
        if entry.get("type") not in MAP_TYPES:
            return False
        if not isinstance(entry.get("read_only", True), bool):
            return False
        if "path" in entry and not str(entry["path"]).startswith("/"):
            return False
    return True


def element_problem(element: Any) -> str | None:
    """Check one schema element (string, list of one element, or nested dict)."""
    if isinstance(element, dict):
        for sub in element.values():
            problem = element_problem(sub)
            if problem:
                return problem
        return None
    if isinstance(element, list):
        if len(element) != 1:
            return "a list schema holds exactly one element"
        return element_problem(element[0])
    if not isinstance(element, str) or not SCHEMA_ELEMENT.match(element):
        return f"{element!r} is not a schema type"
    match = SCHEMA_ELEMENT.match(element)
    assert match is not None
    if match["match"] is not None:
        try:
            re.compile(match["match"])
        except re.error as err:
            return f"{element!r} has a bad regex: {err}"
    return None


def value_problem(element: Any, value: Any) -> str | None:
    """Check one option value against its schema element, like the Supervisor."""
    if isinstance(element, list):
        if not isinstance(value, list):
            return f"{value!r} is not a list"
        for item in value:
            problem = value_problem(element[0], item)
            if problem:
                return problem
        return None
    if isinstance(element, dict):
        if not isinstance(value, dict):
            return f"{value!r} is not a mapping"
        for key, sub in value.items():
            if key not in element:
                return f"unknown key {key}"
            problem = value_problem(element[key], sub)
            if problem:
                return problem
        return None
    match = SCHEMA_ELEMENT.match(element)
    assert match is not None
    kind = element.split("(")[0].rstrip("?")
    ok: bool
    if kind in ("str", "password", "device"):
        ok = isinstance(value, str)
        low, high = match["s_min"] or match["p_min"], match["s_max"] or match["p_max"]
        if ok and low is not None:
            ok = len(value) >= int(low)
        if ok and high is not None:
            ok = len(value) <= int(high)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = type(value) is int
        if ok and match["i_min"] is not None:
            ok = value >= int(match["i_min"])
        if ok and match["i_max"] is not None:
            ok = value <= int(match["i_max"])
    elif kind == "float":
        ok = type(value) in (int, float)
        if ok and match["f_min"] is not None:
            ok = value >= float(match["f_min"])
        if ok and match["f_max"] is not None:
            ok = value <= float(match["f_max"])
    elif kind == "port":
        ok = type(value) is int and 1 <= value <= 65535
    elif kind == "email":
        ok = isinstance(value, str) and bool(EMAIL.match(value))
    elif kind == "url":
        ok = isinstance(value, str) and bool(URL.match(value))
    elif kind == "match":
        ok = isinstance(value, str) and bool(re.match(match["match"], value))
    elif kind == "list":
        ok = str(value) in match["list"].split("|")
    else:  # pragma: no cover - the grammar admits nothing else
        ok = False
    return None if ok else f"{value!r} does not fit {element}"


def schema_problems(config: dict[str, Any]) -> list[str]:
    """Check the schema grammar, then the default options against it."""
    schema, options = config.get("schema", {}), config.get("options", {})
    problems = [
        f"schema {key}: {problem}"
        for key, element in schema.items()
        if (problem := element_problem(element))
    ]
    if problems:
        return problems
    for key, value in options.items():
        if key not in schema:
            problems.append(f"option {key} is not in the schema")
            continue
        problem = value_problem(schema[key], value)
        if problem:
            problems.append(f"option {key}: {problem}")
    for key, element in schema.items():
        optional = isinstance(element, str) and element.endswith("?")
        if not optional and key not in options:
            problems.append(f"required option {key} has no default")
    return problems


def find_addon_configs(root: Path) -> list[Path]:
    """Find add-on configs the way the Supervisor store scans a repository."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "rootfs")
        found.extend(
            Path(folder, name).relative_to(root)
            for name in sorted(files)
            if name in ("config.yaml", "config.yml", "config.json")
        )
    return found


# ---------------------------------------------------------------------------
# The checks themselves, run on the real files.


def test_config_follows_supervisor_schema(config: dict[str, Any]) -> None:
    assert config_problems(config) == []


def test_config_identity(config: dict[str, Any]) -> None:
    assert config["slug"] == "apsystems_ecu_proxy"
    # The version itself is kept in step with the other files by test_release.py.
    assert re.fullmatch(r"\d+\.\d+\.\d+", config["version"])
    assert set(config["arch"]) == ARCHES
    assert config["init"] is False
    assert config["startup"] == "services"
    assert config["stage"] == "experimental"
    assert config["discovery"] == [DISCOVERY_SERVICE] == [DOMAIN]


SPARE_PORTS = (8998, 9001, 9002, 9003, 9004, 9220, 9222, 9227, 9228)


def test_ports(config: dict[str, Any]) -> None:
    relay = {f"{port}/tcp": port for port in DEFAULT_PORTS}
    # Ports the ECU's host name also serves: declared, unmapped until a user who
    # adds one to extra_ports maps it under Network.
    spare = {f"{port}/tcp": None for port in SPARE_PORTS}
    assert config["ports"] == {**relay, f"{DEFAULT_API_PORT}/tcp": None, **spare}


def test_extra_ports_can_only_name_declared_ports(config: dict[str, Any]) -> None:
    declared = {int(key.split("/")[0]) for key in config["ports"]}
    assert set(SPARE_PORTS) <= declared
    assert (
        "Network"
        in load_yaml("translations/en.yaml")["configuration"]["extra_ports"][
            "description"
        ]
    )


def test_config_folder_is_writable_for_the_installer(config: dict[str, Any]) -> None:
    assert config["map"] == [
        {"type": "homeassistant_config", "read_only": False},
        {"type": "ssl", "read_only": True},  # a CA file for MQTT over TLS
    ]
    # Notifications go through the Core API proxy, which needs this flag.
    assert config["homeassistant_api"] is True


def test_schema_and_options_fit(config: dict[str, Any]) -> None:
    assert schema_problems(config) == []


def test_schema_covers_exactly_the_service_options(config: dict[str, Any]) -> None:
    assert set(config["schema"]) == set(ADDON_KEYS)


def test_default_options_match_the_service_defaults(config: dict[str, Any]) -> None:
    defaults = Options()
    for key, value in config["options"].items():
        field = ADDON_KEYS[key]
        expected = getattr(defaults, field)
        if isinstance(expected, tuple):
            expected = list(expected)
        assert value == expected, key


def test_schema_optional_marks(config: dict[str, Any]) -> None:
    schema = config["schema"]
    assert schema["api_token"] == "password?"
    assert schema["mode"] == "list(forward|cloudless)"
    assert schema["log_level"] == "list(trace|debug|info|notice|warning|error|fatal)"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"arch": ["armv7"]}, "bad value for arch"),
        ({"slug": "bad slug"}, "bad value for slug"),
        ({"ports": {"8995": "x"}}, "bad value for ports"),
        ({"ports": {"8995/sctp": 8995}}, "bad value for ports"),
        ({"map": [{"type": "everything", "read_only": False}]}, "bad value for map"),
        ({"map": [{"type": "share", "read_only": "no"}]}, "bad value for map"),
        ({"timeout": 5}, "bad value for timeout"),
        ({"homeassistant": "soon"}, "bad value for homeassistant"),
        ({"init": "false"}, "init must be true or false"),
        ({"colour": "blue"}, "unknown key colour"),
        ({"discovery": "apsystems_ema_proxy"}, "bad value for discovery"),
    ],
)
def test_config_checker_catches_mistakes(
    config: dict[str, Any], changes: dict[str, Any], problem: str
) -> None:
    broken = {**config, **changes}
    assert any(problem in found for found in config_problems(broken))


@pytest.mark.parametrize(
    ("schema", "options", "problem"),
    [
        ({"a": "string"}, {}, "not a schema type"),
        ({"a": "int(1,5)"}, {"a": 6}, "does not fit"),
        ({"a": "int"}, {"a": True}, "does not fit"),
        ({"a": "bool"}, {"a": "true"}, "does not fit"),
        ({"a": "list(x|y)"}, {"a": "z"}, "does not fit"),
        ({"a": ["port"]}, {"a": [70000]}, "does not fit"),
        ({"a": ["port"]}, {"a": 8995}, "is not a list"),
        ({"a": r"match(^\d{12}$)"}, {"a": "12"}, "does not fit"),
        ({"a": "match([)"}, {"a": "x"}, "bad regex"),
        ({"a": "str"}, {"b": "x"}, "not in the schema"),
        ({"a": "str"}, {}, "has no default"),
        ({"a": ["str", "int"]}, {"a": []}, "exactly one element"),
    ],
)
def test_schema_checker_catches_mistakes(
    schema: dict[str, Any], options: dict[str, Any], problem: str
) -> None:
    assert any(
        problem in found
        for found in schema_problems({"schema": schema, "options": options})
    )


def test_schema_checker_accepts_optional_without_default() -> None:
    config = {"schema": {"a": "password?", "b": "int(1,2)?"}, "options": {}}
    assert schema_problems(config) == []


def test_translations_cover_every_option_and_port(config: dict[str, Any]) -> None:
    translations = load_yaml("translations/en.yaml")
    assert set(translations) <= {"configuration", "network"}
    configuration = translations["configuration"]
    assert set(configuration) == set(config["schema"])
    for key, entry in configuration.items():
        assert set(entry) <= {"name", "description", "fields"}, key
        assert isinstance(entry["name"], str), key
        assert entry["name"].strip(), key
        assert isinstance(entry["description"], str), key
        assert entry["description"].strip(), key
    network = translations["network"]
    assert set(network) == set(config["ports"])
    assert all(isinstance(text, str) and text.strip() for text in network.values())


def test_build_yaml(config: dict[str, Any]) -> None:
    build = load_yaml("build.yaml")
    assert set(build) <= {"build_from", "args", "labels"}
    assert set(build["build_from"]) == set(config["arch"])
    for arch, image in build["build_from"].items():
        assert re.match(
            rf"^ghcr\.io/home-assistant/{arch}-base-python:3\.14-alpine3\.\d+$", image
        ), image
    for section in ("args", "labels"):
        values = build.get(section, {})
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())


def test_repository_yaml(config: dict[str, Any]) -> None:
    repository = load_yaml("repository.yaml")
    assert set(repository) <= {"name", "url", "maintainer"}
    assert isinstance(repository["name"], str)
    assert repository["name"].strip()
    assert URL.match(repository["url"])
    assert isinstance(repository["maintainer"], str)
    assert repository["url"] == config["url"]


def test_exactly_one_addon_in_the_repository() -> None:
    assert find_addon_configs(ROOT) == [Path("config.yaml")]


def test_scan_skips_rootfs_and_dot_folders(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("x: 1\n")
    for ignored in ("rootfs/etc", ".github", "sub/.hidden"):
        (tmp_path / ignored).mkdir(parents=True)
        (tmp_path / ignored / "config.json").write_text("{}")
    (tmp_path / "sub" / "nested").mkdir(parents=True)
    (tmp_path / "sub" / "nested" / "config.yml").write_text("x: 1\n")

    assert find_addon_configs(tmp_path) == [
        Path("config.yaml"),
        Path("sub/nested/config.yml"),
    ]


def test_icon_and_logo_sizes() -> None:
    from PIL import Image

    with Image.open(ROOT / "icon.png") as icon:
        assert icon.format == "PNG"
        assert icon.size == (128, 128)
    with Image.open(ROOT / "logo.png") as logo:
        assert logo.format == "PNG"
        width, height = logo.size
        assert 200 <= width <= 300
        assert 80 <= height <= 120


def test_docs_mention_every_option(config: dict[str, Any]) -> None:
    docs = (ROOT / "DOCS.md").read_text(encoding="utf-8")
    for key in config["schema"]:
        assert f"`{key}`" in docs, key


def test_changelog_has_this_version(config: dict[str, Any]) -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(config['version'])}\]", changelog, re.M)
