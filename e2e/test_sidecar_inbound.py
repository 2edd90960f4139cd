"""A sidecar's inbound side on real captured traffic (testsupport/mesh): requests from
another pod to the workload's IP are redirected to 15006 by the pod's iptables rules,
go through virtualInbound's chains and `inbound|<port>||` clusters, and reach the
application, which sees them come from 127.0.0.6 (Istio's source for inbound traffic,
let through by the capture rules). Checked on the callee sidecar's own stats.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from testsupport import bookinfo
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response
from testsupport.mesh import MeshWorld, Pod, ServicePort
from testsupport.wait import wait_until

APP_PORT = 9080
TCP_PORT, TCP_TARGET_PORT = 7000, 7001  # a TCP Service port and the container port it maps to
UNDECLARED_PORT = 7777  # an HTTP server no Service declares
LOOPBACK_APP_PORT = 8080  # an application that listens on 127.0.0.1 only


@dataclass
class Inbound:
    mesh: MeshWorld
    client: Pod  # no sidecar: its requests reach the callee's IP as they are
    ratings: Pod  # the callee: a sidecar, the app on 9080, a TCP probe, an undeclared port
    sidecar: EnvoyProcess
    details: Pod  # a sidecar, an application on 127.0.0.1:8080 only
    details_sidecar: EnvoyProcess


def serve_directory(pod: Pod, bind: str, port: int, content: str) -> None:
    """Python's http.server in `pod`, serving one file, `hello.txt`; returns once it
    answers from inside the pod."""
    root = pod.directory / f"www-{port}"
    root.mkdir()
    (root / "hello.txt").write_text(content)
    pod.spawn(
        [sys.executable, "-m", "http.server", "--bind", bind, "--directory", str(root), str(port)],
        f"http-{port}",
    )
    target = (bind if bind != "0.0.0.0" else pod.ip, port)

    def answers() -> bool:
        pod.call(socket.create_connection, target, 1.0).close()
        return True

    wait_until(
        answers,
        timeout=15,
        ignore=(OSError,),
        message=f"{pod.name}: http.server on {bind}:{port} never answered",
    )


@pytest.fixture(scope="module")
def world(mesh: MeshWorld) -> Inbound:
    client = mesh.add_pod("client", labels={"app": "client"}, capture=False)
    ratings = mesh.add_pod("ratings-v1", labels={"app": "ratings", "version": "v1"})
    details = mesh.add_pod("details-v1", labels={"app": "details", "version": "v1"})
    mesh.add_service(
        "ratings",
        ports=[ServicePort(APP_PORT, "http"), ServicePort(TCP_PORT, "tcp-probe", TCP_TARGET_PORT)],
    )
    mesh.add_service("details", ports=[ServicePort(APP_PORT, "http")])
    bookinfo.start_app(ratings, bookinfo.Workload("ratings", "v1"))
    ratings.start_probe([TCP_TARGET_PORT], uid=None, label="ratings-tcp")
    serve_directory(ratings, "0.0.0.0", UNDECLARED_PORT, "undeclared port\n")
    serve_directory(details, "127.0.0.1", LOOPBACK_APP_PORT, "details on loopback\n")
    mesh.write_registry()
    mesh.start_pilotfish()
    sidecar = ratings.start_sidecar()
    details_sidecar = details.start_sidecar()
    for envoy in (sidecar, details_sidecar):
        envoy.wait_ready()
        envoy.wait_for_listener("virtualInbound")
    sidecar.wait_for_cluster("inbound|9080||")
    return Inbound(mesh, client, ratings, sidecar, details, details_sidecar)


def get(world: Inbound, pod: Pod, port: int, path: str = "/") -> Response:
    return world.client.request(f"http://{pod.ip}:{port}{path}")


def rising(envoy: EnvoyProcess, stat: str, before: int, by: int) -> int:
    """Wait for a counter to have risen by `by` (stats are flushed asynchronously)."""
    return wait_until(
        lambda: (value := envoy.stat(stat)) >= before + by and value,
        timeout=10,
        message=f"{envoy.name}: {stat} did not rise by {by} from {before}",
    )


def test_a_request_to_the_pod_ip_goes_through_virtual_inbound(world: Inbound) -> None:
    envoy = world.sidecar
    cluster_stat = "cluster.inbound|9080||.upstream_rq_total"
    chain_stat = "http.inbound_0.0.0.0_9080.downstream_rq_total"
    before = (envoy.stat(cluster_stat), envoy.stat(chain_stat))
    replies = [get(world, world.ratings, APP_PORT, "/ratings/0") for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 200]
    body: dict[str, Any] = replies[0].json()
    assert (body["service"], body["pod"], body["path"]) == ("ratings", "ratings-v1", "/ratings/0")
    # Envoy's HTTP connection manager handled it: it gave the request an ID.
    assert body["headers"].get("x-request-id")
    rising(envoy, cluster_stat, before[0], 3)
    rising(envoy, chain_stat, before[1], 3)


def test_a_tcp_port_reaches_the_app_from_127_0_0_6(world: Inbound) -> None:
    envoy = world.sidecar
    stat = f"cluster.inbound|{TCP_TARGET_PORT}||.upstream_cx_total"
    before = envoy.stat(stat)
    report = world.client.probe((world.ratings.ip, TCP_TARGET_PORT))
    assert report["label"] == "ratings-tcp"
    # Sent on to where the client was going (the pod's IP and port), from Istio's
    # inbound source address: the capture rules let it through to the application.
    assert report["local"] == f"{world.ratings.ip}:{TCP_TARGET_PORT}"
    assert report["peer"].split(":")[0] == "127.0.0.6"
    rising(envoy, stat, before, 1)


def test_a_port_no_service_declares_goes_through_the_inbound_passthrough(
    world: Inbound,
) -> None:
    envoy = world.sidecar
    stat = "cluster.InboundPassthroughCluster.upstream_rq_total"
    before = envoy.stat(stat)
    reply = get(world, world.ratings, UNDECLARED_PORT, "/hello.txt")
    assert (reply.status, reply.text) == (200, "undeclared port\n")
    assert reply.headers["server"] == "envoy"  # Envoy's HTTP chain answered on its way out
    rising(envoy, stat, before, 1)


def test_traffic_to_15006_itself_is_blackholed(world: Inbound) -> None:
    envoy = world.sidecar
    stat = "cluster.BlackHoleCluster.upstream_cx_none_healthy"
    before = envoy.stat(stat)
    with world.client.connect((world.ratings.ip, 15006)) as conn:
        conn.settimeout(5)
        assert conn.recv(1) == b""  # closed: no loop back into virtualInbound
    rising(envoy, stat, before, 1)


def test_a_sidecar_ingress_default_endpoint_reaches_an_app_on_loopback(world: Inbound) -> None:
    """The Service's port 9080 sends to the pod's IP, where nothing listens; a Sidecar
    `ingress:` with defaultEndpoint 127.0.0.1:8080 makes it reach the application that
    listens on loopback only. The change takes effect while the sidecar runs."""
    envoy = world.details_sidecar
    assert get(world, world.details, APP_PORT, "/hello.txt").status == 503
    world.mesh.write_config(
        "details-sidecar.yaml",
        [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": {"name": "details", "namespace": "default"},
                "spec": {
                    "workloadSelector": {"labels": {"app": "details"}},
                    "ingress": [
                        {
                            "port": {"number": APP_PORT, "protocol": "HTTP", "name": "http"},
                            "defaultEndpoint": f"127.0.0.1:{LOOPBACK_APP_PORT}",
                        }
                    ],
                },
            }
        ],
    )

    def static_cluster() -> bool:
        found = envoy.dynamic_clusters().get("inbound|9080||")
        return found is not None and found.config.get("type") == "STATIC"

    wait_until(static_cluster, timeout=15, message="inbound|9080|| never became STATIC")
    stat = "cluster.inbound|9080||.upstream_rq_total"
    before = envoy.stat(stat)
    reply = get(world, world.details, APP_PORT, "/hello.txt")
    assert (reply.status, reply.text) == (200, "details on loopback\n")
    # Chains are named after the pod's IP for Sidecar ingress listeners, as Istio does.
    rising(envoy, f"http.inbound_{world.details.ip}_9080.downstream_rq_total", 0, 1)
    rising(envoy, stat, before, 1)


def test_a_capture_mode_none_ingress_listener_works_without_iptables(world: Inbound) -> None:
    """A pod without capture rules: its sidecar serves a Sidecar `ingress:` port with
    captureMode NONE as a listener bound to the pod's IP, in front of an app on loopback."""
    mesh = world.mesh
    vm = mesh.add_pod("vm-1", labels={"app": "vm"}, capture=False)
    serve_directory(vm, "127.0.0.1", LOOPBACK_APP_PORT, "served without iptables\n")
    mesh.write_config(
        "vm-sidecar.yaml",
        [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": {"name": "vm", "namespace": "default"},
                "spec": {
                    "workloadSelector": {"labels": {"app": "vm"}},
                    "ingress": [
                        {
                            "port": {"number": 9443, "protocol": "HTTP", "name": "http"},
                            "captureMode": "NONE",
                            "defaultEndpoint": f"127.0.0.1:{LOOPBACK_APP_PORT}",
                        }
                    ],
                },
            }
        ],
    )
    envoy = vm.start_sidecar()
    envoy.wait_ready()
    listener = envoy.wait_for_listener(f"{vm.ip}_9443")
    assert listener["local_address"]["socket_address"]["address"] == vm.ip
    # No capture rule in this pod (only kube-proxy's service rules, as in every pod).
    assert "ISTIO" not in vm.nat_table()
    reply = get(world, vm, 9443, "/hello.txt")
    assert (reply.status, reply.text) == (200, "served without iptables\n")
    rising(envoy, "cluster.inbound|9443||.upstream_rq_total", 0, 1)
