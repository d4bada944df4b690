from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest

import mailretry
from mailretry import CorruptDataError, Engine, StorageError
from mailretry.durable import DurableEngine

T0 = 1_700_000_000.0
CONFIG: dict[str, Any] = {"retry": {"lifetime": "2d"}, "lease_timeout": "10m"}
REPLIES = [
    "250 2.0.0 OK",
    "250 2.0.0 OK",
    "250 2.0.0 OK",
    "451 4.3.0 Temporary local problem",
    "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown",
    "421 4.7.0 Too many connections",
    "450 4.2.0 Greylisted, try again later",
]


class Workload:
    """The same random calls against any number of engines; checks they agree."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = T0
        self.next_id = 1

    def step(self, *engines: Any) -> list[Any]:
        """One round: maybe submit, take, report some, advance. Returns what happened."""
        out: list[Any] = []
        self.now += self.rng.choice([0.0, 1.0, 30.0, 600.0, 3600.0])
        if self.rng.random() < 0.5:
            n = self.rng.randint(1, 20)
            ids = list(range(self.next_id, self.next_id + n))
            self.next_id += n
            dests = [f"d{self.rng.randint(0, 4)}.example" for _ in ids]
            for e in engines:
                e.submit_many(ids, dests, self.now)
        takes = [[(x.msg_id, x.attempt) for x in e.take_ready(self.now, 15)] for e in engines]
        assert all(t == takes[0] for t in takes)
        out.append(takes[0])
        for msg_id, attempt in takes[0]:
            if self.rng.random() < 0.1:
                continue  # left in flight; its lease will time out
            reply: str | mailretry.Reply
            if self.rng.random() < 0.1:
                reply = mailretry.transport_reply("connection_refused", "test")
            else:
                reply = self.rng.choice(REPLIES)
            decisions = [e.report(msg_id, self.now, reply, attempt=attempt) for e in engines]
            assert all(
                (d.action, d.next_attempt, d.category)
                == (decisions[0].action, decisions[0].next_attempt, decisions[0].category)
                for d in decisions
            )
            out.append((decisions[0].action, decisions[0].next_attempt))
        if self.rng.random() < 0.3:
            events = [e.drain_events() for e in engines]
            assert all(len(ev) == len(events[0]) for ev in events)
        return out


def same_state(a: Any, b: Any) -> None:
    # memory_bytes is an estimate that depends on container growth history.
    sa, sb = a.stats(), b.stats()
    sa.pop("memory_bytes")
    sb.pop("memory_bytes")
    assert sa == sb
    assert a.next_wakeup() == b.next_wakeup()
    for i in range(5):
        try:
            da = a.destination(f"d{i}.example")
        except mailretry.UnknownIdError:
            with pytest.raises(mailretry.UnknownIdError):
                b.destination(f"d{i}.example")
            continue
        assert da == b.destination(f"d{i}.example")


def journal(path: Path) -> Path:
    [j] = sorted(path.glob("journal-*.mrj"))
    return j


@pytest.mark.parametrize("fsync", ["always", "group", "never"])
def test_recovery_replays_to_the_same_state_and_decisions(tmp_path: Path, fsync: Any) -> None:
    ref = Engine(CONFIG, seed=3)
    durable = DurableEngine(tmp_path, CONFIG, seed=3, fsync=fsync, compact_every=None)
    assert durable.recovery.created
    work = Workload(seed=11)
    for _ in range(60):
        work.step(ref, durable)
    durable.close()  # (kill -9 is tested below; close only releases the file)

    recovered = DurableEngine(tmp_path)
    assert not recovered.recovery.created
    assert recovered.recovery.records_replayed > 60
    assert recovered.recovery.leased_at_recovery == ref.stats()["leased"]
    assert recovered.last_time == work.now
    same_state(recovered, ref)
    recovered.check_invariants()
    # Both go on identically from here.
    for _ in range(40):
        work.step(ref, recovered)
    same_state(recovered, ref)
    recovered.close()


def test_compaction_starts_a_new_generation_and_recovers(tmp_path: Path) -> None:
    ref = Engine(CONFIG, seed=5)
    durable = DurableEngine(tmp_path, CONFIG, seed=5, compact_every=50)
    work = Workload(seed=2)
    for _ in range(80):
        work.step(ref, durable)
    assert durable.generation > 1  # compacted automatically
    gen = durable.generation
    durable.compact()
    assert durable.generation == gen + 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"journal-{gen + 1}.mrj", f"snapshot-{gen + 1}.mrs"]
    for _ in range(10):
        work.step(ref, durable)
    durable.close()
    recovered = DurableEngine(tmp_path)
    assert recovered.recovery.generation == gen + 1
    same_state(recovered, ref)
    recovered.close()


def test_interrupted_compaction_uses_the_new_snapshot(tmp_path: Path) -> None:
    ref = Engine(CONFIG, seed=5)
    durable = DurableEngine(tmp_path, CONFIG, seed=5, compact_every=None)
    work = Workload(seed=4)
    for _ in range(30):
        work.step(ref, durable)
    # Crash after the new snapshot was written, before its journal existed.
    durable.save(tmp_path / "snapshot-2.mrs")
    durable.close()
    recovered = DurableEngine(tmp_path)
    assert recovered.recovery.generation == 2
    assert recovered.recovery.records_replayed == 0
    same_state(recovered, ref)
    assert not (tmp_path / "journal-1.mrj").exists()
    recovered.close()


def test_torn_last_record_is_dropped(tmp_path: Path) -> None:
    durable = DurableEngine(tmp_path, CONFIG, seed=1, compact_every=None)
    for i in range(10):
        durable.submit(i, "example.com", T0)
    durable.close()
    path = journal(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 3)  # the last submit was cut short

    recovered = DurableEngine(tmp_path)
    assert recovered.recovery.torn_tail_dropped
    assert recovered.recovery.records_replayed == 9
    assert recovered.stats()["submitted"] == 9
    recovered.submit(9, "example.com", T0)  # appends after the last whole record
    recovered.close()
    again = DurableEngine(tmp_path)
    assert not again.recovery.torn_tail_dropped
    assert again.stats()["submitted"] == 10
    again.close()


def test_corrupted_middle_record_is_an_error(tmp_path: Path) -> None:
    durable = DurableEngine(tmp_path, CONFIG, seed=1, compact_every=None)
    for i in range(10):
        durable.submit(i, "example.com", T0)
    durable.close()
    path = journal(tmp_path)
    data = bytearray(path.read_bytes())
    # Flip one payload byte of the 5th record.
    offset = 20
    for _ in range(4):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 8 + length
    data[offset + 8 + 3] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"record 5 .*checksum mismatch.*followed by"):
        DurableEngine(tmp_path)


def test_journal_of_another_snapshot_is_detected(tmp_path: Path) -> None:
    durable = DurableEngine(tmp_path, CONFIG, seed=1, compact_every=None)
    for i in range(5):
        durable.submit(i, "example.com", T0)
    durable.take_ready(T0, 3)
    durable.close()
    # Swap the snapshot for one that already holds message 0.
    other = Engine(CONFIG, seed=1)
    other.submit(0, "example.com", T0)
    other.save(tmp_path / "snapshot-1.mrs")
    with pytest.raises(CorruptDataError, match="does not belong to this snapshot"):
        DurableEngine(tmp_path)


def test_failed_calls_are_journaled_and_replayed(tmp_path: Path) -> None:
    durable = DurableEngine(tmp_path, CONFIG, seed=1, compact_every=None)
    durable.submit(1, "example.com", T0)
    with pytest.raises(mailretry.DuplicateIdError):
        durable.submit(1, "example.com", T0)
    durable.take_ready(T0, 1)
    # A late report (lease expired) still advances the engine's time.
    with pytest.raises(mailretry.StateError):
        durable.report(1, T0 + 3600, "250 ok", attempt=1)
    state = durable.stats()
    durable.close()
    recovered = DurableEngine(tmp_path)
    assert recovered.stats() == state
    assert recovered.recovery.records_replayed == 4
    recovered.close()


def test_closed_engine_refuses_calls(tmp_path: Path) -> None:
    durable = DurableEngine(tmp_path, CONFIG)
    durable.close()
    with pytest.raises(StorageError):
        durable.submit(1, "example.com", T0)
