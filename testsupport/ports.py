"""Free TCP ports on 127.0.0.1.

A port found free can be taken by someone else before it is used; where a server can bind
port 0 and report the port (Envoy listeners and admin, the upstreams here) prefer that.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_port() -> int:
    """One TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open until every one is found)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports
