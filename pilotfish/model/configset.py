"""ConfigSet: every valid object pilotfish knows at one moment, plus every problem found.

Building one never fails: a bad document becomes a ConfigError, and when the bad
document is a new version of an object that was valid before (or sits in a file that
can no longer be read at all), the previous valid version stays in force.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from pilotfish.model.documents import ParsedFile
from pilotfish.model.errors import ConfigError
from pilotfish.model.mesh_config import MeshSettings
from pilotfish.model.objects import (
    ConfigKey,
    ConfigObject,
    EndpointSet,
    IstioObject,
    Namespace,
    Secret,
    Service,
    key_of,
)
from pilotfish.model.parse import parse_document
from pilotfish.model.references import cross_reference_errors

T = TypeVar("T", bound=ConfigObject)


@dataclass(frozen=True)
class ConfigSet:
    objects: Mapping[ConfigKey, ConfigObject] = field(default_factory=dict)
    errors: tuple[ConfigError, ...] = ()
    mesh: MeshSettings = field(default_factory=MeshSettings)

    def of_kind(self, kind: str) -> list[ConfigObject]:
        """Objects of one kind in Istio's merge order (creation time, name, namespace)."""
        found = [o for k, o in self.objects.items() if k.kind == kind]
        return sorted(found, key=lambda o: o.meta.sort_key())

    def istio(self, kind: str) -> list[IstioObject]:
        return [o for o in self.of_kind(kind) if isinstance(o, IstioObject)]

    def services(self) -> list[Service]:
        return [o for o in self.of_kind("Service") if isinstance(o, Service)]

    def endpoint_sets(self) -> list[EndpointSet]:
        return [o for o in self.objects.values() if isinstance(o, EndpointSet)]

    def secret(self, namespace: str, name: str) -> Secret | None:
        found = self.objects.get(ConfigKey("Secret", namespace, name))
        return found if isinstance(found, Secret) else None

    def namespaces(self) -> list[Namespace]:
        return [o for o in self.of_kind("Namespace") if isinstance(o, Namespace)]

    def get(self, kind: str, namespace: str, name: str) -> ConfigObject | None:
        return self.objects.get(ConfigKey(kind, namespace, name))

    @property
    def has_errors(self) -> bool:
        return any(e.severity == "error" for e in self.errors)


def build_config_set(files: Sequence[ParsedFile], previous: ConfigSet | None = None) -> ConfigSet:
    """Parse every document of every file into one ConfigSet.

    `previous` is the ConfigSet in force until now: objects whose new version is invalid,
    and objects of files that cannot be read any more, are carried over from it.
    """
    previous = previous or ConfigSet()
    objects: dict[ConfigKey, ConfigObject] = {}
    errors: list[ConfigError] = []
    kept: dict[ConfigKey, ConfigObject] = {}

    candidates: dict[ConfigKey, list[ConfigObject]] = {}
    for parsed in sorted(files, key=lambda f: f.file):
        errors.extend(parsed.errors)
        if parsed.unreadable:
            for key, obj in previous.objects.items():
                if obj.origin.file == parsed.file:
                    kept[key] = obj
            continue
        for doc in parsed.documents:
            result = parse_document(doc)
            if result is None:
                continue  # a kind with no traffic configuration (a Deployment, ...)
            if isinstance(result, ConfigError):
                errors.append(_with_fallback_note(result, previous, kept))
                continue
            candidates.setdefault(key_of(result), []).append(result)

    for key, copies in candidates.items():
        chosen = _in_force(key, copies, previous, kept)
        objects[key] = chosen
        errors.extend(_duplicate(key, c, chosen) for c in copies if c is not chosen)

    for key, obj in kept.items():
        objects.setdefault(key, obj)

    config = ConfigSet(objects)
    errors.extend(cross_reference_errors(config))
    return ConfigSet(objects, tuple(errors))


def _in_force(
    key: ConfigKey,
    copies: list[ConfigObject],
    previous: ConfigSet,
    kept: dict[ConfigKey, ConfigObject],
) -> ConfigObject:
    """Of several copies of one object, the one that stays in force: the copy from the
    file that was serving it (a stray copy elsewhere never takes over a working object),
    else its last valid version if that file's copy broke, else the first by file path."""
    serving = previous.objects.get(key)
    if serving is not None:
        same_file = [c for c in copies if c.origin.file == serving.origin.file]
        if same_file:
            return same_file[0]
        if key in kept:
            return kept[key]
    return copies[0]


def _duplicate(key: ConfigKey, copy: ConfigObject, chosen: ConfigObject) -> ConfigError:
    where = chosen.origin
    return ConfigError(
        f"duplicate {key}: the copy in force is in {where.file} document {where.document}; "
        "this copy is ignored (remove one of them)",
        copy.origin.file,
        copy.origin.document,
        key.kind,
        key.namespace or None,
        key.name,
    )


def with_mesh(
    config: ConfigSet, mesh: MeshSettings, warnings: Sequence[ConfigError] = ()
) -> ConfigSet:
    """The config under a mesh config (`serve --mesh-config`), with what loading it found."""
    return replace(config, mesh=mesh, errors=(*warnings, *config.errors))


def _with_fallback_note(
    error: ConfigError, previous: ConfigSet, kept: dict[ConfigKey, ConfigObject]
) -> ConfigError:
    """Keep the last valid version of the object the bad document describes, and say so."""
    if not (error.kind and error.name):
        return error
    namespace = "" if error.kind == "Namespace" else error.namespace or "default"
    key = ConfigKey(error.kind, namespace, error.name)
    old = previous.objects.get(key)
    if old is None:
        return error
    kept[key] = old
    return ConfigError(
        f"{error.message} (the last valid version stays in force)",
        error.file,
        error.document,
        error.kind,
        error.namespace,
        error.name,
        error.field,
        error.severity,
    )


def objects_of(config: ConfigSet, cls: type[T]) -> Iterable[T]:
    return (o for o in config.objects.values() if isinstance(o, cls))
