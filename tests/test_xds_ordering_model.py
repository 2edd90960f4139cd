"""Push ordering against a model of Envoy, over many random interleavings.

``ModelEnvoy`` is Envoy's xDS client as far as ordering goes, as its source has it: a
cluster added or changed by CDS warms until an EDS response names it, the old version
serving meanwhile (``ClusterManagerImpl::addOrUpdateCluster``); once started, the ACK
(or NACK) of a CDS response waits until no cluster is warming (``updateClusterCounts``);
at start-up, listeners are asked for only once every cluster is warm (the init manager);
a cluster removed by CDS is gone at once; route configurations and listeners apply as
they arrive; a cluster Envoy rejects is skipped and the response NACKed.

Random snapshots (clusters added, changed, removed, routes and TCP listeners moved, a
rejected cluster now and then) and random delivery order of requests and responses.
After every step the model proxy must route only to clusters it has warm: no 503 for a
missing or warming cluster. Once changes stop, everything converges to the last snapshot
with nothing held or kept.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from pilotfish.xds import types
from pilotfish.xds.cache import SnapshotCache, VersionedSnapshot
from pilotfish.xds.cluster_refs import HCM, cluster_references, unpack
from pilotfish.xds.snapshot import Snapshot
from pilotfish.xds.status import SyncStatus
from pilotfish.xds.stream import Send, StreamProtocol
from tests.test_xds_fixtures import (
    ROUTER,
    eds_cluster,
    endpoints,
    listener,
    routes,
    split_routes,
    tcp_listener,
)

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE
NAMES = ("a", "b", "c", "d")
BAD = "bad"  # a cluster the model Envoy rejects; no route uses it
BAD_TIMEOUT = 99


def random_snapshot(rng: random.Random, allow_bad: bool) -> Snapshot:
    clusters = rng.sample(NAMES, rng.randint(1, len(NAMES)))
    built = [eds_cluster(n, timeout_s=rng.choice((1, 2))) for n in clusters]
    if allow_bad and rng.random() < 0.2:
        built.append(eds_cluster(BAD, timeout_s=BAD_TIMEOUT))
    if len(clusters) > 1 and rng.random() < 0.3:
        pair = rng.sample(clusters, 2)
        config = split_routes("http.8080", {pair[0]: 50, pair[1]: 50}, mirror=rng.choice(clusters))
    else:
        config = routes("http.8080", rng.choice(clusters))
    listeners = [listener("0.0.0.0_8080", 8080, "http.8080")]
    if rng.random() < 0.5:
        listeners.append(tcp_listener("tcp_9000", 9000, rng.choice(clusters)))
    names = [c.name for c in built]
    return Snapshot.of(
        clusters=built,
        endpoints=[endpoints(n, 8000) for n in names],
        listeners=listeners,
        routes=[config],
    )


class ModelEnvoy:
    """What Envoy does with ADS responses, for ordering's sake (see the module doc)."""

    def __init__(self) -> None:
        self.outbox: deque[Any] = deque()
        self.initialized = False
        self.active: dict[str, str] = {}  # cluster -> digest of the version serving
        self.warming: dict[str, str] = {}  # cluster -> digest of the version warming
        self.routes: dict[str, frozenset[str]] = {}  # route config -> clusters
        self.listeners: dict[str, frozenset[str]] = {}  # listener -> clusters (TCP)
        self.listener_rds: set[str] = set()
        self.last: dict[str, tuple[str, str]] = {}  # type -> (version, nonce) processed
        self.names: dict[str, list[str]] = {EDS: [], RDS: []}
        self.cds_answer: str | None = None  # an ACK ("") or NACK waiting for warm clusters
        self._node_sent = False
        self._send(CDS, [])

    def _send(self, type_url: str, names: Iterable[str], error: str = "") -> None:
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names))
        if type_url in self.last:
            req.version_info, req.response_nonce = self.last[type_url]
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        if not self._node_sent:
            req.node.id = ROUTER
            self._node_sent = True
        self.outbox.append(req)

    def receive(self, response: Any) -> None:
        type_url = response.type_url
        self.last[type_url] = (response.version_info, response.nonce)
        {CDS: self._cds, EDS: self._eds, LDS: self._lds, RDS: self._rds}[type_url](response)
        self.check_routes()

    def _cds(self, response: Any) -> None:
        got = {}
        for packed in response.resources:
            cluster = cluster_pb2.Cluster.FromString(packed.value)
            got[cluster.name] = (packed.value, cluster.connect_timeout.seconds == BAD_TIMEOUT)
        for name in [n for n in (*self.active, *self.warming) if n not in got]:
            self.active.pop(name, None)  # removed at once, warm or not
            self.warming.pop(name, None)
        error = ""
        started_warming = False
        for name, (data, bad) in got.items():
            if bad:
                error = f"cluster {name} rejected"
                continue
            digest = data.hex()
            if name in self.warming:
                if self.warming[name] == digest:
                    continue
            elif self.active.get(name) == digest:
                continue
            self.warming[name] = digest
            started_warming = True
        eds_names = sorted({*self.active, *self.warming})
        if started_warming or eds_names != self.names[EDS]:
            self.names[EDS] = eds_names  # new EDS watches: a request, answered or not
            self._send(EDS, eds_names)
        if self.initialized and self.warming:
            self.cds_answer = error  # paused until every cluster is warm
        else:
            self._send(CDS, [], error)
        self._maybe_start()

    def _eds(self, response: Any) -> None:
        for packed in response.resources:
            name = endpoint_pb2.ClusterLoadAssignment.FromString(packed.value).cluster_name
            if name in self.warming:
                self.active[name] = self.warming.pop(name)
        if not self.warming and self.cds_answer is not None:
            self._send(CDS, [], self.cds_answer)
            self.cds_answer = None
        self._send(EDS, self.names[EDS])
        self._maybe_start()

    def _maybe_start(self) -> None:
        if not self.initialized and CDS in self.last and not self.warming:
            self.initialized = True
            self._send(LDS, [])

    def _lds(self, response: Any) -> None:
        self.listeners = {}
        rds: set[str] = set()
        for packed in response.resources:
            found = listener_pb2.Listener.FromString(packed.value)
            self.listeners[found.name] = cluster_references(LDS, packed.value)
            for chain in found.filter_chains:
                for network_filter in chain.filters:
                    hcm, _ = unpack(network_filter.typed_config, HCM)
                    if hcm is not None:
                        rds.add(hcm.rds.route_config_name)
        self._send(LDS, [])
        if sorted(rds) != self.names[RDS]:
            self.names[RDS] = sorted(rds)
            self.routes = {n: c for n, c in self.routes.items() if n in rds}
            self._send(RDS, self.names[RDS])

    def _rds(self, response: Any) -> None:
        for packed in response.resources:
            name = route_pb2.RouteConfiguration.FromString(packed.value).name
            if name in self.names[RDS]:
                self.routes[name] = cluster_references(RDS, packed.value)
        self._send(RDS, self.names[RDS])

    def check_routes(self) -> None:
        """Every cluster a route or listener in use points at is warm: no 503."""
        used = {c for refs in self.listeners.values() for c in refs}
        used |= {c for name, refs in self.routes.items() for c in refs}
        missing = used - self.active.keys()
        assert not missing, f"routing to {sorted(missing)}, not warm (warming: {self.warming})"


def run_world(seed: int) -> None:
    rng = random.Random(seed)
    cache = SnapshotCache()
    proto = StreamProtocol(base_pb2.Node(id=ROUTER))
    envoy = ModelEnvoy()
    to_envoy: deque[Send] = deque()
    current: VersionedSnapshot = cache.set_snapshot(ROUTER, random_snapshot(rng, False))
    changes = rng.randint(1, 12)

    def server(events: list[Any]) -> None:
        to_envoy.extend(e for e in events if isinstance(e, Send))

    for _ in range(5000):
        moves = []
        if to_envoy:
            moves += ["envoy"] * 3
        if envoy.outbox:
            moves += ["server"] * 3
        if changes:
            moves.append("change")
        if not moves:
            break
        move = rng.choice(moves)
        if move == "envoy":
            envoy.receive(to_envoy.popleft().response)
        elif move == "server":
            server(proto.on_request(envoy.outbox.popleft(), current))
        else:
            changes -= 1
            current = cache.set_snapshot(ROUTER, random_snapshot(rng, allow_bad=changes > 0))
            server(proto.on_snapshot(current))
    else:
        raise AssertionError("no quiet after 5000 steps")

    # Quiet: the proxy runs the last snapshot, exactly, and nothing waits.
    final = current.snapshot
    assert envoy.initialized and not envoy.warming
    assert set(envoy.active) == set(final.names(CDS))
    assert envoy.routes == {n: e.clusters for n, e in final.entries(RDS).items()}
    assert envoy.listeners == {n: e.clusters for n, e in final.entries(LDS).items()}
    assert proto.held() == () and proto.kept() == ()
    statuses = {types.short_name(t): s.status for t, s in proto.sync_status().items()}
    assert statuses == {
        "cds": SyncStatus.SYNCED,
        "eds": SyncStatus.SYNCED,
        "lds": SyncStatus.SYNCED,
        "rds": SyncStatus.SYNCED,
        "sds": SyncStatus.NOT_SENT,
    }


@pytest.mark.parametrize("block", range(10))
def test_random_changes_never_route_to_a_cold_cluster(block: int) -> None:
    for seed in range(block * 40, (block + 1) * 40):
        try:
            run_world(seed)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {e}") from e
