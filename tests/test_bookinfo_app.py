"""The bookinfo stand-in (testsupport/bookinfo/app.py) on loopback: its flaky and slow modes,
which the mesh scenarios for retries and circuit breaking rely on."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testsupport._process import ManagedProcess
from testsupport.bookinfo import APP
from testsupport.http import Response, request
from testsupport.ports import free_port
from testsupport.wait import wait_until


@contextmanager
def start(tmp_path: Path, *options: str) -> Iterator[str]:
    """app.py on a free loopback port with ``options``; yields its base URL."""
    port = free_port()
    ready = tmp_path / "ready"
    argv = [sys.executable, str(APP), "--service=flaky", "--version=v1", f"--port={port}"]
    proc = ManagedProcess([*argv, f"--ready-file={ready}", *options], tmp_path / "app.log")
    try:
        wait_until(ready.exists, timeout=15, message=lambda: proc.log_tail())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture
def every_other(tmp_path: Path) -> Iterator[str]:
    with start(tmp_path, "--fail-every=2") as url:
        yield url


@pytest.fixture
def first_three(tmp_path: Path) -> Iterator[str]:
    with start(tmp_path, "--fail-first=3", "--fail-status=500") as url:
        yield url


def statuses(url: str, n: int) -> list[tuple[int, int]]:
    replies: list[Response] = [request(f"{url}/x") for _ in range(n)]
    return [(r.status, r.json()["request"]) for r in replies]


def test_fail_every_other_request_starting_with_the_first(every_other: str) -> None:
    assert statuses(every_other, 6) == [(503, 1), (200, 2), (503, 3), (200, 4), (503, 5), (200, 6)]


def test_fail_the_first_n_requests_with_the_status_asked(first_three: str) -> None:
    assert [s for s, _ in statuses(first_three, 5)] == [500, 500, 500, 200, 200]


def test_a_healthy_app_never_fails_and_sleep_holds_the_answer(tmp_path: Path) -> None:
    with start(tmp_path) as url:
        assert {s for s, _ in statuses(url, 4)} == {200}
        started = time.monotonic()
        reply = request(f"{url}/ratings/0?sleep=0.3")
        assert reply.status == 200
        assert time.monotonic() - started >= 0.3
        assert reply.json()["path"] == "/ratings/0?sleep=0.3"
