"""Calls/s from Python with the compiled engine's journal (Engine.open_durable).

Same sending loop as bench_journal.py (per message: submit, a share of
take_ready(now, 100), report "250 ..."), so the figures compare with the
Python-level DurableEngine there; one DurableEngine mode (group, 5 ms) is run
alongside for a same-load comparison.

    python benchmarks/python/bench_core_journal.py [--messages N] [--always-messages N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_journal import workload

from mailretry import Engine
from mailretry.durable import DurableEngine

MODES = ("off", "core-never", "core-group-5ms", "core-always", "python-group-5ms")


def run(mode: str, n: int, root: Path) -> tuple[float, int]:
    engine: Any
    if mode == "off":
        engine = Engine(seed=1)
    elif mode.startswith("core-"):
        fsync = {"core-never": "never", "core-group-5ms": "group", "core-always": "always"}[mode]
        engine = Engine.open_durable(root / mode, seed=1, fsync=fsync, group_interval=0.005)
    else:
        engine = DurableEngine(root / mode, seed=1, fsync="group", group_ms=5, compact_every=None)
    start = time.perf_counter()
    calls = workload(engine, n)
    if mode.startswith("core-"):
        engine.sync()
    elif mode != "off":
        engine.close()
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
