"""Sending process for the crash test (run as a script; not a test module).

    python crash_worker.py STATE_DIR PORTS_JSON COUNT RESULT_JSON

Opens (or recovers) a durable engine (Engine.open_durable) in STATE_DIR, submits COUNT messages when
the state is new, and delivers them through SmtpSender to the loopback ports in
PORTS_JSON ({destination: port}) until the engine is idle. Writes what it saw
to RESULT_JSON at the end. The test kills it with SIGKILL half-way and runs it
again on the same directory.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mailretry import Engine
from mailretry.aio import Driver, VirtualClock
from numbered_mail import NumberedMail, loopback_sender

T0 = 1_700_000_000.0
# A restarted process's clock has moved on; the first run never gets past T0
# (it is killed while its attempts hold the virtual clock).
RESTART_AT = T0 + 3600.0
DESTINATIONS = ["a.test", "b.test", "c.test", "d.test"]
CONFIG: dict[str, Any] = {
    "lease_timeout": "15m",
    "destination_defaults": {"initial_concurrency": 4, "max_concurrency": 4},
}


MAIL = NumberedMail(DESTINATIONS, unknown_every=17, subject="crash test")
destination_of = MAIL.destination_of
recipient_of = MAIL.recipient_of
message_of = MAIL.message_of


async def main(state: Path, ports: dict[str, int], count: int, result: Path) -> None:
    engine = Engine.open_durable(
        state, CONFIG, seed=7, fsync="group", group_interval=0.005, compact_after_records=300
    )
    info = engine.journal_info()
    assert info is not None
    recovery = {
        "created": info["created"],
        "records_replayed": info["records_replayed"],
        "generation": info["generation"],
        "leased_at_recovery": engine.stats()["leased"],
    }
    if info["created"]:
        ids = list(range(1, count + 1))
        engine.submit_many(ids, [destination_of(i) for i in ids], T0)
    clock = VirtualClock(T0 if info["created"] else RESTART_AT, speed=0.0, skip_idle=True)
    async with loopback_sender(engine, ports) as sender:
        driver = Driver(engine, sender, message_of, clock=clock, max_in_flight=32)
        stats = await driver.run(until_idle=True)
    final = engine.stats()
    engine.check_invariants()
    engine.sync()
    result.write_text(
        json.dumps(
            {
                "recovery": recovery,
                "stats": final,
                "driver": stats.__dict__,
            }
        )
    )


if __name__ == "__main__":
    state_dir, ports_json, n, out = sys.argv[1:5]
    asyncio.run(main(Path(state_dir), json.loads(ports_json), int(n), Path(out)))
