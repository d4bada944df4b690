"""Scenarios of :mod:`mailretry.sim`: the :class:`Scenario` dataclasses and
their TOML loading, the packaged standard suite's files, and the built-in
receiver profiles and provenance as the core reports them. Everything here is
also importable from :mod:`mailretry.sim`."""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from mailretry import _core
from mailretry.classify import load_toml
from mailretry.errors import InvalidInputError

__all__ = [
    "Destination",
    "Profile",
    "Scenario",
    "Source",
    "default_scenario",
    "explain",
    "load_scenario",
    "load_suite",
    "profile",
    "profile_names",
    "suite_names",
]


@dataclasses.dataclass
class Source:
    """A sending IP with the domain it sends for: its starting reputation at
    every receiver, its share of messages, and its sender-side properties (a
    PTR record belongs to the IP; SPF, DKIM, DMARC to the domain). Receivers
    that check a property the source lacks refuse it."""

    name: str
    reputation: float = 0.9
    weight: float = 1.0
    ptr: bool = True
    spf: bool = True
    dkim: bool = True
    dmarc: bool = True


@dataclasses.dataclass
class Destination:
    """A named receiving domain with a fixed share of all messages."""

    domain: str
    share: float
    profile: str


@dataclasses.dataclass
class Profile:
    """A receiver profile: ``base`` (a built-in name, default: ``name`` if it is
    a built-in, else ``"generic-host"``) with the given fields changed. See
    :func:`profile` for the fields and their meaning."""

    name: str
    base: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, **self.overrides}
        if self.base is not None:
            out["base"] = self.base
        return out


@dataclasses.dataclass
class Scenario:
    """A simulated workload. ``None`` fields take the built-in default
    scenario's value (see :func:`default_scenario`).

    Durations are seconds, ``datetime.timedelta`` or strings such as ``"15m"``,
    ``"5d"``. ``horizon`` stops the run early (unfinished messages count as
    ``held``); by default a run continues until every message has an outcome.
    ``reputation_from_retries`` turns on the receivers' reputation penalty for
    refused attempts (off by default: no source sizes it). ``tail_profiles``
    maps profile names to weights for the Zipf tail of ``tail_domains``
    domains; ``policies`` are extra engine-config mappings for :func:`compare`
    (the TOML file's ``[policies.NAME]`` tables).
    """

    name: str = "scenario"
    description: str = ""
    messages: int | None = None
    seed: int | None = None
    start: float | None = None
    horizon: Any = None
    arrival_window: Any = None
    hourly_weights: list[float] | None = None
    sources: list[Source] | None = None
    destinations: list[Destination] | None = None
    tail_domains: int | None = None
    zipf_exponent: float | None = None
    tail_profiles: dict[str, float] | None = None
    profiles: list[Profile] | None = None
    reputation_from_retries: bool | None = None
    policies: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The mapping the core reads (``None`` fields left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or f.name in ("name", "description", "policies"):
                continue
            if f.name in ("sources", "destinations"):
                v = [dataclasses.asdict(x) for x in v]
            elif f.name == "profiles":
                v = [p.to_dict() for p in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """From a TOML-shaped mapping. The core validates it (one place decides
        what a scenario may contain); a bad key or value raises
        InvalidInputError naming it."""
        _core.sim_check_scenario(dict(data))
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "sources":
                kwargs[key] = [Source(**s) for s in value]
            elif key == "destinations":
                kwargs[key] = [Destination(**s) for s in value]
            elif key == "profiles":
                kwargs[key] = [
                    Profile(
                        p["name"],
                        p.get("base"),
                        {k: v for k, v in p.items() if k not in ("name", "base")},
                    )
                    for p in value
                ]
            elif key == "policies":
                kwargs[key] = {str(k): dict(v) for k, v in value.items()}
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def check(self) -> None:
        """Raise InvalidInputError if the core would reject this scenario."""
        _core.sim_check_scenario(self.to_dict())

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a scenario TOML file (keys as in :class:`Scenario`)."""
    data = load_toml(path)
    data.setdefault("name", os.path.splitext(os.path.basename(os.fspath(path)))[0])
    return Scenario.from_dict(data)


def _suite_root(directory: str | os.PathLike[str] | None) -> Any:
    if directory is None:
        return importlib.resources.files("mailretry") / "scenarios"
    path = pathlib.Path(directory)
    if not path.is_dir():
        raise InvalidInputError(f"scenario directory {os.fspath(directory)!r} does not exist")
    return path


def suite_names(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the standard scenarios shipped with the package (or of the
    ``*.toml`` files in ``directory``, e.g. a held-out set), in order."""
    root = _suite_root(directory)
    names = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))
    return names


def load_suite(
    names: Sequence[str] | None = None, directory: str | os.PathLike[str] | None = None
) -> list[Scenario]:
    """The standard scenarios (all, or those named), each with its
    ``description`` saying what it tests and why; from ``directory`` instead
    of the package when given."""
    known = suite_names(directory)
    chosen = list(names) if names else known
    out = []
    root = _suite_root(directory)
    for name in chosen:
        if name not in known:
            raise InvalidInputError(f"unknown suite scenario {name!r}; known: {', '.join(known)}")
        try:
            data = tomllib.loads((root / f"{name}.toml").read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:  # pragma: no cover - shipped files are tested
            raise InvalidInputError(f"scenario {name}: {e}") from e
        data.setdefault("name", name)
        out.append(Scenario.from_dict(data))
    return out


def default_scenario() -> dict[str, Any]:
    """The built-in default scenario, completed, as a mapping."""
    return dict(_core.sim_default_scenario())


def profile_names() -> list[str]:
    """Names of the built-in receiver profiles."""
    return list(_core.sim_profile_names())


def profile(name: str) -> dict[str, Any]:
    """A built-in receiver profile as a mapping (durations in seconds)::

    provider                    the MX's provider ("google", ...), for preset rules
    max_connections_per_source  concurrent connections per source IP (0 = no cap)
    max_per_minute/max_per_hour accepted messages per source, token buckets
    ceiling_strict              refused attempts also take a token
    soft_block_below, throttle_probability
                                low-reputation throttling
    retry_penalty, recovery_per_hour
                                reputation-from-retries (with the scenario switch)
    incident_offset/_duration/_probability
                                a reputation incident window
    checks_ptr, ptr_soft_attempts, checks_auth, auth_soft_attempts
                                sender-side faults shown here (4xx count before 5xx;
                                65535 = never 5xx)
    maintenance_every/_duration/_offset, outage_offset/_duration/_kind,
    overload_probability, random_deferral_probability, refuse_probability,
    timeout_probability, drop_probability, greylist_probability, greylist_delay,
    mailbox_full_probability, mailbox_full_duration, unknown_user_probability,
    latency_min, latency_max, refuse_latency, connect_timeout, replies
    """
    return dict(_core.sim_profile(name))


def explain() -> dict[str, list[dict[str, str]]]:
    """Provenance: where every built-in receiver parameter comes from
    (``"profiles"``) and what each preset policy reproduces (``"presets"``);
    rows of item, field, value, source, confidence."""
    return {
        "profiles": list(_core.sim_explain_profiles()),
        "presets": list(_core.sim_explain_presets()),
    }
