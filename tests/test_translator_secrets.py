"""pilotfish.translator.secrets and .pem: credentialName -> checked SDS secrets.

Each check that refuses a Secret is there because Envoy would refuse it: the key-type
cases are also handed to a real Envoy, so the two can never disagree unnoticed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.envoy import listener as listener_builder
from pilotfish.translator.envoy import tls as tls_builder
from pilotfish.translator.secrets import Credentials, Unusable
from testsupport.certs import CertKey, issue, make_ca
from testsupport.envoy import EnvoyConfigError, validate_config
from testsupport.static_bootstrap import static_bootstrap_for

CA = make_ca("example.com")
SERVER = issue(CA, ["httpbin.example.com"])
OTHER = issue(CA, ["other.example.com"])
CLIENT_CA = make_ca("client CA")


def secret_doc(name: str, data: dict[str, bytes], namespace: str = "istio-system") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    return yaml.safe_dump(doc)


def config(*docs: str) -> ConfigSet:
    built = build_config_set([parse_manifest_text("---\n".join(docs), "secrets.yaml")])
    assert not built.errors, [e.describe() for e in built.errors]
    return built


def credentials(*docs: str) -> tuple[Credentials, Diagnostics]:
    diag = Diagnostics()
    return Credentials(config(*docs), "istio-system", diag), diag


def test_kubernetes_tls_layout() -> None:
    creds, diag = credentials(
        secret_doc("cred", {"tls.crt": SERVER.cert_pem, "tls.key": SERVER.key_pem})
    )
    found = creds.certificate("cred")
    assert found == ir.CertificateSecret("kubernetes://cred", SERVER.cert_pem, SERVER.key_pem)
    assert diag.sorted() == ()


def test_generic_layout() -> None:
    creds, _ = credentials(secret_doc("cred", {"cert": SERVER.cert_pem, "key": SERVER.key_pem}))
    found = creds.certificate("cred")
    assert isinstance(found, ir.CertificateSecret) and found.private_key == SERVER.key_pem


def test_ca_from_the_credentials_own_secret_with_its_crl() -> None:
    crl = _crl(CLIENT_CA)
    creds, _ = credentials(
        secret_doc(
            "cred",
            {
                "tls.crt": SERVER.cert_pem,
                "tls.key": SERVER.key_pem,
                "ca.crt": CLIENT_CA.cert_pem,
                "ca.crl": crl,
            },
        )
    )
    assert creds.ca("cred") == ir.ValidationSecret(
        "kubernetes://cred-cacert", CLIENT_CA.cert_pem, crl
    )


def test_a_separate_cacert_secret_wins_over_the_credentials_own_ca() -> None:
    creds, _ = credentials(
        secret_doc("cred", {"cert": SERVER.cert_pem, "key": SERVER.key_pem, "cacert": CA.cert_pem}),
        secret_doc("cred-cacert", {"cacert": CLIENT_CA.cert_pem}),
    )
    found = creds.ca("cred")
    assert isinstance(found, ir.ValidationSecret)
    assert found.trusted_ca == CLIENT_CA.cert_pem and found.crl == b""


def test_missing_secret_names_the_namespace_and_never_borrows_another() -> None:
    creds, _ = credentials(
        secret_doc("cred", {"tls.crt": SERVER.cert_pem, "tls.key": SERVER.key_pem}, "default")
    )
    found = creds.certificate("cred")
    assert isinstance(found, Unusable)
    assert "Secret istio-system/cred does not exist" in found.reason
    assert "the one in default is not used" in found.reason
    missing_ca = creds.ca("cred")
    assert isinstance(missing_ca, Unusable)
    assert "istio-system/cred-cacert (nor istio-system/cred)" in missing_ca.reason


def _self_signed(key: Any, common_name: str = "k.example.com") -> CertKey:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    edwards = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)
    algorithm = None if isinstance(key, edwards) else hashes.SHA256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(CA.cert.not_valid_before_utc)
        .not_valid_after(CA.cert.not_valid_after_utc)
        .sign(key, algorithm)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), key_pem, cert, key)


def _crl(ca: CertKey) -> bytes:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(ca.cert.not_valid_before_utc)
        .next_update(ca.cert.not_valid_after_utc)
        .sign(ca.key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


ENCRYPTED_KEY = SERVER.key.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"secret"),
)


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"ca.crt": CA.cert_pem}, "data", "has neither tls.crt and tls.key nor cert and key"),
        (
            {"tls.crt": b"not pem", "tls.key": SERVER.key_pem},
            "data.tls.crt",
            "tls.crt is not a PEM certificate",
        ),
        (
            {"tls.crt": SERVER.cert_pem, "tls.key": b"-----BEGIN PRIVATE KEY-----\nxx\n"},
            "data.tls.key",
            "tls.key is not a PEM private key",
        ),
        (
            {"cert": SERVER.cert_pem, "key": OTHER.key_pem},
            "data.key",
            "key does not match the certificate",
        ),
        (
            {"tls.crt": SERVER.cert_pem, "tls.key": ENCRYPTED_KEY},
            "data.tls.key",
            "tls.key is an encrypted private key",
        ),
    ],
    ids=["no-keys", "cert-not-pem", "key-not-pem", "mismatch", "encrypted"],
)
def test_unusable_certificate_is_reported_on_the_secret(
    data: dict[str, bytes], field: str, problem: str
) -> None:
    creds, diag = credentials(secret_doc("cred", data))
    found = creds.certificate("cred")
    assert isinstance(found, Unusable) and problem in found.reason
    assert found.reason.startswith("Secret istio-system/cred: ")
    [error] = diag.sorted()
    assert (error.kind, error.namespace, error.name, error.field) == (
        "Secret",
        "istio-system",
        "cred",
        field,
    )
    assert problem in error.message and error.file == "secrets.yaml"


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"tls.crt": SERVER.cert_pem}, "data", "has no ca.crt or cacert"),
        ({"ca.crt": b"junk"}, "data.ca.crt", "ca.crt is not a PEM CA certificate"),
        ({"cacert": CA.cert_pem, "crl": b"junk"}, "data.crl", "crl is not a PEM"),
    ],
    ids=["no-ca", "ca-not-pem", "crl-not-pem"],
)
def test_unusable_ca_is_reported_on_the_secret(
    data: dict[str, bytes], field: str, problem: str
) -> None:
    creds, diag = credentials(secret_doc("cred", data))
    found = creds.ca("cred")
    assert isinstance(found, Unusable) and problem in found.reason
    [error] = diag.sorted()
    assert (error.name, error.field) == ("cred", field)


KEY_TYPES: dict[str, tuple[Callable[[], Any], str | None]] = {
    "ec-p256": (lambda: ec.generate_private_key(ec.SECP256R1()), None),
    "ec-p384": (lambda: ec.generate_private_key(ec.SECP384R1()), None),
    "rsa-2048": (lambda: rsa.generate_private_key(65537, 2048), None),
    "rsa-1024": (lambda: rsa.generate_private_key(65537, 1024), "1024-bit RSA key"),
    "ec-secp256k1": (lambda: ec.generate_private_key(ec.SECP256K1()), "EC key on secp256k1"),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, None),
    "ed448": (ed448.Ed448PrivateKey.generate, "Ed448PrivateKey key"),
    "dsa-2048": (lambda: dsa.generate_private_key(2048), "DSAPrivateKey key"),
}


@pytest.mark.parametrize("name", sorted(KEY_TYPES))
def test_key_types_are_refused_exactly_when_envoy_refuses_them(name: str) -> None:
    make_key, problem = KEY_TYPES[name]
    identity = _self_signed(make_key())
    creds, _ = credentials(
        secret_doc("cred", {"tls.crt": identity.cert_pem, "tls.key": identity.key_pem})
    )
    found = creds.certificate("cred")
    if problem is None:
        assert isinstance(found, ir.CertificateSecret)
    else:
        assert isinstance(found, Unusable) and problem in found.reason
    # What Envoy says of the same certificate and key, in a listener's TLS context.
    secret = ir.CertificateSecret("kubernetes://cred", identity.cert_pem, identity.key_pem)
    chain = ir.TcpFilterChain(
        "s", (ir.WeightedCluster("c", 1),), tls=ir.DownstreamTls((secret.name,))
    )
    bootstrap = static_bootstrap_for(
        listeners=[listener_builder.listener(ir.Listener("l", "127.0.0.1", 0, (chain,)))],
        secrets=[tls_builder.secret(secret)],
    )
    if problem is None:
        validate_config(bootstrap)
    else:
        with pytest.raises(EnvoyConfigError):
            validate_config(bootstrap)


def test_key_material_is_not_in_reprs() -> None:
    creds, _ = credentials(
        secret_doc("cred", {"tls.crt": SERVER.cert_pem, "tls.key": SERVER.key_pem})
    )
    found = creds.certificate("cred")
    ca = ir.ValidationSecret("kubernetes://cred-cacert", CA.cert_pem, _crl(CA))
    model_secret = config(
        secret_doc("cred", {"tls.crt": SERVER.cert_pem, "tls.key": SERVER.key_pem})
    ).secret("istio-system", "cred")
    for shown in (repr(found), repr(ca), repr(model_secret)):
        assert "PRIVATE KEY" not in shown and "CERTIFICATE" not in shown and "CRL" not in shown
        assert "cred" in shown
