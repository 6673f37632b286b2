"""One typed definition, both directions: data classes <-> JSON, and their JSON Schema.

A contract type is a (frozen) data class whose annotations use only: ``str``,
``int``, ``float``, ``bool``, ``None``, ``datetime``, ``date``, ``StrEnum``/``IntEnum``
subclasses, ``Literal[...]`` of strings or integers, ``list[X]``, ``tuple[X, ...]``,
``dict[str, X]``, ``dict[int, X]`` (its keys written as JSON strings), ``X | Y``
unions, ``typing.Any`` (any JSON value) and other contract types. The JSON key of a
field is its name. A class of another kind can take part by defining ``to_json(self)``
and a class method ``from_json(cls, data, path)`` that raises :class:`ContractError`
(it then has no schema).

* :func:`encode` turns a contract value into plain JSON data.
* :func:`decode` checks plain JSON data against a contract type and builds the value;
  every mismatch raises :class:`ContractError` naming the path (``$.ecus.X.power_w``).
  Keys the type does not know are ignored, so a newer peer may add keys within a
  schema version; a missing key is an error unless the field has a default.
* :func:`json_schema` describes the same type as JSON Schema (draft 2020-12).

Field metadata (``dataclasses.field(metadata=meta(...))``) can add a description, or
a minimum and maximum that the schema states and ``decode`` enforces, or keep a field
out of the JSON form (``skip=True``: the field must have a default; it is not written
and is left at its default when read).
``omit_none=True`` leaves the key out while the value is None (for a key that some
messages carry and others do not; the field must default to None, and its schema
does not admit null).

This module imports nothing outside the standard library: it is the base of the
contract package, which must stay free of Home Assistant and of the service. It is
longer than our usual 400 lines because encoding, decoding and the schema walk the
same type rules: kept side by side, a rule (a new kind of hint, a bound) changes in
one place for all three.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Literal, get_args, get_origin, get_type_hints

_META_KEY = "contract"
# The time classes, kept in a tuple: a test clock (freezegun) swaps the module
# names ``datetime``/``date`` for subclasses, and the codec must still know them.
_TIME_KINDS = (datetime, date)


class ContractError(ValueError):
    """A JSON document does not match the contract; the message says where."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldMeta:
    """What a field adds to its type: schema words, or that it is not serialized."""

    description: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    skip: bool = False
    omit_none: bool = False


def meta(
    *,
    description: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    skip: bool = False,
    omit_none: bool = False,
) -> dict[str, FieldMeta]:
    """Return the metadata mapping for ``dataclasses.field(metadata=...)``."""
    return {_META_KEY: FieldMeta(description, minimum, maximum, skip, omit_none)}


def _field_meta(item: dataclasses.Field[Any]) -> FieldMeta:
    found = item.metadata.get(_META_KEY)
    return found if isinstance(found, FieldMeta) else FieldMeta()


Encoder = Callable[[Any], Any]
Decoder = Callable[[Any, str], Any]


def _memoized[R](build: Callable[[Any], R]) -> Callable[[Any], R]:
    """Build once per type hint: the codec compiles each type on first use."""
    built: dict[Any, R] = {}

    def lookup(hint: Any) -> R:
        try:
            return built[hint]
        except KeyError:
            result = built[hint] = build(hint)
            return result

    return lookup


def encode(value: Any) -> Any:
    """Return the JSON form of a contract value (data class, list, dict or scalar)."""
    return _encoder_for_value(type(value))(value)


def decode[T](kind: type[T], data: Any, path: str = "$") -> T:
    """Check ``data`` against the contract type ``kind`` and build the value."""
    result: T = _decoder(kind)(data, path)
    return result


def json_schema(kind: type[Any]) -> dict[str, Any]:
    """Return the JSON Schema of a contract data class, its parts under ``$defs``."""
    defs: dict[str, Any] = {}
    root = _schema(kind, defs)
    name = kind.__name__
    body = defs.pop(name) if root == {"$ref": f"#/$defs/{name}"} else root
    if defs:
        body = {**body, "$defs": dict(sorted(defs.items()))}
    return body


# --- encoding ---------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _encode_float(value: Any) -> Any:
    # JSON has no NaN or infinity: they go out as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _encode_any(value: Any) -> Any:
    if isinstance(value, float):
        return _encode_float(value)
    if value is None or isinstance(value, str | int):
        return value
    return _encoder_for_value(type(value))(value)


@_memoized
def _encoder_for_value(kind: Any) -> Encoder:
    if hasattr(kind, "from_json"):
        return _own_json
    if dataclasses.is_dataclass(kind):
        return _dataclass_encoder(kind)
    if issubclass(kind, enum.Enum):
        return _enum_value
    if issubclass(kind, _TIME_KINDS):
        return _isoformat
    if issubclass(kind, list | tuple):
        return _encode_sequence_any
    if issubclass(kind, Mapping):
        return _encode_mapping_any
    if issubclass(kind, float):
        return _encode_float
    return _identity


def _own_json(value: Any) -> Any:
    return value.to_json()


def _enum_value(value: Any) -> Any:
    return value.value


def _isoformat(value: Any) -> Any:
    return value.isoformat()


def _encode_sequence_any(value: Any) -> Any:
    return [_encode_any(item) for item in value]


def _encode_mapping_any(value: Any) -> Any:
    return {str(key): _encode_any(item) for key, item in value.items()}


@_memoized
def _encoder(hint: Any) -> Encoder:
    """Return the encoder for a type hint (compiled once per hint)."""
    if hint is Any:
        return _encode_any
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _union_encoder(get_args(hint))
    if origin in (list, tuple):
        item = _encoder(get_args(hint)[0])
        if item is _identity:
            return list
        return lambda value: [item(entry) for entry in value]
    if origin is dict:
        item = _encoder(get_args(hint)[1])
        return lambda value: {str(key): item(entry) for key, entry in value.items()}
    if origin is Literal or hint in (str, int, bool, type(None)):
        return _identity
    if hint is float:
        return _encode_float
    if isinstance(hint, type):
        return _encoder_for_value(hint)
    raise TypeError(f"no JSON form for {hint!r}")


def _union_encoder(options: tuple[Any, ...]) -> Encoder:
    """Encode ``X | None`` with X's encoder; other unions look at each value."""
    rest = [option for option in options if option is not type(None)]
    if len(rest) != 1:
        return _encode_any
    inner = _encoder(rest[0])
    if inner in (_identity, _encode_float):
        return inner  # both pass None through unchanged
    return lambda value: None if value is None else inner(value)


def _dataclass_encoder(kind: Any) -> Encoder:
    """Compile the encoder of a data class into one function (it runs per message).

    The generated code reads each field once and builds the object in field order:
    ``{"a": value.a, "b": part_1(value.b)}``, leaving out omit_none fields that are
    None. Field names are Python identifiers, so the source is safe to build.
    """
    namespace: dict[str, Any] = {}
    plain: list[str] = []
    steps: list[str] = []
    for index, (item, hint) in enumerate(_fields(kind)):
        extra = _field_meta(item)
        if extra.skip:
            continue
        part = _encoder(hint)
        read = f"value.{item.name}"
        if part is not _identity:
            namespace[f"part_{index}"] = part
            read = f"part_{index}({read})"
        if extra.omit_none:
            steps.append(
                f"    if value.{item.name} is not None:\n"
                f"        out[{item.name!r}] = {read}"
            )
        else:
            plain.append(f"{item.name!r}: {read}")
            steps.append(f"    out[{item.name!r}] = {read}")
    if len(plain) == len(steps):
        body = f"    return {{{', '.join(plain)}}}"
    else:
        body = "    out = {}\n" + "\n".join(steps) + "\n    return out"
    exec(f"def encode_instance(value):\n{body}\n", namespace)
    encode_instance: Encoder = namespace["encode_instance"]
    return encode_instance


@_memoized
def _fields(kind: Any) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = get_type_hints(kind)
    return [(item, hints[item.name]) for item in dataclasses.fields(kind)]


# --- decoding ---------------------------------------------------------------------


def _fail(path: str, expected: str, data: Any) -> ContractError:
    shown = repr(data)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ContractError(f"{path}: expected {expected}, got {shown}")


def _decode_str(data: Any, path: str) -> str:
    if isinstance(data, str):
        return data
    raise _fail(path, "a string", data)


def _decode_int(data: Any, path: str) -> int:
    if isinstance(data, int) and not isinstance(data, bool):
        return data
    raise _fail(path, "an integer", data)


def _decode_float(data: Any, path: str) -> float:
    # JSON does not tell 190 from 190.0: a float field holds a float either way.
    if isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    raise _fail(path, "a number", data)


def _decode_bool(data: Any, path: str) -> bool:
    if isinstance(data, bool):
        return data
    raise _fail(path, "true or false", data)


def _decode_none(data: Any, path: str) -> None:
    if data is not None:
        raise _fail(path, "null", data)


def _decode_any(data: Any, _path: str) -> Any:
    return data


def _decode_datetime(data: Any, path: str) -> datetime:
    if isinstance(data, str):
        try:
            return datetime.fromisoformat(data)
        except ValueError:
            pass
    raise _fail(path, "an ISO 8601 date and time", data)


def _decode_date(data: Any, path: str) -> date:
    if isinstance(data, str) and len(data) == 10:
        try:
            return date.fromisoformat(data)
        except ValueError:
            pass
    raise _fail(path, "an ISO 8601 date", data)


_SCALAR_DECODERS: dict[Any, Decoder] = {
    str: _decode_str,
    int: _decode_int,
    float: _decode_float,
    bool: _decode_bool,
    type(None): _decode_none,
    datetime: _decode_datetime,
    date: _decode_date,
    Any: _decode_any,
}


@_memoized
def _decoder(hint: Any) -> Decoder:
    """Return the decoder for a type hint (compiled once per hint)."""
    scalar = _SCALAR_DECODERS.get(_time_kind(hint))
    if scalar is not None:
        return scalar
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _union_decoder(get_args(hint))
    if origin is Literal:
        return _literal_decoder(get_args(hint))
    if origin in (list, tuple):
        return _sequence_decoder(_decoder(get_args(hint)[0]), origin)
    if origin is dict:
        key, value = get_args(hint)
        return _mapping_decoder(_decoder(value), int_keys=key is int)
    if isinstance(hint, type) and hasattr(hint, "from_json"):
        own: Decoder = hint.from_json
        return own
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_decoder(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)
    raise TypeError(f"no JSON form for {hint!r}")


def _union_decoder(options: tuple[Any, ...]) -> Decoder:
    nullable = type(None) in options
    rest = [_decoder(option) for option in options if option is not type(None)]
    expected = " or ".join(_describe(option) for option in options)

    def decode_union(data: Any, path: str) -> Any:
        if data is None and nullable:
            return None
        if len(rest) == 1:
            return rest[0](data, path)
        for option in rest:
            try:
                return option(data, path)
            except ContractError:
                continue
        raise _fail(path, expected, data)

    return decode_union


def _literal_decoder(allowed: tuple[Any, ...]) -> Decoder:
    def decode_literal(data: Any, path: str) -> Any:
        if not isinstance(data, bool) and data in allowed:
            return data
        raise _fail(path, f"one of {list(allowed)}", data)

    return decode_literal


def _sequence_decoder(item: Decoder, origin: type[Any]) -> Decoder:
    def decode_sequence(data: Any, path: str) -> Any:
        if not isinstance(data, list):
            raise _fail(path, "a list", data)
        values = [item(entry, f"{path}[{index}]") for index, entry in enumerate(data)]
        return tuple(values) if origin is tuple else values

    return decode_sequence


_INT_KEY = re.compile(r"-?[0-9]{1,18}")


def _mapping_decoder(item: Decoder, *, int_keys: bool) -> Decoder:
    def decode_mapping(data: Any, path: str) -> dict[Any, Any]:
        if not isinstance(data, dict):
            raise _fail(path, "an object", data)
        if not int_keys:
            return {str(k): item(entry, f"{path}.{k}") for k, entry in data.items()}
        out: dict[Any, Any] = {}
        for key, entry in data.items():
            if not _INT_KEY.fullmatch(key):
                raise _fail(path, "an object with integer keys", key)
            out[int(key)] = item(entry, f"{path}.{key}")
        return out

    return decode_mapping


def _bounded(part: Decoder, extra: FieldMeta) -> Decoder:
    """Wrap a field's decoder to refuse numbers outside its minimum and maximum."""
    low, high = extra.minimum, extra.maximum
    if low is None and high is None:
        return part
    limits = [
        f"{sign} {bound:g}"
        for sign, bound in ((">=", low), ("<=", high))
        if bound is not None
    ]
    expected = f"a number {' and '.join(limits)}"

    def decode_bounded(data: Any, path: str) -> Any:
        value = part(data, path)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (
            (low is not None and value < low) or (high is not None and value > high)
        ):
            raise _fail(path, expected, data)
        return value

    return decode_bounded


def _enum_decoder(kind: type[enum.Enum]) -> Decoder:
    def decode_enum(data: Any, path: str) -> Any:
        try:
            return kind(data)
        except ValueError:
            allowed = [member.value for member in kind]
            raise _fail(path, f"one of {allowed}", data) from None

    return decode_enum


def _dataclass_decoder(kind: Any) -> Decoder:
    parts = [
        (
            item.name,
            _bounded(_decoder(hint), _field_meta(item)),
            item.default is not dataclasses.MISSING
            or item.default_factory is not dataclasses.MISSING,
        )
        for item, hint in _fields(kind)
        if not _field_meta(item).skip
    ]
    expected = f"an object ({kind.__name__})"

    def decode_instance(data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            raise _fail(path, expected, data)
        values: dict[str, Any] = {}
        for name, part, optional in parts:
            if name in data:
                values[name] = part(data[name], f"{path}.{name}")
            elif not optional:
                raise ContractError(f"{path}: {name!r} is missing")
        return kind(**values)

    return decode_instance


def _time_kind(hint: Any) -> Any:
    """Return ``datetime`` or ``date`` for a subclass of either, else the hint."""
    if isinstance(hint, type):
        for kind in _TIME_KINDS:
            if issubclass(hint, kind):
                return kind
    return hint


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


# --- JSON Schema ------------------------------------------------------------------

_SCALAR_SCHEMAS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    datetime: {"type": "string", "format": "date-time"},
    date: {"type": "string", "format": "date"},
    Any: {},
}


def _schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    scalar = _SCALAR_SCHEMAS.get(_time_kind(hint))
    if scalar is not None:
        return dict(scalar)
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _union_schema(get_args(hint), defs)
    if origin is Literal:
        values = list(get_args(hint))
        return {"const": values[0]} if len(values) == 1 else {"enum": values}
    if origin in (list, tuple):
        return {"type": "array", "items": _schema(get_args(hint)[0], defs)}
    if origin is dict:
        key, value = get_args(hint)
        body: dict[str, Any] = {"type": "object"}
        if key is int:
            body["propertyNames"] = {"pattern": f"^{_INT_KEY.pattern}$"}
        return {**body, "additionalProperties": _schema(value, defs)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: a type may refer to itself
            defs[name] = _object_schema(hint, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON form for {hint!r}")


def _union_schema(options: tuple[Any, ...], defs: dict[str, Any]) -> dict[str, Any]:
    parts = [_schema(option, defs) for option in options]
    simple = [part.get("type") for part in parts]
    if all(
        isinstance(kind, str) and len(part) == 1
        for kind, part in zip(simple, parts, strict=True)
    ):
        return {"type": simple}
    return {"anyOf": parts}


def _without_none(hint: Any) -> Any:
    options = [option for option in get_args(hint) if option is not type(None)]
    return functools.reduce(operator.or_, options) if options else hint


def _object_schema(kind: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for item, hint in _fields(kind):
        extra = _field_meta(item)
        if extra.skip:
            continue
        prop = _schema(_without_none(hint) if extra.omit_none else hint, defs)
        if extra.minimum is not None:
            prop["minimum"] = extra.minimum
        if extra.maximum is not None:
            prop["maximum"] = extra.maximum
        if extra.description:
            prop = {"description": extra.description, **prop}
        properties[item.name] = prop
        if item.default is dataclasses.MISSING and (
            item.default_factory is dataclasses.MISSING
        ):
            required.append(item.name)
    body: dict[str, Any] = {"type": "object"}
    doc = (kind.__doc__ or "").strip()
    if doc and not doc.startswith(f"{kind.__name__}("):
        body = {"description": " ".join(doc.split()), **body}
    return {
        **body,
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }
