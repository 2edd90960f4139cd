"""What the server needs of a configuration source, whatever it reads from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from pilotfish.model.documents import ParsedFile
from pilotfish.model.errors import ConfigError


class SourceUnavailableError(Exception):
    """The source cannot be set up at all (e.g. no usable kubeconfig): say why and exit."""


class ConfigSource(Protocol):
    def describe(self) -> str:
        """One line for logs: where the config comes from."""
        ...

    async def start(self) -> None:
        """Begin reading (e.g. list/watch); raise at once if the source cannot exist."""
        ...

    async def wait_synced(self) -> None:
        """Until the source holds a complete first view (every kind listed)."""
        ...

    def pending(self) -> list[str]:
        """What the first view still waits for (for progress logs and readiness)."""
        ...

    def load(self) -> list[ParsedFile]:
        """The current documents. Cheap to call again: unchanged ones are not re-read."""
        ...

    def loader(self) -> Callable[[], list[ParsedFile]]:
        """Called on the event loop; returns what `load()` would, as a function the server
        calls in a worker thread (reading and parsing can take seconds). Whatever the loop
        changes meanwhile must not be read by that function: take a copy here instead."""
        ...

    def changes(self, stop: asyncio.Event) -> AsyncIterator[int]:
        """Yield (a count of changes) whenever something may have changed."""
        ...

    async def write_status(self, problems: Sequence[ConfigError]) -> None:
        """Tell the objects' owners about their problems, where the source can."""
        ...

    async def close(self) -> None: ...
