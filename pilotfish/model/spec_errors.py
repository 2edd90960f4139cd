"""Turn json_format's nested "Failed to parse X field: ..." into a field path and a reason.

json_format says *which* fields were being parsed but not which list element, so a
user with ten servers cannot tell which one is wrong. When a spec fails to parse we walk
it against the message descriptor ourselves and point at the first bad leaf:
`spec.servers[1].port.number: invalid value 'eighty' for a uint32 field`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

# Message types json_format reads from a scalar (a string, a number...): checked as a leaf.
_LEAF_MESSAGES = {
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Any",
    "google.protobuf.FieldMask",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
    "google.protobuf.Int32Value",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.FloatValue",
    "google.protobuf.DoubleValue",
}

_TYPE_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "boolean",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_DOUBLE: "number",
    FieldDescriptor.TYPE_FLOAT: "number",
    FieldDescriptor.TYPE_ENUM: "enum",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def locate_spec_error(
    data: Any, descriptor: Descriptor, path: str = "spec"
) -> tuple[str, str] | None:
    """(field path, reason) of the first problem in `data`, or None if none is found here."""
    if not isinstance(data, dict):
        return path, f"must be a mapping, got {_type_name(data)}"
    fields: dict[str, FieldDescriptor] = {}
    for f in descriptor.fields:
        fields[f.name] = f
        fields[f.json_name] = f
    for key, value in data.items():
        field_path = f"{path}.{key}"
        field = fields.get(str(key))
        if field is None:
            known = ", ".join(sorted({f.json_name for f in descriptor.fields}))
            return field_path, f"unknown field {key!r} (fields of {descriptor.name}: {known})"
        found = _locate_in_field(field, value, field_path, descriptor)
        if found is not None:
            return found
    return None


def _locate_in_field(
    field: FieldDescriptor, value: Any, path: str, owner: Descriptor
) -> tuple[str, str] | None:
    if value is None:
        return None  # json_format treats null as unset
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            return path, f"must be a mapping, got {_type_name(value)}"
        value_field = message_type.fields_by_name["value"]
        for k, v in value.items():
            found = _locate_in_single(
                value_field, v, f"{path}.{k}", message_type, as_map_value=True
            )
            if found is not None:
                return found
        return None
    if field.is_repeated:
        if not isinstance(value, list):
            return path, f"must be a list, got {_type_name(value)}"
        for i, item in enumerate(value):
            found = _locate_in_single(field, item, f"{path}[{i}]", owner, as_list_item=True)
            if found is not None:
                return found
        return None
    return _locate_in_single(field, value, path, owner)


def _locate_in_single(
    field: FieldDescriptor,
    value: Any,
    path: str,
    owner: Descriptor,
    *,
    as_list_item: bool = False,
    as_map_value: bool = False,
) -> tuple[str, str] | None:
    message_type = field.message_type
    if message_type is not None and message_type.full_name not in _LEAF_MESSAGES:
        return locate_spec_error(value, message_type, path)
    # A leaf: let json_format judge it alone, inside a minimal copy of its owner.
    if as_map_value:
        probe: dict[str, Any] = {"key": "k", "value": value}
    else:
        probe = {field.name: [value] if as_list_item else value}
    try:
        json_format.ParseDict(probe, message_factory.GetMessageClass(owner)())
    except json_format.ParseError as exc:
        return path, _leaf_reason(field, value, str(exc))
    return None


def _leaf_reason(field: FieldDescriptor, value: Any, text: str) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        allowed = ", ".join(v.name for v in field.enum_type.values)
        return f"invalid value {value!r} (one of: {allowed})"
    if (
        field.message_type is not None
        and field.message_type.full_name == "google.protobuf.Duration"
    ):
        return f"invalid duration {value!r} (e.g. 5s, 100ms, 1m30s)"
    kind = _TYPE_NAMES.get(field.type)
    if kind is not None:
        return f"invalid value {value!r} for a {kind} field"
    return text.rsplit("field: ", 1)[-1]


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
