"""The composition root: configuration in, one snapshot per connected proxy out.

Owns no I/O of its own: sources hand it ConfigSets (`apply`), the ADS server tells it
when proxies come and go, and it puts translated snapshots into the xDS cache.

Before a snapshot reaches the cache, every resource is checked against Envoy's own
constraints (xds/precheck.py, once per content hash). A resource Envoy would reject is
not sent: the proxy keeps the version it was last sent (or never gets it), and the
problem is reported like any other, on the Istio object and field the resource was
built from. That attribution is recorded by the translator itself, per resource
(``Translation.sources``: the VirtualService rule of each route, the Service port and
DestinationRule sections of each cluster), because only the translator knows what it
built from what; the check itself stays in xds/, which knows nothing of Istio. A
resource with no recorded source is reported without an object (a translator bug).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from pilotfish.model.configset import ConfigSet
from pilotfish.model.errors import ConfigError
from pilotfish.server import gc_pause, metrics
from pilotfish.translator.ip_dependence import ip_matters
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate
from pilotfish.xds import types
from pilotfish.xds.ads import AdsServer
from pilotfish.xds.cache import InconsistentSnapshotError, SnapshotCache
from pilotfish.xds.pgv import Violation
from pilotfish.xds.precheck import ResourceChecker, ResourceKey, screen
from pilotfish.xds.snapshot import Snapshot

log = structlog.get_logger()


def node_metadata(node: base_pb2.Node) -> Mapping[str, Any]:
    data: dict[str, Any] = json_format.MessageToDict(node.metadata)
    return data


def snapshot_of(translation: Translation) -> Snapshot:
    return Snapshot.of(
        clusters=translation.clusters,
        endpoints=translation.endpoints,
        listeners=translation.listeners,
        routes=translation.routes,
        secrets=translation.secrets,
    )


ProxyShape = tuple[str, str, tuple[tuple[str, str], ...], str]


@dataclass(frozen=True)
class Translated:
    """One proxy shape's translation, its snapshot, and what Envoy would reject in it."""

    translation: Translation
    snapshot: Snapshot
    rejected: Mapping[ResourceKey, tuple[Violation, ...]]
    status: tuple[ConfigError, ...]  # the translation's problems and the rejections'
    inconsistent: tuple[str, ...] = ()  # dangling references (a translator bug): not sent


def rejection_errors(
    translation: Translation, rejected: Mapping[ResourceKey, tuple[Violation, ...]]
) -> list[ConfigError]:
    """Each violation as a problem on the Istio object and field it came from."""
    errors: list[ConfigError] = []
    for (type_url, name), violations in sorted(rejected.items()):
        for violation in violations:
            source = translation.locate(type_url, name, violation.path)
            message = (
                f"Envoy would reject {types.short_name(type_url)} resource {name!r}: "
                f"{violation}: not sent (a proxy keeps the last good version it has)"
            )
            if source is None:
                errors.append(ConfigError(message))
                continue
            errors.append(
                ConfigError(
                    message,
                    source.file,
                    source.document,
                    source.kind,
                    source.namespace or None,
                    source.name,
                    source.field or None,
                )
            )
    return errors


def proxy_shape(proxy: Proxy, ip_matters: Callable[[Proxy], bool]) -> ProxyShape:
    """All the translator reads of a proxy: its ID and pod name do not change output, nor
    its IP unless the config makes it (translator/ip_dependence.py: a ServiceEntry or
    WorkloadEntry at that IP, a Sidecar with ingress listeners)."""
    ip = proxy.ip if ip_matters(proxy) else ""
    return (proxy.type, proxy.namespace, tuple(sorted(proxy.labels.items())), ip)


class Rendering:
    """One config and what was translated from it so far: one entry per proxy shape.

    Entries are made in worker threads (translating is seconds of CPU for a large
    config, which must not stall the event loop) and only read on the loop. Two workers
    may translate the same shape at once: both get the same result, the first is kept.
    """

    def __init__(self, config: ConfigSet, checker: ResourceChecker) -> None:
        self.config = config
        self.ip_matters: Callable[[Proxy], bool] = ip_matters(config)
        self._checker = checker
        self._translations: dict[ProxyShape, Translated] = {}

    def cached(self, proxy: Proxy) -> Translated | None:
        return self._translations.get(proxy_shape(proxy, self.ip_matters))

    def translated(self, proxy: Proxy) -> Translated:
        """The proxy's translation, made now if its shape has none yet (CPU: a worker's)."""
        shape = proxy_shape(proxy, self.ip_matters)
        found = self._translations.get(shape)
        if found is None:
            with metrics.TRANSLATION_SECONDS.time():
                translation = translate(self.config, proxy)
            snapshot = snapshot_of(translation)
            read_references(snapshot)
            rejected = self._checker.violations(snapshot)
            status = (*translation.status, *rejection_errors(translation, rejected))
            made = Translated(
                translation,
                snapshot,
                rejected,
                tuple(dict.fromkeys(status)),
                # Checked here, once per shape, so that installing it on the loop is cheap.
                tuple(snapshot.consistency_errors()),
            )
            found = self._translations.setdefault(shape, made)
        return found


def read_references(snapshot: Snapshot) -> None:
    """Read which clusters each route configuration and listener uses, and each cluster's
    EDS name, now (in a worker): streams need them to order pushes (xds/ordering.py),
    and a 10,000-host route configuration takes ~0.1 s to read, which the event loop
    would otherwise spend on its first push."""
    for type_url in (types.ROUTE, types.LISTENER):
        for entry in snapshot.entries(type_url).values():
            entry.clusters  # noqa: B018 (read for the value it caches)
    for entry in snapshot.entries(types.CLUSTER).values():
        entry.eds_name  # noqa: B018


# Proxy id -> the proxy as it was translated, and its translation.
Translations = dict[str, tuple[Proxy, Translated]]


def render(
    build: Callable[[], ConfigSet], checker: ResourceChecker, proxies: list[Proxy]
) -> tuple[Rendering, Translations]:
    """A new config and its translation for `proxies` (CPU: a worker's)."""
    with gc_pause.building():
        rendering = Rendering(build(), checker)
        return rendering, translate_all(rendering, proxies)


def translate_all(rendering: Rendering, proxies: list[Proxy]) -> Translations:
    with gc_pause.building():
        return {p.id: (p, rendering.translated(p)) for p in proxies}


def translate_one(rendering: Rendering, proxy: Proxy) -> Translated:
    with gc_pause.building():
        return rendering.translated(proxy)


class ControlPlane:
    """Owns the config in force and the proxies' snapshots.

    Threads: all CPU work (building a config, translating, encoding and checking
    snapshots) runs in worker threads; the cache, the proxy table and the status are
    touched on the event loop only. Reloads use one worker, one at a time in the order
    they were asked for (so the newest config is the last installed); new proxies use
    another, so a proxy of a new shape is served the current config while a long reload
    is still translating the next one.
    """

    def __init__(self, cache: SnapshotCache | None = None) -> None:
        self.cache = cache or SnapshotCache()
        self.ads = AdsServer(
            self.cache,
            validate_node=self.validate_node,
            on_connect=self.on_connect,
            on_disconnect=self.on_disconnect,
        )
        self._proxies: dict[str, Proxy] = {}
        self._proxy_status: dict[str, tuple[ConfigError, ...]] = {}
        self._reported: set[ConfigError] = set()
        self.checker = ResourceChecker()
        # Translation depends only on a proxy's shape: a fleet of identical gateway
        # replicas is translated once per config, not once per proxy.
        self._rendering = Rendering(ConfigSet(), self.checker)
        self._reload_worker = ThreadPoolExecutor(1, thread_name_prefix="pilotfish-reload")
        self._connect_worker = ThreadPoolExecutor(1, thread_name_prefix="pilotfish-connect")
        self._reloading: asyncio.Lock | None = None

    @property
    def config(self) -> ConfigSet:
        """The config in force (the last one installed)."""
        return self._rendering.config

    def close(self) -> None:
        """Stop the worker threads (a reload in progress finishes unseen)."""
        for worker in (self._reload_worker, self._connect_worker):
            worker.shutdown(wait=False, cancel_futures=True)

    # --- proxies ------------------------------------------------------------------------

    def validate_node(self, node: base_pb2.Node) -> str | None:
        try:
            Proxy.from_node(node.id, node_metadata(node))
        except ValueError as exc:
            return str(exc)
        return None

    async def on_connect(self, node: base_pb2.Node) -> None:
        proxy = Proxy.from_node(node.id, node_metadata(node))
        self._proxies[proxy.id] = proxy
        log.info("proxy connected", proxy=proxy.id, type=proxy.type, labels=dict(proxy.labels))
        loop = asyncio.get_running_loop()
        while True:
            rendering = self._rendering
            translated = rendering.cached(proxy)
            if translated is None:  # a new shape: translate it without stalling the loop
                translated = await loop.run_in_executor(
                    self._connect_worker, translate_one, rendering, proxy
                )
                gc_pause.settle()
            if rendering is self._rendering:
                break
            # A reload was installed meanwhile, without this proxy if it connected after
            # the reload began: serve it the new config, not the one it was translated for.
        if self._proxies.get(proxy.id) is proxy:
            self._install(proxy, translated)
        self._report_status()  # problems only this proxy's translation finds are news now

    async def on_disconnect(self, node: base_pb2.Node) -> None:
        if any(n.id == node.id for n in self.ads.connected_nodes()):
            return  # another stream of the same proxy is still up
        self._proxies.pop(node.id, None)
        self._proxy_status.pop(node.id, None)
        self.cache.clear(node.id)
        self._report_status()

    def proxies(self) -> list[Proxy]:
        return [self._proxies[k] for k in sorted(self._proxies)]

    # --- configuration ------------------------------------------------------------------

    def apply(self, config: ConfigSet) -> None:
        """Make `config` current and push what it changes, translating on this thread
        (for tests and tools; the server uses `reload`)."""
        rendering = Rendering(config, self.checker)
        self._install_all(rendering, translate_all(rendering, self.proxies()))

    async def reload(self, build: Callable[[], ConfigSet]) -> ConfigSet:
        """Build a config with `build` and translate it for every connected proxy in the
        reload worker, then make it current and push what it changes (on the loop).

        Reloads run one at a time, in call order. If `build` or a translation raises, the
        exception propagates and the config in force stays as it was, entirely.
        """
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            loop = asyncio.get_running_loop()
            rendering, done = await loop.run_in_executor(
                self._reload_worker, render, build, self.checker, self.proxies()
            )
            # Proxies that connected while it was translating get it too, before anyone
            # is switched over: one install, every connected proxy in it.
            while missing := [p for p in self.proxies() if done.get(p.id, (None,))[0] != p]:
                done.update(
                    await loop.run_in_executor(
                        self._reload_worker, translate_all, rendering, missing
                    )
                )
            self._install_all(rendering, done)
        return rendering.config

    def _install_all(self, rendering: Rendering, done: Translations) -> None:
        replaced: list[object] = [self._rendering]
        self._rendering = rendering
        metrics.CONFIG_RELOADS.inc()
        for proxy in self.proxies():
            self._install(proxy, done[proxy.id][1])
        self._report_status()
        gc_pause.settle()
        # Freeing a large config's objects takes ~0.1 s: in the worker, a few at a time.
        with contextlib.suppress(RuntimeError):  # closed: then the loop frees it
            self._reload_worker.submit(gc_pause.release_in_pieces, replaced)

    def _install(self, proxy: Proxy, translated: Translated) -> None:
        self._proxy_status[proxy.id] = translated.status
        if translated.inconsistent:
            # A translator bug, not the user's: keep serving the last good snapshot.
            log.error(
                "inconsistent snapshot not pushed", proxy=proxy.id, errors=translated.inconsistent
            )
            return
        snapshot = translated.snapshot
        screened = bool(translated.rejected)
        if screened:
            current = self.cache.get(proxy.id)
            previous = current.snapshot if current is not None else None
            result = screen(snapshot, translated.rejected, previous)
            snapshot = result.snapshot
            for held in result.held:
                log.warning("resource held back", proxy=proxy.id, reason=held.describe())
        try:
            # An unscreened snapshot was checked when it was made (in the worker).
            self.cache.set_snapshot(proxy.id, snapshot, check=screened)
        except InconsistentSnapshotError as exc:
            log.error("inconsistent snapshot not pushed", proxy=proxy.id, errors=exc.errors)

    # --- status -------------------------------------------------------------------------

    def problems(self) -> list[ConfigError]:
        """Every problem in force, each once: the config's own and translation's."""
        found = dict.fromkeys(self.config.errors)
        for status in self._proxy_status.values():
            found.update(dict.fromkeys(status))
        return sorted(found, key=_status_order)

    def config_status(self) -> list[dict[str, Any]]:
        """Every problem in force: the config's own, and each one translation found
        (with the proxies it affects)."""
        found: dict[ConfigError, set[str]] = {e: set() for e in self.config.errors}
        for proxy_id, status in self._proxy_status.items():
            for error in status:
                found.setdefault(error, set()).add(proxy_id)
        report = []
        for error in sorted(found, key=_status_order):
            entry = error.to_json()
            if found[error]:
                entry["proxies"] = sorted(found[error])
            report.append(entry)
        return report

    def _report_status(self) -> None:
        current = set(self.config.errors)
        for status in self._proxy_status.values():
            current.update(status)
        for error in sorted(current - self._reported, key=_status_order):
            emit = log.error if error.severity == "error" else log.warning
            emit("config problem", problem=error.describe())
        for error in sorted(self._reported - current, key=_status_order):
            log.info("config problem resolved", problem=error.describe())
        self._reported = current
        for severity in ("error", "warning"):
            metrics.CONFIG_ERRORS.labels(severity).set(sum(e.severity == severity for e in current))


def _status_order(e: ConfigError) -> tuple[str, str, int, str, str, str, str]:
    return (
        e.file or "",
        e.kind or "",
        e.document if e.document is not None else -1,
        e.namespace or "",
        e.name or "",
        e.field or "",
        e.message,
    )
