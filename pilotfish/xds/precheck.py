"""The pre-push check: no resource Envoy would reject leaves the control plane.

Envoy rejects a whole xDS response when one resource in it breaks a constraint of its
API (a NACK), and keeps its previous config of that type. Checking first lets the
control plane do better: only the bad resource is held back, and the proxy keeps the
last good version of that one resource while everything else moves on.

- :class:`ResourceChecker` runs :func:`pgv.check` on each resource of a snapshot, once
  per content hash (the snapshot already hashes every resource): an unchanged resource,
  or the same resource shared by many proxies, is not checked twice.
- :func:`screen` turns a snapshot with rejected resources into one that is safe to send
  to one proxy: each rejected resource is replaced by the version the proxy was last
  sent (``previous``: already screened, so good), or left out if it never had one. A
  snapshot stays consistent: a cluster or listener that needs a resource left out (its
  endpoints, route configuration, secret) is itself held at its previous version, or
  left out, until nothing dangles.

This module knows nothing of Istio: which user object caused a violation is for the
caller to say (the server maps resources back to the objects they were built from).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from pilotfish.xds import pgv, types
from pilotfish.xds.snapshot import Snapshot, references

ResourceKey = tuple[str, str]  # (type URL, resource name)


class ResourceChecker:
    """Envoy's constraints on resources, remembered by content hash (bounded, LRU)."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._max_entries = max_entries
        # Worker threads share one checker (a reload and a new proxy's translation).
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[tuple[str, str], tuple[pgv.Violation, ...]] = OrderedDict()
        self.checked = 0  # resources actually walked (not answered from the cache)

    def violations(self, snapshot: Snapshot) -> dict[ResourceKey, tuple[pgv.Violation, ...]]:
        """The resources of ``snapshot`` that Envoy would reject, with why."""
        bad: dict[ResourceKey, tuple[pgv.Violation, ...]] = {}
        for type_url, resources in snapshot.resources.items():
            for name, digest in snapshot.resource_hashes(type_url).items():
                found = self._verdict(type_url, digest, resources[name])
                if found:
                    bad[(type_url, name)] = found
        return bad

    def _verdict(self, type_url: str, digest: str, resource: Message) -> tuple[pgv.Violation, ...]:
        key = (type_url, digest)
        with self._lock:
            found = self._verdicts.get(key)
            if found is not None:
                self._verdicts.move_to_end(key)
                return found
        found = tuple(pgv.check(resource))  # outside the lock: the long part
        with self._lock:
            self.checked += 1
            self._verdicts[key] = found
            if len(self._verdicts) > self._max_entries:
                self._verdicts.popitem(last=False)
        return found


@dataclass(frozen=True)
class Held:
    """A resource of the new snapshot that is not sent as it is."""

    type_url: str
    name: str
    kept_previous: bool  # True: the last good version stays; False: left out
    violations: tuple[pgv.Violation, ...] = ()  # empty: held only for what it needs
    needs: ResourceKey | None = None  # the held-back resource it could not do without

    def describe(self) -> str:
        what = f"{types.short_name(self.type_url)} resource {self.name!r}"
        fate = "its last good version keeps serving" if self.kept_previous else "not sent"
        if self.violations:
            why = "; ".join(str(v) for v in self.violations)
            return f"Envoy would reject {what} ({why}): {fate}"
        assert self.needs is not None
        return (
            f"{what} needs {types.short_name(self.needs[0])} resource {self.needs[1]!r}, "
            f"which is held back: {fate}"
        )


@dataclass(frozen=True)
class Screened:
    snapshot: Snapshot
    held: tuple[Held, ...]


def screen(
    snapshot: Snapshot,
    rejected: Mapping[ResourceKey, tuple[pgv.Violation, ...]],
    previous: Snapshot | None,
) -> Screened:
    """``snapshot`` with every rejected resource replaced by its ``previous`` version (or
    left out), and whatever then dangles held the same way; see the module doc."""
    if not rejected:
        return Screened(snapshot, ())
    resources = {t: dict(r) for t, r in snapshot.resources.items()}
    held: dict[ResourceKey, Held] = {}

    def hold(
        key: ResourceKey,
        violations: tuple[pgv.Violation, ...] = (),
        needs: ResourceKey | None = None,
    ) -> None:
        type_url, name = key
        before = previous.resources.get(type_url, {}).get(name) if previous else None
        if key in held:  # back at its previous version, and that dangles too: it goes
            before = None
            violations, needs = held[key].violations, held[key].needs
        if before is not None:
            resources[type_url][name] = before
        else:
            resources[type_url].pop(name, None)
        held[key] = Held(type_url, name, before is not None, violations, needs)

    for key, violations in sorted(rejected.items()):
        hold(key, violations)
    while True:
        dangling = _first_dangling(resources)
        if dangling is None:
            break
        owner, needed = dangling
        hold(owner, needs=needed)
    return Screened(Snapshot(resources), tuple(held[k] for k in sorted(held)))


def _first_dangling(
    resources: Mapping[str, Mapping[str, Message]],
) -> tuple[ResourceKey, ResourceKey] | None:
    for type_url in (types.CLUSTER, types.LISTENER):
        for name in sorted(resources.get(type_url, {})):
            refs, _ = references(type_url, resources[type_url][name])
            for ref in refs:
                if ref.name not in resources.get(ref.type_url, {}):
                    return (type_url, name), (ref.type_url, ref.name)
    return None
