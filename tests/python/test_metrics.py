"""mailretry.metrics: what a Prometheus scrape shows after a driver run."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

import mailretry
from mailretry.aio import Driver, VirtualClock
from mailretry.metrics import Metrics, reply_class

T0 = 1_700_000_000.0
REPLIES = {
    1: ["451 4.3.0 try later", "250 2.0.0 ok"],
    2: ["550 5.1.1 no such user"],
    3: ["421 4.7.0 too many connections", "250 2.0.0 ok"],
}


class Sender:
    async def send(self, lease: mailretry.Lease, message: str) -> str | mailretry.Reply:
        await asyncio.sleep(0)
        if lease.msg_id == 4 and lease.attempt == 1:
            return mailretry.transport_reply("connection_refused")
        script = REPLIES.get(lease.msg_id)
        return script.pop(0) if script else "250 2.0.0 ok"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scrape_after_a_run() -> None:
    engine = mailretry.Engine({"destination_defaults": {"initial_concurrency": 3}}, seed=1)
    metrics = Metrics(engine)

    async def go() -> None:
        driver = Driver(engine, Sender(), str, clock=VirtualClock(T0, speed=0), observer=metrics)
        for i in range(1, 6):
            driver.submit(i, "example.com")
        driver.submit(6, "other.example")
        await driver.run(until_idle=True)

    asyncio.run(go())
    server = metrics.serve(0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    got = samples(text)
    d = (("destination", "example.com"), ("source", ""))
    assert got[("mailretry_messages_delivered_total", ())] == 5
    assert got[("mailretry_messages_bounced_total", ())] == 1
    assert got[("mailretry_messages_expired_total", ())] == 0
    assert got[("mailretry_messages", (("state", "pending"),))] == 0
    assert got[("mailretry_messages", (("state", "leased"),))] == 0
    assert got[("mailretry_attempts_total", ())] == 9
    assert got[("mailretry_destinations", (("state", "known"),))] == 2
    assert got[("mailretry_destination_concurrency_limit", d)] >= 1
    assert ("mailretry_destination_suspended", d) in got
    assert ("mailretry_destination_rate_limit_per_second", d) in got

    def replies(cls: str, category: str) -> float:
        key = tuple(sorted({**dict(d), "class": cls, "category": category}.items()))
        return got.get(("mailretry_replies_total", key), 0.0)

    assert replies("4xx", "too_many_connections") == 1
    assert replies("5xx", "mailbox_unknown") == 1
    transport = [
        v
        for (n, labels), v in got.items()
        if n == "mailretry_replies_total" and ("class", "transport") in labels
    ]
    assert sum(transport) == 1
    assert sum(v for (n, _), v in got.items() if n == "mailretry_replies_total") == 9
    assert got[("mailretry_attempt_duration_seconds_count", (("class", "2xx"),))] == 5
    assert got[("mailretry_events_total", (("kind", "delivered"),))] == 5
    assert "# TYPE mailretry_attempt_duration_seconds histogram" in text


def test_reply_class() -> None:
    assert reply_class("250 ok") == "2xx"
    assert reply_class("451 4.3.0 x") == "4xx"
    assert reply_class(mailretry.transport_reply("dns_failure")) == "transport"
    assert reply_class("garbage") == "other"


def test_per_destination_series_are_bounded() -> None:
    engine = mailretry.Engine()
    metrics = Metrics(engine, max_destinations=2)
    for i in range(5):
        engine.submit(i, f"d{i}.example", T0)
        metrics.on_event({"kind": "submitted", "destination": f"d{i}.example", "source": ""})
    text = _render(metrics)
    series: Any = [
        line for line in text.splitlines() if line.startswith("mailretry_destination_in_flight{")
    ]
    assert len(series) == 2


def _render(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
