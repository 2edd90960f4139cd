"""exportTo on VirtualServices: which gateways bind them, and which roots may delegate."""

from __future__ import annotations

import pytest

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate

GATEWAY = Proxy(
    "router",
    "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local",
    "10.0.0.1",
    "gw",
    "istio-system",
    {"istio": "ingressgateway"},
)

BASE = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
"""


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join((BASE, *documents)), "vs.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def virtual_service(export_to: str, extra: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [web.example.com]
  gateways: [gw]
  exportTo: {export_to}
  http: {extra or "[{route: [{destination: {host: web}}]}]"}
"""


def vhosts(config: ConfigSet) -> list[str]:
    return [
        v.name for rc in translate(config, GATEWAY).config.route_configs for v in rc.virtual_hosts
    ]


@pytest.mark.parametrize(
    ("export_to", "bound"),
    [
        ("['*']", True),
        ("[istio-system]", True),  # the gateway proxy's namespace
        ("['.']", False),  # only proxies in shop: the gateway runs in istio-system
        ("['~']", False),
        ("[shop, web]", False),
    ],
)
def test_a_gateway_binds_the_virtual_services_exported_to_its_namespace(
    export_to: str, bound: bool
) -> None:
    found = vhosts(config_of(virtual_service(export_to)))
    assert ("web.example.com:80" in found) is bound
    assert (found == ["blackhole:80"]) is not bound


def delegate(export_to: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web-routes, namespace: team}}
spec:
  exportTo: {export_to}
  http: [{{route: [{{destination: {{host: web.shop.svc.cluster.local}}}}]}}]
"""


ROOT_RULES = "[{delegate: {name: web-routes, namespace: team}}]"


def test_a_delegate_must_be_exported_to_its_roots_namespace() -> None:
    config = config_of(virtual_service("['*']", ROOT_RULES), delegate("['.']"))
    translation = translate(config, GATEWAY)
    (problem,) = translation.status
    assert (problem.kind, problem.name, problem.field) == (
        "VirtualService",
        "web",
        "spec.http[0].delegate",
    )
    assert "not exported to namespace shop" in problem.message
    (vhost,) = [v for rc in translation.config.route_configs for v in rc.virtual_hosts]
    assert vhost.routes == ()


def test_a_delegate_exported_to_the_roots_namespace_applies() -> None:
    config = config_of(virtual_service("['*']", ROOT_RULES), delegate("[shop]"))
    translation = translate(config, GATEWAY)
    assert translation.status == ()
    (vhost,) = [v for rc in translation.config.route_configs for v in rc.virtual_hosts]
    assert [str(c.cluster) for r in vhost.routes for c in r.clusters] == [
        "outbound|80||web.shop.svc.cluster.local"
    ]
