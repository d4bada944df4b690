"""mailretry: retry scheduling for email sending platforms.

Classify SMTP replies, decide when each deferred message is tried again and
how hard each destination may be pushed. The logic lives in the compiled
``mailretry._core``; this package adapts types and ergonomics.
"""

from __future__ import annotations

try:
    from mailretry import _core
except ImportError as err:  # pragma: no cover - only when the extension is missing
    err.msg += (
        "\n\nmailretry._core is not built. Install the package with `pip install .` "
        "(see README.md)."
    )
    raise

from mailretry._core import ClassifiedReply, Decision, Lease, Reply
from mailretry.classify import (
    ACTIONS,
    CATEGORIES,
    BatchClassification,
    Classifier,
    classify,
    classify_many,
    default_classifier,
    parse_reply,
    parse_reply_lenient,
    transport_reply,
)
from mailretry.engine import DECISION_ACTIONS, EVENT_KINDS, Engine, retry_timeline
from mailretry.errors import (
    CorruptDataError,
    DuplicateIdError,
    InternalError,
    InvalidInputError,
    MailretryError,
    MissingFileError,
    StaleLeaseError,
    StateError,
    StorageError,
    UnknownIdError,
)

__version__: str = _core.__version__

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "DECISION_ACTIONS",
    "EVENT_KINDS",
    "BatchClassification",
    "ClassifiedReply",
    "Classifier",
    "CorruptDataError",
    "Decision",
    "DuplicateIdError",
    "Engine",
    "InternalError",
    "InvalidInputError",
    "Lease",
    "MailretryError",
    "MissingFileError",
    "Reply",
    "StaleLeaseError",
    "StateError",
    "StorageError",
    "UnknownIdError",
    "__version__",
    "classify",
    "classify_many",
    "default_classifier",
    "parse_reply",
    "parse_reply_lenient",
    "retry_timeline",
    "transport_reply",
]


def __dir__() -> list[str]:
    return __all__
