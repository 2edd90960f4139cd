"""`serve --max-connection-age`: the xDS connection is closed after its age, and a real
Envoy reconnects on its own, resyncs everything, and keeps serving traffic throughout.

That reconnect is what lets proxies spread over control-plane replicas: behind a load
balancer the new connection may land on another one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.bootstrap import XDS_CLUSTER, BootstrapOptions, render_bootstrap
from testsupport.envoy import EnvoyProcess
from testsupport.http import request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.upstreams import HttpbinServer
from testsupport.wait import wait_until

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "httpbin-gateway"
AGE = 2.0  # seconds; grpc adds up to 10% either way
GRACE = 0.5
TYPES = ("cds", "eds", "lds", "rds")


def load_docs(name: str) -> list[Any]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


def example_config(target: Path, gateway_port: int, httpbin_port: int) -> None:
    shutil.copy(EXAMPLE / "gateway.yaml", target / "gateway.yaml")
    ingress = load_docs("ingressgateway.yaml")
    ingress[0]["spec"]["ports"][0]["targetPort"] = gateway_port
    httpbin = load_docs("httpbin.yaml")
    httpbin[1]["ports"][0]["port"] = httpbin_port
    for name, docs in (("ingressgateway.yaml", ingress), ("httpbin.yaml", httpbin)):
        (target / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_envoy_reconnects_and_resyncs_after_the_connection_age(tmp_path: Path) -> None:
    gateway_port = free_port()
    with HttpbinServer() as httpbin:
        example_config(tmp_path, gateway_port, httpbin.port)
        with InProcessPilotfish(
            tmp_path, max_connection_age=AGE, max_connection_age_grace=GRACE
        ) as pilotfish:
            options = BootstrapOptions(
                proxy_type="router",
                name="ingress-0",
                namespace="istio-system",
                labels={"istio": "ingressgateway"},
                xds_address=pilotfish.xds_address,
                admin_port=0,
            )
            bootstrap = render_bootstrap(options)
            node_id = bootstrap["node"]["id"]

            def synced_stream() -> str | None:
                """The proxy's one stream's connection id, once every type is ACKed."""
                streams = [
                    s for s in pilotfish.debug("/debug/syncz").json() if s["node_id"] == node_id
                ]
                if len(streams) != 1:
                    return None
                [stream] = streams
                synced = all(stream["types"][t]["status"] == "SYNCED" for t in TYPES)
                return str(stream["connection_id"]) if synced else None

            def served() -> bool:
                url = f"http://127.0.0.1:{gateway_port}/status/418"
                answer = request(url, headers={"Host": "httpbin.example.com"}, timeout=5)
                return answer.status == 418

            with EnvoyProcess(bootstrap, name="aged") as envoy:
                envoy.wait_ready()
                first = wait_until(synced_stream, message="Envoy never synced")
                wait_until(served, ignore=(OSError,), message="no traffic through Envoy")
                connections = envoy.stat(f"cluster.{XDS_CLUSTER}.upstream_cx_total")

                # After the age (+ grace) the server closes the connection; Envoy opens a
                # new one and is served everything again on a new stream.
                second = wait_until(
                    lambda: (s := synced_stream()) is not None and s != first and s,
                    timeout=AGE * 1.1 + GRACE + 15,
                    message=lambda: f"no new synced stream; envoy log:\n{envoy.log_tail()}",
                )
                assert envoy.stat(f"cluster.{XDS_CLUSTER}.upstream_cx_total") > connections
                assert served()  # nothing it had was dropped meanwhile
                assert envoy.server_state() == "LIVE"

                # And again: every connection ages, not only the first.
                wait_until(
                    lambda: (s := synced_stream()) is not None and s not in (first, second),
                    timeout=AGE * 1.1 + GRACE + 15,
                    message="the second connection did not age out",
                )
                assert served()
