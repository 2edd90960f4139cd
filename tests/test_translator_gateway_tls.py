"""pilotfish.translator.gateway with TLS: listeners assembled from HTTPS, TLS, TCP and
passthrough servers; what changes (and what must not) when only a Secret changes."""

from __future__ import annotations

from pilotfish.translator import ir
from pilotfish.translator.envoy import listener as listener_builder
from pilotfish.xds import types
from pilotfish.xds.snapshot import Snapshot
from tests.test_translator_tls_fixtures import (
    CA,
    HELLO,
    SECRETS,
    errors,
    gateway,
    run,
    secret_yaml,
)
from testsupport.certs import issue

HTTPBIN_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.example.com, helloworld-v1.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: httpbin}}]
"""
TWO_HTTPS = """\
- port: {number: 443, name: https-httpbin, protocol: HTTPS}
  hosts: [httpbin.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: https-hello, protocol: HTTPS}
  hosts: [helloworld-v1.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
"""


def snapshot(*docs: str, secrets: str = SECRETS) -> Snapshot:
    t = run(*docs, secrets=secrets)
    return Snapshot.of(
        clusters=t.clusters,
        endpoints=t.endpoints,
        listeners=t.listeners,
        routes=t.routes,
        secrets=t.secrets,
    )


def test_each_https_server_has_its_own_route_configuration() -> None:
    translation = run(gateway(TWO_HTTPS), HTTPBIN_VS)
    assert errors(translation) == []
    vhosts = {r.name: [v.name for v in r.virtual_hosts] for r in translation.config.route_configs}
    assert vhosts == {
        "https.443.https-httpbin.gw.default": ["httpbin.example.com:443"],
        "https.443.https-hello.gw.default": ["helloworld-v1.example.com:443"],
    }


def test_tls_inspector_only_when_a_chain_matches_on_sni() -> None:
    wildcard = run(
        gateway(
            """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ['*']
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ['*']
"""
        )
    )
    assert [list(li.listener_filters) for li in wildcard.listeners] == [[], []]
    named = run(gateway(TWO_HTTPS))
    [listener] = named.listeners
    assert [f.name for f in listener.listener_filters] == [listener_builder.TLS_INSPECTOR]


def test_https_redirect_covers_every_host_of_the_server() -> None:
    translation = run(
        gateway(
            """\
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [httpbin.example.com, ./nothing-routed.example.com]
  tls: {httpsRedirect: true}
"""
        ),
        HTTPBIN_VS,
    )
    [route_config] = translation.config.route_configs
    assert [(v.name, v.require_tls, len(v.routes)) for v in route_config.virtual_hosts] == [
        ("httpbin.example.com:80", True, 1),
        ("nothing-routed.example.com:80", True, 0),
    ]


def test_only_a_secret_changing_changes_only_sds() -> None:
    """Rotation: listeners name secrets, never hold them, so a new certificate is an SDS
    push alone and Envoy swaps it in place (no listener drained)."""
    rotated = "---\n".join(
        [
            secret_yaml("httpbin-credential", issue(CA, ["httpbin.example.com"])),
            secret_yaml("helloworld-credential", HELLO),
            secret_yaml("mutual-credential", HELLO, ca=CA),
        ]
    )
    before = snapshot(gateway(TWO_HTTPS), HTTPBIN_VS)
    after = snapshot(gateway(TWO_HTTPS), HTTPBIN_VS, secrets=rotated)
    changed = [t for t in types.PUSH_ORDER if before.type_hash(t) != after.type_hash(t)]
    assert changed == [types.SECRET]
    assert before.resource_hash(
        types.SECRET, "kubernetes://helloworld-credential"
    ) == after.resource_hash(types.SECRET, "kubernetes://helloworld-credential")


def test_only_referenced_secrets_from_the_proxys_namespace_are_served() -> None:
    translation = run(
        gateway(
            """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: elsewhere-credential}
- port: {number: 443, name: https-b, protocol: HTTPS}
  hosts: [b.example.com]
  tls: {mode: SIMPLE, credentialName: helloworld-credential}
"""
        ),
        secrets="---\n".join(
            [SECRETS, secret_yaml("elsewhere-credential", HELLO, namespace="default")]
        ),
    )
    assert [s.name for s in translation.config.secrets] == ["kubernetes://helloworld-credential"]
    [error] = errors(translation)
    assert error.field == "spec.servers[0].tls.credentialName"
    assert "the one in default is not used" in error.message


def test_terminated_tls_server_forwards_tcp_without_alpn() -> None:
    translation = run(
        gateway(
            """\
- port: {number: 9443, name: tls, protocol: TLS}
  hosts: [tcp.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
"""
        ),
        """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp, namespace: default}
spec:
  hosts: [tcp.example.com]
  gateways: [gw]
  tcp:
  - route: [{destination: {host: single}}]
""",
    )
    [listener] = translation.config.listeners
    [chain] = listener.chains
    assert isinstance(chain, ir.TcpFilterChain)
    assert chain.match == ir.ChainMatch(("tcp.example.com",))
    assert chain.tls == ir.DownstreamTls(("kubernetes://httpbin-credential",), alpn=())
