from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dev_replies_path() -> Path:
    """The labelled development corpus. It lives outside the repository (it was
    collected from other public projects): ``../shared/smtp-replies/dev.jsonl``
    beside the checkout, or the file named by ``MAILRETRY_DEV_REPLIES``."""
    override = os.environ.get("MAILRETRY_DEV_REPLIES")
    return Path(override) if override else ROOT.parent / "shared" / "smtp-replies" / "dev.jsonl"


@pytest.fixture(scope="session")
def dev_replies_file() -> Path:
    path = dev_replies_path()
    if not path.is_file():
        pytest.skip(f"the labelled dev corpus is not at {path} (set MAILRETRY_DEV_REPLIES)")
    return path


@pytest.fixture(scope="session")
def dev_replies(dev_replies_file: Path) -> list[dict[str, Any]]:
    """The labelled development corpus (real replies)."""
    with open(dev_replies_file, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
