from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mailretry
from mailretry import (
    CorruptDataError,
    DuplicateIdError,
    Engine,
    InvalidInputError,
    StateError,
    UnknownIdError,
)

T0 = 1_700_000_000.0
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0


def conserved(e: Engine) -> None:
    s = e.stats()
    assert s["submitted"] == s["delivered"] + s["bounced"] + s["expired"] + s["pending"]
    e.check_invariants()


def test_deliver_one_message() -> None:
    e = Engine(seed=1)
    e.submit(1, "example.com", T0)
    [lease] = e.take_ready(T0, 10)
    assert (lease.msg_id, lease.destination, lease.attempt) == (1, "example.com", 1)
    d = e.report(lease, T0 + 1, "250 2.0.0 OK queued")
    assert d.action == "delivered" and d.category is None
    assert e.stats()["delivered"] == 1
    kinds = [ev["kind"] for ev in e.drain_events()]
    assert "delivered" in kinds
    conserved(e)


def test_transient_failure_schedules_retry_after_15_minutes() -> None:
    e = Engine({"retry": {"jitter": "none"}}, seed=1)
    e.submit(1, "example.com", T0)
    e.take_ready(T0, 1)
    d = e.report(1, T0, "451 4.3.0 Temporary local problem", attempt=1)
    assert d.action == "retry"
    assert d.next_attempt == pytest.approx(T0 + 15 * MIN, abs=1.0)
    assert e.take_ready(T0 + 14 * MIN, 10) == []
    leases = e.take_ready(T0 + 16 * MIN, 10)
    assert [(x.msg_id, x.attempt) for x in leases] == [(1, 2)]
    conserved(e)


def test_permanent_failure_bounces_with_category() -> None:
    e = Engine()
    e.submit(7, "example.com", T0)
    e.take_ready(T0, 1)
    d = e.report(
        7,
        T0,
        attempt=1,
        reply="550 5.1.1 <x@example.com>: Recipient address rejected: User unknown",
    )
    assert (d.action, d.category) == ("bounced", "mailbox_unknown")
    bounced = [ev for ev in e.drain_events() if ev["kind"] == "bounced"]
    assert bounced and bounced[0]["msg_id"] == 7 and bounced[0]["category"] == "mailbox_unknown"
    conserved(e)


def test_message_expires_at_queue_lifetime_not_bounced() -> None:
    e = Engine({"retry": {"lifetime": "1d"}})
    e.submit(1, "example.com", T0)
    now = T0
    attempts = 0
    while e.stats()["pending"]:
        wake = e.next_wakeup()
        assert wake is not None
        now = max(now, wake)
        for lease in e.take_ready(now, 10):
            attempts += 1
            d = e.report(lease, now, "421 4.7.0 Try again later, closing connection.")
            assert d.action in ("retry", "expired")
        e.advance(now)
        assert attempts < 100
    assert T0 + 23 * HOUR <= now <= T0 + DAY + HOUR
    expired = [ev for ev in e.drain_events() if ev["kind"] == "expired"]
    assert len(expired) == 1 and expired[0]["status"] == "4.4.7"
    assert "Try again later" in expired[0]["reply"]
    s = e.stats()
    assert (s["expired"], s["bounced"], s["delivered"]) == (1, 0, 0)
    conserved(e)


def test_errors_are_specific() -> None:
    e = Engine()
    e.submit(1, "example.com", T0)
    with pytest.raises(DuplicateIdError):
        e.submit(1, "example.com", T0)
    with pytest.raises(UnknownIdError):
        e.report(999, T0, "250 ok", attempt=1)
    with pytest.raises(StateError):
        e.report(1, T0, "250 ok", attempt=1)  # not leased yet
    e.take_ready(T0 + 10, 1)
    with pytest.raises(InvalidInputError):
        e.take_ready(T0, 1)  # time going backwards
    with pytest.raises(InvalidInputError):
        e.report(1, T0 + 20, "not a reply", attempt=1)
    assert (
        e.report(1, T0 + 20, "250 ok", attempt=1).action == "delivered"
    )  # lease kept after bad input
    with pytest.raises(UnknownIdError):
        e.report(1, T0 + 21, "250 ok", attempt=1)  # already reported
    with pytest.raises(InvalidInputError):
        e.submit(2, "", T0 + 30)
    with pytest.raises(UnknownIdError):
        e.destination("never-seen.example")
    with pytest.raises(UnknownIdError):
        e.concurrency_limit("never-seen.example")
    conserved(e)


def test_datetime_times() -> None:
    e = Engine()
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    e.submit(1, "example.com", now)
    assert len(e.take_ready(now, 1)) == 1
    with pytest.raises(InvalidInputError):
        e.submit(2, "example.com", dt.datetime(2026, 1, 1))  # naive


def test_lease_timeout_returns_message() -> None:
    e = Engine({"lease_timeout": "5m"})
    e.submit(1, "example.com", T0)
    e.take_ready(T0, 1)
    e.advance(T0 + 6 * MIN)
    kinds = [ev["kind"] for ev in e.drain_events()]
    assert "lease_expired" in kinds
    with pytest.raises(StateError):
        e.report(1, T0 + 6 * MIN, "250 ok", attempt=1)
    leases = e.take_ready(T0 + 6 * MIN, 1)
    assert [x.msg_id for x in leases] == [1]
    conserved(e)


def test_connection_cap_reply_cuts_concurrency() -> None:
    e = Engine({"destination_defaults": {"initial_concurrency": 10, "max_concurrency": 10}})
    for i in range(50):
        e.submit(i, "busy.example", T0)
    leases = e.take_ready(T0, 100)
    assert len(leases) == 10
    e.report(leases[0], T0 + 1, "421 4.7.0 Too many concurrent SMTP connections")
    info = e.destination("busy.example")
    assert info["concurrency_limit"] <= 2
    # The pool's cheap question gives the same number.
    assert e.concurrency_limit("Busy.Example.") == info["concurrency_limit"]
    assert any(ev["kind"] == "destination_throttled" for ev in e.drain_events())


def test_batch_api_matches_counts() -> None:
    e = Engine(seed=3)
    n = 1000
    ids = np.arange(n, dtype=np.uint64)
    dests = [f"d{i % 17}.example" for i in range(n)]
    e.submit_many(ids, dests, T0)
    assert e.stats()["pending"] == n
    got_ids, _dest_idx, attempts = e.take_ready_arrays(T0, n)
    assert len(got_ids) > 0 and set(attempts.tolist()) == {1}
    replies = ["250 ok" if i % 3 else "421 4.4.5 busy" for i in range(len(got_ids))]
    out = e.report_many(got_ids, replies, T0 + 1, attempts=attempts)
    assert out["ok"].all()
    actions = [mailretry.DECISION_ACTIONS[a] for a in out["action"].tolist()]
    assert actions.count("delivered") == sum(r.startswith("250") for r in replies)
    assert np.isnan(out["next_attempt"][np.asarray(actions) == "delivered"]).all()
    e.submit(50_000, "x.example", T0 + 2)
    with pytest.raises(DuplicateIdError):
        e.submit_many(np.array([50_001, 50_000], dtype=np.uint64), ["x.example"] * 2, T0 + 2)
    assert e.stats()["submitted"] == n + 1  # all or nothing
    conserved(e)


def test_snapshot_round_trip_replays_identically(tmp_path: Path) -> None:
    def drive(e: Engine, start: float, steps: int) -> list[tuple[str, int | None]]:
        log = []
        now = start
        for step in range(steps):
            now += 7 * MIN
            for lease in e.take_ready(now, 20):
                reply = "250 ok" if (lease.msg_id + step) % 4 == 0 else "421 4.7.0 later"
                e.report(lease, now, reply)
            log += [(ev["kind"], ev["msg_id"]) for ev in e.drain_events()]
        return log

    a = Engine({"retry": {"jitter": "full"}}, seed=11)
    for i in range(200):
        a.submit(i, f"d{i % 5}.example", T0)
    drive(a, T0, 10)
    path = tmp_path / "engine.snap"
    a.save(path)
    b = Engine.load(path)
    stats_a, stats_b = a.stats(), b.stats()
    stats_a.pop("memory_bytes"), stats_b.pop("memory_bytes")  # allocation slack differs
    assert stats_a == stats_b
    assert drive(a, T0 + 70 * MIN, 30) == drive(b, T0 + 70 * MIN, 30)


def test_corrupted_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    e = Engine()
    e.submit(1, "example.com", T0)
    path = tmp_path / "s.snap"
    e.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError):
        Engine.load(bad)
    trunc = tmp_path / "trunc.snap"
    trunc.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptDataError):
        Engine.load(trunc)
    with pytest.raises(mailretry.MailretryError):
        Engine.load(tmp_path / "missing.snap")
    assert Engine.load(path).stats()["pending"] == 1


@pytest.mark.parametrize(
    "config",
    [
        {"retri": {}},
        {"retry": {"initial_delay": "15 parsecs"}},
        {"retry": {"multiplier": "two"}},
        {"retry": {"preset": "sendmail"}},
        {"destinations": [{"destination": "x", "rate": "fast"}]},
        {"reactions": [{"name": "r", "text": "((", "suspend_for": "1h"}]},
        {"classifier": {"rules": [{"name": "x", "category": "nope", "action": "retry"}]}},
        {"lease_timeout": -5},
    ],
)
def test_invalid_config_raises(config: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        Engine(config)


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "mailretry.toml"
    path.write_text(
        "seed = 5\n"
        '[retry]\npreset = "default"\ninitial_delay = "10m"\nlifetime = "4d"\n'
        '[[destinations]]\ndestination = "gmail.com"\nmax_concurrency = 3\n'
        '[[classifier.rules]]\nname = "acme"\ntext = "acme says no"\n'
        'category = "reputation_block"\naction = "suspend_domain"\n'
    )
    e = Engine.from_toml(path)
    assert e.seed == 5
    e.submit(1, "example.com", T0)
    e.take_ready(T0, 1)
    d = e.report(1, T0, "451 4.7.1 acme says no", attempt=1)
    assert d.rule == "user:acme"
    assert d.category == "reputation_block"


def test_retry_timeline_presets() -> None:
    base = mailretry.retry_timeline({"jitter": "none"})
    assert base[:5] == pytest.approx([0, 15 * MIN, 45 * MIN, 105 * MIN, 225 * MIN])
    assert base[-1] <= 5 * DAY + 1
    # The default draws each delay within ±20 % of the schedule's.
    default = mailretry.retry_timeline()
    gaps = [b - a for a, b in itertools.pairwise(default)]
    nominal = [15 * MIN, 30 * MIN, 60 * MIN, 120 * MIN, 240 * MIN, 240 * MIN]
    for gap, want in zip(gaps[:6], nominal, strict=True):
        assert 0.8 * want <= gap <= 1.2 * want
    assert gaps[:6] != pytest.approx(nominal)
    assert default[-1] <= 5 * DAY + 1
    for preset in ("postfix", "exim", "kumomta", "haraka"):
        tl = mailretry.retry_timeline({"preset": preset})
        assert tl == sorted(tl) and len(tl) > 5


def test_threads_share_one_engine() -> None:
    e = Engine()

    def worker(base: int) -> None:
        for i in range(500):
            e.submit(base + i, f"d{i % 7}.example", T0)

    threads = [threading.Thread(target=worker, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert e.stats()["submitted"] == 2000
    conserved(e)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["submit", "take", "report", "advance"]),
            st.integers(0, 40),
            st.sampled_from(["250 ok", "421 4.7.0 later", "550 5.1.1 unknown", "450 4.2.0 grey"]),
            st.floats(0, 6 * HOUR),
        ),
        max_size=120,
    )
)
def test_nothing_is_ever_lost(ops: list[tuple[str, int, str, float]]) -> None:
    e = Engine({"retry": {"lifetime": "6h"}, "lease_timeout": "20m"}, seed=2)
    now = T0
    leased: set[tuple[int, int]] = set()
    next_id = 0
    for op, arg, reply, step in ops:
        now += step / 10
        if op == "submit":
            e.submit(next_id, f"d{arg % 4}.example", now)
            next_id += 1
        elif op == "take":
            leased |= {(x.msg_id, x.attempt) for x in e.take_ready(now, arg)}
        elif op == "report" and leased:
            msg, attempt = sorted(leased)[arg % len(leased)]
            leased.discard((msg, attempt))
            # Its lease, or the message, may have expired meanwhile: allowed.
            with contextlib.suppress(StateError, UnknownIdError):
                e.report(msg, now, reply, attempt=attempt)
        else:
            e.advance(now)
        conserved(e)


def test_example_config_loads_and_applies() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "mailretry.toml"
    e = Engine.from_toml(path)
    assert e.seed == 1
    e.submit(1, "mx.example.com", T0)
    e.take_ready(T0, 1)
    d = e.report(1, T0, "550 5.0.0 ACME overload, try later", attempt=1)
    assert (d.action, d.category, d.rule) == ("retry", "server_busy_capacity", "user:acme-overload")
    e.submit(2, "mta5.am0.yahoodns.net", T0)
    assert e.destination("mta5.am0.yahoodns.net")["max_concurrency"] == 4


def test_limits_generation_changes_with_the_limits_only() -> None:
    e = Engine(
        {
            "destination_defaults": {"initial_concurrency": 4, "max_concurrency": 4},
            "lease_timeout": "1h",
            "reactions": [
                {"name": "cap", "text": "slow down", "set_concurrency": 1, "duration": "10m"}
            ],
        }
    )
    for i in range(20):
        e.submit(i, "a.example", T0)
    g0 = e.limits_generation()
    leases = e.take_ready(T0, 4)
    for lease in leases[:2]:
        e.report(lease, T0 + 1, "250 ok")
    # Deliveries at the maximum change no limit: a pool keeps its cached one.
    assert e.limits_generation() == g0
    assert e.concurrency_limit("a.example") == 4
    # A rule's override lowers the limit ...
    e.report(leases[2], T0 + 2, "451 4.7.1 slow down please")
    g1 = e.limits_generation()
    assert g1 != g0 and e.concurrency_limit("a.example") == 1
    assert e.limits_generation() == g1  # nothing changed since
    # ... and its end raises it again with no call that changes anything but
    # the time: the generation says so at the engine's new time.
    e.advance(T0 + 11 * MIN)
    g2 = e.limits_generation()
    assert g2 != g1 and e.concurrency_limit("a.example") == 4
    # A connection cap's 421 cuts it.
    e.report(leases[3], T0 + 11 * MIN, "421 4.7.0 Too many concurrent SMTP connections")
    assert e.limits_generation() != g2 and e.concurrency_limit("a.example") == 2


def test_poll_is_take_ready_drain_and_next_wakeup() -> None:
    config = {"destination_defaults": {"initial_concurrency": 3, "max_concurrency": 3}}
    a, b = Engine(config, seed=5), Engine(config, seed=5)
    for e in (a, b):
        e.submit_many(list(range(10)), [f"d{i % 2}.example" for i in range(10)], T0)
    now = T0
    for step in range(8):
        now += 7
        got = a.poll(now, 4)
        leases = b.take_ready(now, 4)
        want = (leases, b.drain_events(), b.next_wakeup())
        assert [(x.msg_id, x.attempt, x.deadline) for x in got[0]] == [
            (x.msg_id, x.attempt, x.deadline) for x in want[0]
        ]
        assert got[1:] == want[1:]
        for x, y in zip(got[0], want[0], strict=True):
            reply = "250 ok" if (x.msg_id + step) % 3 else "451 4.3.0 try later"
            a.report(x, now + 1, reply)
            b.report(y, now + 1, reply)
    # limit 0 only advances time (expiries, lease timeouts), like advance().
    assert a.poll(now + 10, 0)[0] == []
    b.advance(now + 10)
    assert a.drain_events() == [] and b.drain_events() == []
    assert a.stats() == b.stats()
    with pytest.raises(InvalidInputError):
        a.poll(now + 10, -1)
