"""mailretry.sim: scenarios, runs, comparisons, sweeps, plots (small sizes)."""

from __future__ import annotations

import concurrent.futures
import math
from pathlib import Path

import numpy as np
import pytest

from mailretry import sim
from mailretry.errors import InvalidInputError

pd = pytest.importorskip("pandas")


def small(**kw: object) -> sim.Scenario:
    base: dict[str, object] = {
        "name": "small",
        "messages": 1500,
        "tail_domains": 100,
        "duration": "2d",
        "seed": 3,
    }
    base.update(kw)
    return sim.Scenario(**base)  # type: ignore[arg-type]


def test_run_returns_consistent_tables() -> None:
    r = sim.run(small(), "adaptive")
    out = r.outcomes
    assert len(out) == 1500
    assert list(out.columns) == [
        "msg_id",
        "destination",
        "source",
        "outcome",
        "submit_s",
        "end_s",
        "attempts",
        "replies_4xx",
    ]
    counts = out["outcome"].value_counts()
    s = r.summary
    assert counts.get("delivered", 0) == s["delivered"] > 0
    assert s["delivered"] + s["bounced"] + s["expired"] + s["pending"] == 1500
    ts = r.timeseries
    assert len(ts) == 48
    assert ts["attempts"].sum() == s["attempts"] == out["attempts"].sum()
    assert ts["delivered"].sum() == s["delivered"]
    ended = out["outcome"] != "pending"
    assert out.loc[ended, "end_s"].notna().all()
    assert (out.loc[ended, "end_s"] >= out.loc[ended, "submit_s"]).all()
    assert r.reply_kinds["accepted"] == s["delivered"]


def test_same_seed_same_result_different_seed_differs() -> None:
    a = sim.run(small(), "postfix")
    b = sim.run(small(), "postfix")
    c = sim.run(small(seed=4), "postfix")
    for key in ("outcome", "attempts", "domain"):
        np.testing.assert_array_equal(a.raw["messages"][key], b.raw["messages"][key])
    assert not np.array_equal(a.raw["messages"]["domain"], c.raw["messages"]["domain"])


def test_compare_has_every_policy_and_scores_structural_detection() -> None:
    table = sim.compare(small(messages=3000, tail_domains=60))
    assert list(table.index) == list(sim.POLICIES)
    assert set(sim.SUMMARY_COLUMNS) <= set(table.columns)
    # Only the adaptive default has structural detection switched on.
    stateless = table.drop(index="adaptive")
    assert (stateless["structural_tp"] == 0).all()
    assert (stateless["structural_fp"] == 0).all()
    truth = table.loc["adaptive", "structural_tp"] + table.loc["adaptive", "structural_fn"]
    assert (stateless["structural_fn"] == truth).all()


def test_scenario_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        """
messages = 400
seed = 9
duration = "1d"
arrival_window = "2h"
tail_domains = 0

[[sources]]
name = "ip-1"
reputation = 0.9

[[destinations]]
domain = "grey.example"
share = 1.0
profile = "slow-grey"

[[profiles]]
name = "slow-grey"
base = "small-host-greylisting"
greylist_delay = "10m"
unknown_user_probability = 0.0
mailbox_full_probability = 0.0
overload_probability = 0.0

[policies.fixed-5m]
retry = { backoff = "intervals", intervals = ["5m"] }
"""
    )
    sc = sim.load_scenario(path)
    assert sc.name == "s" and sc.messages == 400
    assert "fixed-5m" in sc.policies
    r = sim.run(sc, "fixed-5m")
    s = r.summary
    assert s["delivered"] == 400
    out = r.outcomes
    # Greylisted for 10 minutes: nothing gets through at the first attempt.
    assert (out["attempts"] >= 2).all()
    assert ((out["end_s"] - out["submit_s"]) >= 600).all()
    assert r.reply_kinds["greylisted"] >= 400


def test_bad_scenarios_raise() -> None:
    with pytest.raises(InvalidInputError, match="unknown profile"):
        sim.run(small(destinations=[sim.Destination("x.example", 0.5, "nope")]))
    with pytest.raises(InvalidInputError, match="mesages: unknown key"):
        sim.Scenario.from_dict({"mesages": 10})
    with pytest.raises(InvalidInputError, match="policy"):
        sim.run(small(), "no-such-policy")
    with pytest.raises(InvalidInputError):
        sim.run(small(profiles=[sim.Profile("p", overrides={"no_such_field": 1})]))


def test_progress_reports_and_can_stop() -> None:
    seen: list[float] = []

    def progress(f: float) -> bool:
        seen.append(f)
        return True

    sim.run(small(messages=300), progress=progress)
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    with pytest.raises(Exception, match="cancelled"):
        sim.run(small(messages=300), progress=lambda f: f < 0.1)


def test_exports_and_plot(tmp_path: Path) -> None:
    results = sim.run_many(small(messages=800), ["naive-15m", "adaptive"])
    paths = results["adaptive"].to_csv(tmp_path / "csv")
    assert {Path(p).name for p in paths} == {
        "outcomes.csv",
        "timeseries.csv",
        "destinations.csv",
        "summary.csv",
    }
    back = pd.read_csv(tmp_path / "csv" / "outcomes.csv")
    assert len(back) == 800
    pytest.importorskip("matplotlib")
    png = sim.plot(results, tmp_path / "cmp.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_with_a_thread_executor() -> None:
    scenarios = [small(messages=500, seed=s) for s in (1, 2)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        df = sim.sweep(scenarios, ["adaptive", "naive-15m"], executor=ex)
    assert len(df) == 4
    assert set(df["policy"]) == {"adaptive", "naive-15m"}
    assert df["delivered_pct"].between(0, 100).all()
    assert not any(math.isnan(x) for x in df["attempts_per_delivered"])


def test_sweep_default_process_pool() -> None:
    df = sim.sweep([small(messages=300, seed=5)])
    assert len(df) == 1 and df.loc[0, "policy"] == "adaptive"


def test_sweep_on_dask_when_installed() -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        df = sim.sweep([small(messages=300, seed=6)], executor=client.get_executor())
    assert len(df) == 1


def test_profiles_are_listed_and_readable() -> None:
    names = sim.profile_names()
    assert {
        "gmail-like",
        "outlook-like",
        "yahoo-like",
        "enterprise-gateway",
        "small-host-greylisting",
        "misconfigured",
    } <= set(names)
    gw = sim.profile("enterprise-gateway")
    assert gw["max_connections_per_source"] == 5
    assert gw["replies"]["too_many_connections"].startswith("421 4.7.0")


def test_simulate_cli_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")  # the command writes a PNG
    import argparse

    from mailretry.sim_cli import add_simulate_parser

    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulate",
            "--quick",
            "--messages",
            "600",
            "--out",
            str(tmp_path),
            "--policy",
            "naive-15m",
            "--policy",
            "adaptive",
        ]
    )
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "adaptive" in captured.out and "naive-15m" in captured.out
    assert "simulating 2 policies" in captured.err
    assert (tmp_path / "comparison.csv").exists()
    assert (tmp_path / "comparison.png").exists()


def test_default_scenario_round_trips() -> None:
    scenario = sim.Scenario.from_dict(sim.default_scenario())
    assert scenario.to_dict()["start"] == sim.default_scenario()["start"]
