"""``kubectl apply`` and ``kubectl delete`` for the mesh world's config directory.

Applying a file replaces the objects of the same kind, namespace and name and keeps the
rest, as ``kubectl apply`` does; everything applied lives in one file of pilotfish's
config directory, rewritten atomically on each change (one change for pilotfish to
push). An object without a namespace lands in the one given (``kubectl apply -n``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from testsupport.mesh.world import MeshWorld

Key = tuple[str, str, str]  # kind, namespace, name


def key_of(doc: Mapping[str, Any], namespace: str) -> Key:
    meta = doc.get("metadata") or {}
    return (str(doc["kind"]), str(meta.get("namespace") or namespace), str(meta["name"]))


class Kubectl:
    def __init__(self, world: MeshWorld, filename: str = "applied.yaml") -> None:
        self.world = world
        self.filename = filename
        self.objects: dict[Key, dict[str, Any]] = {}

    def apply(self, *sources: Path | Mapping[str, Any], namespace: str = "default") -> list[Key]:
        """Apply YAML files and/or single documents, in order; the keys applied."""
        applied: list[Key] = []
        for source in sources:
            for doc in _documents(source):
                doc = dict(doc)
                doc["metadata"] = dict(doc.get("metadata") or {})
                doc["metadata"].setdefault("namespace", namespace)
                key = key_of(doc, namespace)
                self.objects[key] = doc
                applied.append(key)
        self._write()
        return applied

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        """Remove one object (it must have been applied)."""
        del self.objects[(kind, namespace, name)]
        self._write()

    def delete_all(self, kinds: Iterable[str] | None = None) -> None:
        """Remove every applied object (of ``kinds``, if given)."""
        wanted = None if kinds is None else set(kinds)
        self.objects = {
            k: v for k, v in self.objects.items() if wanted is not None and k[0] not in wanted
        }
        self._write()

    def _write(self) -> None:
        self.world.write_config(self.filename, list(self.objects.values()))


def _documents(source: Path | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if isinstance(source, Path):
        return [d for d in yaml.safe_load_all(source.read_text()) if d]
    return [source]
