"""Per-node snapshots, with the versions the ADS server sends them under.

Versions belong to the cache, not to the snapshot: a type's version changes exactly when
its content hash changes for that node, so setting an identical snapshot pushes nothing.
A version is ``<boot time>/<counter>``: the boot time (UTC, microseconds) keeps versions
unique across control-plane restarts, so a restarted server never reuses a version string
an Envoy already holds with different content.

Use it from the event loop's thread only: waking waiting streams uses ``asyncio.Event``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from pilotfish.xds.snapshot import Snapshot


class InconsistentSnapshotError(ValueError):
    """A snapshot refers to resources it does not hold; Envoy would stall on it."""

    def __init__(self, node_id: str, errors: list[str]) -> None:
        self.node_id = node_id
        self.errors = errors
        super().__init__(f"inconsistent snapshot for node {node_id!r}: " + "; ".join(errors))


@dataclass(frozen=True)
class VersionedSnapshot:
    """A snapshot as the cache holds it for one node."""

    snapshot: Snapshot
    versions: Mapping[str, str]  # type URL -> version string
    # Increases (per node) whenever any version changed; streams wait on it.
    generation: int

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, "")


_boot_lock = threading.Lock()
_last_boot: datetime | None = None


def _boot_stamp(now: datetime) -> str:
    """RFC 3339 UTC with microseconds, never the same twice within one process.

    Two caches created in the same microsecond (tests simulating a restart) would
    otherwise mint the same versions; across real restarts the clock already differs.
    """
    global _last_boot
    now = now.astimezone(UTC)
    with _boot_lock:
        if _last_boot is not None and now <= _last_boot:
            now = _last_boot + timedelta(microseconds=1)
        _last_boot = now
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SnapshotCache:
    """Holds the current snapshot of every node and mints versions per node and type."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.boot_stamp = _boot_stamp(clock())
        self._counter = itertools.count(1)
        # Cache-wide, so a node cleared and set again still moves forward.
        self._generations = itertools.count(1)
        self._entries: dict[str, VersionedSnapshot] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}

    def set_snapshot(
        self, node_id: str, snapshot: Snapshot, *, check: bool = True
    ) -> VersionedSnapshot:
        """Make ``snapshot`` the node's current one; wake its streams if anything changed.

        ``check=False`` skips the consistency check: for a caller that checked the
        snapshot already (off the event loop: it walks every cluster and listener), and
        for tests that need Envoy to receive something broken (to see a NACK).
        """
        if check and (errors := snapshot.consistency_errors()):
            raise InconsistentSnapshotError(node_id, errors)
        previous = self._entries.get(node_id)
        versions: dict[str, str] = {}
        changed = False
        for type_url in snapshot.resources:
            if previous is not None and previous.snapshot.type_hash(type_url) == snapshot.type_hash(
                type_url
            ):
                versions[type_url] = previous.version(type_url)
            else:
                versions[type_url] = f"{self.boot_stamp}/{next(self._counter)}"
                changed = True
        if previous is not None and not changed:
            return previous
        entry = VersionedSnapshot(
            snapshot=snapshot,
            versions=MappingProxyType(versions),
            generation=next(self._generations),
        )
        self._entries[node_id] = entry
        self._notify(node_id)
        return entry

    def get(self, node_id: str) -> VersionedSnapshot | None:
        return self._entries.get(node_id)

    def clear(self, node_id: str) -> None:
        """Forget the node (e.g. when its last stream ends). Its streams are not woken."""
        self._entries.pop(node_id, None)

    def node_ids(self) -> list[str]:
        return list(self._entries)

    async def wait_for_change(self, node_id: str, after_generation: int) -> VersionedSnapshot:
        """Return the node's snapshot once its generation is above ``after_generation``.

        Pass 0 to wait for the first snapshot. Generations only increase, also across
        ``clear``, so a stream that saw generation N keeps waiting correctly.
        """
        while True:
            entry = self._entries.get(node_id)
            if entry is not None and entry.generation > after_generation:
                return entry
            event = self._changed.get(node_id)
            if event is None:
                event = self._changed[node_id] = asyncio.Event()
            self._waiters[node_id] = self._waiters.get(node_id, 0) + 1
            try:
                await event.wait()
            finally:
                self._waiters[node_id] -= 1
                if not self._waiters[node_id]:
                    # Nobody waits: drop the bookkeeping so departed nodes cost nothing.
                    del self._waiters[node_id]
                    if self._changed.get(node_id) is event:
                        del self._changed[node_id]

    def _notify(self, node_id: str) -> None:
        # A fresh Event per change: every current waiter wakes once, later waiters wait anew.
        event = self._changed.pop(node_id, None)
        if event is not None:
            event.set()
