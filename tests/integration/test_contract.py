"""The contract as the integration ships it: the schema and the service's fixtures."""

import json
from pathlib import Path
from typing import Any

import pytest

from custom_components.apsystems_ema_proxy.contract.codec import (
    ContractError,
    decode,
    encode,
)
from custom_components.apsystems_ema_proxy.contract.messages import FramesPage
from custom_components.apsystems_ema_proxy.contract.schema import state_schema_text
from custom_components.apsystems_ema_proxy.contract.state import Document

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_the_shipped_contract_describes_the_committed_schema() -> None:
    """The integration's copy is the one docs/state.schema.json comes from."""
    assert (ROOT / "docs" / "state.schema.json").read_text() == state_schema_text()


@pytest.mark.parametrize(
    "name", ["state_capture.json", "state_empty.json", "state_mixed.json"]
)
def test_state_fixtures_read_and_write_back(name: str) -> None:
    document = _fixture(name)
    assert encode(decode(Document, document)) == document


def test_frames_read_and_write_back() -> None:
    page = _fixture("frames_capture.json")
    assert encode(decode(FramesPage, page)) == page


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"schema_version": 2}, "$.schema_version"),
        ({"ecus": []}, "$.ecus"),
        ({"guard": {"mode": "sometimes"}}, "$.guard"),
    ],
)
def test_a_document_off_the_contract_is_refused(
    change: dict[str, Any], where: str
) -> None:
    with pytest.raises(ContractError, match=where.replace("$", r"\$")):
        decode(Document, _fixture("state_capture.json") | change)
