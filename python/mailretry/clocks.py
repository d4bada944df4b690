"""Clocks for :class:`mailretry.aio.Driver`: where it gets its time from and how
it waits. :class:`SystemClock` is wall-clock time; :class:`VirtualClock` runs
at ``speed`` times real time and can skip idle waits (tests, simulations).
Imported from :mod:`mailretry.aio` as well."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

__all__ = ["BusyTracking", "Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    """Where the driver gets its time from (epoch seconds) and how it waits."""

    def now(self) -> float:
        """The current time in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of this clock's time have passed."""
        ...


@runtime_checkable
class BusyTracking(Protocol):
    """A clock that wants to know when the driver is working (see
    :class:`VirtualClock`): :meth:`acquire` when work starts, :meth:`release`
    when it ends; calls nest."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class SystemClock:
    """Wall-clock time (``time.time()``) and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Virtual time for tests and simulations.

    Parameters
    ----------
    start
        Virtual time at creation (epoch seconds).
    speed
        Virtual seconds per real second while the clock runs (600 = one real
        second is ten virtual minutes). ``0`` freezes time except for skips.
    skip_idle
        When nothing holds the clock (:meth:`acquire`, :meth:`busy`), jump
        forward to the earliest sleeper's deadline instead of waiting for it.
        A sleeper woken by a jump holds the clock until its task has resumed,
        so time does not move on before it has acted. A :class:`Driver` holds
        the clock while its loop runs and while each attempt is in flight, and
        lets go while it waits. Anything else that acts on the system (a test
        harness, a feeder) must wait through this clock's :meth:`sleep` or hold
        the clock while it works.

    Notes
    -----
    Not thread-safe: use it from one event loop (``now()`` may be read from
    other threads).
    """

    def __init__(self, start: float, *, speed: float = 600.0, skip_idle: bool = True) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._origin_virtual = float(start)
        self._origin_real = time.monotonic()
        self._offset = 0.0
        self._speed = float(speed)
        self._skip_idle = skip_idle
        self._busy = 0
        self._sleepers: dict[int, float] = {}
        self._woken: set[int] = set()  # sleepers holding the clock until they resume
        self._ids = itertools.count()
        self._changed: asyncio.Future[None] | None = None

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        real = time.monotonic() - self._origin_real
        return self._origin_virtual + real * self._speed + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds <= 0:
            return
        self._offset += seconds
        now = self.now()
        for token, deadline in self._sleepers.items():
            if deadline <= now and token not in self._woken:
                self._woken.add(token)
                self._busy += 1
        self._notify()

    def acquire(self) -> None:
        """Mark work in progress: until the matching :meth:`release`, time does
        not jump."""
        self._busy += 1

    def release(self) -> None:
        if self._busy <= 0:
            raise RuntimeError("VirtualClock.release() without acquire()")
        self._busy -= 1
        if self._busy == 0:
            self._notify()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """:meth:`acquire` and :meth:`release` as a context manager."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    async def sleep(self, seconds: float) -> None:
        deadline = self.now() + max(0.0, seconds)
        token = next(self._ids)
        self._sleepers[token] = deadline
        try:
            while True:
                now = self.now()
                if now >= deadline:
                    return
                if self._skip_idle and self._busy == 0:
                    self.advance(min(self._sleepers.values()) - now)
                    if self.now() >= deadline:
                        return
                changed = self._changed_future()
                real_timeout = None if self._speed == 0 else (deadline - now) / self._speed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(changed), real_timeout)
        finally:
            del self._sleepers[token]
            if token in self._woken:
                self._woken.discard(token)
                self.release()
            # A sleeper leaving may make another one the earliest: let them re-check.
            self._notify()

    def _changed_future(self) -> asyncio.Future[None]:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
