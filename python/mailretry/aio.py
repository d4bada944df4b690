"""An asyncio delivery loop around an :class:`~mailretry.Engine`.

The :class:`Driver` asks the engine what may be attempted now, hands each lease to
a pluggable async :class:`Sender`, reports what the sender saw and passes the
engine's events to a callback. It decides nothing itself: when to retry, how many
connections a destination gets and when it is suspended are the engine's
answers; the driver only sleeps until :meth:`~mailretry.Engine.next_wakeup`, or
until new work is submitted or a finished attempt frees a slot.

Time comes from a :class:`Clock`; the engine only ever sees the clock's time.
:class:`SystemClock` is wall-clock time. :class:`VirtualClock` runs at ``speed``
times real time (0: frozen) and, with ``skip_idle``, jumps straight to the next
deadline whenever the driver is waiting and nothing is in flight, so a test or a
simulation plays hours of retries in seconds.

Delivery guarantee (see also :meth:`mailretry.Engine.open_durable`): an attempt
whose outcome is reported is final for the engine. A sender that raises or
returns something that is not a reply is reported at once as a transport
failure. An attempt that is never reported (the driver was stopped before it
finished, the process died) leaves its lease outstanding; the engine returns
the message to its schedule when the lease's deadline passes
(``lease_timeout``) and it is attempted again.
If the lost attempt had in fact reached the server, the recipient gets the
message twice: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mailretry._core import Decision, Lease, Reply
from mailretry.aio_types import DriverObserver, EngineLike, Sender, SharedAdmission, SharedLimits
from mailretry.classify import transport_reply
from mailretry.clocks import BusyTracking, Clock, SystemClock, VirtualClock
from mailretry.errors import InvalidInputError, StateError, UnknownIdError

__all__ = [
    "BadSenderResult",
    "BusyTracking",
    "Clock",
    "Driver",
    "DriverObserver",
    "DriverStats",
    "EngineLike",
    "Sender",
    "SharedAdmission",
    "SharedLimits",
    "SystemClock",
    "VirtualClock",
]

log = logging.getLogger(__name__)

MsgT = TypeVar("MsgT")
# Engine.poll: (leases, events, next wake-up) for (now, limit).
_Poll = Callable[[float, int], tuple[list[Lease], list[dict[str, Any]], float | None]]


@dataclass
class DriverStats:
    """Counters kept by a :class:`Driver`."""

    leases: int = 0  #: attempts started
    reports: int = 0  #: outcomes reported to the engine
    late_reports: int = 0  #: outcomes the engine refused (lease already expired)
    send_errors: int = 0  #: sender raised or returned a bad result: reported as a transport failure
    abandoned: int = 0  #: attempts cancelled at shutdown: lease left to expire
    events: int = 0  #: events passed to ``on_event``
    peak_in_flight: int = 0
    cluster_applied: int = 0  #: leases answered with another node's evidence, not sent
    gate_timeouts: int = 0  #: leases the shared gate could not admit before their deadline


# -- the driver ------------------------------------------------------------------
class Driver(Generic[MsgT]):
    """Runs deliveries for an engine.

    Parameters
    ----------
    engine
        The engine (e.g. from :meth:`~mailretry.Engine.open_durable`). Submit work
        through :meth:`submit` so that the driver wakes up, or call :meth:`wake`
        after submitting to the engine directly.
    sender
        Makes the attempts, e.g. :class:`mailretry.smtp.SmtpSender`.
    messages
        The payloads: a mapping or a callable from message id to whatever the
        sender takes. The engine only knows ids.
    clock
        Time source (default :class:`SystemClock`).
    on_event
        Called with every engine event (a dict, see
        :meth:`~mailretry.Engine.drain_events`), in order.
    on_report
        Called after each report with the lease, the outcome and the decision.
    on_error
        Called when an attempt fails in the driver's hands: the payload is
        missing, the sender raised or returned something that is not a reply
        (:class:`BadSenderResult`) -- these are then reported as a transport
        failure -- or the engine refused a late report. Default: log.
    max_in_flight
        Attempts running at once across all destinations (the engine bounds
        each destination).
    batch
        Leases taken per :meth:`~mailretry.Engine.take_ready` call.
    idle_step
        Seconds (clock time) to wait when the engine says work is due but hands
        out none, which happens within its timer resolution. Use the engine's
        ``timer_resolution``.
    route
        ``await route(domain) -> destination`` for :meth:`submit_to`, e.g.
        :meth:`mailretry.smtp.SmtpSender.route` (MX rollup: the destination is
        the site of the domain's mail exchangers).
    observer
        A :class:`DriverObserver` (metrics).
    shared
        Limits shared with other nodes (:class:`mailretry.cluster.RedisShared`):
        each attempt first waits for a cluster-wide connection slot and rate
        token, and the engine's cuts, suspensions and structural flags are
        published to the other nodes. Its own events (``cluster_fallback``,
        ``cluster_resumed``, ``cluster_applied``) reach ``on_event`` and the
        observer like the engine's. Needs wall-clock time (a clock whose
        ``speed`` is 1): Redis expiries are real time.
    coalesce
        Real seconds by which a finished attempt may delay the loop's next
        look at the engine while other attempts are still running: the loop
        then wakes once for every 4 finished attempts, or after ``coalesce``,
        instead of once per attempt (each look costs the same engine calls
        however few leases it takes). 0: wake at every finished attempt.
        Submits, :meth:`wake`, :meth:`stop` and the last running attempt
        still wake it at once.

    Clocks: the engine's ``lease_timeout`` is in clock time; the sender's
    timeouts are in real seconds. A clock with a ``speed`` (a
    :class:`VirtualClock`) compresses the lease: at speed 120 a 10 min lease
    lasts 5 real seconds. When the sender has an ``attempt_timeout`` (real
    seconds, :class:`~mailretry.smtp.SmtpSender`), :meth:`run` raises
    :class:`~mailretry.errors.InvalidInputError` at the first lease whose
    real lifetime is shorter, instead of letting leases expire under attempts
    that are still running.
    """

    def __init__(
        self,
        engine: EngineLike,
        sender: Sender[MsgT],
        messages: Mapping[int, MsgT] | Callable[[int], MsgT],
        *,
        clock: Clock | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_report: Callable[[Lease, str | Reply, Decision], None] | None = None,
        on_error: Callable[[Lease, BaseException], None] | None = None,
        max_in_flight: int = 100,
        batch: int = 64,
        idle_step: float = 1.0,
        route: Callable[[str], Awaitable[str]] | None = None,
        observer: DriverObserver | None = None,
        shared: SharedLimits | None = None,
        coalesce: float = 0.001,
    ) -> None:
        if max_in_flight < 1 or batch < 1:
            raise ValueError("max_in_flight and batch must be >= 1")
        if idle_step <= 0:
            raise ValueError("idle_step must be > 0")
        self._engine = engine
        self._sender = sender
        if isinstance(messages, Mapping):
            self._get_message: Callable[[int], MsgT] = messages.__getitem__
        else:
            self._get_message = messages
        self._clock: Clock = clock or SystemClock()
        self._on_event = on_event
        self._on_report = on_report
        self._on_error = on_error or _log_error
        self._max_in_flight = max_in_flight
        self._batch = batch
        self._idle_step = idle_step
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._drain_timeout: float | None = None
        self._running = False
        self._idle = False
        self._last_now = float("-inf")
        self._route = route
        self._observer = observer
        self._domains: dict[int, str] = {}  # msg_id -> domain, when rolled up
        self._timeouts_checked = False
        self._shared = shared
        self.stats = DriverStats()
        # The clock's kind, checked once: isinstance() against a runtime
        # Protocol walks its members, and _hold/_let_go run twice per attempt.
        self._busy_clock = self._clock if isinstance(self._clock, BusyTracking) else None
        self._coalesce = coalesce
        self._finished = 0  # attempts finished since the loop was last woken
        self._coalesce_timer: asyncio.TimerHandle | None = None
        # An engine with poll() (mailretry.Engine) does a loop turn's
        # take_ready, drain_events and next_wakeup in one call.
        self._poll: _Poll | None = getattr(engine, "poll", None)

    # -- public API ------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return len(self._tasks)

    def now(self) -> float:
        """The clock's time, never earlier than a time already given to the engine."""
        t = self._clock.now()
        if t < self._last_now:
            t = self._last_now
        self._last_now = t
        return t

    def submit(
        self,
        msg_id: int,
        destination: str,
        *,
        source: str | None = None,
        not_before: float | None = None,
    ) -> None:
        """Submit a message to the engine at the clock's time and wake the loop."""
        self._engine.submit(msg_id, destination, self.now(), source=source, not_before=not_before)
        self.wake()

    async def submit_to(
        self,
        msg_id: int,
        domain: str,
        *,
        source: str | None = None,
        not_before: float | None = None,
    ) -> str:
        """Submit a message for ``domain`` under the destination that ``route``
        gives (the domain when there is no ``route``); returns it. Events for
        the message then carry ``domain`` too."""
        destination = domain if self._route is None else await self._route(domain)
        self.submit(msg_id, destination, source=source, not_before=not_before)
        if destination != domain:
            self._domains[msg_id] = domain
        return destination

    def domain_of(self, msg_id: int) -> str | None:
        """The domain a message was submitted for with :meth:`submit_to`, while
        it is pending and rolled up under another destination."""
        return self._domains.get(msg_id)

    def wake(self) -> None:
        """Make the loop look at the engine again (after submitting to it directly)."""
        if self._wake is None:
            return
        self._finished = 0
        if self._coalesce_timer is not None:
            self._coalesce_timer.cancel()
            self._coalesce_timer = None
        if self._idle:
            # Hold the clock for the loop from now on, so that a virtual clock
            # cannot jump before the loop has looked.
            self._idle = False
            self._hold()
        self._wake.set()

    def stop(self, *, drain_timeout: float | None = None) -> None:
        """Ask :meth:`run` to return: no new attempts start; attempts in flight
        get ``drain_timeout`` real seconds (None: as long as they take) to finish
        and be reported. Attempts still running then are cancelled and stay
        unreported: the engine returns those messages when their leases time out.
        """
        self._stopping = True
        self._drain_timeout = drain_timeout
        self.wake()

    async def run(self, *, until_idle: bool = False) -> DriverStats:
        """Deliver until :meth:`stop` is called (or, with ``until_idle``, until the
        engine has nothing left to do and nothing is in flight)."""
        if self._running:
            raise StateError("Driver.run is already running")
        if self._shared is not None and float(getattr(self._clock, "speed", 1.0)) != 1.0:
            raise InvalidInputError(
                "a Driver with shared limits needs a clock at real speed: Redis expiries and "
                "rates are wall-clock time"
            )
        self._running = True
        self._stopping = False
        self._wake = asyncio.Event()
        self._hold()
        if self._shared is not None:
            await self._shared.start(self._emit)
        try:
            while not self._stopping:
                now = self.now()
                limit = self._limit()
                if self._poll is not None:
                    leases, events, wakeup = self._poll(now, max(limit, 0))
                    took = self._start(leases, now)
                    self._handle_events(events)
                else:
                    took = self._dispatch(now, limit)
                    self._drain_events()
                if took and took == limit:
                    await asyncio.sleep(0)  # more may be ready; let the attempts start
                    continue
                if self._poll is None:
                    wakeup = self._engine.next_wakeup()
                if until_idle and wakeup is None and not self._tasks:
                    break
                await self._wait(self._delay(now, wakeup))
            await self._finish_in_flight()
        finally:
            await self._cancel_in_flight()
            self._drain_events()
            if self._shared is not None:
                await self._shared.stop()
            self._let_go()
            self._running = False
            self._wake = None
        return self.stats

    # -- internals -------------------------------------------------------------
    def _limit(self) -> int:
        return min(self._batch, self._max_in_flight - len(self._tasks))

    def _dispatch(self, now: float, limit: int) -> int:
        if limit <= 0:
            self._engine.advance(now)  # expiries and lease timeouts still happen
            return 0
        return self._start(self._engine.take_ready(now, limit), now)

    def _start(self, leases: list[Lease], now: float) -> int:
        """A task per lease."""
        if leases and not self._timeouts_checked:
            self._timeouts_checked = True
            self._check_timeouts(leases[0], now)
        for lease in leases:
            self._hold()  # released when the attempt's task is done, however it ends
            task = asyncio.create_task(self._attempt(lease), name=f"mailretry-{lease.msg_id}")
            task.add_done_callback(self._attempt_done)
            self._tasks.add(task)
        self.stats.leases += len(leases)
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(self._tasks))
        return len(leases)

    def _check_timeouts(self, lease: Lease, now: float) -> None:
        attempt = getattr(self._sender, "attempt_timeout", None)
        speed = float(getattr(self._clock, "speed", 1.0))
        if attempt is None or speed <= 0:
            return
        lease_real = (lease.deadline - now) / speed
        if lease_real <= float(attempt):
            raise InvalidInputError(
                f"the engine's lease_timeout ({lease.deadline - now:g} s of clock time) lasts "
                f"{lease_real:g} real seconds at clock speed {speed:g}, not more than the "
                f"sender's attempt_timeout ({float(attempt):g} real seconds): attempts would "
                "outlive their leases and be sent twice. Raise lease_timeout, lower the "
                "clock's speed or the sender's timeouts."
            )

    def _delay(self, now: float, wakeup: float | None) -> float | None:
        if len(self._tasks) >= self._max_in_flight or wakeup is None:
            return None  # a finishing attempt or a submit wakes us
        if wakeup > now:
            return wakeup - now
        # Due now, yet nothing was handed out: within the engine's timer step.
        return self._idle_step

    def _hold(self) -> None:
        if self._busy_clock is not None:
            self._busy_clock.acquire()

    def _let_go(self) -> None:
        if self._busy_clock is not None:
            self._busy_clock.release()

    async def _wait(self, delay: float | None) -> None:
        """Wait for :meth:`wake` (new work, a finished attempt, the timer)."""
        assert self._wake is not None
        timer = None
        if delay is not None and not self._wake.is_set():
            timer = asyncio.ensure_future(self._timer(delay))
            await asyncio.sleep(0)  # the timer registers its deadline with the clock
        try:
            if self._wake.is_set():
                return
            self._idle = True  # wake() takes the clock back for us
            self._let_go()
            await self._wake.wait()
        finally:
            if self._idle:  # cancelled while idle
                self._idle = False
                self._hold()
            if timer is not None:
                timer.cancel()
                await asyncio.gather(timer, return_exceptions=True)
            self._wake.clear()

    async def _timer(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self.wake()

    async def _attempt(self, lease: Lease) -> None:
        outcome: str | Reply
        started = time.perf_counter() if self._observer is not None else None  # latency metric
        admission: Any = None
        try:
            message = self._get_message(lease.msg_id)
            if self._shared is not None:
                admission = await self._shared.admit(lease, self._give_up_at(lease))
            if admission is not None and not admission.admitted:
                if admission.reply is None:
                    # Not admitted before the lease's deadline: left to time
                    # out, the engine reschedules the message.
                    self.stats.gate_timeouts += 1
                    return
                # Another node learned that the destination is suspended: its
                # reply, reported without a connection.
                self.stats.cluster_applied += 1
                result: object = admission.reply
            else:
                try:
                    result = await self._sender.send(lease, message)
                finally:
                    if admission is not None:
                        await self._shared_release(admission)
            if not isinstance(result, str | Reply):
                raise BadSenderResult(result)
            outcome = result
        except Exception as exc:
            outcome = self._sender_failed(lease, exc)
        self._report_one(lease, outcome, started)

    def _report_one(self, lease: Lease, outcome: str | Reply, started: float | None) -> None:
        decision: Decision | None = None
        try:
            # The lease itself: a report that arrives after the lease timed out
            # is refused as stale (StaleLeaseError) instead of landing on the
            # message's next attempt.
            try:
                decision = self._engine.report(lease, self.now(), outcome)
            except InvalidInputError as exc:
                if isinstance(outcome, Reply):
                    raise
                # The text is not an SMTP reply ("", "garbage", "999 x"); the
                # engine refused it and changed nothing.
                outcome = self._sender_failed(lease, BadSenderResult(outcome, exc))
                decision = self._engine.report(lease, self.now(), outcome)
        except (StateError, UnknownIdError) as exc:
            # The lease expired before the attempt finished: the engine has
            # already returned the message to its schedule.
            self.stats.late_reports += 1
            self._on_error(lease, exc)
            return
        finally:
            if self._observer is not None and started is not None:
                self._observer.on_attempt(lease, outcome, decision, time.perf_counter() - started)
        self.stats.reports += 1
        if self._on_report is not None:
            self._on_report(lease, outcome, decision)

    def _give_up_at(self, lease: Lease) -> float:
        """When (``time.monotonic()``) the shared gate must have admitted a lease
        so that the attempt still ends before the lease does."""
        attempt = float(getattr(self._sender, "attempt_timeout", 0.0) or 0.0)
        return time.monotonic() + (lease.deadline - self.now()) - attempt

    async def _shared_release(self, admission: Any) -> None:
        assert self._shared is not None
        await asyncio.shield(self._shared.release(admission))

    def _emit(self, event: dict[str, Any]) -> None:
        """An event from the shared layer: to the observer and ``on_event``."""
        self.stats.events += 1
        if self._observer is not None:
            self._observer.on_event(event)
        if self._on_event is not None:
            self._on_event(event)

    def _sender_failed(self, lease: Lease, exc: Exception) -> Reply:
        """Count and surface a failed attempt; the transport failure to report."""
        self.stats.send_errors += 1
        self._on_error(lease, exc)
        return transport_reply("connection_dropped", f"sender failed: {exc!r}"[:500])

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._coalesce > 0 and self._tasks and self._wake is not None and self._idle:
            # Other attempts are running (and hold the clock): wake the loop
            # once for several finished attempts, within `coalesce` seconds.
            self._finished += 1
            if self._finished < _COALESCE_ATTEMPTS:
                if self._coalesce_timer is None:
                    self._coalesce_timer = asyncio.get_running_loop().call_later(
                        self._coalesce, self._coalesced_wake
                    )
                self._let_go()
                return
        self.wake()  # before letting go, so that the clock stays held
        self._let_go()

    def _coalesced_wake(self) -> None:
        self._coalesce_timer = None
        if self._finished:
            self.wake()

    async def _finish_in_flight(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._drain_timeout)

    async def _cancel_in_flight(self) -> None:
        pending = list(self._tasks)
        self.stats.abandoned += len(pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _drain_events(self) -> None:
        self._handle_events(self._engine.drain_events())

    def _handle_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.stats.events += len(events)
        if self._domains:
            for event in events:
                msg_id = event.get("msg_id")
                if msg_id is None or msg_id not in self._domains:
                    continue
                event["domain"] = self._domains[msg_id]
                if event["kind"] in _FINAL_EVENTS:
                    del self._domains[msg_id]
        for event in events:
            if self._shared is not None:
                self._shared.observe(event)
            if self._observer is not None:
                self._observer.on_event(event)
            if self._on_event is not None:
                self._on_event(event)


# Finished attempts that wake the loop at once when `coalesce` is on.
_COALESCE_ATTEMPTS = 4

_FINAL_EVENTS = frozenset({"delivered", "bounced", "expired"})


class BadSenderResult(InvalidInputError):
    """A sender returned something that is not a reply to report."""

    def __init__(self, result: object, cause: BaseException | None = None) -> None:
        why = f": {cause}" if cause is not None else ""
        super().__init__(f"sender returned {result!r}, not a reply text or Reply{why}")
        self.result = result


def _log_error(lease: Lease, exc: BaseException) -> None:
    log.warning(
        "attempt %d of message %d to %s failed in the driver: %r",
        lease.attempt,
        lease.msg_id,
        lease.destination,
        exc,
    )
