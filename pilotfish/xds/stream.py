"""The state-of-the-world ADS protocol of one stream, apart from any I/O.

``StreamProtocol`` takes requests and snapshot changes and returns what happened (events):
responses to send, ACKs, NACKs and stale requests to record. The gRPC servicer
(``ads.py``) feeds it, writes the responses in order and logs; the rules themselves
(Envoy's ``api/xds_protocol``) live here, each one next to the code that keeps it.
Push ordering between clusters and the routes using them (``ordering.py``) is applied
per stream: what this stream's proxy has ACKed decides what it may be sent next.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.xds import ordering, types
from pilotfish.xds.cache import VersionedSnapshot
from pilotfish.xds.snapshot import Entry, Snapshot
from pilotfish.xds.status import (
    HeldResource,
    KeptCluster,
    NackInfo,
    SyncStatus,
    TypeSyncStatus,
)

CONTROL_PLANE_ID = "pilotfish"


@dataclass(frozen=True)
class Send:
    """A response to write, in the order the events come."""

    type_url: str
    version: str
    nonce: str
    names: tuple[str, ...]  # the resources it carries
    response: discovery_pb2.DiscoveryResponse | discovery_pb2.DeltaDiscoveryResponse
    reason: str  # "request" (answering one) or "push" (the snapshot changed)
    removed: tuple[str, ...] = ()  # delta only: names it tells the client are gone


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


@dataclass(frozen=True)
class Held:
    """A route configuration or listener starts waiting for clusters to warm."""

    type_url: str
    name: str
    waiting_for: tuple[str, ...]
    previous: bool  # the proxy keeps its previous version meanwhile


@dataclass(frozen=True)
class Kept:
    """A cluster the snapshot dropped stays until the proxy stops routing to it."""

    name: str
    used_by: tuple[str, ...]


@dataclass(frozen=True)
class Released:
    """A hold or keep ended: the resource went out (or away), or is no longer wanted."""

    type_url: str
    name: str
    since: datetime


Event = Send | Ack | Nack | Stale | Unsupported | Held | Kept | Released


@dataclass
class SyncState:
    """What the sync status of one type on one stream is made of (both protocols)."""

    type_url: str
    sent_version: str | None = None
    sent_nonce: str | None = None
    acked_version: str | None = None
    nack: NackInfo | None = None
    nacks: int = 0
    # Push ordering now: resources held back (routing types), clusters kept (CDS).
    held: dict[str, HeldResource] = field(default_factory=dict)
    kept: dict[str, KeptCluster] = field(default_factory=dict)
    # What the proxy should have now is not the snapshot's (held, kept, or the endpoints
    # of a kept cluster): responses carry a version of their own, the status says HELD.
    deviates: bool = False

    def status(self) -> TypeSyncStatus:
        if self.sent_version is None:
            status = SyncStatus.NOT_SENT
        elif self.nack is not None and self.nack.nonce == self.sent_nonce:
            status = SyncStatus.ERROR
        elif self.acked_version != self.sent_version:
            status = SyncStatus.STALE
        elif self.deviates:
            status = SyncStatus.HELD
        else:
            status = SyncStatus.SYNCED
        return TypeSyncStatus(
            type_url=self.type_url,
            sent=self.sent_version,
            sent_nonce=self.sent_nonce,
            acked=self.acked_version,
            nack=self.nack,
            nacks=self.nacks,
            status=status,
        )


@dataclass
class TypeState(SyncState):
    """Everything one state-of-the-world stream knows about one resource type."""

    requested: bool = False  # the client asked for this type at least once
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    # name -> what the last response carried; None before the first.
    sent_content: Mapping[str, Entry] | None = None
    # The client answered sent_nonce (ACK or NACK). Envoy keeps sending that nonce on
    # later subscription changes without error_detail; those are not ACKs.
    nonce_answered: bool = False
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
    # What the proxy has once it applied every response sent: the last one for wildcard
    # types; for the others each name still subscribed, as last sent (absence keeps).
    have: dict[str, Entry] = field(default_factory=dict)
    # Routing types: the versions of each resource the proxy may run, the ACKed one and
    # every one sent since (a NACKed response may be applied in part). No cluster one of
    # them routes to is removed from under it.
    in_use: dict[str, tuple[Entry, ...]] = field(default_factory=dict)


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
        # Clusters the proxy has warm, as far as its answers tell: those of the last CDS
        # response it ACKed (Envoy ACKs CDS only once what it added is warm), less any a
        # later response removed. Routes wait for clusters not in here.
        self.ready: frozenset[str] = frozenset()
        self._cds_acked = False  # any CDS ACK on this stream yet
        self._pending: tuple[Snapshot, frozenset[str], frozenset[str]] | None = None
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
                self._nacked(state)
                events.append(Nack(type_url, info))
            else:
                state.acked_version = state.sent_version
                self._acked(state)
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
        if not wildcard:
            # An unsubscribed name is dropped by the proxy: it routes nowhere through it.
            for gone in [n for n in state.have if n not in names]:
                del state.have[gone]
                state.in_use.pop(gone, None)

        if current is None:
            return events  # no snapshot for this node yet: answered when one arrives
        if current.generation > self._generation or self._ordering():
            # A newer snapshot not pushed yet: push it (in order, including this type)
            # rather than answer this type alone ahead of e.g. the clusters it needs.
            # While pushes are ordered, any answer may release a hold or a kept cluster.
            events.extend(self._push(current, answering=type_url))
        else:
            events.extend(self._maybe_send(state, current, reason="request"))
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
                events.extend(self._maybe_send(state, current, reason=reason))
        return events

    def sync_status(self) -> dict[str, TypeSyncStatus]:
        return {t: s.status() for t, s in self.types.items()}

    def held(self) -> tuple[HeldResource, ...]:
        """Route configurations and listeners held back now, in push order then name."""
        return tuple(h for s in self.types.values() for _, h in sorted(s.held.items()))

    def kept(self) -> tuple[KeptCluster, ...]:
        """Clusters kept for routes that may still use them, by name."""
        return tuple(k for _, k in sorted(self.types[types.CLUSTER].kept.items()))

    # --- push ordering -----------------------------------------------------------------

    def _ordering(self) -> bool:
        return any(s.held or s.kept for s in self.types.values())

    def _acked(self, state: TypeState) -> None:
        if state.type_url in ordering.ROUTING_TYPES:
            # The proxy runs what it was last sent (for named types: what it still has).
            state.in_use = {n: (e,) for n, e in state.have.items()}
        elif state.type_url == types.CLUSTER:
            self.ready = frozenset(state.have)
            self._cds_acked = True

    def _nacked(self, state: TypeState) -> None:
        # After a NACK the proxy may run any mix of what it had and what it rejected, so
        # in_use keeps both, and a cluster the rejected CDS added is not known warm: held
        # routes stay held until a CDS ACK. Except before this stream's first CDS ACK:
        # then Envoy is starting, and it asks for listeners only once whatever clusters it
        # accepted are warm; holding would leave it with no routes at all.
        if state.type_url == types.CLUSTER and not self._cds_acked:
            self.ready = frozenset(state.have)

    def _pending_clusters(self, snapshot: Snapshot) -> frozenset[str]:
        if not self.types[types.CLUSTER].requested:
            return frozenset()  # its clusters come from elsewhere: nothing to wait for
        cached = self._pending
        if cached is not None and cached[0] is snapshot and cached[1] is self.ready:
            return cached[2]
        pending = ordering.pending_clusters(snapshot.entries(types.CLUSTER), self.ready)
        self._pending = (snapshot, self.ready, pending)
        return pending

    def _content(
        self, state: TypeState, snapshot: Snapshot
    ) -> tuple[dict[str, Entry] | None, list[Event]]:
        """What this stream should have of the type now: the snapshot's resources it asked
        for, in push order (held, kept). None: not even a first response may go yet."""
        content, events, state.deviates = self._ordered_content(state, snapshot)
        return content, events

    def _ordered_content(
        self, state: TypeState, snapshot: Snapshot
    ) -> tuple[dict[str, Entry] | None, list[Event], bool]:
        type_url = state.type_url
        desired: Mapping[str, Entry]
        if state.wildcard:
            desired = snapshot.entries(type_url)
        else:
            desired = {
                name: entry
                for name in state.names
                if (entry := snapshot.entry(type_url, name)) is not None
            }
        if type_url in ordering.ROUTING_TYPES:
            pending = self._pending_clusters(snapshot)
            if not pending and not state.held:
                return dict(desired), [], False
            content, held = ordering.hold_back(desired, state.have, pending)
            events = track_held(state, held, state.have, self._clock)
            if (
                type_url in types.WILDCARD_TYPES
                and state.sent_content is None
                and any(name not in content for name in held)
            ):
                # A first full state without a held listener would delete the one the
                # proxy may have from an earlier stream: wait for the CDS ACK instead.
                return None, events, True
            return content, events, bool(held)
        if type_url == types.CLUSTER:
            removed = {n: e for n, e in state.have.items() if n not in desired}
            if not removed and not state.kept:
                return dict(desired), [], False
            in_use = {t: self.types[t].in_use for t in ordering.ROUTING_TYPES}
            endpoints_sent = self.types[types.ENDPOINT].have.keys()
            kept = ordering.kept_clusters(removed, in_use, snapshot, endpoints_sent)
            content = dict(desired)
            content.update((name, state.have[name]) for name in kept)
            return content, track_kept(state, kept, self._clock), bool(kept)
        if type_url == types.ENDPOINT and (kept_clusters := self.types[types.CLUSTER].kept):
            # A kept cluster may be warming (it changed just before it was dropped): it
            # keeps getting its last endpoints, or it would warm forever.
            clusters = self.types[types.CLUSTER].have
            content = dict(desired)
            for name in ordering.kept_endpoints(clusters[c] for c in kept_clusters):
                if name in state.names and name not in content and name in state.have:
                    content[name] = state.have[name]
            return content, [], len(content) > len(desired)
        return dict(desired), [], False

    def _maybe_send(self, state: TypeState, current: VersionedSnapshot, reason: str) -> list[Event]:
        type_url = state.type_url
        content, events = self._content(state, current.snapshot)
        if content is None:
            return events
        # Compare what this stream would get, not the type's version: a new EDS version
        # caused by a cluster this proxy does not watch is not worth a response. After a
        # NACK, sent_content is the rejected content, so it is not sent again unchanged.
        sent = state.sent_content
        if sent is None:
            changed = True
        elif type_url in types.WILDCARD_TYPES:
            # Full state: a removal is news too.
            changed = sent.keys() != content.keys() or any(
                sent[name].digest != entry.digest for name, entry in content.items()
            )
        else:
            # Per name: a name dropped from the subscription or the snapshot needs no
            # response (absence deletes nothing in RDS/EDS/SDS).
            changed = any(
                (before := sent.get(name)) is None or before.digest != entry.digest
                for name, entry in content.items()
            )
        due = state.answer_pending or changed or not state.added_names.isdisjoint(content)
        if not due:
            return events
        if not content and type_url not in types.WILDCARD_TYPES:
            # Absence means nothing for RDS/EDS/SDS; wait until a subscribed name exists.
            return events
        version = current.version(type_url)
        if state.deviates:
            # Not the snapshot's content: a version of its own, so an ACK of this one is
            # never taken for an ACK of the snapshot's (and the same content, the same one).
            digests = {n: e.digest for n, e in content.items()}
            version = f"{version}+held.{content_digest(digests)[:8]}"
        nonce = f"{next(self._nonces)}-{self._nonce_salt}"
        names = tuple(sorted(content))
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[any_pb2.Any(type_url=type_url, value=content[n].data) for n in names],
            control_plane=base_pb2.ControlPlane(identifier=CONTROL_PLANE_ID),
        )
        state.sent_version = version
        state.sent_nonce = nonce
        state.sent_content = content
        state.nonce_answered = False
        state.answer_pending = False
        state.added_names = frozenset()
        state.armed = False
        if type_url in types.WILDCARD_TYPES:
            state.have = dict(content)
        else:
            state.have.update(content)
        if type_url in ordering.ROUTING_TYPES:
            for name, entry in content.items():
                versions = state.in_use.get(name, ())
                if all(v.digest != entry.digest for v in versions):
                    state.in_use[name] = (*versions, entry)
        elif type_url == types.CLUSTER:
            # A cluster this response removes is gone (and if re-added, warms anew).
            self.ready = self.ready.intersection(content)
        for dependent, parent in types.DEPENDS_ON.items():
            if parent == type_url:
                self.types[dependent].armed = True
        events.append(Send(type_url, version, nonce, names, response, reason))
        return events


def track_held(
    state: SyncState,
    held: Mapping[str, frozenset[str]],
    have: Container[str],
    clock: Callable[[], datetime],
) -> list[Event]:
    """Record what is held now (``have``: names the proxy has some version of); events for
    holds that start and end."""
    events: list[Event] = []
    now: datetime | None = None
    current: dict[str, HeldResource] = {}
    for name, waiting in held.items():
        before = state.held.get(name)
        previous = name in have
        if before is None:
            now = now or clock()
            events.append(Held(state.type_url, name, tuple(sorted(waiting)), previous))
        current[name] = HeldResource(
            type_url=state.type_url,
            name=name,
            waiting_for=tuple(sorted(waiting)),
            since=before.since if before else (now or clock()),
            previous=previous,
        )
    for name, before in state.held.items():
        if name not in current:
            events.append(Released(state.type_url, name, before.since))
    state.held = current
    return events


def track_kept(
    state: SyncState, kept: Mapping[str, tuple[str, ...]], clock: Callable[[], datetime]
) -> list[Event]:
    """Record the clusters kept now; events for keeps that start and end."""
    events: list[Event] = []
    current: dict[str, KeptCluster] = {}
    for name, used_by in kept.items():
        before = state.kept.get(name)
        if before is None:
            events.append(Kept(name, used_by))
        since = before.since if before else clock()
        current[name] = KeptCluster(name=name, used_by=used_by, since=since)
    for name, before in state.kept.items():
        if name not in current:
            events.append(Released(state.type_url, name, before.since))
    state.kept = current
    return events


def content_digest(content: Mapping[str, str]) -> str:
    """A hash of name -> resource version: a version for content that is not the
    snapshot's (held back, kept)."""
    h = hashlib.sha256()
    for name in sorted(content):
        h.update(name.encode())
        h.update(b"\0")
        h.update(content[name].encode())
        h.update(b"\0")
    return h.hexdigest()
