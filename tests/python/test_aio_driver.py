"""mailretry.aio without a network: the driver's loop, shutdown and clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import mailretry
from mailretry.aio import BadSenderResult, Driver, VirtualClock

T0 = 1_700_000_000.0
CONFIG: dict[str, Any] = {
    "lease_timeout": "10m",
    # exact retry times below; the default jitters each delay by ±20 %
    "retry": {"jitter": "none"},
    "destination_defaults": {"initial_concurrency": 3, "max_concurrency": 3},
}


class ScriptedSender:
    """Answers from a script; can block until released; counts concurrency."""

    def __init__(self, replies: dict[int, list[str]] | None = None) -> None:
        self.replies = replies or {}
        self.sent: list[tuple[int, int]] = []  # (msg_id, attempt)
        self.running = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None
        self.started = 0
        self.fail: set[int] = set()

    async def send(self, lease: mailretry.Lease, message: str) -> str:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            if lease.msg_id in self.fail:
                self.fail.discard(lease.msg_id)
                raise RuntimeError("sender bug")
            self.sent.append((lease.msg_id, lease.attempt))
            script = self.replies.get(lease.msg_id)
            return script.pop(0) if script else "250 2.0.0 OK"
        finally:
            self.running -= 1


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_delivers_retries_and_reports_everything() -> None:
    async def go() -> tuple[Any, ...]:
        clock = VirtualClock(T0, speed=0.0)
        engine = mailretry.Engine(CONFIG, seed=1)
        sender = ScriptedSender({1: ["451 4.3.0 try later"], 2: ["550 5.1.1 no such user"]})
        events: list[dict[str, Any]] = []
        driver = Driver(
            engine, sender, lambda i: f"message {i}", clock=clock, on_event=events.append
        )
        for i in range(1, 21):
            driver.submit(i, "example.com")
        stats = await driver.run(until_idle=True)
        return engine, sender, events, stats, clock.now()

    engine, sender, events, stats, end = asyncio.run(go())
    assert engine.stats()["delivered"] == 19 and engine.stats()["bounced"] == 1
    assert (1, 2) in sender.sent  # retried, as attempt 2
    assert end == pytest.approx(T0 + 15 * 60, abs=2)  # slept until the retry, no longer
    assert sender.peak <= 3  # the engine's concurrency for the destination
    assert stats.reports == 21 and stats.leases == 21
    assert [e["msg_id"] for e in events if e["kind"] == "bounced"] == [2]


def test_stop_lets_in_flight_attempts_finish() -> None:
    async def go() -> tuple[Any, ...]:
        engine = mailretry.Engine(CONFIG, seed=1)
        sender = ScriptedSender()
        sender.gate = asyncio.Event()
        driver = Driver(engine, sender, str, clock=VirtualClock(T0, speed=0.0))
        for i in range(1, 11):
            driver.submit(i, "example.com")
        running = asyncio.create_task(driver.run())
        await until(lambda: sender.started == 3, "three attempts in flight")
        driver.stop()  # no new attempts; the three finish
        sender.gate.set()
        stats = await running
        return engine, stats

    engine, stats = asyncio.run(go())
    s = engine.stats()
    assert (s["delivered"], s["leased"], s["pending"]) == (3, 0, 7)
    assert stats.abandoned == 0


def test_abandoned_attempts_return_at_the_lease_deadline() -> None:
    async def go() -> tuple[Any, ...]:
        clock = VirtualClock(T0, speed=0.0)
        engine = mailretry.Engine(CONFIG, seed=1)
        sender = ScriptedSender()
        sender.gate = asyncio.Event()
        driver = Driver(engine, sender, str, clock=clock)
        for i in range(1, 4):
            driver.submit(i, "example.com")
        running = asyncio.create_task(driver.run())
        await until(lambda: sender.started == 3, "three attempts in flight")
        driver.stop(drain_timeout=0)
        first = await running
        leased = engine.stats()["leased"]
        # A new driver picks them up once their leases time out.
        sender.gate.set()
        events: list[dict[str, Any]] = []
        second = Driver(engine, sender, str, clock=clock, on_event=events.append)
        await second.run(until_idle=True)
        return engine, first, leased, events, clock.now()

    engine, first, leased, events, end = asyncio.run(go())
    assert first.abandoned == 3 and leased == 3
    assert sum(1 for e in events if e["kind"] == "lease_expired") == 3
    assert engine.stats()["delivered"] == 3
    assert end >= T0 + 600


def test_sender_exception_is_reported_at_once_as_a_transport_failure() -> None:
    async def go() -> tuple[Any, ...]:
        clock = VirtualClock(T0, speed=0.0)
        engine = mailretry.Engine(CONFIG, seed=1)
        sender = ScriptedSender()
        sender.fail = {5}
        errors: list[tuple[int, str]] = []
        events: list[dict[str, Any]] = []
        driver = Driver(
            engine,
            sender,
            str,
            clock=clock,
            on_event=events.append,
            on_error=lambda lease, exc: errors.append((lease.msg_id, str(exc))),
        )
        for i in range(1, 11):
            driver.submit(i, "example.com")
        stats = await driver.run(until_idle=True)
        return engine, sender, errors, events, stats, clock.now()

    engine, sender, errors, events, stats, end = asyncio.run(go())
    assert errors == [(5, "sender bug")]
    assert stats.send_errors == 1 and stats.reports == 11
    assert engine.stats()["delivered"] == 10
    assert (5, 2) in sender.sent
    assert not [e for e in events if e["kind"] == "lease_expired"]
    deferred = [e for e in events if e["kind"] == "deferred"]
    assert [e["msg_id"] for e in deferred] == [5]
    # A sender exception is reported as a transport failure, and an isolated one
    # is retried quickly (quick_connection_retry, 5 min): not at the 10 min lease
    # timeout, nor at the first backoff step (15 min).
    assert end == pytest.approx(T0 + 5 * 60, abs=2)


class BadResultSender:
    """Returns ``result`` for message 1's first attempt, then 250."""

    def __init__(self, result: object) -> None:
        self.result = result
        self.calls: list[tuple[int, int]] = []

    async def send(self, lease: mailretry.Lease, message: str) -> Any:
        self.calls.append((lease.msg_id, lease.attempt))
        await asyncio.sleep(0)
        if lease.msg_id == 1 and lease.attempt == 1:
            return self.result
        return "250 2.0.0 OK"


@pytest.mark.parametrize("result", [None, 42, "", "garbage", "999 x", b"250 ok"])
def test_bad_sender_results_reach_on_error_and_return_the_message_at_once(
    result: object,
) -> None:
    async def go() -> tuple[Any, ...]:
        clock = VirtualClock(T0, speed=0.0)
        engine = mailretry.Engine(CONFIG, seed=1)
        sender = BadResultSender(result)
        errors: list[tuple[int, BaseException]] = []
        driver = Driver(
            engine,
            sender,
            str,
            clock=clock,
            on_error=lambda lease, exc: errors.append((lease.msg_id, exc)),
        )
        driver.submit(1, "example.com")
        driver.submit(2, "example.com")
        stats = await driver.run(until_idle=True)
        return engine, sender, errors, stats, clock.now()

    engine, sender, errors, stats, end = asyncio.run(go())
    assert [msg_id for msg_id, _ in errors] == [1]
    assert isinstance(errors[0][1], BadSenderResult)
    assert stats.send_errors == 1 and stats.reports == 3
    s = engine.stats()
    assert s["delivered"] == 2 and s["lease_expirations"] == 0
    assert sender.calls == [(1, 1), (2, 1), (1, 2)]
    # Reported as a transport failure: the quick retry (5 min), not the lease timeout.
    assert end == pytest.approx(T0 + 5 * 60, abs=2)


def test_max_in_flight_bounds_all_destinations() -> None:
    async def go() -> ScriptedSender:
        engine = mailretry.Engine(CONFIG, seed=1)
        sender = ScriptedSender()
        driver = Driver(engine, sender, str, clock=VirtualClock(T0, speed=0.0), max_in_flight=4)
        for i in range(60):
            driver.submit(i, f"d{i % 6}.example")
        await driver.run(until_idle=True)
        return sender

    sender = asyncio.run(go())
    assert len(sender.sent) == 60
    assert sender.peak == 4


def test_virtual_clock_jumps_only_when_idle_and_never_past_a_sleeper() -> None:
    async def go() -> list[tuple[str, float]]:
        clock = VirtualClock(T0, speed=0.0)
        seen: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            seen.append((name, clock.now() - T0))

        with clock.busy():
            tasks = [
                asyncio.create_task(sleeper("late", 3600)),
                asyncio.create_task(sleeper("early", 60)),
            ]
            await asyncio.sleep(0)
            assert clock.now() == T0  # held: no jump
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(go()) == [("early", 60.0), ("late", 3600.0)]


def test_clock_going_backwards_is_clamped() -> None:
    class Backwards:
        def __init__(self) -> None:
            self.t = T0 + 100

        def now(self) -> float:
            self.t -= 10
            return self.t

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(0)

    engine = mailretry.Engine(CONFIG)
    driver = Driver(engine, ScriptedSender(), str, clock=Backwards())
    driver.submit(1, "example.com")
    driver.submit(2, "example.com")  # would be an InvalidInputError without clamping
    assert driver.now() == T0 + 90
    assert engine.stats()["submitted"] == 2


class TimedSender(ScriptedSender):
    attempt_timeout = 300.0  # real seconds, like SmtpSender's


def test_lease_shorter_than_the_senders_timeout_in_real_seconds_is_refused() -> None:
    async def go(speed: float) -> Any:
        engine = mailretry.Engine(CONFIG, seed=1)  # lease_timeout 10 min of clock time
        driver = Driver(
            engine, TimedSender(), str, clock=VirtualClock(T0, speed=speed, skip_idle=True)
        )
        driver.submit(1, "example.com")
        return await driver.run(until_idle=True)

    # At speed 120, 10 clock minutes are 5 real seconds: less than 300.
    with pytest.raises(mailretry.InvalidInputError, match="attempt_timeout"):
        asyncio.run(go(120.0))
    assert asyncio.run(go(1.0)).reports == 1  # 600 real seconds > 300
    assert asyncio.run(go(0.0)).reports == 1  # frozen clock: leases never time out


def test_submit_to_routes_and_events_carry_the_domain() -> None:
    async def go() -> tuple[Any, ...]:
        engine = mailretry.Engine(CONFIG, seed=1)
        events: list[dict[str, Any]] = []

        async def route(domain: str) -> str:
            return "(mx1|mx2).provider.example"

        driver = Driver(
            engine,
            ScriptedSender({2: ["550 5.1.1 no"]}),
            str,
            clock=VirtualClock(T0, speed=0.0),
            on_event=events.append,
            route=route,
        )
        sites = [await driver.submit_to(i, f"d{i}.example") for i in (1, 2)]
        await driver.run(until_idle=True)
        return engine, sites, events, driver

    engine, sites, events, driver = asyncio.run(go())
    assert sites == ["(mx1|mx2).provider.example"] * 2
    final = {e["msg_id"]: e for e in events if e["kind"] in ("delivered", "bounced")}
    assert final[1]["domain"] == "d1.example" and final[2]["domain"] == "d2.example"
    assert final[1]["destination"] == "(mx1|mx2).provider.example"
    assert engine.destination("(mx1|mx2).provider.example")["attempts"] == 2
    assert driver.domain_of(1) is None  # forgotten once final


WIDE = {**CONFIG, "destination_defaults": {"initial_concurrency": 20, "max_concurrency": 20}}


def test_reports_of_expired_leases_are_late_and_the_messages_return() -> None:
    async def go() -> tuple[Any, ...]:
        clock = VirtualClock(T0, speed=0.0)
        engine = mailretry.Engine(WIDE, seed=1)
        sender = ScriptedSender()
        sender.gate = asyncio.Event()
        errors: list[BaseException] = []
        driver = Driver(engine, sender, str, clock=clock, on_error=lambda le, e: errors.append(e))
        for i in range(1, 11):
            driver.submit(i, "example.com")
        running = asyncio.create_task(driver.run(until_idle=True))
        await until(lambda: sender.started == 10, "ten attempts in flight")
        with clock.busy():
            clock.advance(11 * 60)  # past the 10 min leases
            driver.wake()
            await until(lambda: engine.stats()["lease_expirations"] == 10, "leases expired")
            sender.gate.set()
        return engine, await running, errors

    engine, stats, errors = asyncio.run(go())
    assert stats.late_reports == 10 and len(errors) == 10
    assert all(isinstance(e, mailretry.errors.StateError) for e in errors)
    assert engine.stats()["delivered"] == 10  # attempted again after their leases expired
    assert stats.leases == 20


class CountingPolls:
    """An Engine that counts the driver's loop turns (``poll`` calls)."""

    def __init__(self, engine: mailretry.Engine) -> None:
        self.engine = engine
        self.polls = 0

    def poll(self, now: float, limit: int) -> Any:
        self.polls += 1
        return self.engine.poll(now, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


class Staggered:
    """Attempt n finishes 8n loop iterations after it started: far enough
    apart for the driver's loop to take a turn between two of them."""

    async def send(self, lease: mailretry.Lease, message: str) -> str:
        for _ in range(8 * lease.msg_id):
            await asyncio.sleep(0)
        return "250 2.0.0 OK"


@pytest.mark.parametrize("coalesce", [0.0, 30.0])
def test_finished_attempts_wake_the_loop_once_per_few(coalesce: float) -> None:
    n = 16

    async def go() -> tuple[CountingPolls, Any]:
        config = dict(CONFIG, destination_defaults={"initial_concurrency": n})
        engine = CountingPolls(mailretry.Engine(config, seed=1))
        driver = Driver(
            engine,  # type: ignore[arg-type]
            Staggered(),
            lambda i: f"message {i}",
            clock=VirtualClock(T0, speed=0.0),
            coalesce=coalesce,
        )
        for i in range(1, n + 1):
            driver.submit(i, "example.com")
        # 30 s of coalescing would time this out if a wake-up were lost.
        stats = await asyncio.wait_for(driver.run(until_idle=True), 20)
        return engine, stats

    engine, stats = asyncio.run(go())
    assert engine.stats()["delivered"] == n and stats.reports == n
    if coalesce:
        # One turn to start them all, one per 4 finished (the last one wakes
        # it at once), and one that finds nothing left.
        assert engine.polls <= 2 + n // 4
    else:
        assert engine.polls >= n  # a turn per finished attempt
