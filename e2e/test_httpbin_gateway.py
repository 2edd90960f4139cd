"""Istio's httpbin ingress walkthrough against pilotfish, end to end.

Real processes: pilotfish (in-process, real gRPC and HTTP ports), a real Envoy 1.40
bootstrapped by `pilotfish bootstrap`'s code, real httpbin. The config is the YAML of
examples/httpbin-gateway with two ports changed: the gateway Service's targetPort (a
free port instead of 8080) and httpbin's endpoint port (wherever it started).
One Envoy and one pilotfish serve the whole module; each test starts from the base
config and waits until Envoy serves it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.type.matcher.v3 import regex_pb2

from pilotfish.bootstrap import XDS_PROTOCOLS, BootstrapOptions, XdsProtocol, render_bootstrap
from pilotfish.xds.snapshot import Snapshot
from pilotfish.xds.types import ROUTE
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.upstreams import HttpbinServer
from testsupport.wait import wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "httpbin-gateway"
HOST = {"Host": "httpbin.example.com"}


def load_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


def write_docs(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


class Deployment:
    """The module's running world, and the config files it reads."""

    def __init__(self, config_dir: Path, gateway_port: int, httpbin: HttpbinServer) -> None:
        self.config_dir = config_dir
        self.gateway_port = gateway_port
        self.httpbin = httpbin
        self.pilotfish: InProcessPilotfish
        self.envoy: EnvoyProcess
        self.node_id = ""
        self.xds_protocol: XdsProtocol = "sotw"

    # -- config files --------------------------------------------------------------------

    def base_gateway_docs(self) -> list[dict[str, Any]]:
        return load_docs("gateway.yaml")

    def write_base_config(self) -> None:
        """Put the base files back, touching only those that differ (each write is a
        change event: rewriting identical files would only add pushes to wait out)."""
        ingress = load_docs("ingressgateway.yaml")
        ingress[0]["spec"]["ports"][0]["targetPort"] = self.gateway_port
        httpbin = load_docs("httpbin.yaml")
        httpbin[1]["ports"][0]["port"] = self.httpbin.port
        wanted = {
            "gateway.yaml": self.base_gateway_docs(),
            "ingressgateway.yaml": ingress,
            "httpbin.yaml": httpbin,
        }
        for stray in self.config_dir.glob("*.yaml"):
            if stray.name not in wanted:
                stray.unlink()
        for name, docs in wanted.items():
            path = self.config_dir / name
            text = yaml.safe_dump_all(docs, sort_keys=False)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    # -- traffic ---------------------------------------------------------------------------

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return request(
            f"http://127.0.0.1:{self.gateway_port}{path}", headers=headers or HOST, timeout=5
        )

    def wait_status(self, path: str, status: int, timeout: float = 15.0) -> Response:
        def answered() -> Response | None:
            response = self.get(path)
            return response if response.status == status else None

        return wait_until(
            answered,
            timeout=timeout,
            ignore=(OSError,),
            message=lambda: (
                f"GET {path} never returned {status}; envoy log:\n{self.envoy.log_tail()}"
            ),
        )

    def syncz(self) -> dict[str, Any]:
        entries = [
            e for e in self.pilotfish.debug("/debug/syncz").json() if e["node_id"] == self.node_id
        ]
        assert len(entries) == 1, entries
        found: dict[str, Any] = entries[0]
        return found


@pytest.fixture(scope="module", params=XDS_PROTOCOLS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The world once with Envoy on state-of-the-world ADS, once on delta ADS."""
    config_dir = tmp_path_factory.mktemp("config")
    with HttpbinServer() as httpbin:
        deployment = Deployment(config_dir, free_port(), httpbin)
        deployment.write_base_config()
        with InProcessPilotfish(config_dir) as pilotfish:
            deployment.pilotfish = pilotfish
            options = BootstrapOptions(
                proxy_type="router",
                name="ingress-0",
                namespace="istio-system",
                labels={"istio": "ingressgateway"},
                xds_address=pilotfish.xds_address,
                admin_port=0,
                xds_protocol=request.param,
            )
            deployment.xds_protocol = request.param
            bootstrap = render_bootstrap(options)
            deployment.node_id = bootstrap["node"]["id"]
            with EnvoyProcess(bootstrap, name="ingress", xds_protocol=request.param) as envoy:
                deployment.envoy = envoy
                envoy.wait_ready()
                yield deployment


@pytest.fixture(autouse=True)
def base_config(world: Deployment) -> Deployment:
    world.write_base_config()
    # The base config has no problems: an empty report means pilotfish has applied it
    # (traffic alone cannot tell: a previous test's invalid edit keeps the same routes
    # in force, and its reload could land in the middle of the next test).
    wait_until(
        lambda: world.pilotfish.debug("/debug/config_status").json() == [],
        message=lambda: (
            f"base config never applied: {world.pilotfish.debug('/debug/config_status').text}"
        ),
    )
    world.wait_status("/status/418", 418)
    world.wait_status("/headers", 404)
    return world


def test_walkthrough_answers(world: Deployment) -> None:
    ok = world.get("/status/200")
    assert ok.status == 200
    assert ok.headers.get("server") == "envoy"
    assert "x-envoy-upstream-service-time" in ok.headers
    teapot = world.get("/status/418")
    assert teapot.status == 418 and "teapot" in teapot.text
    assert world.get("/delay/0").status == 200  # the second match of the same rule
    missing = world.get("/headers")
    assert missing.status == 404 and "x-envoy-upstream-service-time" not in missing.headers
    # Another Host has no virtual host at all: also 404 from Envoy.
    assert world.get("/status/200", headers={"Host": "other.example.com"}).status == 404
    # The Host header may carry the port (istio#6469).
    assert world.get("/status/200", headers={"Host": "httpbin.example.com:80"}).status == 200


def test_listener_is_the_target_port_of_the_gateway_service(world: Deployment) -> None:
    listeners = world.envoy.dynamic_listeners()
    assert f"0.0.0.0_{world.gateway_port}" in listeners


def test_adding_a_match_takes_effect_without_restart(world: Deployment) -> None:
    envoy_pid = world.envoy.pid
    docs = world.base_gateway_docs()
    docs[1]["spec"]["http"][0]["match"].append({"uri": {"prefix": "/headers"}})
    write_docs(world.config_dir / "gateway.yaml", docs)
    response = world.wait_status("/headers", 200)
    assert response.json()["headers"]["Host"] == "httpbin.example.com"
    assert world.envoy.pid == envoy_pid and world.envoy.running()


def test_removing_the_virtualservice_gives_404(world: Deployment) -> None:
    write_docs(world.config_dir / "gateway.yaml", world.base_gateway_docs()[:1])
    world.wait_status("/status/200", 404)


def envoy_accepted_versions(envoy: EnvoyProcess) -> dict[str, set[str]]:
    """The version of the last update Envoy accepted, per type, as its admin API says.

    LDS and CDS: the config dump's section-level version_info (a resource's own
    version_info only moves when that resource changes). RDS: each route config's.
    EDS: the dump leaves it empty; the `cluster.<name>.version_text` readout has it.
    """
    dump = envoy.config_dump()
    sections = {c["@type"].rsplit(".", 1)[-1]: c for c in dump["configs"]}
    texts = envoy.text_readouts()
    return {
        "lds": {sections["ListenersConfigDump"]["version_info"]},
        "cds": {sections["ClustersConfigDump"]["version_info"]},
        "rds": {r["version_info"] for r in sections["RoutesConfigDump"]["dynamic_route_configs"]},
        "eds": {
            v
            for k, v in texts.items()
            if k.startswith("cluster.outbound|") and k.endswith(".version_text")
        },
    }


def route_hashes(world: Deployment) -> list[str]:
    server = world.pilotfish.server
    assert server is not None
    current = server.control_plane.cache.get(world.node_id)
    assert current is not None
    return list(current.snapshot.resource_hashes(ROUTE).values())


def wait_in_sync(world: Deployment) -> None:
    """Until syncz says SYNCED for every type at the very versions Envoy accepted."""
    kinds = ("cds", "eds", "lds", "rds")
    seen: list[object] = []

    def expected(kind: str, acked: str) -> set[str]:
        if kind == "rds" and world.xds_protocol == "delta":
            # Delta: a route configuration's version is its own (the content hash).
            return set(world.pilotfish.call(lambda: route_hashes(world)))
        return {acked}

    def agree() -> bool:
        # Polled: a push may be in flight between reading syncz and reading Envoy.
        types = world.syncz()["types"]
        envoy = envoy_accepted_versions(world.envoy)
        seen[:] = [types, envoy]
        return all(
            types[k]["status"] == "SYNCED" and envoy[k] == expected(k, types[k]["acked"])
            for k in kinds
        )

    wait_until(agree, message=lambda: f"syncz and Envoy never agreed: {seen}")


def test_syncz_shows_synced_at_the_versions_envoy_reports(world: Deployment) -> None:
    wait_in_sync(world)


def test_bad_files_are_reported_and_the_rest_keeps_serving(world: Deployment) -> None:
    (world.config_dir / "broken.yaml").write_text("kind: [unclosed\n")
    docs = world.base_gateway_docs()
    docs[1]["spec"]["http"][0]["rout"] = docs[1]["spec"]["http"][0].pop("route")  # typo
    write_docs(world.config_dir / "gateway.yaml", docs)

    def reported() -> list[dict[str, Any]] | None:
        status = world.pilotfish.debug("/debug/config_status").json()
        return status if len(status) >= 2 else None

    status = wait_until(reported, message="config_status never reported both problems")
    by_file = {e["file"]: e for e in status}
    assert "not valid YAML" in by_file["broken.yaml"]["message"]
    typo = by_file["gateway.yaml"]
    assert (typo["kind"], typo["namespace"], typo["name"]) == (
        "VirtualService",
        "default",
        "httpbin",
    )
    assert typo["field"] == "spec.http[0].rout"
    assert "last valid version stays in force" in typo["message"]
    # The VirtualService's last valid version is still what Envoy serves.
    assert world.get("/status/418").status == 418
    metrics = world.pilotfish.debug("/metrics").text
    assert 'pilotfish_config_errors{severity="error"} 2.0' in metrics


def test_a_nack_is_reported_not_resent_and_old_config_keeps_serving(world: Deployment) -> None:
    server = world.pilotfish.server
    assert server is not None
    cache = server.control_plane.cache

    def inject_bad_route() -> None:
        current = cache.get(world.node_id)
        assert current is not None
        routes = dict(current.snapshot.resources[ROUTE])
        bad = route_pb2.RouteConfiguration()
        bad.CopyFrom(routes[f"http.{world.gateway_port}"])
        bad_route = route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(
                safe_regex=regex_pb2.RegexMatcher(regex="(?=lookahead)")
            ),
            direct_response=route_components_pb2.DirectResponseAction(status=200),
        )
        bad.virtual_hosts[0].routes.insert(0, bad_route)  # RE2 refuses lookahead: Envoy NACKs
        routes[bad.name] = bad
        resources = {t: dict(r) for t, r in current.snapshot.resources.items()}
        resources[ROUTE] = routes
        cache.set_snapshot(world.node_id, Snapshot(resources), check=False)

    rejected_stat = (
        f"http.outbound_0.0.0.0_{world.gateway_port}.rds.http.{world.gateway_port}.update_rejected"
    )
    rejected_before = world.envoy.stats().get(rejected_stat, 0)
    world.pilotfish.call(inject_bad_route)

    def nacked() -> dict[str, Any] | None:
        rds = world.syncz()["types"]["rds"]
        return rds if rds["status"] == "ERROR" else None

    rds = wait_until(nacked, message="the NACK never showed in syncz")
    assert "(?=" in rds["nack"]["message"]  # Envoy's own words, passed through
    assert rds["nacks"] == 1
    world.envoy.wait_for_stat(rejected_stat, lambda v: v == rejected_before + 1)
    metrics = world.pilotfish.debug("/metrics").text
    assert any(
        line.startswith("pilotfish_xds_nacks_total")
        and 'type="rds"' in line
        and not line.endswith(" 0.0")
        for line in metrics.splitlines()
    ), metrics
    # Old config keeps serving: the bad route (200 for everything) is not in force.
    assert world.get("/headers").status == 404
    assert world.get("/status/418").status == 418
    # Not re-sent in a loop: with no new change the NACK count stays at one. Traffic in
    # between gives the stream time to misbehave if it were going to.
    for _ in range(20):
        assert world.get("/status/200").status == 200
    assert world.syncz()["types"]["rds"]["nacks"] == 1
    assert world.envoy.stats().get(rejected_stat, 0) == rejected_before + 1

    # The next real change is sent and accepted again.
    world.pilotfish.run(server.reload())
    wait_until(
        lambda: world.syncz()["types"]["rds"]["status"] == "SYNCED", message="never re-SYNCED"
    )


def test_a_sidecar_gets_its_outbound_config(world: Deployment) -> None:
    """A sidecar in httpbin's namespace gets Istio's outbound shape over ADS (real traffic
    through sidecars is e2e/test_mesh_sidecars.py's, in pods with iptables capture)."""
    options = BootstrapOptions(
        proxy_type="sidecar",
        name="productpage-v1-123",
        namespace="default",
        labels={"app": "productpage"},
        xds_address=world.pilotfish.xds_address,
        admin_port=0,
        xds_protocol=world.xds_protocol,
    )
    httpbin = "outbound|8000||httpbin.default.svc.cluster.local"
    with EnvoyProcess(
        render_bootstrap(options), name="sidecar", xds_protocol=world.xds_protocol
    ) as sidecar:
        sidecar.wait_ready()  # LIVE: its initial CDS and LDS arrived
        assert {httpbin, "PassthroughCluster", "BlackHoleCluster"} <= set(
            sidecar.dynamic_clusters()
        )
        # httpbin's port: a listener that binds nothing (virtualOutbound hands it
        # connections), its routes over RDS `8000`.
        wait_until(
            lambda: (
                "0.0.0.0_8000" in sidecar.dynamic_listeners()
                and "8000" in sidecar.dynamic_route_configs()
            ),
            message="no 0.0.0.0_8000 listener and route configuration 8000",
        )
        routes = sidecar.dynamic_route_configs()["8000"].config
        hosts = {v["name"]: v for v in routes["virtual_hosts"]}
        assert set(hosts) == {"httpbin.default.svc.cluster.local:8000", "allow_any"}
        assert "httpbin" in hosts["httpbin.default.svc.cluster.local:8000"]["domains"]


def test_a_malformed_node_id_is_refused(world: Deployment) -> None:
    async def connect() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(world.pilotfish.xds_address) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            request_message = discovery_pb2.DiscoveryRequest(
                node=base_pb2.Node(id="not-a-node-id"),
                type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster",
            )
            call = stub.StreamAggregatedResources(iter([copy.deepcopy(request_message)]))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:
                    pass
            return caught.value

    error = asyncio.run(connect())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not-a-node-id" in (error.details() or "")
    assert "router~" in (error.details() or "")  # the message shows the expected form


def test_health_and_metrics(world: Deployment) -> None:
    assert world.pilotfish.debug("/healthz/ready").status == 200
    metrics = world.pilotfish.debug("/metrics").text
    assert "pilotfish_xds_connected_proxies 1.0" in metrics
    assert 'pilotfish_xds_pushes_total{type="cds"}' in metrics
    dump = world.pilotfish.debug(f"/debug/config_dump?proxy={world.node_id}").json()
    assert [r["name"] for r in dump["resources"]["lds"]["resources"]] == [
        f"0.0.0.0_{world.gateway_port}"
    ]
    rds_versions = dump["resources"]["rds"]["resource_versions"]
    assert sorted(rds_versions.values()) == sorted(
        world.pilotfish.call(lambda: route_hashes(world))
    )
    if world.xds_protocol == "delta":  # what Envoy shows as each route configuration's version
        assert envoy_accepted_versions(world.envoy)["rds"] == set(rds_versions.values())
    assert world.pilotfish.debug("/debug/config_dump?proxy=nobody").status == 404


def test_a_resource_envoy_would_reject_is_held_back_reported_and_never_nacked(
    world: Deployment,
) -> None:
    """A DestinationRule with two problems: a negative connectTimeout (the translator
    knows Envoy refuses it: reported, ignored) and an SNI over 255 bytes (only the
    pre-push check of Envoy's own constraints catches it: the cluster is not sent, Envoy
    keeps its last good version). A VirtualService edit in the same change goes through."""

    def rejected_updates() -> dict[str, int]:
        return {k: v for k, v in world.envoy.stats().items() if k.endswith(".update_rejected")}

    def nacks() -> dict[str, int]:
        return {t: s["nacks"] for t, s in world.syncz()["types"].items()}

    rejected_before, nacks_before = rejected_updates(), nacks()
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "httpbin", "namespace": "default"},
        "spec": {
            "host": "httpbin",
            "trafficPolicy": {
                "connectionPool": {"tcp": {"connectTimeout": "-1s"}},
                "tls": {"mode": "SIMPLE", "sni": "a" * 300},
            },
        },
    }
    write_docs(world.config_dir / "rule.yaml", [rule])
    docs = world.base_gateway_docs()
    docs[1]["spec"]["http"][0]["match"].append({"uri": {"prefix": "/headers"}})
    write_docs(world.config_dir / "gateway.yaml", docs)

    def reported() -> dict[str, dict[str, Any]] | None:
        status = world.pilotfish.debug("/debug/config_status").json()
        found = {e["field"]: e for e in status if e.get("kind") == "DestinationRule"}
        return found if len(found) == 2 else None

    found = wait_until(reported, message="config_status never reported the rule's problems")
    timeout = found["spec.trafficPolicy.connectionPool.tcp.connectTimeout"]
    assert "cannot be negative" in timeout["message"]
    sni = found["spec.trafficPolicy.tls"]
    cluster = "outbound|8000||httpbin.default.svc.cluster.local"
    assert f"Envoy would reject cds resource '{cluster}'" in sni["message"]
    assert "sni: must be at most 255 bytes long" in sni["message"]
    assert (sni["file"], sni["name"], sni["proxies"]) == ("rule.yaml", "httpbin", [world.node_id])

    # Everything else moved on (the new match), and the held cluster still serves: with
    # the rule's TLS applied, plaintext httpbin would not answer.
    assert world.wait_status("/headers", 200).json()["headers"]["Host"] == "httpbin.example.com"
    assert world.get("/status/418").status == 418
    served = world.envoy.dynamic_clusters()[cluster]
    assert "transport_socket" not in served.config
    wait_in_sync(world)
    assert rejected_updates() == rejected_before
    assert nacks() == nacks_before
    assert not [t for t, s in world.syncz()["types"].items() if s["status"] == "ERROR"]


def test_a_changed_cluster_warms_and_serves(world: Deployment) -> None:
    """Envoy re-creates a cluster it gets a new version of, and the new one warms only
    on its endpoints. On delta, Envoy asks for nothing (its EDS subscription did not
    change): without pilotfish sending the endpoints again it would stay warming."""
    cluster = "outbound|8000||httpbin.default.svc.cluster.local"
    modified = world.envoy.stat("cluster_manager.cluster_modified")
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "httpbin", "namespace": "default"},
        "spec": {
            "host": "httpbin",
            "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "7s"}}},
        },
    }
    write_docs(world.config_dir / "rule.yaml", [rule])

    def warm() -> bool:
        active = world.envoy.dynamic_clusters()
        return active[cluster].config.get(
            "connect_timeout"
        ) == "7s" and cluster not in world.envoy.dynamic_clusters(warming=True)

    wait_until(warm, message=lambda: f"{cluster} never warmed: {world.envoy.log_tail()}")
    assert world.envoy.stat("cluster_manager.cluster_modified") == modified + 1
    assert world.get("/status/418").status == 418
