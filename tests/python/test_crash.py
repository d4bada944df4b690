"""kill -9 a sending process mid-run, restart it from disk, finish the run.

The guarantee under test (Engine.open_durable under the asyncio driver and the
SMTP sender): no message is lost, and the only
messages delivered twice are attempts that were in flight at the crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("aiosmtplib")

import crash_worker
from smtp_server import Limits, SmtpTestServer, threaded_server

HERE = Path(__file__).resolve().parent
WORKER = HERE / "crash_worker.py"
COUNT = 1000
HOLD_AFTER = 400


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_kill_9_mid_run_loses_nothing_and_repeats_only_in_flight(tmp_path: Path) -> None:
    server = SmtpTestServer()
    for name in crash_worker.DESTINATIONS:
        server.add_destination(name, Limits(unknown_users=frozenset({"nobody"})))
    state = tmp_path / "state"
    result = tmp_path / "result.json"
    with threaded_server(server):
        ports = json.dumps({d: server.port(d) for d in crash_worker.DESTINATIONS})
        args = [sys.executable, str(WORKER), str(state), ports, str(COUNT), str(result)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}

        # Run 1: after HOLD_AFTER messages the server records each further message
        # but never answers its data; kill the sender while several wait.
        server.hold_after(HOLD_AFTER)
        first = subprocess.Popen(args, env=env)
        try:
            wait_for(lambda: server.held >= 8, 120, "the sender to have attempts in flight")
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(30) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        unanswered = server.total_received - HOLD_AFTER  # all were held until the kill
        server.release()
        assert not result.exists()
        received_before_restart = server.total_received

        # Run 2: recover from disk and finish.
        second = subprocess.run(args, env=env, timeout=180, check=False)
        assert second.returncode == 0
        out = json.loads(result.read_text())

    recovery, stats = out["recovery"], out["stats"]
    assert not recovery["created"]
    assert recovery["records_replayed"] > 0 or recovery["generation"] > 1
    in_flight_at_crash = recovery["leased_at_recovery"]
    assert in_flight_at_crash >= unanswered >= 8

    ids = range(1, COUNT + 1)
    bad = {i for i in ids if i % 17 == 0}
    good = set(ids) - bad
    # Every message ended exactly once in the engine.
    assert stats["submitted"] == COUNT
    assert stats["pending"] == 0
    assert stats["delivered"] == len(good)
    assert stats["bounced"] == len(bad)
    assert stats["expired"] == 0
    # Nothing lost: the server has every deliverable message, and no other.
    received = server.received_ids()
    assert set(received) == good
    # At least once: repeats only among the attempts in flight at the crash,
    # and every unanswered message was indeed sent again.
    duplicates = sum(n - 1 for n in received.values())
    assert unanswered <= duplicates <= in_flight_at_crash
    assert server.total_received > received_before_restart
