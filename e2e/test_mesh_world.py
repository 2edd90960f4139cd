"""The mesh test world itself (testsupport/mesh): pods, capture, names, pilotfish, teardown.

Every check is on real traffic between network namespaces: the iptables rules are the
kernel's, SO_ORIGINAL_DST is what the kernel recorded, the sidecar is a real Envoy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testsupport import bookinfo
from testsupport.mesh import (
    EXCLUDED_INBOUND_PORTS,
    INBOUND_CAPTURE_PORT,
    OUTBOUND_CAPTURE_PORT,
    PROBE,
    PROXY_UID,
    REPO_ROOT,
    MeshError,
    MeshWorld,
    Pod,
    Service,
    sweep_leftovers,
)
from testsupport.mesh import netns as nslib
from testsupport.wait import wait_until

APP_PORT = 9080
TUNNEL_PORT = 15008


@dataclass
class Pods:
    client: Pod  # a sidecar pod: "the sidecar" is a probe on 15001/15006, as UID 1337
    server: Pod  # a sidecar pod with an app on 9080 and listeners on Envoy's own ports
    plain: Pod  # no capture (no sidecar), an app on 9080
    other_ns: Pod  # no capture, in namespace "other"
    service: Service  # selects `server`


@pytest.fixture(scope="module")
def pods(mesh: MeshWorld) -> Pods:
    client = mesh.add_pod("client", labels={"app": "client"})
    server = mesh.add_pod("server", labels={"app": "server"})
    plain = mesh.add_pod("plain", labels={"app": "plain"}, capture=False)
    other = mesh.add_pod("elsewhere", "other", capture=False)
    service = mesh.add_service("server")
    client.start_probe([OUTBOUND_CAPTURE_PORT, INBOUND_CAPTURE_PORT], label="client-sidecar")
    server.start_probe([OUTBOUND_CAPTURE_PORT, INBOUND_CAPTURE_PORT], label="server-sidecar")
    server.start_probe([APP_PORT], uid=None, label="server-app")
    server.start_probe([*EXCLUDED_INBOUND_PORTS, TUNNEL_PORT], label="server-envoy-ports")
    plain.start_probe([APP_PORT], uid=None, label="plain-app")
    return Pods(client, server, plain, other, service)


def probe_as(pod: Pod, address: str, uid: int | None) -> dict[str, Any]:
    """Connect from `pod` as `uid` (a real process of that user) and read the report."""
    done = pod.exec([sys.executable, str(PROBE), "--connect", address], uid=uid)
    return dict(json.loads(done.stdout))


def test_pods_reach_each_other_directly(pods: Pods) -> None:
    report = pods.other_ns.probe((pods.plain.ip, APP_PORT))
    assert report["label"] == "plain-app"
    assert report["peer"].split(":")[0] == pods.other_ns.ip  # no NAT on the way
    assert report["local"] == f"{pods.plain.ip}:{APP_PORT}"


def test_the_world_is_apart_from_the_root_namespace(mesh: MeshWorld, pods: Pods) -> None:
    root_addresses = nslib.ip("-o", "addr", "show")
    bridge_links = nslib.ip("-o", "link", "show", "master", "br0", netns=mesh.bridge_netns)
    assert len(bridge_links.splitlines()) == len(mesh.pods)  # every pod's veth, on br0
    for pod in mesh.pods.values():
        assert f" {pod.ip}/" not in root_addresses
        assert f"inet {pod.ip}/24" in nslib.ip("-o", "addr", "show", "eth0", netns=pod.netns)
    # The cluster IP is on no interface anywhere: only a route leads to it.
    ip = str(pods.service.cluster_ip)
    for ns in [mesh.bridge_netns, *(p.netns for p in mesh.pods.values())]:
        assert ip not in nslib.ip("-o", "addr", "show", netns=ns)
    assert ip not in root_addresses
    route = nslib.ip("route", "get", ip, netns=pods.client.netns)
    assert "dev eth0" in route


def test_outbound_to_a_cluster_ip_is_redirected_to_15001(pods: Pods) -> None:
    report = pods.client.probe((str(pods.service.cluster_ip), APP_PORT))
    assert report["label"] == "client-sidecar"
    assert report["listener_port"] == OUTBOUND_CAPTURE_PORT
    assert report["original_dst"] == f"{pods.service.cluster_ip}:{APP_PORT}"
    assert report["uid"] == PROXY_UID  # the "sidecar" runs as the proxy user
    assert report["peer"].split(":")[0] == pods.client.ip


def test_outbound_to_a_pod_ip_is_redirected_too(pods: Pods) -> None:
    report = pods.client.probe((pods.plain.ip, APP_PORT))
    assert (report["label"], report["listener_port"]) == ("client-sidecar", 15001)
    assert report["original_dst"] == f"{pods.plain.ip}:{APP_PORT}"


def test_cluster_ips_lead_to_a_pod_when_no_sidecar_takes_the_connection(
    mesh: MeshWorld, pods: Pods
) -> None:
    # kube-proxy's job, done in each pod's nat OUTPUT after the capture rules.
    mesh.write_registry()
    target = f"{pods.service.cluster_ip}:{APP_PORT}"
    # A pod without capture: straight to the Service's pod (there, into its sidecar).
    report = pods.plain.probe((str(pods.service.cluster_ip), APP_PORT))
    assert (report["label"], report["original_dst"]) == (
        "server-sidecar",
        f"{pods.server.ip}:{APP_PORT}",
    )
    # The proxy user in a sidecar pod (a passthrough): likewise.
    as_proxy = probe_as(pods.client, target, uid=PROXY_UID)
    assert (as_proxy["label"], as_proxy["original_dst"]) == (
        "server-sidecar",
        f"{pods.server.ip}:{APP_PORT}",
    )
    # The workload's own connection is still its sidecar's, to the cluster IP.
    report = pods.client.probe((str(pods.service.cluster_ip), APP_PORT))
    assert (report["label"], report["original_dst"]) == ("client-sidecar", target)


def test_traffic_of_the_proxy_user_is_not_redirected(pods: Pods) -> None:
    target = f"{pods.plain.ip}:{APP_PORT}"
    as_proxy = probe_as(pods.client, target, uid=PROXY_UID)
    assert as_proxy["label"] == "plain-app"  # straight to the destination
    assert as_proxy["peer"].split(":")[0] == pods.client.ip
    as_app = probe_as(pods.client, target, uid=1000)  # any other user: captured
    assert (as_app["label"], as_app["original_dst"]) == ("client-sidecar", target)


def test_loopback_is_not_redirected(pods: Pods) -> None:
    # The app's own loopback traffic stays local (Envoy's admin, a local agent...).
    report = pods.server.probe(("127.0.0.1", APP_PORT))
    assert report["label"] == "server-app"
    # The pod's own IP is local too: routed over lo, not captured for other users.
    report = pods.server.probe((pods.server.ip, APP_PORT))
    assert report["label"] == "server-app"


def test_inbound_to_the_app_port_is_redirected_to_15006(pods: Pods) -> None:
    report = pods.plain.probe((pods.server.ip, APP_PORT))
    assert report["label"] == "server-sidecar"
    assert report["listener_port"] == INBOUND_CAPTURE_PORT
    assert report["original_dst"] == f"{pods.server.ip}:{APP_PORT}"
    assert report["peer"].split(":")[0] == pods.plain.ip  # the caller's address is kept


def test_inbound_to_any_other_port_is_redirected_too(pods: Pods) -> None:
    report = pods.plain.probe((pods.server.ip, 7777))  # nothing listens there
    assert (report["label"], report["original_dst"]) == (
        "server-sidecar",
        f"{pods.server.ip}:7777",
    )


@pytest.mark.parametrize("port", [*EXCLUDED_INBOUND_PORTS, TUNNEL_PORT])
def test_inbound_to_envoys_own_ports_is_not_redirected(pods: Pods, port: int) -> None:
    report = pods.plain.probe((pods.server.ip, port))
    assert report["label"] == "server-envoy-ports"
    assert report["listener_port"] == port


def test_names_resolve_through_the_pods_hosts_file(mesh: MeshWorld, pods: Pods) -> None:
    def getent(pod: Pod, name: str) -> str:
        done = pod.exec(["getent", "hosts", name], check=False)
        return done.stdout.split()[0] if done.returncode == 0 else ""

    ip = str(pods.service.cluster_ip)
    for name in ["server", "server.default", "server.default.svc", pods.service.fqdn]:
        assert getent(pods.client, name) == ip, name
    # Short names only within the namespace, as with cluster DNS search domains.
    assert getent(pods.other_ns, "server") == ""
    assert getent(pods.other_ns, "server.default") == ip
    assert getent(pods.client, "client") == pods.client.ip
    # Names added later reach pods that already run (the file is rewritten in place).
    mesh.add_host("edition.cnn.com", pods.plain.ip)
    assert getent(pods.client, "edition.cnn.com") == pods.plain.ip
    assert pods.client.resolve("edition.cnn.com") == pods.plain.ip
    # The root namespace knows none of it.
    assert subprocess.run(["getent", "hosts", pods.service.fqdn], check=False).returncode != 0


def test_a_sidecar_from_pilotfish_bootstrap_connects_and_is_synced(
    mesh: MeshWorld, pods: Pods
) -> None:
    pilotfish = mesh.start_pilotfish()
    mesh.write_registry()
    pod = mesh.add_pod("web", labels={"app": "web", "version": "v1"})
    done = subprocess.run(
        [sys.executable, "-m", "pilotfish.cli", *pod.bootstrap_args(), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    envoy = pod.start_sidecar(json.loads(done.stdout))
    node_id = f"sidecar~{pod.ip}~web.default~default.svc.cluster.local"

    def synced() -> dict[str, Any] | None:
        for entry in pilotfish.debug("/debug/syncz").json():
            if entry["node_id"] == node_id and all(
                entry["types"][t]["status"] == "SYNCED" for t in ("cds", "lds")
            ):
                return dict(entry)
        return None

    wait_until(synced, timeout=15, message="the sidecar is not SYNCED in /debug/syncz")
    envoy.wait_ready()
    info = envoy.server_info()  # the admin API, over its Unix socket
    assert info["node"]["id"] == node_id
    assert info["node"]["metadata"]["INTERCEPTION_MODE"] == "REDIRECT"
    assert info["state"] == "LIVE"
    status = Path(f"/proc/{envoy.pid}/status").read_text()
    assert f"Uid:\t{PROXY_UID}\t" in status  # Envoy itself runs as the proxy user
    # Envoy's own ports answer from another pod: not captured, served by the bootstrap's
    # static listeners.
    ready = pods.plain.request(f"http://{pod.ip}:15021/healthz/ready")
    assert (ready.status, ready.text.strip()) == (200, "LIVE")
    stats = pods.plain.request(f"http://{pod.ip}:15090/stats/prometheus")
    assert stats.status == 200
    assert "envoy_server_live" in stats.text


def test_bookinfo_stand_ins_call_each_other(mesh: MeshWorld, pods: Pods) -> None:
    # Headless Services: the apps reach each other by name without any proxy.
    app = bookinfo.deploy(mesh, "bookinfo", sidecars=False, headless=True)
    client = mesh.add_pod("curl", "bookinfo", capture=False)
    page = app.get(client, "productpage", "/productpage", headers={"end-user": "jason"})
    assert page.status == 200
    body = page.json()
    assert (body["service"], body["version"], body["pod"]) == (
        "productpage",
        "v1",
        "productpage-v1",
    )
    details, reviews = body["calls"]["details"], body["calls"]["reviews"]
    assert (details["status"], details["service"], details["path"]) == (
        200,
        "details",
        "/details/0",
    )
    assert (reviews["status"], reviews["service"]) == (200, "reviews")
    assert reviews["headers"]["end-user"] == "jason"  # passed on, as the sample does
    for version, calls_ratings in [("v1", False), ("v2", True), ("v3", True)]:
        reply = client.request(f"http://{app.pod('reviews', version).ip}:9080/reviews/0").json()
        assert reply["version"] == version
        assert ("ratings" in reply["calls"]) is calls_ratings
        if calls_ratings:
            assert reply["calls"]["ratings"]["service"] == "ratings"
    registry = mesh.registry_manifests()
    slices = {
        d["metadata"]["name"]: d
        for d in registry
        if d["kind"] == "EndpointSlice" and d["metadata"]["namespace"] == "bookinfo"
    }
    reviews_ips = {e["addresses"][0] for e in slices["reviews-mesh"]["endpoints"]}
    assert reviews_ips == {app.pod("reviews", v).ip for v in ("v1", "v2", "v3")}
    labels = {
        d["metadata"]["name"]: d["metadata"]["labels"] for d in registry if d["kind"] == "Pod"
    }
    assert labels["reviews-v2"] == {"app": "reviews", "version": "v2"}


def test_teardown_leaves_nothing_even_when_the_test_body_raised() -> None:
    world = MeshWorld()
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="the test body failed"), world:
        pod = world.add_pod("doomed", labels={"app": "doomed"})
        world.add_service("doomed")
        world.start_pilotfish()
        pids.append(pod.start_probe([OUTBOUND_CAPTURE_PORT]).pid)
        pids.append(pod.start_sidecar().pid or 0)
        assert world.leftovers()  # namespaces, /etc/netns entries, the run directory
        raise RuntimeError("the test body failed")
    assert world.leftovers() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


_CRASHING_RUN = """
import sys
from testsupport.mesh import MeshWorld
world = MeshWorld().start()
world.add_pod("orphan").start_probe([15001])
print(world.run_id, flush=True)
sys.stdin.read()  # until killed
"""


def test_a_crashed_runs_leftovers_are_swept(mesh: MeshWorld) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_RUN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_id, "the crashing run did not start"
    crashed_prefix = f"pfm-{run_id}-"
    assert any(n.startswith(crashed_prefix) for n in nslib.list_netns())
    swept = sweep_leftovers()
    assert run_id in swept
    assert not any(n.startswith(crashed_prefix) for n in nslib.list_netns())
    assert mesh.run_id not in swept  # a live world (this module's) is left alone
    assert mesh.leftovers() != []


def test_pod_names_are_unique(mesh: MeshWorld, pods: Pods) -> None:
    with pytest.raises(MeshError, match="exists"):
        mesh.add_pod("client")
