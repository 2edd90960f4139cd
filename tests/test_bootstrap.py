from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.resource_monitors.downstream_connections.v3 import (
    downstream_connections_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap, split_host_port
from pilotfish.node_id import parse_node_id
from testsupport.envoy import EnvoyProcess, validate_config

# ParseDict resolves the bootstrap's typed configs only if their modules are imported.
TYPED_CONFIG_MODULES = (downstream_connections_pb2, http_protocol_options_pb2)

GATEWAY = BootstrapOptions(
    proxy_type="router",
    name="gw-7d9",
    namespace="istio-system",
    labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
    ip="10.0.0.1",
    xds_address="127.0.0.1:15010",
    admin_port=15000,
)


def xds_cluster(bootstrap: dict[str, Any]) -> dict[str, Any]:
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["name"] == "xds-grpc"
    return dict(cluster)


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
