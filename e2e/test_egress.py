"""Istio's egress gateway walkthrough (SCENARIOS 8) through a real Envoy egress gateway.

The YAML is the walkthrough's, with one addition: the "external" edition.cnn.com is a
local echo server, so the ServiceEntry (resolution DNS, as in the walkthrough) lists one
endpoint, `localhost` (a name Envoy resolves, to loopback), on the echo server's port.
The egress gateway's Service maps port 80 to a free port, as Istio's maps 80 -> 8080.
The sidecar half (rule 1, `gateways: [mesh]`) is in e2e/test_mesh_sidecars.py, pod to
sidecar to egress gateway to the external host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.upstreams import EchoHttpServer
from testsupport.wait import wait_until

WALKTHROUGH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - edition.cnn.com
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
"""

EXTERNAL = "outbound|80||edition.cnn.com"


@dataclass
class World:
    port: int
    envoy: EnvoyProcess
    external: EchoHttpServer

    def get(self, path: str, host: str = "edition.cnn.com") -> Response:
        return request(f"http://127.0.0.1:{self.port}{path}", headers={"Host": host}, timeout=5)


def config_docs(egress_port: int, external_port: int) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(WALKTHROUGH) if d]
    entry = docs[0]["spec"]
    entry["endpoints"] = [{"address": "localhost", "ports": {"http-port": external_port}}]
    egress_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "istio-egressgateway", "namespace": "istio-system"},
        "spec": {
            "selector": {"istio": "egressgateway"},
            "ports": [{"name": "http2", "port": 80, "targetPort": egress_port}],
        },
    }
    return [*docs, egress_service]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config_dir: Path = tmp_path_factory.mktemp("config")
    port = free_port()
    with EchoHttpServer("edition.cnn.com") as external:
        docs = config_docs(port, external.port)
        (config_dir / "egress.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        with InProcessPilotfish(config_dir) as pilotfish:
            bootstrap = render_bootstrap(
                BootstrapOptions(
                    proxy_type="router",
                    name="istio-egressgateway-0",
                    namespace="istio-system",
                    labels={"istio": "egressgateway", "app": "istio-egressgateway"},
                    xds_address=pilotfish.xds_address,
                    admin_port=0,
                )
            )
            with EnvoyProcess(bootstrap, name="egress") as envoy:
                envoy.wait_ready()
                yield World(port, envoy, external)


def test_egress_gateway_forwards_to_the_external_host(world: World) -> None:
    def answered() -> Response | None:
        response = world.get("/politics")
        return response if response.status == 200 else None

    response = wait_until(
        answered,
        timeout=20,
        ignore=(OSError,),
        message=lambda: f"the egress gateway never answered:\n{world.envoy.log_tail()}",
    )
    assert response.headers["x-echo-server"] == "edition.cnn.com"
    seen = world.external.requests[-1]
    assert seen.path == "/politics"
    assert seen.headers["host"] == "edition.cnn.com"
    # A DNS cluster, resolved by Envoy: `localhost` became the loopback address.
    cluster = world.envoy.dynamic_clusters()[EXTERNAL]
    assert cluster.config["type"] == "STRICT_DNS"
    assert world.envoy.healthy_hosts(EXTERNAL) == [f"127.0.0.1:{world.external.port}"]


def test_hosts_the_egress_gateway_does_not_serve_get_404(world: World) -> None:
    response = world.get("/", host="www.example.com")
    assert response.status == 404
