"""Upstreams below HTTP: a TCP echo server, and a TLS server with its own certificate.

Both bind 127.0.0.1 port 0 and serve each connection on its own thread; ``with`` starts
and stops them. They count the connections they accepted, so a test can tell that
traffic really reached them.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading

from testsupport.background_server import BackgroundServer
from testsupport.certs import CertKey
from testsupport.tls import server_context


class _StreamServer(BackgroundServer):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.connections = 0
        self._lock = threading.Lock()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _make_server(self) -> socketserver.TCPServer:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with owner._lock:
                    owner.connections += 1
                # A client that went away (or failed its handshake) is not an error here.
                with contextlib.suppress(OSError, ssl.SSLError):
                    owner.serve(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server


class TcpEchoServer(_StreamServer):
    """Sends back every chunk it receives, after ``prefix`` (as Istio's tcp-echo)."""

    def __init__(self, prefix: bytes = b"", name: str = "tcp-echo") -> None:
        super().__init__(name)
        self.prefix = prefix

    def serve(self, conn: socket.socket) -> None:
        while chunk := conn.recv(65536):
            conn.sendall(self.prefix + chunk)


class TlsHttpServer(_StreamServer):
    """Terminates TLS with its own certificate and answers one HTTP request per
    connection with ``body`` (what nginx is in Istio's passthrough walkthrough)."""

    def __init__(self, identity: CertKey, body: bytes, name: str = "tls-upstream") -> None:
        super().__init__(name)
        self.body = body
        self._context = server_context(identity)

    def serve(self, conn: socket.socket) -> None:
        with self._context.wrap_socket(conn, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                request += chunk
            tls.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(self.body)}\r\n\r\n".encode()
                + self.body
            )
