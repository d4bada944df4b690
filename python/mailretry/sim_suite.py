"""The standard scenario suite of :mod:`mailretry.sim`: every packaged
scenario under every policy for several seeds (:func:`run_suite`), the table
averaged over seeds (:func:`suite_table`), adaptive's envelope against the best
preset (:func:`envelope`) and its PNG (:func:`plot_suite`). Everything here is
also importable from :mod:`mailretry.sim`.

The module imports :mod:`mailretry.sim` inside its functions: ``mailretry.sim``
re-exports these names at import time, so a module-level import would be
circular.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mailretry import _core

if TYPE_CHECKING:
    from mailretry.sim import Scenario

__all__ = ["SUITE_COLUMNS", "envelope", "plot_suite", "run_suite", "suite_table"]

DataFrame = Any


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
    from mailretry import sim as _sim

    pd = _sim._pandas()
    chosen = list(policies) if policies else list(_sim.POLICIES)
    jobs: list[tuple[Scenario, bool, int, str]] = []
    for sc in _sim.load_suite(names, directory):
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
        raw = _core.sim_run(sc.to_dict(), _sim._core_policy(_sim._policy(pol, sc)[1]), None)
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)
        return {
            "scenario": sc.name,
            "reputation_from_retries": rep,
            "seed": seed,
            "policy": pol,
            **_sim._summary_row(raw["summary"]),
        }

    workers = max_workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, jobs))
    return pd.DataFrame(rows)


def suite_table(df: DataFrame) -> DataFrame:
    """:func:`run_suite` rows averaged over seeds, one row per (scenario,
    reputation_from_retries, policy), policies in :data:`~mailretry.sim.POLICIES` order. An
    infinite percentile stays infinite (a mean with inf is inf)."""
    from mailretry import sim as _sim

    keys = ["scenario", "reputation_from_retries", "policy"]
    out = df.groupby(keys, sort=False)[list(SUITE_COLUMNS)].mean()
    order = {p: i for i, p in enumerate(_sim.POLICIES)}
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
    among :data:`~mailretry.sim.PRESETS`) on 4xx per delivered and on p95 over all messages,
    each averaged over seeds. A ratio above 1 means some preset did better;
    ``best_*`` names it. NaN where both are infinite (neither delivers 95 %)."""
    from mailretry import sim as _sim

    pd = _sim._pandas()
    table = suite_table(df)
    rows = []
    for (scenario, rep), block in table.groupby(level=[0, 1], sort=False):
        block = block.droplevel([0, 1])
        if policy not in block.index:
            continue
        presets = block.drop(index=[p for p in block.index if p not in _sim.PRESETS])
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
    from mailretry import sim as _sim

    plt = _sim._pyplot()
    table = suite_table(df)
    reps = sorted(set(table.index.get_level_values(1)))
    fig, axes = plt.subplots(len(reps), 2, figsize=(15, 4.8 * len(reps)), squeeze=False)
    for row, rep in enumerate(reps):
        sub = table.xs(rep, level=1)
        scenarios = list(dict.fromkeys(sub.index.get_level_values(0)))
        policies = [p for p in _sim.POLICIES if p in set(sub.index.get_level_values(1))]
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
