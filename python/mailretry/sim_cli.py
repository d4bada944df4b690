"""``mailretry simulate``: compare retry policies on a scenario from the
command line (a progress bar on stderr, the table on stdout, a PNG and a CSV
in ``--out``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

#: --quick shrinks the scenario to this many messages (a smoke run).
QUICK_MESSAGES = 5_000


class _Bar:
    """A one-line text progress bar over several concurrent runs."""

    def __init__(self, names: list[str], stream: Any) -> None:
        self.done = dict.fromkeys(names, 0.0)
        self.stream = stream
        self.start = time.monotonic()
        self.last = -1.0
        # Redraw in place on a terminal; in a log, a line every 10% is enough.
        self.step = 0.01 if getattr(stream, "isatty", lambda: False)() else 0.1
        self.end = "\r" if self.step == 0.01 else "\n"

    def __call__(self, name: str, fraction: float) -> bool:
        self.done[name] = fraction
        total = sum(self.done.values()) / len(self.done)
        if total - self.last >= self.step or (total >= 1.0 and self.last < 1.0):
            self.last = total
            width = 40
            filled = round(total * width)
            elapsed = time.monotonic() - self.start
            line = (
                f"simulating {len(self.done)} policies [{'#' * filled}{'.' * (width - filled)}]"
                f" {100 * total:5.1f}% {elapsed:5.1f}s"
            )
            self.stream.write("\r" + line if self.end == "\r" else line + "\n")
            self.stream.flush()
        return True

    def close(self) -> None:
        if self.end == "\r":
            self.stream.write("\n")
        self.stream.flush()


def _simulate(args: argparse.Namespace) -> int:
    from mailretry import sim

    scenario = sim.load_scenario(args.scenario) if args.scenario else sim.Scenario(name="default")
    if args.quick:
        scenario.messages = QUICK_MESSAGES
        scenario.tail_domains = 300
    if args.messages is not None:
        scenario.messages = args.messages
    if args.seed is not None:
        scenario.seed = args.seed
    scenario.check()
    policies = args.policy or None
    names = list(policies) if policies else [*sim.POLICIES, *scenario.policies]
    bar = _Bar(names, sys.stderr) if not args.no_progress else None
    try:
        results = sim.run_many(scenario, policies, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    table = sim.summary_table(results)
    pd = importlib.import_module("pandas")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string())
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "comparison.csv")
    table.to_csv(csv_path)
    png_path = sim.plot(results, os.path.join(args.out, "comparison.png"))
    sys.stderr.write(f"wrote {csv_path} and {png_path}\n")
    if "adaptive" in results:
        a = results["adaptive"].raw["summary"]
        for other in ("naive-15m", "postfix"):
            if other not in results:
                continue
            o = results[other].raw["summary"]
            fewer = a["replies_4xx_per_delivered"] < o["replies_4xx_per_delivered"]
            no_later = a["ttd_p95_s"] <= o["ttd_p95_s"]
            sys.stderr.write(
                f"adaptive vs {other}: 4xx/delivered {a['replies_4xx_per_delivered']:.3f} vs "
                f"{o['replies_4xx_per_delivered']:.3f} ({'fewer' if fewer else 'NOT fewer'}), "
                f"p95 delivery {a['ttd_p95_s'] / 3600:.2f} h vs {o['ttd_p95_s'] / 3600:.2f} h "
                f"({'not later' if no_later else 'LATER'})\n"
            )
    return 0


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command to an argparse sub-parser group."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="compare retry policies on a simulated workload",
        description="Simulate a scenario (TOML; default: the built-in one) under the naive "
        "15-minute, Postfix, Exim and KumoMTA schedules, the seed's schedule without "
        "destination state, and mailretry's adaptive default, all with the same seed. "
        "Prints the comparison table and writes comparison.csv and comparison.png.",
    )
    p.add_argument("scenario", nargs="?", help="scenario TOML file")
    p.add_argument("--out", default="sim-out", help="output directory (default: sim-out)")
    p.add_argument(
        "--quick", action="store_true", help=f"a smoke run with {QUICK_MESSAGES} messages"
    )
    p.add_argument("--messages", type=int, help="override the number of messages")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument(
        "--policy", action="append", help="run only this policy (repeatable; default: all)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)
    return p
