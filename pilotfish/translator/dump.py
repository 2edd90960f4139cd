"""A Translation as plain data (YAML-ready): for `pilotfish translate`, golden files and
/debug/config_dump. Key material is redacted here, the one place resources leave as text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from pilotfish.model.errors import ConfigError
from pilotfish.translator.translate import Translation

REDACTED = "[redacted]"
_SECRET_FIELDS = {"private_key", "inline_bytes", "inline_string"}


def message_to_data(message: Message) -> dict[str, Any]:
    # Through JSON text: MessageToDict leaves OrderedDicts for Any fields, which YAML
    # dumpers refuse.
    data: dict[str, Any] = json.loads(
        json_format.MessageToJson(message, preserving_proto_field_name=True)
    )
    return data


def translation_to_data(
    translation: Translation, status: Iterable[ConfigError] = ()
) -> dict[str, Any]:
    return {
        "listeners": [message_to_data(m) for m in translation.listeners],
        "routes": [message_to_data(m) for m in translation.routes],
        "clusters": [message_to_data(m) for m in translation.clusters],
        "endpoints": [message_to_data(m) for m in translation.endpoints],
        "secrets": [redact(message_to_data(m)) for m in translation.secrets],
        "status": [e.to_json() for e in (*status, *translation.status)],
    }


def redact(data: Any) -> Any:
    """Blank every inline key or certificate byte string, wherever it sits."""
    if isinstance(data, dict):
        return {k: (REDACTED if k in _SECRET_FIELDS else redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
