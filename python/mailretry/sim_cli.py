"""``mailretry simulate``: compare retry policies on a scenario from the
command line (a progress bar on stderr, the table on stdout, a PNG and a CSV
in ``--out``)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any

from mailretry.errors import InvalidInputError

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


def _explain() -> int:
    from mailretry import sim

    info = sim.explain()
    for title, key in (("Receiver parameters", "profiles"), ("Policy presets", "presets")):
        print(
            f"{title} (confidence: H own documentation/source, M relayed or secondary, "
            "L folklore, assumption = no source)"
        )
        for row in info[key]:
            print(f"  [{row['confidence']}] {row['item']} / {row['field']} = {row['value']}")
            print(f"      {row['source']}")
        print()
    return 0


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "never"
        return f"{v:.{digits}f}"
    return str(v)


def _print_frame(df: Any, stream: Any = None) -> None:
    out = stream or sys.stdout
    cols = [str(c) for c in df.columns]
    index_names = [str(n) for n in df.index.names]
    rows = []
    for idx, r in df.iterrows():
        key = idx if isinstance(idx, tuple) else (idx,)
        rows.append([_fmt(k) for k in key] + [_fmt(v) for v in r.tolist()])
    header = index_names + cols
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    out.write("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)) + "\n")
    for r in rows:
        out.write("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + "\n")


def _suite(args: argparse.Namespace) -> int:
    from mailretry import sim

    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    reputation = {"off": [False], "on": [True], "both": [False, True]}[args.reputation]
    names = args.suite or None
    policies = args.policy or None
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        if not args.no_progress:
            sys.stderr.write(f"\rsuite: {done}/{total} runs {time.monotonic() - start:5.1f}s")
            sys.stderr.flush()

    df = sim.run_suite(
        names,
        seeds,
        policies,
        reputation=reputation,
        messages=args.messages,
        progress=progress,
        directory=args.suite_dir,
    )
    if not args.no_progress:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - start
    table = sim.suite_table(df)
    show = table.rename(
        columns={
            "delivered_pct": "dlv%",
            "bounced_pct": "bnc%",
            "expired_pct": "exp%",
            "held_pct": "held%",
            "replies_4xx_per_delivered": "4xx/dlv",
            "p50_h": "p50_h",
            "p95_h": "p95_h",
            "p99_h": "p99_h",
            "dlv_p95_h": "dlv_p95_h",
            "structural_precision": "s_prec",
            "structural_recall": "s_rec",
        }
    )
    for (scenario, rep), block in show.groupby(level=[0, 1], sort=False):
        effect = "on" if rep else "off"
        print(f"== {scenario} (seeds {args.seeds}; reputation-from-retries {effect})")
        _print_frame(block.droplevel([0, 1]))
        print()
    env = sim.envelope(df)
    print(
        "== envelope: adaptive / best preset (ratio > 1: a preset did better; "
        "p95 over all messages, undelivered = never)"
    )
    _print_frame(env)
    os.makedirs(args.out, exist_ok=True)
    raw_path = os.path.join(args.out, "suite_runs.csv")
    df.to_csv(raw_path, index=False)
    suite_path = os.path.join(args.out, "suite.csv")
    env_path = os.path.join(args.out, "envelope.csv")
    table.to_csv(suite_path)
    env.to_csv(env_path)
    written = [raw_path, suite_path, env_path]
    try:
        written.append(sim.plot_suite(df, os.path.join(args.out, "suite.png")))
    except ImportError as e:  # pragma: no cover - depends on the environment
        sys.stderr.write(f"no PNG: {e}\n")
    sys.stderr.write(f"{len(df)} runs in {elapsed:.1f} s; wrote {', '.join(written)}\n")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    if args.explain:
        return _explain()
    if args.suite is not None or args.suite_dir is not None:
        # --suite-dir alone used to fall through to the default scenario,
        # silently measuring something else than the directory named.
        if args.scenario:
            raise InvalidInputError("a scenario file and --suite/--suite-dir exclude each other")
        return _suite(args)
    from mailretry import sim

    scenario = sim.load_scenario(args.scenario) if args.scenario else sim.Scenario(name="default")
    if args.quick:
        scenario.messages = QUICK_MESSAGES
        scenario.tail_domains = 300
    if args.messages is not None:
        scenario.messages = args.messages
    if args.seed is not None:
        scenario.seed = args.seed
    if args.reputation == "on":
        scenario.reputation_from_retries = True
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
    _print_frame(table)
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "comparison.csv")
    table.to_csv(csv_path)
    png_path = sim.plot(results, os.path.join(args.out, "comparison.png"))
    sys.stderr.write(f"wrote {csv_path} and {png_path}\n")
    return 0


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command to an argparse sub-parser group."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="compare retry policies on a simulated workload",
        description="Simulate a scenario (TOML; default: the built-in one) under the preset "
        "policies (naive, postfix, exim, kumomta, powermta: each MTA's schedule with its queue "
        "manager) and mailretry's adaptive default, all with the same seed; or, with --suite, "
        "the standard scenarios shipped with the package for several seeds, ending with the "
        "envelope table (adaptive against the best preset). Every run continues until each "
        "message is delivered, bounced or expired. Writes CSV and PNG files to --out.",
    )
    p.add_argument("scenario", nargs="?", help="scenario TOML file")
    p.add_argument(
        "--suite",
        nargs="*",
        metavar="NAME",
        help="run the standard suite (all scenarios, or those named)",
    )
    p.add_argument(
        "--suite-dir",
        metavar="DIR",
        help="run the *.toml scenarios in DIR as the suite instead of the packaged ones "
        "(implies --suite; with --suite NAME ..., only those)",
    )
    p.add_argument("--seeds", default="1,2,3", help="suite seeds, comma-separated (default 1,2,3)")
    p.add_argument(
        "--reputation",
        choices=["off", "on", "both"],
        default="off",
        help="the receivers' reputation-from-retries effect (default off: no source sizes it)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="list every receiver parameter and preset default with its source, then exit",
    )
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
