"""One sending node for tests/python/test_cluster.py, in its own process.

``python cluster_worker.py SPEC_JSON``. The spec names the mode:

* ``"deliver"``: an engine, an :class:`~mailretry.smtp.SmtpSender` and a
  :class:`~mailretry.aio.Driver` (with :class:`~mailretry.cluster.RedisShared`
  when ``redis_url`` is set) deliver ``count`` messages from ``first`` to
  ``destination`` at ``127.0.0.1:port``. Prints ``ready``, waits for a line on
  stdin (so that all nodes start together), delivers until the engine is idle
  and prints one JSON line with its counters.
* ``"hold"``: takes ``count`` cluster-wide connection slots for leases of a
  real engine, prints ``held`` and keeps them (renewing) until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import mailretry
from mailretry.aio import Driver
from mailretry.cluster import ClusterConfig, RedisShared
from mailretry.dns import Endpoint
from mailretry.smtp import OutgoingMessage, SmtpSender, StaticResolver


def message(msg_id: int, destination: str) -> OutgoingMessage:
    content = (
        f"From: sender@mailretry.test\r\nTo: user{msg_id}@{destination}\r\n"
        f"Subject: cluster {msg_id}\r\nX-Mailretry-Id: {msg_id}\r\n\r\nhello {msg_id}\r\n"
    )
    return OutgoingMessage("sender@mailretry.test", f"user{msg_id}@{destination}", content)


async def deliver(spec: dict[str, Any]) -> dict[str, Any]:
    destination = spec["destination"]
    engine = mailretry.Engine(spec["engine"], seed=spec["seed"])
    shared = None
    if spec.get("redis_url"):
        config = ClusterConfig.from_mapping({"url": spec["redis_url"], **spec["cluster"]})
        shared = RedisShared(config, node_id=spec["node"])
    sender = SmtpSender(
        engine,
        StaticResolver({destination: Endpoint("127.0.0.1", spec["port"])}),
        local_hostname=f"{spec['node']}.mailretry.test",
        connect_timeout=5,
        command_timeout=5,
        data_timeout=5,
        attempt_timeout=10,
        # One transaction per connection: an idle pooled connection would hold
        # a server-side connection without a cluster-wide slot.
        max_messages_per_connection=1,
    )
    ids = range(spec["first"], spec["first"] + spec["count"])
    messages = {i: message(i, destination) for i in ids}
    replies: Counter[str] = Counter()

    def on_report(lease: mailretry.Lease, outcome: object, decision: object) -> None:
        replies[str(outcome)[:9]] += 1

    events: Counter[str] = Counter()
    driver = Driver(
        engine,
        sender,
        messages,
        on_report=on_report,
        on_event=lambda e: events.update([e["kind"]]),
        max_in_flight=20,
        idle_step=0.01,
        shared=shared,
    )
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for i in ids:
        driver.submit(i, destination)
    running = asyncio.create_task(driver.run(until_idle=True))
    done, _ = await asyncio.wait({running}, timeout=spec.get("timeout", 40))
    timed_out = not done
    if timed_out:
        driver.stop(drain_timeout=5)
    await running
    await sender.aclose()
    if shared is not None:
        await shared.aclose()
    return {
        "node": spec["node"],
        "timed_out": timed_out,
        "stats": engine.stats(),
        "destination": {
            k: v for k, v in engine.destination(destination).items() if not isinstance(v, dict)
        },
        "replies": dict(replies),
        "events": dict(events),
        "cluster": None if shared is None else vars(shared.stats),
        "driver": vars(driver.stats),
    }


async def hold(spec: dict[str, Any]) -> None:
    engine = mailretry.Engine(spec["engine"], seed=1)
    for i in range(spec["count"]):
        engine.submit(i + 1, spec["destination"], time.time())
    leases = engine.take_ready(time.time(), spec["count"])
    config = ClusterConfig.from_mapping({"url": spec["redis_url"], **spec["cluster"]})
    shared = RedisShared(config, node_id=spec["node"])
    await shared.start()
    for lease in leases:
        admission = await shared.admit(lease, time.monotonic() + 5)
        assert admission.admitted
    print("held", flush=True)
    await asyncio.Event().wait()  # until killed


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["mode"] == "hold":
        asyncio.run(hold(spec))
    else:
        print(json.dumps(asyncio.run(deliver(spec))), flush=True)


if __name__ == "__main__":
    main()
