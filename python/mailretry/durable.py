"""Crash safety for an :class:`~mailretry.Engine`: snapshots plus an append-only journal.

:class:`DurableEngine` has the engine's methods. Every call that changes the
engine (``submit``, ``submit_many``, ``advance``, ``take_ready``,
``take_ready_arrays``, ``report``, ``report_many``, ``drain_events``) is applied
to the engine and then appended to a journal, with its time and its outcome
(success or the exception's type), before the call returns. The engine is
deterministic (the same calls with the same times and seed give the same state),
so recovery is: load the latest snapshot, then replay the journal's calls
through the engine API and check that each gives the recorded outcome.
Compaction writes a new snapshot and starts an empty journal.

Files in the directory, for generation ``G``:

* ``snapshot-G.mrs``: :meth:`Engine.save` output (checksummed, written to a
  temporary file, fsynced and renamed);
* ``journal-G.mrj``: an 20-byte header (magic, ``G``, CRC) followed by records,
  each ``<u32 length><u32 crc32>`` and a JSON payload. The CRC covers the
  length and the payload.

A record cut short at the end of the journal (a torn write) fails its length or
checksum; it is dropped and the file truncated to the last whole record. A bad
record followed by more data is corruption: :class:`~mailretry.CorruptDataError`,
nothing is guessed.

Durability: each record is written with one ``write()`` as the call happens, so
killing the process loses nothing that a call returned. ``fsync`` decides what
survives a power loss or kernel crash: ``"always"`` (fsync before every call
returns), ``"group"`` (a background thread fsyncs every ``group_ms``, so at most
the last ``group_ms`` of calls are lost) or ``"never"``.

Delivery guarantee: messages are never lost and are delivered at least once. A
lease taken before a crash and not reported is still leased after recovery; the
engine returns it to the schedule at its lease deadline and it is attempted
again, so the attempts in flight at the crash may reach the recipient twice.
Nothing else is repeated. Events drained before the crash are not delivered
again; undrained ones are restored (with ``fsync="group"`` after a power loss,
events drained in the lost window come out again).

This is a Python-side journal over the engine's public API, not a journal inside
the C++ engine: a call costs one JSON encode and one ``write`` (see
``benchmarks/README.md``).
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mailretry import _core
from mailretry._core import Decision, Lease, Reply
from mailretry.engine import Engine, TimeLike, to_seconds
from mailretry.errors import CorruptDataError, InvalidInputError, StorageError

__all__ = ["DurableEngine", "FsyncPolicy", "RecoveryInfo"]

FsyncPolicy = Literal["always", "group", "never"]

_MAGIC = b"MRJRNL01"
_FILE_HEADER = struct.Struct("<8sQI")  # magic, generation, crc32(magic + generation)
_RECORD_HEADER = struct.Struct("<II")  # payload length, crc32(length bytes + payload)
_MAX_RECORD = 1 << 30
_SNAPSHOT = re.compile(r"^snapshot-(\d+)\.mrs$")


@dataclass(frozen=True)
class RecoveryInfo:
    """What :meth:`DurableEngine.open` found on disk."""

    created: bool  #: no state existed: a new engine was created
    generation: int  #: snapshot generation loaded
    records_replayed: int
    torn_tail_dropped: bool  #: a partial last record was dropped
    leased_at_recovery: int  #: leases outstanding after replay (in flight at the crash)


class DurableEngine:
    """An :class:`~mailretry.Engine` whose state survives the process.

    Create (or recover) with the constructor or :meth:`open`; close with
    :meth:`close` (or a ``with`` block). Safe to call from several threads:
    calls are applied and journaled in one order.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        backend: str | None = None,
        fsync: FsyncPolicy = "group",
        group_ms: float = 5.0,
        compact_every: int | None = 100_000,
    ) -> None:
        """Recover the engine kept in ``directory``, or create one there.

        ``config``, ``seed`` and ``backend`` are used only when creating; a
        recovered engine keeps the ones it was saved with. ``fsync`` is
        ``"always"``, ``"group"`` (every ``group_ms``) or ``"never"``.
        ``compact_every`` compacts automatically after that many journal records
        (None: only when :meth:`compact` is called). :attr:`recovery` tells what
        was found.
        """
        if fsync not in ("always", "group", "never"):
            raise InvalidInputError(f"fsync must be 'always', 'group' or 'never', got {fsync!r}")
        if group_ms <= 0:
            raise InvalidInputError("group_ms must be > 0")
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._group_s = group_ms / 1000.0
        self._compact_every = compact_every
        self._lock = threading.RLock()
        self._fd = -1
        self._dirty = False
        self._records = 0
        self._last_time: float | None = None
        self._closed = False
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None

        generation = self._latest_generation()
        if generation is None:
            self._engine = Engine(config, seed=seed, backend=backend)
            generation = 1
            self._engine.save(self._snapshot_path(generation))
            self._new_journal(generation)
            self.recovery = RecoveryInfo(True, generation, 0, False, 0)
        else:
            self._engine = Engine.load(self._snapshot_path(generation))
            replayed, torn = self._replay(generation)
            self._remove_older(generation)
            self.recovery = RecoveryInfo(
                False, generation, replayed, torn, self._engine.stats()["leased"]
            )
        self._generation = generation
        if fsync == "group":
            self._syncer = threading.Thread(
                target=self._sync_loop, name="mailretry-journal-fsync", daemon=True
            )
            self._syncer.start()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        backend: str | None = None,
        fsync: FsyncPolicy = "group",
        group_ms: float = 5.0,
        compact_every: int | None = 100_000,
    ) -> DurableEngine:
        """Same as the constructor."""
        return cls(
            directory,
            config,
            seed=seed,
            backend=backend,
            fsync=fsync,
            group_ms=group_ms,
            compact_every=compact_every,
        )

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        """Flush (fsync) and close the journal. The engine stays readable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            if self._fd >= 0:
                if self._fsync != "never":
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> DurableEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """fsync the journal now (whatever the policy)."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                self._dirty = False

    def compact(self) -> None:
        """Write a new snapshot and start an empty journal; older files are removed."""
        with self._lock:
            self._check_open()
            new = self._generation + 1
            self._engine.save(self._snapshot_path(new))
            _fsync_dir(self._dir)
            old_fd = self._fd
            self._new_journal(new)
            os.close(old_fd)
            self._generation = new
            self._records = 0
            self._remove_older(new)

    @property
    def engine(self) -> Engine:
        """The wrapped engine, for read-only use (calls on it are not journaled)."""
        return self._engine

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def last_time(self) -> float | None:
        """The latest time given to a journaled call (a restarted clock must not
        go below it)."""
        return self._last_time

    @property
    def seed(self) -> int:
        return self._engine.seed

    # -- journaled calls -------------------------------------------------------------
    def submit(
        self,
        msg_id: int,
        destination: str,
        now: TimeLike,
        *,
        source: str | None = None,
        not_before: TimeLike | None = None,
    ) -> None:
        t = to_seconds(now)
        nb = None if not_before is None else to_seconds(not_before, "not_before")
        self._call(
            ["s", t, int(msg_id), destination, source or "", nb],
            lambda: self._engine.submit(msg_id, destination, t, source=source, not_before=nb),
        )

    def submit_many(
        self,
        msg_ids: npt.ArrayLike,
        destinations: Sequence[str] | npt.NDArray[Any],
        now: TimeLike,
        *,
        sources: Sequence[str] | npt.NDArray[Any] | None = None,
    ) -> None:
        t = to_seconds(now)
        ids = [int(x) for x in np.asarray(msg_ids, dtype=np.uint64).ravel()]
        dests = [str(x) for x in np.asarray(destinations, dtype=object).ravel()]
        srcs = None if sources is None else [str(x) for x in np.asarray(sources, dtype=object)]
        self._call(
            ["S", t, ids, dests, srcs],
            lambda: self._engine.submit_many(ids, dests, t, sources=srcs),
        )

    def advance(self, now: TimeLike) -> None:
        t = to_seconds(now)
        self._call(["a", t], lambda: self._engine.advance(t))

    def take_ready(self, now: TimeLike, limit: int) -> list[Lease]:
        t = to_seconds(now)
        result: list[Lease] = self._call(
            ["t", t, int(limit)],
            lambda: self._engine.take_ready(t, limit),
            check=lambda leases: [lease.msg_id for lease in leases],
        )
        return result

    def take_ready_arrays(
        self, now: TimeLike, limit: int
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
        t = to_seconds(now)
        result: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32], npt.NDArray[np.uint32]]
        result = self._call(
            ["t", t, int(limit)],
            lambda: self._engine.take_ready_arrays(t, limit),
            check=lambda arrays: [int(x) for x in arrays[0]],
        )
        return result

    def report(
        self, lease: Lease | int, now: TimeLike, reply: str | Reply, *, attempt: int | None = None
    ) -> Decision:
        # The attempt is the lease's fencing token (see Engine.report).
        if isinstance(lease, Lease):
            msg_id, attempt = lease.msg_id, lease.attempt
        else:
            msg_id = lease
        if attempt is None:
            raise InvalidInputError("report needs the lease (or a message id with attempt=)")
        t = to_seconds(now)
        encoded = _encode_reply(reply)
        a = int(attempt)
        decision: Decision = self._call(
            ["r", t, int(msg_id), encoded, a],
            lambda: self._engine.report(msg_id, t, reply, attempt=a),
            check=lambda d: d.action,
        )
        return decision

    def report_many(
        self,
        msg_ids: npt.ArrayLike,
        replies: Sequence[str],
        now: TimeLike,
        *,
        attempts: npt.ArrayLike | None = None,
    ) -> dict[str, Any]:
        if attempts is None:
            raise InvalidInputError("report_many needs attempts= (the leases' attempts)")
        t = to_seconds(now)
        ids = [int(x) for x in np.asarray(msg_ids, dtype=np.uint64).ravel()]
        atts = [int(x) for x in np.asarray(attempts, dtype=np.uint64).ravel()]
        texts = [str(r) for r in replies]
        out: dict[str, Any] = self._call(
            ["R", t, ids, texts, atts],
            lambda: self._engine.report_many(ids, texts, t, attempts=atts),
            check=lambda r: [int(x) for x in r["action"]],
        )
        return out

    def drain_events(self) -> list[dict[str, Any]]:
        with self._lock:
            self._check_open()
            if self._engine.stats()["events_buffered"] == 0:
                return []  # nothing to drain: no state change to journal
            events: list[dict[str, Any]] = self._call(["d"], self._engine.drain_events)
            return events

    # -- reads (not journaled) ---------------------------------------------------------
    def next_wakeup(self) -> float | None:
        return self._engine.next_wakeup()

    def destination(self, name: str, source: str | None = None) -> dict[str, Any]:
        return self._engine.destination(name, source)

    def stats(self) -> dict[str, int]:
        return self._engine.stats()

    def check_invariants(self) -> None:
        self._engine.check_invariants()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Export a snapshot elsewhere (the journal is unaffected)."""
        with self._lock:
            self._engine.save(path)

    # -- internals ---------------------------------------------------------------------
    def _call(self, record: list[Any], fn: Any, check: Any = None) -> Any:
        with self._lock:
            self._check_open()
            try:
                result = fn()
            except Exception as exc:
                record.append(["err", type(exc).__name__])
                self._append(record)
                raise
            record.append(["ok", check(result) if check is not None else None])
            self._append(record)
            if self._compact_every is not None and self._records >= self._compact_every:
                self.compact()
            return result

    def _append(self, record: list[Any]) -> None:
        payload = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
        length = len(payload)
        crc = zlib.crc32(payload, zlib.crc32(struct.pack("<I", length)))
        frame = _RECORD_HEADER.pack(length, crc) + payload
        try:
            _write_all(self._fd, frame)
            if self._fsync == "always":
                os.fsync(self._fd)
        except OSError as exc:
            # The engine has applied a call the journal does not hold: refuse
            # further calls rather than diverge from the disk.
            self._closed = True
            raise StorageError(f"{self._journal_path(self._generation)}: {exc}") from exc
        self._dirty = True
        self._records += 1
        if len(record) > 1 and isinstance(record[1], float):
            self._last_time = (
                record[1] if self._last_time is None else max(self._last_time, record[1])
            )

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("DurableEngine is closed")

    def _sync_loop(self) -> None:
        while not self._stop.wait(self._group_s):
            with self._lock:
                if not self._dirty or self._fd < 0:
                    continue
                fd = os.dup(self._fd)
                self._dirty = False
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _snapshot_path(self, generation: int) -> Path:
        return self._dir / f"snapshot-{generation}.mrs"

    def _journal_path(self, generation: int) -> Path:
        return self._dir / f"journal-{generation}.mrj"

    def _latest_generation(self) -> int | None:
        gens = [int(m.group(1)) for p in self._dir.iterdir() if (m := _SNAPSHOT.match(p.name))]
        return max(gens) if gens else None

    def _remove_older(self, generation: int) -> None:
        for p in self._dir.iterdir():
            m = _SNAPSHOT.match(p.name) or re.match(r"^journal-(\d+)\.mrj$", p.name)
            if m and int(m.group(1)) < generation:
                p.unlink()
        _fsync_dir(self._dir)

    def _new_journal(self, generation: int) -> None:
        path = self._journal_path(generation)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        head = _MAGIC + struct.pack("<Q", generation)
        _write_all(fd, _FILE_HEADER.pack(_MAGIC, generation, zlib.crc32(head)))
        os.fsync(fd)
        _fsync_dir(self._dir)
        self._fd = fd
        self._dirty = False

    def _replay(self, generation: int) -> tuple[int, bool]:
        """Replay journal-G onto the loaded snapshot; leave it open for appending."""
        path = self._journal_path(generation)
        if not path.exists():  # a crash between snapshot and new journal
            self._new_journal(generation)
            return 0, False
        data = path.read_bytes()
        if len(data) < _FILE_HEADER.size:
            # Torn while being created: nothing was appended to it yet.
            self._new_journal(generation)
            return 0, True
        magic, gen, crc = _FILE_HEADER.unpack_from(data)
        if magic != _MAGIC or zlib.crc32(data[:16]) != crc:
            raise CorruptDataError(f"{path}: not a mailretry journal (bad header)")
        if gen != generation:
            raise CorruptDataError(f"{path}: header says generation {gen}, expected {generation}")
        offset = _FILE_HEADER.size
        count = 0
        torn = False
        while offset < len(data):
            record, end, problem = _read_record(data, offset)
            if record is None:
                if end >= len(data):  # the bad record reaches the end: a torn write
                    torn = True
                    break
                raise CorruptDataError(
                    f"{path}: record {count + 1} at byte {offset} is corrupt ({problem}) "
                    f"and followed by {len(data) - end} more bytes"
                )
            self._apply(record, count + 1, path)
            count += 1
            offset = end
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if torn:
            os.ftruncate(fd, offset)
            os.fsync(fd)
        self._fd = fd
        self._records = count
        return count, torn

    def _apply(self, record: list[Any], index: int, path: Path) -> None:
        op, *args = record
        *call, (status, expected) = args
        engine = self._engine
        got: Any = None
        try:
            if op == "s":
                t, msg_id, dest, source, nb = call
                engine.submit(msg_id, dest, t, source=source or None, not_before=nb)
            elif op == "S":
                t, ids, dests, srcs = call
                engine.submit_many(ids, dests, t, sources=srcs)
            elif op == "a":
                (t,) = call
                engine.advance(t)
            elif op == "t":
                t, limit = call
                got = [lease.msg_id for lease in engine.take_ready(t, limit)]
            elif op == "r" and len(call) == 4:
                t, msg_id, reply, attempt = call
                got = engine.report(msg_id, t, _decode_reply(reply), attempt=attempt).action
            elif op == "R" and len(call) == 4:
                t, ids, texts, attempts = call
                got = [
                    int(x) for x in engine.report_many(ids, texts, t, attempts=attempts)["action"]
                ]
            elif op in ("r", "R"):
                raise CorruptDataError(
                    f"{path}: record {index}: a report without its attempt (written before "
                    "fenced reports); replay it with mailretry 0.1"
                )
            elif op == "d":
                engine.drain_events()
            else:
                raise CorruptDataError(f"{path}: record {index}: unknown operation {op!r}")
            outcome = ["ok", got]
        except CorruptDataError:
            raise
        except Exception as exc:
            outcome = ["err", type(exc).__name__]
        if op in ("s", "S", "a", "d") and outcome[0] == "ok":
            outcome[1] = None
        if outcome != [status, expected]:
            raise CorruptDataError(
                f"{path}: record {index} ({op}) replayed as {outcome}, journal says "
                f"{[status, expected]}: the journal does not belong to this snapshot"
            )
        if call and isinstance(call[0], float):
            self._last_time = call[0] if self._last_time is None else max(self._last_time, call[0])


def _read_record(data: bytes, offset: int) -> tuple[list[Any] | None, int, str]:
    """(record, end offset, problem). record is None when the record is bad;
    end is then where it would end (>= len(data) when cut short)."""
    if offset + _RECORD_HEADER.size > len(data):
        return None, len(data), "truncated header"
    length, crc = _RECORD_HEADER.unpack_from(data, offset)
    start = offset + _RECORD_HEADER.size
    end = start + length
    if length > _MAX_RECORD:
        return None, start, f"implausible length {length}"
    if end > len(data):
        return None, end, "truncated payload"
    payload = data[start:end]
    if zlib.crc32(payload, zlib.crc32(struct.pack("<I", length))) != crc:
        return None, end, "checksum mismatch"
    try:
        record = json.loads(payload)
    except ValueError as exc:
        return None, end, f"undecodable payload: {exc}"
    if not isinstance(record, list) or not record:
        return None, end, "not a record"
    return record, end, ""


def _encode_reply(reply: str | Reply) -> Any:
    if isinstance(reply, str):
        return reply
    if reply.transport != "reply":
        return {"transport": reply.transport, "detail": reply.text}
    text = str(reply)
    if _core.parse_reply(text) != reply:
        raise InvalidInputError("this Reply cannot be journaled exactly; report its raw text")
    return text


def _decode_reply(encoded: Any) -> str | Reply:
    if isinstance(encoded, str):
        return encoded
    return _core.transport_reply(encoded["transport"], encoded["detail"])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
