"""The ``[cluster]`` table: how a node shares destination state through Redis.

Part of :mod:`mailretry.cluster` (import it from there). Durations and rates go
through the engine's one config grammar (``_core.parse_duration`` and
``_core.parse_rate``), so ``"1m30s"`` and ``"100/1m"`` mean here what they mean
everywhere else in the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailretry import _core
from mailretry.errors import InvalidInputError

__all__ = ["ClusterConfig", "DestinationLimits"]


# -- configuration ----------------------------------------------------------------
def _seconds(value: object, key: str) -> float:
    """Seconds from a number or a config duration ("30s", "1m30s"): the
    engine's one grammar (``_core.parse_duration``)."""
    if isinstance(value, bool):
        raise InvalidInputError(f"cluster.{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = _core.parse_duration(value)
        except InvalidInputError as exc:
            raise InvalidInputError(f"cluster.{key}: {exc}") from None
    else:
        raise InvalidInputError(f"cluster.{key}: expected seconds or a duration like '30s'")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInputError(f"cluster.{key}: must be a finite duration >= 0")
    return seconds


def _rate(value: object, key: str) -> float | None:
    """Messages per second from ``"N/duration"`` (``None``: unlimited), by the
    engine's rate grammar (``_core.parse_rate``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"cluster.{key}: expected a rate like '100/1m' or 'unlimited'")
    try:
        rate = _core.parse_rate(value)
    except InvalidInputError as exc:
        raise InvalidInputError(f"cluster.{key}: {exc}") from None
    return None if rate is None else rate[0] / rate[1]


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"cluster.{key}: expected an integer >= 0")
    return value


@dataclass(frozen=True)
class DestinationLimits:
    """Cluster-wide limits of one source x destination."""

    max_connections: int = 0  #: slots; 0 = no cap
    rate_per_second: float | None = None  #: GCRA ceiling; None = none

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], path: str) -> DestinationLimits:
        unknown = set(m) - {"max_connections", "rate"}
        if unknown:
            raise InvalidInputError(f"cluster.{path}{sorted(unknown)[0]}: unknown key")
        return cls(
            max_connections=_count(m.get("max_connections", 0), f"{path}max_connections"),
            rate_per_second=_rate(m.get("rate"), f"{path}rate"),
        )


@dataclass(frozen=True)
class ClusterConfig:
    """How a node shares destination state (the ``[cluster]`` TOML table)."""

    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "mailretry"
    node_id: str = ""  #: "" = host name and process id
    share: float = 1.0  #: this node's part of the limits while Redis is unreachable
    defaults: DestinationLimits = DestinationLimits()
    destinations: Mapping[str, DestinationLimits] = field(default_factory=dict)
    burst: int = 1  #: GCRA burst (1: evenly spaced)
    connection_ttl: float = 30.0  #: a slot's life without renewal (a crashed node's slots end)
    cut_ttl: float = 900.0  #: how long a published cut or flag lasts after its last evidence
    poll_interval: float = 0.25  #: how often the local view is refreshed
    retry_interval: float = 1.0  #: how often an unreachable Redis is tried again
    max_wait: float = 5.0  #: a suspension ending later than this is applied, not waited out
    timeout: float = 1.0  #: seconds a Redis command may take before Redis counts as down
    connections: int = 16  #: Redis connections per node (commands wait for a free one)

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise InvalidInputError("cluster.share: must be in (0, 1]")
        if "{" in self.namespace or "}" in self.namespace or not self.namespace:
            raise InvalidInputError("cluster.namespace: must be non-empty, without braces")
        if self.burst < 1:
            raise InvalidInputError("cluster.burst: must be >= 1")
        if self.connections < 1:
            raise InvalidInputError("cluster.connections: must be >= 1")
        for name in ("connection_ttl", "cut_ttl", "poll_interval", "retry_interval", "timeout"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"cluster.{name}: must be > 0")
        if self.connection_ttl < 0.1:
            raise InvalidInputError("cluster.connection_ttl: must be >= 100ms")

    def limits(self, destination: str) -> DestinationLimits:
        """The configured cluster-wide limits of a destination."""
        return self.destinations.get(destination.lower(), self.defaults)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ClusterConfig:
        """From a mapping shaped like the ``[cluster]`` table; unknown keys and
        bad values raise InvalidInputError naming the key."""
        known = {
            "url", "namespace", "node_id", "share", "max_connections", "rate", "burst",
            "connection_ttl", "cut_ttl", "poll_interval", "retry_interval", "max_wait",
            "timeout", "connections", "destinations",
        }  # fmt: skip
        unknown = set(m) - known
        if unknown:
            raise InvalidInputError(f"cluster.{sorted(unknown)[0]}: unknown key")
        kw: dict[str, Any] = {}
        for key in ("url", "namespace", "node_id"):
            if key in m:
                if not isinstance(m[key], str):
                    raise InvalidInputError(f"cluster.{key}: expected a string")
                kw[key] = m[key]
        if "share" in m:
            share = m["share"]
            if isinstance(share, bool) or not isinstance(share, int | float):
                raise InvalidInputError("cluster.share: expected a number")
            kw["share"] = float(share)
        if "burst" in m:
            kw["burst"] = _count(m["burst"], "burst")
        if "connections" in m:
            kw["connections"] = _count(m["connections"], "connections")
        for key in ("connection_ttl", "cut_ttl", "poll_interval", "retry_interval", "max_wait"):
            if key in m:
                kw[key] = _seconds(m[key], key)
        if "timeout" in m:
            kw["timeout"] = _seconds(m["timeout"], "timeout")
        kw["defaults"] = DestinationLimits.from_mapping(
            {k: m[k] for k in ("max_connections", "rate") if k in m}, ""
        )
        dests = m.get("destinations", {})
        if not isinstance(dests, Mapping):
            raise InvalidInputError("cluster.destinations: expected a table")
        out: dict[str, DestinationLimits] = {}
        for name, table in dests.items():
            if not isinstance(table, Mapping):
                raise InvalidInputError(f"cluster.destinations.{name}: expected a table")
            merged = {
                "max_connections": kw["defaults"].max_connections,
                "rate": m.get("rate"),
                **table,
            }
            out[str(name).lower()] = DestinationLimits.from_mapping(merged, f"destinations.{name}.")
        kw["destinations"] = out
        return cls(**kw)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ClusterConfig | None:
        """The ``[cluster]`` table of a configuration file, or None when it has
        none (a single node)."""
        # The engine's reader: one TOML parser and one check of the whole file
        # (MissingFileError, InvalidInputError naming line and key).
        doc = _core.read_config_file(os.fspath(path))
        table = doc.get("cluster")
        if table is None:
            return None
        if not isinstance(table, Mapping):
            raise InvalidInputError("cluster: expected a table")
        return cls.from_mapping(table)
