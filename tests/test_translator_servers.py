"""pilotfish.translator.servers: what each Gateway server is, and which may share a port."""

from __future__ import annotations

import pytest

from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.gateway_servers.merge import merge_servers
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.servers import BoundServer, servers_for
from tests.test_translator_tls_fixtures import GATEWAY_PROXY, config, errors, gateway, run


def bound(servers: str, *more: str) -> tuple[list[BoundServer], Diagnostics]:
    diag = Diagnostics()
    cfg = config(gateway(servers), *more)
    return servers_for(cfg, GATEWAY_PROXY, ServiceRegistry(cfg), diag), diag


@pytest.mark.parametrize(
    ("server", "kind"),
    [
        ("{number: 80, name: http, protocol: HTTP}", "http"),
        ("{number: 80, name: grpc, protocol: GRPC}", "http"),
        ("{number: 443, name: https, protocol: HTTPS}\n  tls: {mode: SIMPLE}", "https"),
        ("{number: 443, name: https, protocol: HTTPS}\n  tls: {mode: MUTUAL}", "https"),
        ("{number: 443, name: https, protocol: HTTPS}\n  tls: {mode: PASSTHROUGH}", "passthrough"),
        (
            "{number: 443, name: tls, protocol: TLS}\n  tls: {mode: AUTO_PASSTHROUGH}",
            "auto_passthrough",
        ),
        ("{number: 443, name: tls, protocol: TLS}\n  tls: {mode: OPTIONAL_MUTUAL}", "tls"),
        ("{number: 31400, name: tcp, protocol: TCP}", "tcp"),
        # Istio terminates a TCP server that has tls settings, as a TLS one.
        ("{number: 31400, name: tcp, protocol: TCP}\n  tls: {mode: SIMPLE}", "tls"),
        # mode defaults to PASSTHROUGH (the enum's zero).
        ("{number: 443, name: https, protocol: https}\n  tls: {}", "passthrough"),
    ],
)
def test_kind_follows_protocol_and_tls_mode(server: str, kind: str) -> None:
    [found], diag = bound(f"- port: {server}\n  hosts: ['*']")
    assert found.kind == kind
    assert [e for e in diag.sorted() if e.severity == "error"] == []


@pytest.mark.parametrize(
    ("server", "field", "message"),
    [
        ("{number: 443, name: https, protocol: HTTPS}", ".tls", "needs tls settings"),
        ("{number: 443, name: tls, protocol: TLS}", ".tls", "needs tls settings"),
        (
            "{number: 443, name: https, protocol: HTTPS}\n  tls: {mode: ISTIO_MUTUAL}",
            ".tls.mode",
            "needs the mesh's own certificates",
        ),
        ("{number: 53, name: udp, protocol: UDP}", ".port.protocol", "not supported yet"),
    ],
)
def test_unusable_servers_are_reported(server: str, field: str, message: str) -> None:
    found, diag = bound(f"- port: {server}\n  hosts: ['*']")
    assert found == []
    [problem] = diag.sorted()
    assert problem.field == f"spec.servers[0]{field}" and message in problem.message


def test_misleading_tls_settings_are_warned_about() -> None:
    _, diag = bound(
        """\
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ['*']
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ['*']
  tls: {credentialName: httpbin-credential}
"""
    )
    assert [(e.severity, e.field) for e in diag.sorted()] == [
        ("warning", "spec.servers[0].tls"),
        ("warning", "spec.servers[1].tls.mode"),
    ]


def merged(
    servers: str, *more: str
) -> tuple[dict[tuple[str, int], list[BoundServer]], Diagnostics]:
    found, diag = bound(servers, *more)
    return merge_servers(found, diag), diag


def test_http_family_shares_a_port_and_tls_servers_share_by_host() -> None:
    result, diag = merged(
        """\
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [a.example.com]
- port: {number: 80, name: http2, protocol: HTTP2}
  hosts: [b.example.com]
- port: {number: 443, name: https-a, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: nginx, protocol: TLS}
  hosts: [nginx.example.com]
  tls: {mode: PASSTHROUGH}
"""
    )
    assert diag.sorted() == ()
    assert {k: [s.index for s in v] for k, v in result.items()} == {
        ("0.0.0.0", 80): [0, 1],
        ("0.0.0.0", 443): [2, 3],
    }


def test_binds_are_separate_listeners() -> None:
    result, diag = merged(
        """\
- port: {number: 9000, name: tcp, protocol: TCP}
  hosts: ['*']
- port: {number: 9000, name: tcp, protocol: TCP}
  bind: 127.0.0.1
  hosts: ['*']
"""
    )
    assert diag.sorted() == () and set(result) == {("0.0.0.0", 9000), ("127.0.0.1", 9000)}


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("HTTP", "HTTPS", "HTTPS and HTTP servers cannot share a port"),
        ("HTTPS", "HTTP", "HTTP and HTTPS servers cannot share a port"),
        ("HTTP", "TCP", "a TCP server needs a port of its own"),
        ("TCP", "TCP", "a TCP server needs a port of its own"),
        ("TLS", "TCP", "a TCP server needs a port of its own"),
    ],
)
def test_the_later_of_two_servers_that_cannot_share_is_left_out(
    first: str, second: str, message: str
) -> None:
    def server(protocol: str, host: str) -> str:
        tls = "\n  tls: {mode: SIMPLE, credentialName: httpbin-credential}"
        return (
            f"- port: {{number: 8000, name: {protocol.lower()}-{host[0]}, protocol: {protocol}}}\n"
            f"  hosts: [{host}]" + (tls if protocol in ("HTTPS", "TLS") else "")
        )

    result, diag = merged(server(first, "a.example.com") + "\n" + server(second, "b.example.com"))
    assert [s.index for s in result[("0.0.0.0", 8000)]] == [0]
    [problem] = diag.sorted()
    assert problem.field == "spec.servers[1].port"
    assert message in problem.message and "spec.servers[0] of Gateway default/gw" in problem.message


def test_same_tls_host_twice_on_a_port_whatever_the_namespace_prefix() -> None:
    result, diag = merged(
        """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [default/a.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
""",
        gateway(
            """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ['*/a.example.com', b.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
- port: {number: 443, name: https-c, protocol: HTTPS}
  hosts: [c.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
""",
            name="later",
        ),
    )
    assert [(s.gateway.meta.name, s.index) for s in result[("0.0.0.0", 443)]] == [
        ("gw", 0),
        ("later", 1),
    ]
    [problem] = diag.sorted()
    assert (problem.name, problem.field) == ("later", "spec.servers[0].hosts")
    assert "already serves a.example.com by the HTTPS server spec.servers[0]" in problem.message


def test_https_servers_of_one_gateway_need_distinct_port_names() -> None:
    result, diag = merged(
        """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [b.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
"""
    )
    assert len(result[("0.0.0.0", 443)]) == 1
    [problem] = diag.sorted()
    assert problem.field == "spec.servers[1].port.name"


def test_a_skipped_server_leaves_nothing_behind_in_envoys_config() -> None:
    translation = run(
        gateway(
            """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: https-dup, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
"""
        )
    )
    assert len(errors(translation)) == 1
    assert [r.name for r in translation.routes] == ["https.443.https.gw.default"]
    assert [s.name for s in translation.secrets] == ["kubernetes://httpbin-credential"]
    [listener] = translation.config.listeners
    [chain] = listener.chains
    assert chain.match == ir.ChainMatch(("a.example.com",))
