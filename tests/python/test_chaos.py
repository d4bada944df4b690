"""Chaos: a durable engine under the asyncio driver, sending to the aiosmtpd test
server, killed with SIGKILL at seeded random points and restarted each time.

What must hold at the end (issue 10): every message has exactly one final
outcome, no acknowledged call is lost, every recipient got each deliverable
message at least once. Duplicates (attempts in flight at a kill, sent again
after their lease timed out) are counted and reported, not forbidden.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("aiosmtplib")

import chaos_worker
from smtp_server import Limits, SmtpTestServer, threaded_server

HERE = Path(__file__).resolve().parent
WORKER = HERE / "chaos_worker.py"
COUNT = 600
KILLS = 22
SEED = 20261129
FINAL = {"delivered", "bounced", "expired"}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def read_log(path: Path) -> tuple[list[tuple[int, int, str]], dict[str, int] | None]:
    acks: list[tuple[int, int, str]] = []
    done = None
    if not path.exists():
        return acks, done
    for line in path.read_text().splitlines():
        if line.startswith("done "):
            done = json.loads(line[5:])
            continue
        parts = line.split()
        if len(parts) == 3:  # a line cut by the kill is not acknowledged
            acks.append((int(parts[0]), int(parts[1]), parts[2]))
    return acks, done


def test_kill_9_at_random_points_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = SmtpTestServer()
    for name in chaos_worker.DESTINATIONS:
        server.add_destination(name, Limits(unknown_users=frozenset({"nobody"})))
    state = tmp_path / "state"
    ack_log = tmp_path / "acks.log"
    kills = 0
    with threaded_server(server):
        ports = json.dumps({d: server.port(d) for d in chaos_worker.DESTINATIONS})
        args = [sys.executable, str(WORKER), str(state), ports, str(COUNT), str(ack_log)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        while kills < KILLS:
            # Kill points: after a seeded number of further acknowledged
            # reports, plus a seeded jitter of received-but-unreported messages.
            acked_before = len(read_log(ack_log)[0])
            target = acked_before + rng.randint(3, 20)
            received_target = server.total_received + rng.randint(0, 3)
            proc = subprocess.Popen(args, env=env)

            def kill_point(
                proc: subprocess.Popen[bytes] = proc,
                target: int = target,
                received_target: int = received_target,
            ) -> bool:
                if proc.poll() is not None:
                    return True
                acked = len(read_log(ack_log)[0])
                return acked >= target and server.total_received >= received_target

            try:
                wait_for(kill_point, 60, "the worker to make progress")
                if proc.poll() is not None:
                    break  # finished before this kill point
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait(30) == -signal.SIGKILL
                kills += 1
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
        # The last run goes to the end.
        final = subprocess.run(args, env=env, timeout=120, check=False)
        assert final.returncode == 0
        received = server.received_ids()

    acks, stats = read_log(ack_log)
    assert stats is not None
    assert kills >= 20, f"only {kills} kill points before the run finished"

    ids = set(range(1, COUNT + 1))
    bad = {i for i in ids if i % 23 == 0}
    good = ids - bad
    # Exactly one final outcome per message: the engine's books balance and
    # no message was acknowledged final twice.
    assert stats["submitted"] == COUNT
    assert stats["pending"] == 0
    assert stats["delivered"] + stats["bounced"] + stats["expired"] == COUNT
    assert stats["delivered"] == len(good) and stats["bounced"] == len(bad)
    finals = Counter(msg for msg, _, action in acks if action in FINAL)
    assert max(finals.values()) == 1, [m for m, n in finals.items() if n > 1]
    # No acknowledged call lost: each acknowledged final decision is the one
    # the engine kept (a delivered message never came back, a bounced one was
    # never delivered).
    for msg, _, action in acks:
        if action == "delivered":
            assert msg in good and msg in received
        elif action == "bounced":
            assert msg in bad
    # At least once: every deliverable message reached its recipient.
    assert set(received) == good
    duplicates = sum(n - 1 for n in received.values())
    print(f"\nchaos: {kills} kills, {len(acks)} acknowledged reports, {duplicates} duplicates")
    # Only attempts in flight at a kill can be repeated (12 at most per kill).
    assert duplicates <= kills * 12
