"""Several nodes sharing destination state through Redis (issue 15).

Each test that needs Redis starts a private ``redis-server`` on 127.0.0.1, a
free port, without persistence, in a temporary directory, and stops it
afterwards (never the system's instance). Real servers and real Redis expiries
run on real time: TTLs are short (1-2 s) and every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mailretry
from mailretry.errors import InvalidInputError
from smtp_server import Limits, SmtpTestServer, threaded_server

redis = pytest.importorskip("redis", reason="the redis client is missing: pip install '.[cluster]'")

from mailretry.aio import Driver  # noqa: E402
from mailretry.cluster import ClusterConfig, DestinationLimits, RedisShared  # noqa: E402
from mailretry.dns import Endpoint  # noqa: E402
from mailretry.smtp import OutgoingMessage, SmtpSender, StaticResolver  # noqa: E402

HERE = Path(__file__).resolve().parent
REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)
DEST = "strict.test"
ALONE = "alone.test"  # the same limits, for the baseline run


def read_until(proc: subprocess.Popen[str], word: str) -> None:
    """Read the worker's stdout up to the line ``word`` (an editable install
    may print its rebuild first)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == word:
            return
    raise AssertionError(f"worker exited before saying {word!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def await_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class PrivateRedis:
    """A redis-server of our own: 127.0.0.1, a free port, no persistence."""

    def __init__(self, directory: Path) -> None:
        assert REDIS_SERVER is not None
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        args += ["--logfile", str(self.directory / "redis.log")]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.2)

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.directory / 'redis.log'}")
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        try:
            wait_until(answers, 10, "redis-server to answer")
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> Any:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if REDIS_SERVER is None:
        pytest.skip(
            "redis-server is not installed (Debian package redis-server; ./dev installs it)"
        )
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# An engine tuned for a test that runs in seconds: retries after 1-2 s, and
# limits a single node would be given for this destination (2 connections,
# 20 messages per second).
ENGINE = {
    "retry": {"initial_delay": "1s", "max_delay": "2s", "jitter": "none", "lifetime": "1d"},
    "builtin_overrides": False,
    "destination_defaults": {
        "initial_concurrency": 2,
        "max_concurrency": 2,
        "rate": "20/1s",
        "min_rate": "5/1s",
        "unlimited_cut_to": "20/1s",
        "suspend_base": "1s",
        "suspend_max": "2s",
    },
    "timer_resolution": 0.01,
}
CLUSTER = {"max_connections": 2, "rate": "20/1s", "connection_ttl": "2s", "share": 0.34}


def run_nodes(
    server: SmtpTestServer, destination: str, redis_url: str | None, per_node: int
) -> list[dict[str, Any]]:
    """Three node processes deliver ``per_node`` messages each to ``destination``."""
    procs = []
    for n in range(3):
        spec = {
            "mode": "deliver",
            "node": f"node{n}",
            "seed": n + 1,
            "destination": destination,
            "port": server.port(destination),
            "first": 1 + n * 1000 + (0 if redis_url else 100_000),
            "count": per_node,
            "engine": ENGINE,
            "cluster": CLUSTER,
            "redis_url": redis_url,
            "timeout": 40 if redis_url else 15,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE / "cluster_worker.py"), json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for p in procs:
            read_until(p, "ready")
        for p in procs:  # all start together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def refusals(server: SmtpTestServer, destination: str) -> int:
    replies = server.log(destination).replies
    return sum(count for key, count in replies.items() if key.startswith("421"))


def test_three_nodes_share_a_connection_cap_and_a_rate_ceiling(
    private_redis: PrivateRedis,
) -> None:
    per_node = 30
    server = SmtpTestServer()  # real time: three processes
    # 2 connections per client address; 30 messages a second (the cluster's
    # ceiling is 20/s: a platform stays below what a provider allows).
    for name in (ALONE, DEST):
        server.add_destination(name, Limits(max_connections=2, rate=(30, 1.0)))
    with threaded_server(server):
        # Baseline: each node alone, configured as for a single node.
        alone = run_nodes(server, ALONE, None, per_node)
        baseline_refused = refusals(server, ALONE)
        baseline_delivered = sum(r["stats"]["delivered"] for r in alone)
        shared = run_nodes(server, DEST, private_redis.url, per_node)
        shared_refused = refusals(server, DEST)
        log = server.log(DEST)
        received = server.received_ids()

    delivered = sum(r["stats"]["delivered"] for r in shared)
    assert delivered == 3 * per_node
    shared_ids = [i for i in received if i < 100_000]
    assert len(shared_ids) == 3 * per_node and all(received[i] == 1 for i in shared_ids)
    assert all(r["stats"]["pending"] == 0 for r in shared)
    assert all(r["cluster"]["admitted"] > 0 and r["cluster"]["fallbacks"] == 0 for r in shared)
    # The cap holds across the cluster: at most 2 connections were ever open.
    assert log.peak_open <= 2, log.peak_open
    assert shared_refused / delivered <= 0.05, (shared_refused, delivered)
    # Alone, the same nodes together exceed what the server allows.
    assert baseline_delivered > 0 and baseline_refused > 0
    assert baseline_refused / baseline_delivered > shared_refused / delivered
    print(
        f"\n421s per delivery: each node alone {baseline_refused}/{baseline_delivered}, "
        f"shared {shared_refused}/{delivered}"
    )


def _lease(engine: mailretry.Engine, msg_id: int, destination: str = DEST) -> mailretry.Lease:
    engine.submit(msg_id, destination, time.time())
    (lease,) = [x for x in engine.take_ready(time.time(), 100) if x.msg_id == msg_id]
    return lease


SUSPEND_ENGINE = {
    **ENGINE,
    "destination_defaults": {**ENGINE["destination_defaults"], "initial_concurrency": 3,
                             "max_concurrency": 3, "rate": "unlimited"},
    "reactions": [{"name": "halt", "text": "halt-all", "suspend_for": "10m"}],
}  # fmt: skip


async def _nodes(url: str, count: int, **kw: Any) -> list[RedisShared]:
    nodes = [
        RedisShared(
            url,
            node_id=f"n{i}",
            namespace="t",
            poll_interval=0.1,
            defaults=DestinationLimits(max_connections=3),
            **kw,
        )
        for i in range(count)
    ]
    for node in nodes:
        await node.start()
    return nodes


def test_a_421_learned_by_one_node_cuts_the_limit_for_all(private_redis: PrivateRedis) -> None:
    async def scenario() -> None:
        a, b, c = await _nodes(private_redis.url, 3)
        engine = mailretry.Engine(SUSPEND_ENGINE, seed=1)
        try:
            # Node a: two attempts in flight, the second is refused with 421.
            first, second = _lease(engine, 1), _lease(engine, 2)
            engine.report(second, time.time(), "421 4.7.0 Too many connections from your host")
            events = [e for e in engine.drain_events() if e["kind"] == "destination_throttled"]
            assert events and events[0]["category"] == "too_many_connections"
            cut = events[0]["concurrency_limit"]
            assert 1 <= cut < 3
            for e in events:
                a.observe(e)
            # Every node applies the cut within 1 s (its poller, not a sleep).
            await asyncio.wait_for(
                await_until(
                    lambda: all(n.view(DEST)["max_connections"] == cut for n in (b, c)),
                    1.0,
                    "the cut to reach every node",
                ),
                1.5,
            )
            assert b.view(DEST)["origin"] == "n0"
            # ... and its gate: only `cut` attempts at once across b and c.
            other = mailretry.Engine(SUSPEND_ENGINE, seed=2)
            leases = [_lease(other, 10 + i) for i in range(3)]
            held = [
                await n.admit(x, time.monotonic() + 1) for n, x in zip((b, c), leases, strict=False)
            ]
            assert [h.admitted for h in held].count(True) == min(cut, 2)
            if cut == 1:
                assert not held[1].admitted and held[1].reply is None
            refused = await c.admit(leases[2], time.monotonic() + 0.3)
            assert not refused.admitted and refused.reply is None
            for h in held:
                await (b if h is held[0] else c).release(h)
            again = await c.admit(leases[2], time.monotonic() + 1)
            assert again.admitted
            await c.release(again)
            assert first.msg_id == 1
        finally:
            for n in (a, b, c):
                await n.aclose()

    asyncio.run(scenario())


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, lease: mailretry.Lease, message: object) -> str:
        self.sent.append(lease.msg_id)
        return "250 2.0.0 OK"


def test_a_suspension_on_one_node_suspends_all(private_redis: PrivateRedis) -> None:
    async def scenario() -> None:
        a, b, c = await _nodes(private_redis.url, 3)
        engine_a = mailretry.Engine(SUSPEND_ENGINE, seed=1)
        try:
            lease = _lease(engine_a, 1)
            engine_a.report(lease, time.time(), "421 4.7.0 halt-all: stop sending for now")
            suspended = [e for e in engine_a.drain_events() if e["kind"] == "destination_suspended"]
            assert suspended and suspended[0]["until"] is not None
            for e in suspended:
                a.observe(e)
            await await_until(
                lambda: all(n.view(DEST)["suspended_until"] for n in (b, c)), 1.0, "suspension"
            )
            # Nodes b and c each run a driver with their own engine and message:
            # the driver reports a's reply without connecting, and each engine
            # suspends the destination itself.
            for node, seed in ((b, 2), (c, 3)):
                engine = mailretry.Engine(SUSPEND_ENGINE, seed=seed)
                sender = RecordingSender()
                events: list[dict[str, Any]] = []
                driver: Driver[object] = Driver(
                    engine, sender, lambda _: object(), on_event=events.append, shared=node
                )
                running = asyncio.create_task(driver.run())
                driver.submit(100 + seed, DEST)
                await await_until(
                    lambda e=engine: e.destination(DEST)["suspended_until"] is not None,
                    2.0,
                    "the node's engine to suspend the destination",
                )
                driver.stop(drain_timeout=1)
                await running
                assert sender.sent == []
                assert driver.stats.cluster_applied == 1
                assert [e for e in events if e["kind"] == "cluster_applied"]
                assert engine.stats()["pending"] == 1  # deferred, not lost
                # The echo of an applied suspension is not published again.
                assert node.stats.published == 0
        finally:
            for n in (a, b, c):
                await n.aclose()

    asyncio.run(scenario())


def test_a_killed_node_frees_its_connection_slots_within_the_ttl(
    private_redis: PrivateRedis,
) -> None:
    ttl = 1.0
    cluster = {"max_connections": 2, "connection_ttl": ttl, "namespace": "kill"}
    spec = {
        "mode": "hold",
        "node": "doomed",
        "destination": DEST,
        "count": 2,
        "engine": SUSPEND_ENGINE,
        "cluster": cluster,
        "redis_url": private_redis.url,
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "cluster_worker.py"), json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(proc, "held")

        async def scenario() -> None:
            node = RedisShared(
                ClusterConfig.from_mapping({"url": private_redis.url, **cluster}), node_id="b"
            )
            await node.start()
            try:
                engine = mailretry.Engine(SUSPEND_ENGINE, seed=5)
                lease = _lease(engine, 7)
                # Alive, the holder renews its slots past their TTL: none is free.
                refused = await node.admit(lease, time.monotonic() + 1.5 * ttl)
                assert not refused.admitted
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed_at = time.monotonic()
                admitted = await node.admit(lease, killed_at + ttl + 0.5)
                assert admitted.admitted, "the killed node's slots outlived their TTL"
                await node.release(admitted)
            finally:
                await node.aclose()

        asyncio.run(scenario())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_redis_restart_mid_run_falls_back_then_recovers_and_loses_nothing(
    private_redis: PrivateRedis,
) -> None:
    total = 60
    events: list[dict[str, Any]] = []

    async def scenario() -> tuple[mailretry.Engine, SmtpTestServer, RedisShared]:
        server = SmtpTestServer()
        server.add_destination(DEST, Limits(max_connections=2, data_delay=0.01))
        await server.start()
        engine = mailretry.Engine(ENGINE, seed=3)
        shared = RedisShared(
            private_redis.url,
            node_id="solo",
            share=0.5,
            defaults=DestinationLimits(max_connections=2, rate_per_second=25.0),
            timeout=0.2,
            retry_interval=0.1,
            poll_interval=0.1,
            connection_ttl=2.0,
        )
        sender = SmtpSender(
            engine,
            StaticResolver({DEST: Endpoint("127.0.0.1", server.port(DEST))}),
            local_hostname="solo.mailretry.test",
            connect_timeout=5,
            command_timeout=5,
            data_timeout=5,
            attempt_timeout=10,
            max_messages_per_connection=1,
        )
        messages = {
            i: OutgoingMessage(
                "s@mailretry.test",
                f"u{i}@{DEST}",
                f"Subject: {i}\r\nX-Mailretry-Id: {i}\r\n\r\nhi\r\n",
            )
            for i in range(1, total + 1)
        }
        driver = Driver(
            engine, sender, messages, on_event=events.append, shared=shared, idle_step=0.01
        )
        for i in messages:
            driver.submit(i, DEST)
        running = asyncio.create_task(driver.run(until_idle=True))
        kinds = lambda: [e["kind"] for e in events]  # noqa: E731
        await await_until(lambda: server.total_received >= 10, 10, "deliveries before the outage")
        private_redis.stop()
        await await_until(lambda: "cluster_fallback" in kinds(), 5, "the fallback event")
        during = server.total_received
        await await_until(lambda: server.total_received >= during + 5, 10, "fallback deliveries")
        private_redis.start()
        await await_until(lambda: "cluster_resumed" in kinds(), 5, "the recovery event")
        admitted_before = shared.stats.admitted
        async with asyncio.timeout(30):
            await running
        assert shared.stats.admitted > admitted_before  # shared again after recovery
        await sender.aclose()
        await shared.aclose()
        await server.stop()
        return engine, server, shared

    engine, server, shared = asyncio.run(scenario())
    stats = engine.stats()
    assert stats["delivered"] == total and stats["pending"] == 0
    received = server.received_ids()
    assert sorted(received) == list(range(1, total + 1))
    assert set(received.values()) == {1}
    assert shared.stats.fallbacks == 1 and shared.stats.recoveries == 1
    assert shared.stats.admitted_locally > 0
    assert server.log(DEST).peak_open <= 2


def test_cluster_config_lives_in_the_engine_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        textwrap.dedent(
            """
            seed = 4
            [destination_defaults]
            max_concurrency = 4
            [cluster]
            url = "redis://127.0.0.1:6390/1"
            namespace = "mta"
            share = 0.5
            max_connections = 6
            rate = "100/1m"
            connection_ttl = "15s"
            [cluster.destinations."big.example"]
            max_connections = 20
            """
        )
    )
    engine = mailretry.Engine.from_toml(path)
    assert engine.seed == 4
    config = ClusterConfig.from_toml(path)
    assert config is not None
    assert config.share == 0.5 and config.connection_ttl == 15.0
    assert config.limits("other.example") == DestinationLimits(6, 100 / 60)
    assert config.limits("BIG.example") == DestinationLimits(20, 100 / 60)
    # Durations and rates are the engine's grammar, as everywhere else in the file.
    assert ClusterConfig.from_mapping({"cut_ttl": "1h30m"}).cut_ttl == 5400.0
    assert ClusterConfig.from_mapping({"rate": "30/2s"}).defaults.rate_per_second == 15.0
    for bad, key in (
        ({"shares": 1}, "cluster.shares"),
        ({"share": 0}, "cluster.share"),
        ({"rate": "0/1m"}, "cluster.rate"),
        ({"max_connections": -1}, "cluster.max_connections"),
        ({"connection_ttl": "soon"}, "cluster.connection_ttl"),
        ({"destinations": {"x": {"max_conn": 1}}}, "cluster.destinations.x.max_conn"),
    ):
        with pytest.raises(InvalidInputError, match=key.replace(".", r"\.")):
            ClusterConfig.from_mapping(bad)
    plain = tmp_path / "single.toml"
    plain.write_text("seed = 1\n")
    assert ClusterConfig.from_toml(plain) is None
    bad_table = tmp_path / "bad.toml"
    bad_table.write_text("cluster = 3\n")
    with pytest.raises(InvalidInputError, match="cluster"):
        mailretry.Engine.from_toml(bad_table)


def test_a_single_node_never_imports_redis() -> None:
    code = (
        "import sys, mailretry, mailretry.aio, mailretry.smtp\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_structural_flag_leaves_one_slot_until_cleared(private_redis: PrivateRedis) -> None:
    async def scenario() -> None:
        a, b = await _nodes(private_redis.url, 2)
        engine = mailretry.Engine(SUSPEND_ENGINE, seed=9)
        try:
            flag = {
                "kind": "structural_failure",
                "destination": DEST,
                "source": "",
                "reply": "",
                "samples": ("550 5.7.25 no PTR record for your address",),
            }
            a.observe(flag)
            await await_until(lambda: b.view(DEST)["structural"], 1.0, "the flag")
            assert b.view(DEST)["max_connections"] == 1
            assert b.view(DEST)["reply"].startswith("550 5.7.25")
            first = await b.admit(_lease(engine, 1), time.monotonic() + 1)
            assert first.admitted
            second = await b.admit(_lease(engine, 2), time.monotonic() + 0.3)
            assert not second.admitted  # a held destination gets one connection, cluster-wide
            await b.release(first)
            a.observe({**flag, "kind": "structural_cleared", "samples": ()})
            await await_until(lambda: not b.view(DEST)["structural"], 1.0, "the clearing")
            assert b.view(DEST)["max_connections"] == 3
        finally:
            for n in (a, b):
                await n.aclose()

    asyncio.run(scenario())


def test_a_rate_cut_reaches_every_node_and_leaves_the_connections(
    private_redis: PrivateRedis,
) -> None:
    async def scenario() -> None:
        a, b = await _nodes(private_redis.url, 2)
        engine = mailretry.Engine(SUSPEND_ENGINE, seed=4)
        try:
            lease = _lease(engine, 1)
            engine.report(lease, time.time(), "421 4.7.28 Rate limited: too many messages")
            (cut,) = [e for e in engine.drain_events() if e["kind"] == "destination_throttled"]
            assert cut["detail"].startswith("rate") and cut["rate_per_second"]
            a.observe(cut)
            await await_until(lambda: b.view(DEST)["rate_per_second"] is not None, 1.0, "the cut")
            assert b.view(DEST)["rate_per_second"] == pytest.approx(cut["rate_per_second"])
            assert b.view(DEST)["max_connections"] == 3  # a rate cut is not a connection cut
        finally:
            for n in (a, b):
                await n.aclose()

    asyncio.run(scenario())
