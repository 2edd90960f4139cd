"""examples/bookinfo: Istio's bookinfo YAML as users apply it — the platform manifest (with
its Deployments and ServiceAccounts, which pilotfish skips), the gateway, the
DestinationRules and each task's VirtualServices — translates without a problem for the
ingress gateway and for a sidecar, and Envoy accepts every result."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.node_id import NodeId
from pilotfish.sources.files import read_manifest_file
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from tests.test_golden import envoy_accepts

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "bookinfo"
BASE = ("platform/bookinfo.yaml", "networking/bookinfo-gateway.yaml")
TASKS = sorted(
    p.relative_to(EXAMPLE).as_posix()
    for p in (EXAMPLE / "networking").glob("virtual-service-*.yaml")
)


def config_with(*files: str) -> ConfigSet:
    return build_config_set([read_manifest_file(EXAMPLE / f, f) for f in files])


def proxy(kind: str, name: str, namespace: str, labels: dict[str, str]) -> Proxy:
    node_id = NodeId.for_pod(kind, "10.0.0.1", name, namespace)
    return Proxy.from_node(str(node_id), {"LABELS": labels, "NAMESPACE": namespace})


GATEWAY = proxy("router", "ingress", "istio-system", {"istio": "ingressgateway"})
PRODUCTPAGE = proxy("sidecar", "productpage-v1", "default", {"app": "productpage", "version": "v1"})


def test_the_platform_manifest_gives_the_four_services_and_nothing_else() -> None:
    config = config_with("platform/bookinfo.yaml")
    assert config.errors == ()
    assert sorted(s.meta.name for s in config.services()) == [
        "details",
        "productpage",
        "ratings",
        "reviews",
    ]
    assert {k.kind for k in config.objects} == {"Service"}


@pytest.mark.parametrize("task", TASKS)
def test_each_task_translates_cleanly_and_envoy_accepts_it(task: str) -> None:
    config = config_with(*BASE, "networking/destination-rule-all.yaml", task)
    assert config.errors == (), [e.describe() for e in config.errors]
    for who in (GATEWAY, PRODUCTPAGE):
        translation = translate(config, who)
        assert translation.status == (), [s.describe() for s in translation.status]
        envoy_accepts(translation)


def test_the_gateway_routes_the_bookinfo_paths_to_productpage() -> None:
    translation = translate(config_with(*BASE), GATEWAY)
    assert translation.status == ()
    (routes,) = translation.routes
    assert routes.name == "http.8080"
    (vhost,) = routes.virtual_hosts
    paths = [r.match.path or r.match.prefix for r in vhost.routes]
    assert paths == ["/productpage", "/static", "/login", "/logout", "/api/v1/products"]
    assert {r.route.cluster for r in vhost.routes} == {
        "outbound|9080||productpage.default.svc.cluster.local"
    }
