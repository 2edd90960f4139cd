"""A TCP listener that tells each client where its connection was really going.

Run inside a pod in place of Envoy (``python probe.py --port 15001 --port 15006``): for
every connection it answers one JSON line and closes: the original destination the
kernel recorded before an iptables REDIRECT (``SO_ORIGINAL_DST``), the port it arrived
on, the client's address, and the user the probe runs as. ``--connect IP:PORT`` is the
client: it prints the report of the probe it reached (the test runs it as some user in
some pod). Standard library only, and run by path (not ``-m``), so it starts fast under
any user.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import struct
from pathlib import Path
from typing import Any

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_dst(conn: socket.socket) -> str | None:
    """``ip:port`` the client connected to before NAT; None when the kernel has none."""
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    (port,) = struct.unpack("!H", raw[2:4])
    return f"{socket.inet_ntoa(raw[4:8])}:{port}"


def describe(conn: socket.socket, label: str) -> dict[str, Any]:
    local_ip, local_port = conn.getsockname()[:2]
    peer_ip, peer_port = conn.getpeername()[:2]
    return {
        "label": label,
        "listener_port": local_port,
        "local": f"{local_ip}:{local_port}",
        "peer": f"{peer_ip}:{peer_port}",
        "original_dst": original_dst(conn),
        "uid": os.getuid(),
    }


def read_report(conn: socket.socket) -> dict[str, Any]:
    """The client side: read the probe's JSON line until it closes."""
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
    return dict(json.loads(data))


def serve(ports: list[int], label: str, ready_file: Path | None) -> None:
    selector = selectors.DefaultSelector()
    for port in ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(64)
        selector.register(listener, selectors.EVENT_READ)
    if ready_file is not None:
        ready_file.write_text(str(os.getpid()))
    while True:
        for key, _ in selector.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            conn, _ = ready.accept()
            with conn:
                conn.sendall(json.dumps(describe(conn, label)).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--label", default="probe")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--connect", metavar="IP:PORT")
    args = parser.parse_args()
    if args.connect:
        host, _, port = args.connect.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            print(json.dumps(read_report(conn)))
    elif args.port:
        serve(args.port, args.label, args.ready_file)
    else:
        parser.error("--port or --connect")


if __name__ == "__main__":
    main()
