"""Score the classifier against labelled replies (JSON lines with ``reply``,
``category`` and ``action``, and optionally ``source``, as in the project's dev
corpus).

The dev corpus is split by ``source`` into a *tune* and a *validation* part
(:func:`corpus_split`; the same split the C++ tests use). Rules are written
against the tune part; the validation part measures how they do on sources
whose wording nobody looked at while writing them.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mailretry import _core
from mailretry.classify import CATEGORIES, Classifier, default_classifier
from mailretry.errors import InvalidInputError

TRANSIENT_ACTIONS = frozenset({"retry", "throttle", "suspend_domain"})
Split = Literal["tune", "validation", "all"]
SPLITS: tuple[str, ...] = ("tune", "validation", "all")


def corpus_split(source: str) -> str:
    """``"tune"`` or ``"validation"``: the part of the dev corpus a row with
    this ``source`` belongs to (a stable hash of the source, about 28 % of the
    sources in validation)."""
    return _core.corpus_split(source)


def select_split(rows: Iterable[Mapping[str, Any]], split: str) -> list[Mapping[str, Any]]:
    """The rows of ``split`` (``"all"`` keeps every row). Rows without a
    ``source`` cannot be placed and raise InvalidInputError unless ``split``
    is ``"all"``."""
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    out: list[Mapping[str, Any]] = []
    for i, row in enumerate(rows):
        if split == "all":
            out.append(row)
            continue
        source = row.get("source")
        if not isinstance(source, str):
            raise InvalidInputError(
                f"row {i + 1}: no 'source' string, so it belongs to no split; use --split all"
            )
        if corpus_split(source) == split:
            out.append(row)
    return out


def load_labelled(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file of labelled replies. Each line must be an object
    with string ``reply``, ``category`` and ``action``; anything else raises
    InvalidInputError naming the line."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{os.fspath(path)}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{where}: not JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise InvalidInputError(f"{where}: expected a JSON object")
            missing = [k for k in ("reply", "category", "action") if k not in row]
            if missing:
                raise InvalidInputError(
                    f"{where}: missing {', '.join(repr(k) for k in missing)}; labelled rows "
                    "need 'reply', 'category' and 'action'"
                )
            for k in ("reply", "category", "action"):
                if not isinstance(row[k], str):
                    raise InvalidInputError(f"{where}: {k!r} must be a string")
            rows.append(row)
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
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (want, got)
    per_source: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
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

    def top_confusions(self, n: int = 10) -> list[tuple[str, str, int]]:
        """The ``n`` most frequent (expected, predicted) category pairs that differ."""
        return [(want, got, k) for (want, got), k in self.confusions.most_common(n)]

    def source_accuracy(self) -> list[tuple[str, int, int]]:
        """(source, rows, category-correct rows), worst accuracy first."""
        rows = [(s, v[0], v[1]) for s, v in self.per_source.items()]
        rows.sort(key=lambda t: (t[2] / t[1], -t[1], t[0]))
        return rows

    def table(self, *, sources: int = 15) -> str:
        """A readable per-category precision/recall table, the top confusions,
        per-source accuracy (the ``sources`` worst) and the totals."""

        def pct(x: float | None) -> str:
            return "   -  " if x is None else f"{100 * x:5.1f}%"

        lines = [f"{'category':24} {'n':>4} {'pred':>4} {'precision':>9} {'recall':>7}"]
        for c in CATEGORIES:
            if self.actual[c] or self.predicted[c]:
                lines.append(
                    f"{c:24} {self.actual[c]:4d} {self.predicted[c]:4d} "
                    f"{pct(self.precision(c)):>9} {pct(self.recall(c)):>7}"
                )
        confusions = self.top_confusions()
        if confusions:
            lines.append(f"\n{'expected':24} {'predicted':24} {'n':>4}   (top confusions)")
            for want, got, k in confusions:
                lines.append(f"{want:24} {got:24} {k:4d}")
        if self.per_source and sources > 0:
            lines.append(f"\n{'rows':>4} {'category':>8}  source (worst {sources})")
            for source, n, ok in self.source_accuracy()[:sources]:
                short = source if len(source) <= 90 else source[:87] + "..."
                lines.append(f"{n:4d} {pct(ok / n):>8}  {short}")
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
            "top_confusions": [
                {"expected": w, "predicted": g, "n": k} for w, g, k in self.top_confusions()
            ],
            "per_source": {
                s: {"n": n, "category_correct": ok} for s, n, ok in self.source_accuracy()
            },
        }


def evaluate(
    rows: Iterable[Mapping[str, Any]],
    classifier: Classifier | None = None,
    *,
    split: str = "all",
) -> Evaluation:
    """Classify every labelled row (of ``split``: tune, validation or all) and
    compare with its labels. A row without string ``reply``/``category``/
    ``action`` raises InvalidInputError."""
    clf = classifier or default_classifier()
    ev = Evaluation()
    for i, row in enumerate(select_split(rows, split)):
        for k in ("reply", "category", "action"):
            if not isinstance(row.get(k), str):
                raise InvalidInputError(f"row {i + 1}: {k!r} missing or not a string")
        ev.total += 1
        want_cat, want_act = row["category"], row["action"]
        want_transient = expected_transient(row)
        ev.actual[want_cat] += 1
        source = str(row.get("source", "(no source)"))
        ev.per_source[source][0] += 1
        try:
            # Labelled corpora come from logs and bounces: some lines lack a basic code.
            got = clf.classify(row["reply"], lenient=True)
        except ValueError as e:
            ev.parse_errors += 1
            ev.mistakes.append({"reply": row["reply"], "error": str(e)})
            continue
        ev.predicted[got.category] += 1
        ev.category_correct += got.category == want_cat
        ev.per_source[source][1] += got.category == want_cat
        ev.true_positive[want_cat] += got.category == want_cat
        ev.action_correct += got.action == want_act
        ev.transient_correct += got.transient == want_transient
        if got.category != want_cat:
            ev.confusions[(want_cat, got.category)] += 1
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
