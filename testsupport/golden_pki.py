"""The fixed test certificates of the golden cases, as Kubernetes Secrets.

Golden outputs must not change from run to run, so their Secrets cannot be made fresh by
each test: this script made them once (EC P-256, valid for a century) and they are
committed in testdata/https-simple/input/secrets.yaml, which the other TLS cases link
to. They are test keys and nothing else. To make new ones (review the golden diff after):

    .venv/bin/python -m testsupport.golden_pki > testdata/https-simple/input/secrets.yaml
"""

from __future__ import annotations

import base64
import datetime
import sys
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testsupport.certs import CertKey

NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2125, 1, 1, tzinfo=datetime.UTC)


def _name(common_name: str, org: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pack(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertKey:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), key_pem, cert, key)


def ca(common_name: str) -> CertKey:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, common_name))
        .issuer_name(_name(common_name, common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pack(cert, key)


def leaf(issuer: CertKey, host: str, *, client: bool = False, serial: int = 0) -> CertKey:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host, "example"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return _pack(cert, key)


def crl(issuer: CertKey, revoked_serial: int) -> bytes:
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(revoked_serial)
        .revocation_date(NOT_BEFORE)
        .build()
    )
    built = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOT_BEFORE)
        .next_update(NOT_AFTER)
        .add_revoked_certificate(revoked)
        .sign(issuer.key, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


def secret(
    name: str, data: dict[str, bytes], *, namespace: str = "istio-system", tls: bool = False
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls" if tls else "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def secrets() -> list[dict[str, Any]]:
    server_ca = ca("example.com")
    client_ca = ca("example.com client CA")
    httpbin = leaf(server_ca, "httpbin.example.com")
    helloworld = leaf(server_ca, "helloworld-v1.example.com")
    bookinfo = leaf(server_ca, "bookinfo.example.com")
    return [
        # kubectl create -n istio-system secret tls httpbin-credential --key --cert
        secret(
            "httpbin-credential",
            {"tls.crt": httpbin.cert_pem, "tls.key": httpbin.key_pem},
            tls=True,
        ),
        secret(
            "helloworld-credential",
            {"tls.crt": helloworld.cert_pem, "tls.key": helloworld.key_pem},
            tls=True,
        ),
        secret(
            "bookinfo-credential",
            {"tls.crt": bookinfo.cert_pem, "tls.key": bookinfo.key_pem},
            tls=True,
        ),
        # kubectl create secret generic --from-file=tls.key --from-file=tls.crt --from-file=ca.crt
        secret(
            "httpbin-mutual",
            {
                "tls.crt": httpbin.cert_pem,
                "tls.key": httpbin.key_pem,
                "ca.crt": client_ca.cert_pem,
            },
        ),
        # The generic layout, with a CRL revoking client certificate serial 4096.
        secret(
            "httpbin-generic",
            {
                "cert": httpbin.cert_pem,
                "key": httpbin.key_pem,
                "cacert": client_ca.cert_pem,
                "crl": crl(client_ca, 4096),
            },
        ),
        # The CA in a Secret of its own, `<name>-cacert`.
        secret(
            "httpbin-split", {"tls.crt": httpbin.cert_pem, "tls.key": httpbin.key_pem}, tls=True
        ),
        secret("httpbin-split-cacert", {"cacert": client_ca.cert_pem}),
        # Broken ones.
        secret(
            "not-pem-credential",
            {"tls.crt": b"this is not a certificate\n", "tls.key": httpbin.key_pem},
            tls=True,
        ),
        secret(
            "mismatched-credential",
            {"tls.crt": httpbin.cert_pem, "tls.key": helloworld.key_pem},
            tls=True,
        ),
        secret("ca-only-credential", {"ca.crt": client_ca.cert_pem}),
        # Where the Gateway lives, not where the gateway proxy runs: never used.
        secret(
            "elsewhere-credential",
            {"tls.crt": httpbin.cert_pem, "tls.key": httpbin.key_pem},
            namespace="default",
            tls=True,
        ),
    ]


def main() -> None:
    sys.stdout.write(
        "# Test-only certificates and keys for the golden cases (testsupport/golden_pki.py).\n"
    )
    sys.stdout.write(yaml.safe_dump_all(secrets(), sort_keys=False, width=10_000))


if __name__ == "__main__":
    main()
