"""The state fixtures the integration tests use follow the service's contract."""

import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "state.schema.json").read_text())
FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("state_*.json"))


def test_there_are_fixtures() -> None:
    assert {p.stem for p in FIXTURES} >= {"state_capture", "state_empty", "state_mixed"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_follows_the_state_schema(path: Path) -> None:
    jsonschema.validate(json.loads(path.read_text()), SCHEMA)
