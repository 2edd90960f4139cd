"""pilotfish.translator.gateway_servers: one builder per Gateway server kind, dispatched
in one place."""

from __future__ import annotations

from typing import get_args

from pilotfish.translator import ir
from pilotfish.translator.gateway_servers import KINDS
from pilotfish.translator.servers import ServerKind
from tests.test_translator_tls_fixtures import errors, gateway, run


def test_every_server_kind_has_a_builder() -> None:
    assert set(KINDS) == set(get_args(ServerKind))


def test_kinds_interleaved_on_one_listener_keep_the_servers_order() -> None:
    """HTTPS, passthrough, HTTPS on one port: three builders' chains, in server order."""
    translation = run(
        gateway(
            """\
- port: {number: 443, name: https-httpbin, protocol: HTTPS}
  hosts: [httpbin.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: tls-pass, protocol: TLS}
  hosts: [pass.example.com]
  tls: {mode: PASSTHROUGH}
- port: {number: 443, name: https-hello, protocol: HTTPS}
  hosts: [helloworld-v1.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
"""
        ),
        """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [pass.example.com]
  gateways: [gw]
  tls:
  - match: [{sniHosts: [pass.example.com]}]
    route: [{destination: {host: my-nginx}}]
""",
    )
    assert errors(translation) == []
    [listener] = translation.config.listeners
    assert [(type(c).__name__, c.match.server_names) for c in listener.chains] == [
        (ir.HttpFilterChain.__name__, ("httpbin.example.com",)),
        (ir.TcpFilterChain.__name__, ("pass.example.com",)),
        (ir.HttpFilterChain.__name__, ("helloworld-v1.example.com",)),
    ]
