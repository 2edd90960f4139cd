"""A Gateway server's `tls:` settings -> IR DownstreamTls, with the SDS secrets it needs.

As Istio: certificates come over SDS from the Secret `credentialName` names (or the up to
two `credentialNames`, one per key type); MUTUAL and OPTIONAL_MUTUAL check client
certificates against the CA of `kubernetes://<name>-cacert`; `subjectAltNames`,
`verifyCertificateSpki`/`Hash`, protocol versions and cipher suites map to Envoy's fields.
Anything that would make Envoy refuse the TLS context is reported here instead, and the
server is left out.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from typing import cast

from pilotfish.api.networking.v1alpha3 import gateway_pb2 as gw_pb
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.pem import key_type
from pilotfish.translator.secrets import Credentials, Unusable
from pilotfish.translator.servers import BoundServer

TLS = gw_pb.ServerTLSSettings
HTTP_ALPN = ("h2", "http/1.1")

# Cipher suites Envoy (BoringSSL) accepts for TLS 1.0-1.2 (TLS 1.3's are not configurable);
# each one checked by tests against a real Envoy. Istio drops unknown names the same way.
CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "ECDHE-PSK-AES128-CBC-SHA",
        "ECDHE-PSK-AES256-CBC-SHA",
        "ECDHE-PSK-CHACHA20-POLY1305",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "PSK-AES128-CBC-SHA",
        "PSK-AES256-CBC-SHA",
        "DES-CBC3-SHA",
    }
)
_VERSIONS: dict[int, ir.TlsVersion] = {
    TLS.TLS_AUTO: "TLS_AUTO",
    TLS.TLSV1_0: "TLSv1_0",
    TLS.TLSV1_1: "TLSv1_1",
    TLS.TLSV1_2: "TLSv1_2",
    TLS.TLSV1_3: "TLSv1_3",
}


@dataclass(frozen=True)
class Termination:
    """How a server terminates TLS, and the secrets (certificates, CA) that takes."""

    tls: ir.DownstreamTls
    secrets: tuple[ir.SdsSecret, ...]


def server_tls(
    bound: BoundServer, credentials: Credentials, diag: Diagnostics, *, alpn: tuple[str, ...]
) -> Termination | None:
    """The server's TLS termination, or None (reported) when it cannot be served."""
    tls = bound.server.tls
    path = f"{bound.path}.tls"
    mode = TLS.TLSmode.Name(tls.mode)
    named = _credential_fields(tls, path)
    if not named:
        uses_files = tls.server_certificate or tls.private_key or tls.tls_certificates
        why = (
            "certificate files on the proxy are not supported: use credentialName"
            if uses_files
            else f"mode {mode} needs a credentialName"
        )
        diag.error(bound.gateway, path, f"{why}: server skipped")
        return None

    secrets: list[ir.SdsSecret] = []
    for field_path, name in named:
        found = credentials.certificate(name)
        if isinstance(found, Unusable):
            diag.error(
                bound.gateway,
                field_path,
                f"credential {name!r} cannot be used: {found.reason}: server skipped",
            )
            return None
        secrets.append(found)
    if len(secrets) == 2 and _same_key_type(secrets):
        diag.error(
            bound.gateway,
            f"{path}.credentialNames",
            "two credentials need different key types (one RSA, one ECDSA): server skipped",
        )
        return None

    client = None
    if tls.mode in (TLS.MUTUAL, TLS.OPTIONAL_MUTUAL):
        ca_field, ca_name = (
            (f"{path}.caCertCredentialName", tls.ca_cert_credential_name)
            if tls.ca_cert_credential_name
            else named[0]
        )
        ca = credentials.ca(ca_name)
        if isinstance(ca, Unusable):
            diag.error(
                bound.gateway,
                ca_field,
                f"{mode} needs the CA that client certificates are checked with: "
                f"{ca.reason}: server skipped",
            )
            return None
        pins = _pins(bound, diag)
        if pins is None:
            return None
        secrets.append(ca)
        client = ir.ClientValidation(
            ca_secret=ca.name,
            required=tls.mode == TLS.MUTUAL,
            subject_alt_names=tuple(san_match(n) for n in tls.subject_alt_names),
            spki=pins[0],
            hashes=pins[1],
        )
    for field_name, value in (("caCertificates", tls.ca_certificates), ("caCrl", tls.ca_crl)):
        if value:
            diag.warning(
                bound.gateway,
                f"{path}.{field_name}",
                "files on the proxy are not supported: ignored "
                "(the CA and CRL come from the credential's Secret)",
            )
    return Termination(
        ir.DownstreamTls(
            certificate_secrets=tuple(
                s.name for s in secrets if isinstance(s, ir.CertificateSecret)
            ),
            alpn=alpn,
            params=tls_params(bound, diag),
            client=client,
        ),
        tuple(secrets),
    )


def _credential_fields(tls: gw_pb.ServerTLSSettings, path: str) -> list[tuple[str, str]]:
    """(field path, credential name) for each credential, duplicates dropped."""
    if tls.credential_names:
        seen: dict[str, str] = {}
        for i, name in enumerate(tls.credential_names):
            seen.setdefault(name, f"{path}.credentialNames[{i}]")
        return [(f, n) for n, f in seen.items()]
    if tls.credential_name:
        return [(f"{path}.credentialName", tls.credential_name)]
    return []


def _same_key_type(secrets: list[ir.SdsSecret]) -> bool:
    certs = [cast(ir.CertificateSecret, s) for s in secrets]
    return key_type(certs[0].certificate_chain) == key_type(certs[1].certificate_chain)


def san_match(name: str) -> ir.SanMatch:
    """A subjectAltNames entry, typed by its shape: URI, email, IP address, else DNS."""
    if "://" in name:
        return ir.SanMatch("URI", name)
    if "@" in name:
        return ir.SanMatch("EMAIL", name)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return ir.SanMatch("DNS", name)
    return ir.SanMatch("IP_ADDRESS", name)


def _pins(bound: BoundServer, diag: Diagnostics) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """verifyCertificateSpki (base64 SHA-256) and verifyCertificateHash (hex SHA-256).

    A malformed pin leaves the server out rather than dropping the pin: dropping it
    would quietly accept clients the user meant to refuse.
    """
    tls = bound.server.tls
    for i, spki in enumerate(tls.verify_certificate_spki):
        try:
            ok = len(base64.b64decode(spki, validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            diag.error(
                bound.gateway,
                f"{bound.path}.tls.verifyCertificateSpki[{i}]",
                "not a base64 SHA-256 digest: server skipped",
            )
            return None
    for i, digest in enumerate(tls.verify_certificate_hash):
        plain = digest.replace(":", "")
        if len(plain) != 64 or any(c not in "0123456789abcdefABCDEF" for c in plain):
            diag.error(
                bound.gateway,
                f"{bound.path}.tls.verifyCertificateHash[{i}]",
                "not a hex SHA-256 digest: server skipped",
            )
            return None
    return tuple(tls.verify_certificate_spki), tuple(tls.verify_certificate_hash)


def tls_params(bound: BoundServer, diag: Diagnostics) -> ir.TlsParams:
    tls = bound.server.tls
    path = f"{bound.path}.tls"
    low, high = tls.min_protocol_version, tls.max_protocol_version
    if low and high and low > high:
        diag.error(
            bound.gateway,
            f"{path}.minProtocolVersion",
            "minProtocolVersion is above maxProtocolVersion: both ignored",
        )
        low = high = TLS.TLS_AUTO
    unknown = [c for c in tls.cipher_suites if c not in CIPHER_SUITES]
    if unknown:
        diag.error(
            bound.gateway,
            f"{path}.cipherSuites",
            f"cipher suites Envoy does not know: {', '.join(unknown)}: dropped",
        )
    return ir.TlsParams(
        min_version=_VERSIONS[low],
        max_version=_VERSIONS[high],
        cipher_suites=tuple(dict.fromkeys(c for c in tls.cipher_suites if c in CIPHER_SUITES)),
    )
