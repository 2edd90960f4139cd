"""Polling with a deadline: how every test waits for something to become true.

A bare sleep either wastes time or flakes; these poll a predicate until it returns a truthy
value and fail with the last value seen, so a timeout says what the world looked like.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str]

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.05


def _fail(message: Message, timeout: float, last: object) -> AssertionError:
    text = message() if callable(message) else message
    return AssertionError(f"{text} (not true after {timeout:g}s; last value: {last!r})")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: Message = "condition not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Exceptions of the ``ignore`` types count as "not yet" (e.g. connection refused while a
    server starts) and are reported as the last value. ``message`` may be a callable, so an
    expensive description (a log tail) is only built on failure.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _fail(message, timeout, last)
        time.sleep(interval)


@overload
async def wait_until_async(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    interval: float = ...,
    message: Message = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def wait_until_async(
    predicate: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    message: Message = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def wait_until_async(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: Message = "condition not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """``wait_until`` for asyncio tests: yields to the loop between polls.

    ``predicate`` may be a plain function or return an awaitable. Blocking predicates (an
    admin API call) stall the loop while they run; wrap them in ``asyncio.to_thread`` when
    the server under test shares the loop.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _fail(message, timeout, last)
        await asyncio.sleep(interval)
