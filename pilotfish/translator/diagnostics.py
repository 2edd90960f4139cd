"""Collects the problems translation finds, located on the object and field at fault."""

from __future__ import annotations

from dataclasses import dataclass, field

from pilotfish.model.errors import ConfigError
from pilotfish.model.objects import ConfigObject
from pilotfish.translator import ir


@dataclass
class Diagnostics:
    # A set: the same VirtualService is translated once per gateway server it binds to.
    _found: set[ConfigError] = field(default_factory=set)

    def error(self, obj: ConfigObject, field_path: str, message: str) -> None:
        self._add(obj, field_path, message, "error")

    def warning(self, obj: ConfigObject, field_path: str, message: str) -> None:
        self._add(obj, field_path, message, "warning")

    def _add(self, obj: ConfigObject, field_path: str, message: str, severity: str) -> None:
        self._found.add(
            ConfigError(
                message,
                obj.origin.file,
                obj.origin.document,
                obj.kind,
                obj.meta.namespace or None,
                obj.meta.name,
                field_path,
                severity,
            )
        )

    def sorted(self) -> tuple[ConfigError, ...]:
        return tuple(
            sorted(
                self._found,
                key=lambda e: (
                    e.kind or "",
                    e.namespace or "",
                    e.name or "",
                    e.field or "",
                    e.message,
                ),
            )
        )


def source_of(obj: ConfigObject, field_path: str = "") -> ir.Source:
    """Where an IR element came from, for problems found after translation."""
    return ir.Source(
        obj.kind,
        obj.meta.namespace,
        obj.meta.name,
        field_path,
        obj.origin.file,
        obj.origin.document,
    )
