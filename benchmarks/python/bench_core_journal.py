"""Calls/s from Python with the compiled engine's journal (Engine.open_durable).

A sending loop (per message: submit, a share of take_ready(now, 100), report
"250 ..."), with the journal off and under each fsync policy.

    python benchmarks/python/bench_core_journal.py [--messages N] [--always-messages N]
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

MODES = ("off", "core-never", "core-group-5ms", "core-always")
T0 = 1_700_000_000.0


def workload(engine: Any, n: int) -> int:
    """A sending loop's calls (submit, take_ready of 100, report "250");
    returns how many engine calls were made."""
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
            engine.report(lease.msg_id, now, "250 2.0.0 OK")
            calls += 1
        done += len(leases)
    return calls


def run(mode: str, n: int, root: Path) -> tuple[float, int]:
    engine: Any
    if mode == "off":
        engine = Engine(seed=1)
    else:
        fsync = {"core-never": "never", "core-group-5ms": "group", "core-always": "always"}[mode]
        engine = Engine.open_durable(root / mode, seed=1, fsync=fsync, group_interval=0.005)
    start = time.perf_counter()
    calls = workload(engine, n)
    if mode != "off":
        engine.sync()
    elapsed = time.perf_counter() - start
    return calls / elapsed, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--always-messages", type=int, default=1_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, journal in {root}")
        print(f"{'mode':<18} {'calls':>8} {'calls/s':>12} {'vs off':>8}")
        base = None
        for mode in MODES:
            n = args.always_messages if mode == "core-always" else args.messages
            rate, calls = run(mode, n, root)
            base = base or rate
            print(f"{mode:<18} {calls:>8} {rate:>12,.0f} {rate / base:>8.2f}")


if __name__ == "__main__":
    main()
