"""The few API calls an informer needs, over aiohttp: GET JSON, watch, merge-patch."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp

from pilotfish.sources.kubernetes.connection import Connection

MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "pilotfish"


class ApiError(Exception):
    """The API server answered with an error (its `Status` object, when it sent one)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}".strip(": "))
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, status: Mapping[str, Any], default_code: int = 500) -> ApiError:
        code = status.get("code")
        return cls(
            int(code) if isinstance(code, int) else default_code,
            str(status.get("reason") or ""),
            str(status.get("message") or ""),
        )


class KubeClient:
    """One aiohttp session to the API server. Create and close it inside the running loop."""

    def __init__(self, connection: Connection, request_timeout: float = 30.0) -> None:
        self.connection = connection
        self._request_timeout = request_timeout
        self._session = aiohttp.ClientSession(
            # Every watch holds a connection: no pool limit (there are a dozen or so).
            connector=aiohttp.TCPConnector(limit=0, ssl=connection.ssl_context or False),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        await self._session.close()

    def _url(self, path: str) -> str:
        return self.connection.host + path

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        async with self._session.get(
            self._url(path),
            params=params,
            headers=await self.connection.auth_headers(),
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            server_hostname=self.connection.server_hostname,
        ) as response:
            return await _json_or_raise(response)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        headers = {**await self.connection.auth_headers(), "Content-Type": MERGE_PATCH}
        async with self._session.patch(
            self._url(path),
            data=json.dumps(body).encode(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            server_hostname=self.connection.server_hostname,
        ) as response:
            return await _json_or_raise(response)

    async def watch(
        self, path: str, params: Mapping[str, str], read_timeout: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The watch events (`{"type", "object"}`) as they arrive, until the server ends the
        stream. Raises ApiError for an HTTP error, aiohttp errors for a lost connection."""
        async with self._session.get(
            self._url(path),
            params={**params, "watch": "1"},
            headers=await self.connection.auth_headers(),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self._request_timeout, sock_read=read_timeout
            ),
            server_hostname=self.connection.server_hostname,
        ) as response:
            if response.status != 200:
                await _json_or_raise(response)
            buffer = bytearray()
            # Lines are split here rather than with readline(), which refuses lines longer
            # than its buffer: one object can be large (a Secret with a certificate chain).
            async for chunk in response.content.iter_any():
                buffer.extend(chunk)
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if line.strip():
                        yield _event(line)
            if buffer.strip():
                yield _event(bytes(buffer))


def _event(line: bytes) -> dict[str, Any]:
    event = json.loads(line)
    if not isinstance(event, dict):
        raise ValueError(f"a watch event must be an object, got {type(event).__name__}")
    return event


async def _json_or_raise(response: aiohttp.ClientResponse) -> dict[str, Any]:
    text = await response.text()
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = None
    if response.status >= 400:
        if isinstance(body, dict) and body.get("kind") == "Status":
            raise ApiError.from_status(body, response.status)
        raise ApiError(response.status, response.reason or "", text[:200])
    if not isinstance(body, dict):
        raise ApiError(response.status, "BadResponse", f"not a JSON object: {text[:200]}")
    return body
