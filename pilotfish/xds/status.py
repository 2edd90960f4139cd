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
class ProxySyncStatus:
    """One ADS stream. A proxy that reconnected shows up once per live stream."""

    node_id: str
    connection_id: str
    connected_since: datetime
    types: Mapping[str, TypeSyncStatus]  # by type URL, in PUSH_ORDER

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "connection_id": self.connection_id,
            "connected_since": self.connected_since.isoformat(),
            "types": {types.short_name(t): s.to_json() for t, s in self.types.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
