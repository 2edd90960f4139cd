"""pilotfish.sources.files: a directory of manifests, read, cached and watched."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest
import watchfiles

from pilotfish.sources.files import FileSource, _is_manifest_change, manifest_paths

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "a.yaml", NAMESPACE.format("a"))
    write(tmp_path / "sub" / "b.yml", NAMESPACE.format("b"))
    write(
        tmp_path / "sub" / "deeper" / "c.json",
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}',
    )
    # not manifests, or hidden: all skipped
    write(tmp_path / "notes.txt", "kind: [broken\n")
    write(tmp_path / "README.md", "# hello\n")
    write(tmp_path / "a.yaml.bak", "kind: [broken\n")
    write(tmp_path / ".hidden.yaml", "kind: [broken\n")
    write(tmp_path / "sub" / ".a.yaml.swp", "kind: [broken\n")
    write(tmp_path / ".git" / "x.yaml", "kind: [broken\n")
    write(tmp_path / "sub" / ".cache" / "y.yaml", "kind: [broken\n")
    return tmp_path


def test_scan_is_recursive_over_manifests_only(tree: Path) -> None:
    assert [p.relative_to(tree).as_posix() for p in manifest_paths(tree)] == [
        "a.yaml",
        "sub/b.yml",
        "sub/deeper/c.json",
    ]


def test_load_names_files_relative_to_the_root(tree: Path) -> None:
    parsed = FileSource(tree).load()
    assert [p.file for p in parsed] == [
        "a.yaml",
        os.path.join("sub", "b.yml"),
        os.path.join("sub", "deeper", "c.json"),
    ]
    assert all(p.errors == () for p in parsed)
    names = [d.meta()[1] for p in parsed for d in p.documents]
    assert names == ["a", "b", "c"]
    # the documents carry the display name too: it is what error reports show
    assert parsed[1].documents[0].file == os.path.join("sub", "b.yml")


def test_unchanged_files_are_not_parsed_again(tree: Path) -> None:
    source = FileSource(tree)
    first = {p.file: p for p in source.load()}

    write(tree / "a.yaml", NAMESPACE.format("a-changed") + "# longer now\n")
    (tree / "sub" / "deeper" / "c.json").unlink()
    write(tree / "sub" / "new.yaml", NAMESPACE.format("n"))
    second = {p.file: p for p in source.load()}

    assert sorted(second) == [
        "a.yaml",
        os.path.join("sub", "b.yml"),
        os.path.join("sub", "new.yaml"),
    ]
    assert second[os.path.join("sub", "b.yml")] is first[os.path.join("sub", "b.yml")]
    assert second["a.yaml"] is not first["a.yaml"]
    assert second["a.yaml"].documents[0].meta() == (None, "a-changed")
    assert second[os.path.join("sub", "new.yaml")].documents[0].meta() == (None, "n")

    third = {p.file: p for p in source.load()}
    assert all(third[name] is second[name] for name in second)


def test_a_deleted_file_comes_back_parsed_afresh(tree: Path) -> None:
    source = FileSource(tree)
    (old,) = [p for p in source.load() if p.file == "a.yaml"]
    (tree / "a.yaml").unlink()
    assert "a.yaml" not in [p.file for p in source.load()]
    write(tree / "a.yaml", NAMESPACE.format("a2"))
    (new,) = [p for p in source.load() if p.file == "a.yaml"]
    assert new is not old
    assert new.documents[0].meta() == (None, "a2")


def test_a_non_utf8_file_is_reported_as_unreadable(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("kind: Namespace\n# caf\xe9\n".encode("latin-1"))
    write(tmp_path / "ok.yaml", NAMESPACE.format("ok"))
    bad, ok = FileSource(tmp_path).load()
    assert bad.file == "latin1.yaml"
    assert bad.documents == ()
    assert bad.unreadable
    assert [(e.file, e.message) for e in bad.errors] == [("latin1.yaml", "not UTF-8 text")]
    assert ok.errors == ()


def test_a_broken_manifest_is_reported_under_its_display_name(tmp_path: Path) -> None:
    write(tmp_path / "team" / "broken.yaml", "kind: [oops\n")
    (parsed,) = FileSource(tmp_path).load()
    assert parsed.unreadable
    assert parsed.errors[0].file == os.path.join("team", "broken.yaml")


def test_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        FileSource(tmp_path / "does-not-exist").load()


def test_the_change_filter() -> None:
    added, modified, deleted = (
        watchfiles.Change.added,
        watchfiles.Change.modified,
        watchfiles.Change.deleted,
    )
    assert _is_manifest_change(modified, "/cfg/a.yaml")
    assert _is_manifest_change(added, "/cfg/sub/b.yml")
    assert _is_manifest_change(modified, "/cfg/c.json")
    assert not _is_manifest_change(modified, "/cfg/notes.txt")
    assert not _is_manifest_change(added, "/cfg/.a.yaml.swp")
    assert not _is_manifest_change(modified, "/cfg/.hidden.yaml")
    # a deleted directory shows up as one event on the directory itself
    assert _is_manifest_change(deleted, "/cfg/old-team")


def test_changes_yields_when_a_manifest_is_written(tmp_path: Path) -> None:
    async def scenario() -> int:
        source = FileSource(tmp_path)
        stop = asyncio.Event()
        # an async generator: closed at the end, whatever happens
        changes = cast(AsyncGenerator[int, None], source.changes(stop))
        next_change = asyncio.ensure_future(anext(changes))
        try:
            # The watcher starts when the generator first runs; write until it reports,
            # rather than guessing how long that takes.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            attempt = 0
            while not next_change.done() and loop.time() < deadline:
                attempt += 1
                write(tmp_path / "new.yaml", NAMESPACE.format(f"n{attempt}"))
                await asyncio.wait({next_change}, timeout=1)
            count = await asyncio.wait_for(next_change, timeout=0.1)
            assert any(p.file == "new.yaml" for p in source.load())

            # the stop event ends the generator
            stop.set()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(changes), timeout=10)
            return count
        finally:
            stop.set()
            next_change.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await next_change
            await changes.aclose()

    count = asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    assert count >= 1
