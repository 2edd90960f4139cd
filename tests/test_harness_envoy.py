"""The test harness itself: a real Envoy in front of real httpbin, and the waiting helper."""

import asyncio
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from testsupport.certs import issue, make_ca
from testsupport.envoy import (
    XDS_PROTOCOL_ENV,
    EnvoyConfigError,
    EnvoyError,
    EnvoyProcess,
    validate_config,
    with_xds_protocol,
)
from testsupport.http import request
from testsupport.upstreams import EchoHttpServer, HttpbinServer
from testsupport.wait import wait_until, wait_until_async


def proxy_bootstrap(upstream: tuple[str, int]) -> dict[str, Any]:
    """Listener (port 0) -> one route -> a STATIC cluster holding ``upstream``."""
    host, port = upstream
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters"
                                        ".network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "http",
                                        "route_config": {
                                            "name": "local",
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "upstream"},
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions"
                                                    ".filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": host,
                                                    "port_value": port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def httpbin() -> Iterator[HttpbinServer]:
    with HttpbinServer() as server:
        yield server


def test_httpbin_answers_through_envoy(httpbin: HttpbinServer) -> None:
    with EnvoyProcess(proxy_bootstrap(httpbin.address), name="harness") as envoy:
        envoy.wait_ready()
        envoy.wait_for_cluster_healthy("upstream")
        port = envoy.listener_port("http")

        status, _, _ = request(f"http://127.0.0.1:{port}/status/418")
        assert status == 418

        # Any Host header goes through, and httpbin sees what Envoy forwarded.
        echoed = request(f"http://127.0.0.1:{port}/headers", headers={"Host": "a.example.com"})
        assert echoed.status == 200
        assert echoed.json()["headers"]["Host"] == "a.example.com"

        assert envoy.wait_for_stat("cluster.upstream.upstream_rq_418") == 1
        assert envoy.stats()["http.http.downstream_rq_total"] >= 2


def test_envoy_is_gone_after_the_block(httpbin: HttpbinServer) -> None:
    with EnvoyProcess(proxy_bootstrap(httpbin.address)) as envoy:
        pid = envoy.pid
        assert pid is not None and envoy.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "starting main dispatch loop" in envoy.log_text()  # the log outlives the process


def test_envoy_is_stopped_when_the_test_body_fails(httpbin: HttpbinServer) -> None:
    envoy = EnvoyProcess(proxy_bootstrap(httpbin.address))
    with pytest.raises(RuntimeError, match="boom"), envoy:
        raise RuntimeError("boom")
    assert not envoy.running()


def test_a_bad_bootstrap_fails_start_with_envoys_log() -> None:
    bootstrap = proxy_bootstrap(("127.0.0.1", 1))
    bootstrap["static_resources"]["clusters"][0]["type"] = "NO_SUCH_TYPE"
    envoy = EnvoyProcess(bootstrap)
    with pytest.raises(EnvoyError, match="NO_SUCH_TYPE") as info:
        envoy.start()
    assert "exited with code 1" in str(info.value)
    assert not envoy.running()


def test_validate_config_reports_envoys_reason() -> None:
    validate_config(proxy_bootstrap(("127.0.0.1", 1)))
    bootstrap = proxy_bootstrap(("127.0.0.1", 1))
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = "missing"
    with pytest.raises(EnvoyConfigError, match="route: unknown cluster 'missing'"):
        validate_config(bootstrap)


def test_echo_server_records_what_envoy_forwarded() -> None:
    with EchoHttpServer(name="echo", status=503, body=b"nope") as echo:
        with EnvoyProcess(proxy_bootstrap(echo.address)) as envoy:
            envoy.wait_ready()
            port = envoy.listener_port("http")
            resp = request(f"http://127.0.0.1:{port}/x?y=1", method="POST", body=b"hi")
        assert (resp.status, resp.body, resp.headers["x-echo-server"]) == (503, b"nope", "echo")
        (got,) = echo.wait_for_requests(1)
        assert (got.method, got.path, got.body) == ("POST", "/x?y=1", b"hi")
        assert "x-request-id" in got.headers  # added by Envoy


def test_wait_until_returns_the_value_or_fails_with_the_message() -> None:
    values = iter([0, None, "", 7])
    assert wait_until(lambda: next(values), timeout=5, interval=0.001) == 7

    with pytest.raises(AssertionError) as info:
        wait_until(lambda: [], timeout=0.2, interval=0.01, message="never true")
    assert "never true" in str(info.value)
    assert "last value: []" in str(info.value)


def test_wait_until_can_treat_exceptions_as_not_yet() -> None:
    def refuse() -> bool:
        raise ConnectionRefusedError("not listening")

    with pytest.raises(AssertionError, match="ConnectionRefusedError"):
        wait_until(refuse, timeout=0.1, interval=0.01, ignore=(OSError,))
    with pytest.raises(ConnectionRefusedError):
        wait_until(refuse, timeout=0.1)


def test_wait_until_async_polls_sync_and_async_predicates() -> None:
    async def scenario() -> None:
        values = iter([False, False, "done"])
        assert await wait_until_async(lambda: next(values), timeout=5, interval=0.001) == "done"

        async def never() -> int:
            return 0

        with pytest.raises(AssertionError, match="still zero"):
            await wait_until_async(never, timeout=0.05, interval=0.01, message="still zero")

    asyncio.run(scenario())


def file_xds(tmp_path: Path, upstream: tuple[str, int]) -> dict[str, Any]:
    """A bootstrap whose LDS/RDS/CDS/EDS come from files: dynamic resources, no server."""
    host, port = upstream

    def source(kind: str, version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps({"version_info": version, "resources": resources}))
        return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}

    api = "type.googleapis.com/envoy.config"
    eds = source(
        "eds",
        "e1",
        [
            {
                "@type": f"{api}.endpoint.v3.ClusterLoadAssignment",
                "cluster_name": "backend",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": host, "port_value": port}
                                    }
                                }
                            }
                        ]
                    }
                ],
            }
        ],
    )
    rds = source(
        "rds",
        "r1",
        [
            {
                "@type": f"{api}.route.v3.RouteConfiguration",
                "name": "http.8080",
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}],
                    }
                ],
            }
        ],
    )
    listener = proxy_bootstrap(upstream)["static_resources"]["listeners"][0]
    listener["@type"] = f"{api}.listener.v3.Listener"
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    del manager["route_config"]
    manager["rds"] = {"route_config_name": "http.8080", "config_source": rds}
    cluster = {
        "@type": f"{api}.cluster.v3.Cluster",
        "name": "backend",
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": eds},
    }
    return {
        "node": {"id": "file-xds", "cluster": "file-xds"},  # required for dynamic resources
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "lds_config": source("lds", "l1", [listener]),
            "cds_config": source("cds", "c1", [cluster]),
        },
    }


def test_config_dump_helpers_read_dynamic_resources(tmp_path: Path) -> None:
    with EchoHttpServer() as echo, EnvoyProcess(file_xds(tmp_path, echo.address)) as envoy:
        envoy.wait_for_version("listeners", "http", "l1")
        envoy.wait_for_cluster_healthy("backend")
        assert envoy.wait_for_route_config("http.8080")["name"] == "http.8080"
        assert envoy.versions() == {
            "listeners": {"http": "l1"},
            "clusters": {"backend": "c1"},
            "routes": {"http.8080": "r1"},
            "endpoints": {"backend": "e1"},
            "secrets": {},
        }
        assert envoy.dynamic_clusters()["backend"].config["type"] == "EDS"
        assert envoy.dynamic_listeners(warming=True) == {}
        assert envoy.healthy_hosts("backend") == [f"127.0.0.1:{echo.port}"]
        port = envoy.listener_port("http")
        assert request(f"http://127.0.0.1:{port}/").headers["x-echo-server"] == "echo"


def test_https_request_sends_the_url_host_as_sni_when_connecting_elsewhere() -> None:
    leaf = issue(make_ca(), ["secure.example.com"])
    seen: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cert.pem").write_bytes(leaf.cert_pem + leaf.key_pem)
        context.load_cert_chain(Path(tmp) / "cert.pem")
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    with EchoHttpServer() as echo:
        assert echo._server is not None
        echo._server.socket = context.wrap_socket(echo._server.socket, server_side=True)
        resp = request("https://secure.example.com/tls", connect_to=echo.address)
        assert (resp.status, echo.requests[0].headers["host"]) == (200, "secure.example.com")
    assert seen == ["secure.example.com"]


def test_xds_protocol_choice_rewrites_only_the_ads_api_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sotw = render_bootstrap(BootstrapOptions("router", "gw-1", "istio-system"))
    delta = render_bootstrap(
        BootstrapOptions("router", "gw-1", "istio-system", xds_protocol="delta")
    )
    monkeypatch.delenv(XDS_PROTOCOL_ENV, raising=False)
    assert with_xds_protocol(sotw, None) == sotw
    assert with_xds_protocol(sotw, "delta") == delta
    assert with_xds_protocol(delta, "sotw") == sotw
    assert sotw["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"  # not mutated
    monkeypatch.setenv(XDS_PROTOCOL_ENV, "delta")
    assert with_xds_protocol(sotw, None) == delta
    assert with_xds_protocol(sotw, "sotw") == sotw  # a test's own choice wins
    static = {"static_resources": {}}
    assert with_xds_protocol(static, None) == static
    monkeypatch.setenv(XDS_PROTOCOL_ENV, "incremental")
    with pytest.raises(ValueError, match="neither"):
        with_xds_protocol(sotw, None)
