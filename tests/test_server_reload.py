"""Reloads run off the event loop: while a config is read and translated, the server
keeps answering; reloads are serialised (the newest wins); a failed one changes nothing.

A reload is held in its worker thread by a hook the test releases (a threading.Event),
so "the loop answered meanwhile" is proven by the answers themselves, not by timing.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.server import control_plane as cp
from pilotfish.server import server as server_module
from pilotfish.sources.files import FileSource
from pilotfish.xds import types
from testsupport.http import request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.wait import wait_until

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "httpbin-gateway"
INGRESS = {"istio": "ingressgateway"}
EGRESS = {"istio": "egressgateway"}
HELD = 20.0  # the longest a hook holds a reload (a failing test must not hang)


def node(pod: str, labels: dict[str, str]) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({"LABELS": labels, "NAMESPACE": "istio-system"})
    return base_pb2.Node(
        id=f"router~10.0.0.1~{pod}.istio-system~istio-system.svc.cluster.local",
        metadata=metadata,
    )


def config_with_prefix(root: Path, prefix: str) -> ConfigSet:
    """The httpbin example with its VirtualService's first prefix replaced."""
    (root / "gateway.yaml").write_text(
        (EXAMPLE / "gateway.yaml").read_text().replace("prefix: /status", f"prefix: {prefix}")
    )
    return build_config_set(FileSource(root).load())


def prefixes(route_config: Any) -> list[str]:
    return sorted(
        r.match.prefix for vh in route_config.virtual_hosts for r in vh.routes if r.match.prefix
    )


def served_prefixes(plane: cp.ControlPlane, node_id: str) -> list[str]:
    entry = plane.cache.get(node_id)
    assert entry is not None, f"{node_id} has no snapshot"
    [routes] = entry.snapshot.resources[types.ROUTE].values()
    return prefixes(routes)


class Gate:
    """Holds whoever calls it (in a worker thread) until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.released.wait(HELD), "the test never released the reload"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    for f in EXAMPLE.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


# --- the control plane: ordering, failures, proxies that connect meanwhile ------------------


def test_reloads_run_one_at_a_time_in_call_order(config_dir: Path) -> None:
    """A slow reload and a quick one asked for after it: the quick one waits, and the
    newest config is the one in force at the end (not the slow one finishing last)."""
    slow_config = config_with_prefix(config_dir, "/slow")
    new_config = config_with_prefix(config_dir, "/newest")
    gate = Gate()

    def slow() -> ConfigSet:
        gate()
        return slow_config

    async def main() -> None:
        plane = cp.ControlPlane()
        plane.apply(config_with_prefix(config_dir, "/first"))
        gw = node("gw-0", INGRESS)
        await plane.on_connect(gw)
        first = asyncio.create_task(plane.reload(slow))
        second = asyncio.create_task(plane.reload(lambda: new_config))
        await asyncio.to_thread(gate.entered.wait, HELD)
        # The slow one holds the worker; the quick one has not overtaken it.
        assert plane.config is not new_config
        assert served_prefixes(plane, gw.id) == ["/delay", "/first"]
        gate.released.set()
        assert await first is slow_config
        assert await second is new_config
        assert plane.config is new_config
        assert served_prefixes(plane, gw.id) == ["/delay", "/newest"]
        assert gate.threads == ["pilotfish-reload_0"]
        plane.close()

    asyncio.run(main())


def test_a_failed_reload_changes_nothing(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        plane = cp.ControlPlane()
        good = config_with_prefix(config_dir, "/good")
        plane.apply(good)
        gw = node("gw-0", INGRESS)
        await plane.on_connect(gw)
        before = plane.cache.get(gw.id)

        def broken_build() -> ConfigSet:
            raise OSError("the directory went away")

        with pytest.raises(OSError):
            await plane.reload(broken_build)
        newer = config_with_prefix(config_dir, "/never")

        def broken_translate(config: ConfigSet, proxy: Any) -> Any:
            raise RuntimeError("a translator bug")

        monkeypatch.setattr(cp, "translate", broken_translate)
        with pytest.raises(RuntimeError):
            await plane.reload(lambda: newer)
        assert plane.config is good
        assert plane.cache.get(gw.id) is before
        plane.close()

    asyncio.run(main())


def test_a_proxy_connecting_during_a_reload_is_served_at_once_then_gets_the_new_config(
    config_dir: Path,
) -> None:
    """A proxy of a shape nobody had yet connects while a reload is held: it is served
    the config in force (its translation does not wait for the reload), and the reload
    it was not part of still reaches it."""
    new_config = config_with_prefix(config_dir, "/new")
    gate = Gate()

    def slow() -> ConfigSet:
        gate()
        return new_config

    async def main() -> None:
        plane = cp.ControlPlane()
        plane.apply(config_with_prefix(config_dir, "/old"))
        reloading = asyncio.create_task(plane.reload(slow))
        await asyncio.to_thread(gate.entered.wait, HELD)
        egress = node("egress-0", EGRESS)
        ingress = node("gw-0", INGRESS)
        await plane.on_connect(egress)  # not selected by the Gateway: no routes at all
        await plane.on_connect(ingress)
        assert served_prefixes(plane, ingress.id) == ["/delay", "/old"]
        assert plane.cache.get(egress.id) is not None
        gate.released.set()
        await reloading
        assert served_prefixes(plane, ingress.id) == ["/delay", "/new"]
        plane.close()

    asyncio.run(main())


# --- the server: ADS and health answer while a reload is held in its worker ------------------


class AdsClient:
    """One SotW stream on its own event loop thread (the test thread stays synchronous)."""

    def __init__(self, address: str, proxy: base_pb2.Node) -> None:
        self.address = address
        self.proxy = proxy

    def routes(self, timeout: float = 10.0) -> route_pb2.RouteConfiguration:
        """Connect, ask for the gateway's route configuration, return it, disconnect."""

        async def ask() -> route_pb2.RouteConfiguration:
            async with grpc.aio.insecure_channel(self.address) as channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                first = discovery_pb2.DiscoveryRequest(
                    node=self.proxy, type_url=types.ROUTE, resource_names=["http.8080"]
                )
                call = stub.StreamAggregatedResources(iter([first]))
                response = await asyncio.wait_for(anext(aiter(call)), timeout)
                call.cancel()
                [any_] = response.resources
                return route_pb2.RouteConfiguration.FromString(any_.value)

        return asyncio.run(ask())


@pytest.fixture
def held_reloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Gate]]:
    """Arm a gate: the next reload the server runs is held inside its worker."""
    real = server_module.build_config_set
    gates: list[Gate] = []

    def building(*args: Any, **kwargs: Any) -> ConfigSet:
        if gates and not gates[-1].entered.is_set():
            gates[-1]()
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module, "build_config_set", building)

    def arm() -> Gate:
        gates.append(Gate())
        return gates[-1]

    yield arm
    for gate in gates:
        gate.released.set()


def edit_prefix(config_dir: Path, prefix: str) -> None:
    path = config_dir / "gateway.yaml"
    text = (EXAMPLE / "gateway.yaml").read_text()
    path.write_text(text.replace("prefix: /status", f"prefix: {prefix}"))


def test_the_server_answers_health_and_ads_while_a_reload_is_in_progress(
    config_dir: Path, held_reloads: Callable[[], Gate]
) -> None:
    with InProcessPilotfish(config_dir) as pilotfish:
        assert pilotfish.server is not None
        plane = pilotfish.server.control_plane
        gate = held_reloads()
        edit_prefix(config_dir, "/edited")
        assert gate.entered.wait(HELD), "the edit did not start a reload"
        assert gate.threads == ["pilotfish-reload_0"]
        # The reload is held in its worker; the loop answers health checks and ADS.
        assert pilotfish.debug("/healthz/ready").status == 200
        assert pilotfish.debug("/debug/syncz").status == 200
        replica = AdsClient(pilotfish.xds_address, node("gw-1", INGRESS))
        assert prefixes(replica.routes()) == ["/delay", "/status"]  # the config in force
        gate.released.set()

        def edited_is_served() -> bool:
            return prefixes(replica.routes()) == ["/delay", "/edited"]

        wait_until(edited_is_served, message="the held reload was not installed")
        assert pilotfish.call(lambda: plane.config.errors) == ()


def test_quick_edits_during_a_reload_end_with_the_newest_file(
    config_dir: Path, held_reloads: Callable[[], Gate]
) -> None:
    with InProcessPilotfish(config_dir) as pilotfish:
        assert pilotfish.server is not None
        gate = held_reloads()
        edit_prefix(config_dir, "/second")
        assert gate.entered.wait(HELD)
        edit_prefix(config_dir, "/third")
        edit_prefix(config_dir, "/fourth")
        proxy = AdsClient(pilotfish.xds_address, node("gw-0", INGRESS))
        gate.released.set()
        wait_until(
            lambda: prefixes(proxy.routes()) == ["/delay", "/fourth"],
            message="the newest edit is not the config in force",
        )
        status = request(f"http://127.0.0.1:{pilotfish.server.debug_port}/healthz/ready")
        assert status.status == 200
