from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailretry.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_classify_file_prints_one_json_object_per_reply(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(EXAMPLES / "replies.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [ln for ln in (EXAMPLES / "replies.txt").read_text().splitlines() if ln.strip()]
    assert len(lines) == len(expected)
    first = json.loads(lines[0])
    assert set(first) >= {"code", "enhanced", "text", "category", "action", "transient", "rule"}


def test_classify_arguments_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "-r", "421 4.4.5 busy", "-r", "nonsense"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert out[0]["code"] == 421 and "error" in out[1]
    assert main(["classify", "--strict", "-r", "nonsense"]) == 1


def test_classify_stdin_jsonl(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"reply": "550 5.1.1 no such user"}\n'))
    assert main(["classify", "--jsonl", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["category"] == "mailbox_unknown"


def test_evaluate_prints_table(
    dev_replies_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(dev_replies_file)]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "mailbox_unknown" in out


def test_bad_rules_file_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "r.toml"
    bad.write_text(
        '[[classifier.rules]]\nname = "x"\ntext = "(("\ncategory = "rate_limit"\naction = "retry"\n'
    )
    assert main(["classify", "--rules", str(bad), "-r", "421 x"]) == 2
    assert "x" in capsys.readouterr().err
