"""Score the classifier against labelled replies (JSON lines with ``reply``,
``category`` and ``action``, as in the project's dev corpus)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailretry.classify import CATEGORIES, Classifier, default_classifier

TRANSIENT_ACTIONS = frozenset({"retry", "throttle", "suspend_domain"})


def load_labelled(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file of labelled replies."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def expected_transient(row: Mapping[str, Any]) -> bool:
    """Ground truth for transient/permanent: a retrying action is transient;
    ``bounce`` is permanent; ``remediate`` follows the reply's code class."""
    action = row["action"]
    if action in TRANSIENT_ACTIONS:
        return True
    if action == "bounce":
        return False
    return str(row["reply"]).lstrip()[:1] == "4"


@dataclass
class Evaluation:
    total: int = 0
    parse_errors: int = 0
    category_correct: int = 0
    action_correct: int = 0
    transient_correct: int = 0
    true_positive: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    actual: Counter[str] = field(default_factory=Counter)
    mistakes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def category_accuracy(self) -> float:
        return self.category_correct / self.total if self.total else 0.0

    @property
    def action_accuracy(self) -> float:
        return self.action_correct / self.total if self.total else 0.0

    @property
    def transient_accuracy(self) -> float:
        return self.transient_correct / self.total if self.total else 0.0

    def precision(self, category: str) -> float | None:
        p = self.predicted[category]
        return self.true_positive[category] / p if p else None

    def recall(self, category: str) -> float | None:
        a = self.actual[category]
        return self.true_positive[category] / a if a else None

    def table(self) -> str:
        """A readable per-category precision/recall table and the totals."""

        def pct(x: float | None) -> str:
            return "   -  " if x is None else f"{100 * x:5.1f}%"

        lines = [f"{'category':24} {'n':>4} {'pred':>4} {'precision':>9} {'recall':>7}"]
        for c in CATEGORIES:
            if self.actual[c] or self.predicted[c]:
                lines.append(
                    f"{c:24} {self.actual[c]:4d} {self.predicted[c]:4d} "
                    f"{pct(self.precision(c)):>9} {pct(self.recall(c)):>7}"
                )
        lines.append(
            f"\nreplies {self.total}  parse errors {self.parse_errors}  "
            f"category {pct(self.category_accuracy)}  action {pct(self.action_accuracy)}  "
            f"transient {pct(self.transient_accuracy)}"
        )
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "parse_errors": self.parse_errors,
            "category_accuracy": self.category_accuracy,
            "action_accuracy": self.action_accuracy,
            "transient_accuracy": self.transient_accuracy,
            "per_category": {
                c: {
                    "n": self.actual[c],
                    "precision": self.precision(c),
                    "recall": self.recall(c),
                }
                for c in CATEGORIES
                if self.actual[c] or self.predicted[c]
            },
        }


def evaluate(rows: Iterable[Mapping[str, Any]], classifier: Classifier | None = None) -> Evaluation:
    """Classify every labelled row and compare with its labels."""
    clf = classifier or default_classifier()
    ev = Evaluation()
    for row in rows:
        ev.total += 1
        want_cat, want_act = row["category"], row["action"]
        want_transient = expected_transient(row)
        ev.actual[want_cat] += 1
        try:
            # Labelled corpora come from logs and bounces: some lines lack a basic code.
            got = clf.classify(row["reply"], lenient=True)
        except ValueError as e:
            ev.parse_errors += 1
            ev.mistakes.append({"reply": row["reply"], "error": str(e)})
            continue
        ev.predicted[got.category] += 1
        ev.category_correct += got.category == want_cat
        ev.true_positive[want_cat] += got.category == want_cat
        ev.action_correct += got.action == want_act
        ev.transient_correct += got.transient == want_transient
        if got.category != want_cat or got.action != want_act:
            ev.mistakes.append(
                {
                    "reply": row["reply"],
                    "want": f"{want_cat}/{want_act}",
                    "got": f"{got.category}/{got.action}",
                    "rule": got.rule,
                }
            )
    return ev
