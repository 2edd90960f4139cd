"""Go-style durations (``5m``, ``30ms``, ``1h30m``) in Istio YAML, made parseable by json_format.

The proto3 JSON mapping writes a ``google.protobuf.Duration`` as seconds with an ``s``
suffix (``"300s"``, ``"0.030s"``), and ``json_format.ParseDict`` accepts nothing else. Istio
reads its YAML with Go's jsonpb, which parses Durations with ``time.ParseDuration``, so
Istio's own documentation writes ``interval: 5m``, ``connectTimeout: 30ms`` and
``maxAge: "24h"``. :func:`normalize_durations` rewrites such strings, at the fields whose
type is Duration only, into the proto3 form before ``ParseDict`` sees them.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

_DURATION = Duration.DESCRIPTOR.full_name
_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NANOS = 2**63 - 1
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_GO_DURATION = re.compile(rf"[-+]?(?:{_PART})+")
_PARTS = re.compile(_PART)


def go_duration_to_json(text: str) -> str | None:
    """``"1h30m"`` -> ``"5400s"``; None if ``text`` is not a Go duration."""
    if text in ("0", "+0", "-0"):
        return "0s"
    if not _GO_DURATION.fullmatch(text):
        return None
    total = sum(
        (Decimal(number) * _NANOS_PER_UNIT[unit] for number, unit in _PARTS.findall(text)),
        Decimal(0),
    )
    nanos = int(total)  # Go truncates fractions of a nanosecond
    if nanos > _MAX_NANOS:
        return None  # Go rejects it too: a time.Duration is an int64 of nanoseconds
    sign = -1 if text.startswith("-") else 1
    seconds, rest = divmod(nanos, 1_000_000_000)
    duration = Duration(seconds=sign * seconds, nanos=sign * rest)
    return duration.ToJsonString()


def normalize_durations(value: Any, message_type: type[Message]) -> Any:
    """A copy of ``value`` (the JSON form of a ``message_type``) with Go-style durations
    rewritten in proto3 form; ``value`` itself is not modified.

    Only string values at Duration fields change; anything this does not understand
    (unknown fields, wrong types, malformed durations) is left for ``ParseDict`` to report.
    """
    # The stubs type DESCRIPTOR as python's or upb's Descriptor; both have this API.
    return _normalize_message(value, cast(Descriptor, message_type.DESCRIPTOR))


def _normalize_message(value: Any, descriptor: Descriptor) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        found = _field(descriptor, key)
        out[key] = item if found is None else _normalize_field(item, *found)
    return out


def _field(descriptor: Descriptor, key: Any) -> tuple[FieldDescriptor, Descriptor] | None:
    """The message-typed field named ``key`` (proto or JSON name), with its message type."""
    if not isinstance(key, str):
        return None
    field = descriptor.fields_by_name.get(key)
    if field is None:
        field = next((f for f in descriptor.fields if f.json_name == key), None)
    if field is None or field.message_type is None:
        return None
    return field, field.message_type


def _normalize_field(item: Any, field: FieldDescriptor, message_type: Descriptor) -> Any:
    if message_type.GetOptions().map_entry:
        value_type = message_type.fields_by_name["value"].message_type
        if value_type is None or not isinstance(item, dict):
            return item
        return {k: _normalize_single(v, value_type) for k, v in item.items()}
    if field.is_repeated and isinstance(item, list):
        return [_normalize_single(v, message_type) for v in item]
    return _normalize_single(item, message_type)


def _normalize_single(item: Any, message_type: Descriptor) -> Any:
    if message_type.full_name == _DURATION:
        if isinstance(item, str):
            converted = go_duration_to_json(item)
            return item if converted is None else converted
        return item
    return _normalize_message(item, message_type)


def to_millis(d: Duration) -> int:
    """Whole milliseconds, rounded toward zero (as Go's ``Duration.Milliseconds``)."""
    return int(d.ToMilliseconds())


def duration_problem(d: Duration, *, positive: bool = False) -> str | None:
    """Why Envoy would refuse ``d`` as a config value, or None.

    Envoy refuses a negative Duration anywhere in its config; ``positive`` marks a field
    that must be more than 0 (a cluster's connect timeout, outlier detection's interval,
    a fault's fixed delay). pilotfish hands Envoy whole milliseconds, so "more than 0"
    means at least 1ms, which is also Istio's validation rule for those fields.
    """
    if d.seconds < 0 or d.nanos < 0:
        return "a duration cannot be negative (Envoy refuses it)"
    if positive and to_millis(d) < 1:
        return "must be at least 1ms (Envoy requires more than 0)"
    return None
