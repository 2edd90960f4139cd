"""What one sidecar's translation costs in a large mesh, with and without a Sidecar scope.

Generates a mesh of S services spread over N namespaces (default 1,000 in 100), each a
Kubernetes Service with an HTTP port 9080 and a TCP port 5432 (a cluster IP each), an
EndpointSlice of three pods (two v1, one v2) and the Pods, a DestinationRule with two subsets and a VirtualService
splitting traffic between them. The proxy is one sidecar in ``ns-0``. Then, twice: once
with no Sidecar resource (every service is visible: Istio's default), once with a
Sidecar in ``ns-0`` whose egress imports three services (``./svc-0...``, ``ns-1/svc-1...``,
``ns-2/svc-2...``, as FQDNs): what istioctl users do to shrink a sidecar's config.

Measured: parsing the manifests once (shared), translating for the sidecar, encoding
the snapshot as ADS would (hashing every resource), the resources' counts and wire size,
and peak Python heap during a translation (tracemalloc, in a separate pass: it slows
everything it watches). Prints figures; asserts only that the scope took effect.

    make bench
    python benchmarks/sidecar_bench.py 2000 200      # services, namespaces
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.node_id import NodeId
from pilotfish.server.control_plane import snapshot_of
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate

T = TypeVar("T")

PROXY_NAMESPACE = "ns-0"
SCOPE = [
    "./svc-0.ns-0.svc.cluster.local",
    "ns-1/svc-1.ns-1.svc.cluster.local",
    "ns-2/svc-2.ns-2.svc.cluster.local",
]
VERSIONS = ("v1", "v1", "v2")  # the three pods of each service


def namespace_of(i: int, namespaces: int) -> str:
    return f"ns-{i % namespaces}"


def pod_ip(i: int, j: int) -> str:
    return f"10.{i // 250 + 1}.{i % 250}.{j + 1}"


def service_docs(i: int, namespaces: int) -> list[dict[str, Any]]:
    name, ns = f"svc-{i}", namespace_of(i, namespaces)
    pods: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{j}",
                "namespace": ns,
                "labels": {"app": name, "version": version},
            },
            "status": {"podIP": pod_ip(i, j), "podIPs": [{"ip": pod_ip(i, j)}]},
        }
        for j, version in enumerate(VERSIONS)
    ]
    return [*pods,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                "selector": {"app": name},
                "ports": [
                    {"name": "http", "port": 9080},
                    {"name": "tcp-db", "port": 5432},
                ],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": name},
            },
            "ports": [{"name": "http", "port": 9080}, {"name": "tcp-db", "port": 5432}],
            "endpoints": [
                {
                    "addresses": [pod_ip(i, j)],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": f"{name}-{j}", "namespace": ns},
                }
                for j in range(len(VERSIONS))
            ],
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "host": name,
                "trafficPolicy": {"connectionPool": {"http": {"http1MaxPendingRequests": 100}}},
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "hosts": [name],
                "http": [
                    {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                     "route": [{"destination": {"host": name, "subset": "v2"}}]},
                    {"route": [{"destination": {"host": name, "subset": "v1"}, "weight": 90},
                               {"destination": {"host": name, "subset": "v2"}, "weight": 10}],
                     "timeout": "5s"},
                ],
            },
        },
    ]  # fmt: skip


def sidecar_doc() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": PROXY_NAMESPACE},
        "spec": {"egress": [{"hosts": SCOPE}]},
    }


def manifests(services: int, namespaces: int) -> str:
    docs = [d for i in range(services) for d in service_docs(i, namespaces)]
    return yaml.safe_dump_all(docs)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def best_of(fn: Callable[[], T], runs: int = 2) -> tuple[T, float]:
    """The fastest of ``runs`` (the others paid for the machine's noise)."""
    results = [timed(fn) for _ in range(runs)]
    return min(results, key=lambda r: r[1])


def sidecar_proxy() -> Proxy:
    node = NodeId.for_pod("sidecar", "10.1.0.1", "client-1", PROXY_NAMESPACE)
    return Proxy.from_node(str(node), {"LABELS": {"app": "client"}, "NAMESPACE": PROXY_NAMESPACE})


def wire_size(translation: Translation) -> int:
    parts = (
        *translation.listeners,
        *translation.routes,
        *translation.clusters,
        *translation.endpoints,
    )
    return sum(len(m.SerializeToString()) for m in parts)


def measure(label: str, config: ConfigSet, proxy: Proxy) -> Translation:
    translation, t_translate = best_of(lambda: translate(config, proxy))
    _, t_snapshot = best_of(lambda: snapshot_of(translation))
    tracemalloc.start()
    held = snapshot_of(translate(config, proxy))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held
    vhosts = sum(len(rc.virtual_hosts) for rc in translation.routes)
    print(
        f"  {label:<22} translate {t_translate:6.3f}s  snapshot+hash {t_snapshot:6.3f}s  "
        f"peak heap {peak / 1e6:6.1f} MB  | {len(translation.clusters):5d} clusters "
        f"{len(translation.listeners):5d} listeners {vhosts:5d} vhosts  "
        f"{wire_size(translation) / 1e6:5.2f} MB on the wire"
    )
    return translation


def run(services: int, namespaces: int) -> None:
    text = manifests(services, namespaces)
    parsed, t_yaml = timed(lambda: parse_manifest_text(text, "mesh.yaml"))
    config, t_parse = timed(lambda: build_config_set([parsed]))
    scoped_parsed = parse_manifest_text(yaml.safe_dump(sidecar_doc()), "sidecar.yaml")
    scoped = build_config_set([parsed, scoped_parsed])
    errors = [e for e in (*config.errors, *scoped.errors) if e.severity == "error"]
    assert not errors, errors[:3]
    print(
        f"mesh of {services} services in {namespaces} namespaces "
        f"(yaml {t_yaml:.2f}s, parse {t_parse:.2f}s), one sidecar in {PROXY_NAMESPACE}:"
    )
    proxy = sidecar_proxy()
    everything = measure("no Sidecar resource", config, proxy)
    narrow = measure("Sidecar: 3 services", scoped, proxy)
    assert len(narrow.clusters) < len(everything.clusters) / 10, (
        "the Sidecar resource did not scope the translation"
    )


def main() -> None:
    args = [int(a) for a in sys.argv[1:]]
    services, namespaces = (args + [1000, 100][len(args) :])[:2]
    run(services, namespaces)


if __name__ == "__main__":
    main()
