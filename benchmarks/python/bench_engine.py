"""Python side of `benchmarks/run engine`.

The workload of benchmarks/cpp/bm_engine.cc (BM_EngineCycle, reply texts):
1M messages over 10k destinations ("d<i>.example"; every 4th message to a few
big destinations, geometric p=0.2, the rest uniform), submitted at once, then
take (limit 200k) → report → drain events → next wakeup in simulated time
(steps of at least 1 s) until every message has finished. Per attempt the
reply is kMix[(k * 7919 + msg_id) % 100] with k counting leases from 0 (86%
250, 6% 451 4.3.0, 2% greylisting, 3% 550 5.1.1, 1% 421 too many connections,
1% 452 over quota, 1% "421 4.4.1 connection refused"). Engine: default config
except concurrency 20 (max 50), 30-minute lease timeout, seed 7, wheel.
One op = one submitted message, one lease handed out, or one report.

The destinations are drawn with numpy (seed 42), not std::mt19937_64, so the
messages-per-destination counts follow the same distributions but are not
the same draws; the outcome sequence uses the same formula.

Measured here, each timed with wall (perf_counter) and process CPU time:
  batch        mailretry.Engine.submit_many / take_ready_arrays / report_many
  per_message  mailretry.Engine.submit / take_ready / report, one at a time
  pure_python  PurePythonEngine (pure_python_engine.py): dict + heapq, default
               schedule, code class only; same driver loop
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import mailretry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pure_python_engine import PurePythonEngine, classify_reply

MESSAGES = 1_000_000
DESTINATIONS = 10_000
LIMIT = 200_000
START = 1_700_000_000.0
MIX: list[tuple[int, str]] = [
    (86, "250 2.0.0 OK queued as 12345"),
    (6, "451 4.3.0 Temporary failure, please try again later"),
    (2, "451 4.7.1 Greylisted, please try again later"),
    (3, "550 5.1.1 The email account that you tried to reach does not exist"),
    (1, "421 4.7.0 Too many concurrent connections from your IP"),
    (1, "452 4.2.2 The email account that you tried to reach is over quota"),
    (1, "421 4.4.1 connection refused"),  # bm_engine's text for its transport failure
]
ENGINE_CONFIG: dict[str, Any] = {
    "destination_defaults": {"initial_concurrency": 20, "max_concurrency": 50},
    "lease_timeout": 1800.0,
}
SEED = 7


@dataclass
class Workload:
    ids: npt.NDArray[np.uint64]
    dest_idx: npt.NDArray[np.int64]
    names: list[str]
    dest_names: npt.NDArray[np.str_]  # one name per message, as submit_many takes them
    mix_text: list[str]  # 100 entries

    @classmethod
    def build(cls, messages: int = MESSAGES, destinations: int = DESTINATIONS) -> Workload:
        rng = np.random.default_rng(42)
        n = messages
        big = np.minimum(rng.geometric(0.2, size=n) - 1, destinations - 1)  # support 0, 1, ...
        tail = rng.integers(0, destinations, size=n)
        dest_idx = np.where(np.arange(n) % 4 == 0, big, tail)
        names = [f"d{i}.example" for i in range(destinations)]
        mix_text = [text for percent, text in MIX for _ in range(percent)]
        assert len(mix_text) == 100
        return cls(
            ids=np.arange(1, n + 1, dtype=np.uint64),
            dest_idx=dest_idx,
            names=names,
            dest_names=np.asarray(names)[dest_idx],
            mix_text=mix_text,
        )


@dataclass
class Result:
    ops: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rounds: int = 0
    sim_hours: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    bytes_per_pending: float | None = None
    phases_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "ops_per_s": round(self.ops / self.wall_s, 1),
            "ops_per_cpu_s": round(self.ops / self.cpu_s, 1),
            "ns_per_op_wall": round(1e9 * self.wall_s / self.ops, 2),
            "ns_per_op_cpu": round(1e9 * self.cpu_s / self.ops, 2),
            "rounds": self.rounds,
            "sim_hours": round(self.sim_hours, 2),
            "bytes_per_pending": None
            if self.bytes_per_pending is None
            else round(self.bytes_per_pending, 1),
            "phases_wall_s": {k: round(v, 4) for k, v in self.phases_s.items()},
            **self.outcomes,
        }


class Clock:
    """Wall and process-CPU time since start, minus paused intervals (like
    bm_engine's PauseTiming around Stats())."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.paused_wall = 0.0
        self.paused_cpu = 0.0

    def pause(self, fn: Callable[[], Any]) -> Any:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        self.paused_wall += time.perf_counter() - w
        self.paused_cpu += time.process_time() - c
        return out

    def stop(self, r: Result) -> None:
        r.wall_s = time.perf_counter() - self.wall0 - self.paused_wall
        r.cpu_s = time.process_time() - self.cpu0 - self.paused_cpu


def run_batch(w: Workload, drain: bool = True) -> Result:
    """The numpy batch API (GIL released inside each call)."""
    e = mailretry.Engine(ENGINE_CONFIG, seed=SEED, backend="wheel")
    mix = np.asarray(w.mix_text, dtype=object)
    r = Result(phases_s=dict.fromkeys(["submit", "take", "replies", "report", "drain"], 0.0))
    ph = r.phases_s
    now = START
    pc = time.perf_counter
    clock = Clock()
    t = pc()
    e.submit_many(w.ids, w.dest_names, now)
    ph["submit"] += pc() - t
    ops = len(w.ids)
    stats = clock.pause(e.stats)
    r.bytes_per_pending = stats["memory_bytes"] / stats["pending"]
    k = 0
    rounds = 0
    while True:
        t0 = pc()
        ids, _dest, attempts = e.take_ready_arrays(now, LIMIT)
        n = len(ids)
        ops += n
        t1 = pc()
        picks = ((np.arange(k, k + n, dtype=np.uint64) * 7919 + ids) % 100).astype(np.intp)
        k += n
        replies = mix[picks].tolist()
        t2 = pc()
        decisions = e.report_many(ids, replies, now, attempts=attempts)
        ops += len(decisions["ok"])
        t3 = pc()
        if drain:
            e.drain_events()
        t4 = pc()
        ph["take"] += t1 - t0
        ph["replies"] += t2 - t1
        ph["report"] += t3 - t2
        ph["drain"] += t4 - t3
        rounds += 1
        wake = e.next_wakeup()
        if wake is None:
            break
        now = max(now + 1.0, wake)
    clock.stop(r)
    s = e.stats()
    r.ops, r.rounds, r.sim_hours = ops, rounds, (now - START) / 3600
    r.outcomes = {key: s[key] for key in ("delivered", "bounced", "expired", "attempts")}
    return r


def run_per_message(w: Workload) -> Result:
    """The per-message API: submit / take_ready (Lease objects) / report."""
    e = mailretry.Engine(ENGINE_CONFIG, seed=SEED, backend="wheel")
    mix = w.mix_text
    r = Result()
    now = START
    ids = w.ids.tolist()
    dests = w.dest_names.tolist()
    clock = Clock()
    submit = e.submit
    for msg_id, dest in zip(ids, dests, strict=True):
        submit(msg_id, dest, now)
    ops = len(ids)
    k = 0
    rounds = 0
    report = e.report
    while True:
        leases = e.take_ready(now, LIMIT)
        ops += len(leases)
        for lease in leases:
            msg_id = lease.msg_id
            report(msg_id, now, mix[(k * 7919 + msg_id) % 100])
            k += 1
        ops += len(leases)
        e.drain_events()
        rounds += 1
        wake = e.next_wakeup()
        if wake is None:
            break
        now = max(now + 1.0, wake)
    clock.stop(r)
    s = e.stats()
    r.ops, r.rounds, r.sim_hours = ops, rounds, (now - START) / 3600
    r.outcomes = {key: s[key] for key in ("delivered", "bounced", "expired", "attempts")}
    return r


def run_pure_python(w: Workload, classify: bool = False) -> Result:
    """PurePythonEngine driven by the same loop (``classify``: with its regex classifier)."""
    e = PurePythonEngine(concurrency=20, classify=classify_reply if classify else None)
    mix = w.mix_text
    r = Result()
    now = START
    ids = w.ids.tolist()
    dests = w.dest_names.tolist()
    clock = Clock()
    e.submit_many(ids, dests, now)
    ops = len(ids)
    k = 0
    rounds = 0
    while True:
        leases = e.take_ready(now, LIMIT)
        n = len(leases)
        ops += n
        lease_ids = [lease[0] for lease in leases]
        replies = [mix[(j * 7919 + msg_id) % 100] for j, msg_id in enumerate(lease_ids, k)]
        k += n
        ops += len(e.report_many(lease_ids, replies, now))
        rounds += 1
        wake = e.next_wakeup()
        if wake is None:
            break
        now = max(now + 1.0, wake)
    clock.stop(r)
    r.ops, r.rounds, r.sim_hours = ops, rounds, (now - START) / 3600
    r.outcomes = {
        "delivered": e.delivered,
        "bounced": e.bounced,
        "expired": e.expired,
        "attempts": e.attempts,
    }
    return r


def pure_python_bytes_per_pending(w: Workload) -> float:
    """tracemalloc-counted bytes per pending message of PurePythonEngine with all
    messages submitted: the message objects, the dict, the ready deques (the id
    ints and the destination names exist beforehand and are not counted)."""
    ids = w.ids.tolist()
    dests = [sys.intern(d) for d in w.dest_names.tolist()]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    e = PurePythonEngine(concurrency=20)
    e.submit_many(ids, dests, START)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / e.pending


def best_and_median(results: list[Result]) -> dict[str, Any]:
    cpu = [r.cpu_s / r.ops * 1e9 for r in results]
    wall = [r.wall_s / r.ops * 1e9 for r in results]
    return {
        "repeats": len(results),
        "ns_per_op_cpu_best": round(min(cpu), 2),
        "ns_per_op_cpu_median": round(statistics.median(cpu), 2),
        "ns_per_op_wall_best": round(min(wall), 2),
        "ns_per_op_wall_median": round(statistics.median(wall), 2),
        "runs": [r.summary() for r in results],
    }


def progress(name: str, r: Result) -> None:
    print(
        f"engine/python: {name}: {1e9 * r.cpu_s / r.ops:.1f} ns/op cpu, "
        f"{1e9 * r.wall_s / r.ops:.1f} ns/op wall",
        file=sys.stderr,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--skip-per-message", action="store_true")
    ap.add_argument("--skip-pure", action="store_true")
    ap.add_argument("--no-drain", action="store_true", help="also run batch without drain_events")
    ap.add_argument("--skip-memory", action="store_true", help="no tracemalloc of PurePythonEngine")
    args = ap.parse_args()

    w = Workload.build(args.messages)
    runs: dict[str, list[Result]] = {
        "batch": [],
        "pure_python": [],
        "pure_python_classified": [],
        "per_message": [],
    }
    if args.no_drain:
        runs["batch_no_drain"] = []
    for rep in range(args.repeats):
        # Interleaved, so that every variant sees the same machine state.
        gc.collect()
        runs["batch"].append(run_batch(w))
        progress("batch", runs["batch"][-1])
        if args.no_drain:
            gc.collect()
            runs["batch_no_drain"].append(run_batch(w, drain=False))
            progress("batch_no_drain", runs["batch_no_drain"][-1])
        if not args.skip_pure:
            gc.collect()
            runs["pure_python"].append(run_pure_python(w))
            progress("pure_python", runs["pure_python"][-1])
            gc.collect()
            runs["pure_python_classified"].append(run_pure_python(w, classify=True))
            progress("pure_python_classified", runs["pure_python_classified"][-1])
        if not args.skip_per_message and rep == 0:
            gc.collect()
            runs["per_message"].append(run_per_message(w))
            progress("per_message", runs["per_message"][-1])
    out: dict[str, Any] = {"messages": args.messages, "destinations": DESTINATIONS}
    for name, results in runs.items():
        if results:
            out[name] = best_and_median(results)
    if not args.skip_pure and not args.skip_memory:
        out["pure_python_bytes_per_pending"] = round(pure_python_bytes_per_pending(w), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
