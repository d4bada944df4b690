"""Python side of `benchmarks/run classify`.

Times mailretry.classify_many (list of str and numpy str array) and the
one-at-a-time mailretry.classify over the dev corpus, repeated to N replies,
and prints one JSON object. Best of several repeats (the machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import mailretry

ROOT = Path(__file__).resolve().parents[2]


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    corpus = [
        json.loads(line)["reply"]
        for line in (ROOT / "tests/data/dev_replies.jsonl").read_text().splitlines()
        if line.strip()
    ]
    texts = (corpus * (args.n // len(corpus) + 1))[: args.n]
    as_numpy = np.array(texts)
    clf = mailretry.default_classifier()
    clf.classify_many(texts[:1000])  # warm-up
    many_list = best_of(lambda: clf.classify_many(texts), args.repeats)
    many_numpy = best_of(lambda: clf.classify_many(as_numpy), args.repeats)
    single_n = min(args.n, 50_000)
    single = best_of(lambda: [clf.classify(t) for t in texts[:single_n]], max(1, args.repeats // 2))
    print(
        json.dumps(
            {
                "n": args.n,
                "classify_many_list_ns_per_reply": 1e9 * many_list / args.n,
                "classify_many_numpy_ns_per_reply": 1e9 * many_numpy / args.n,
                "classify_single_ns_per_reply": 1e9 * single / single_n,
            }
        )
    )


if __name__ == "__main__":
    main()
