"""ControlPlane: identical gateway replicas share one translation per config."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.server import control_plane as cp
from pilotfish.sources.files import FileSource
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from pilotfish.xds import types

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "httpbin-gateway"


def node(
    pod: str, ip: str, labels: dict[str, str], namespace: str = "istio-system"
) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({"LABELS": labels, "NAMESPACE": namespace})
    return base_pb2.Node(
        id=f"router~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local", metadata=metadata
    )


def test_replicas_share_one_translation_and_a_new_config_retranslates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def counting_translate(config, proxy):  # type: ignore[no-untyped-def]
        calls.append(proxy.id)
        return translate(config, proxy)

    monkeypatch.setattr(cp, "translate", counting_translate)
    plane = cp.ControlPlane()
    plane.apply(build_config_set(FileSource(EXAMPLE).load()))
    ingress = {"istio": "ingressgateway"}
    replicas = [node("gw-a", "10.0.0.1", ingress), node("gw-b", "10.0.0.2", ingress)]
    other = node("egress-0", "10.0.0.3", {"istio": "egressgateway"})

    async def connect_all() -> None:
        for n in [*replicas, other]:
            await plane.on_connect(n)

    asyncio.run(connect_all())
    assert len(calls) == 2  # one for both ingress replicas, one for the egress gateway
    first, second = (plane.cache.get(n.id) for n in replicas)
    assert first is not None and second is not None
    assert first.snapshot is second.snapshot

    plane.apply(build_config_set(FileSource(EXAMPLE).load()))
    assert len(calls) == 4  # a new config is translated again, once per shape


def test_translation_ignores_what_the_shape_leaves_out() -> None:
    """What makes sharing safe: a proxy's ID, IP and pod name do not change its config."""
    config = build_config_set(FileSource(EXAMPLE).load())
    meta = {"LABELS": {"istio": "ingressgateway"}, "NAMESPACE": "istio-system"}
    a = translate(config, Proxy.from_node(node("gw-a", "10.0.0.1", {}).id, meta))
    b = translate(config, Proxy.from_node(node("gw-b", "10.9.9.9", {}).id, meta))
    assert (a.listeners, a.routes, a.clusters, a.endpoints, a.secrets) == (
        b.listeners,
        b.routes,
        b.clusters,
        b.endpoints,
        b.secrets,
    )


def test_a_service_entry_at_a_proxy_ip_sets_that_proxy_apart() -> None:
    """A ServiceEntry whose endpoint is one replica's IP is that replica's own Service (its
    targetPort decides the listener): that replica gets a translation of its own."""
    gateway_entry = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ingress, namespace: istio-system}
spec:
  hosts: [ingress.istio-system.svc.cluster.local]
  ports: [{number: 80, targetPort: 9090, name: http}]
  endpoints: [{address: 10.0.0.1}]
  resolution: STATIC
"""
    files = [*FileSource(EXAMPLE).load(), parse_manifest_text(gateway_entry, "entry.yaml")]
    plane = cp.ControlPlane()
    plane.apply(build_config_set(files))
    ingress = {"istio": "ingressgateway"}
    nodes = [node(f"gw-{ip}", ip, ingress) for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")]

    async def connect_all() -> None:
        for n in nodes:
            await plane.on_connect(n)

    asyncio.run(connect_all())
    listeners = []
    for n in nodes:
        found = plane.cache.get(n.id)
        assert found is not None
        listeners.append(sorted(found.snapshot.resources[types.LISTENER]))
    # The Service in the example maps 80 -> 8080 for every replica; the entry adds 9090
    # for the one at its IP.
    assert listeners == [["0.0.0.0_8080", "0.0.0.0_9090"], ["0.0.0.0_8080"], ["0.0.0.0_8080"]]
    shared = [plane.cache.get(n.id) for n in nodes[1:]]
    assert shared[0] is not None and shared[1] is not None
    assert shared[0].snapshot is shared[1].snapshot


LONG_SNI_RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy:
    tls: {mode: SIMPLE, sni: %s}
"""
HTTPBIN_CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"


def test_a_resource_envoy_would_reject_is_held_back_and_reported(tmp_path: Path) -> None:
    """Upstream TLS SNI is at most 255 bytes for Envoy; nothing before the pre-push check
    knows that. The cluster keeps its last good version and the rule is blamed."""
    for f in EXAMPLE.iterdir():
        (tmp_path / f.name).write_text(f.read_text())
    plane = cp.ControlPlane()
    plane.apply(build_config_set(FileSource(tmp_path).load()))
    gateway = node("gw-a", "10.0.0.1", {"istio": "ingressgateway"})
    asyncio.run(plane.on_connect(gateway))
    before = plane.cache.get(gateway.id)
    assert before is not None
    good = before.snapshot.resources[types.CLUSTER][HTTPBIN_CLUSTER]

    (tmp_path / "rule.yaml").write_text(LONG_SNI_RULE % ("a" * 300))
    plane.apply(build_config_set(FileSource(tmp_path).load()))
    after = plane.cache.get(gateway.id)
    assert after is not None
    assert after.snapshot.resources[types.CLUSTER][HTTPBIN_CLUSTER] == good
    assert after.snapshot.consistency_errors() == []
    [problem] = [p for p in plane.config_status() if p.get("kind") == "DestinationRule"]
    assert problem["name"] == "httpbin" and problem["field"] == "spec.trafficPolicy.tls"
    assert problem["file"] == "rule.yaml" and problem["proxies"] == [gateway.id]
    assert f"Envoy would reject cds resource '{HTTPBIN_CLUSTER}'" in problem["message"]
    assert "transport_socket.typed_config.sni: must be at most 255 bytes long" in problem["message"]

    # A proxy that never had a good version of the cluster does not get it at all.
    newcomer = node("gw-b", "10.0.0.2", {"istio": "ingressgateway"})
    asyncio.run(plane.on_connect(newcomer))
    fresh = plane.cache.get(newcomer.id)
    assert fresh is not None and HTTPBIN_CLUSTER not in fresh.snapshot.resources[types.CLUSTER]

    (tmp_path / "rule.yaml").write_text(LONG_SNI_RULE % "httpbin.example.com")
    plane.apply(build_config_set(FileSource(tmp_path).load()))
    fixed = plane.cache.get(gateway.id)
    assert fixed is not None
    assert fixed.snapshot.resources[types.CLUSTER][HTTPBIN_CLUSTER].HasField("transport_socket")
    assert not [p for p in plane.config_status() if p.get("kind") == "DestinationRule"]


def test_a_negative_duration_is_reported_at_the_istio_field(tmp_path: Path) -> None:
    for f in EXAMPLE.iterdir():
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "rule.yaml").write_text(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: -1s}}
    outlierDetection: {interval: -5s, consecutive5xxErrors: 3}
"""
    )
    plane = cp.ControlPlane()
    plane.apply(build_config_set(FileSource(tmp_path).load()))
    gateway = node("gw-a", "10.0.0.1", {"istio": "ingressgateway"})
    asyncio.run(plane.on_connect(gateway))
    fields = {p["field"] for p in plane.config_status() if p.get("kind") == "DestinationRule"}
    assert fields == {
        "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        "spec.trafficPolicy.outlierDetection.interval",
    }
    served = plane.cache.get(gateway.id)
    assert served is not None
    cluster: Any = served.snapshot.resources[types.CLUSTER][HTTPBIN_CLUSTER]
    # The bad values are ignored (Envoy's defaults apply), the rest of the rule is served.
    assert cluster.connect_timeout.ToMilliseconds() == 10_000
    assert cluster.outlier_detection.consecutive_5xx.value == 3
    assert not cluster.outlier_detection.HasField("interval")


SIDECAR_WORLD = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ratings, namespace: default}
spec:
  workloadSelector: {labels: {app: ratings}}
  ingress: [{port: {number: 9080, protocol: HTTP}, defaultEndpoint: "0.0.0.0:8080"}]
"""


def sidecar_node(pod: str, ip: str, app: str) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({"LABELS": {"app": app}, "NAMESPACE": "default"})
    return base_pb2.Node(
        id=f"sidecar~{ip}~{pod}.default~default.svc.cluster.local", metadata=metadata
    )


def test_sidecars_of_a_workload_share_unless_a_sidecar_ingress_reads_their_ip() -> None:
    config = build_config_set([parse_manifest_text(SIDECAR_WORLD, "world.yaml")])
    reviews = [sidecar_node(f"reviews-{i}", f"10.1.0.{i}", "reviews") for i in (1, 2)]
    ratings = [sidecar_node(f"ratings-{i}", f"10.1.0.{i + 10}", "ratings") for i in (1, 2)]
    # Inbound sends to the original destination: the pods' IPs are not in their config.
    a, b = (
        translate(config, Proxy.from_node(n.id, {"LABELS": {"app": "reviews"}})) for n in reviews
    )
    assert (a.listeners, a.clusters) == (b.listeners, b.clusters)
    plane = cp.ControlPlane()
    plane.apply(config)

    async def connect_all() -> None:
        for n in [*reviews, *ratings]:
            await plane.on_connect(n)

    asyncio.run(connect_all())
    snapshots = [plane.cache.get(n.id) for n in [*reviews, *ratings]]
    assert all(s is not None for s in snapshots)
    first, second, third, fourth = (s.snapshot for s in snapshots if s is not None)
    assert first is second  # one translation for the reviews pods
    # The Sidecar's ingress sends to each ratings pod's own IP: a translation each.
    assert third is not fourth
    (inbound,) = [c for n, c in third.resources[types.CLUSTER].items() if n == "inbound|9080||"]
    endpoint = inbound.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert endpoint.address.socket_address.address == "10.1.0.11"
