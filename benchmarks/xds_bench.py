"""The ADS server under many proxies: connect storm, memory per proxy, push fan-out.

For each N, a fresh process runs pilotfish's real server (FileSource over a copy of
examples/httpbin-gateway, xDS on 127.0.0.1:0) and starts a *separate* client process
(so client CPU does not count against the server's loop) that opens N concurrent ADS
streams at once with grpc.aio, one TCP connection each, every one a distinct gateway
proxy (router node id, LABELS istio=ingressgateway, NAMESPACE istio-system). Each client
does what Envoy does: wildcard CDS, EDS for its clusters, then (clusters warm) wildcard
LDS and RDS for the names it carries, ACKing every response; a stream the server ends
with an error is counted and reopened after a short back-off. Measured, from the
server's own sync status:

- time until all N proxies are SYNCED on CDS, EDS, LDS and RDS (from the first connect);
- server RSS growth (VmRSS) per connected proxy;
- after editing the VirtualService file: time until every proxy has a new snapshot, and
  until every proxy has ACKed its new RDS version (push latency at fan-out; includes the
  file watcher and the debounce).

Prints one line per N; asserts nothing. Everything stays on 127.0.0.1.

    make bench                       # N = 100, 500, 1000
    python benchmarks/xds_bench.py 2000
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

DEFAULT_NS = (100, 500, 1000)
MAX_N = 2000
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "httpbin-gateway"
VIRTUAL_SERVICE_FILE = "gateway.yaml"  # holds the Gateway and the VirtualService
SYNC_TIMEOUT = 30.0
PUSH_TIMEOUT = 20.0
ROUND_TIMEOUT = 90.0

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SYNCED_TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


def node_id(i: int) -> str:
    return f"router~10.0.{i // 250}.{i % 250}~gw-{i}.istio-system~istio-system.svc.cluster.local"


# --- the client process: N Envoy-like ADS streams ---------------------------------------


class ClientStats:
    def __init__(self) -> None:
        self.responses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # stream ended by the server, by status code
        self.reopened = 0


def eds_names(resources: Any) -> list[str]:
    from envoy.config.cluster.v3 import cluster_pb2

    names = []
    for any_ in resources:
        cluster = cluster_pb2.Cluster.FromString(any_.value)
        if cluster.type == cluster_pb2.Cluster.EDS:
            names.append(cluster.eds_cluster_config.service_name or cluster.name)
    return sorted(names)


def rds_names(resources: Any) -> list[str]:
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    names = set()
    for any_ in resources:
        listener = listener_pb2.Listener.FromString(any_.value)
        chains = [*listener.filter_chains]
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            for f in chain.filters:
                if f.typed_config.type_url.endswith("HttpConnectionManager"):
                    hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                    if hcm.HasField("rds"):
                        names.add(hcm.rds.route_config_name)
    return sorted(names)


async def one_stream(channel: Any, i: int, stats: ClientStats, stop: asyncio.Event) -> None:
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    DiscoveryRequest = discovery_pb2.DiscoveryRequest
    out: asyncio.Queue[Any] = asyncio.Queue()

    async def requests() -> AsyncIterator[Any]:
        while (request := await out.get()) is not None:
            yield request

    node = base_pb2.Node(id=node_id(i), cluster="istio-ingressgateway.istio-system")
    node.metadata.update({"LABELS": {"istio": "ingressgateway"}, "NAMESPACE": "istio-system"})
    # Per type: the last (version, nonce) received and the names subscribed.
    last: dict[str, tuple[str, str]] = {}
    names: dict[str, list[str]] = {CLUSTER: [], LISTENER: [], ENDPOINT: [], ROUTE: []}

    def request(type_url: str) -> Any:
        version, nonce = last.get(type_url, ("", ""))
        return DiscoveryRequest(
            type_url=type_url,
            version_info=version,
            response_nonce=nonce,
            resource_names=names[type_url],
        )

    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    call = stub.StreamAggregatedResources(requests())
    out.put_nowait(DiscoveryRequest(node=node, type_url=CLUSTER))  # node on the first only
    # Envoy asks for listeners only once its first clusters are warm (got their EDS).
    listeners_asked = False
    closer = asyncio.create_task(stop.wait())
    closer.add_done_callback(lambda _: out.put_nowait(None))  # half-close: a clean end
    try:
        async for response in call:
            type_url = response.type_url
            stats.responses[type_url] += 1
            # Subscribe to what the new clusters/listeners need, then ACK (as Envoy does).
            dependent, wanted = {
                CLUSTER: (ENDPOINT, eds_names),
                LISTENER: (ROUTE, rds_names),
            }.get(type_url, (None, None))
            if dependent is not None and wanted is not None:
                new = wanted(response.resources)
                if new != names[dependent]:
                    names[dependent] = new
                    out.put_nowait(request(dependent))
            last[type_url] = (response.version_info, response.nonce)
            out.put_nowait(request(type_url))
            warm = type_url == ENDPOINT or (type_url == CLUSTER and not names[ENDPOINT])
            if warm and not listeners_asked:
                listeners_asked = True
                out.put_nowait(request(LISTENER))
    finally:
        closer.cancel()


async def one_proxy(address: str, i: int, stats: ClientStats, stop: asyncio.Event) -> None:
    import grpc

    while not stop.is_set():
        # A local subchannel pool: one TCP connection per proxy, as with real Envoys.
        channel = grpc.aio.insecure_channel(
            address,
            # Large configs (loop_stall_bench.py) send more than grpc's default 4 MB.
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_receive_message_length", 256 * 2**20),
            ],
        )
        try:
            await one_stream(channel, i, stats, stop)
            if stop.is_set():
                return
            stats.errors["OK (ended by server)"] += 1
        except grpc.aio.AioRpcError as e:
            stats.errors[e.code().name] += 1
        finally:
            await channel.close(grace=None)
        if not stop.is_set():
            stats.reopened += 1
            await asyncio.sleep(0.25 + random.random() * 0.5)


async def clients(address: str, n: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats = ClientStats()
    stop = asyncio.Event()
    conn.send(("started", time.monotonic()))
    tasks = [asyncio.create_task(one_proxy(address, i, stats, stop)) for i in range(n)]
    await loop.run_in_executor(None, conn.recv)  # "stop"
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=10.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(
        (
            "stats",
            {
                "responses": dict(stats.responses),
                "errors": dict(stats.errors),
                "reopened": stats.reopened,
                "unclean_close": len(pending),
                "cpu": time.process_time(),
            },
        )
    )


def client_main(address: str, n: int, conn: Connection) -> None:
    asyncio.run(clients(address, n, conn))


# --- the server process: one round for one N ---------------------------------------------


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class LogCounter:
    """A structlog processor: counts warnings and errors by event, prints nothing."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        import structlog

        self.events[f"{method}:{event.get('event')}"] += 1
        raise structlog.DropEvent


async def wait_until(
    check: Callable[[], bool], timeout: float, started: float
) -> tuple[float | None, float]:
    """Poll `check` (on the server's loop) until true; the time since `started`, or None.

    Polls at most every 20 ms and at least 10x the cost of one check apart, so polling
    a large sync status takes under a tenth of the server's loop.
    """
    deadline = time.monotonic() + timeout
    while True:
        before = time.monotonic()
        if check():
            return time.monotonic() - started, before
        cost = time.monotonic() - before
        if time.monotonic() > deadline:
            return None, before
        await asyncio.sleep(max(0.02, 10 * cost))


async def run_round(n: int) -> str:
    import structlog

    from pilotfish.server.server import ServeOptions, Server
    from pilotfish.sources.files import FileSource

    log_counter = LogCounter()
    structlog.configure(
        processors=[log_counter],
        wrapper_class=structlog.make_filtering_bound_logger(30),  # WARNING and above
        cache_logger_on_first_use=False,
    )

    tmp = Path(tempfile.mkdtemp(prefix="xds-bench-"))
    for f in EXAMPLE.glob("*.yaml"):
        shutil.copy(f, tmp / f.name)
    server = Server(
        ServeOptions(
            xds_address="127.0.0.1:0",
            debug_address="127.0.0.1:0",
            debounce_quiet=0.05,
            debounce_max=0.5,
        ),
        FileSource(tmp),
    )
    await server.start()
    ads = server.control_plane.ads
    cache = server.control_plane.cache
    loop = asyncio.get_running_loop()
    rss_before = rss_bytes()

    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(
        target=client_main, args=(f"127.0.0.1:{server.xds_port}", n, child_conn), daemon=True
    )
    proc.start()
    try:
        ready = await loop.run_in_executor(None, conn.poll, 30.0)
        if not ready:
            return f"N={n}: the client process did not start"
        _, started = conn.recv()
        cpu_at_start = time.process_time()

        def all_connected() -> bool:
            return len({s.node_id for s in ads.sync_status()}) >= n

        def all_synced() -> bool:
            synced = {
                s.node_id
                for s in ads.sync_status()
                if all(s.types[t].status == "SYNCED" for t in SYNCED_TYPES)
            }
            return len(synced) >= n

        connected_s, _ = await wait_until(all_connected, SYNC_TIMEOUT, started)
        synced_s, _ = await wait_until(all_synced, SYNC_TIMEOUT, started)
        rss_growth = rss_bytes() - rss_before
        sync_cpu = (time.process_time() - cpu_at_start) / max(time.monotonic() - started, 1e-9)
        streams = ads.sync_status()
        synced_count = sum(
            all(s.types[t].status == "SYNCED" for t in SYNCED_TYPES) for s in streams
        )

        # The config change: one more prefix on the VirtualService (an RDS-only change).
        old_routes = {s.node_id: cache_version(cache, s.node_id) for s in streams}
        path = tmp / VIRTUAL_SERVICE_FILE
        edited = path.read_text().replace(
            "prefix: /delay", "prefix: /delay\n    - uri:\n        prefix: /anything"
        )
        edit_at = time.monotonic()
        cpu_at_edit = time.process_time()
        path.write_text(edited)

        def translated() -> bool:
            return all(cache_version(cache, nid) != old for nid, old in old_routes.items())

        def pushed_and_acked() -> bool:
            acked = {
                s.node_id
                for s in ads.sync_status()
                if s.types[ROUTE].acked == cache_version(cache, s.node_id)
                and s.node_id in old_routes
                and s.types[ROUTE].acked != old_routes[s.node_id]
            }
            return len(acked) >= len(old_routes)

        translated_s, _ = await wait_until(translated, PUSH_TIMEOUT, edit_at)
        acked_s, _ = await wait_until(pushed_and_acked, PUSH_TIMEOUT, edit_at)
        push_cpu = (time.process_time() - cpu_at_edit) / max(time.monotonic() - edit_at, 1e-9)
        not_acked = 0
        if acked_s is None:
            not_acked = sum(
                1
                for s in ads.sync_status()
                if s.types[ROUTE].acked != cache_version(cache, s.node_id)
            )

        conn.send("stop")
        stats: dict[str, Any] = {}
        if await loop.run_in_executor(None, conn.poll, 20.0):
            _, stats = conn.recv()
        drained_s, _ = await wait_until(lambda: not ads.sync_status(), 10.0, time.monotonic())
    finally:
        await loop.run_in_executor(None, proc.join, 10.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)
        await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def secs(value: float | None, what: str) -> str:
        return f"{value:.2f} s" if value is not None else f"NOT {what} in time"

    line = (
        f"N={n:<5} all connected {secs(connected_s, 'all connected')}, "
        f"synced (CDS+EDS+LDS+RDS ACKed) {secs(synced_s, 'all synced')}"
        f"{'' if synced_s is not None else f' ({synced_count}/{n})'} "
        f"(server CPU {sync_cpu:.0%}); "
        f"server RSS +{rss_growth / 2**20:.1f} MiB = {rss_growth / n / 1024:.0f} KiB/proxy; "
        f"VS edit -> new snapshots {secs(translated_s, 'translated')}, "
        f"RDS ACKed by all {secs(acked_s, 'ACKed')}"
        f"{f' ({not_acked} of {len(old_routes)} not)' if not_acked else ''} "
        f"(server CPU {push_cpu:.0%})"
    )
    errors = stats.get("errors") or {}
    problems = []
    if errors:
        problems.append(
            f"streams ended by the server: {errors} (reopened {stats.get('reopened')}x)"
        )
    if stats.get("unclean_close"):
        problems.append(f"{stats['unclean_close']} streams did not close cleanly")
    if not stats:
        problems.append("no stats from the client process")
    if drained_s is None:
        problems.append("streams still listed 10 s after the clients closed them")
    if log_counter.events:
        problems.append(f"server warnings/errors: {dict(log_counter.events)}")
    line += f"; client CPU {stats.get('cpu', 0.0):.1f} s"
    if problems:
        line += "\n        !! " + "; ".join(problems)
    return line


def cache_version(cache: Any, node: str) -> str | None:
    current = cache.get(node)
    return current.version(ROUTE) if current is not None else None


# --- the driver: one fresh server process per N -----------------------------------------


def main(argv: list[str]) -> None:
    if argv[:1] == ["--round"]:
        print(asyncio.run(run_round(int(argv[1]))), flush=True)
        return
    ns = [min(int(a), MAX_N) for a in argv] or list(DEFAULT_NS)
    from pilotfish.xds.grpc_server import SERVER_OPTIONS

    pending = {k: v for k, v in SERVER_OPTIONS if "pending" in k}
    print(
        f"ADS under N concurrent proxies (httpbin-gateway config; grpc server options {pending}); "
        "one server process per N, clients in another process",
        flush=True,
    )
    for n in ns:
        try:
            subprocess.run([sys.executable, __file__, "--round", str(n)], timeout=ROUND_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"N={n}: the round did not finish within {ROUND_TIMEOUT:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
