"""Reply parsing and classification: the Python face of the C++ classifier."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from mailretry import _core
from mailretry._core import ClassifiedReply, Reply
from mailretry.errors import InvalidInputError

CATEGORIES: tuple[str, ...] = tuple(_core.CATEGORIES)
ACTIONS: tuple[str, ...] = tuple(_core.ACTIONS)

_RULE_KEYS = frozenset(
    {"name", "text", "enhanced", "code", "destination", "category", "action", "transient"}
)

RuleSpec = Mapping[str, Any] | _core.UserRule


def _to_user_rule(spec: RuleSpec, index: int) -> _core.UserRule:
    if isinstance(spec, _core.UserRule):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"rule #{index}: expected a mapping, got {type(spec).__name__}")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise InvalidInputError(
            f"rule #{index}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}"
        )
    for key in ("name", "category", "action"):
        if key not in spec:
            raise InvalidInputError(f"rule #{index}: missing required key {key!r}")
    for key in ("name", "text", "enhanced", "code", "destination", "category", "action"):
        if key in spec and not isinstance(spec[key], str):
            raise InvalidInputError(f"rule #{index}: {key!r} must be a string")
    if "transient" in spec and not isinstance(spec["transient"], bool | None):
        raise InvalidInputError(f"rule #{index}: 'transient' must be true or false")
    return _core.UserRule(**dict(spec))


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a mailretry TOML file; a syntax error raises InvalidInputError."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise InvalidInputError(f"{os.fspath(path)}: {e}") from e


class Classifier:
    """Maps SMTP replies to a category, an action and transient/permanent.

    ``rules`` are user rules, checked in order before the built-in defaults.
    Each is a mapping (or a ``_core.UserRule``) with keys ``name`` (required),
    ``text`` (RE2 regex searched case-insensitively in the reply text),
    ``enhanced`` (``"4.7.*"``), ``code`` (``"4xx"``, ``"421"``),
    ``destination`` (``"gmail.com"`` or ``"*.example.com"``), ``category``,
    ``action`` (required) and ``transient`` (optional bool). A bad pattern
    raises InvalidInputError here, not when a reply arrives.
    """

    def __init__(self, rules: Iterable[RuleSpec] = ()) -> None:
        self._rules = [_to_user_rule(spec, i) for i, spec in enumerate(rules)]
        self._core = _core.Classifier(self._rules)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Classifier:
        """Load user rules from ``[[classifier.rules]]`` tables of a TOML file."""
        doc = load_toml(path)
        section = doc.get("classifier", {})
        rules = section.get("rules", []) if isinstance(section, dict) else None
        if not isinstance(rules, list):
            raise InvalidInputError(
                f"{os.fspath(path)}: [[classifier.rules]] must be a table array"
            )
        return cls(rules)

    @property
    def rules(self) -> list[_core.UserRule]:
        """The user rules, in evaluation order."""
        return list(self._rules)

    def rule_names(self) -> list[str]:
        """Every rule name (user rules first, then the defaults) in evaluation order."""
        return self._core.rule_names()

    def classify(
        self, text: str | bytes, destination: str | None = None, *, lenient: bool = False
    ) -> ClassifiedReply:
        """Parse and classify one reply. Raises InvalidInputError if it does not parse.

        Text that starts with an enhanced code and has no basic code, as logs
        and bounce tables give it (``"5.1.1 User unknown"``), is accepted: the
        basic code is inferred from the enhanced class (500, 400, 200) and the
        result has ``basic_code_inferred`` set. ``lenient=True`` also accepts
        text with no code at all (see :func:`parse_reply_lenient`). A 2xx reply
        is category ``delivered``."""
        return self._core.classify(text, destination or "", lenient=lenient)

    def classify_reply(self, reply: Reply, destination: str | None = None) -> ClassifiedReply:
        """Classify an already parsed :class:`Reply` (e.g. a transport outcome)."""
        return self._core.classify_reply(reply, destination or "")

    def classify_many(
        self,
        texts: Sequence[str] | npt.NDArray[Any],
        *,
        destination: str | None = None,
        raise_on_error: bool = True,
        lenient: bool = False,
    ) -> BatchClassification:
        """Classify many replies at once, with the GIL released.

        ``texts`` is a list/tuple of ``str`` or a numpy array of ``str``/``object``.
        Fixed-width numpy ``str`` arrays carry padding up to their longest item,
        which costs reading; a list or an ``object`` array is the fastest input.
        With ``raise_on_error=False`` replies that do not parse are marked in
        ``ok`` and described in ``errors`` instead of raising.
        """
        batch = self._core.classify_many(
            texts, destination=destination or "", raise_on_error=raise_on_error, lenient=lenient
        )
        return BatchClassification(batch, texts, lenient)


class BatchClassification:
    """Results of :meth:`Classifier.classify_many`, one row per input, as numpy arrays."""

    def __init__(
        self,
        batch: _core.ClassificationBatch,
        texts: Sequence[str] | npt.NDArray[Any] | None = None,
        lenient: bool = False,
    ) -> None:
        self._batch = batch
        self._texts = texts
        self._lenient = lenient
        self.code: npt.NDArray[np.int16] = batch.code
        self.category_code: npt.NDArray[np.uint8] = batch.category
        self.action_code: npt.NDArray[np.uint8] = batch.action
        self.transient: npt.NDArray[np.bool_] = batch.transient
        self.rule_index: npt.NDArray[np.int32] = batch.rule
        self.ok: npt.NDArray[np.bool_] = batch.ok
        self.basic_code_inferred: npt.NDArray[np.bool_] = batch.basic_code_inferred
        self.rules: list[str] = batch.rules
        self.errors: dict[int, str] = batch.errors

    def __len__(self) -> int:
        return len(self._batch)

    @cached_property
    def category(self) -> npt.NDArray[np.str_]:
        """Category names."""
        return np.asarray(CATEGORIES)[self.category_code]

    @cached_property
    def action(self) -> npt.NDArray[np.str_]:
        """Action names."""
        return np.asarray(ACTIONS)[self.action_code]

    @cached_property
    def rule(self) -> npt.NDArray[np.str_]:
        """Name of the deciding rule ('' where the reply did not parse)."""
        names = np.asarray([*self.rules, ""])
        return names[self.rule_index]

    @cached_property
    def text(self) -> list[str | None]:
        """Reply texts as parsed (code and enhanced code removed, continuation
        lines joined by newlines); None where the reply did not parse. Parsed
        again on first access, since the batch itself keeps only columns."""
        if self._texts is None:
            return [None] * len(self)

        def parse(t: str) -> str:
            try:
                return _core.parse_reply(t).text
            except InvalidInputError:
                # Log text: only an enhanced code, or (lenient) no code at all.
                return _core.parse_reply_lenient(t).text

        return [
            parse(t) if ok else None
            for t, ok in zip(list(self._texts), self.ok.tolist(), strict=True)
        ]

    @cached_property
    def enhanced(self) -> list[str | None]:
        """Enhanced status codes ('4.7.28') or None."""
        out: list[str | None] = []
        for packed in self._batch.enhanced_packed.tolist():
            if packed == 0:
                out.append(None)
            else:
                out.append(f"{packed // 1_000_000}.{packed // 1000 % 1000}.{packed % 1000}")
        return out

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row: code, enhanced, text, category, action, transient, rule, ok,
        basic_code_inferred."""
        return [
            {
                "code": int(code),
                "enhanced": enhanced,
                "text": text,
                "category": category,
                "action": action,
                "transient": bool(transient),
                "rule": rule,
                "ok": bool(ok),
                "basic_code_inferred": bool(inferred),
            }
            for code, enhanced, text, category, action, transient, rule, ok, inferred in zip(
                self.code.tolist(),
                self.enhanced,
                self.text,
                self.category.tolist(),
                self.action.tolist(),
                self.transient.tolist(),
                self.rule.tolist(),
                self.ok.tolist(),
                self.basic_code_inferred.tolist(),
                strict=True,
            )
        ]

    def to_pandas(self) -> Any:
        """A pandas DataFrame of :meth:`to_records` (needs the ``analysis`` extra)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.to_records())


_default: Classifier | None = None


def default_classifier() -> Classifier:
    """The shared classifier with only the built-in rules."""
    global _default
    if _default is None:
        _default = Classifier()
    return _default


def parse_reply(text: str | bytes) -> Reply:
    """Parse one reply as a server sends it; raises InvalidInputError when malformed."""
    return _core.parse_reply(text)


def parse_reply_lenient(text: str | bytes) -> Reply:
    """Like :func:`parse_reply`, but also accepts what logs and bounces carry
    instead of a reply: text starting with only an enhanced code
    (``"5.1.1 User unknown"``) or with no code at all. Such replies have
    ``code == 0``; the enhanced class, if any, decides ``transient``."""
    return _core.parse_reply_lenient(text)


def transport_reply(kind: str, detail: str = "") -> Reply:
    """A Reply for an attempt without an SMTP reply ('connection_refused', 'dns_failure', ...)."""
    return _core.transport_reply(kind, detail)


def classify(
    text: str | bytes, destination: str | None = None, *, lenient: bool = False
) -> ClassifiedReply:
    """Parse and classify one reply with the built-in rules."""
    return default_classifier().classify(text, destination, lenient=lenient)


def classify_many(
    texts: Sequence[str] | npt.NDArray[Any],
    *,
    destination: str | None = None,
    raise_on_error: bool = True,
    lenient: bool = False,
) -> BatchClassification:
    """Classify many replies with the built-in rules (GIL released)."""
    return default_classifier().classify_many(
        texts, destination=destination, raise_on_error=raise_on_error, lenient=lenient
    )
