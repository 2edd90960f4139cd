"""The one shape every configuration problem is reported in.

Sources, the parser and the translator all report problems as ``ConfigError`` so that
the log, ``/debug/config_status`` and ``pilotfish validate`` show the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class ConfigError:
    """A problem with one document or object, located as precisely as we can."""

    message: str
    file: str | None = None
    document: int | None = None  # index of the `---` document within the file
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    field: str | None = None  # dotted path inside the object, e.g. spec.http[0].match[1].uri
    # "error": the object (or the part named) is not in force; "warning": it is served,
    # but probably not as the user meant (e.g. a route to a host no registry knows).
    severity: str = "error"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        where = self.file or ""
        if self.document is not None:
            where += f"#{self.document}"
        obj = "/".join(p for p in (self.kind, self.namespace, self.name) if p)
        parts = [p for p in (where, obj, self.field) if p]
        return f"{' '.join(parts)}: {self.message}" if parts else self.message
