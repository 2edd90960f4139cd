"""outboundTrafficPolicy REGISTRY_ONLY from the mesh config, through real sidecars.

pilotfish runs with a mesh config file as `serve --mesh-config` reads it
(`outboundTrafficPolicy: {mode: REGISTRY_ONLY}`); the mesh config is fixed for a server's
life, so this module has a world of its own (ALLOW_ANY, the default, is proven in
test_bookinfo_mesh.py). In it: a `sleep` client and two bookinfo services (details,
ratings) with sidecars, and an "external" server in a pod outside the mesh (no capture,
no Service), known as api.example.org through the pods' hosts files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testsupport import bookinfo
from testsupport.bookinfo import Workload
from testsupport.envoy import EnvoyProcess
from testsupport.mesh import MeshWorld, Pod
from testsupport.mesh.kubectl import Kubectl

NS = "default"
EXTERNAL = "api.example.org"
PORT = 9080  # the external server's too: an HTTP port the sidecar has a listener for
CLOSED_PORT = 7777  # a port no Service declares: no listener, virtualOutbound decides
REGISTRY_ONLY = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n"


def fqdn(service: str) -> str:
    return f"{service}.{NS}.svc.cluster.local"


@dataclass
class World:
    world: MeshWorld
    kubectl: Kubectl
    sleep: Pod
    sidecar: EnvoyProcess
    external: Pod

    def get(self, url: str) -> Any:
        return self.sleep.request(url, timeout=5)


@pytest.fixture(scope="module")
def registry_only(mesh: MeshWorld) -> World:
    config = mesh.directory / "mesh.yaml"
    config.write_text(REGISTRY_ONLY)
    mesh.start_pilotfish(mesh_config=config)
    for workload in (Workload("details", "v1"), Workload("ratings", "v1")):
        bookinfo.add_workload(mesh, workload)
    sleep, sidecar = bookinfo.add_workload(mesh, Workload("sleep", "v1"), service=False)
    assert sidecar is not None
    external, _ = bookinfo.add_workload(
        mesh, Workload("external", "v1"), sidecar=False, service=False
    )
    mesh.add_host(EXTERNAL, external.ip)
    sidecar.wait_for_cluster_healthy(f"outbound|{PORT}||{fqdn('details')}")
    return World(mesh, Kubectl(mesh), sleep, sidecar, external)


def vhost_names(envoy: EnvoyProcess) -> set[str]:
    found = envoy.dynamic_route_configs().get(str(PORT))
    return {v["name"] for v in found.config.get("virtual_hosts", [])} if found else set()


@pytest.fixture
def w(registry_only: World) -> Iterator[World]:
    """The module's world with nothing applied before and after the test."""
    yield registry_only
    registry_only.kubectl.delete_all()
    expected = {f"{fqdn('details')}:{PORT}", f"{fqdn('ratings')}:{PORT}", "block_all"}
    registry_only.sidecar.wait_for(
        lambda: vhost_names(registry_only.sidecar) == expected, "the mesh config's policy alone"
    )


def blackholed(envoy: EnvoyProcess) -> int:
    return envoy.stat("cluster.BlackHoleCluster.upstream_cx_none_healthy")


def test_registry_only_blocks_what_no_service_or_service_entry_names(w: World) -> None:
    # Services of the registry: through their clusters.
    reply = w.get(f"http://details:{PORT}/details/0")
    assert (reply.status, reply.json()["service"]) == (200, "details")
    # On a port with an HTTP listener: the block_all virtual host answers 502.
    for url in (f"http://{w.external.ip}:{PORT}/", f"http://{EXTERNAL}:{PORT}/"):
        reply = w.get(url)
        assert reply.status == 502, (url, reply)
        assert "service" not in reply.text  # not the external server's answer
    # Anywhere else: virtualOutbound's BlackHoleCluster closes the connection.
    before = blackholed(w.sidecar)
    with pytest.raises(ConnectionError):
        w.get(f"http://{w.external.ip}:{CLOSED_PORT}/")
    assert blackholed(w.sidecar) == before + 1


def test_a_service_entry_opens_the_destination(w: World) -> None:
    w.kubectl.apply(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "api", "namespace": NS},
            "spec": {
                "hosts": [EXTERNAL],
                "ports": [{"number": PORT, "name": "http", "protocol": "HTTP"}],
                "resolution": "DNS",
                "location": "MESH_EXTERNAL",
            },
        }
    )
    cluster = f"outbound|{PORT}||{EXTERNAL}"
    w.sidecar.wait_for(lambda: f"{EXTERNAL}:{PORT}" in vhost_names(w.sidecar), "its vhost")
    w.sidecar.wait_for_cluster_healthy(cluster)
    reply = w.get(f"http://{EXTERNAL}:{PORT}/entry")
    assert (reply.status, reply.json()["service"], reply.json()["path"]) == (
        200,
        "external",
        "/entry",
    )
    assert w.sidecar.stat(f"cluster.{cluster}.upstream_rq_200") >= 1
    # Only the name the entry gives: the same server by IP is still unknown.
    assert w.get(f"http://{w.external.ip}:{PORT}/").status == 502


def sidecar_resource(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "sleep", "namespace": NS},
        "spec": {"workloadSelector": {"labels": {"app": "sleep"}}, **spec},
    }


def test_a_sidecar_resource_hides_a_service_and_the_policy_blocks_it(w: World) -> None:
    w.kubectl.apply(sidecar_resource({"egress": [{"hosts": [f"./{fqdn('details')}"]}]}))
    w.sidecar.wait_for(
        lambda: vhost_names(w.sidecar) == {f"{fqdn('details')}:{PORT}", "block_all"},
        "ratings to be hidden",
    )
    assert w.get(f"http://details:{PORT}/details/0").status == 200
    # ratings exists, but not for this sidecar: under REGISTRY_ONLY it is blocked.
    assert w.get(f"http://ratings:{PORT}/ratings/0").status == 502


def test_a_sidecar_resource_may_allow_any_for_its_workload(w: World) -> None:
    w.kubectl.apply(sidecar_resource({"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}))
    w.sidecar.wait_for(lambda: "allow_any" in vhost_names(w.sidecar), "the allow_any vhost")
    assert "block_all" not in vhost_names(w.sidecar)
    assert w.get(f"http://{w.external.ip}:{PORT}/").status == 200
    before = w.sidecar.stat("cluster.PassthroughCluster.upstream_rq_200")
    reply = w.get(f"http://{EXTERNAL}:{PORT}/by-name")
    assert (reply.status, reply.json()["path"]) == (200, "/by-name")
    assert reply.json()["peer"] == w.sleep.ip  # straight from the pod, no gateway
    assert w.sidecar.stat("cluster.PassthroughCluster.upstream_rq_200") == before + 1
