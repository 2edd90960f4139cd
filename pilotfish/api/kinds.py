"""Istio kinds pilotfish understands, and the message class that parses each one's ``spec``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from pilotfish.api.durations import normalize_durations
from pilotfish.api.networking.v1alpha3.destination_rule_pb2 import DestinationRule
from pilotfish.api.networking.v1alpha3.gateway_pb2 import Gateway
from pilotfish.api.networking.v1alpha3.service_entry_pb2 import ServiceEntry
from pilotfish.api.networking.v1alpha3.sidecar_pb2 import Sidecar
from pilotfish.api.networking.v1alpha3.virtual_service_pb2 import VirtualService
from pilotfish.api.networking.v1alpha3.workload_entry_pb2 import WorkloadEntry

# The apiVersions under which Istio serves these kinds; all three share one schema.
API_VERSIONS: tuple[str, ...] = (
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
)

# Kind name -> the message its `spec:` is parsed into (json_format.ParseDict).
SPEC_TYPES: dict[str, type[Message]] = {
    "Gateway": Gateway,
    "VirtualService": VirtualService,
    "DestinationRule": DestinationRule,
    "ServiceEntry": ServiceEntry,
    "Sidecar": Sidecar,
    "WorkloadEntry": WorkloadEntry,
}


def parse_spec(kind: str, spec: Mapping[str, Any]) -> Message:
    """Parse a ``spec:`` mapping (its YAML, loaded) into the kind's message, strictly.

    This is ``json_format.ParseDict`` after :func:`normalize_durations`, so Go-style
    durations (``5m``, ``30ms``), which Istio accepts, parse too. Raises
    ``json_format.ParseError`` (naming the field) for unknown or mistyped fields, and
    ``KeyError`` for a kind not in :data:`SPEC_TYPES`.
    """
    message_type = SPEC_TYPES[kind]
    normalized = normalize_durations(dict(spec), message_type)
    return json_format.ParseDict(normalized, message_type())


__all__ = [
    "API_VERSIONS",
    "SPEC_TYPES",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "VirtualService",
    "WorkloadEntry",
    "parse_spec",
]
