"""The compiled engine's durable mode: Engine.open_durable / compact / sync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mailretry import CorruptDataError, Engine, InvalidInputError, StateError

T0 = 1_700_000_000.0
CONFIG: dict[str, Any] = {
    "lease_timeout": "1m",
    "destination_defaults": {"initial_concurrency": 8, "max_concurrency": 8},
}
REPLIES = ["250 2.0.0 OK", "250 2.0.0 OK", "451 4.3.0 Try later", "550 5.1.1 User unknown"]


def run(engine: Engine, start: int, steps: int, t: float) -> float:
    """A deterministic mix of calls; returns the time reached."""
    for i in range(start, start + steps):
        t += 7.0
        engine.submit(i, f"d{i % 5}.example", t)
        if i % 3 == 0:
            for n, lease in enumerate(engine.take_ready(t, 4)):
                engine.report(lease, t, REPLIES[(i + n) % len(REPLIES)])
        if i % 11 == 0:
            engine.drain_events()
    return t


def stats_key(engine: Engine) -> dict[str, int]:
    s = dict(engine.stats())
    s.pop("memory_bytes", None)
    return s


def test_reopen_replays_to_the_same_state(tmp_path: Path) -> None:
    ref = Engine(CONFIG, seed=3)
    e = Engine.open_durable(tmp_path / "j", CONFIG, seed=3, fsync="never")
    info = e.journal_info()
    assert info is not None and info["created"] and info["generation"] == 1
    t = run(ref, 1, 300, T0)
    run(e, 1, 300, T0)
    records = e.journal_info()["records"]  # type: ignore[index]
    del e  # a crash as far as the files are concerned: every call was written
    e = Engine.open_durable(tmp_path / "j", fsync="never")
    info = e.journal_info()
    assert info is not None
    assert not info["created"] and info["records_replayed"] == records
    assert not info["torn_tail_dropped"]
    assert stats_key(e) == stats_key(ref)
    assert e.seed == 3
    run(ref, 301, 100, t)
    run(e, 301, 100, t)
    assert stats_key(e) == stats_key(ref)
    assert e.drain_events() == ref.drain_events()
    e.check_invariants()


def test_compact_sync_and_journal_info(tmp_path: Path) -> None:
    e = Engine.open_durable(tmp_path, CONFIG, fsync="group", group_interval=60.0)
    run(e, 1, 50, T0)
    e.sync()
    e.compact()
    info = e.journal_info()
    assert info is not None and info["generation"] == 2 and info["records"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "journal-2.mrj", "snapshot-2.mrs"]
    assert Engine(CONFIG).journal_info() is None
    with pytest.raises(StateError):
        Engine(CONFIG).compact()


def test_automatic_compaction(tmp_path: Path) -> None:
    ref = Engine(CONFIG, seed=4)
    e = Engine.open_durable(tmp_path, CONFIG, seed=4, fsync="never", compact_after_records=50)
    t = run(ref, 1, 200, T0)
    run(e, 1, 200, T0)
    info = e.journal_info()
    assert info is not None and info["compactions"] >= 4 and info["records"] < 50
    del e
    e = Engine.open_durable(tmp_path, compact_after_records=50)
    assert stats_key(e) == stats_key(ref)
    run(ref, 201, 50, t)
    run(e, 201, 50, t)
    assert stats_key(e) == stats_key(ref)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        Engine.open_durable(tmp_path / "a", fsync="sometimes")
    with pytest.raises(InvalidInputError):
        Engine.open_durable(tmp_path / "b", backend="nope")
    e = Engine.open_durable(tmp_path / "c")
    with pytest.raises(StateError, match="open by another engine"):
        Engine.open_durable(tmp_path / "c")
    run(e, 1, 30, T0)
    del e
    journal = tmp_path / "c" / "journal-1.mrj"
    data = bytearray(journal.read_bytes())
    data[30] ^= 0xFF  # inside the first record
    journal.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"record 1 at byte 24"):
        Engine.open_durable(tmp_path / "c")


def test_torn_last_record_is_dropped(tmp_path: Path) -> None:
    e = Engine.open_durable(tmp_path, CONFIG, fsync="never")
    run(e, 1, 20, T0)
    submitted = e.stats()["submitted"]
    e.submit(10_000, "last.example", T0 + 10_000)
    del e
    journal = tmp_path / "journal-1.mrj"
    journal.write_bytes(journal.read_bytes()[:-2])
    e = Engine.open_durable(tmp_path)
    assert e.journal_info()["torn_tail_dropped"]  # type: ignore[index]
    assert e.stats()["submitted"] == submitted


CHILD = textwrap.dedent(
    """
    import sys, time
    from mailretry import Engine

    config = {config!r}
    replies = {replies!r}
    e = Engine.open_durable(sys.argv[1], config, seed=5, fsync=sys.argv[2])
    next_id = 1
    while True:
        now = time.time()
        for _ in range(10):
            e.submit(next_id, "d%d.example" % (next_id % 5), now)
            # The call has returned: the record is in the journal (and, with
            # fsync="always", on disk).
            print(next_id, flush=True)
            next_id += 1
        for n, lease in enumerate(e.take_ready(now, 12)):
            e.report(lease, now, replies[(lease.msg_id + n) % len(replies)])
    """
)


@pytest.mark.parametrize("fsync", ["always", "group"])
def test_kill_9_mid_run_loses_nothing(tmp_path: Path, fsync: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(config=CONFIG, replies=REPLIES))
    state = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, str(script), str(state), fsync],
        stdout=subprocess.PIPE,
        text=True,
    )
    printed: list[int] = []
    try:
        assert child.stdout is not None
        while len(printed) < 400:
            line = child.stdout.readline()
            assert line, "the child exited early"
            printed.append(int(line))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert child.stdout is not None
    printed += [int(x) for x in child.stdout.read().split()]  # lines written before the kill
    child.stdout.close()

    e = Engine.open_durable(state)
    info = e.journal_info()
    assert info is not None and not info["created"] and info["records_replayed"] > 0
    s = e.stats()
    assert s["submitted"] == s["delivered"] + s["bounced"] + s["expired"] + s["pending"]
    assert s["submitted"] >= len(printed)
    e.check_invariants()
    in_flight = s["leased"]
    finished = {
        ev["msg_id"] for ev in e.drain_events() if ev["kind"] in ("delivered", "bounced", "expired")
    }
    for msg_id in printed:
        if msg_id not in finished:  # then it must still be pending
            with pytest.raises(KeyError):
                e.submit(msg_id, "d0.example", time.time())

    # Finish the run: leases in flight at the crash come back at their deadline.
    t = time.time() + 120.0
    attempts_before = s["attempts"]
    for _ in range(1000):
        if e.stats()["pending"] == 0:
            break
        t += 60.0
        for lease in e.take_ready(t, 1000):
            e.report(lease, t, "250 2.0.0 OK")
    s = e.stats()
    assert s["pending"] == 0
    assert s["submitted"] == s["delivered"] + s["bounced"] + s["expired"]
    assert s["lease_expirations"] >= in_flight
    assert s["attempts"] >= attempts_before
