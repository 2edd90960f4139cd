"""The state-of-the-world ADS protocol of one stream, apart from any I/O.

``StreamProtocol`` takes requests and snapshot changes and returns what happened (events):
responses to send, ACKs, NACKs and stale requests to record. The gRPC servicer
(``ads.py``) feeds it, writes the responses in order and logs; the rules themselves
(Envoy's ``api/xds_protocol``) live here, each one next to the code that keeps it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.xds import types
from pilotfish.xds.cache import VersionedSnapshot
from pilotfish.xds.status import NackInfo, SyncStatus, TypeSyncStatus

CONTROL_PLANE_ID = "pilotfish"


@dataclass(frozen=True)
class Send:
    """A response to write, in the order the events come."""

    type_url: str
    version: str
    nonce: str
    names: tuple[str, ...]
    response: discovery_pb2.DiscoveryResponse
    reason: str  # "request" (answering one) or "push" (the snapshot changed)


@dataclass(frozen=True)
class Ack:
    type_url: str
    version: str
    nonce: str


@dataclass(frozen=True)
class Nack:
    type_url: str
    info: NackInfo


@dataclass(frozen=True)
class Stale:
    """A request answering an older response than the latest: ignored entirely."""

    type_url: str
    nonce: str
    latest_nonce: str


@dataclass(frozen=True)
class Unsupported:
    type_url: str


Event = Send | Ack | Nack | Stale | Unsupported


@dataclass
class TypeState:
    """Everything one stream knows about one resource type."""

    type_url: str
    requested: bool = False  # the client asked for this type at least once
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    sent_version: str | None = None
    sent_nonce: str | None = None
    # name -> content hash of what the last response carried; None before the first.
    sent_content: Mapping[str, str] | None = None
    # The client answered sent_nonce (ACK or NACK). Envoy keeps sending that nonce on
    # later subscription changes without error_detail; those are not ACKs.
    nonce_answered: bool = False
    acked_version: str | None = None
    nack: NackInfo | None = None
    nacks: int = 0
    # The last request must get a response even if nothing changed (first request,
    # wildcard added, re-created clusters/listeners waiting for EDS/RDS).
    answer_pending: bool = False
    # Names added since the last response: each must be sent (even if it was sent
    # before) once it exists; one that does not exist yet is sent when it appears.
    added_names: frozenset[str] = frozenset()
    # A response of the type this one depends on (CDS for EDS, LDS for RDS) went out
    # after our last response: Envoy re-created clusters/listeners that stay warming
    # until they get this type again, so answer the next request even if unchanged.
    armed: bool = False

    def status(self) -> TypeSyncStatus:
        if self.sent_version is None:
            status = SyncStatus.NOT_SENT
        elif self.nack is not None and self.nack.nonce == self.sent_nonce:
            status = SyncStatus.ERROR
        elif self.acked_version == self.sent_version:
            status = SyncStatus.SYNCED
        else:
            status = SyncStatus.STALE
        return TypeSyncStatus(
            type_url=self.type_url,
            sent=self.sent_version,
            sent_nonce=self.sent_nonce,
            acked=self.acked_version,
            nack=self.nack,
            nacks=self.nacks,
            status=status,
        )


class StreamProtocol:
    """State-of-the-world ADS for one stream: decides what to send, and when."""

    def __init__(
        self,
        node: base_pb2.Node,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # Only the first request is guaranteed to carry the node: keep that one.
        self.node = node
        self._clock = clock
        self.types: dict[str, TypeState] = {t: TypeState(t) for t in types.PUSH_ORDER}
        self._generation = 0  # of the last snapshot pushed
        self._nonces = itertools.count(1)
        # Random per stream, so a nonce from an earlier stream never matches by chance.
        self._nonce_salt = secrets.token_hex(4)

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest, current: VersionedSnapshot | None
    ) -> list[Event]:
        type_url = str(request.type_url)
        state = self.types.get(type_url)
        if state is None:
            return [Unsupported(type_url)]
        nonce = str(request.response_nonce)
        # Stale: it answers a response we have since superseded, or (no nonce) was sent
        # before the client saw any response of ours. Its names are stale too: the request
        # answering the latest response carries the client's full current set (taking an
        # old set would forget resources the client has, and clusters routes still use).
        # A nonce while we sent nothing of this type comes from an earlier stream: a
        # reconnecting client's first request, to be answered.
        if state.sent_nonce is not None and nonce != state.sent_nonce:
            return [Stale(type_url, nonce, state.sent_nonce)]

        events: list[Event] = []
        # ACK vs NACK is error_detail, not the version: a NACK carries the version the
        # client still runs, which may well differ from what we sent.
        nack = request.HasField("error_detail")
        answering = bool(nonce) and nonce == state.sent_nonce and not state.nonce_answered
        if answering:
            state.nonce_answered = True
            assert state.sent_version is not None
            if nack:
                info = NackInfo(
                    version=state.sent_version,
                    nonce=nonce,
                    message=str(request.error_detail.message),
                    at=self._clock(),
                )
                state.nack = info
                state.nacks += 1
                events.append(Nack(type_url, info))
            else:
                state.acked_version = state.sent_version
                events.append(Ack(type_url, state.sent_version, nonce))

        requested = frozenset(request.resource_names)
        wildcard = type_url in types.WILDCARD_TYPES and (not requested or "*" in requested)
        names = frozenset() if wildcard else requested
        if not state.requested or (wildcard and not state.wildcard):
            state.answer_pending = True
        state.added_names |= names - state.names
        # Re-sending after a NACK would only be NACKed again (the NACK loop of
        # go-control-plane#582): stay armed until a request that is not a NACK.
        if state.armed and not nack:
            state.armed = False
            state.answer_pending = True
        state.requested = True
        state.wildcard = wildcard
        state.names = names

        if current is None:
            return events  # no snapshot for this node yet: answered when one arrives
        if current.generation > self._generation:
            # A newer snapshot not pushed yet: push it (in order, including this type)
            # rather than answer this type alone ahead of e.g. the clusters it needs.
            events.extend(self._push(current, answering=type_url))
        else:
            send = self._maybe_send(state, current, reason="request")
            if send is not None:
                events.append(send)
        return events

    def on_snapshot(self, current: VersionedSnapshot) -> list[Event]:
        """Push what changed, in make-before-break order, for types the client wants."""
        return self._push(current, answering=None)

    def _push(self, current: VersionedSnapshot, answering: str | None) -> list[Event]:
        self._generation = max(self._generation, current.generation)
        events: list[Event] = []
        for type_url in types.PUSH_ORDER:
            state = self.types[type_url]
            if state.requested:
                reason = "request" if type_url == answering else "push"
                send = self._maybe_send(state, current, reason=reason)
                if send is not None:
                    events.append(send)
        return events

    def sync_status(self) -> dict[str, TypeSyncStatus]:
        return {t: s.status() for t, s in self.types.items()}

    def _maybe_send(self, state: TypeState, current: VersionedSnapshot, reason: str) -> Send | None:
        type_url = state.type_url
        snapshot = current.snapshot
        if state.wildcard:
            content = dict(snapshot.resource_hashes(type_url))
        else:
            content = {
                name: digest
                for name in state.names
                if (digest := snapshot.resource_hash(type_url, name)) is not None
            }
        # Compare what this stream would get, not the type's version: a new EDS version
        # caused by a cluster this proxy does not watch is not worth a response. After a
        # NACK, sent_content is the rejected content, so it is not sent again unchanged.
        sent = state.sent_content
        if sent is None:
            changed = True
        elif type_url in types.WILDCARD_TYPES:
            changed = content != sent  # full state: a removal is news too
        else:
            # Per name: a name dropped from the subscription or the snapshot needs no
            # response (absence deletes nothing in RDS/EDS/SDS).
            changed = any(sent.get(name) != digest for name, digest in content.items())
        due = state.answer_pending or changed or not state.added_names.isdisjoint(content)
        if not due:
            return None
        if not content and type_url not in types.WILDCARD_TYPES:
            # Absence means nothing for RDS/EDS/SDS; wait until a subscribed name exists.
            return None
        version = current.version(type_url)
        nonce = f"{next(self._nonces)}-{self._nonce_salt}"
        names = tuple(sorted(content))
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[
                any_pb2.Any(type_url=type_url, value=snapshot.serialized(type_url, n))
                for n in names
            ],
            control_plane=base_pb2.ControlPlane(identifier=CONTROL_PLANE_ID),
        )
        state.sent_version = version
        state.sent_nonce = nonce
        state.sent_content = content
        state.nonce_answered = False
        state.answer_pending = False
        state.added_names = frozenset()
        state.armed = False
        for dependent, parent in types.DEPENDS_ON.items():
            if parent == type_url:
                self.types[dependent].armed = True
        return Send(type_url, version, nonce, names, response, reason)
