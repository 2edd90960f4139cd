"""ControlPlane: identical gateway replicas share one translation per config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.server import control_plane as cp
from pilotfish.sources.files import FileSource
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from pilotfish.xds.types import LISTENER

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
        listeners.append(sorted(found.snapshot.resources[LISTENER]))
    # The Service in the example maps 80 -> 8080 for every replica; the entry adds 9090
    # for the one at its IP.
    assert listeners == [["0.0.0.0_8080", "0.0.0.0_9090"], ["0.0.0.0_8080"], ["0.0.0.0_8080"]]
    shared = [plane.cache.get(n.id) for n in nodes[1:]]
    assert shared[0] is not None and shared[1] is not None
    assert shared[0].snapshot is shared[1].snapshot
