"""The retry engine, typed for Python.

Time is seconds since the Unix epoch (int or float); timezone-aware
``datetime`` values are accepted everywhere a time is (naive ones are rejected,
since their zone is a guess). The engine keeps time as integer milliseconds:
:func:`to_millis` rounds every time to the nearest millisecond once, here, and
times the engine returns (``next_wakeup()``, ``Lease.deadline``, event times)
are whole milliseconds that map back to the same integer, so
``take_ready(next_wakeup())`` always finds the work it announced. The
scheduling logic and all validation live in the compiled core.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mailretry import _core
from mailretry._core import Decision, Lease, Reply
from mailretry.errors import InvalidInputError

TimeLike = float | int | _dt.datetime

EVENT_KINDS: tuple[str, ...] = tuple(_core.EVENT_KINDS)
DECISION_ACTIONS: tuple[str, ...] = tuple(_core.DECISION_ACTIONS)
BACKENDS: tuple[str, ...] = tuple(_core.TIMER_BACKENDS)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def to_seconds(t: TimeLike, name: str = "now") -> float:
    """Epoch seconds from a number or an aware datetime."""
    return to_millis(t, name) / 1000


def to_millis(t: TimeLike, name: str = "now") -> int:
    """Epoch milliseconds (the engine's unit) from seconds or an aware
    datetime, rounded to the nearest millisecond. Exact for every float that
    the engine returned: ``to_millis(ms / 1000) == ms``."""
    if type(t) is float and -1e15 < t < 1e15:
        # The common case (a clock's float seconds), checked in one step:
        # finite and in range, so the checks below cannot fail.
        whole = math.floor(t)
        return whole * 1000 + round((t - whole) * 1000)
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None or t.tzinfo.utcoffset(t) is None:
            raise InvalidInputError(f"{name}: naive datetime; pass an aware one (e.g. UTC)")
        us = (t - _EPOCH) // _dt.timedelta(microseconds=1)
        return (us + 500) // 1000
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise InvalidInputError(f"{name}: expected epoch seconds or an aware datetime")
    if isinstance(t, int):
        ms = t * 1000
    elif not math.isfinite(t):
        raise InvalidInputError(f"{name}: time must be a finite number of seconds")
    else:
        # Whole seconds and the fraction separately: the fraction is exact,
        # so the rounding is to the millisecond nearest to t.
        whole = math.floor(t)
        ms = int(whole) * 1000 + round((t - whole) * 1000)
    if not -(2**62) <= ms < 2**62:
        raise InvalidInputError(f"{name}: time out of range")
    return ms


class Engine:
    """Decides when each deferred message is tried again and how hard each
    destination may be pushed.

    ``config`` is a mapping shaped like the TOML file (``[retry]``,
    ``[[overrides]]``, ``[destination_defaults]``, ``[[destinations]]``,
    ``[[reactions]]``, ``[structural]``, ``[[classifier.rules]]``, ...);
    unknown keys raise InvalidInputError. ``backend`` picks the timer
    structure: ``"wheel"`` (default), ``"quad_heap"`` or ``"boost_heap"``.
    The same calls with the same ``seed`` give the same decisions. Safe to use
    from several threads.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        backend: str | None = None,
        _core_engine: _core.Engine | None = None,
    ) -> None:
        if _core_engine is not None:
            self._e = _core_engine
            return
        self._e = _core.Engine(_with_backend(config, backend), seed=seed)

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, seed: int | None = None, backend: str | None = None
    ) -> Engine:
        """An engine configured by a TOML file (its top-level ``seed`` is used
        unless ``seed`` is given). The file is read and checked by the
        compiled core's config grammar, the one C++ programs use."""
        doc = _core.read_config_file(os.fspath(path))
        file_seed = doc.pop("seed", None)
        return cls(doc, seed=file_seed if seed is None else seed, backend=backend)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Engine:
        """Restore an engine written by :meth:`save` (config and seed included).
        Raises CorruptDataError for a truncated or corrupted file."""
        return cls(_core_engine=_core.Engine.load(os.fspath(path)))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a checksummed snapshot atomically (temporary file, fsync, rename)."""
        self._e.save(os.fspath(path))

    # -- durable mode -----------------------------------------------------------
    @classmethod
    def open_durable(
        cls,
        directory: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        backend: str | None = None,
        fsync: str = "group",
        group_interval: float = 0.005,
        compact_after_records: int = 0,
    ) -> Engine:
        """Recover the engine kept in ``directory`` (latest snapshot plus journal
        replay), or create one there with ``config``, ``seed`` and ``backend``.

        On a reopen the saved configuration and seed are the ones used (the
        journal replays only against them): pass none of ``config``, ``seed``
        and ``backend`` to reopen with them, or pass the same ones; different
        ones raise InvalidInputError instead of being ignored. A directory is
        created only when it holds nothing of ours: a snapshot without its
        journal, or a journal without its snapshot, is CorruptDataError and no
        file is touched.

        Every call that changes the engine is then appended to a journal in the
        compiled core before it returns, so killing the process loses nothing a
        call returned. ``fsync`` decides what survives a power loss:
        ``"always"`` (fsync per call), ``"group"`` (a background thread
        fsyncs at most every ``group_interval`` seconds, so a power loss loses
        at most that much) or ``"never"``. ``compact_after_records`` > 0 compacts
        automatically when the journal holds that many records (0: only
        :meth:`compact`). Raises CorruptDataError for a corrupt
        snapshot or journal (a torn last record is dropped, not an error),
        StateError if another engine has the directory open, StorageError for
        I/O errors. See :meth:`journal_info` for what recovery found.
        """
        return cls(
            _core_engine=_core.Engine.open_durable(
                os.fspath(directory),
                _with_backend(config, backend),
                seed=seed,
                fsync=fsync,
                group_interval=group_interval,
                compact_after_records=compact_after_records,
            )
        )

    def compact(self) -> None:
        """Durable engines: write a new snapshot, start an empty journal, remove
        the old generation. StateError for an engine that is not durable."""
        self._e.compact()

    def sync(self) -> None:
        """Durable engines: fsync the journal now, whatever the policy."""
        self._e.sync()

    def journal_info(self) -> dict[str, Any] | None:
        """Durable engines: ``directory``, ``generation``, ``records``,
        ``bytes``, ``fsyncs``, ``compactions``, ``failed_compactions`` and
        what recovery found (``created``,
        ``records_replayed``, ``torn_tail_dropped``); None otherwise."""
        return self._e.journal_info()

    @property
    def seed(self) -> int:
        return self._e.seed

    # -- messages ---------------------------------------------------------------
    def submit(
        self,
        msg_id: int,
        destination: str,
        now: TimeLike,
        *,
        source: str | None = None,
        not_before: TimeLike | None = None,
    ) -> None:
        """Add a message; its first attempt is due at once (or at ``not_before``).
        DuplicateIdError if ``msg_id`` is already pending."""
        nb = None if not_before is None else to_millis(not_before, "not_before")
        self._e.submit(msg_id, destination, to_millis(now), source=source or "", not_before_ms=nb)

    def submit_many(
        self,
        msg_ids: npt.ArrayLike,
        destinations: Sequence[str] | npt.NDArray[Any],
        now: TimeLike,
        *,
        sources: Sequence[str] | npt.NDArray[Any] | None = None,
    ) -> None:
        """Submit many messages at once (all or nothing). ``destinations`` (and
        ``sources``) give one name per message: a list of ``str`` or a numpy
        ``str``/``object`` array; names are interned in the core. ``msg_ids``
        must be integers (any integer dtype) or floats that are exact
        integers; anything else is InvalidInputError naming the index."""
        self._e.submit_many(msg_ids, destinations, to_millis(now), sources=sources)

    def advance(self, now: TimeLike) -> None:
        """Process everything due at ``now`` (retries, expiries, lease timeouts)."""
        self._e.advance(to_millis(now))

    def take_ready(self, now: TimeLike, limit: int) -> list[Lease]:
        """Up to ``limit`` leases for messages that may be attempted now."""
        return self._e.take_ready(to_millis(now), limit)

    def take_ready_arrays(
        self, now: TimeLike, limit: int
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
        """Like :meth:`take_ready`, as arrays (msg_ids, destination_indices, attempts)."""
        ids, dest, attempt = self._e.take_ready_arrays(to_millis(now), limit)
        return ids, dest, attempt

    def report(
        self,
        lease: Lease | int,
        now: TimeLike,
        reply: str | Reply,
        *,
        attempt: int | None = None,
    ) -> Decision:
        """Report a leased attempt's outcome: the final reply text (``"250 ok"``
        means delivered) or a :class:`Reply` such as
        ``mailretry.transport_reply("connection_refused")``.

        ``lease`` names the attempt: the :class:`Lease` from :meth:`take_ready`,
        or a message id with ``attempt=`` (``Lease.attempt``). A report for a
        lease that is no longer current (it timed out and the message was
        leased again, or it was reported already) raises StaleLeaseError,
        changes nothing and is counted in ``stats()["stale_reports"]``."""
        if type(lease) is Lease and type(reply) is str and attempt is None:
            return self._e.report_lease(lease, to_millis(now), reply)  # a driver's report
        if isinstance(lease, Lease):
            if attempt is not None and attempt != lease.attempt:
                raise InvalidInputError("attempt= contradicts the lease")
            msg_id, attempt = lease.msg_id, lease.attempt
        elif attempt is None:
            raise InvalidInputError(
                "report needs the lease (or a message id with attempt=): "
                "it names the attempt being reported"
            )
        else:
            msg_id = lease
        if isinstance(reply, Reply):
            return self._e.report_reply(msg_id, attempt, to_millis(now), reply)
        return self._e.report(msg_id, attempt, to_millis(now), reply)

    def report_many(
        self,
        leases: Sequence[Lease] | npt.ArrayLike,
        replies: Sequence[str],
        now: TimeLike,
        *,
        attempts: npt.ArrayLike | None = None,
    ) -> dict[str, Any]:
        """Report many outcomes: ``leases`` is a list of :class:`Lease`, or
        message ids with ``attempts`` (as :meth:`take_ready_arrays` returns
        them). Returns arrays ``ok``, ``stale`` (the entry named a lease that
        is no longer current; see :meth:`report`), ``action`` (index into
        DECISION_ACTIONS), ``next_attempt`` (NaN unless retry), ``category``
        (index into CATEGORIES, -1 if none) and ``errors`` {index: message}."""
        if attempts is None:
            items: list[Any] = list(leases)  # type: ignore[arg-type]
            if not all(isinstance(x, Lease) for x in items):
                raise InvalidInputError("report_many needs leases, or message ids with attempts=")
            ids: Any = [x.msg_id for x in items]
            attempts = [x.attempt for x in items]
        else:
            ids = leases
        return self._e.report_many(ids, attempts, list(replies), to_millis(now))

    # -- observation ------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """When the engine next has something to do (epoch seconds), or None."""
        return self._e.next_wakeup()

    def drain_events(self) -> list[dict[str, Any]]:
        """Events since the last drain, oldest first, as dicts (``kind``, ``time``,
        ``msg_id``, ``destination``, ``category``, ``detail``, ...)."""
        return self._e.drain_events()

    def poll(
        self, now: TimeLike, limit: int
    ) -> tuple[list[Lease], list[dict[str, Any]], float | None]:
        """One turn of a delivery loop in one call: ``take_ready(now, limit)``
        (``advance(now)`` when ``limit`` is 0), then :meth:`drain_events`, then
        :meth:`next_wakeup`; returns the three results. The same as the three
        calls in a row, with one crossing into the compiled core instead of
        three (see :class:`mailretry.aio.Driver`)."""
        if limit < 0:
            raise InvalidInputError("limit must be >= 0")
        return self._e.poll(to_millis(now), limit)

    def destination(self, name: str, source: str | None = None) -> dict[str, Any]:
        """State of one destination: limits, in flight, suspension, health, counters.
        UnknownIdError if it has never been seen."""
        return self._e.destination(name, source or "")

    def concurrency_limit(self, name: str, source: str | None = None) -> int:
        """The destination's current concurrency limit: ``destination(name,
        source)["concurrency_limit"]`` without building the whole dict (what a
        connection pool asks before each attempt). UnknownIdError if never seen."""
        return self._e.concurrency_limit(name, source or "")

    def limits_generation(self) -> int:
        """A number that changes whenever any destination's concurrency limit
        may have changed (a cut, a raise, a rule's override starting or
        ending). A connection pool that caches :meth:`concurrency_limit`
        answers re-reads them only when this differs from the number it read
        them under, and so still sees a lowered limit at its next check. It
        may change when no limit did; compare it only with the same engine's."""
        return self._e.limits_generation()

    def stats(self) -> dict[str, int]:
        """Engine-wide counters; submitted == delivered + bounced + expired + pending."""
        return self._e.stats()

    def check_invariants(self) -> None:
        """Full internal consistency check (for tests); InternalError if broken."""
        self._e.check_invariants()


def _with_backend(config: Mapping[str, Any] | None, backend: str | None) -> dict[str, Any] | None:
    # The backend argument is the config's `backend` key; the core checks it.
    if backend is None:
        return None if config is None else dict(config)
    cfg = dict(config or {})
    cfg["backend"] = backend
    return cfg


def retry_timeline(
    policy: Mapping[str, Any] | None = None, *, seed: int = 0, max_points: int = 10000
) -> list[float]:
    """Seconds from submission of every attempt of an always-failing message
    under ``policy`` (a ``[retry]`` mapping, e.g. ``{"preset": "exim"}``)."""
    return _core.retry_timeline(dict(policy) if policy else None, seed=seed, max_points=max_points)
