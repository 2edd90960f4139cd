"""pilotfish.server.debounce: a lone change goes at once, a burst becomes one push, a trickle
still gets through."""

from __future__ import annotations

import asyncio

from pilotfish.server.debounce import Debouncer

# asyncio may run a timer up to its clock resolution early; allow for it in lower bounds.
EARLY = 0.01


def test_a_burst_becomes_one_batch_with_the_summed_count() -> None:
    async def scenario() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        debouncer = Debouncer(quiet=0.1, max_wait=5.0, leading=False)
        start = loop.time()
        debouncer.notify()
        debouncer.notify(3)
        # more arrive while the batch is waiting for quiet
        for i, count in enumerate((2, 1, 4)):
            loop.call_later(0.02 * (i + 1), debouncer.notify, count)
        batch = await debouncer.next_batch()
        return batch, loop.time() - start

    batch, elapsed = asyncio.run(scenario())
    assert batch == 1 + 3 + 2 + 1 + 4
    # the last notify came at 0.06; the batch waits a full quiet period after it
    assert elapsed >= 0.06 + 0.1 - EARLY
    assert elapsed < 2.0


def test_the_quiet_period_is_respected_and_later_changes_make_a_new_batch() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        debouncer = Debouncer(quiet=0.15, max_wait=5.0, leading=False)

        waiter = asyncio.ensure_future(debouncer.next_batch())
        await asyncio.wait({waiter}, timeout=0.05)
        assert not waiter.done()  # nothing happened yet: no batch

        notified_at = loop.time()
        debouncer.notify()
        assert await asyncio.wait_for(waiter, timeout=5) == 1
        assert loop.time() - notified_at >= 0.15 - EARLY

        # the count starts again from zero
        debouncer.notify(2)
        notified_at = loop.time()
        assert await asyncio.wait_for(debouncer.next_batch(), timeout=5) == 2
        assert loop.time() - notified_at >= 0.15 - EARLY

    asyncio.run(scenario())


def test_a_steady_trickle_still_yields_by_max_wait() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        quiet, max_wait, every, duration = 0.1, 0.4, 0.05, 2.0
        debouncer = Debouncer(quiet=quiet, max_wait=max_wait, leading=False)
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            end = loop.time() + duration
            while loop.time() < end:
                debouncer.notify()
                sent += 1
                await asyncio.sleep(every)  # the load itself, not a synchronisation

        start = loop.time()
        feeder = asyncio.ensure_future(trickle())
        try:
            batch = await asyncio.wait_for(debouncer.next_batch(), timeout=10)
            elapsed = loop.time() - start
            # it yielded although changes never went quiet: the trickle is still going
            assert not feeder.done()
            assert elapsed >= max_wait - EARLY
            assert elapsed < duration  # generous: about max_wait, certainly before the end
            assert batch >= 2
            assert batch <= sent

            # and again for the next stretch of the same trickle
            start = loop.time()
            second = await asyncio.wait_for(debouncer.next_batch(), timeout=10)
            assert not feeder.done()
            assert loop.time() - start < duration
            assert second >= 2
            assert batch + second <= sent
        finally:
            feeder.cancel()

    asyncio.run(scenario())


def test_max_wait_shorter_than_quiet_caps_the_wait() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        debouncer = Debouncer(quiet=5.0, max_wait=0.1, leading=False)
        debouncer.notify()
        start = loop.time()
        assert await asyncio.wait_for(debouncer.next_batch(), timeout=10) == 1
        return loop.time() - start

    assert 0.1 - EARLY <= asyncio.run(scenario()) < 3.0


def test_a_change_after_a_quiet_period_is_a_batch_at_once() -> None:
    async def scenario() -> None:
        # A quiet period far longer than the test's patience: only the leading edge
        # can answer in time.
        debouncer = Debouncer(quiet=30.0, max_wait=60.0)
        debouncer.notify(2)
        assert await asyncio.wait_for(debouncer.next_batch(), timeout=5) == 2

    asyncio.run(scenario())


def test_changes_right_after_a_leading_batch_are_merged_until_quiet() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        debouncer = Debouncer(quiet=0.2, max_wait=5.0)
        debouncer.notify()
        assert await asyncio.wait_for(debouncer.next_batch(), timeout=5) == 1
        # Within the quiet period of that batch: a burst, merged into one batch.
        debouncer.notify()
        for i, count in enumerate((2, 3)):
            loop.call_later(0.05 * (i + 1), debouncer.notify, count)
        started = loop.time()
        assert await asyncio.wait_for(debouncer.next_batch(), timeout=5) == 6
        assert loop.time() - started >= 0.1 + 0.2 - EARLY  # waited out the burst

    asyncio.run(scenario())
