"""Python side of `benchmarks/run classify`.

Times mailretry's default classifier over the same replies as
benchmarks/cpp/bm_classify.cc (the dev corpus lines that parse strictly,
destination "example.com"), cycled to N replies: classify_many on a list of
str and on a numpy str array, and classify one at a time. Each is repeated;
wall (perf_counter) and process CPU time per reply are reported as best and
median of the repeats (the machine is noisy). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import mailretry

ROOT = Path(__file__).resolve().parents[2]
DESTINATION = "example.com"  # what bm_classify passes to ClassifyText


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of `repeats` calls."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return wall, cpu


def per_reply(prefix: str, wall: list[float], cpu: list[float], n: int) -> dict[str, Any]:
    w = [1e9 * s / n for s in wall]
    c = [1e9 * s / n for s in cpu]
    return {
        f"{prefix}_ns_per_reply": statistics.median(w),  # wall, median of repeats
        f"{prefix}_ns_per_reply_best": min(w),
        f"{prefix}_ns_per_reply_max": max(w),
        f"{prefix}_cpu_ns_per_reply": statistics.median(c),
        f"{prefix}_cpu_ns_per_reply_best": min(c),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    # The labelled corpus lives outside the repository (collected from other
    # public projects), beside the checkout.
    path = Path(
        os.environ.get("MAILRETRY_DEV_REPLIES", ROOT.parent / "shared/smtp-replies/dev.jsonl")
    )
    if not path.is_file():
        sys.exit(f"bench_classify: the dev corpus is not at {path} (set MAILRETRY_DEV_REPLIES)")
    corpus = [json.loads(line)["reply"] for line in path.read_text().splitlines() if line.strip()]
    clf = mailretry.default_classifier()
    # Wire-shaped replies only, as bm_classify: lines without a basic code are
    # published explanations that strict parsing refuses (classify_many would raise).
    parsed = clf.classify_many(corpus, raise_on_error=False)
    replies = [text for text, ok in zip(corpus, parsed.ok.tolist(), strict=True) if ok]
    texts = (replies * (args.n // len(replies) + 1))[: args.n]
    as_numpy = np.array(texts)
    clf.classify_many(texts[:1000], destination=DESTINATION)  # warm-up

    out: dict[str, Any] = {
        "n": args.n,
        "repeats": args.repeats,
        "corpus_replies": len(corpus),
        "parsed_replies": len(replies),
        "mean_reply_bytes": sum(len(t.encode()) for t in replies) / len(replies),
    }
    out |= per_reply(
        "classify_many_list",
        *timed(lambda: clf.classify_many(texts, destination=DESTINATION), args.repeats),
        args.n,
    )
    out |= per_reply(
        "classify_many_numpy",
        *timed(lambda: clf.classify_many(as_numpy, destination=DESTINATION), args.repeats),
        args.n,
    )
    single_n = min(args.n, 50_000)
    single = texts[:single_n]
    classify = clf.classify
    out |= per_reply(
        "classify_single",
        *timed(lambda: [classify(t, DESTINATION) for t in single], max(1, args.repeats // 2)),
        single_n,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
