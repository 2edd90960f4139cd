"""Looking at bookinfo in the mesh: what a sidecar was told, and who answered requests.

Shared by the mesh scenarios (e2e/test_bookinfo_mesh.py) and ``make demo-mesh``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.mesh import Pod

Routes = list[dict[str, Any]]


def vhost_routes(envoy: EnvoyProcess, route_config: str, vhost: str) -> Routes | None:
    """The routes of virtual host ``vhost`` in route configuration ``route_config`` as the
    sidecar holds them now (None: not there)."""
    found = envoy.dynamic_route_configs().get(route_config)
    if found is None:
        return None
    for host in found.config.get("virtual_hosts", []):
        if host.get("name") == vhost:
            return list(host.get("routes", []))
    return None


def weights(route: Mapping[str, Any]) -> dict[str, int]:
    """Cluster -> weight of one route (a single cluster weighs 100); {} for no forwarding."""
    action = route.get("route", {})
    if "cluster" in action:
        return {str(action["cluster"]): 100}
    clusters = action.get("weighted_clusters", {}).get("clusters", [])
    return {str(c["name"]): int(c.get("weight", 0)) for c in clusters}


def wait_for_vhost(
    envoy: EnvoyProcess,
    route_config: str,
    vhost: str,
    predicate: Callable[[Routes], bool],
    what: str,
    timeout: float = 15.0,
) -> Routes:
    """Wait until the sidecar's routes for ``vhost`` satisfy ``predicate``."""

    def check() -> Routes | None:
        routes = vhost_routes(envoy, route_config, vhost)
        return routes if routes is not None and predicate(routes) else None

    return envoy.wait_for(
        check, f"{envoy.name}: {vhost} in route config {route_config}: {what}", timeout
    )


def fetch_all(
    pod: Pod,
    url: str,
    count: int,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> list[Response]:
    """``count`` GETs of ``url`` from inside ``pod``, as many at once as the pod's
    threads allow (16), each on a connection of its own."""
    parts = urlsplit(url)
    address = (pod.resolve(parts.hostname or ""), parts.port or 80)
    futures = [
        pod.threads.submit(request, url, headers, "GET", None, timeout, connect_to=address)
        for _ in range(count)
    ]
    return [f.result() for f in futures]


def version_of(reply: Response, service: str | None = None) -> str:
    """Who answered: the JSON's version, or that of the call to ``service`` it made;
    ``<status>`` when there is none (an error)."""
    try:
        body = reply.json()
    except ValueError:
        return f"<{reply.status}>"
    if service is not None:
        body = body.get("calls", {}).get(service, {})
    return str(body.get("version") or f"<{body.get('status', reply.status)}>")


def versions(replies: list[Response], service: str | None = None) -> Counter[str]:
    return Counter(version_of(r, service) for r in replies)
