"""Does a large config change stall the server's event loop?

Writes N services (Service, EndpointSlice, one VirtualService each, all bound to one
shared gateway; 100 services per file) into a directory, runs pilotfish's real server on
it in this process (FileSource, debounce defaults) and connects one gateway proxy over
ADS from a separate client process (the Envoy request sequence, every response ACKed:
xds_bench.py's client). A probe task on the server's loop ticks every 5 ms and records
how late each tick is: the longest lateness is the longest event-loop stall, the time
during which no ADS stream, health check or debug request could have been answered.

Measured twice: while the server loads the config at start (the debug endpoints are up
then) and after one VirtualService is changed (its file rewritten): the longest stall
from the edit until the proxy ACKed the new route configuration, the time from the edit
until the proxy's new snapshot is in the xDS cache, and until it is ACKed. While the
change is applied, a thread requests /healthz/ready in a loop: its slowest answer is
printed too. The floor, in the same window: the longest lateness of the same probe in
an idle process of its own (what the machine's scheduler alone costs; on a shared
machine that is tens of milliseconds). Prints figures; asserts nothing.

    make bench                       # N = 10000
    python benchmarks/loop_stall_bench.py 2000
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from xds_bench import ROUTE, SYNCED_TYPES, LogCounter, cache_version, client_main, node_id

PER_FILE = 100
TICK = 0.005
TIMEOUT = 120.0


def service_docs(i: int, prefix: str = "/v2") -> list[dict[str, Any]]:
    name = f"svc-{i}"
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 8000}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": name},
            },
            "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.{j}"]} for j in (1, 2, 3)],
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "hosts": [f"{name}.example.com"],
                "gateways": ["istio-system/shared"],
                "http": [
                    {"match": [{"uri": {"prefix": prefix}}], "route": [{"destination": {"host": name}}]},
                    {"route": [{"destination": {"host": name}}]},
                ],
            },
        },
    ]  # fmt: skip


GATEWAY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "shared", "namespace": "istio-system"},
    "spec": {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    },
}


def write_config(root: Path, n: int) -> None:
    (root / "gateway.yaml").write_text(yaml.safe_dump(GATEWAY))
    for start in range(0, n, PER_FILE):
        write_chunk(root, start, n)


def write_chunk(root: Path, start: int, n: int, changed: int | None = None) -> None:
    docs = []
    for i in range(start, min(start + PER_FILE, n)):
        docs += service_docs(i, "/v3" if i == changed else "/v2")
    (root / f"services-{start // PER_FILE:04d}.yaml").write_text(yaml.safe_dump_all(docs))


class LagProbe:
    """Ticks every TICK seconds on the loop; remembers the latest tick's lateness."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ticks = 0

    def reset(self) -> None:
        self.worst = 0.0
        self.ticks = 0

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            late = time.perf_counter() - before - TICK
            self.worst = max(self.worst, late)
            self.ticks += 1


def idle_probe(conn: Connection) -> None:
    """The floor: the same ticks in a process doing nothing else ("reset", "read")."""
    worst = 0.0
    while True:
        if conn.poll():
            message = conn.recv()
            if message == "stop":
                return
            if message == "read":
                conn.send(worst)
            worst = 0.0
        before = time.perf_counter()
        time.sleep(TICK)
        worst = max(worst, time.perf_counter() - before - TICK)


class ReadyPoller(threading.Thread):
    """GET /healthz/ready in a loop from another thread; the slowest answer."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/healthz/ready"
        self.stop = threading.Event()
        self.worst = 0.0
        self.requests = 0

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as answer:
                    answer.read()
            except OSError:
                pass  # 503 while loading counts as an answer
            self.worst = max(self.worst, time.perf_counter() - start)
            self.requests += 1
            self.stop.wait(0.01)


async def run(n: int) -> None:
    import structlog

    from pilotfish.server.server import ServeOptions, Server
    from pilotfish.sources.files import FileSource

    log_counter = LogCounter()
    structlog.configure(
        processors=[log_counter],
        wrapper_class=structlog.make_filtering_bound_logger(30),
        cache_logger_on_first_use=False,
    )
    root = Path(tempfile.mkdtemp(prefix="loop-stall-"))
    write_config(root, n)
    server = Server(
        ServeOptions(xds_address="127.0.0.1:0", debug_address="127.0.0.1:0"), FileSource(root)
    )
    probe = LagProbe()
    probing = asyncio.create_task(probe.run())
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    floor_conn, floor_child = ctx.Pipe()
    floor = ctx.Process(target=idle_probe, args=(floor_child,), daemon=True)
    floor.start()
    proc: Any = None
    try:
        started = time.perf_counter()
        await server.start()
        start_s = time.perf_counter() - started
        await asyncio.sleep(3 * TICK)  # a stall is recorded by the tick that ends it
        start_stall = probe.worst
        probe.reset()
        proc = ctx.Process(
            target=client_main, args=(f"127.0.0.1:{server.xds_port}", 1, child_conn), daemon=True
        )
        proc.start()
        ads, cache, node = server.control_plane.ads, server.control_plane.cache, node_id(0)

        async def until(check: Any, begin: float) -> float | None:
            while time.perf_counter() - begin < TIMEOUT:
                if check():
                    return time.perf_counter() - begin
                await asyncio.sleep(0.002)
            return None

        def synced() -> bool:
            return any(
                s.node_id == node and all(s.types[t].status == "SYNCED" for t in SYNCED_TYPES)
                for s in ads.sync_status()
            )

        if await until(synced, time.perf_counter()) is None:
            print(f"N={n}: the proxy did not sync", flush=True)
            return
        connected_stall = probe.worst
        old = cache_version(cache, node)

        def snapshot_changed() -> bool:
            return cache_version(cache, node) != old

        def acked() -> bool:
            return any(
                s.node_id == node and s.types[ROUTE].acked not in (None, old)
                for s in ads.sync_status()
            )

        poller = ReadyPoller(server.debug_port)
        poller.start()
        await asyncio.sleep(0.2)  # the poller's first answers
        probe.reset()
        floor_conn.send("reset")
        edited = time.perf_counter()
        await loop.run_in_executor(None, write_chunk, root, 0, n, 0)
        to_snapshot = await until(snapshot_changed, edited)
        to_ack = await until(acked, edited)
        await asyncio.sleep(3 * TICK)
        change_stall, ticks = probe.worst, probe.ticks
        floor_conn.send("read")
        floor_stall = floor_conn.recv()
        total = time.perf_counter() - edited
        poller.stop.set()
        await loop.run_in_executor(None, poller.join, 30.0)

        def ms(value: float | None) -> str:
            return f"{value * 1000:.0f} ms" if value is not None else "NOT in time"

        print(
            f"N={n}: start (load+translate) {start_s:.1f} s, longest loop stall during it "
            f"{ms(start_stall)}; connect+sync one gateway: longest stall {ms(connected_stall)}",
            flush=True,
        )
        print(
            f"N={n}: one VirtualService changed -> new snapshot in the cache {ms(to_snapshot)}, "
            f"RDS ACKed by the proxy {ms(to_ack)}; longest event-loop stall meanwhile "
            f"{ms(change_stall)} ({ticks} probe ticks in {total:.1f} s; an idle process's "
            f"probe, same window: {ms(floor_stall)}); slowest /healthz/ready "
            f"{ms(poller.worst)} ({poller.requests} requests)",
            flush=True,
        )
        if log_counter.events:
            print(f"        !! server warnings/errors: {dict(log_counter.events)}", flush=True)
    finally:
        probing.cancel()
        floor_conn.send("stop")
        floor.join(5.0)
        if proc is not None:
            conn.send("stop")
            await loop.run_in_executor(None, proc.join, 20.0)
            if proc.is_alive():
                proc.terminate()
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000]
    for n in sizes:
        asyncio.run(run(n))


if __name__ == "__main__":
    main(sys.argv[1:])
