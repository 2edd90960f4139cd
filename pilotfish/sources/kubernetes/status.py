"""Problems written back to the Istio objects they concern, as Istio's `validationMessages`.

Istio keeps them in `status.validationMessages` (IstioStatus), each an
`istio.analysis.v1alpha1.AnalysisMessageBase` in its JSON form:

    {"type": {"code": "IST0106", "name": "SchemaValidationError"},
     "level": "ERROR", "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/"}

That message carries no text (istioctl prints it from the code's template), so we add
`description` ("<field>: <message>"): Istio's CRDs keep `status` with
`x-kubernetes-preserve-unknown-fields`, so the field survives, and `kubectl get -o yaml`
shows what is wrong. The status subresource is merge-patched, and only when its content
differs from what the object already says: unchanged problems cause no write, and
several replicas computing the same messages do not fight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from pilotfish.model.errors import ConfigError
from pilotfish.sources.kubernetes.client import ApiError, KubeClient
from pilotfish.sources.kubernetes.store import StoredObject

log = structlog.get_logger()

DOCS = "https://istio.io/latest/docs/reference/config/analysis/{code}/"

# (code, name) of Istio's analysis message types we map our problems to.
REFERENCED_RESOURCE_NOT_FOUND = ("IST0101", "ReferencedResourceNotFound")
SCHEMA_VALIDATION_ERROR = ("IST0106", "SchemaValidationError")
SCHEMA_WARNING = ("IST0133", "SchemaWarning")

_LEVELS = {"error": "ERROR", "warning": "WARNING"}
_REFERENCE_HINTS = ("does not exist", "not found", "no such", "unknown host")


@dataclass(frozen=True)
class StatusTarget:
    """An object that can carry status: its stored version and its status subresource path."""

    kind: str
    namespace: str
    name: str
    stored: StoredObject
    status_path: str


def message_type(error: ConfigError) -> tuple[str, str]:
    """The Istio message type closest to one of our problems."""
    if any(hint in error.message for hint in _REFERENCE_HINTS):
        return REFERENCED_RESOURCE_NOT_FOUND
    if error.severity == "error":
        return SCHEMA_VALIDATION_ERROR
    return SCHEMA_WARNING


def validation_message(error: ConfigError) -> dict[str, Any]:
    code, name = message_type(error)
    return {
        "type": {"code": code, "name": name},
        "level": _LEVELS.get(error.severity, "INFO"),
        "documentationUrl": DOCS.format(code=code.lower()),
        "description": f"{error.field}: {error.message}" if error.field else error.message,
    }


def validation_messages(errors: Iterable[ConfigError]) -> list[dict[str, Any]]:
    """One object's messages, in a stable order (errors first), each once."""
    ordered = sorted(set(errors), key=lambda e: (e.severity != "error", e.field or "", e.message))
    messages: list[dict[str, Any]] = []
    for error in ordered:
        message = validation_message(error)
        if message not in messages:
            messages.append(message)
    return messages


class StatusWriter:
    def __init__(self, client: KubeClient, targets: Callable[[], Iterable[StatusTarget]]) -> None:
        self._client = client
        self._targets = targets
        # What we last wrote per object, and the resourceVersion it was written over: until
        # the watch brings the new version, the store still shows the old status.
        self._written: dict[tuple[str, str, str], tuple[str, list[dict[str, Any]]]] = {}
        self.writes = 0

    async def write(self, problems: Sequence[ConfigError]) -> None:
        by_object: dict[tuple[str, str, str], list[ConfigError]] = {}
        for problem in problems:
            if problem.kind and problem.name:
                key = (problem.kind, problem.namespace or "default", problem.name)
                by_object.setdefault(key, []).append(problem)
        for target in list(self._targets()):
            key = (target.kind, target.namespace, target.name)
            wanted = validation_messages(by_object.get(key, ()))
            if _current(target.stored.status) == wanted:
                self._written.pop(key, None)
                continue
            if self._written.get(key) == (target.stored.resource_version, wanted):
                continue  # already written; the watch has not brought it back yet
            await self._patch(key, target, wanted)

    async def _patch(
        self, key: tuple[str, str, str], target: StatusTarget, wanted: list[dict[str, Any]]
    ) -> None:
        body = {"status": {"validationMessages": wanted}}
        try:
            await self._client.merge_patch(target.status_path, body)
        except ApiError as exc:
            level = log.debug if exc.status == 404 else log.warning
            level(
                "cannot write status",
                kind=target.kind,
                namespace=target.namespace,
                name=target.name,
                error=str(exc),
            )
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # the next reload retries
            log.warning(
                "cannot write status",
                kind=target.kind,
                namespace=target.namespace,
                name=target.name,
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        self.writes += 1
        self._written[key] = (target.stored.resource_version, wanted)
        log.info(
            "status written",
            kind=target.kind,
            namespace=target.namespace,
            name=target.name,
            messages=len(wanted),
        )


def _current(status: Mapping[str, Any]) -> list[Any]:
    messages = status.get("validationMessages")
    return messages if isinstance(messages, list) else []
