"""requirements/service.lock: the hashed form of requirements/service.txt.

The image installs the lock with --require-hashes; these checks keep it in step
with the pins in service.txt (which the development environment installs).
Regenerate it with the command in its header after changing service.txt.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>[\w.]+)")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def canonical(name: str) -> str:
    """Normalise a distribution name the way pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def service_pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"not a pin: {line}"
        pins[canonical(match["name"])] = match["version"]
    return pins


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """Return name -> (version, hashes) from a pip-compile --generate-hashes file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\s*\\\n\s*", " ", text)  # join continued lines
    for line in logical.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = stripped.split()
        match = PIN.match(words[0])
        assert match, f"not a pin: {stripped}"
        hashes = words[1:]
        assert all(HASH.match(word) for word in hashes), stripped
        entries[canonical(match["name"])] = (match["version"], hashes)
    return entries


def test_lock_pins_exactly_what_service_txt_pins() -> None:
    pins = service_pins((ROOT / "requirements/service.txt").read_text())
    entries = lock_entries((ROOT / "requirements/service.lock").read_text())
    assert {name: version for name, (version, _) in entries.items()} == pins


def test_every_locked_package_has_hashes() -> None:
    entries = lock_entries((ROOT / "requirements/service.lock").read_text())
    assert entries
    for name, (_version, hashes) in entries.items():
        assert hashes, name
        assert len(hashes) == len(set(hashes)), name


def test_lock_says_how_it_was_made() -> None:
    header = (ROOT / "requirements/service.lock").read_text().split("\n\n")[0]
    assert "--generate-hashes" in header
    assert "requirements/service.txt" in header


HASHED = " \\\n    --hash=sha256:" + "a" * 64 + "\n"


@pytest.mark.parametrize(
    ("service", "lock"),
    [
        ("yarl==1.0\n", "yarl==1.1" + HASHED),  # another version
        ("yarl==1.0\nidna==3\n", "yarl==1.0" + HASHED),  # a pin missing
        ("yarl==1.0\n", "yarl==1.0" + HASHED + "idna==3" + HASHED),  # one too many
    ],
)
def test_mismatches_are_caught(service: str, lock: str) -> None:
    locked = {name: version for name, (version, _) in lock_entries(lock).items()}
    assert locked != service_pins(service)


def test_same_pins_in_another_spelling_match() -> None:
    locked = lock_entries("Yarl==1.0" + HASHED)
    assert {n: v for n, (v, _) in locked.items()} == service_pins("yarl==1.0\n")


def test_parser_sees_missing_and_malformed_hashes() -> None:
    entries = lock_entries("yarl==1.0\n")
    assert entries["yarl"] == ("1.0", [])
    with pytest.raises(AssertionError):
        lock_entries("yarl==1.0 \\\n    --hash=md5:abc\n")
