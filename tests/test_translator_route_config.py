"""No route configuration pilotfish builds repeats a domain: Envoy would refuse all of it."""

from __future__ import annotations

import itertools

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc_pb
from envoy.config.route.v3 import route_pb2

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.node_id import NodeId
from pilotfish.translator import ir
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from testsupport.envoy import EnvoyConfigError, validate_config
from testsupport.static_bootstrap import static_bootstrap_for

PROXY = Proxy.from_node(
    str(NodeId.for_pod("router", "10.0.0.1", "gw-0", "istio-system")),
    {"LABELS": {"istio": "ingressgateway"}},
)


def vhost(name: str, *domains: str) -> ir.VirtualHost:
    return ir.VirtualHost(name, domains, ())


def test_the_ir_refuses_a_domain_twice_as_envoy_does() -> None:
    with pytest.raises(ValueError, match=r"http.80: domains repeated: \['a.example.com'\]"):
        ir.RouteConfig(
            "http.80", (vhost("a:80", "a.example.com"), vhost("a:8080", "A.example.com"))
        )
    with pytest.raises(ValueError, match="domains repeated"):
        ir.RouteConfig("http.80", (vhost("a", "a.example.com", "a.example.com"),))
    ir.RouteConfig("http.80", (vhost("a", "a.example.com"), vhost("a", "b.example.com")))

    # Envoy's own rule, which the IR's restates: the same route configuration built
    # without the IR is refused (and one with the repeated name only is not).
    def envoy_route_config(*vhosts: tuple[str, str]) -> route_pb2.RouteConfiguration:
        return route_pb2.RouteConfiguration(
            name="r", virtual_hosts=[rc_pb.VirtualHost(name=n, domains=[d]) for n, d in vhosts]
        )

    with pytest.raises(EnvoyConfigError, match=r"Duplicate entry of domain a\.example\.com"):
        validate_config(
            static_bootstrap_for(
                routes=[envoy_route_config(("x", "a.example.com"), ("y", "A.example.com"))]
            )
        )
    validate_config(
        static_bootstrap_for(routes=[envoy_route_config(("x", "a.example.com"), ("x", "b.com"))])
    )


HOSTS = ["a.example.com", "*.example.com", "*", "default/a.example.com", "./A.example.com"]


def _config(hosts_1: str, hosts_2: str, port_2: int, one_gateway: bool, redirect: bool) -> str:
    """Two HTTP servers landing on listener 8080 (the Service maps 80 -> 8080)."""
    server_2 = f"""\
  - port: {{number: {port_2}, name: http-2, protocol: HTTP}}
    hosts: ["{hosts_2}"]
    tls: {{httpsRedirect: {str(redirect).lower()}}}
"""
    gateway = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}"""
    first = f"""\
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["{hosts_1}"]
"""
    gateways = (
        [gateway.format(name="gw-1", servers=first + server_2)]
        if one_gateway
        else [
            gateway.format(name="gw-1", servers=first),
            gateway.format(name="gw-2", servers=server_2),
        ]
    )
    bound = "[gw-1]" if one_gateway else "[gw-1, gw-2]"
    virtual_services = [
        f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{i}, namespace: default}}
spec:
  hosts: ["{host}"]
  gateways: {bound}
  http:
  - route: [{{destination: {{host: httpbin, port: {{number: 8000}}}}}}]
"""
        for i, host in enumerate(["a.example.com", "*.example.com", "b.example.com"])
    ]
    service = """\
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}]
"""
    return "---\n".join([service, *gateways, *virtual_services])


@pytest.mark.parametrize(
    ("one_gateway", "redirect"), list(itertools.product([True, False], repeat=2))
)
def test_servers_sharing_a_listener_never_repeat_a_domain(
    one_gateway: bool, redirect: bool
) -> None:
    """Every pairing of hosts on two servers, on one port or two, of one Gateway or two:
    one route configuration per listener, each host once (the IR would raise)."""
    for hosts_1, hosts_2, port_2 in itertools.product(HOSTS, HOSTS, [80, 8080]):
        text = _config(hosts_1, hosts_2, port_2, one_gateway, redirect)
        config = build_config_set([parse_manifest_text(text, "case.yaml")])
        assert config.errors == ()
        translation = translate(config, PROXY)
        assert [route.name for route in translation.routes] == ["http.8080"]
        [route] = translation.routes
        domains = [d for v in route.virtual_hosts for d in v.domains]
        assert len(domains) == len(set(domains)) and domains, (hosts_1, hosts_2, port_2)
        # Named after the first server with the host: gw-1's port-80 server when it has it.
        if not any(v.name.endswith(":8080") for v in route.virtual_hosts):
            assert all(v.name.endswith(":80") for v in route.virtual_hosts)
