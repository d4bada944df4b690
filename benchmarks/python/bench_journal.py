"""Cost of the durable journal (mailretry.durable): engine calls per second.

    python benchmarks/python/bench_journal.py [--messages N] [--dir PATH]

Workload per message: submit, take_ready (batches of 100), report "250 ok": a
sending loop's calls. Modes: the plain Engine (journal off), DurableEngine with
fsync never / grouped (every 5 ms) / on every call. The journal directory
should be on the disk you care about (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from mailretry import Engine
from mailretry.durable import DurableEngine, FsyncPolicy

T0 = 1_700_000_000.0


def workload(engine: Any, n: int) -> int:
    """Runs the calls; returns how many engine calls were made."""
    calls = 0
    now = T0
    for i in range(n):
        engine.submit(i + 1, f"d{i % 50}.example", now)
        calls += 1
    done = 0
    while done < n:
        now += 1.0
        leases = engine.take_ready(now, 100)
        calls += 1
        for lease in leases:
            engine.report(lease, now, "250 2.0.0 OK")
            calls += 1
        done += len(leases)
    return calls


def run(mode: str, n: int, root: Path) -> tuple[float, int]:
    if mode == "off":
        engine: Any = Engine(seed=1)
    else:
        modes: dict[str, FsyncPolicy] = {"never": "never", "group-5ms": "group", "always": "always"}
        fsync = modes[mode]
        engine = DurableEngine(root / mode, seed=1, fsync=fsync, group_ms=5, compact_every=None)
    start = time.perf_counter()
    calls = workload(engine, n)
    if mode != "off":
        engine.close()
    elapsed = time.perf_counter() - start
    return calls / elapsed, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--always-messages",
        type=int,
        default=2_000,
        help="messages for the fsync-per-call mode (slow on real disks)",
    )
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, journal in {root}")
        print(f"{'mode':<12} {'calls':>8} {'calls/s':>12} {'vs off':>8}")
        base = None
        for mode in ("off", "never", "group-5ms", "always"):
            n = args.always_messages if mode == "always" else args.messages
            rate, calls = run(mode, n, root)
            base = base or rate
            print(f"{mode:<12} {calls:>8} {rate:>12,.0f} {rate / base:>8.2f}")


if __name__ == "__main__":
    main()
