from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.resource_monitors.downstream_connections.v3 import (
    downstream_connections_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap, split_host_port
from pilotfish.node_id import parse_node_id
from testsupport.envoy import EnvoyProcess, validate_config

# ParseDict resolves the bootstrap's typed configs only if their modules are imported.
TYPED_CONFIG_MODULES = (
    downstream_connections_pb2,
    http_connection_manager_pb2,
    http_protocol_options_pb2,
    router_pb2,
)

GATEWAY = BootstrapOptions(
    proxy_type="router",
    name="gw-7d9",
    namespace="istio-system",
    labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
    ip="10.0.0.1",
    xds_address="127.0.0.1:15010",
    admin_port=15000,
)


SIDECAR = BootstrapOptions(
    proxy_type="sidecar",
    name="reviews-v2-5d9f",
    namespace="bookinfo",
    labels={"app": "reviews", "version": "v2"},
    ip="10.44.0.12",
)


def clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def xds_cluster(bootstrap: dict[str, Any]) -> dict[str, Any]:
    return clusters(bootstrap)["xds-grpc"]


def listeners(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in bootstrap["static_resources"].get("listeners", [])}


def routes(listener: dict[str, Any]) -> list[dict[str, Any]]:
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    (vhost,) = hcm["typed_config"]["route_config"]["virtual_hosts"]
    return list(vhost["routes"])


def test_node_is_named_like_istio() -> None:
    node = render_bootstrap(GATEWAY)["node"]
    assert node["id"] == "router~10.0.0.1~gw-7d9.istio-system~istio-system.svc.cluster.local"
    assert node["cluster"] == "istio-ingressgateway.istio-system"
    assert node["metadata"] == {
        "LABELS": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
        "NAMESPACE": "istio-system",
        "NAME": "gw-7d9",
        "INSTANCE_IPS": "10.0.0.1",
    }
    parsed = parse_node_id(node["id"])
    assert (parsed.type, parsed.pod_name, parsed.namespace) == ("router", "gw-7d9", "istio-system")


def test_node_cluster_falls_back_to_the_pod_without_an_app_label() -> None:
    opts = BootstrapOptions(proxy_type="sidecar", name="web-1", namespace="default")
    node = render_bootstrap(opts)["node"]
    assert node["id"] == "sidecar~127.0.0.1~web-1.default~default.svc.cluster.local"
    assert node["cluster"] == "web-1.default"
    assert node["metadata"]["LABELS"] == {}


def test_a_sidecar_has_the_metadata_pilot_reads_for_sidecars() -> None:
    node = render_bootstrap(SIDECAR)["node"]
    assert node["id"] == "sidecar~10.44.0.12~reviews-v2-5d9f.bookinfo~bookinfo.svc.cluster.local"
    assert node["cluster"] == "reviews.bookinfo"
    assert node["metadata"] == {
        "LABELS": {"app": "reviews", "version": "v2"},
        "NAMESPACE": "bookinfo",
        "NAME": "reviews-v2-5d9f",
        "INSTANCE_IPS": "10.44.0.12",
        "INTERCEPTION_MODE": "REDIRECT",
        "WORKLOAD_NAME": "reviews-v2-5d9f",
        "CLUSTER_ID": "Kubernetes",
        "ENVOY_STATUS_PORT": 15021,
        "ENVOY_PROMETHEUS_PORT": 15090,
    }


def test_extra_metadata_adds_to_and_replaces_the_defaults() -> None:
    opts = replace(SIDECAR, extra_metadata={"CLUSTER_ID": "east", "WORKLOAD_NAME": "reviews-v2"})
    metadata = render_bootstrap(opts)["node"]["metadata"]
    assert (metadata["CLUSTER_ID"], metadata["WORKLOAD_NAME"]) == ("east", "reviews-v2")
    router = replace(GATEWAY, extra_metadata={"MESH_ID": "m1"})
    assert render_bootstrap(router)["node"]["metadata"]["MESH_ID"] == "m1"


@pytest.mark.parametrize(
    "key", ["LABELS", "NAMESPACE", "NAME", "INSTANCE_IPS", "ENVOY_STATUS_PORT"]
)
def test_metadata_that_options_decide_cannot_be_set_directly(key: str) -> None:
    with pytest.raises(ValueError, match=f"metadata {key} cannot be set directly"):
        replace(SIDECAR, extra_metadata={key: "x"})


def test_a_sidecar_has_envoys_readiness_and_prometheus_listeners() -> None:
    bootstrap = render_bootstrap(SIDECAR)
    found = listeners(bootstrap)
    assert sorted(found) == ["0.0.0.0_15021", "0.0.0.0_15090"]
    status, prometheus = found["0.0.0.0_15021"], found["0.0.0.0_15090"]
    assert status["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15021}
    assert routes(status) == [
        {
            "match": {"path": "/healthz/ready"},
            "route": {"cluster": "prometheus_stats", "prefix_rewrite": "/ready"},
        }
    ]
    assert routes(prometheus) == [
        {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}
    ]
    # Both are served by the admin API, wherever it listens.
    admin = clusters(bootstrap)["prometheus_stats"]["load_assignment"]["endpoints"][0]
    assert admin["lb_endpoints"][0]["endpoint"]["address"] == bootstrap["admin"]["address"]


def test_a_sidecar_without_its_own_listeners() -> None:
    bootstrap = render_bootstrap(replace(SIDECAR, status_port=0, prometheus_port=0))
    assert listeners(bootstrap) == {}
    assert sorted(clusters(bootstrap)) == ["xds-grpc"]
    assert "ENVOY_STATUS_PORT" not in bootstrap["node"]["metadata"]
    assert "ENVOY_PROMETHEUS_PORT" not in bootstrap["node"]["metadata"]


def test_a_router_has_no_sidecar_parts() -> None:
    bootstrap = render_bootstrap(GATEWAY)
    assert listeners(bootstrap) == {}
    assert sorted(clusters(bootstrap)) == ["xds-grpc"]
    assert "INTERCEPTION_MODE" not in bootstrap["node"]["metadata"]


@pytest.mark.parametrize("address", ["unix:/run/pf/xds.sock", "unix:///run/pf/xds.sock"])
def test_xds_over_a_unix_socket(address: str) -> None:
    cluster = xds_cluster(render_bootstrap(replace(SIDECAR, xds_address=address)))
    assert cluster["type"] == "STATIC"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": "/run/pf/xds.sock"}}
    assert "upstream_connection_options" not in cluster  # TCP keepalive: TCP only


def test_admin_on_a_unix_socket() -> None:
    bootstrap = render_bootstrap(replace(SIDECAR, admin_socket="/run/pod/admin.sock"))
    assert bootstrap["admin"]["address"] == {"pipe": {"path": "/run/pod/admin.sock"}}


@pytest.mark.parametrize("address", ["unix:", "unix://", "nope"])
def test_bad_xds_addresses_are_refused_up_front(address: str) -> None:
    with pytest.raises(ValueError, match="xds address"):
        replace(SIDECAR, xds_address=address)


def test_admin_and_ads() -> None:
    bootstrap = render_bootstrap(GATEWAY)
    assert bootstrap["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15000,
    }
    dynamic = bootstrap["dynamic_resources"]
    ads = dynamic["ads_config"]
    assert ads["api_type"] == "GRPC"
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is True
    assert ads["grpc_services"][0]["envoy_grpc"]["cluster_name"] == "xds-grpc"
    assert dynamic["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    assert dynamic["lds_config"] == {"ads": {}, "resource_api_version": "V3"}


def test_delta_ads() -> None:
    # Everything else stays: the same ADS source for CDS and LDS, node on first message.
    sotw, delta = (
        render_bootstrap(GATEWAY),
        render_bootstrap(replace(GATEWAY, xds_protocol="delta")),
    )
    assert delta["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    delta["dynamic_resources"]["ads_config"]["api_type"] = "GRPC"
    assert delta == sotw
    validate_config(render_bootstrap(replace(GATEWAY, xds_protocol="delta")))


def test_xds_cluster_is_static_http2_for_an_ip() -> None:
    cluster = xds_cluster(render_bootstrap(GATEWAY))
    assert cluster["type"] == "STATIC"
    assert cluster["connect_timeout"] == "1s"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15010}
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]


@pytest.mark.parametrize(
    ("address", "kind", "host"),
    [
        ("istiod.istio-system.svc:15010", "STRICT_DNS", "istiod.istio-system.svc"),
        ("localhost:15010", "STRICT_DNS", "localhost"),
        ("[::1]:15010", "STATIC", "::1"),
    ],
)
def test_xds_cluster_type_follows_the_address(address: str, kind: str, host: str) -> None:
    opts = BootstrapOptions("sidecar", "web-1", "default", xds_address=address)
    cluster = xds_cluster(render_bootstrap(opts))
    assert cluster["type"] == kind
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == host


@pytest.mark.parametrize("address", ["15010", "host:", ":15010", "host:http", "host:70000"])
def test_bad_xds_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_host_port(address)


def test_is_a_valid_bootstrap_proto() -> None:
    # ParseDict catches misspelt fields and wrong types before Envoy is involved.
    json_format.ParseDict(render_bootstrap(GATEWAY), bootstrap_pb2.Bootstrap())


@pytest.mark.parametrize("xds_address", ["127.0.0.1:15010", "localhost:15010"])
def test_envoy_accepts_it(xds_address: str) -> None:
    opts = BootstrapOptions("router", "gw-1", "istio-system", xds_address=xds_address)
    validate_config(render_bootstrap(opts))


@pytest.mark.parametrize(
    "opts",
    [
        SIDECAR,
        replace(SIDECAR, xds_address="unix:/run/pf/xds.sock", admin_socket="/run/p/admin.sock"),
        replace(SIDECAR, status_port=0, prometheus_port=0, extra_metadata={"MESH_ID": "m"}),
    ],
    ids=["default", "unix-sockets", "no-own-listeners"],
)
def test_envoy_accepts_a_sidecar_bootstrap(opts: BootstrapOptions) -> None:
    bootstrap = render_bootstrap(opts)
    json_format.ParseDict(bootstrap, bootstrap_pb2.Bootstrap())
    validate_config(bootstrap)


def test_envoy_starts_with_it_without_warnings() -> None:
    # Admin port 0: Envoy picks one and reports it. No control plane runs: Envoy must
    # still start, show our node, and not warn about its own configuration.
    opts = BootstrapOptions("router", "gw-1", "istio-system", {"app": "gw"}, admin_port=0)
    with EnvoyProcess(render_bootstrap(opts)) as envoy:
        node = envoy.server_info()["node"]
        assert node["id"] == "router~127.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local"
        assert node["metadata"]["LABELS"] == {"app": "gw"}
        assert envoy.server_state() in ("PRE_INITIALIZING", "INITIALIZING")  # waits for ADS
        warnings = [line for line in envoy.log_text().splitlines() if "][warning][main]" in line]
    assert warnings == []


def test_envoy_serves_admin_on_a_unix_socket(tmp_path: Path) -> None:
    # Envoy's own listeners left out: their fixed ports belong in a pod's namespace.
    socket_path = tmp_path / "admin.sock"
    opts = replace(SIDECAR, admin_socket=str(socket_path), status_port=0, prometheus_port=0)
    with EnvoyProcess(render_bootstrap(opts)) as envoy:
        assert envoy.admin_address == str(socket_path)
        node = envoy.server_info()["node"]
        assert node["metadata"]["INTERCEPTION_MODE"] == "REDIRECT"
        assert envoy.server_state() in ("PRE_INITIALIZING", "INITIALIZING")  # waits for ADS
