"""static_bootstrap_for: xDS resources -> a bootstrap a real Envoy validates (and runs)."""

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format

from testsupport.certs import issue, make_ca
from testsupport.envoy import EnvoyConfigError, EnvoyProcess, validate_config
from testsupport.http import request
from testsupport.static_bootstrap import InconsistentResources, static_bootstrap_for
from testsupport.upstreams import EchoHttpServer

CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"
ADS = {"ads": {}, "resource_api_version": "V3"}


def parse(message: Any, data: dict[str, Any]) -> Any:
    return json_format.ParseDict(data, message)


def http_listener(
    name: str, port: int, route_name: str, tls_secret: str | None = None
) -> listener_pb2.Listener:
    manager = parse(
        hcm_pb2.HttpConnectionManager(),
        {"stat_prefix": name, "rds": {"route_config_name": route_name, "config_source": ADS}},
    )
    manager.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(
        router_pb2.Router()
    )
    listener = parse(
        listener_pb2.Listener(),
        {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}},
    )
    chain = listener.filter_chains.add()
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(
        manager
    )
    if tls_secret:
        context = parse(
            tls_pb2.DownstreamTlsContext(),
            {
                "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [{"name": tls_secret, "sds_config": ADS}],
                    "alpn_protocols": ["h2", "http/1.1"],
                }
            },
        )
        chain.transport_socket.name = "envoy.transport_sockets.tls"
        chain.transport_socket.typed_config.Pack(context)
    return listener


def route_config(name: str, match: dict[str, Any]) -> route_pb2.RouteConfiguration:
    return parse(
        route_pb2.RouteConfiguration(),
        {
            "name": name,
            "virtual_hosts": [
                {
                    "name": "httpbin.example.com:80",
                    "domains": ["*"],
                    "routes": [{"match": match, "route": {"cluster": CLUSTER}}],
                }
            ],
        },
    )


def eds_cluster() -> cluster_pb2.Cluster:
    return parse(
        cluster_pb2.Cluster(),
        {
            "name": CLUSTER,
            "type": "EDS",
            "eds_cluster_config": {"service_name": CLUSTER, "eds_config": ADS},
            "connect_timeout": "2s",
            "lb_policy": "LEAST_REQUEST",
        },
    )


def load_assignment(port: int) -> endpoint_pb2.ClusterLoadAssignment:
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return parse(
        endpoint_pb2.ClusterLoadAssignment(),
        {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    )


def tls_secret(name: str) -> secret_pb2.Secret:
    leaf = issue(make_ca(), ["httpbin.example.com"])
    secret = secret_pb2.Secret(name=name)
    secret.tls_certificate.certificate_chain.inline_bytes = leaf.cert_pem
    secret.tls_certificate.private_key.inline_bytes = leaf.key_pem
    return secret


def test_inlines_routes_endpoints_and_secrets_and_envoy_accepts_them() -> None:
    bootstrap = static_bootstrap_for(
        listeners=[
            http_listener("0.0.0.0_8443", 8443, "https.443.https.gw.default", "kubernetes://cert")
        ],
        routes=[route_config("https.443.https.gw.default", {"prefix": "/"})],
        clusters=[eds_cluster()],
        endpoints=[load_assignment(8000)],
        secrets=[tls_secret("kubernetes://cert")],
    )
    static = bootstrap["static_resources"]

    (listener,) = static["listeners"]
    chain = listener["filter_chains"][0]
    manager = chain["filters"][0]["typed_config"]
    assert "rds" not in manager
    assert manager["route_config"]["name"] == "https.443.https.gw.default"
    sds = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert sds["tls_certificate_sds_secret_configs"] == [{"name": "kubernetes://cert"}]

    (cluster,) = static["clusters"]
    assert cluster["type"] == "STATIC"
    assert "eds_cluster_config" not in cluster
    assert cluster["lb_policy"] == "LEAST_REQUEST"  # everything else is kept
    assert cluster["load_assignment"]["cluster_name"] == CLUSTER

    assert [s["name"] for s in static["secrets"]] == ["kubernetes://cert"]
    validate_config(bootstrap)


def test_a_regex_envoy_rejects_fails_validation_with_envoys_reason() -> None:
    bootstrap = static_bootstrap_for(
        listeners=[http_listener("0.0.0.0_8080", 8080, "http.8080")],
        routes=[route_config("http.8080", {"safe_regex": {"regex": "(?=x)"}})],
        clusters=[eds_cluster()],
        endpoints=[load_assignment(8000)],
    )
    with pytest.raises(EnvoyConfigError, match=r"invalid perl operator: \(\?="):
        validate_config(bootstrap)


def test_a_route_config_no_listener_uses_is_still_validated() -> None:
    bootstrap = static_bootstrap_for(
        routes=[route_config("8000", {"safe_regex": {"regex": "(?=x)"}})],
        clusters=[eds_cluster()],
        endpoints=[load_assignment(8000)],
    )
    with pytest.raises(EnvoyConfigError, match="invalid perl operator"):
        validate_config(bootstrap)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (
            {"listeners": [http_listener("l", 8080, "http.8080")]},
            "listener 'l' uses route config 'http.8080', which was not given",
        ),
        (
            {"clusters": [eds_cluster()]},
            f"cluster '{CLUSTER}' uses EDS endpoints '{CLUSTER}', which were not given",
        ),
        (
            {
                "listeners": [http_listener("l", 8443, "r", "kubernetes://missing")],
                "routes": [route_config("r", {"prefix": "/"})],
            },
            "listener 'l' uses SDS secret 'kubernetes://missing', which was not given",
        ),
    ],
)
def test_a_reference_to_a_missing_resource_is_an_error(given: dict[str, Any], problem: str) -> None:
    with pytest.raises(InconsistentResources) as info:
        static_bootstrap_for(**given)
    assert str(info.value) == problem


def test_the_bootstrap_also_runs_and_routes() -> None:
    with EchoHttpServer(name="backend") as backend:
        bootstrap = static_bootstrap_for(
            listeners=[http_listener("0.0.0.0_8080", 0, "http.8080")],  # port 0: Envoy picks
            routes=[route_config("http.8080", {"prefix": "/"})],
            clusters=[eds_cluster()],
            endpoints=[load_assignment(backend.port)],
        )
        with EnvoyProcess(bootstrap) as envoy:
            port = envoy.wait_for_listener("0.0.0.0_8080")["local_address"]["socket_address"][
                "port_value"
            ]
            status, headers, _ = request(f"http://127.0.0.1:{port}/hello")
        assert (status, headers["x-echo-server"]) == (200, "backend")
        assert [r.path for r in backend.requests] == ["/hello"]
