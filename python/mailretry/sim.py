"""What-if simulation of retry policies against modelled receivers.

The event loop runs in the compiled core at millisecond resolution and drives
the real engine in virtual time (no wall clock, no sleeps): messages arrive,
the engine leases them, a sending-MTA model (for the presets: Postfix's qmgr,
Exim's host hints, KumoMTA's shaping and automation, PowerMTA's backoff mode)
decides when each is really tried, simulated receivers answer, and every
message ends delivered, bounced, expired or (only at a finite horizon) held.
Same scenario, policy and seed give the same results.

>>> from mailretry import sim
>>> table = sim.compare(sim.Scenario(messages=20_000))       # doctest: +SKIP
>>> result = sim.run(sim.Scenario(messages=20_000), "postfix")  # doctest: +SKIP
>>> df = sim.run_suite(seeds=[1, 2, 3])                       # doctest: +SKIP
>>> sim.envelope(df)                                          # doctest: +SKIP

pandas and matplotlib are optional (``pip install mailretry[analysis]``):
``run`` works without them; DataFrames, CSV/Parquet export and plots need them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import importlib.resources
import math
import os
import pathlib
import sys
import threading
import tomllib
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
    "SUMMARY_COLUMNS",
    "Destination",
    "Profile",
    "Result",
    "Scenario",
    "Source",
    "compare",
    "default_scenario",
    "envelope",
    "explain",
    "load_scenario",
    "load_suite",
    "plot",
    "plot_suite",
    "profile",
    "profile_names",
    "run",
    "run_many",
    "run_suite",
    "suite_names",
    "suite_table",
    "summary_table",
    "sweep",
]

#: A preset name (see :data:`POLICIES`) or an engine-config mapping (the TOML
#: shape ``mailretry.Engine`` takes), which runs the engine alone.
Policy = str | Mapping[str, Any]
Progress = Callable[[float], object]

#: The preset policies ``compare`` and the suite run, in display order:
#: ``naive`` (every 15 min, 20 connections, no reaction to anything), the
#: sending-MTA models ``postfix``, ``exim``, ``kumomta`` and ``powermta`` (the
#: MTA's schedule plus its queue manager: concurrency feedback, host hints,
#: shaping and automation, backoff mode; see :func:`explain`), and
#: ``adaptive`` (mailretry's engine defaults).
POLICIES: tuple[str, ...] = tuple(_core.sim_policy_names())
#: The policies the envelope compares ``adaptive`` against.
PRESETS: tuple[str, ...] = tuple(p for p in POLICIES if p != "adaptive")


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


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
        """One row per receiving domain: domain, profile, messages."""
        pd = _pandas()
        return pd.DataFrame({k: v for k, v in self.raw["domains"].items()})

    @property
    def pairs(self) -> DataFrame:
        """One row per (destination, source) pair with traffic: messages, the
        ground truth (``structural``: the source fails a check the receiver
        makes) and when the policy first flagged it (``structural_s``,
        ``warning_s``; NaN = never)."""
        pd = _pandas()
        p = self.raw["pairs"]
        domains = self.raw["domains"]["domain"]
        sources = self.raw["sources"]
        n = len(p["messages"])
        idx = np.arange(n)
        df = pd.DataFrame(
            {
                "destination": [domains[i // len(sources)] for i in idx],
                "source": [sources[i % len(sources)] for i in idx],
                "messages": p["messages"],
                "structural": p["structural"],
                "structural_s": p["structural_s"],
                "warning_s": p["warning_s"],
            }
        )
        return df[df["messages"] > 0].reset_index(drop=True)

    def to_csv(self, directory: str | os.PathLike[str]) -> list[str]:
        """Write outcomes.csv, timeseries.csv, destinations.csv, pairs.csv, summary.csv."""
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
            "pairs": self.pairs,
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


def _policy(policy: Policy | None, scenario: Scenario | None = None) -> tuple[str, Policy]:
    if policy is None:
        return "adaptive", "adaptive"
    if isinstance(policy, str):
        extra = scenario.policies if scenario is not None else {}
        if policy in extra:
            return policy, extra[policy]
        if policy not in POLICIES:
            raise InvalidInputError(
                f"unknown policy {policy!r}; known: {', '.join([*POLICIES, *extra])}"
            )
        return policy, policy
    return "custom", policy


def _core_policy(policy: Policy) -> Any:
    return policy if isinstance(policy, str) else dict(policy)


def _scenario(scenario: Scenario | Mapping[str, Any] | None) -> Scenario:
    if scenario is None:
        return Scenario(name="default")
    if isinstance(scenario, Scenario):
        return scenario
    return Scenario.from_dict(scenario)


def run(
    scenario: Scenario | Mapping[str, Any] | None = None,
    policy: Policy | None = None,
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
        engine-config mapping (the engine alone decides), or None for
        ``"adaptive"`` (the engine defaults).
    progress
        Called with the fraction of simulated time done (0..1) about once per
        simulated hour; returning False stops the run (error "cancelled").

    Returns
    -------
    Result
        Arrays and summaries; DataFrames via its properties.
    """
    sc = _scenario(scenario)
    name, config = _policy(policy, sc)
    raw = _core.sim_run(sc.to_dict(), _core_policy(config), progress)
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
        chosen = {**{p: p for p in POLICIES}, **sc.policies}
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

        return Result(sc.name, name, _core.sim_run(sc.to_dict(), _core_policy(config), report))

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(one, name, cfg) for name, cfg in chosen.items()}
        return {name: f.result() for name, f in futures.items()}


#: Columns of :func:`summary_table`, :func:`sweep` and :func:`run_suite`.
#: ``p50_h``/``p95_h``/``p99_h`` are over ALL messages, an undelivered one
#: counting as never (inf); ``dlv_p*_h`` over delivered messages only.
SUMMARY_COLUMNS = (
    "delivered_pct",
    "bounced_pct",
    "expired_pct",
    "held_pct",
    "p50_h",
    "p95_h",
    "p99_h",
    "dlv_p50_h",
    "dlv_p95_h",
    "dlv_p99_h",
    "attempts_per_delivered",
    "replies_4xx_per_delivered",
    "local_deferrals",
    "receiver_seconds_per_delivered",
    "structural_precision",
    "structural_recall",
    "structural_tp",
    "structural_fp",
    "structural_fn",
)


def _summary_row(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "delivered_pct": s["delivered_pct"],
        "bounced_pct": s["bounced_pct"],
        "expired_pct": s["expired_pct"],
        "held_pct": s["held_pct"],
        "p50_h": s["all_p50_s"] / 3600,
        "p95_h": s["all_p95_s"] / 3600,
        "p99_h": s["all_p99_s"] / 3600,
        "dlv_p50_h": s["ttd_p50_s"] / 3600,
        "dlv_p95_h": s["ttd_p95_s"] / 3600,
        "dlv_p99_h": s["ttd_p99_s"] / 3600,
        "attempts_per_delivered": s["attempts_per_delivered"],
        "replies_4xx_per_delivered": s["replies_4xx_per_delivered"],
        "local_deferrals": s["local_deferrals"],
        "receiver_seconds_per_delivered": s["receiver_seconds_per_delivered"],
        "structural_precision": s["structural_precision"],
        "structural_recall": s["structural_recall"],
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


def _sweep_one(scenario: dict[str, Any], name: str, config: Any) -> dict[str, Any]:
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
    name, index and seed, the policy, then :data:`SUMMARY_COLUMNS`.
    """
    pd = _pandas()
    items = [_scenario(s) for s in scenarios]
    if policies is None:
        chosen: dict[str, Policy] = {"adaptive": "adaptive"}
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
                fut = pool.submit(_sweep_one, sc.to_dict(), pname, _core_policy(cfg))
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


# --------------------------------------------------------------------------
# The standard suite
# --------------------------------------------------------------------------

#: Columns :func:`suite_table` averages over seeds.
SUITE_COLUMNS = (
    "delivered_pct",
    "bounced_pct",
    "expired_pct",
    "held_pct",
    "replies_4xx_per_delivered",
    "p50_h",
    "p95_h",
    "p99_h",
    "dlv_p95_h",
    "structural_precision",
    "structural_recall",
)


def run_suite(
    names: Sequence[str] | None = None,
    seeds: Sequence[int] = (1, 2, 3),
    policies: Sequence[str] | None = None,
    *,
    reputation: Sequence[bool] = (False,),
    messages: int | None = None,
    max_workers: int | None = None,
    progress: Callable[[int, int], object] | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> DataFrame:
    """Run the standard scenarios (all, or ``names``) under every policy for
    every seed, with the reputation-from-retries effect off and/or on.
    ``directory``: run the ``*.toml`` scenarios there instead (a held-out set).

    Returns one row per (scenario, reputation_from_retries, seed, policy) with
    :data:`SUMMARY_COLUMNS`. Runs go to a thread pool (the core releases the
    GIL). ``messages`` scales every scenario down (smoke runs).
    ``progress(done, total)`` is called after each run.
    """
    pd = _pandas()
    chosen = list(policies) if policies else list(POLICIES)
    jobs: list[tuple[Scenario, bool, int, str]] = []
    for sc in load_suite(names, directory):
        for rep in reputation:
            for seed in seeds:
                variant = sc.replace(seed=seed, reputation_from_retries=rep)
                if messages is not None:
                    variant.messages = messages
                for pol in chosen:
                    jobs.append((variant, rep, seed, pol))
    total = len(jobs)
    done = 0
    lock = threading.Lock()

    def one(job: tuple[Scenario, bool, int, str]) -> dict[str, Any]:
        nonlocal done
        sc, rep, seed, pol = job
        raw = _core.sim_run(sc.to_dict(), _core_policy(_policy(pol, sc)[1]), None)
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)
        return {
            "scenario": sc.name,
            "reputation_from_retries": rep,
            "seed": seed,
            "policy": pol,
            **_summary_row(raw["summary"]),
        }

    workers = max_workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, jobs))
    return pd.DataFrame(rows)


def suite_table(df: DataFrame) -> DataFrame:
    """:func:`run_suite` rows averaged over seeds, one row per (scenario,
    reputation_from_retries, policy), policies in :data:`POLICIES` order. An
    infinite percentile stays infinite (a mean with inf is inf)."""
    keys = ["scenario", "reputation_from_retries", "policy"]
    out = df.groupby(keys, sort=False)[list(SUITE_COLUMNS)].mean()
    order = {p: i for i, p in enumerate(POLICIES)}
    out = out.reset_index()
    out["_o"] = out["policy"].map(lambda p: order.get(p, len(order)))
    out = out.sort_values(["reputation_from_retries", "scenario", "_o"], kind="stable")
    return out.drop(columns="_o").set_index(keys)


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if math.isinf(a) and math.isinf(b):
        return math.nan
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


def envelope(df: DataFrame, policy: str = "adaptive") -> DataFrame:
    """Per scenario: ``policy``'s ratio to the best preset (the lowest value
    among :data:`PRESETS`) on 4xx per delivered and on p95 over all messages,
    each averaged over seeds. A ratio above 1 means some preset did better;
    ``best_*`` names it. NaN where both are infinite (neither delivers 95 %)."""
    pd = _pandas()
    table = suite_table(df)
    rows = []
    for (scenario, rep), block in table.groupby(level=[0, 1], sort=False):
        block = block.droplevel([0, 1])
        if policy not in block.index:
            continue
        presets = block.drop(index=[p for p in block.index if p not in PRESETS])
        row: dict[str, Any] = {"scenario": scenario, "reputation_from_retries": rep}
        for col, label in (("replies_4xx_per_delivered", "4xx"), ("p95_h", "p95")):
            best_name = str(presets[col].idxmin()) if len(presets) else ""
            best = float(presets[col].min()) if len(presets) else math.nan
            own = float(block.loc[policy, col])
            row[f"{label}_{policy}"] = own
            row[f"{label}_best_preset"] = best_name
            row[f"{label}_best"] = best
            row[f"{label}_ratio"] = _ratio(own, best)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["scenario", "reputation_from_retries"])


def plot_suite(df: DataFrame, path: str | os.PathLike[str]) -> str:
    """Write a PNG: per scenario, 4xx per delivered and p95 over all messages
    (capped at the plot's top when infinite) for each policy."""
    plt = _pyplot()
    table = suite_table(df)
    reps = sorted(set(table.index.get_level_values(1)))
    fig, axes = plt.subplots(len(reps), 2, figsize=(15, 4.8 * len(reps)), squeeze=False)
    for row, rep in enumerate(reps):
        sub = table.xs(rep, level=1)
        scenarios = list(dict.fromkeys(sub.index.get_level_values(0)))
        policies = [p for p in POLICIES if p in set(sub.index.get_level_values(1))]
        width = 0.8 / max(1, len(policies))
        for col, (metric, title) in enumerate(
            (
                ("replies_4xx_per_delivered", "4xx replies per delivered message"),
                ("p95_h", "p95 time to delivery, all messages (h; top = never)"),
            )
        ):
            ax = axes[row][col]
            values = sub[metric].replace([np.inf], np.nan)
            top = float(values.max()) * 1.15 if values.notna().any() else 1.0
            lookup = {key: float(v) for key, v in sub[metric].items()}
            for i, pol in enumerate(policies):
                ys = []
                for scn in scenarios:
                    v = lookup.get((scn, pol), np.nan)
                    ys.append(top if math.isinf(v) else v)
                xs = np.arange(len(scenarios)) + i * width
                ax.bar(xs, ys, width=width, label=pol, color=f"C{i}")
            ax.set_xticks(np.arange(len(scenarios)) + 0.4 - width / 2)
            ax.set_xticklabels(scenarios, rotation=30, ha="right", fontsize=8)
            effect = "on" if rep else "off"
            ax.set_title(f"{title} (reputation-from-retries {effect})", fontsize=10)
            if metric == "replies_4xx_per_delivered":
                ax.set_yscale("symlog")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    out = os.fspath(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


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
