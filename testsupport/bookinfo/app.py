"""One of Istio's bookinfo services, reduced to who answered and whom it called.

``python app.py --service reviews --version v2 --pod reviews-v2 --call ratings`` serves
HTTP/1.1 on port 9080. Every GET answers 200 with JSON: its service, version and pod,
the path asked for, the headers it passes on, and what each service it calls answered
(``calls``), or the error, and the address that connected to it (``peer``).
As in the sample, productpage calls details (``/details/0``) and reviews
(``/reviews/0``), and reviews v2 and v3 call ratings (``/ratings/0``); the caller's
``end-user`` header and tracing headers are passed on (the sample's productpage sends
``end-user`` for a logged-in user, which routing rules match). Names resolve through the
pod's /etc/hosts (``ip netns exec``), so calls go to cluster IPs and the sidecar.

``--call NAME[:TIMEOUT[:ATTEMPTS]]`` names a service called: the sample's productpage
gives details one try of 3 s and reviews two of 3 s; reviews gives ratings 10 s.
``--status CODE`` makes every answer that status (a broken service). A flaky service,
for retries: ``--fail-first N`` answers ``--fail-status`` (503 by default, a status
Envoy's retry policies retry) to the first N requests this process serves,
``--fail-every K`` to request 1, K+1, 2K+1... (K=2: every other one, the first failing);
requests are counted per process, in arrival order, and each answer carries its number
(``request``). ``?sleep=S`` on any path holds the answer S seconds (a slow upstream, for
circuit breaking). Standard library only, run by path, so it starts fast as any user.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PORT = 9080
# What the sample passes on from an incoming request to the calls it makes.
PROPAGATED = ("end-user", "user-agent", "x-request-id", "traceparent", "x-b3-traceid")
# The path each service is called on, as the sample's callers do.
CALL_PATHS = {"details": "/details/0", "reviews": "/reviews/0", "ratings": "/ratings/0"}


@dataclass(frozen=True)
class Call:
    service: str
    timeout: float = 10.0
    attempts: int = 1

    @classmethod
    def parse(cls, text: str) -> Call:
        name, *rest = text.split(":")
        timeout = float(rest[0]) if rest else cls.timeout
        attempts = int(rest[1]) if len(rest) > 1 else cls.attempts
        return cls(name, timeout, attempts)


def call(service: str, headers: dict[str, str], timeout: float, attempts: int) -> dict[str, Any]:
    """GET the service's path; its JSON, or the status/error of the last attempt."""
    path = CALL_PATHS.get(service, "/")
    result: dict[str, Any] = {}
    for _ in range(attempts):
        started = time.monotonic()
        conn = http.client.HTTPConnection(service, PORT, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            result = {"status": resp.status}
            try:
                result |= json.loads(body)
            except ValueError:
                result["body"] = body.decode(errors="replace")[:200]
            if resp.status < 500:
                return result
        except (OSError, http.client.HTTPException) as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            conn.close()
            result["seconds"] = round(time.monotonic() - started, 3)
    return result


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the sample's servers
    server: BookinfoServer

    def do_GET(self) -> None:
        app = self.server.app
        number = self.server.count()
        sleep = parse_qs(urlsplit(self.path).query).get("sleep")
        if sleep:
            time.sleep(float(sleep[0]))
        passed = {h: v for h in PROPAGATED if (v := self.headers.get(h)) is not None}
        body: dict[str, Any] = {
            "service": app.service,
            "version": app.version,
            "pod": app.pod,
            "path": self.path,
            "request": number,
            "peer": self.client_address[0],  # who connected: a sidecar, a gateway, a client
            "headers": passed,
            "calls": {c.service: call(c.service, passed, c.timeout, c.attempts) for c in app.calls},
        }
        data = json.dumps(body).encode()
        self.send_response(app.fail_status if self.server.fails(number) else app.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the log of a 1,000-request test


class BookinfoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: argparse.Namespace) -> None:
        self.app = app
        self._served = 0
        self._lock = threading.Lock()
        super().__init__(("0.0.0.0", app.port), Handler)

    def count(self) -> int:
        """This request's number (1, 2, ...) among all this process has received."""
        with self._lock:
            self._served += 1
            return self._served

    def fails(self, number: int) -> bool:
        """Whether request ``number`` gets the flaky answer."""
        first: int = self.app.fail_first
        every: int = self.app.fail_every
        return number <= first or (every > 0 and (number - 1) % every == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--pod", default=socket.gethostname())
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--call", dest="calls", type=Call.parse, action="append", default=[])
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--fail-first", type=int, default=0, metavar="N")
    parser.add_argument("--fail-every", type=int, default=0, metavar="K")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()
    server = BookinfoServer(args)
    if args.ready_file:
        args.ready_file.write_text(str(os.getpid()))
    server.serve_forever()


if __name__ == "__main__":
    main()
