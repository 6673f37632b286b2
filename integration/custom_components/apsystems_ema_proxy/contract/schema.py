"""The JSON Schema of the state document, generated from the contract classes.

docs/state.schema.json is this module's output; regenerate it after changing a
class in state.py::

    python -m ecu_proxy.contract.schema > docs/state.schema.json

(from the repository root; a test fails while the committed file differs).
"""

from __future__ import annotations

import json
from typing import Any

from .codec import json_schema
from .constants import SCHEMA_VERSION
from .state import Document

_DESCRIPTION = (
    "Returned by GET /api/state, the get_state command and start_listening. Times "
    "with an offset are when the service received something (UTC); times without "
    "an offset are the ECU's own local wall clock. Energy is in kWh. Generated from "
    "the contract classes (contract/state.py); do not edit by hand."
)


def state_schema() -> dict[str, Any]:
    """Return the schema of the state document, with its title and id."""
    body = json_schema(Document)
    body.pop("description", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:apsystems-ecu-proxy:state:{SCHEMA_VERSION}",
        "title": f"APsystems ECU Proxy state document (schema version "
        f"{SCHEMA_VERSION})",
        "description": _DESCRIPTION,
        **body,
    }


def state_schema_text() -> str:
    """Return the schema as the text of docs/state.schema.json."""
    return json.dumps(state_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(state_schema_text(), end="")  # noqa: T201 - the command's output
