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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from pilotfish.model.configset import ConfigSet
from pilotfish.model.errors import ConfigError
from pilotfish.server import metrics
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


class ControlPlane:
    def __init__(self, cache: SnapshotCache | None = None) -> None:
        self.cache = cache or SnapshotCache()
        self.config = ConfigSet()
        self.ads = AdsServer(
            self.cache,
            validate_node=self.validate_node,
            on_connect=self.on_connect,
            on_disconnect=self.on_disconnect,
        )
        self._proxies: dict[str, Proxy] = {}
        self._proxy_status: dict[str, tuple[ConfigError, ...]] = {}
        self._reported: set[ConfigError] = set()
        # Translation depends only on a proxy's shape: a fleet of identical gateway
        # replicas is translated once per config, not once per proxy.
        self._translations: dict[ProxyShape, Translated] = {}
        self._ip_matters: Callable[[Proxy], bool] = ip_matters(self.config)
        self.checker = ResourceChecker()

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
        self._update(proxy)
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
        """Make `config` current and push whatever it changes to every connected proxy."""
        self.config = config
        self._translations = {}
        self._ip_matters = ip_matters(config)
        metrics.CONFIG_RELOADS.inc()
        for proxy in self.proxies():
            self._update(proxy)
        self._report_status()

    def _translated(self, proxy: Proxy) -> Translated:
        shape = proxy_shape(proxy, self._ip_matters)
        found = self._translations.get(shape)
        if found is None:
            with metrics.TRANSLATION_SECONDS.time():
                translation = translate(self.config, proxy)
            snapshot = snapshot_of(translation)
            rejected = self.checker.violations(snapshot)
            status = (*translation.status, *rejection_errors(translation, rejected))
            found = self._translations[shape] = Translated(
                translation, snapshot, rejected, tuple(dict.fromkeys(status))
            )
        return found

    def _update(self, proxy: Proxy) -> None:
        translated = self._translated(proxy)
        self._proxy_status[proxy.id] = translated.status
        snapshot = translated.snapshot
        if translated.rejected:
            current = self.cache.get(proxy.id)
            previous = current.snapshot if current is not None else None
            screened = screen(snapshot, translated.rejected, previous)
            snapshot = screened.snapshot
            for held in screened.held:
                log.warning("resource held back", proxy=proxy.id, reason=held.describe())
        try:
            self.cache.set_snapshot(proxy.id, snapshot)
        except InconsistentSnapshotError as exc:
            # A translator bug, not the user's: keep serving the last good snapshot.
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
