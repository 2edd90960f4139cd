"""Checks on certificate and key PEM, so a bad Secret is a config error, not a NACK.

Envoy refuses a whole SDS update for one unreadable certificate, a key that does not
belong to its certificate, or a key type it cannot serve with; catching that here costs
only the server that uses the Secret. Messages never quote the material itself.

Memoized: the same bytes are checked once per proxy and config change otherwise, and the
result depends on nothing but the bytes.
"""

from __future__ import annotations

import functools
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

# What Envoy serves with: RSA from 2048 bits, ECDSA on these curves, Ed25519 (tests ask
# a real Envoy about each).
_EC_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
_MIN_RSA_BITS = 2048
_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


@functools.lru_cache(maxsize=512)
def certificate_problem(chain: bytes) -> str | None:
    if not _certificates(chain):
        return "is not a PEM certificate (chain)"
    return None


@functools.lru_cache(maxsize=512)
def key_problem(chain: bytes, key: bytes) -> str | None:
    """Why `key` cannot serve the first certificate of `chain` (assumed readable), or None."""
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        return "is an encrypted private key (Envoy needs it unencrypted)"
    except (ValueError, UnsupportedAlgorithm):
        return "is not a PEM private key"
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < _MIN_RSA_BITS:
            return f"is a {private_key.key_size}-bit RSA key (Envoy needs at least {_MIN_RSA_BITS})"
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.name not in _EC_CURVES:
            return f"is an EC key on {private_key.curve.name} (Envoy serves P-256, P-384, P-521)"
    elif not isinstance(private_key, ed25519.Ed25519PrivateKey):
        return f"is a {type(private_key).__name__} key (Envoy serves RSA, ECDSA and Ed25519)"
    certificates = _certificates(chain)
    if not certificates:
        return None  # reported for the certificate
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private_key.public_key().public_bytes(der, spki) != certificates[
        0
    ].public_key().public_bytes(der, spki):
        return "does not match the certificate (the first one of the chain)"
    return None


@functools.lru_cache(maxsize=512)
def ca_problem(bundle: bytes) -> str | None:
    if not _certificates(bundle):
        return "is not a PEM CA certificate (bundle)"
    return None


@functools.lru_cache(maxsize=512)
def crl_problem(crl: bytes) -> str | None:
    blocks = _CRL_BLOCK.findall(crl)
    if not blocks:
        return "is not a PEM certificate revocation list"
    for block in blocks:
        try:
            x509.load_pem_x509_crl(block)
        except ValueError:
            return "holds an unreadable certificate revocation list"
    return None


def key_type(chain: bytes) -> str:
    """The public key type of the first certificate (assumed readable): RSA, EC, ..."""
    key = _certificates(chain)[0].public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    return type(key).__name__
