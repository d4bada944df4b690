"""The cost of sharing destination state through Redis (issue 15).

``python benchmarks/python/bench_cluster.py [--attempts N] [--messages N]``
starts a private ``redis-server`` (127.0.0.1, a free port, no persistence) and
measures, in one run:

1. **Cost per attempt** of :class:`mailretry.cluster.RedisShared`: one
   ``admit`` (the Lua script: slot + GCRA) and one ``release`` per attempt,
   sequentially on one connection, in µs and Redis round trips per attempt,
   against a bare ``PING`` round trip measured in the same run.
2. **Throughput** of :class:`mailretry.aio.Driver` with an instant fake sender
   (no SMTP: the shared layer and the engine are all that is measured), one
   node process without the shared layer, one with it, and three with it at
   once against the same Redis and destinations (no caps, so the nodes
   contend only for Redis and the CPU).

JSON on stdout, a table on stderr. Run it on a quiet machine (``uptime``):
the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--logfile", os.path.join(directory, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


@dataclass
class FakeLease:
    msg_id: int
    destination: str
    source: str = ""
    attempt: int = 1
    deadline: float = 0.0


async def per_attempt(url: str, attempts: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from mailretry.cluster import DestinationLimits, RedisShared

    raw = aioredis.Redis.from_url(url)
    await raw.ping()
    t0 = time.perf_counter()
    for _ in range(attempts):
        await raw.ping()
    ping_us = (time.perf_counter() - t0) / attempts * 1e6
    await raw.aclose()

    shared = RedisShared(
        url,
        node_id="bench",
        namespace="bench",
        defaults=DestinationLimits(max_connections=1_000_000, rate_per_second=1e9),
    )
    await shared.start()
    leases = [FakeLease(i, f"d{i % 100}.example") for i in range(attempts)]
    before = shared.stats.round_trips
    t0 = time.perf_counter()
    for lease in leases:
        admission = await shared.admit(lease)  # type: ignore[arg-type]
        await shared.release(admission)
    elapsed = time.perf_counter() - t0
    trips = shared.stats.round_trips - before
    await shared.aclose()
    return {
        "attempts": attempts,
        "ping_us": ping_us,
        "admit_release_us": elapsed / attempts * 1e6,
        "round_trips_per_attempt": trips / attempts,
        "ratio_to_ping": elapsed / attempts * 1e6 / ping_us,
    }


def node_main(spec: dict[str, Any]) -> None:
    """One node process: deliver ``messages`` with an instant fake sender."""
    import mailretry
    from mailretry.aio import Driver
    from mailretry.cluster import RedisShared

    class Instant:
        async def send(self, lease: Any, message: Any) -> str:
            return "250 2.0.0 OK"

    async def run() -> dict[str, Any]:
        engine = mailretry.Engine(
            {"destination_defaults": {"initial_concurrency": 20, "max_concurrency": 20,
                                      "rate": "unlimited"}},
            seed=1,
        )  # fmt: skip
        shared = None
        if spec["url"]:
            shared = RedisShared(spec["url"], node_id=spec["node"], namespace="bench")
        driver = Driver(engine, Instant(), lambda _: None, max_in_flight=100, shared=shared)
        n = spec["messages"]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i in range(n):
            driver.submit(spec["first"] + i, f"d{i % 20}.example")
        await driver.run(until_idle=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        fallbacks = admitted_locally = 0
        if shared is not None:
            await shared.aclose()
            fallbacks, admitted_locally = shared.stats.fallbacks, shared.stats.admitted_locally
        assert engine.stats()["delivered"] == n
        return {
            "messages": n,
            "wall": wall,
            "cpu": cpu,
            "fallbacks": fallbacks,
            "admitted_locally": admitted_locally,
        }

    print(json.dumps(asyncio.run(run())), flush=True)


def nodes(url: str | None, count: int, messages: int) -> dict[str, Any]:
    procs = []
    for n in range(count):
        spec = {"node": f"n{n}", "url": url, "messages": messages, "first": n * 10_000_000}
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--node", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        assert p.stdout is not None
        # An editable install may print its rebuild check first.
        while (line := p.stdout.readline()) and line.strip() != "ready":
            pass
        assert line, "node process exited before it was ready"
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    wall = time.perf_counter() - t0
    total = sum(r["messages"] for r in results)
    return {
        "nodes": count,
        "shared": url is not None,
        "messages": total,
        "wall": wall,
        "messages_per_s": total / wall,
        "cpu_us_per_message": sum(r["cpu"] for r in results) / total * 1e6,
        # Sharing must have stayed on for the figures to mean anything.
        "fallbacks": sum(r["fallbacks"] for r in results),
        "admitted_locally": sum(r["admitted_locally"] for r in results),
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--node":
        node_main(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attempts", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=3000, help="per node")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(tmp)
        try:
            cost = asyncio.run(per_attempt(url, args.attempts))
            runs = [
                nodes(None, 1, args.messages),
                nodes(url, 1, args.messages),
                nodes(url, 3, args.messages),
            ]
        finally:
            proc.terminate()
            proc.wait(10)
    report = {"load_at_start": load, "per_attempt": cost, "throughput": runs}
    print(json.dumps(report, indent=2))
    w = sys.stderr.write
    w(f"load average at start: {load:.2f} (2 cores)\n")
    w(
        f"per attempt: admit+release {cost['admit_release_us']:.0f} us, "
        f"{cost['round_trips_per_attempt']:.2f} round trips; PING {cost['ping_us']:.0f} us "
        f"(x{cost['ratio_to_ping']:.2f})\n"
    )
    base = runs[0]["messages_per_s"]
    for r in runs:
        w(
            f"{r['nodes']} node(s), shared={r['shared']!s:5}: {r['messages_per_s']:8.0f} msg/s "
            f"(x{r['messages_per_s'] / base:.2f} of 1 node alone), "
            f"{r['cpu_us_per_message']:.0f} CPU-us/msg, "
            f"{r['fallbacks']} fallbacks, {r['admitted_locally']} admitted locally\n"
        )


if __name__ == "__main__":
    main()
