"""End to end: the asyncio driver and the aiosmtplib sender against a loopback
aiosmtpd server that enforces limits, in virtual time (hours of retries in
seconds: the clock jumps to the next deadline whenever nothing is in flight)."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("aiosmtplib")

import mailretry
from mailretry.aio import Driver, VirtualClock
from mailretry.smtp import Endpoint, OutgoingMessage, SmtpSender, StaticResolver
from smtp_server import Limits, SmtpTestServer

T0 = 1_700_000_000.0
MIN = 60.0
HOUR = 3600.0

CAP = 3  # capped.test: connections per client
RATE = (20, MIN)  # throttled.test: messages per minute
LIFT_AT = T0 + 75 * MIN  # throttled.test's ceiling is lifted then
DEFER_REPLY = "451 4.7.1 Service unavailable; deferring all mail from your network"

# destination -> (messages, limits)
PLAN: dict[str, tuple[int, Limits]] = {
    "ok.test": (300, Limits(unknown_users=frozenset({"nobody"}))),
    "capped.test": (300, Limits(max_connections=CAP)),
    "throttled.test": (1000, Limits(rate=RATE)),
    "grey.test": (300, Limits(greylist_for=2 * MIN)),
    "defer.test": (100, Limits(defer_all=DEFER_REPLY)),
}

CONFIG: dict[str, Any] = {
    "lease_timeout": "1h",
    "overrides": [
        # Give up on the deferring destination after 8 hours instead of days.
        {"name": "defer-lifetime", "destination": "defer.test", "policy": {"lifetime": "8h"}},
    ],
    "reactions": [
        {
            "name": "connection-cap",
            "code": "421",
            "enhanced": "4.7.0",
            "text": "too many connections",
            "set_concurrency": CAP - 1,
            "duration": "12h",
        }
    ],
}


@dataclass
class Run:
    events: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[tuple[int, str, str | None, float]] = field(default_factory=list)
    open_peaks: dict[str, list[tuple[float, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def build_messages() -> tuple[dict[int, OutgoingMessage], dict[int, str], set[int]]:
    messages: dict[int, OutgoingMessage] = {}
    destinations: dict[int, str] = {}
    unknown: set[int] = set()
    msg_id = 0
    for dest, (count, _) in PLAN.items():
        for i in range(count):
            msg_id += 1
            local = f"user{i}"
            if dest == "ok.test" and i % 20 == 7:
                local = "nobody"
                unknown.add(msg_id)
            content = (
                f"From: sender@mailretry.test\r\nTo: {local}@{dest}\r\n"
                f"Subject: e2e {msg_id}\r\nX-Mailretry-Id: {msg_id}\r\n\r\nhello {msg_id}\r\n"
            )
            messages[msg_id] = OutgoingMessage("sender@mailretry.test", f"{local}@{dest}", content)
            destinations[msg_id] = dest
    return messages, destinations, unknown


async def deliver_everything() -> tuple[Run, SmtpTestServer, mailretry.Engine, SmtpSender]:
    clock = VirtualClock(T0, speed=0.0, skip_idle=True)
    server = SmtpTestServer(clock=clock.now)
    for dest, (_, limits) in PLAN.items():
        server.add_destination(dest, limits)
    await server.start()
    engine = mailretry.Engine(CONFIG, seed=42)
    resolver = StaticResolver({d: Endpoint("127.0.0.1", server.port(d)) for d in PLAN})
    messages, destinations, _ = build_messages()
    run = Run()
    sender = SmtpSender(
        engine,
        resolver,
        local_hostname="client.mailretry.test",
        connect_timeout=10,
        command_timeout=30,
        data_timeout=30,
    )

    def on_report(lease: mailretry.Lease, outcome: object, d: mailretry.Decision) -> None:
        run.decisions.append((lease.msg_id, d.action, d.category, clock.now()))

    driver = Driver(
        engine,
        sender,
        messages,
        clock=clock,
        on_event=run.events.append,
        on_report=on_report,
        max_in_flight=50,
    )
    ids = sorted(messages)
    engine.submit_many(ids, [destinations[i] for i in ids], clock.now())

    async def lift_later() -> None:
        await clock.sleep(LIFT_AT - clock.now())
        server.lift("throttled.test")
        driver.wake()

    with clock.busy():  # time stands still until the driver holds the clock itself
        delivering = asyncio.create_task(driver.run(until_idle=True))
        lifter = asyncio.create_task(lift_later())
        await asyncio.sleep(0)
    try:
        await asyncio.wait_for(delivering, timeout=120)
    finally:
        await sender.aclose()
        await server.stop()
        await lifter
    return run, server, engine, sender


@pytest.fixture(scope="module")
def outcome() -> tuple[Run, SmtpTestServer, mailretry.Engine, SmtpSender]:
    return asyncio.run(deliver_everything())


def test_every_message_ends_exactly_once(outcome: Any) -> None:
    run, server, engine, _ = outcome
    _, destinations, unknown = build_messages()
    total = len(destinations)
    assert total == 2000
    stats = engine.stats()
    assert stats["submitted"] == total and stats["pending"] == 0
    assert stats["delivered"] + stats["bounced"] + stats["expired"] == total
    engine.check_invariants()

    final: dict[int, list[str]] = defaultdict(list)
    for ev in run.events:
        if ev["kind"] in ("delivered", "bounced", "expired"):
            final[ev["msg_id"]].append(ev["kind"])
    assert set(final) == set(destinations)
    assert all(len(kinds) == 1 for kinds in final.values())
    outcome_of = {i: kinds[0] for i, kinds in final.items()}

    # The server holds each delivered message exactly once and nothing else.
    received = server.received_ids()
    delivered = {i for i, k in outcome_of.items() if k == "delivered"}
    assert set(received) == delivered
    assert max(received.values()) == 1

    bounced = {i for i, k in outcome_of.items() if k == "bounced"}
    assert bounced == unknown
    expired = {i for i, k in outcome_of.items() if k == "expired"}
    assert expired == {i for i, d in destinations.items() if d == "defer.test"}
    assert delivered == set(destinations) - unknown - expired


def test_greylisted_messages_are_delivered_on_retry(outcome: Any) -> None:
    run, server, _, _ = outcome
    log = server.log("grey.test")
    assert log.replies["450 4.2.0"] == PLAN["grey.test"][0]  # each deferred once
    assert len(log.received) == PLAN["grey.test"][0]
    categories = Counter(cat for _, action, cat, _ in run.decisions if action == "retry")
    assert categories["greylisting"] >= PLAN["grey.test"][0]


def test_connection_cap_is_respected_after_adapting(outcome: Any) -> None:
    run, server, _, _ = outcome
    log = server.log("capped.test")
    count = PLAN["capped.test"][0]
    # The driver starts with the engine's initial 5 connections; the server
    # refuses those beyond its cap with 421 4.7.0...
    assert log.rejected_connections >= 1
    throttled = [
        e
        for e in run.events
        if e["kind"] == "destination_throttled" and e["destination"] == "capped.test"
    ]
    assert throttled and all(e["concurrency_limit"] <= CAP for e in throttled)
    # ...and after the last refusal the driver never again had more than CAP
    # connections open to it, while it delivered nearly everything.
    last_refusal = max(
        i for i, (kind, n) in enumerate(log.timeline) if kind == "connect" and n > CAP
    )
    after = log.timeline[last_refusal + 1 :]
    assert max(n for kind, n in after if kind == "connect") <= CAP
    assert sum(1 for kind, _ in after if kind == "accept") >= 0.95 * count
    assert len(log.received) == count
    # Connections were reused, not opened per message.
    assert log.sessions < count / 20


def test_throughput_ramps_up_after_limits_are_lifted(outcome: Any) -> None:
    _, server, _, _ = outcome
    log = server.log("throttled.test")
    times = sorted(t for t, _ in log.received)
    assert len(times) == PLAN["throttled.test"][0]
    refusals = [t for t, key in log.reply_times if key.startswith("421 4.7.2")]
    # The engine kept pushing against the ceiling until it was lifted...
    assert any(LIFT_AT - 40 * MIN <= t < LIFT_AT for t in refusals)
    assert all(t < LIFT_AT for t in refusals)

    window = 10 * MIN
    ceiling = RATE[0] * window / RATE[1]  # most the server accepts in a window

    def busiest(lo: float, hi: float) -> int:
        """Most messages received in any window starting in [lo, hi)."""
        return max(
            (
                bisect.bisect_left(times, t + window) - i
                for i, t in enumerate(times)
                if lo <= t < hi
            ),
            default=0,
        )

    before = busiest(T0, LIFT_AT - window)
    after = busiest(LIFT_AT, float("inf"))
    assert before <= ceiling
    # ...and once it was lifted, throughput rose beyond what the ceiling allowed.
    assert after > ceiling
    assert after >= 1.5 * before


def test_always_deferring_destination_is_structural(outcome: Any) -> None:
    run, _, engine, _ = outcome
    structural = [
        e
        for e in run.events
        if e["kind"] == "structural_failure" and e["destination"] == "defer.test"
    ]
    assert len(structural) == 1
    assert DEFER_REPLY.split(" ", 2)[2] in " ".join(structural[0]["samples"])
    assert engine.destination("defer.test")["health"] == "structural"
    others = {e["destination"] for e in run.events if e["kind"] == "structural_failure"}
    assert others == {"defer.test"}
