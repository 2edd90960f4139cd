"""What each connected proxy has been sent, has accepted and has rejected (proxy-status).

NACKs are otherwise invisible (istio#30498): Envoy keeps serving its last good config,
so this is where an operator sees that a push was rejected, and why.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pilotfish.xds import types


class SyncStatus(enum.StrEnum):
    SYNCED = "SYNCED"  # the proxy ACKed the version last sent
    STALE = "STALE"  # sent, no ACK yet (or the ACK is for an older version)
    # The proxy ACKed what was sent, but part of the snapshot is held back for push order
    # (a route waiting for its cluster to warm, a cluster kept until no route uses it).
    HELD = "HELD"
    NOT_SENT = "NOT SENT"  # nothing of this type sent on this stream
    ERROR = "ERROR"  # the proxy NACKed the last response


@dataclass(frozen=True)
class NackInfo:
    """One rejected response: Envoy keeps its previous config of that type."""

    version: str
    nonce: str
    message: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "nonce": self.nonce,
            "message": self.message,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class TypeSyncStatus:
    type_url: str
    sent: str | None  # version of the last response
    sent_nonce: str | None
    acked: str | None  # version of the last ACKed response
    nack: NackInfo | None  # the last NACK on this stream, even if later versions were ACKed
    nacks: int  # NACKs on this stream
    status: SyncStatus

    def to_json(self) -> dict[str, Any]:
        return {
            "type_url": self.type_url,
            "status": str(self.status),
            "sent": self.sent,
            "sent_nonce": self.sent_nonce,
            "acked": self.acked,
            "nack": self.nack.to_json() if self.nack else None,
            "nacks": self.nacks,
        }


@dataclass(frozen=True)
class HeldResource:
    """A route configuration or listener whose new version waits for clusters to warm."""

    type_url: str
    name: str
    waiting_for: tuple[str, ...]  # clusters the proxy has not ACKed in CDS yet
    since: datetime
    # The proxy keeps running its previous version; False: it has none yet (not sent).
    previous: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "type": types.short_name(self.type_url),
            "name": self.name,
            "waiting_for": list(self.waiting_for),
            "since": self.since.isoformat(),
            "proxy_runs": "previous version" if self.previous else "nothing yet",
        }


@dataclass(frozen=True)
class KeptCluster:
    """A cluster the snapshot dropped, still sent while the proxy may route to it."""

    name: str
    used_by: tuple[str, ...]  # "rds/<name>", "lds/<name>": versions not yet ACKed away
    since: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "until_acked": list(self.used_by),
            "since": self.since.isoformat(),
        }


@dataclass(frozen=True)
class ProxySyncStatus:
    """One ADS stream. A proxy that reconnected shows up once per live stream."""

    node_id: str
    connection_id: str
    connected_since: datetime
    types: Mapping[str, TypeSyncStatus]  # by type URL, in PUSH_ORDER
    # Push ordering in progress (ordering.py): what the proxy does not get yet, and why.
    held: tuple[HeldResource, ...] = ()
    kept: tuple[KeptCluster, ...] = ()
    # "sotw" (StreamAggregatedResources) or "delta" (DeltaAggregatedResources). On a delta
    # stream a type's version is the cache's type version of its last response, with
    # "+held.<hash>" while push ordering holds something back (xds/delta.py).
    xds_protocol: str = "sotw"

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "connection_id": self.connection_id,
            "connected_since": self.connected_since.isoformat(),
            "xds_protocol": self.xds_protocol,
            "types": {types.short_name(t): s.to_json() for t, s in self.types.items()},
            "held": [h.to_json() for h in self.held],
            "kept": [k.to_json() for k in self.kept],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
