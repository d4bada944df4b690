"""What-if simulation of retry policies against modelled receivers.

The event loop runs in the compiled core and drives the real engine in
virtual time (no wall clock, no sleeps): messages arrive, the engine leases
them, simulated receivers (Gmail-, Outlook-, Yahoo-like, enterprise gateways,
greylisting hosts, misconfigured ones) answer each attempt with real provider
wording, and the engine's decisions are recorded. Same scenario, policy and
seed give the same results.

>>> from mailretry import sim
>>> table = sim.compare(sim.Scenario(messages=20_000))       # doctest: +SKIP
>>> result = sim.run(sim.Scenario(messages=20_000), "adaptive")  # doctest: +SKIP
>>> result.outcomes.head()                                    # doctest: +SKIP

pandas and matplotlib are optional (``pip install mailretry[analysis]``):
``run`` works without them; DataFrames, CSV/Parquet export and plots need them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mailretry import _core
from mailretry.classify import load_toml
from mailretry.errors import InvalidInputError

#: pandas.DataFrame (pandas is optional and untyped here).
DataFrame = Any

__all__ = [
    "POLICIES",
    "Destination",
    "Profile",
    "Result",
    "Scenario",
    "Source",
    "compare",
    "default_scenario",
    "load_scenario",
    "plot",
    "profile",
    "profile_names",
    "run",
    "run_many",
    "summary_table",
    "sweep",
]

Policy = Mapping[str, Any]
Progress = Callable[[float], object]


def _stateless(concurrency: int = 20) -> dict[str, Any]:
    """Engine settings without destination state: a fixed number of
    connections per destination (Postfix's default_destination_concurrency_limit
    is 20), no reaction to throttling replies (1 ms suspensions, rate cuts from
    a million per second), no structural detection, no greylisting override."""
    return {
        "builtin_overrides": False,
        "structural": {"enabled": False},
        "destination_defaults": {
            "initial_concurrency": concurrency,
            "max_concurrency": concurrency,
            "min_concurrency": concurrency,
            "cut_concurrency_to": concurrency,
            "unlimited_cut_to": "1000000/1s",
            "min_rate": "1000000/1s",
            "suspend_base": 0.001,
            "suspend_max": 0.001,
            "connection_failures_to_suspend": 0,
        },
    }


def _with_retry(base: dict[str, Any], retry: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    out["retry"] = retry
    return out


#: The policies ``compare`` runs by default, as engine-config mappings (the
#: TOML shape that ``mailretry.Engine`` takes). All but ``adaptive`` run without
#: destination state at a fixed 20 connections per destination, which is how
#: the MTAs they imitate behave towards a 4xx after connect (see
#: docs in README: they react to connection failures only).
POLICIES: dict[str, dict[str, Any]] = {
    "naive-15m": _with_retry(
        _stateless(), {"backoff": "intervals", "intervals": ["15m"], "lifetime": "5d"}
    ),
    "postfix": _with_retry(_stateless(), {"preset": "postfix"}),
    "exim": _with_retry(_stateless(), {"preset": "exim"}),
    "kumomta": _with_retry(_stateless(), {"preset": "kumomta"}),
    "seed-no-state": _with_retry(_stateless(), {"preset": "default"}),
    "adaptive": {},
}


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Source:
    """A sending IP: its starting reputation at every receiver and its share."""

    name: str
    reputation: float = 0.9
    weight: float = 1.0


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
    ``"5d"``. ``tail_profiles`` maps profile names to weights for the Zipf tail
    of ``tail_domains`` domains; ``policies`` are extra engine-config mappings
    for :func:`compare` (from the TOML file's ``[policies.NAME]`` tables).
    """

    name: str = "scenario"
    messages: int | None = None
    seed: int | None = None
    start: float | None = None
    duration: Any = None
    arrival_window: Any = None
    hourly_weights: list[float] | None = None
    sources: list[Source] | None = None
    destinations: list[Destination] | None = None
    tail_domains: int | None = None
    zipf_exponent: float | None = None
    tail_profiles: dict[str, float] | None = None
    profiles: list[Profile] | None = None
    tick: Any = None
    policies: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The mapping the core reads (``None`` fields left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or f.name in ("name", "policies"):
                continue
            if f.name in ("sources", "destinations"):
                v = [dataclasses.asdict(x) for x in v]
            elif f.name == "profiles":
                v = [p.to_dict() for p in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """From a TOML-shaped mapping; unknown keys raise InvalidInputError."""
        d = dict(data)
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        for key in list(d):
            if key not in known:
                raise InvalidInputError(f"scenario {key}: unknown key")
        for key, value in d.items():
            if key == "sources":
                kwargs[key] = [_build(Source, s, f"sources[{i}]") for i, s in enumerate(value)]
            elif key == "destinations":
                kwargs[key] = [
                    _build(Destination, s, f"destinations[{i}]") for i, s in enumerate(value)
                ]
            elif key == "profiles":
                profiles = []
                for i, p in enumerate(value):
                    if not isinstance(p, Mapping) or "name" not in p:
                        raise InvalidInputError(f"scenario profiles[{i}]: needs a name")
                    rest = {k: v for k, v in p.items() if k not in ("name", "base")}
                    profiles.append(Profile(p["name"], p.get("base"), rest))
                kwargs[key] = profiles
            elif key == "policies":
                if not isinstance(value, Mapping):
                    raise InvalidInputError("scenario policies: expected a table of tables")
                kwargs[key] = {str(k): dict(v) for k, v in value.items()}
            else:
                kwargs[key] = value
        scenario = cls(**kwargs)
        scenario.check()
        return scenario

    def check(self) -> None:
        """Raise InvalidInputError if the core would reject this scenario."""
        _core.sim_check_scenario(self.to_dict())


def _build(cls: Any, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"scenario {path}: expected a table")
    try:
        return cls(**data)
    except TypeError as e:
        raise InvalidInputError(f"scenario {path}: {e}") from e


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a scenario TOML file (keys as in :class:`Scenario`)."""
    data = load_toml(path)
    data.setdefault("name", os.path.splitext(os.path.basename(os.fspath(path)))[0])
    return Scenario.from_dict(data)


def default_scenario() -> dict[str, Any]:
    """The built-in default scenario, completed, as a mapping."""
    return dict(_core.sim_default_scenario())


def profile_names() -> list[str]:
    """Names of the built-in receiver profiles."""
    return list(_core.sim_profile_names())


def profile(name: str) -> dict[str, Any]:
    """A built-in receiver profile as a mapping (durations in seconds)::

    max_connections_per_source  concurrent connections per source IP (0 = no cap)
    max_per_minute/max_per_hour accepted messages per source (0 = no ceiling)
    soft_block_below, throttle_probability, penalty, recovery_per_hour
                                reputation: below the threshold attempts are
                                throttled; refusals cost `penalty`; it recovers
    structural, structural_soft_attempts
                                misconfiguration (ground truth): deferred, then
                                5xx after that many deferrals (0 = never)
    maintenance_every/_duration/_offset, overload_probability,
    random_deferral_probability, greylist_probability, greylist_delay,
    mailbox_full_probability, mailbox_full_duration, unknown_user_probability,
    latency_min, latency_max, refuse_latency, replies (text per reply kind)
    """
    return dict(_core.sim_profile(name))


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


def _pandas() -> Any:
    try:
        pandas = importlib.import_module("pandas")
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mailretry.sim DataFrames need pandas: pip install 'mailretry[analysis]'"
        ) from e
    return pandas


def _pyplot() -> Any:
    try:
        # Off-screen rendering for the CLI, but never switch the backend of a
        # session that already has pyplot (Jupyter's inline plots would stop).
        if "matplotlib.pyplot" not in sys.modules:
            importlib.import_module("matplotlib").use("Agg", force=False)
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mailretry.sim plots need matplotlib: pip install 'mailretry[analysis]'"
        ) from e
    return plt


@dataclasses.dataclass
class Result:
    """One run: ``raw`` holds the core's NumPy arrays; the DataFrame
    properties build pandas views of them on demand."""

    scenario: str
    policy: str
    raw: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        """Headline metrics (percentages, seconds, counts)."""
        return dict(self.raw["summary"])

    @property
    def reply_kinds(self) -> dict[str, int]:
        """How often each receiver model answered."""
        return dict(self.raw["reply_kinds"])

    @property
    def outcomes(self) -> DataFrame:
        """One row per message: msg_id, destination, source, outcome,
        submit_s, end_s, attempts, replies_4xx (times from the scenario start)."""
        pd = _pandas()
        m = self.raw["messages"]
        domains = self.raw["domains"]["domain"]
        return pd.DataFrame(
            {
                "msg_id": np.arange(len(m["outcome"]), dtype=np.uint64),
                "destination": pd.Categorical.from_codes(m["domain"], categories=domains),
                "source": pd.Categorical.from_codes(
                    m["source"].astype(np.int32), categories=self.raw["sources"]
                ),
                "outcome": pd.Categorical.from_codes(
                    m["outcome"].astype(np.int8), categories=self.raw["outcome_names"]
                ),
                "submit_s": m["submit_s"],
                "end_s": m["end_s"],
                "attempts": m["attempts"],
                "replies_4xx": m["replies_4xx"],
            }
        )

    @property
    def timeseries(self) -> DataFrame:
        """One row per simulated hour: attempts, delivered, bounced, expired,
        replies_4xx, replies_5xx, in_flight and pending (at the hour's end)."""
        pd = _pandas()
        h = self.raw["hours"]
        df = pd.DataFrame({k: np.asarray(v) for k, v in h.items()})
        df.index.name = "hour"
        return df

    @property
    def destinations(self) -> DataFrame:
        """One row per receiving domain: profile, ground truth, messages, and
        when the engine first flagged it (structural_s, warning_s; NaN = never)."""
        pd = _pandas()
        return pd.DataFrame({k: v for k, v in self.raw["domains"].items()})

    def to_csv(self, directory: str | os.PathLike[str]) -> list[str]:
        """Write outcomes.csv, timeseries.csv, destinations.csv, summary.csv."""
        return self._export(directory, "csv")

    def to_parquet(self, directory: str | os.PathLike[str]) -> list[str]:
        """The same tables as Parquet (needs pyarrow or fastparquet)."""
        return self._export(directory, "parquet")

    def _export(self, directory: str | os.PathLike[str], fmt: str) -> list[str]:
        pd = _pandas()
        os.makedirs(directory, exist_ok=True)
        tables = {
            "outcomes": self.outcomes,
            "timeseries": self.timeseries,
            "destinations": self.destinations,
            "summary": pd.DataFrame([self.summary]),
        }
        paths = []
        for name, df in tables.items():
            path = os.path.join(directory, f"{name}.{fmt}")
            if fmt == "csv":
                df.to_csv(path, index=name == "timeseries")
            else:
                df.to_parquet(path)
            paths.append(path)
        return paths


def _policy(policy: str | Policy | None, scenario: Scenario | None = None) -> tuple[str, Policy]:
    if policy is None:
        return "adaptive", POLICIES["adaptive"]
    if isinstance(policy, str):
        extra = scenario.policies if scenario is not None else {}
        if policy in extra:
            return policy, extra[policy]
        if policy not in POLICIES:
            raise InvalidInputError(
                f"unknown policy {policy!r}; known: {', '.join([*POLICIES, *extra])}"
            )
        return policy, POLICIES[policy]
    return "custom", policy


def _scenario(scenario: Scenario | Mapping[str, Any] | None) -> Scenario:
    if scenario is None:
        return Scenario(name="default")
    if isinstance(scenario, Scenario):
        return scenario
    return Scenario.from_dict(scenario)


def run(
    scenario: Scenario | Mapping[str, Any] | None = None,
    policy: str | Policy | None = None,
    *,
    progress: Progress | None = None,
) -> Result:
    """Simulate ``scenario`` under ``policy``.

    Parameters
    ----------
    scenario
        A :class:`Scenario`, a TOML-shaped mapping, or None for the default.
    policy
        A name from :data:`POLICIES` (or the scenario's ``policies``), an
        engine-config mapping, or None for ``"adaptive"`` (the engine default).
    progress
        Called with the fraction of simulated time done (0..1) about once per
        simulated hour; returning False stops the run (InternalError "cancelled").

    Returns
    -------
    Result
        Arrays and summaries; DataFrames via its properties.
    """
    sc = _scenario(scenario)
    name, config = _policy(policy, sc)
    raw = _core.sim_run(sc.to_dict(), dict(config), progress)
    return Result(sc.name, name, raw)


def run_many(
    scenario: Scenario | Mapping[str, Any] | None = None,
    policies: Mapping[str, Policy] | Sequence[str] | None = None,
    *,
    progress: Callable[[str, float], object] | None = None,
    max_workers: int | None = None,
) -> dict[str, Result]:
    """Run one scenario (same seed) under several policies, in threads: the
    core releases the GIL, so runs use every core. Default policies: all of
    :data:`POLICIES` plus the scenario's own."""
    sc = _scenario(scenario)
    chosen: dict[str, Policy]
    if policies is None:
        chosen = {**POLICIES, **sc.policies}
    elif isinstance(policies, Mapping):
        chosen = dict(policies)
    else:
        chosen = {n: _policy(n, sc)[1] for n in policies}
    workers = max_workers or min(len(chosen), os.cpu_count() or 1)
    lock = threading.Lock()

    def one(name: str, config: Policy) -> Result:
        def report(fraction: float) -> object:
            if progress is None:
                return True
            with lock:
                return progress(name, fraction)

        return Result(sc.name, name, _core.sim_run(sc.to_dict(), dict(config), report))

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(one, name, cfg) for name, cfg in chosen.items()}
        return {name: f.result() for name, f in futures.items()}


SUMMARY_COLUMNS = (
    "delivered_pct",
    "bounced_pct",
    "expired_pct",
    "pending_pct",
    "ttd_p50_h",
    "ttd_p95_h",
    "ttd_p99_h",
    "attempts_per_delivered",
    "replies_4xx_per_delivered",
    "receiver_seconds_per_delivered",
    "structural_tp",
    "structural_fp",
    "structural_fn",
)


def _summary_row(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "delivered_pct": s["delivered_pct"],
        "bounced_pct": s["bounced_pct"],
        "expired_pct": s["expired_pct"],
        "pending_pct": s["pending_pct"],
        "ttd_p50_h": s["ttd_p50_s"] / 3600,
        "ttd_p95_h": s["ttd_p95_s"] / 3600,
        "ttd_p99_h": s["ttd_p99_s"] / 3600,
        "attempts_per_delivered": s["attempts_per_delivered"],
        "replies_4xx_per_delivered": s["replies_4xx_per_delivered"],
        "receiver_seconds_per_delivered": s["receiver_seconds_per_delivered"],
        "structural_tp": s["structural_true_positives"],
        "structural_fp": s["structural_false_positives"],
        "structural_fn": s["structural_false_negatives"],
    }


def summary_table(results: Mapping[str, Result]) -> DataFrame:
    """Side-by-side summaries, one row per policy (index ``policy``)."""
    pd = _pandas()
    df = pd.DataFrame(
        [{"policy": name, **_summary_row(r.raw["summary"])} for name, r in results.items()]
    )
    return df.set_index("policy")


def compare(
    scenario: Scenario | Mapping[str, Any] | None = None,
    policies: Mapping[str, Policy] | Sequence[str] | None = None,
    *,
    progress: Callable[[str, float], object] | None = None,
) -> DataFrame:
    """Run ``scenario`` under each policy with the same seed and return
    :func:`summary_table` of the results."""
    return summary_table(run_many(scenario, policies, progress=progress))


def _sweep_one(scenario: dict[str, Any], name: str, config: dict[str, Any]) -> dict[str, Any]:
    raw = _core.sim_run(scenario, config, None)
    return dict(raw["summary"])


def sweep(
    scenarios: Iterable[Scenario | Mapping[str, Any]],
    policies: Mapping[str, Policy] | Sequence[str] | None = None,
    executor: concurrent.futures.Executor | None = None,
) -> DataFrame:
    """Run every scenario under every policy on ``executor`` (any
    ``concurrent.futures.Executor``: a process pool by default, a Dask
    ``distributed.Client.get_executor()``, ...). Only summaries travel back.

    Returns a DataFrame with one row per (scenario, policy): the scenario's
    name and seed, the policy, then :data:`SUMMARY_COLUMNS`.
    """
    pd = _pandas()
    items = [_scenario(s) for s in scenarios]
    if policies is None:
        chosen: dict[str, Policy] = {"adaptive": POLICIES["adaptive"]}
    elif isinstance(policies, Mapping):
        chosen = dict(policies)
    else:
        chosen = {n: _policy(n)[1] for n in policies}
    own = executor is None
    pool = executor or concurrent.futures.ProcessPoolExecutor(
        max_workers=min(len(items) * len(chosen), os.cpu_count() or 1) or 1
    )
    try:
        jobs = []
        for i, sc in enumerate(items):
            for pname, cfg in chosen.items():
                fut = pool.submit(_sweep_one, sc.to_dict(), pname, dict(cfg))
                jobs.append((i, sc, pname, fut))
        rows = []
        for i, sc, pname, fut in jobs:
            s = fut.result()
            rows.append(
                {
                    "scenario": sc.name,
                    "index": i,
                    "seed": sc.seed,
                    "policy": pname,
                    **_summary_row(s),
                }
            )
    finally:
        if own:
            pool.shutdown()
    return pd.DataFrame(rows)


def plot(
    results: Mapping[str, Result] | Result,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> str:
    """Write a PNG: delivered over time, 4xx replies per hour, pending
    messages, and 4xx per delivered message, one line/bar per policy."""
    plt = _pyplot()
    if isinstance(results, Result):
        results = {results.policy: results}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (ax_del, ax_4xx), (ax_pend, ax_bar) = axes
    names = list(results)
    for name in names:
        r = results[name]
        h = r.raw["hours"]
        hours = np.arange(len(h["attempts"]))
        total = r.raw["summary"]["messages"]
        ax_del.plot(hours, 100.0 * np.cumsum(h["delivered"]) / total, label=name)
        ax_4xx.plot(hours, h["replies_4xx"], label=name, linewidth=1)
        ax_pend.plot(hours, h["pending"], label=name)
    ax_del.set(title="Delivered (cumulative %)", xlabel="simulated hour", ylabel="%")
    ax_4xx.set(title="4xx replies provoked per hour", xlabel="simulated hour")
    ax_4xx.set_yscale("symlog")
    ax_pend.set(title="Pending messages", xlabel="simulated hour")
    per = [results[n].raw["summary"]["replies_4xx_per_delivered"] for n in names]
    ax_bar.bar(names, per, color=[f"C{i}" for i in range(len(names))])
    ax_bar.set(title="4xx replies per delivered message")
    ax_bar.tick_params(axis="x", rotation=30)
    ax_del.legend(fontsize=8)
    first = next(iter(results.values()))
    fig.suptitle(title or f"mailretry simulation: {first.scenario}")
    fig.tight_layout()
    out = os.fspath(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
