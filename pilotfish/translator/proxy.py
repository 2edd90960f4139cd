"""The proxy being configured: who it is, as far as translation cares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotfish.node_id import parse_node_id

ROUTER = "router"
SIDECAR = "sidecar"


@dataclass(frozen=True)
class Proxy:
    type: str  # ROUTER (ingress/egress gateway) or SIDECAR
    id: str
    ip: str
    name: str  # the pod name
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_node(cls, node_id: str, metadata: Mapping[str, Any]) -> Proxy:
        """Read a proxy from its node ID and metadata, as Istio does.

        Labels come from metadata LABELS; the namespace from metadata NAMESPACE, else
        from the ID. Raises ValueError (with the reason) for a malformed node ID.
        """
        parsed = parse_node_id(node_id)
        labels = metadata.get("LABELS") or {}
        if not isinstance(labels, Mapping):
            raise ValueError("node metadata LABELS must be a map of strings")
        namespace = metadata.get("NAMESPACE") or parsed.namespace
        return cls(
            type=parsed.type,
            id=node_id,
            ip=parsed.ip,
            name=parsed.pod_name,
            namespace=str(namespace),
            labels={str(k): str(v) for k, v in labels.items()},
        )
