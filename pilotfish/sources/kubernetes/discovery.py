"""API discovery: which version of a group the cluster serves a kind under."""

from __future__ import annotations

import asyncio
from typing import Any

from pilotfish.sources.kubernetes.client import ApiError, KubeClient
from pilotfish.sources.kubernetes.resources import ResourceType


class NotServed(Exception):
    """The API server serves none of the versions we know for a kind (CRD not installed?)."""


class Discovery:
    """Caches `/apis/<group>` and `/apis/<group>/<version>` answers across kinds.

    Failures are not cached, and `forget()` drops everything, so a CRD installed later is
    found by the next attempt.
    """

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._groups: dict[str, list[str]] = {}
        self._resources: dict[str, set[str]] = {}

    def forget(self) -> None:
        self._groups.clear()
        self._resources.clear()

    async def version_for(self, resource: ResourceType) -> str:
        """The most preferred of resource.versions that serves resource.plural."""
        if not resource.discovered:
            return resource.versions[0]
        async with self._lock:
            served = await self._group_versions(resource.group)
            for version in resource.versions:
                if version in served and resource.plural in await self._plurals(
                    resource.group, version
                ):
                    return version
        raise NotServed(
            f"the API server serves {resource.kind} ({resource.plural}.{resource.group}) in "
            f"none of the versions {', '.join(resource.versions)} (served: "
            f"{', '.join(served) or 'none'}); are the CRDs installed?"
        )

    async def _group_versions(self, group: str) -> list[str]:
        if group not in self._groups:
            try:
                body = await self._client.get(f"/apis/{group}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                body = {}
            self._groups[group] = [
                str(v.get("version")) for v in _list(body.get("versions")) if isinstance(v, dict)
            ]
        return self._groups[group]

    async def _plurals(self, group: str, version: str) -> set[str]:
        key = f"{group}/{version}"
        if key not in self._resources:
            body = await self._client.get(f"/apis/{key}")
            self._resources[key] = {
                str(r.get("name")) for r in _list(body.get("resources")) if isinstance(r, dict)
            }
        return self._resources[key]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
