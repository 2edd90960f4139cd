"""The file source: a directory (recursive) of kubectl-style manifests, watched for changes.

It reads files and reports that something changed; parsing into a ConfigSet and
debouncing are the caller's (the model's and the server's) jobs. Unchanged files are not
parsed again: a reload after one edit costs one file's parse, not the directory's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import watchfiles

from pilotfish.model.documents import ParsedFile, parse_manifest_text
from pilotfish.model.errors import ConfigError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
log = structlog.get_logger()


def manifest_paths(root: Path) -> list[Path]:
    """Every manifest below root, in a stable order; hidden files and folders are skipped
    (editors' swap files, Kubernetes ConfigMap mounts' `..data` links)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found


def read_manifest_file(path: Path, display_name: str) -> ParsedFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ParsedFile(display_name, (), (ConfigError("not UTF-8 text", display_name),))
    except OSError as exc:
        return ParsedFile(
            display_name, (), (ConfigError(f"cannot read: {exc.strerror}", display_name),)
        )
    return parse_manifest_text(text, display_name)


@dataclass
class FileSource:
    """Reads a directory of manifests; `load()` is cheap to call again after a change."""

    root: Path
    _cache: dict[Path, tuple[tuple[int, int, int], ParsedFile]] = field(default_factory=dict)

    def describe(self) -> str:
        return f"directory {self.root}"

    async def start(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"config directory {self.root} does not exist")

    async def wait_synced(self) -> None:
        return None  # a directory is complete as soon as it is read

    def pending(self) -> list[str]:
        return []

    async def write_status(self, problems: Sequence[ConfigError]) -> None:
        return None  # files have no status to write: /debug/config_status and the log say it

    async def close(self) -> None:
        return None

    def loader(self) -> Callable[[], list[ParsedFile]]:
        # Only load() touches the parse cache, and the server runs one load at a time.
        return self.load

    def load(self) -> list[ParsedFile]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"config directory {self.root} does not exist")
        parsed = []
        seen = set()
        for path in manifest_paths(self.root):
            seen.add(path)
            try:
                stat = path.stat()
                # The inode too: an editor's save-by-rename within one timestamp tick and
                # of the same size is still a new file.
                signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except OSError:
                continue  # deleted between the walk and now: the next change event reloads
            cached = self._cache.get(path)
            if cached is None or cached[0] != signature:
                cached = (signature, read_manifest_file(path, self._display_name(path)))
                self._cache[path] = cached
            parsed.append(cached[1])
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return parsed

    def _display_name(self, path: Path) -> str:
        """Paths relative to the config dir: what a user recognises in error reports."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[int]:
        """Yield (the number of changed paths) each time something below root changes."""
        async for batch in watchfiles.awatch(
            self.root,
            stop_event=stop,
            watch_filter=_is_manifest_change,
            # The server debounces; keep watchfiles' own grouping short so it adds little.
            step=20,
            debounce=200,
            recursive=True,
        ):
            log.debug("config files changed", count=len(batch))
            yield len(batch)


def _is_manifest_change(change: watchfiles.Change, path: str) -> bool:
    # A deleted directory shows up as one event for the directory itself.
    name = os.path.basename(path)
    if name.startswith("."):
        return False
    return (
        name.endswith(MANIFEST_SUFFIXES)
        or change == watchfiles.Change.deleted
        or os.path.isdir(path)
    )
