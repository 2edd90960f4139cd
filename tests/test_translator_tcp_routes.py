"""pilotfish.translator.tcp_routes (and auto_passthrough): VirtualService `tcp:` and `tls:`
rules -> the TCP chains of TCP, TLS and passthrough servers."""

from __future__ import annotations

from dataclasses import replace

from pilotfish.translator import ir
from tests.test_translator_tls_fixtures import errors, gateway, problems, run

NGINX = "outbound|443||my-nginx.default.svc.cluster.local"
NGINX_V2 = "outbound|443||nginx-v2.default.svc.cluster.local"
ECHO = "outbound|9000||tcp-echo.default.svc.cluster.local"

TCP_SERVER = """\
- port: {number: 31400, name: tcp, protocol: TCP}
  hosts: ['*']
"""
PASSTHROUGH = """\
- port: {number: 443, name: tls, protocol: TLS}
  hosts: ['*.example.com']
  tls: {mode: PASSTHROUGH}
"""


def vs(name: str, body: str, hosts: str = "['*']", gateways: str = "[gw]") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec:\n  hosts: {hosts}\n  gateways: {gateways}\n{body}"
    )


def chains(*docs: str) -> tuple[ir.TcpFilterChain, ...]:
    translation = run(*docs)
    if not translation.config.listeners:
        return ()
    [listener] = translation.config.listeners
    found = tuple(c for c in listener.chains if isinstance(c, ir.TcpFilterChain))
    assert len(found) == len(listener.chains)
    # Where each chain came from is checked once, below; the rest compare what it does.
    return tuple(replace(c, source=None) for c in found)


def test_a_chain_records_the_gateway_server_it_came_from() -> None:
    translation = run(
        gateway(TCP_SERVER), vs("v", "  tcp:\n  - route: [{destination: {host: single}}]\n")
    )
    [listener] = translation.config.listeners
    [chain] = listener.chains
    assert chain.source is not None
    assert (chain.source.kind, chain.source.name, chain.source.field) == (
        "Gateway",
        "gw",
        "spec.servers[0].hosts",
    )


def test_first_applying_tcp_rule_over_virtualservices_in_order() -> None:
    other = gateway(TCP_SERVER, name="other").replace("ingressgateway", "egressgateway")
    found = chains(
        gateway(TCP_SERVER),
        other,
        vs(
            "a-other-port",
            "  tcp:\n  - match: [{port: 9999}]\n    route: [{destination: {host: single}}]\n",
        ),
        vs(
            "b-other-gateway",
            "  tcp:\n  - route: [{destination: {host: single}}]\n",
            gateways="[other]",
        ),
        vs(
            "c-match",
            "  tcp:\n  - match: [{port: 31400, gateways: [default/gw]}]\n"
            "    route: [{destination: {host: tcp-echo, port: {number: 9000}}}]\n",
        ),
        vs("d-later", "  tcp:\n  - route: [{destination: {host: single}}]\n"),
    )
    assert found == (ir.TcpFilterChain(ECHO, (ir.WeightedCluster(ECHO, 0),)),)


def test_destination_port_defaults_as_istio() -> None:
    # The service's only port; else the gateway server's port.
    only = chains(
        gateway(TCP_SERVER), vs("v", "  tcp:\n  - route: [{destination: {host: single}}]\n")
    )
    assert only[0].clusters[0].cluster == "outbound|7000||single.default.svc.cluster.local"
    translation = run(
        gateway(TCP_SERVER), vs("v", "  tcp:\n  - route: [{destination: {host: tcp-echo}}]\n")
    )
    [chain] = translation.config.listeners[0].chains
    assert isinstance(chain, ir.TcpFilterChain)
    assert chain.clusters[0].cluster == "outbound|31400||tcp-echo.default.svc.cluster.local"
    assert [(f, m) for _, f, m in problems(translation)] == [
        (
            "spec.tcp[0].route[0].destination.port",
            "service tcp-echo.default.svc.cluster.local has no port 31400: "
            "connections routed there fail",
        )
    ]


def test_weighted_tcp_destinations() -> None:
    route = (
        "  tcp:\n  - route:\n"
        "    - {destination: {host: my-nginx, port: {number: 443}}, weight: 75}\n"
        "    - {destination: {host: nginx-v2, port: {number: 443}}, weight: 25}\n"
        "    - {destination: {host: single}, weight: 0}\n"
    )
    [chain] = chains(gateway(TCP_SERVER), vs("split", route))
    # Istio's stat prefix for a split: the VirtualService; zero weights are dropped.
    assert chain == ir.TcpFilterChain(
        "split.default", (ir.WeightedCluster(NGINX, 75), ir.WeightedCluster(NGINX_V2, 25))
    )


def test_several_destinations_without_weights_are_split_evenly_and_reported() -> None:
    route = (
        "  tcp:\n  - route:\n"
        "    - {destination: {host: my-nginx, port: {number: 443}}}\n"
        "    - {destination: {host: nginx-v2, port: {number: 443}}}\n"
    )
    translation = run(gateway(TCP_SERVER), vs("split", route))
    [chain] = translation.config.listeners[0].chains
    assert isinstance(chain, ir.TcpFilterChain)
    assert [c.weight for c in chain.clusters] == [1, 1]
    assert [e.field for e in errors(translation)] == ["spec.tcp[0].route"]


def test_tcp_server_without_a_route_serves_nothing_and_says_so() -> None:
    translation = run(gateway(TCP_SERVER))
    assert translation.listeners == ()
    assert [(f, m[:40]) for _, f, m in problems(translation)] == [
        ("spec.servers[0]", "no VirtualService bound to this server h")
    ]


def test_passthrough_chain_per_tls_match_within_the_server_hosts() -> None:
    tls = (
        "  tls:\n"
        "  - match:\n"
        "    - {port: 443, sniHosts: [nginx.example.com]}\n"
        "    - {port: 8443, sniHosts: [other-port.example.com]}\n"
        "    - {sniHosts: [elsewhere.org]}\n"
        "    route: [{destination: {host: my-nginx, port: {number: 443}}}]\n"
        "  - match:\n"
        "    - {sniHosts: ['*.shop.example.com', b.example.com, a.example.com]}\n"
        "    route: [{destination: {host: nginx-v2, port: {number: 443}}}]\n"
    )
    found = chains(gateway(PASSTHROUGH), vs("nginx", tls, hosts="['*.example.com']"))
    assert found == (
        ir.TcpFilterChain(
            NGINX, (ir.WeightedCluster(NGINX, 0),), ir.ChainMatch(("nginx.example.com",))
        ),
        ir.TcpFilterChain(
            NGINX_V2,
            (ir.WeightedCluster(NGINX_V2, 0),),
            ir.ChainMatch(("*.shop.example.com", "a.example.com", "b.example.com")),
        ),
    )


def test_passthrough_sni_taken_twice_keeps_the_first() -> None:
    tls = (
        "  tls:\n  - match: [{sniHosts: [nginx.example.com]}]\n"
        "    route: [{destination: {host: my-nginx, port: {number: 443}}}]\n"
    )
    translation = run(
        gateway(PASSTHROUGH),
        vs("first", tls, hosts="[nginx.example.com]"),
        vs("second", tls.replace("my-nginx", "nginx-v2"), hosts="[nginx.example.com]"),
    )
    [listener] = translation.config.listeners
    assert [c.clusters[0].cluster for c in listener.chains if isinstance(c, ir.TcpFilterChain)] == [
        NGINX
    ]
    [error] = errors(translation)
    assert (error.name, error.field) == ("second", "spec.tls[0].match[0]")
    assert "VirtualService default/first spec.tls[0].match[0]" in error.message


def test_tls_rules_need_sni_hosts() -> None:
    tls = "  tls:\n  - match: [{port: 443}]\n    route: [{destination: {host: my-nginx}}]\n"
    translation = run(gateway(PASSTHROUGH), vs("v", tls, hosts="[a.example.com]"))
    assert [e.field for e in errors(translation)] == ["spec.tls[0].match[0].sniHosts"]


def test_auto_passthrough_sni_dnat_chains_and_clusters() -> None:
    translation = run(
        gateway(
            """\
- port: {number: 15443, name: tls, protocol: TLS}
  hosts: ['*.default.svc.cluster.local']
  tls: {mode: AUTO_PASSTHROUGH}
"""
        )
    )
    assert errors(translation) == []
    [listener] = translation.config.listeners
    names = [c.match.server_names for c in listener.chains]
    assert ("outbound_.9001_._.tcp-echo.default.svc.cluster.local",) in names
    assert len(names) == 6  # every port of the five services
    sni = "outbound_.443_._.my-nginx.default.svc.cluster.local"
    assert ir.Cluster(sni) in translation.config.clusters
    assert any(a.cluster_name == sni for a in translation.config.load_assignments)
    assert listener.listener_filters == (ir.ListenerFilter("tls_inspector"),)
