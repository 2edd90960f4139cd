"""The Kubernetes source: informers for every watched kind, seen as documents.

Same shape as the file source: `load()` gives the current objects as ParsedFiles (one per
object, named `kubernetes:<Kind>/<namespace>/<name>`), so `build_config_set` parses them
with the same strictness and keeps the last valid version of an object that turns bad.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import structlog

from pilotfish.model.documents import ParsedFile
from pilotfish.model.errors import ConfigError
from pilotfish.sources.kubernetes.backoff import Backoff
from pilotfish.sources.kubernetes.client import KubeClient
from pilotfish.sources.kubernetes.connection import Connection, load_connection
from pilotfish.sources.kubernetes.discovery import Discovery, NotServed
from pilotfish.sources.kubernetes.informer import RETRYABLE, Informer, cancel_and_wait
from pilotfish.sources.kubernetes.resources import WATCHED, ResourceType
from pilotfish.sources.kubernetes.settings import KubernetesSettings
from pilotfish.sources.kubernetes.status import StatusTarget, StatusWriter
from pilotfish.sources.kubernetes.store import StoredObject, object_key

log = structlog.get_logger()


class KindWatch:
    """Every informer of one kind: after discovery picked its version, one per namespace
    (or one for all) and field selector."""

    def __init__(self, resource: ResourceType, namespaces: tuple[str, ...] | None) -> None:
        self.resource = resource
        self.namespaces = namespaces if resource.namespaced else None
        self.version: str | None = None
        self.informers: list[Informer] = []

    @property
    def synced(self) -> bool:
        return self.version is not None and all(i.synced for i in self.informers)

    def objects(self) -> Iterator[StoredObject]:
        for informer in self.informers:
            yield from informer.store


class KubernetesSource:
    """List/watch the API server; `start()`, `wait_synced()`, then `load()` on `changes()`."""

    def __init__(self, settings: KubernetesSettings | None = None) -> None:
        self.settings = settings or KubernetesSettings()
        self.connection: Connection | None = None
        self.kinds: dict[str, KindWatch] = {r.kind: KindWatch(r, self._scope(r)) for r in WATCHED}
        self._client: KubeClient | None = None
        self._status: StatusWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_changes = 0
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()

    def _scope(self, resource: ResourceType) -> tuple[str, ...] | None:
        if resource.secret and self.settings.secret_namespaces is not None:
            return self.settings.secret_namespaces
        return self.settings.namespaces

    def describe(self) -> str:
        where = self.connection.host if self.connection else "(not started)"
        scope = ", ".join(self.settings.namespaces) if self.settings.namespaces else "all"
        return f"kubernetes {where} (namespaces: {scope})"

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the connection settings (raises KubernetesConfigError if there are none) and
        launch the informers; returns at once, before anything is listed."""
        if self._client is not None:
            raise RuntimeError("KubernetesSource already started")
        self.connection = await asyncio.to_thread(
            load_connection, self.settings.kubeconfig, self.settings.context
        )
        self._client = KubeClient(self.connection, self.settings.request_timeout)
        if self.settings.write_status:
            self._status = StatusWriter(self._client, self._status_targets)
        discovery = Discovery(self._client)
        self._tasks = [
            asyncio.create_task(self._run_kind(kind, discovery), name=f"kube-{name}")
            for name, kind in self.kinds.items()
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)
        log.info(
            "kubernetes source started", server=self.connection.host, origin=self.connection.origin
        )

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _run_kind(self, kind: KindWatch, discovery: Discovery) -> None:
        assert self._client is not None
        resource = kind.resource
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        while kind.version is None:
            try:
                kind.version = await discovery.version_for(resource)
            except (NotServed, *RETRYABLE) as exc:
                discovery.forget()
                delay = backoff.next_delay()
                log.warning(
                    "kubernetes discovery failed; retrying",
                    kind=resource.kind,
                    attempt=backoff.attempt,
                    error=str(exc) or type(exc).__name__,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)
        if resource.discovered:
            log.info("kubernetes version chosen", kind=resource.kind, version=kind.version)
        kind.informers = [
            Informer(
                self._client,
                resource,
                kind.version,
                namespace,
                selector,
                self.settings,
                self._notify,
                self._informer_synced,
            )
            for namespace in (kind.namespaces or (None,))
            for selector in resource.field_selectors
        ]
        async with asyncio.TaskGroup() as group:
            for informer in kind.informers:
                group.create_task(informer.run())

    # --- sync state ------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return all(kind.synced for kind in self.kinds.values())

    async def wait_synced(self) -> None:
        """Until every kind has completed its first LIST."""
        await self._synced.wait()

    def pending_kinds(self) -> list[str]:
        """The kinds whose first LIST has not completed yet."""
        return [name for name, kind in self.kinds.items() if not kind.synced]

    def pending(self) -> list[str]:
        return self.pending_kinds()

    def _informer_synced(self) -> None:
        if self.synced:
            log.info("kubernetes source synced", kinds=len(self.kinds))
            self._synced.set()

    # --- content ---------------------------------------------------------------------

    def objects(self) -> Iterator[StoredObject]:
        for kind in self.kinds.values():
            yield from kind.objects()

    def load(self) -> list[ParsedFile]:
        """The current objects, one ParsedFile each (cheap: built once per object version)."""
        return [stored.parsed for stored in self.objects()]

    def loader(self) -> Callable[[], list[ParsedFile]]:
        # The informers change the stores on the loop: copy them here (cheap, see load).
        current = self.load()
        return lambda: current

    def _notify(self, count: int) -> None:
        # Until the first complete view, there is nothing to report a change against:
        # whoever waits for wait_synced() loads everything then.
        if not self._synced.is_set():
            return
        self._pending_changes += count
        self._changed.set()

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[int]:
        """Yield the number of changes seen since the last yield, each time there are some.

        Only changes after the first complete view count (load() after wait_synced() has
        the rest); a relist or status write that changes nothing meaningful counts none."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                changed = asyncio.create_task(self._changed.wait())
                try:
                    await asyncio.wait({changed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                if stop.is_set():
                    return
                count, self._pending_changes = self._pending_changes, 0
                self._changed.clear()
                if count:
                    yield count
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping

    # --- status ----------------------------------------------------------------------

    async def write_status(self, problems: Sequence[ConfigError]) -> None:
        """With write_status on, put each Istio object's problems in its status (and clear
        them once fixed); only objects whose messages change are written."""
        if self._status is not None:
            await self._status.write(problems)

    def _status_targets(self) -> Iterator[StatusTarget]:
        for kind in self.kinds.values():
            if not kind.resource.istio or kind.version is None:
                continue
            for stored in kind.objects():
                namespace, name = object_key(stored.body)
                path = kind.resource.object_path(kind.version, namespace, name) + "/status"
                yield StatusTarget(kind.resource.kind, namespace, name, stored, path)


def _report_crash(task: asyncio.Task[None]) -> None:
    """A kind's informers never stop on their own: say so loudly if they did."""
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "kubernetes informers stopped; this kind is no longer watched",
            task=task.get_name(),
            exc_info=task.exception(),
        )
