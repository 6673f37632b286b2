"""The contract codec: both directions and the schema from one definition."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import jsonschema
import pytest

from ecu_proxy.contract.codec import ContractError, decode, encode, json_schema, meta


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class Part:
    """One part."""

    name: str
    watts: float | None
    colour: Colour = Colour.RED


@dataclass(frozen=True, slots=True)
class Whole:
    """A document made of parts."""

    version: Literal[1]
    at: datetime
    day: date | None
    parts: dict[str, Part]
    tags: tuple[str, ...] = ()
    extra: Any = None
    cache: int = field(default=0, metadata=meta(skip=True))
    count: int = field(default=0, metadata=meta(minimum=0, description="How many"))


WHOLE = Whole(
    version=1,
    at=datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC),
    day=date(2024, 2, 6),
    parts={"a": Part("a", 17), "b": Part("b", None, Colour.BLUE)},
    tags=("x", "y"),
    extra={"free": [1, "form"]},
    cache=5,
    count=2,
)


def test_round_trip_keeps_values_and_leaves_skipped_fields_out() -> None:
    data = encode(WHOLE)
    assert data == {
        "version": 1,
        "at": "2024-02-06T10:22:20+00:00",
        "day": "2024-02-06",
        "parts": {
            "a": {"name": "a", "watts": 17, "colour": "red"},
            "b": {"name": "b", "watts": None, "colour": "blue"},
        },
        "tags": ["x", "y"],
        "extra": {"free": [1, "form"]},
        "count": 2,
    }
    back = decode(Whole, data)
    assert back == dataclasses.replace(WHOLE, cache=0)
    assert encode(back) == data


def test_non_finite_floats_go_out_as_null() -> None:
    assert encode(Part("p", float("nan"))) == {
        "name": "p",
        "watts": None,
        "colour": "red",
    }


def test_unknown_keys_are_ignored_and_defaults_fill_missing_ones() -> None:
    data = {"name": "p", "watts": 1.5, "new_in_a_later_version": True}
    assert decode(Part, data) == Part("p", 1.5)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"name": 3, "watts": 1}, "$.name: expected a string"),
        ({"name": "p", "watts": True}, "$.watts: expected a number"),
        ({"name": "p"}, "$: 'watts' is missing"),
        ({"name": "p", "watts": 1, "colour": "green"}, "$.colour: expected one of"),
        ([], "$: expected an object (Part)"),
    ],
)
def test_mismatches_name_the_path(data: Any, where: str) -> None:
    with pytest.raises(ContractError, match=f"^{re.escape(where)}"):
        decode(Part, data)


def test_nested_paths_and_literals() -> None:
    data = encode(WHOLE)
    data["parts"]["b"]["watts"] = "high"
    with pytest.raises(ContractError, match=r"^\$\.parts\.b\.watts: "):
        decode(Whole, data)
    with pytest.raises(ContractError, match=r"^\$\.version: expected one of \[1\]"):
        decode(Whole, {**encode(WHOLE), "version": 2})
    with pytest.raises(ContractError, match=r"^\$\.at: expected an ISO 8601"):
        decode(Whole, {**encode(WHOLE), "at": "yesterday"})


def test_schema_accepts_the_encoded_form_and_rejects_drift() -> None:
    schema = json_schema(Whole)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = encode(WHOLE)
    validator.validate(data)
    assert schema["required"] == ["version", "at", "day", "parts"]
    assert schema["properties"]["count"] == {
        "description": "How many",
        "type": "integer",
        "minimum": 0,
    }
    assert "cache" not in schema["properties"]
    for broken in (
        {**data, "surprise": 1},
        {**data, "count": -1},
        {**data, "parts": {"a": {"name": "a", "watts": 1, "colour": "green"}}},
    ):
        assert not validator.is_valid(broken)


class Window:
    """A class that is not a data class but brings its own JSON form."""

    def __init__(self, stamps: list[str]) -> None:
        self.stamps = stamps

    def to_json(self) -> Any:
        return {"stamps": self.stamps}

    @classmethod
    def from_json(cls, data: Any, path: str) -> Window:
        if not isinstance(data, dict) or not isinstance(data.get("stamps"), list):
            raise ContractError(f"{path}: expected a window")
        return cls(data["stamps"])


@dataclass
class Holder:
    window: Window


def test_classes_with_their_own_json_form_take_part() -> None:
    data = encode(Holder(Window(["20240206112214"])))
    assert data == {"window": {"stamps": ["20240206112214"]}}
    assert decode(Holder, data).window.stamps == ["20240206112214"]
    with pytest.raises(ContractError, match=r"^\$\.window: expected a window"):
        decode(Holder, {"window": 3})


@dataclass
class Counters:
    by_channel: dict[int, float]
    total: int = field(default=0, metadata=meta(minimum=0, maximum=2**63 - 1))
    reading: float | None = field(default=None, metadata=meta(maximum=1e15))


def test_bounds_are_enforced_and_integer_keys_go_out_as_strings() -> None:
    value = Counters({1: 2.5, 12: 0.0}, total=7, reading=None)
    data = encode(value)
    assert data == {"by_channel": {"1": 2.5, "12": 0.0}, "total": 7, "reading": None}
    assert decode(Counters, data) == value
    schema = json_schema(Counters)
    assert schema["properties"]["total"]["maximum"] == 2**63 - 1
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(data)
    for broken, where in (
        ({**data, "total": -1}, r"^\$\.total: expected a number >= 0 and <= "),
        ({**data, "total": 2**63}, r"^\$\.total: expected a number >= 0 and <= "),
        ({**data, "reading": 1e300}, r"^\$\.reading: expected a number <= 1e\+15"),
        ({**data, "by_channel": {"one": 1.0}}, r"^\$\.by_channel: expected an object "),
    ):
        with pytest.raises(ContractError, match=where):
            decode(Counters, broken)
        assert not validator.is_valid(broken)


@dataclass(frozen=True, slots=True)
class Greeting:
    """A message whose last key only some senders carry."""

    name: str
    note: str | None = None
    flag: bool | None = field(default=None, metadata=meta(omit_none=True))


def test_omit_none_leaves_the_key_out_only_while_none() -> None:
    assert encode(Greeting("a")) == {"name": "a", "note": None}
    assert encode(Greeting("a", flag=False)) == {
        "name": "a",
        "note": None,
        "flag": False,
    }
    assert list(encode(Greeting("a", flag=True))) == ["name", "note", "flag"]
    assert decode(Greeting, {"name": "a"}) == Greeting("a")
    assert decode(Greeting, {"name": "a", "flag": True}).flag is True
    schema = json_schema(Greeting)
    assert schema["properties"]["flag"] == {"type": "boolean"}
    assert schema["required"] == ["name"]
    jsonschema.validate(encode(Greeting("a")), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "a", "flag": None}, schema)


class ShiftedTime(datetime):
    """A subclass of datetime, as a test clock (freezegun) puts in its place."""


@dataclass(frozen=True, slots=True)
class Stamped:
    """A message whose time hint is such a subclass."""

    at: ShiftedTime


def test_subclasses_of_the_time_classes_are_times() -> None:
    data = {"at": "2024-02-06T10:22:20+00:00"}
    value = decode(Stamped, data)
    assert value.at == datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC)
    assert encode(value) == data
    assert encode(Stamped(ShiftedTime(2024, 2, 6, tzinfo=UTC))) == {
        "at": "2024-02-06T00:00:00+00:00"
    }
    assert json_schema(Stamped)["properties"]["at"] == {
        "type": "string",
        "format": "date-time",
    }


def test_a_float_field_holds_a_float_even_when_written_as_an_integer() -> None:
    part = decode(Part, {"name": "a", "watts": 190})
    assert part.watts == 190
    assert isinstance(part.watts, float)
