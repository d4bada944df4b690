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
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mailretry import _core
from mailretry.errors import InvalidInputError
from mailretry.sim_scenario import (
    Destination,
    Profile,
    Scenario,
    Source,
    default_scenario,
    explain,
    load_scenario,
    load_suite,
    profile,
    profile_names,
    suite_names,
)

#: pandas.DataFrame (pandas is optional and untyped here).
DataFrame = Any

__all__ = [
    "POLICIES",
    "SUITE_COLUMNS",
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


# The standard suite lives in mailretry.sim_suite (split by area, issue 9);
# its functions stay importable from here.
from mailretry.sim_suite import (  # noqa: E402
    SUITE_COLUMNS,
    envelope,
    plot_suite,
    run_suite,
    suite_table,
)
