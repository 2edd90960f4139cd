"""The objects one informer has seen, keyed by namespace/name, and what changed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotfish.model.documents import ParsedFile, RawDocument

# Fields that change without the object meaning anything new to us: bookkeeping, and the
# status (which we may write ourselves: our own write must not cause a reload).
_NOISE_METADATA = ("resourceVersion", "managedFields", "generation")


def object_key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def resource_version_of(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def fingerprint(body: Mapping[str, Any]) -> str:
    """The object's meaning: everything but status and bookkeeping metadata."""
    significant = {k: v for k, v in body.items() if k != "status"}
    meta = significant.get("metadata")
    if isinstance(meta, dict):
        significant["metadata"] = {k: v for k, v in meta.items() if k not in _NOISE_METADATA}
    return json.dumps(significant, sort_keys=True, separators=(",", ":"), default=str)


def document_name(kind: str, namespace: str, name: str) -> str:
    """`kubernetes:VirtualService/ns/name`, `kubernetes:Namespace/name`: the "file" errors name."""
    return f"kubernetes:{kind}/{namespace}/{name}" if namespace else f"kubernetes:{kind}/{name}"


@dataclass(frozen=True)
class StoredObject:
    body: dict[str, Any]  # with apiVersion and kind; never mutated once stored
    resource_version: str
    fingerprint: str
    parsed: ParsedFile = field(compare=False, repr=False)  # the object as a one-document file

    @classmethod
    def of(cls, body: dict[str, Any]) -> StoredObject:
        namespace, name = object_key(body)
        file = document_name(str(body.get("kind") or ""), namespace, name)
        parsed = ParsedFile(file, (RawDocument(body, file, 0),), ())
        return cls(body, resource_version_of(body), fingerprint(body), parsed)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def status(self) -> Mapping[str, Any]:
        status = self.body.get("status")
        return status if isinstance(status, dict) else {}


@dataclass(frozen=True)
class Diff:
    added: int = 0
    updated: int = 0  # meaningful updates only
    deleted: int = 0

    @property
    def changes(self) -> int:
        return self.added + self.updated + self.deleted


class ObjectStore:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], StoredObject] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[StoredObject]:
        return iter(list(self._objects.values()))

    def get(self, namespace: str, name: str) -> StoredObject | None:
        return self._objects.get((namespace, name))

    def upsert(self, body: dict[str, Any]) -> bool:
        """Store a new version; True if it means something new (not status or bookkeeping)."""
        key = object_key(body)
        old = self._objects.get(key)
        new = StoredObject.of(body)
        if (
            old is not None
            and old.resource_version == new.resource_version
            and new.resource_version
        ):
            return False  # the same version again (e.g. a relist): nothing to do
        self._objects[key] = new
        return old is None or old.fingerprint != new.fingerprint

    def remove(self, body: Mapping[str, Any]) -> bool:
        return self._objects.pop(object_key(body), None) is not None

    def replace(self, bodies: Iterable[dict[str, Any]]) -> Diff:
        """Make the store hold exactly `bodies` (a relist); the difference, as events."""
        added = updated = 0
        seen = set()
        for body in bodies:
            key = object_key(body)
            seen.add(key)
            existed = key in self._objects
            if self.upsert(body):
                if existed:
                    updated += 1
                else:
                    added += 1
        gone = [key for key in self._objects if key not in seen]
        for key in gone:
            del self._objects[key]
        return Diff(added, updated, len(gone))
