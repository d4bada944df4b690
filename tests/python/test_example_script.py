"""examples/send_with_aiosmtplib.py --demo runs as the README says (its real
MX mode is run against a private DNS and Postfix in test_real_servers.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("aiosmtplib")

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "send_with_aiosmtplib.py"


def test_demo_greylists_retries_and_bounces() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--demo", "--count=2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # alice@example.com and bob@example.org twice each: greylisted, then
    # delivered on the retry; nobody@example.org twice: bounced (550 5.1.1).
    assert "done: 4 delivered, 2 bounced, 0 expired, 0 pending" in out, out
    assert "Greylisted" in out
    assert "5.1.1" in out


def test_demo_refuses_options_it_cannot_honour() -> None:
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--demo", "--server=127.0.0.1:25"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--demo runs in virtual time" in res.stderr
