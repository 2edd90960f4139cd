"""TLS for tests: client contexts from in-memory PEM, and looking at what a server sends.

Python's ``ssl`` loads certificates and keys from files only, so contexts are built
through a temporary directory that is gone once they are loaded.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from testsupport.certs import CertKey


def client_context(ca_pem: bytes | None = None, client: CertKey | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca_pem`` (verifying hostnames), presenting ``client``.

    Without ``ca_pem`` the server certificate is not verified at all.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    if client is not None:
        _load_chain(ctx, client)
    return ctx


def server_context(identity: CertKey) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, identity)
    return ctx


def _load_chain(ctx: ssl.SSLContext, identity: CertKey) -> None:
    with tempfile.TemporaryDirectory(prefix="tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(identity.cert_pem)
        key.write_bytes(identity.key_pem)
        ctx.load_cert_chain(cert, key)


def connect(
    address: tuple[str, int], server_name: str, ctx: ssl.SSLContext, timeout: float = 5.0
) -> ssl.SSLSocket:
    """A TLS connection to ``address`` with SNI ``server_name`` (handshake done)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


def peer_certificate(
    address: tuple[str, int], server_name: str, ctx: ssl.SSLContext
) -> x509.Certificate:
    """The certificate the server presents for ``server_name``."""
    with connect(address, server_name, ctx) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def exchange(sock: socket.socket, data: bytes, expect: int) -> bytes:
    """Send ``data`` and read until ``expect`` bytes came back or the peer closed."""
    sock.sendall(data)
    received = b""
    while len(received) < expect:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received
