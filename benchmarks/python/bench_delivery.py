"""Throughput of one delivery process: Engine + asyncio Driver + SmtpSender (aiosmtplib).

    python benchmarks/python/bench_delivery.py [--messages N] [--destinations D] [--submit one]

Messages are handed to the engine with one ``submit_many`` call (``--submit
one``: ``Driver.submit`` per message, as before session 4).

The sink is aiosmtpd's ``Sink`` handler in a separate process on 127.0.0.1, so
its CPU is not the sender's. Connections are reused (``max_messages_per_connection``
1000); every destination allows 10 connections, no rate limit. Three runs:

1. plain: messages per second (wall) and CPU seconds per message of this process;
2. the same with the engine calls timed (``time.perf_counter`` around each call
   on the Engine object): the engine's share of the process CPU;
3. under cProfile: the split of CPU between the engine (the compiled core),
   mailretry.aio, mailretry.smtp, aiosmtplib, asyncio and the rest, by the file
   each function lives in (tottime in process CPU time; the profiler inflates
   Python-heavy parts).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import socket
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import mailretry
from mailretry.aio import Driver, SystemClock
from mailretry.smtp import Endpoint, OutgoingMessage, SmtpSender, StaticResolver

CONFIG: dict[str, Any] = {
    "destination_defaults": {"initial_concurrency": 10, "max_concurrency": 10, "rate": "unlimited"},
    "timer_resolution": "10ms",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sink did not start")


class TimedEngine:
    """Forwards to an Engine and adds up the CPU time spent in it, per method.

    CPU time of this thread (``time.thread_time``), not wall time: on a shared
    machine a call preempted by another process would otherwise count the other
    process's time as the engine's."""

    def __init__(self, engine: mailretry.Engine) -> None:
        self._engine = engine
        self.seconds = 0.0
        self.calls = 0
        self.by_method: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._engine, name)
        if not callable(target):
            return target
        row = self.by_method[name]

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return target(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                self.seconds += spent
                self.calls += 1
                row[0] += 1
                row[1] += spent

        return timed

    def timer_cost(self, n: int = 20000) -> float:
        """CPU seconds one timed call adds by itself: a no-op timed the same
        way (the two clock readings are system calls), to subtract."""
        start = time.thread_time()
        for _ in range(n):
            a = time.thread_time()
            time.thread_time()
            del a
        return (time.thread_time() - start) / n / 2  # about half falls inside the interval


def message(i: int, domain: str) -> OutgoingMessage:
    return OutgoingMessage(
        "bench@mailretry.test",
        f"user{i}@{domain}",
        f"Subject: bench {i}\r\nX-Mailretry-Id: {i}\r\n\r\nhello {i}\r\n".encode(),
    )


async def deliver(
    engine: Any, port: int, n: int, destinations: int, submit_many: bool = True
) -> dict[str, Any]:
    domains = [f"d{k}.bench.test" for k in range(destinations)]
    resolver = StaticResolver({d: Endpoint("127.0.0.1", port) for d in domains})
    payloads = {i: message(i, domains[i % destinations]) for i in range(1, n + 1)}
    sender = SmtpSender(
        engine,
        resolver,
        local_hostname="bench.mailretry.test",
        max_messages_per_connection=1000,
        tls="none",
    )
    driver = Driver(
        engine, sender, payloads, clock=SystemClock(), max_in_flight=200, batch=200, idle_step=0.01
    )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if submit_many:
        # A platform handing over a batch: one engine call, then wake the driver.
        engine.submit_many(
            list(range(1, n + 1)),
            [domains[i % destinations] for i in range(1, n + 1)],
            driver.now(),
        )
        driver.wake()
    else:
        for i in range(1, n + 1):
            driver.submit(i, domains[i % destinations])
    async with sender:
        stats = await driver.run(until_idle=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    s = engine.stats()
    assert s["delivered"] == n, s
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "msgs_per_s": n / wall,
        "cpu_us_per_msg": cpu / n * 1e6,
        "connections": sender.stats.connections_opened,
        "attempts": stats.leases,
    }


_DRIVER_FILES = ("aio.py", "clocks.py", "aio_types.py")
_SENDER_FILES = ("smtp.py", "smtp_types.py", "smtp_session.py", "mtasts.py")


def category(filename: str, funcname: str) -> str:
    if "mailretry._core" in funcname or "_core" in filename:
        return "engine (compiled core)"
    if filename.endswith(os.path.join("mailretry", "engine.py")):
        return "engine (Python wrapper)"
    if any(filename.endswith(os.path.join("mailretry", f)) for f in _DRIVER_FILES):
        return "driver (mailretry.aio)"
    if any(filename.endswith(os.path.join("mailretry", f)) for f in _SENDER_FILES):
        return "sender (mailretry.smtp)"
    if "aiosmtplib" in filename:
        return "aiosmtplib"
    if "asyncio" in filename or "selectors" in filename:
        return "asyncio"
    if filename == "~" and ("socket" in funcname or "select" in funcname or "epoll" in funcname):
        return "socket/syscalls"
    if filename == "~":
        return "other builtins"
    return "other Python (email, ssl, ...)"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--destinations", type=int, default=4)
    parser.add_argument(
        "--submit",
        choices=("many", "one"),
        default="many",
        help="feed the engine with one submit_many call (default) or Driver.submit per message",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    args = parser.parse_args()
    many = args.submit == "many"
    port = free_port()
    sink = start_sink(port)
    try:
        print(
            f"python {platform.python_version()}, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.1f}; {args.messages} messages to {args.destinations} "
            "destinations, one aiosmtpd sink process"
        )
        plain = asyncio.run(
            deliver(mailretry.Engine(CONFIG), port, args.messages, args.destinations, many)
        )
        print(
            f"plain:   {plain['msgs_per_s']:,.0f} msgs/s, {plain['cpu_us_per_msg']:.0f} us CPU "
            f"per message, {plain['connections']} connections"
        )
        timed_engine = TimedEngine(mailretry.Engine(CONFIG))
        timed = asyncio.run(deliver(timed_engine, port, args.messages, args.destinations, many))
        share = timed_engine.seconds / timed["cpu_s"]
        print(
            f"timed:   {timed['msgs_per_s']:,.0f} msgs/s; engine calls {timed_engine.calls}, "
            f"{timed_engine.seconds / args.messages * 1e6:.1f} us per message = "
            f"{share:.1%} of the process CPU"
        )
        overhead = timed_engine.timer_cost() * timed_engine.calls
        print(
            f"  less the timer's own cost ({overhead / timed_engine.calls * 1e6:.2f} us per "
            f"call): {(timed_engine.seconds - overhead) / timed['cpu_s']:.1%} of the process CPU"
        )
        for name, (calls, seconds) in sorted(
            timed_engine.by_method.items(), key=lambda kv: -kv[1][1]
        ):
            print(
                f"  {name:<16} {int(calls):>7} calls {seconds / max(calls, 1) * 1e6:8.2f} us/call"
            )
        if args.no_profile:
            return
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits
        profiler.enable()
        prof = asyncio.run(
            deliver(mailretry.Engine(CONFIG), port, args.messages, args.destinations, many)
        )
        profiler.disable()
        totals: dict[str, float] = defaultdict(float)
        stats = pstats.Stats(profiler)
        for (filename, _line, funcname), row in stats.stats.items():  # type: ignore[attr-defined]
            totals[category(filename, funcname)] += row[2]
        whole = sum(totals.values())
        print(f"profiled: {prof['msgs_per_s']:,.0f} msgs/s; CPU split (tottime):")
        for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<26} {seconds / whole:6.1%}")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
