"""One LIST+WATCH loop (an informer) for one kind in one scope, done the way client-go does.

LIST (paged) -> store, remember the list's resourceVersion -> WATCH from it with bookmarks.
ADDED/MODIFIED/DELETED update the store and the resourceVersion; BOOKMARK only the
resourceVersion. "Too old" (an ERROR event with a 410 Status, or HTTP 410) -> relist, and
the difference is applied as adds/updates/deletes, so a delete missed while disconnected is
seen. A lost connection resumes the watch from the last resourceVersion (no relist), after
an exponential backoff; a failed LIST is retried the same way. Only meaningful changes are
reported: a relist that finds nothing new reports nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from pilotfish.sources.kubernetes.backoff import Backoff
from pilotfish.sources.kubernetes.client import ApiError, KubeClient
from pilotfish.sources.kubernetes.resources import ResourceType
from pilotfish.sources.kubernetes.settings import KubernetesSettings
from pilotfish.sources.kubernetes.store import ObjectStore, resource_version_of

log = structlog.get_logger()


# What counts as "the API server or the network failed": retried with backoff.
class WatchEndedEarly(Exception):
    """The server closed a watch at once, without an event: retried with backoff, not spun."""


RETRYABLE = (ApiError, WatchEndedEarly, aiohttp.ClientError, TimeoutError, ValueError, OSError)


class _WatchEnd(enum.Enum):
    EXPIRED = "expired"  # resourceVersion too old: relist
    CLOSED = "closed"  # the server ended the stream (timeoutSeconds): watch again
    RESYNC = "resync"  # time for a periodic relist


class Informer:
    """List and watch `resource` (at `version`) in `namespace` (None: all) with one selector."""

    def __init__(
        self,
        client: KubeClient,
        resource: ResourceType,
        version: str,
        namespace: str | None,
        field_selector: str | None,
        settings: KubernetesSettings,
        on_change: Callable[[int], None],
        on_synced: Callable[[], None],
    ) -> None:
        self.client = client
        self.resource = resource
        self.version = version
        self.namespace = namespace
        self.field_selector = field_selector
        self.settings = settings
        self.path = resource.collection_path(version, namespace)
        self.store = ObjectStore()
        self.resource_version = ""
        self.synced = False
        self.lists = 0  # completed LISTs (the first one, and every relist)
        self._on_change = on_change
        self._on_synced = on_synced
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._last_list = 0.0
        self._log = log.bind(
            kind=resource.kind,
            namespace=namespace or "*",
            **({"field_selector": field_selector} if field_selector else {}),
        )

    @property
    def api_version(self) -> str:
        return self.resource.api_version(self.version)

    async def run(self) -> None:
        """List, then watch, forever (until cancelled)."""
        need_list = True
        while True:
            step = "list" if need_list else "watch"
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    self._backoff.reset()
                    step = "watch"
                end = await self._watch()
                if end is not _WatchEnd.CLOSED:
                    say = self._log.info if end is _WatchEnd.EXPIRED else self._log.debug
                    say("relisting", reason=end.value, resource_version=self.resource_version)
                    need_list = True
            except RETRYABLE as exc:
                delay = self._backoff.next_delay()
                self._log.warning(
                    f"kubernetes {step} failed; retrying",
                    attempt=self._backoff.attempt,
                    error=_describe(exc),
                    retry_in=round(delay, 2),
                    resource_version=self.resource_version or None,
                )
                await asyncio.sleep(delay)

    # --- LIST ------------------------------------------------------------------------

    async def _relist(self) -> None:
        items, list_rv = await self._list_all()
        first = not self.synced
        diff = self.store.replace([self._typed(item) for item in items])
        self.resource_version = list_rv
        self.lists += 1
        self._last_list = time.monotonic()
        if first:
            self._log.info("listed", objects=len(self.store), resource_version=list_rv)
        elif diff.changes:
            self._log.info(
                "relisted: applying the differences",
                added=diff.added,
                updated=diff.updated,
                deleted=diff.deleted,
                resource_version=list_rv,
            )
        else:
            self._log.debug("relisted: nothing changed", resource_version=list_rv)
        if diff.changes:
            self._on_change(diff.changes)
        if first:
            self.synced = True
            self._on_synced()

    async def _list_all(self) -> tuple[list[dict[str, Any]], str]:
        """Every page of one consistent LIST; restarts once if the continue token expires."""
        for attempt in (1, 2):
            items: list[dict[str, Any]] = []
            token = ""
            while True:
                params = {"limit": str(self.settings.page_size)}
                if self.field_selector:
                    params["fieldSelector"] = self.field_selector
                if token:
                    params["continue"] = token
                try:
                    page = await self.client.get(self.path, params)
                except ApiError as exc:
                    if exc.status == 410 and token and attempt == 1:
                        self._log.info("list continue token expired; listing again")
                        break
                    raise
                page_items = page.get("items") or []
                if not isinstance(page_items, list):
                    raise ValueError("LIST response without an items list")
                items.extend(i for i in page_items if isinstance(i, dict))
                meta = page.get("metadata") or {}
                token = str(meta.get("continue") or "")
                if not token:
                    return items, str(meta.get("resourceVersion") or "")
        raise ApiError(410, "Expired", "the list's continue token expired twice")

    # --- WATCH -----------------------------------------------------------------------

    async def _watch(self) -> _WatchEnd:
        timeout = int(self.settings.watch_timeout * (1 + random.random()))
        params = {
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, timeout)),
        }
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        started = time.monotonic()
        received = 0
        deadline = asyncio.timeout(self._resync_due())
        try:
            async with deadline:
                events = self.client.watch(self.path, params, read_timeout=timeout + 30)
                try:
                    async for event in events:
                        received += 1
                        if self._apply(event):
                            return _WatchEnd.EXPIRED
                        self._backoff.reset()
                finally:
                    await events.aclose()
        except ApiError as exc:
            if exc.status == 410:
                return _WatchEnd.EXPIRED
            raise
        except TimeoutError:
            if deadline.expired():
                return _WatchEnd.RESYNC
            raise
        lasted = time.monotonic() - started
        if not received and lasted < 1.0:
            raise WatchEndedEarly("the server ended the watch at once")
        if lasted > self.settings.backoff_max:
            self._backoff.reset()
        return _WatchEnd.CLOSED

    def _resync_due(self) -> float | None:
        """Seconds until the next periodic relist, if they are on."""
        interval = self.settings.resync_interval
        if interval is None:
            return None
        return max(0.0, self._last_list + interval - time.monotonic())

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; True if it says the resourceVersion is too old."""
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise ValueError(f"watch event {kind!r} without an object")
        if kind == "ERROR":
            error = ApiError.from_status(obj)
            if error.status == 410:
                return True
            raise error
        changed = False
        if kind in ("ADDED", "MODIFIED"):
            changed = self.store.upsert(self._typed(obj))
        elif kind == "DELETED":
            changed = self.store.remove(obj)
        elif kind != "BOOKMARK":
            self._log.warning("unknown watch event type; ignored", type=kind)
            return False
        rv = resource_version_of(obj)
        if rv:
            self.resource_version = rv
        if changed:
            self._log.debug("watch event", type=kind, name=_name_of(obj), resource_version=rv)
            self._on_change(1)
        return False

    def _typed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object with apiVersion and kind (LIST items come without them), and without
        metadata.managedFields (server-side apply's bookkeeping: often larger than the
        spec, and of no use to us; istiod drops it too)."""
        body = {"apiVersion": self.api_version, "kind": self.resource.kind}
        body.update((k, v) for k, v in obj.items() if k not in ("apiVersion", "kind"))
        meta = body.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            body["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        return body


def _name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    return f"{namespace}/{name}" if namespace else str(name)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
