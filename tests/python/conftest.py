from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def dev_replies() -> list[dict[str, Any]]:
    """The labelled development corpus (real replies)."""
    with open(DATA / "dev_replies.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
