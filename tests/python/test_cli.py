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


def test_evaluate_prints_table(dev_replies_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
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


def test_classify_bare_reply_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "421 4.7.0 Try again later, closing connection"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["code"] == 421 and out["transient"] is True
    assert main(["classify", "5.1.1 no mailbox by that name"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["basic_code_inferred"] is True and out["category"] == "mailbox_unknown"
    assert main(["classify", "Diagnostic-Code: smtp; 421 4.7.0 too many connections"]) == 0
    assert json.loads(capsys.readouterr().out)["category"] == "too_many_connections"


def test_classify_bare_argument_neither_file_nor_reply(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "no-such-file.txt"]) == 2
    assert "neither a file nor a reply" in capsys.readouterr().err


def test_classify_table_format(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["classify", "--format", "table", "-r", "452 4.2.2 Mailbox full", "-r", "4.4.7 gave up"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["code", "enhanced", "category", "action"]
    assert lines[1].split()[:4] == ["452", "4.2.2", "mailbox_full", "retry"]
    assert lines[2].startswith("400?")
    assert "inferred" in lines[-1]


def test_classify_jsonl_without_reply_is_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "550 5.1.1 x"}\n'))
    assert main(["classify", "--jsonl", "-"]) == 2
    assert "'reply'" in capsys.readouterr().err


def test_evaluate_reports_confusions_sources_and_splits(
    dev_replies_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--split", "tune", str(dev_replies_file)]) == 0
    out = capsys.readouterr().out
    assert "top confusions" in out and "source (worst" in out
    assert main(["evaluate", "--json", "--split", "validation", str(dev_replies_file)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"] > 0 and "per_source" in summary and "top_confusions" in summary


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"reply": "550 5.1.1 x", "action": "bounce"}', "'category'"),
        ('{"category": "mailbox_unknown", "action": "bounce"}', "'reply'"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not JSON"),
    ],
)
def test_evaluate_bad_rows_are_clean_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    f = tmp_path / "labels.jsonl"
    f.write_text(line + "\n")
    assert main(["evaluate", str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_evaluate_split_needs_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "labels.jsonl"
    f.write_text('{"reply": "550 5.1.1 x", "category": "mailbox_unknown", "action": "bounce"}\n')
    assert main(["evaluate", "--split", "tune", str(f)]) == 2
    assert "source" in capsys.readouterr().err
    assert main(["evaluate", str(f)]) == 0
