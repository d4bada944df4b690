"""The ``mailretry`` command line."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from mailretry.classify import Classifier
from mailretry.errors import InvalidInputError, MailretryError
from mailretry.sim_cli import add_simulate_parser

_LOOKS_LIKE_REPLY = re.compile(
    r"\s*(?:[245]\d\d(?:[ -]|$)|[245]\.\d{1,3}\.\d{1,3}\b|diagnostic-code:|smtp;|host \S+ said:)",
    re.IGNORECASE,
)


def _looks_like_reply(arg: str) -> bool:
    """A bare argument that starts with a reply code ("421 ...", "550-...",
    "5.1.1 ...") or spans lines is a reply, not a file name."""
    return bool(_LOOKS_LIKE_REPLY.match(arg)) or "\n" in arg


def _replies(args: argparse.Namespace) -> Iterator[str]:
    if args.reply:
        yield from args.reply
        if args.file is None:
            return
    if args.file not in (None, "-") and not os.path.exists(args.file):
        if _looks_like_reply(args.file):
            yield args.file
            return
        raise InvalidInputError(
            f"{args.file!r} is neither a file nor a reply (a reply starts with a code like "
            "'421 ' or '5.1.1 '; use -r TEXT for any other text)"
        )
    stream: TextIO
    stream = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")  # noqa: SIM115
    with stream:
        for raw in stream:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if args.jsonl:
                record = json.loads(line)
                if isinstance(record, dict):
                    if not isinstance(record.get("reply"), str):
                        raise InvalidInputError(f"JSON line without a 'reply' string: {line[:80]}")
                    yield record["reply"]
                else:
                    yield str(record)
            else:
                yield line


_TABLE_COLUMNS = ("code", "enhanced", "category", "action", "transient", "rule", "reply")


def _table_row(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return ["", "", "error", "", "", "", f"{result['reply']}  ({result['error']})"]
    code = str(result["code"]) + ("?" if result.get("basic_code_inferred") else "")
    return [
        code,
        result["enhanced"] or "",
        result["category"],
        result["action"],
        "transient" if result["transient"] else "permanent",
        result["rule"],
        " ".join(str(result["reply"]).split()),
    ]


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    """Aligned columns; the last (the reply) is cut to keep lines readable."""
    header = list(_TABLE_COLUMNS)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        last = r[-1] if len(r[-1]) <= 100 else r[-1][:97] + "..."
        out.write("  ".join([*cells, last]).rstrip() + "\n")


def _classify(args: argparse.Namespace) -> int:
    classifier = Classifier.from_toml(args.rules) if args.rules else Classifier()
    failures = 0
    out = sys.stdout
    table: list[list[str]] = []
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
            if r.basic_code_inferred:
                result["basic_code_inferred"] = True
        except ValueError as e:
            failures += 1
            result = {"reply": text, "error": str(e)}
        if args.format == "table":
            table.append(_table_row(result))
        else:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    if args.format == "table":
        _print_table(table, out)
        if any(row[0].endswith("?") for row in table):
            out.write("(code? = basic code inferred from the enhanced code)\n")
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
        help="classify SMTP replies, one JSON object (or table row) per reply",
        description="Read replies (a reply as the argument, -r, a file or stdin; one per line) "
        "and print one JSON object per reply: code, enhanced, text, category, action, "
        "transient, rule. Example: mailretry classify '421 4.7.0 Try again later'.",
    )
    p.add_argument(
        "file",
        nargs="?",
        help="a reply ('421 4.7.0 ...'), or a file with one reply per line ('-' = stdin)",
    )
    p.add_argument(
        "--format",
        choices=("jsonl", "table"),
        default="jsonl",
        help="output: JSON lines (default) or a readable table",
    )
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
