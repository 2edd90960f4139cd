"""Delta xDS across a control-plane restart: Envoy keeps its resources, reconnects with
their versions (``initial_resource_versions``), and gets only what changed meanwhile.

Real processes as in test_httpbin_gateway.py: pilotfish in process (stopped and started
again on the same xDS port: a new process would do the same, the versions are content
hashes), a real Envoy on DELTA_GRPC, real httpbin. What pilotfish sent is counted by its
``pilotfish_xds_pushed_resources_total`` metric (resources carried, per type).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from e2e.test_httpbin_gateway import Deployment, write_docs
from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from testsupport.envoy import EnvoyProcess
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.upstreams import HttpbinServer
from testsupport.wait import wait_until

KINDS = ("cds", "eds", "lds", "rds")


def pushed_resources() -> dict[str, float]:
    return {
        k: REGISTRY.get_sample_value("pilotfish_xds_pushed_resources_total", {"type": k}) or 0.0
        for k in KINDS
    }


def wait_synced(world: Deployment) -> None:
    seen: list[object] = []

    def synced() -> bool:
        types = world.syncz()["types"]
        seen[:] = [types]
        return all(types[k]["status"] == "SYNCED" for k in KINDS)

    wait_until(synced, timeout=20, message=lambda: f"never SYNCED: {seen}")


def test_a_reconnecting_envoy_gets_only_what_changed(tmp_path: Path) -> None:
    xds_address = f"127.0.0.1:{free_port()}"
    with HttpbinServer() as httpbin:
        world = Deployment(tmp_path, free_port(), httpbin)
        world.xds_protocol = "delta"
        world.write_base_config()
        with InProcessPilotfish(tmp_path, xds_address=xds_address) as first:
            world.pilotfish = first
            options = BootstrapOptions(
                proxy_type="router",
                name="ingress-0",
                namespace="istio-system",
                labels={"istio": "ingressgateway"},
                xds_address=xds_address,
                admin_port=0,
                xds_protocol="delta",
            )
            bootstrap = render_bootstrap(options)
            world.node_id = bootstrap["node"]["id"]
            with EnvoyProcess(bootstrap, name="ingress", xds_protocol="delta") as envoy:
                world.envoy = envoy
                envoy.wait_ready()
                world.wait_status("/status/418", 418)
                world.wait_status("/headers", 404)
                wait_synced(world)
                assert world.syncz()["xds_protocol"] == "delta"
                pid = envoy.pid
                clusters_modified = envoy.stat("cluster_manager.cluster_modified")
                listeners_modified = envoy.stat("listener_manager.listener_modified")
                connects = envoy.stat("cluster.xds-grpc.upstream_cx_total")

                first.stop()  # the with block's stop then does nothing
                # Meanwhile one route changes: /headers now goes to httpbin.
                docs = world.base_gateway_docs()
                docs[1]["spec"]["http"][0]["match"].append({"uri": {"prefix": "/headers"}})
                write_docs(tmp_path / "gateway.yaml", docs)
                # Envoy keeps serving what it has while the control plane is away.
                assert world.get("/status/418").status == 418

                before = pushed_resources()
                with InProcessPilotfish(tmp_path, xds_address=xds_address) as second:
                    world.pilotfish = second
                    envoy.wait_for_stat(
                        "cluster.xds-grpc.upstream_cx_total", lambda v: v > connects
                    )
                    world.wait_status("/headers", 200)
                    wait_synced(world)
                    sent = {k: v - before[k] for k, v in pushed_resources().items()}
                    # The route configuration, and nothing else: the cluster, its
                    # endpoints and the listener Envoy kept were up to date.
                    assert sent == {"cds": 0, "eds": 0, "lds": 0, "rds": 1}, sent
                    assert envoy.pid == pid
                    assert envoy.stat("cluster_manager.cluster_modified") == clusters_modified
                    assert envoy.stat("listener_manager.listener_modified") == listeners_modified
                    assert world.get("/status/418").status == 418
