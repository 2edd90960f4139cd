"""Envoy's own constraints on its API, checked in Python before a resource is sent.

Envoy's protos carry their constraints as protoc-gen-validate annotations
(``(validate.rules)`` on fields, ``(validate.required)`` on oneofs), and Envoy rejects a
resource that breaks one with "Proto constraint validation failed". ``xds-protos`` ships
the annotated descriptors, so :func:`check` walks them: every field of the message and,
recursively, of its sub-messages, repeated and map entries, and the messages inside
``google.protobuf.Any`` whose type is known here (``typed_config`` of filters and
transport sockets: Envoy validates those when it instantiates the extension).

Why a walker of our own: the PyPI ``protoc-gen-validate`` (1.3.3) generates its checks
from ``FieldDescriptor.label``, which protobuf 7's runtime no longer has (it fails on
every message), and it does not look inside ``Any``; ``protovalidate`` reads
``buf.validate`` annotations, which Envoy's protos do not carry.

Beyond the annotations, Envoy refuses any negative or out-of-range
``google.protobuf.Duration`` anywhere in a config (its ``validateDurationFields``): so
does this. Rules that depend on the clock (timestamp ``lt_now``/``gt_now``/``within``)
are not checked; Envoy's API does not use them.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import re2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from validate import validate_pb2

_ANY = "google.protobuf.Any"
_DURATION = "google.protobuf.Duration"
_TIMESTAMP = "google.protobuf.Timestamp"
_WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_MAX_DURATION_SECONDS = 315_576_000_000  # protobuf's limit: 10,000 years
_NUMERIC = frozenset(
    (
        "float",
        "double",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
    )
)
# protoc-gen-validate's well-known header regexes (the same in its Go, C++ and Python).
_HEADER_REGEX = {
    validate_pb2.HTTP_HEADER_NAME: r"^:?[0-9a-zA-Z!#$%&'*+-.^_|~`]+$",
    validate_pb2.HTTP_HEADER_VALUE: r"^[^\x00-\x08\x0A-\x1F\x7F]*$",
}
_HEADER_STRING = r"^[^\x00\x0A\x0D]*$"  # what strict: false allows, names and values alike
# The same three with Python's re, whole-string (fullmatch: re's `$` would also match
# before a final newline, RE2's does not). For these ASCII character classes both
# engines agree (tests/test_xds_pgv.py checks it); they are matched once per string of
# every route and listener, and google-re2's binding releases and re-takes the GIL on
# each call, which keeps a waiting event loop from getting it for 100s of milliseconds.
_HEADER_FULLMATCH = {
    pattern: re.compile(pattern.removeprefix("^").removesuffix("$")).fullmatch
    for pattern in (*_HEADER_REGEX.values(), _HEADER_STRING)
}
_HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class Violation:
    """One broken constraint: where in the resource (proto field names, ``[i]`` for list
    items, ``["k"]`` for map keys), and what Envoy requires there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def check(message: Message) -> list[Violation]:
    """Every constraint ``message`` breaks; empty when Envoy's validation would pass."""
    out: list[Violation] = []
    _message(message, "", out)
    return out


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What to check on every message of one type, worked out once per type."""

    skip: bool
    ruled: tuple[tuple[FieldDescriptor, validate_pb2.FieldRules], ...]
    required_oneofs: tuple[str, ...]


@functools.cache
def _plan(descriptor: Descriptor) -> _Plan:
    options = descriptor.GetOptions()
    skip = bool(
        options.Extensions[validate_pb2.disabled] or options.Extensions[validate_pb2.ignored]
    )
    ruled = tuple(
        (f, f.GetOptions().Extensions[validate_pb2.rules])
        for f in descriptor.fields
        if f.GetOptions().HasExtension(validate_pb2.rules)
    )
    required = tuple(
        o.name for o in descriptor.oneofs if o.GetOptions().Extensions[validate_pb2.required]
    )
    return _Plan(skip, ruled, required)


def _message(message: Message, path: str, out: list[Violation]) -> None:
    descriptor = message.DESCRIPTOR
    name = descriptor.full_name
    if name == _DURATION:
        _duration_is_valid(message, path, out)
        return
    if name == _ANY:
        inner = _unpack(message, path, out)
        if inner is not None:
            _message(inner, path, out)
        return
    plan = _plan(descriptor)
    if plan.skip:
        return
    for oneof in plan.required_oneofs:
        if message.WhichOneof(oneof) is None:
            out.append(Violation(_join(path, oneof), "exactly one field is required"))
    skipped: set[str] = set()
    for field, rules in plan.ruled:
        if (
            field.containing_oneof is not None
            and message.WhichOneof(field.containing_oneof.name) != field.name
        ):
            continue  # rules of a oneof member hold only when it is the one set
        if rules.HasField("message") and rules.message.skip:
            skipped.add(field.name)
        _field(message, field, rules, _join(path, field.name), out)
    # Recurse into every sub-message that is set (annotated or not).
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skipped:
            continue
        where = _join(path, field.name)
        if _is_map(field):
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key in sorted(value):
                    _message(value[key], f"{where}[{key!r}]", out)
        elif field.is_repeated:
            for i, item in enumerate(value):
                _message(item, f"{where}[{i}]", out)
        else:
            _message(value, where, out)


def _unpack(packed: Any, path: str, out: list[Violation]) -> Message | None:
    """The message inside an Any, if its type is known to this process; else None."""
    type_name = packed.type_url.rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        return None  # an extension this process never loaded: not ours to judge
    inner: Message = message_factory.GetMessageClass(descriptor)()
    try:
        inner.ParseFromString(packed.value)
    except DecodeError as exc:
        out.append(Violation(path, f"cannot decode {type_name}: {exc}"))
        return None
    return inner


def _duration_is_valid(d: Any, path: str, out: list[Violation]) -> None:
    if d.seconds < 0 or d.nanos < 0:
        out.append(Violation(path, f"must not be negative (got {_dur_text(d)})"))
    elif d.seconds > _MAX_DURATION_SECONDS or d.nanos > 999_999_999:
        out.append(Violation(path, f"is out of range (got {_dur_text(d)})"))


# --- fields ---------------------------------------------------------------------------


def _field(
    message: Message,
    field: FieldDescriptor,
    rules: validate_pb2.FieldRules,
    path: str,
    out: list[Violation],
) -> None:
    value = getattr(message, field.name)
    kind = rules.WhichOneof("type")
    if _is_map(field):
        if kind == "map":
            _map(value, field, rules.map, path, out)
        return
    if field.is_repeated:
        if kind == "repeated":
            _repeated(list(value), field, rules.repeated, path, out)
        return
    if field.message_type is not None:
        present = message.HasField(field.name)
        required = rules.HasField("message") and rules.message.required
        if kind in ("duration", "timestamp", "any"):
            required = required or getattr(rules, kind).required
        if not present:
            if required:
                out.append(Violation(path, "is required"))
            return
        if field.message_type.full_name in _WRAPPERS:
            value = value.value
    if kind is not None:
        _value(value, field, rules, path, out)


def _value(
    value: Any,
    field: FieldDescriptor,
    rules: validate_pb2.FieldRules,
    path: str,
    out: list[Violation],
) -> None:
    """Rules of one value: a scalar, a wrapper's value, a Duration, an Any, a list item."""
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    typed = getattr(rules, kind)
    problems: Iterable[str]
    if kind in _NUMERIC:
        problems = _numeric(value, typed, str)
    elif kind == "bool":
        problems = (
            [f"must equal {typed.const}"]
            if typed.HasField("const") and value != typed.const
            else []
        )
    elif kind == "string":
        problems = _string(value, typed)
    elif kind == "bytes":
        problems = _bytes(value, typed)
    elif kind == "enum":
        problems = _enum(value, field, typed)
    elif kind == "duration":
        problems = _numeric(_nanos(value), typed, _nanos_text, convert=_nanos)
    elif kind == "timestamp":
        # lt_now / gt_now / within depend on the clock: not checked (see the module doc).
        problems = _numeric(_nanos(value), typed, lambda n: f"{n}ns", convert=_nanos)
    elif kind == "any":
        problems = _any(value, typed)
    else:
        problems = []  # repeated/map rules on a single value: nothing to say
    out.extend(Violation(path, p) for p in problems)


def _repeated(
    items: list[Any],
    field: FieldDescriptor,
    rules: validate_pb2.RepeatedRules,
    path: str,
    out: list[Violation],
) -> None:
    if rules.ignore_empty and not items:
        return
    if rules.HasField("min_items") and len(items) < rules.min_items:
        out.append(Violation(path, f"must have at least {rules.min_items} item(s)"))
    if rules.HasField("max_items") and len(items) > rules.max_items:
        out.append(Violation(path, f"must have at most {rules.max_items} item(s)"))
    if rules.unique and field.message_type is None and len(set(items)) != len(items):
        out.append(Violation(path, "items must be unique"))
    if rules.HasField("items"):
        for i, item in enumerate(items):
            _item(item, field, rules.items, f"{path}[{i}]", out)


def _map(
    value: Any,
    field: FieldDescriptor,
    rules: validate_pb2.MapRules,
    path: str,
    out: list[Violation],
) -> None:
    if rules.ignore_empty and not value:
        return
    if rules.HasField("min_pairs") and len(value) < rules.min_pairs:
        out.append(Violation(path, f"must have at least {rules.min_pairs} pair(s)"))
    if rules.HasField("max_pairs") and len(value) > rules.max_pairs:
        out.append(Violation(path, f"must have at most {rules.max_pairs} pair(s)"))
    entry = field.message_type
    assert entry is not None  # a map field's type is its entry message
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    for key in sorted(value):
        where = f"{path}[{key!r}]"
        if rules.HasField("keys"):
            _item(key, key_field, rules.keys, f"{where} (key)", out)
        if rules.HasField("values"):
            _item(value[key], value_field, rules.values, where, out)


def _item(
    item: Any,
    field: FieldDescriptor,
    rules: validate_pb2.FieldRules,
    path: str,
    out: list[Violation],
) -> None:
    """The rules of one list item or map key/value (its sub-messages recurse elsewhere)."""
    if field.message_type is not None and field.message_type.full_name in _WRAPPERS:
        item = item.value
    _value(item, field, rules, path, out)


# --- rule kinds -----------------------------------------------------------------------


def _numeric(
    value: Any,
    rules: Any,
    text: Callable[[Any], str],
    *,
    convert: Callable[[Any], Any] = lambda v: v,
) -> list[str]:
    """const / lt / lte / gt / gte / in / not_in, as protoc-gen-validate reads them: with a
    lower bound above the upper bound, the range is exclusive (outside both)."""
    has = rules.HasField

    def bound(name: str) -> Any:
        return convert(getattr(rules, name))

    if "ignore_empty" in rules.DESCRIPTOR.fields_by_name and rules.ignore_empty and not value:
        return []
    if has("const") and value != bound("const"):
        return [f"must equal {text(bound('const'))}"]
    low = ("gt", bound("gt")) if has("gt") else ("gte", bound("gte")) if has("gte") else None
    high = ("lt", bound("lt")) if has("lt") else ("lte", bound("lte")) if has("lte") else None
    low_ok = low is None or (value > low[1] if low[0] == "gt" else value >= low[1])
    high_ok = high is None or (value < high[1] if high[0] == "lt" else value <= high[1])
    words = {"gt": "greater than", "gte": "at least", "lt": "less than", "lte": "at most"}
    problems = []
    if low is not None and high is not None and high[1] < low[1]:
        if not (low_ok or high_ok):
            problems.append(
                f"must be {words[high[0]]} {text(high[1])} or {words[low[0]]} {text(low[1])}"
            )
    else:
        if not low_ok:
            assert low is not None
            problems.append(f"must be {words[low[0]]} {text(low[1])}")
        if not high_ok:
            assert high is not None
            problems.append(f"must be {words[high[0]]} {text(high[1])}")
    allowed = [convert(v) for v in getattr(rules, "in", ())]
    if allowed and value not in allowed:
        problems.append(f"must be one of {', '.join(text(v) for v in allowed)}")
    denied = [convert(v) for v in getattr(rules, "not_in", ())]
    if value in denied:
        problems.append(f"must not be {text(value)}")
    return problems


def _string(value: str, rules: validate_pb2.StringRules) -> list[str]:
    if rules.ignore_empty and not value:
        return []
    has = rules.HasField
    chars, size = len(value), len(value.encode())
    checks: list[tuple[bool, str]] = [
        (has("const") and value != rules.const, f"must equal {rules.const!r}"),
        (has("len") and chars != rules.len, f"must be {rules.len} characters long"),
        (
            has("min_len") and chars < rules.min_len,
            f"must be at least {rules.min_len} characters long",
        ),
        (
            has("max_len") and chars > rules.max_len,
            f"must be at most {rules.max_len} characters long",
        ),
        (has("len_bytes") and size != rules.len_bytes, f"must be {rules.len_bytes} bytes long"),
        (
            has("min_bytes") and size < rules.min_bytes,
            f"must be at least {rules.min_bytes} bytes long",
        ),
        (
            has("max_bytes") and size > rules.max_bytes,
            f"must be at most {rules.max_bytes} bytes long",
        ),
        (has("prefix") and not value.startswith(rules.prefix), f"must start with {rules.prefix!r}"),
        (has("suffix") and not value.endswith(rules.suffix), f"must end with {rules.suffix!r}"),
        (has("contains") and rules.contains not in value, f"must contain {rules.contains!r}"),
        (
            has("not_contains") and rules.not_contains in value,
            f"must not contain {rules.not_contains!r}",
        ),
        (
            bool(getattr(rules, "in")) and value not in getattr(rules, "in"),
            f"must be one of {list(getattr(rules, 'in'))}",
        ),
        (value in rules.not_in, f"must not be {value!r}"),
    ]
    problems = [message for failed, message in checks if failed]
    if has("pattern") and not _matches(rules.pattern, value):
        problems.append(f"must match the pattern {rules.pattern!r}")
    well_known = rules.WhichOneof("well_known")
    if well_known == "well_known_regex":
        pattern = _HEADER_REGEX.get(rules.well_known_regex) if rules.strict else _HEADER_STRING
        if pattern and not _HEADER_FULLMATCH[pattern](value):
            what = {
                validate_pb2.HTTP_HEADER_NAME: "a valid HTTP header name",
                validate_pb2.HTTP_HEADER_VALUE: "a valid HTTP header value",
            }[rules.well_known_regex]
            problems.append(f"must be {what} (got {value!r})")
    elif (
        well_known is not None and getattr(rules, well_known) and not _WELL_KNOWN[well_known](value)
    ):
        problems.append(f"must be a valid {well_known.replace('_', ' ')} (got {value!r})")
    return problems


def _bytes(value: bytes, rules: validate_pb2.BytesRules) -> list[str]:
    if rules.ignore_empty and not value:
        return []
    has = rules.HasField
    checks: list[tuple[bool, str]] = [
        (has("const") and value != rules.const, "must equal the constant"),
        (has("len") and len(value) != rules.len, f"must be {rules.len} bytes long"),
        (
            has("min_len") and len(value) < rules.min_len,
            f"must be at least {rules.min_len} bytes long",
        ),
        (
            has("max_len") and len(value) > rules.max_len,
            f"must be at most {rules.max_len} bytes long",
        ),
        (has("prefix") and not value.startswith(rules.prefix), "has the wrong prefix"),
        (has("suffix") and not value.endswith(rules.suffix), "has the wrong suffix"),
        (has("contains") and rules.contains not in value, "lacks the required content"),
        (
            bool(getattr(rules, "in")) and value not in getattr(rules, "in"),
            "is not an allowed value",
        ),
        (value in rules.not_in, "is a forbidden value"),
        (rules.ip and len(value) not in (4, 16), "must be an IP address (4 or 16 bytes)"),
        (rules.ipv4 and len(value) != 4, "must be an IPv4 address (4 bytes)"),
        (rules.ipv6 and len(value) != 16, "must be an IPv6 address (16 bytes)"),
    ]
    problems = [message for failed, message in checks if failed]
    if has("pattern") and not _matches(rules.pattern, value.decode("latin-1")):
        problems.append(f"must match the pattern {rules.pattern!r}")
    return problems


def _enum(value: int, field: FieldDescriptor, rules: validate_pb2.EnumRules) -> list[str]:
    enum = field.enum_type
    assert enum is not None
    problems = []
    if rules.HasField("const") and value != rules.const:
        problems.append(f"must be {enum.values_by_number[rules.const].name}")
    if rules.defined_only and value not in enum.values_by_number:
        problems.append(f"must be one of the values of {enum.name} (got {value})")
    allowed = list(getattr(rules, "in"))
    if allowed and value not in allowed:
        problems.append(f"must be one of {allowed}")
    if value in rules.not_in:
        problems.append(f"must not be {value}")
    return problems


def _any(value: Any, rules: validate_pb2.AnyRules) -> list[str]:
    allowed = list(getattr(rules, "in"))
    if allowed and value.type_url not in allowed:
        return [f"type must be one of {allowed}"]
    if value.type_url in rules.not_in:
        return [f"type must not be {value.type_url}"]
    return []


# --- helpers --------------------------------------------------------------------------


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        field.is_repeated and field.message_type and field.message_type.GetOptions().map_entry
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _nanos(d: Any) -> int:
    return int(d.seconds) * 1_000_000_000 + int(d.nanos)


def _nanos_text(nanos: int) -> str:
    seconds, rest = divmod(abs(nanos), 1_000_000_000)
    sign = "-" if nanos < 0 else ""
    return f"{sign}{seconds}.{rest:09d}".rstrip("0").rstrip(".") + "s"


def _dur_text(d: Any) -> str:
    return _nanos_text(_nanos(d))


@functools.cache
def _compiled(pattern: str) -> Any:
    # RE2, the engine protoc-gen-validate's C++ (Envoy's) checks patterns with.
    return re2.compile(pattern)


def _matches(pattern: str, value: str) -> bool:
    return _compiled(pattern).search(value) is not None


def _is_hostname(value: str) -> bool:
    host = value[:-1] if value.endswith(".") else value
    return 0 < len(host) <= 253 and all(_HOSTNAME_LABEL.match(p) for p in host.split("."))


def _is_ip(value: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _is_uri(value: str, *, absolute: bool) -> bool:
    try:
        parsed = urlparse(value)
    except ValueError:
        return False
    return bool(parsed.scheme) or not absolute


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


_WELL_KNOWN: dict[str, Callable[[str], bool]] = {
    "email": lambda v: bool(_EMAIL.match(v)) and _is_hostname(v.rpartition("@")[2]),
    "hostname": _is_hostname,
    "ip": _is_ip,
    "ipv4": lambda v: _is_ip(v, 4),
    "ipv6": lambda v: _is_ip(v, 6),
    "address": lambda v: _is_ip(v) or _is_hostname(v),
    "uri": lambda v: _is_uri(v, absolute=True),
    "uri_ref": lambda v: _is_uri(v, absolute=False),
    "uuid": _is_uuid,
}
