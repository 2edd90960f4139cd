"""How long parsing and translating a large config takes, and how much memory it holds.

Generates N services, each with a VirtualService bound to one shared gateway (N virtual
hosts on one route config), then times: parsing the manifests into a ConfigSet,
translating for one gateway proxy, serialising the resources as ADS would, and a
no-op re-translation (what a resync costs). Prints figures; asserts nothing.

    make bench                       # N = 200, 1000, 2000
    python benchmarks/translate_bench.py 5000
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import yaml

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.node_id import NodeId
from pilotfish.server.control_plane import snapshot_of
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate

T = TypeVar("T")


def manifests(n: int) -> str:
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "shared", "namespace": "istio-system"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                ],
            },
        }
    ]
    for i in range(n):
        name = f"svc-{i}"
        docs += [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 8000}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-1",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "ports": [{"name": "http", "port": 8000}],
                "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.{j}"]} for j in (1, 2, 3)],
            },
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "hosts": [f"{name}.example.com"],
                    "gateways": ["istio-system/shared"],
                    "http": [
                        {"match": [{"uri": {"prefix": "/v2"}}, {"headers": {"x-canary": {"exact": "1"}}}],
                         "route": [{"destination": {"host": name}, "weight": 90},
                                   {"destination": {"host": name}, "weight": 10}],
                         "timeout": "5s"},
                        {"route": [{"destination": {"host": name}}]},
                    ],
                },
            },
        ]  # fmt: skip
    return yaml.safe_dump_all(docs)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run(n: int) -> None:
    text = manifests(n)
    proxy = Proxy.from_node(
        str(NodeId.for_pod("router", "10.0.0.1", "ingress-0", "istio-system")),
        {"LABELS": {"istio": "ingressgateway"}, "NAMESPACE": "istio-system"},
    )
    parsed, t_yaml = timed(lambda: parse_manifest_text(text, "bench.yaml"))
    config, t_parse = timed(lambda: build_config_set([parsed]))
    translation, t_translate = timed(lambda: translate(config, proxy))
    snapshot, t_snapshot = timed(lambda: snapshot_of(translation))
    _, t_again = timed(lambda: snapshot_of(translate(config, proxy)))
    # Memory in a second pass: tracemalloc slows down everything it watches.
    tracemalloc.start()
    held = snapshot_of(
        translate(build_config_set([parse_manifest_text(text, "bench.yaml")]), proxy)
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held
    wire = sum(
        len(m.SerializeToString())
        for m in (*translation.routes, *translation.clusters, *translation.endpoints)
    )
    assert len(translation.routes[0].virtual_hosts) == n, (
        "every service should have its virtual host"
    )
    print(
        f"N={n:5d} services/virtual hosts: yaml {t_yaml:6.3f}s  parse {t_parse:6.3f}s  "
        f"translate {t_translate:6.3f}s  snapshot+hash {t_snapshot:6.3f}s  "
        f"re-translate {t_again:6.3f}s  resources {wire / 1e6:5.2f} MB  peak heap {peak / 1e6:6.1f} MB"
    )
    del snapshot


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [200, 1000, 2000]
    for n in sizes:
        run(n)


if __name__ == "__main__":
    main()
