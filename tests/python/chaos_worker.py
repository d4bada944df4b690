"""Sending process for the chaos test (run as a script; not a test module).

    python chaos_worker.py STATE_DIR PORTS_JSON COUNT ACK_LOG

Opens (or recovers) a durable engine (``Engine.open_durable``) in STATE_DIR,
submits COUNT messages when the directory is new, and delivers them through
the asyncio driver and ``SmtpSender`` to the loopback ports in PORTS_JSON
({destination: port}) until the engine is idle. Every report the engine
acknowledged (the call returned) is appended to ACK_LOG as one line
``msg_id attempt action`` with a single ``write()``, so a ``kill -9`` can cut
off at most the line of a call that was still running. At the end it appends
``done <stats json>``. The test kills it at random points and starts it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mailretry import Decision, Engine, Lease, Reply
from mailretry.aio import Driver, VirtualClock
from numbered_mail import NumberedMail, loopback_sender

T0 = 1_700_000_000.0
DESTINATIONS = ["a.test", "b.test", "c.test"]
CONFIG: dict[str, Any] = {
    "lease_timeout": "10m",
    "destination_defaults": {"initial_concurrency": 4, "max_concurrency": 4, "rate": "unlimited"},
}


MAIL = NumberedMail(DESTINATIONS, unknown_every=23, subject="chaos")
destination_of = MAIL.destination_of
recipient_of = MAIL.recipient_of
message_of = MAIL.message_of


async def main(state: Path, ports: dict[str, int], count: int, ack_log: Path) -> None:
    engine = Engine.open_durable(state, CONFIG, seed=7, fsync="never")
    info = engine.journal_info()
    assert info is not None
    if info["created"]:
        ids = list(range(1, count + 1))
        engine.submit_many(ids, [destination_of(i) for i in ids], T0)
    # The engine's clock never goes back: start where it stands.
    start = engine.next_wakeup()
    clock = VirtualClock(max(T0, start if start is not None else T0), speed=0.0, skip_idle=True)
    log_fd = os.open(ack_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def acknowledged(lease: Lease, outcome: str | Reply, decision: Decision) -> None:
        os.write(log_fd, f"{lease.msg_id} {lease.attempt} {decision.action}\n".encode())

    async with loopback_sender(engine, ports) as sender:
        driver = Driver(
            engine, sender, message_of, clock=clock, max_in_flight=12, on_report=acknowledged
        )
        await driver.run(until_idle=True)
    engine.check_invariants()
    os.write(log_fd, f"done {json.dumps(engine.stats())}\n".encode())
    os.close(log_fd)


if __name__ == "__main__":
    state_dir, ports_json, n, log = sys.argv[1:5]
    asyncio.run(main(Path(state_dir), json.loads(ports_json), int(n), Path(log)))
