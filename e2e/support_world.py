"""A gateway world for e2e modules: pilotfish in process over a config directory, one real
Envoy router (istio=ingressgateway in istio-system), and helpers to write manifests for
local upstreams. The gateway Service maps port 80 to a free port, as Istio's maps 80 to
8080."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from pilotfish.bootstrap import BootstrapOptions, XdsProtocol, render_bootstrap
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.wait import wait_until


def service_docs(name: str, port: int, namespace: str = "default") -> list[dict[str, Any]]:
    """A Service `name` on port 8000 whose one endpoint is 127.0.0.1:`port`."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8000}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-local",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]


def gateway_service_docs(gateway_port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "ports": [{"name": "http2", "port": 80, "targetPort": gateway_port}],
            },
        }
    ]


class GatewayWorld:
    def __init__(self, config_dir: Path, gateway_port: int) -> None:
        self.config_dir = config_dir
        self.gateway_port = gateway_port
        self.envoy: EnvoyProcess
        self.pilotfish: InProcessPilotfish

    def write(self, name: str, docs: list[dict[str, Any]]) -> None:
        (self.config_dir / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def get(
        self,
        path: str,
        host: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        timeout: float = 10.0,
    ) -> Response:
        return request(
            f"http://127.0.0.1:{self.gateway_port}{path}",
            headers={"Host": host, **(headers or {})},
            method=method,
            timeout=timeout,
        )

    def wait_status(self, path: str, host: str, status: int, timeout: float = 20.0) -> Response:
        def answered() -> Response | None:
            response = self.get(path, host)
            return response if response.status == status else None

        return wait_until(
            answered,
            timeout=timeout,
            ignore=(OSError,),
            message=lambda: f"{host}{path} never gave {status}:\n{self.envoy.log_tail()}",
        )


@contextmanager
def gateway_world(
    config_dir: Path,
    name: str,
    files: dict[str, list[dict[str, Any]]],
    gateway_port: int = 0,
    xds_protocol: XdsProtocol | None = None,
) -> Iterator[GatewayWorld]:
    """`files` (name -> manifests) are in place before pilotfish starts. `xds_protocol`:
    Envoy's ADS as "sotw" or "delta" (None: the bootstrap's default, or the environment's
    choice: testsupport/envoy.py)."""
    world = GatewayWorld(config_dir, gateway_port or free_port())
    world.write("ingressgateway.yaml", gateway_service_docs(world.gateway_port))
    for file_name, docs in files.items():
        world.write(file_name, docs)
    with InProcessPilotfish(config_dir) as pilotfish:
        world.pilotfish = pilotfish
        options = BootstrapOptions(
            proxy_type="router",
            name=f"{name}-0",
            namespace="istio-system",
            labels={"istio": "ingressgateway"},
            xds_address=pilotfish.xds_address,
            admin_port=0,
        )
        with EnvoyProcess(render_bootstrap(options), name=name, xds_protocol=xds_protocol) as envoy:
            world.envoy = envoy
            envoy.wait_ready()
            yield world
