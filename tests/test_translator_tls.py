"""pilotfish.translator.tls and envoy/tls.py: a server's `tls:` -> DownstreamTlsContext."""

from __future__ import annotations

import pytest

from pilotfish.translator import http_options, ir
from pilotfish.translator.envoy import listener as listener_builder
from pilotfish.translator.envoy import tls as tls_builder
from pilotfish.translator.tls import CIPHER_SUITES, HTTP_ALPN, san_match
from pilotfish.xds.snapshot import Snapshot
from tests.test_translator_tls_fixtures import HTTPBIN, errors, gateway, problems, run
from testsupport.envoy import validate_config
from testsupport.static_bootstrap import static_bootstrap_for


def only_chain(servers: str) -> ir.FilterChain:
    translation = run(gateway(servers))
    assert errors(translation) == [], problems(translation)
    [listener] = translation.config.listeners
    [chain] = listener.chains
    return chain


def test_simple_https_chain() -> None:
    chain = only_chain(
        """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [b.example.com, default/a.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
"""
    )
    assert chain == ir.HttpFilterChain(
        "https.443.https.gw.default",
        "outbound_0.0.0.0_443",
        ir.ChainMatch(("a.example.com", "b.example.com")),
        ir.DownstreamTls(("kubernetes://httpbin-credential",), HTTP_ALPN),
        options=http_options.GATEWAY_TLS,
        source=ir.Source("Gateway", "default", "gw", "spec.servers[0].hosts", "config.yaml", 8),
    )


def test_mutual_and_optional_mutual() -> None:
    servers = """\
- port: {{number: 443, name: https, protocol: HTTPS}}
  hosts: ['*']
  tls:
    mode: {mode}
    credentialName: mutual-credential
    subjectAltNames: [client.example.com, "spiffe://td/ns/a/sa/b"]
"""
    mutual = only_chain(servers.format(mode="MUTUAL"))
    assert mutual.match == ir.ChainMatch(())  # `*`: no SNI match
    assert mutual.tls is not None and mutual.tls.client == ir.ClientValidation(
        "kubernetes://mutual-credential-cacert",
        required=True,
        subject_alt_names=(
            ir.SanMatch("DNS", "client.example.com"),
            ir.SanMatch("URI", "spiffe://td/ns/a/sa/b"),
        ),
    )
    optional = only_chain(servers.format(mode="OPTIONAL_MUTUAL"))
    assert optional.tls is not None and optional.tls.client is not None
    assert optional.tls.client.required is False


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.example.com", "DNS"),
        ("*.example.com", "DNS"),
        ("spiffe://cluster.local/ns/default/sa/x", "URI"),
        ("ops@example.com", "EMAIL"),
        ("10.0.0.1", "IP_ADDRESS"),
        ("2001:db8::1", "IP_ADDRESS"),
    ],
)
def test_subject_alt_names_are_typed_by_shape(name: str, kind: str) -> None:
    assert san_match(name) == ir.SanMatch(kind, name)  # type: ignore[arg-type]


def test_tls_parameters() -> None:
    chain = only_chain(
        """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ['*']
  tls:
    mode: SIMPLE
    credentialName: httpbin-credential
    minProtocolVersion: TLSV1_2
    maxProtocolVersion: TLSV1_3
    cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, AES256-SHA]
"""
    )
    assert chain.tls is not None
    assert chain.tls.params == ir.TlsParams(
        "TLSv1_2", "TLSv1_3", ("ECDHE-RSA-AES128-GCM-SHA256", "AES256-SHA")
    )
    context = tls_builder.downstream_tls_context(chain.tls)
    params = context.common_tls_context.tls_params
    assert (params.tls_minimum_protocol_version, params.tls_maximum_protocol_version) == (3, 4)


def test_every_known_cipher_suite_is_accepted_by_envoy() -> None:
    secret = ir.CertificateSecret("kubernetes://c", HTTPBIN.cert_pem, HTTPBIN.key_pem)
    tls = ir.DownstreamTls(
        (secret.name,), params=ir.TlsParams(cipher_suites=tuple(sorted(CIPHER_SUITES)))
    )
    chain = ir.TcpFilterChain("s", (ir.WeightedCluster("c", 1),), tls=tls)
    validate_config(
        static_bootstrap_for(
            listeners=[listener_builder.listener(ir.Listener("l", "127.0.0.1", 0, (chain,)))],
            secrets=[tls_builder.secret(secret)],
        )
    )


@pytest.mark.parametrize(
    ("tls", "field", "message", "served"),
    [
        (
            "{mode: SIMPLE, credentialName: httpbin-credential, cipherSuites: [RC4-MD5]}",
            "spec.servers[0].tls.cipherSuites",
            "cipher suites Envoy does not know: RC4-MD5: dropped",
            True,
        ),
        (
            "{mode: SIMPLE, credentialName: httpbin-credential, minProtocolVersion: TLSV1_3,"
            " maxProtocolVersion: TLSV1_1}",
            "spec.servers[0].tls.minProtocolVersion",
            "minProtocolVersion is above maxProtocolVersion: both ignored",
            True,
        ),
        (
            "{mode: SIMPLE}",
            "spec.servers[0].tls",
            "mode SIMPLE needs a credentialName: server skipped",
            False,
        ),
        (
            "{mode: SIMPLE, serverCertificate: /etc/cert.pem, privateKey: /etc/key.pem}",
            "spec.servers[0].tls",
            "certificate files on the proxy are not supported",
            False,
        ),
        (
            "{mode: SIMPLE, credentialNames: [httpbin-credential, helloworld-credential]}",
            "spec.servers[0].tls.credentialNames",
            "two credentials need different key types",
            False,
        ),
        (
            "{mode: MUTUAL, credentialName: mutual-credential, verifyCertificateHash: [abc]}",
            "spec.servers[0].tls.verifyCertificateHash[0]",
            "not a hex SHA-256 digest",
            False,
        ),
        (
            "{mode: MUTUAL, credentialName: httpbin-credential}",
            "spec.servers[0].tls.credentialName",
            "MUTUAL needs the CA that client certificates are checked with",
            False,
        ),
        (
            "{mode: MUTUAL, credentialName: httpbin-credential, caCertCredentialName: mutual-credential}",
            None,
            None,
            True,
        ),
    ],
)
def test_tls_problems(tls: str, field: str | None, message: str | None, served: bool) -> None:
    translation = run(
        gateway(
            f"- port: {{number: 443, name: https, protocol: HTTPS}}\n  hosts: ['*']\n  tls: {tls}\n"
        )
    )
    found = [(e.field, e.message) for e in errors(translation) if e.kind == "Gateway"]
    if message is None:
        assert found == []
    else:
        [(got_field, got_message)] = found
        assert got_field == field and message in got_message
    assert bool(translation.listeners) == served


def test_ca_cert_credential_name_takes_the_ca_from_another_secret() -> None:
    chain = only_chain(
        """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ['*']
  tls: {mode: MUTUAL, credentialName: httpbin-credential, caCertCredentialName: mutual-credential}
"""
    )
    assert chain.tls is not None and chain.tls.secret_names == (
        "kubernetes://httpbin-credential",
        "kubernetes://mutual-credential-cacert",
    )


def test_snapshot_refers_only_to_secrets_it_carries() -> None:
    translation = run(
        gateway(
            """\
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: MUTUAL, credentialName: mutual-credential}
- port: {number: 443, name: https-b, protocol: HTTPS}
  hosts: [b.example.com]
  tls: {mode: SIMPLE, credentialName: no-such-credential}
"""
        )
    )
    assert [s.name for s in translation.secrets] == [
        "kubernetes://mutual-credential",
        "kubernetes://mutual-credential-cacert",
    ]
    snapshot = Snapshot.of(
        clusters=translation.clusters,
        endpoints=translation.endpoints,
        listeners=translation.listeners,
        routes=translation.routes,
        secrets=translation.secrets,
    )
    assert snapshot.consistency_errors() == []


def test_a_listeners_parts_are_located_at_the_server_that_made_them() -> None:
    """The pre-push check reports a listener's violation where the user wrote it."""
    translation = run(
        gateway(
            """\
- port: {number: 443, name: https-a, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
- port: {number: 443, name: https-b, protocol: HTTPS}
  hosts: [b.example.com]
  tls: {mode: SIMPLE, credentialName: httpbin-credential}
"""
        )
    )
    [listener] = translation.listeners
    listener_type = "type.googleapis.com/envoy.config.listener.v3.Listener"

    def field(path: str) -> str | None:
        source = translation.locate(listener_type, listener.name, path)
        return None if source is None else f"{source.kind} {source.name} {source.field}"

    assert field("filter_chains[1].transport_socket.typed_config") == (
        "Gateway gw spec.servers[1].hosts"
    )
    assert field("filter_chains[0].filter_chain_match.server_names[0]") == (
        "Gateway gw spec.servers[0].hosts"
    )
    assert field("listener_filters[0]") == "Gateway gw spec.servers[0].hosts"
