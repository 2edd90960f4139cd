"""A plain HTTP(S) client for tests: any Host header, no redirects followed, no proxies.

stdlib ``http.client`` rather than a full client library, because gateway tests need
exactly what such libraries hide: a ``Host`` that differs from the address connected to,
a 301 seen as a 301, and (for TLS) an SNI name that is not resolvable.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit


class Response(NamedTuple):
    """``status, headers, body = request(...)`` works, as do the attributes."""

    status: int
    headers: dict[str, str]  # lowercased names; repeated headers joined with ", "
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to ``connect_to`` while SNI and certificate checks use the URL's host."""

    def __init__(
        self,
        host: str,
        port: int,
        connect_to: tuple[str, int],
        context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._connect_to = connect_to
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection(self._connect_to, self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP over a Unix socket (Envoy's admin API on a ``pipe`` address)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def insecure_context() -> ssl.SSLContext:
    """A client TLS context that accepts any server certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request(
    url: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes | str | None = None,
    timeout: float = 10.0,
    connect_to: tuple[str, int] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    unix_socket: str | None = None,
) -> Response:
    """Send one request and read the whole response.

    ``headers`` may set ``Host``. ``connect_to`` sends the connection to another address
    (curl's ``--connect-to``): for HTTPS the URL's host is still the SNI name. Without
    ``ssl_context`` an HTTPS request does not verify the server certificate.
    ``unix_socket`` sends a plain HTTP request over that Unix socket (curl's
    ``--unix-socket``).
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: http.client.HTTPConnection
    if unix_socket is not None:
        conn = _UnixHTTPConnection(unix_socket, timeout)
    elif parts.scheme == "https":
        ctx = ssl_context or insecure_context()
        port = parts.port or 443
        if connect_to:
            conn = _PinnedHTTPSConnection(host, port, connect_to, ctx, timeout)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    elif parts.scheme == "http":
        target_host, target_port = connect_to or (host, parts.port or 80)
        conn = http.client.HTTPConnection(target_host, target_port, timeout=timeout)
        if connect_to and not any(k.lower() == "host" for k in headers or {}):
            headers = {**(headers or {}), "Host": parts.netloc}
    else:
        raise ValueError(f"unsupported URL scheme in {url!r}")
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        merged: dict[str, str] = {}
        for name, value in resp.getheaders():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return Response(resp.status, merged, data)
    finally:
        conn.close()
