"""Exceptions raised by mailretry.

They are created by the compiled core (one place maps C++ status codes to
them) and re-exported here:

- ``MailretryError``: base of all.
- ``InvalidInputError`` (also a ``ValueError``): malformed reply, config, time or rule.
- ``UnknownIdError`` (also a ``KeyError``): an unknown message id or destination.
- ``DuplicateIdError`` (also a ``KeyError``): e.g. a message submitted twice.
- ``StateError`` (also a ``RuntimeError``): valid call in the wrong state.
- ``StaleLeaseError`` (a ``StateError``): a report naming a lease that is no
  longer current (it timed out and the message was leased again, or it was
  reported already); the engine ignored it and counted it in ``stats()``.
- ``CorruptDataError`` (also a ``ValueError``): truncated or corrupted snapshot.
- ``StorageError`` (also an ``OSError``): reading or writing a file failed.
- ``MissingFileError`` (a ``StorageError`` and a ``FileNotFoundError``): a file
  to read (snapshot, config) does not exist.
- ``InternalError`` (also a ``RuntimeError``): a bug; please report it.
"""

from __future__ import annotations

from mailretry._core import (
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

__all__ = [
    "CorruptDataError",
    "DuplicateIdError",
    "InternalError",
    "InvalidInputError",
    "MailretryError",
    "MissingFileError",
    "StaleLeaseError",
    "StateError",
    "StorageError",
    "UnknownIdError",
]
