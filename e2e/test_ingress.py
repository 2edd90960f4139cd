"""Istio's Kubernetes Ingress task through a pilotfish-configured Envoy: an Ingress of
class istio routes `/status/*` to httpbin; one of another class is ignored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.support_world import GatewayWorld, gateway_world, service_docs
from testsupport.upstreams import HttpbinServer


def ingress(name: str, host: str, path: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            **spec,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "ImplementationSpecific",
                                "backend": {
                                    "service": {"name": "httpbin", "port": {"number": 8000}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayWorld]:
    with HttpbinServer() as httpbin:
        files = {
            "httpbin.yaml": service_docs("httpbin", httpbin.port),
            "ingress.yaml": [
                ingress("httpbin", "httpbin.example.com", "/status/*", ingressClassName="istio"),
                ingress("nginx", "nginx.example.com", "/*", ingressClassName="nginx"),
            ],
        }
        with gateway_world(tmp_path_factory.mktemp("ingress"), "ingress", files) as world:
            world.wait_status("/status/200", "httpbin.example.com", 200)
            yield world


def test_istio_class_routes_status(world: GatewayWorld) -> None:
    teapot = world.get("/status/418", "httpbin.example.com")
    assert teapot.status == 418 and "teapot" in teapot.text
    assert world.get("/headers", "httpbin.example.com").status == 404
    # `/status/*` is a prefix on whole path elements: /statusx is not under it.
    assert world.get("/statusx", "httpbin.example.com").status == 404


def test_other_class_is_ignored(world: GatewayWorld) -> None:
    response = world.get("/status/200", "nginx.example.com")
    assert response.status == 404
    assert "x-envoy-upstream-service-time" not in response.headers
