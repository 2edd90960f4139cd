"""The delta (incremental) ADS protocol of one stream, apart from any I/O.

``DeltaStreamProtocol`` is to ``DeltaAggregatedResources`` what ``StreamProtocol`` is to
the state-of-the-world stream: requests and snapshot changes in, events out (the same
``Send``/``Ack``/``Nack``/... events, so ``ads.py`` logs and counts both alike). The rules
(Envoy's ``api/xds_protocol``, "Incremental xDS"):

- Each resource has a version of its own: here the snapshot's content hash of it, so it
  is the same across streams and across control-plane restarts for the same bytes.
- The stream remembers which version of each resource the client has (from what it sent,
  and on a reconnect from ``initial_resource_versions``) and sends only resources whose
  version differs; ``removed_resources`` names the ones that are gone.
- CDS and LDS are wildcard (``*`` or an empty first subscription): everything, and a
  resource the client has that the snapshot lacks is removed. RDS, EDS and SDS are named:
  ``resource_names_subscribe``/``unsubscribe`` change the set. A named resource the client
  asks for and the snapshot does not have yet is simply not sent: never "removed". Only a
  resource this stream sent, still subscribed, that left the snapshot is removed.
- Every request with a ``response_nonce`` answers that response: a NACK if it has
  ``error_detail``. Requests are never stale: subscription changes are incremental, each
  one counts. A NACKed resource is not sent again until its content changes.
- Make-before-break as in state of the world: types in ``PUSH_ORDER``, and the push
  ordering of ``ordering.py`` (a route configuration or listener waits until the clusters
  it needs are warm, a dropped cluster stays while a route the proxy may run uses it).
  A held resource is simply not sent (the client keeps what it has); a kept cluster is
  simply not removed.
- Envoy re-creates a cluster it gets a new version of, and the new one warms only on its
  endpoints. Its EDS subscription does not change (the old and the new cluster watch the
  same name), so Envoy asks for nothing: the endpoints of every cluster sent go out
  again right after it, even unchanged. A listener re-created with the same RDS name
  shares the route configuration it had (Envoy keys RDS providers by name and source),
  so RDS needs no such re-send.

The version of a type on a delta stream (``system_version_info``, and ``sent``/``acked``
in the sync status): the cache's version of the type when the response was built, if
the client then has exactly the snapshot's resources of the type it asked for; otherwise
(something held back or kept) that version + ``+held.<hash of what the client has>``.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.xds import ordering, types
from pilotfish.xds.cache import VersionedSnapshot
from pilotfish.xds.snapshot import Entry, Snapshot
from pilotfish.xds.status import HeldResource, KeptCluster, NackInfo, SyncStatus, TypeSyncStatus
from pilotfish.xds.stream import (
    CONTROL_PLANE_ID,
    Ack,
    Event,
    Nack,
    Send,
    SyncState,
    Unsupported,
    content_digest,
    track_held,
    track_kept,
)

WILDCARD = "*"
# Responses remembered until answered, per type. Envoy answers each one in order; a
# client that never does must not make the stream grow without bound: past this, the
# oldest is forgotten (an answer to it is then ignored, like one from an earlier stream).
MAX_OUTSTANDING = 64


@dataclass(frozen=True)
class _Response:
    """A response sent and not yet answered."""

    version: str
    sent: Mapping[str, Entry]
    # Before it: the version the client had of each resource it carries (None: none),
    # and the entry this stream had sent of it; a NACK puts them back.
    before: Mapping[str, tuple[str | None, Entry | None]]


@dataclass
class DeltaTypeState(SyncState):
    """Everything one delta stream knows about one resource type."""

    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)  # subscribed by name (not "*")
    # name -> the version the client has, as far as its requests and our responses tell.
    client: dict[str, str] = field(default_factory=dict)
    # The entries this stream sent that the client has (a subset of `client`: a version
    # known only from initial_resource_versions has no entry here).
    have: dict[str, Entry] = field(default_factory=dict)
    # Routing types: the versions of each resource the proxy may run (as in TypeState).
    in_use: dict[str, tuple[Entry, ...]] = field(default_factory=dict)
    # name -> a version the client rejected: not sent again until the content changes.
    nacked: dict[str, str] = field(default_factory=dict)
    # EDS: names to send even if the client has them (their clusters were re-created).
    resend: set[str] = field(default_factory=set)
    # The first request of a wildcard type is answered even if there is nothing to send.
    answer_pending: bool = False
    outstanding: dict[str, _Response] = field(default_factory=dict)  # by nonce, in order
    # The type was compared with a snapshot at least once (a client that reconnected
    # with everything up to date may need no response at all).
    evaluated: bool = False

    def status(self) -> TypeSyncStatus:
        # Not the last response's fate alone: the client may be in sync without one, and
        # after a NACK a later response (without the rejected resource) may be ACKed.
        if not self.evaluated:
            status = SyncStatus.NOT_SENT
        elif self.nacked:
            status = SyncStatus.ERROR  # a rejected resource the snapshot still has
        elif self.outstanding:
            status = SyncStatus.STALE
        elif self.deviates:
            status = SyncStatus.HELD
        else:
            status = SyncStatus.SYNCED
        return replace(super().status(), status=status)


class DeltaStreamProtocol:
    """Incremental ADS for one stream: decides what to send, and when."""

    def __init__(
        self,
        node: base_pb2.Node,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.node = node
        self._clock = clock
        self.types: dict[str, DeltaTypeState] = {t: DeltaTypeState(t) for t in types.PUSH_ORDER}
        self._generation = 0
        # Clusters the proxy has warm (see StreamProtocol.ready): those it had when the
        # stream began, and those of each CDS response it ACKed, less those removed since.
        self.ready: frozenset[str] = frozenset()
        self._cds_acked = False
        self._pending: tuple[Snapshot, frozenset[str], frozenset[str]] | None = None
        self._nonces = itertools.count(1)
        self._nonce_salt = secrets.token_hex(4)

    def on_request(
        self, request: discovery_pb2.DeltaDiscoveryRequest, current: VersionedSnapshot | None
    ) -> list[Event]:
        type_url = str(request.type_url)
        state = self.types.get(type_url)
        if state is None:
            return [Unsupported(type_url)]
        events: list[Event] = []
        nonce = str(request.response_nonce)
        # A nonce not outstanding: answered already, or from an earlier stream. Its
        # subscription changes still count (they are incremental).
        if nonce and nonce in state.outstanding:
            events.append(self._answer(state, nonce, request))
        self._subscribe(state, request)

        if current is None:
            return events  # no snapshot for this node yet: answered when one arrives
        if current.generation > self._generation or self._ordering():
            events.extend(self._push(current, answering=type_url))
        else:
            events.extend(self._maybe_send(state, current, reason="request"))
            endpoints = self.types[types.ENDPOINT]
            if type_url == types.CLUSTER and endpoints.requested and endpoints.resend:
                # Clusters went out: their endpoints follow (see the module doc).
                events.extend(self._maybe_send(endpoints, current, reason="push"))
        return events

    def on_snapshot(self, current: VersionedSnapshot) -> list[Event]:
        """Push what changed, in make-before-break order, for types the client wants."""
        return self._push(current, answering=None)

    def sync_status(self) -> dict[str, TypeSyncStatus]:
        return {t: s.status() for t, s in self.types.items()}

    def held(self) -> tuple[HeldResource, ...]:
        return tuple(h for s in self.types.values() for _, h in sorted(s.held.items()))

    def kept(self) -> tuple[KeptCluster, ...]:
        return tuple(k for _, k in sorted(self.types[types.CLUSTER].kept.items()))

    # --- requests ----------------------------------------------------------------------

    def _answer(
        self, state: DeltaTypeState, nonce: str, request: discovery_pb2.DeltaDiscoveryRequest
    ) -> Event:
        # Responses before this one that were never answered are answered by it too:
        # the client applied them in order.
        while True:
            first, response = next(iter(state.outstanding.items()))
            del state.outstanding[first]
            if first == nonce:
                break
        if request.HasField("error_detail"):
            info = NackInfo(
                version=response.version,
                nonce=nonce,
                message=str(request.error_detail.message),
                at=self._clock(),
            )
            state.nack = info
            state.nacks += 1
            for name, entry in response.sent.items():
                if state.client.get(name) != entry.digest:
                    continue  # sent again since
                state.nacked[name] = entry.digest
                version, sent = response.before[name]
                if version is None:
                    state.client.pop(name, None)
                else:
                    state.client[name] = version
                if sent is None:
                    state.have.pop(name, None)
                else:
                    state.have[name] = sent
            if state.type_url == types.CLUSTER and not self._cds_acked:
                # As StreamProtocol._nacked: a starting Envoy asks for listeners once
                # whatever clusters it accepted are warm.
                self.ready = frozenset(state.client)
            return Nack(state.type_url, info)
        state.acked_version = response.version
        if state.type_url in ordering.ROUTING_TYPES and not state.outstanding:
            state.in_use = {n: (e,) for n, e in state.have.items()}
        elif state.type_url == types.CLUSTER:
            # Envoy ACKs CDS once the clusters it added are warm.
            added = (n for n, e in response.sent.items() if state.client.get(n) == e.digest)
            self.ready = self.ready.union(added)
            self._cds_acked = True
        return Ack(state.type_url, response.version, nonce)

    def _subscribe(
        self, state: DeltaTypeState, request: discovery_pb2.DeltaDiscoveryRequest
    ) -> None:
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        wildcard_type = state.type_url in types.WILDCARD_TYPES
        if not state.requested:
            state.requested = True
            # Legacy wildcard: a first request of CDS/LDS naming nothing means all.
            state.wildcard = wildcard_type and (not subscribe or WILDCARD in subscribe)
            state.answer_pending = state.wildcard
            # A reconnecting client says what it kept: only what differs is sent.
            state.client.update(request.initial_resource_versions)
            if state.type_url == types.CLUSTER:
                # Clusters it kept across the reconnect are warm (or were, as it left).
                self.ready = self.ready.union(state.client)
        else:
            if wildcard_type and WILDCARD in subscribe and not state.wildcard:
                state.wildcard = True
                state.answer_pending = True
            if WILDCARD in unsubscribe:
                state.wildcard = False
        state.names |= subscribe - {WILDCARD}
        state.names -= unsubscribe
        state.resend &= state.names
        if state.wildcard:
            return
        # An unsubscribed resource is dropped by the client: sent again if asked again.
        for name in [n for n in state.client if n not in state.names]:
            for known in (state.client, state.have, state.in_use, state.nacked):
                known.pop(name, None)

    # --- pushing -----------------------------------------------------------------------

    def _push(self, current: VersionedSnapshot, answering: str | None) -> list[Event]:
        self._generation = max(self._generation, current.generation)
        events: list[Event] = []
        for type_url in types.PUSH_ORDER:
            state = self.types[type_url]
            if state.requested:
                reason = "request" if type_url == answering else "push"
                events.extend(self._maybe_send(state, current, reason=reason))
        return events

    def _ordering(self) -> bool:
        return any(s.held or s.kept for s in self.types.values())

    def _pending_clusters(self, snapshot: Snapshot) -> frozenset[str]:
        if not self.types[types.CLUSTER].requested:
            return frozenset()
        cached = self._pending
        if cached is not None and cached[0] is snapshot and cached[1] is self.ready:
            return cached[2]
        pending = ordering.pending_clusters(snapshot.entries(types.CLUSTER), self.ready)
        self._pending = (snapshot, self.ready, pending)
        return pending

    def _desired(self, state: DeltaTypeState, snapshot: Snapshot) -> Mapping[str, Entry]:
        if state.wildcard:
            return snapshot.entries(state.type_url)
        return {
            name: entry
            for name in state.names
            if (entry := snapshot.entry(state.type_url, name)) is not None
        }

    def _ordered(
        self, state: DeltaTypeState, desired: Mapping[str, Entry], snapshot: Snapshot
    ) -> tuple[dict[str, Entry], frozenset[str], list[Event]]:
        """What the client should have of the type now (push ordering applied), and the
        names it must keep although the snapshot dropped them."""
        type_url = state.type_url
        if type_url in ordering.ROUTING_TYPES:
            pending = self._pending_clusters(snapshot)
            if not pending and not state.held:
                return dict(desired), frozenset(), []
            # What the client has at the desired version counts as sent: never held.
            previous = dict(state.have)
            previous.update((n, e) for n, e in desired.items() if state.client.get(n) == e.digest)
            content, held = ordering.hold_back(desired, previous, pending)
            # A held resource the client has some version of stays as it is (it may
            # know it only from initial_resource_versions: not in content, not removed).
            events = track_held(state, held, state.client, self._clock)
            return content, frozenset(held), events
        if type_url == types.CLUSTER:
            removed = {n: e for n, e in state.have.items() if n not in desired}
            if not removed and not state.kept:
                return dict(desired), frozenset(), []
            in_use = {t: self.types[t].in_use for t in ordering.ROUTING_TYPES}
            endpoints_sent = self.types[types.ENDPOINT].have.keys()
            kept = ordering.kept_clusters(removed, in_use, snapshot, endpoints_sent)
            events = track_kept(state, kept, self._clock)
            content = dict(desired)
            content.update((n, state.have[n]) for n in kept)
            return content, frozenset(kept), events
        if type_url == types.ENDPOINT and (kept_clusters := self.types[types.CLUSTER].kept):
            # A kept cluster keeps its last endpoints (it may be warming on them).
            clusters = self.types[types.CLUSTER].have
            content = dict(desired)
            keep = set()
            for name in ordering.kept_endpoints(clusters[c] for c in kept_clusters):
                if name in state.names and name not in content and name in state.have:
                    content[name] = state.have[name]
                    keep.add(name)
            return content, frozenset(keep), []
        return dict(desired), frozenset(), []

    def _maybe_send(
        self, state: DeltaTypeState, current: VersionedSnapshot, reason: str
    ) -> list[Event]:
        type_url = state.type_url
        snapshot = current.snapshot
        desired = self._desired(state, snapshot)
        content, keep, events = self._ordered(state, desired, snapshot)
        # A rejection is forgotten once the resource changed (or left).
        state.nacked = {
            n: v for n, v in state.nacked.items() if (e := desired.get(n)) and e.digest == v
        }
        send = {
            name: entry
            for name, entry in content.items()
            if state.nacked.get(name) != entry.digest
            and (state.client.get(name) != entry.digest or name in state.resend)
        }
        if state.wildcard:
            removed = [n for n in state.client if n not in content and n not in keep]
        else:
            # Never "removed" what the client asked for and we do not have yet: only what
            # this stream sent, still subscribed, that is gone.
            removed = [n for n in state.have if n in state.names and n not in content]
        state.deviates = bool(state.held or state.kept or keep)
        state.evaluated = True
        if not (send or removed or state.answer_pending):
            return events
        for name in removed:
            for known in (state.client, state.have, state.nacked):
                known.pop(name, None)
        before = {n: (state.client.get(n), state.have.get(n)) for n in send}
        for name, entry in send.items():
            state.client[name] = entry.digest
            state.have[name] = entry
            state.resend.discard(name)
        version = current.version(type_url)
        if state.deviates:
            version = f"{version}+held.{content_digest(state.client)[:8]}"
        nonce = f"{next(self._nonces)}-{self._nonce_salt}"
        names = tuple(sorted(send))
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(
                    name=n,
                    version=send[n].digest,
                    resource=any_pb2.Any(type_url=type_url, value=send[n].data),
                )
                for n in names
            ],
            removed_resources=sorted(removed),
            control_plane=base_pb2.ControlPlane(identifier=CONTROL_PLANE_ID),
        )
        state.sent_version = version
        state.sent_nonce = nonce
        state.answer_pending = False
        state.outstanding[nonce] = _Response(version, send, before)
        if len(state.outstanding) > MAX_OUTSTANDING:
            del state.outstanding[next(iter(state.outstanding))]
        if type_url in ordering.ROUTING_TYPES:
            for name, entry in send.items():
                versions = state.in_use.get(name, ())
                if all(v.digest != entry.digest for v in versions):
                    state.in_use[name] = (*versions, entry)
        elif type_url == types.CLUSTER:
            self.ready = self.ready.difference(removed)
            # Each cluster sent is (re-)created, and warms only on its endpoints.
            eds = self.types[types.ENDPOINT]
            eds.resend.update(ordering.kept_endpoints(send.values()))
        events.append(Send(type_url, version, nonce, names, response, reason, tuple(removed)))
        return events
