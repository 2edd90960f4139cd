"""Addresses a proxy is told to reach: TCP ``host:port``, or a Unix socket (gRPC's forms)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNIX_PREFIX = "unix:"


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when it is neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"xds address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


@dataclass(frozen=True)
class Address:
    """Where a peer listens: a TCP ``host:port``, or a Unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    def envoy(self) -> dict[str, Any]:
        """As an Envoy ``config.core.v3.Address``."""
        if self.path:
            return {"pipe": {"path": self.path}}
        return {"socket_address": {"address": self.host, "port_value": self.port}}


def parse_address(text: str) -> Address:
    """``host:port``, ``[v6]:port``, ``unix:/path`` or ``unix:///path`` (gRPC's forms)."""
    if text.startswith(UNIX_PREFIX):
        path = text.removeprefix(UNIX_PREFIX)
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"xds address {text!r} names no socket path")
        return Address(path=path)
    host, port = split_host_port(text)
    return Address(host=host, port=port)


def unix_socket_path(address: str) -> str:
    """The socket path of a ``unix:`` address; "" for ``host:port``."""
    return parse_address(address).path if address.startswith(UNIX_PREFIX) else ""
