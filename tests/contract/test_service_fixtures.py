"""The integration's fixtures are the real service's output, and follow the contract."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from integration_fixtures import FIXTURES, build, text

from ecu_proxy.contract.codec import decode, encode
from ecu_proxy.contract.messages import FramesPage
from ecu_proxy.contract.schema import state_schema, state_schema_text
from ecu_proxy.contract.state import Document

ROOT = FIXTURES.parents[2]
BUILT = build()


def test_the_committed_schema_is_the_generated_one() -> None:
    """docs/state.schema.json is generated (python -m ecu_proxy.contract.schema)."""
    assert (ROOT / "docs" / "state.schema.json").read_text() == state_schema_text()


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(state_schema())


@pytest.mark.parametrize("name", sorted(BUILT))
def test_committed_fixtures_are_the_service_output(name: str) -> None:
    """Run tests/service/integration_fixtures.py when the service output changes."""
    assert (FIXTURES / name).read_text() == text(BUILT[name])


def test_every_fixture_file_is_built() -> None:
    assert {path.name for path in FIXTURES.glob("*.json")} == set(BUILT)


@pytest.mark.parametrize("name", [n for n in sorted(BUILT) if n.startswith("state_")])
def test_state_fixtures_follow_the_schema_and_round_trip(name: str) -> None:
    document: dict[str, Any] = BUILT[name]
    jsonschema.validate(document, state_schema())
    assert encode(decode(Document, document)) == document


def test_frames_round_trip() -> None:
    page = BUILT["frames_capture.json"]
    assert encode(decode(FramesPage, page)) == page
