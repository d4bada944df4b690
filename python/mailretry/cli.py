"""The ``mailretry`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from mailretry.classify import Classifier
from mailretry.errors import MailretryError
from mailretry.sim_cli import add_simulate_parser


def _replies(args: argparse.Namespace) -> Iterator[str]:
    if args.reply:
        yield from args.reply
        return
    stream: TextIO
    stream = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")  # noqa: SIM115
    with stream:
        for raw in stream:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if args.jsonl:
                record = json.loads(line)
                yield record["reply"] if isinstance(record, dict) else str(record)
            else:
                yield line


def _classify(args: argparse.Namespace) -> int:
    classifier = Classifier.from_toml(args.rules) if args.rules else Classifier()
    failures = 0
    out = sys.stdout
    for text in _replies(args):
        result: dict[str, Any]
        try:
            r = classifier.classify(text, args.destination, lenient=args.lenient)
            result = {
                "reply": text,
                "code": r.code,
                "enhanced": r.enhanced,
                "text": r.text,
                "category": r.category,
                "action": r.action,
                "transient": r.transient,
                "rule": r.rule,
            }
        except ValueError as e:
            failures += 1
            result = {"reply": text, "error": str(e)}
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 1 if failures and args.strict else 0


def _evaluate(args: argparse.Namespace) -> int:
    from mailretry.evaluate import evaluate, load_labelled

    classifier = Classifier.from_toml(args.rules) if args.rules else Classifier()
    ev = evaluate(load_labelled(args.file), classifier, split=args.split)
    if args.json:
        print(json.dumps(ev.summary(), indent=2))
    else:
        print(ev.table())
        if args.mistakes:
            for m in ev.mistakes:
                print(json.dumps(m, ensure_ascii=False))
    return 0


def _rules(args: argparse.Namespace) -> int:
    classifier = Classifier.from_toml(args.rules) if args.rules else Classifier()
    for name in classifier.rule_names():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailretry", description="Retry scheduling for email sending platforms."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "classify",
        help="classify SMTP replies, one JSON object per reply",
        description="Read replies (arguments, a file or stdin; one per line) and print one "
        "JSON object per reply: code, enhanced, text, category, action, transient, rule.",
    )
    p.add_argument("file", nargs="?", help="file with one reply per line ('-' = stdin)")
    p.add_argument("-r", "--reply", action="append", help="a reply text (repeatable)")
    p.add_argument("--jsonl", action="store_true", help="input lines are JSON with a 'reply' key")
    p.add_argument("-d", "--destination", help="destination domain (scopes user rules)")
    p.add_argument("--rules", help="TOML file with [[classifier.rules]]")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="accept log/bounce text without a basic code ('5.1.1 User unknown'; code 0)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any reply fails to parse")
    p.set_defaults(func=_classify)

    p = sub.add_parser(
        "evaluate", help="precision/recall of the classifier on labelled replies (JSON lines)"
    )
    p.add_argument("file", help="JSON lines with reply, category, action")
    p.add_argument("--rules", help="TOML file with [[classifier.rules]]")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--mistakes", action="store_true", help="also list misclassified replies")
    p.add_argument(
        "--split",
        choices=("tune", "validation", "all"),
        default="all",
        help="score only the dev corpus's tune or validation split (by 'source'; default all)",
    )
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("rules", help="list the classifier's rules in evaluation order")
    p.add_argument("--rules", help="TOML file with [[classifier.rules]]")
    p.set_defaults(func=_rules)

    add_simulate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MailretryError as e:
        print(f"mailretry: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"mailretry: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
