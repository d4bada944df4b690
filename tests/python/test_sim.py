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
    # Every message has an outcome: the run goes on until the last one ends.
    assert s["delivered"] + s["bounced"] + s["expired"] == 1500
    assert s["held"] == 0 and counts.get("pending", 0) == 0
    ts = r.timeseries
    assert len(ts) >= 24 * 5
    assert ts["attempts"].sum() == s["attempts"] == out["attempts"].sum()
    assert ts["delivered"].sum() == s["delivered"]
    assert ts["pending"].iloc[-1] == 0
    assert out["end_s"].notna().all()
    assert (out["end_s"] >= out["submit_s"]).all()
    assert r.reply_kinds["accepted"] == s["delivered"]
    # Percentiles over all messages count the undelivered as never.
    undelivered = 1 - s["delivered"] / 1500
    if undelivered > 0.05:
        assert math.isinf(s["all_p95_s"])
    assert math.isfinite(s["ttd_p95_s"])


def test_same_seed_same_result_different_seed_differs() -> None:
    a = sim.run(small(), "postfix")
    b = sim.run(small(), "postfix")
    c = sim.run(small(seed=4), "postfix")
    assert a.summary["local_deferrals"] == b.summary["local_deferrals"]
    for key in ("outcome", "attempts", "domain"):
        np.testing.assert_array_equal(a.raw["messages"][key], b.raw["messages"][key])
    assert not np.array_equal(a.raw["messages"]["domain"], c.raw["messages"]["domain"])


def test_compare_has_every_policy_and_scores_structural_detection() -> None:
    table = sim.compare(small(messages=3000, tail_domains=60))
    assert list(table.index) == list(sim.POLICIES)
    assert set(sim.SUMMARY_COLUMNS) <= set(table.columns)
    # Only the adaptive default has structural detection switched on.
    presets = table.drop(index="adaptive")
    assert (presets["structural_tp"] == 0).all()
    assert (presets["structural_fp"] == 0).all()
    truth = table.loc["adaptive", "structural_tp"] + table.loc["adaptive", "structural_fn"]
    assert truth > 0  # the default scenario's ip-d has no PTR
    assert (presets["structural_fn"] == truth).all()
    assert (presets["structural_recall"] == 0).all()
    assert table.loc["adaptive", "structural_recall"] > 0


def test_scenario_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        """
description = "Greylisting at 10 minutes only."
messages = 400
seed = 9
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
    assert sc.description == "Greylisting at 10 minutes only."
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
    with pytest.raises(InvalidInputError, match="description: expected a string"):
        sim.Scenario.from_dict({"description": 3})
    with pytest.raises(InvalidInputError, match=r"policies\.p"):
        sim.Scenario.from_dict({"policies": {"p": {"retry": {"backof": "5m"}}}})
    with pytest.raises(InvalidInputError, match="checks_auth"):
        sim.run(small(profiles=[sim.Profile("p", overrides={"checks_auth": "spf_only"})]))
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
    results = sim.run_many(small(messages=800), ["naive", "adaptive"])
    paths = results["adaptive"].to_csv(tmp_path / "csv")
    assert {Path(p).name for p in paths} == {
        "outcomes.csv",
        "timeseries.csv",
        "destinations.csv",
        "pairs.csv",
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
        df = sim.sweep(scenarios, ["adaptive", "naive"], executor=ex)
    assert len(df) == 4
    assert set(df["policy"]) == {"adaptive", "naive"}
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
        "ptr-checking-host",
        "auth-checking-host",
        "comcast-like",
    } <= set(names)
    gw = sim.profile("enterprise-gateway")
    assert gw["max_connections_per_source"] == 5
    assert gw["replies"]["too_many_connections"].startswith("421 4.7.0")
    assert sim.profile("ptr-checking-host")["checks_ptr"] is True
    assert sim.profile("gmail-like")["checks_auth"] == "spf_or_dkim"


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
            "naive",
            "--policy",
            "adaptive",
        ]
    )
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "adaptive" in captured.out and "naive" in captured.out
    assert "simulating 2 policies" in captured.err
    assert (tmp_path / "comparison.csv").exists()
    assert (tmp_path / "comparison.png").exists()


def test_default_scenario_round_trips() -> None:
    scenario = sim.Scenario.from_dict(sim.default_scenario())
    assert scenario.to_dict()["start"] == sim.default_scenario()["start"]


def test_the_suite_ships_eight_documented_scenarios() -> None:
    names = sim.suite_names()
    assert len(names) >= 8
    assert {
        "healthy-big-providers",
        "strict-receiver",
        "greylisting",
        "reputation-incident",
        "provider-outage",
        "tiny-domain-tail",
        "burst-one-provider",
        "mixed-default",
    } <= set(names)
    for sc in sim.load_suite():
        # A paragraph on what it tests and why.
        assert len(sc.description.split()) >= 60, sc.name
        sc.check()
    with pytest.raises(InvalidInputError, match="unknown suite scenario"):
        sim.load_suite(["no-such-scenario"])


def test_suite_greylisting_uses_three_delays() -> None:
    (sc,) = sim.load_suite(["greylisting"])
    delays = sorted(p.overrides["greylist_delay"] for p in sc.profiles or [])
    assert delays == ["10m", "15m", "5m"]
    texts = {p.overrides["replies"]["greylisted"] for p in sc.profiles or []}
    assert len(texts) == 3


def test_run_suite_tables_and_envelope() -> None:
    df = sim.run_suite(
        ["healthy-big-providers", "provider-outage"],
        seeds=[1, 2],
        policies=["postfix", "kumomta", "adaptive"],
        reputation=[False, True],
        messages=400,
    )
    assert len(df) == 2 * 2 * 2 * 3
    assert set(sim.SUMMARY_COLUMNS) <= set(df.columns)
    assert (
        (df["delivered_pct"] + df["bounced_pct"] + df["expired_pct"] + df["held_pct"])
        .round(6)
        .eq(100)
        .all()
    )
    table = sim.suite_table(df)
    assert len(table) == 2 * 2 * 3
    assert list(table.index.get_level_values("policy")[:3]) == ["postfix", "kumomta", "adaptive"]
    env = sim.envelope(df)
    assert len(env) == 4
    table = table.sort_index()
    for (scenario, rep), row in env.iterrows():
        block = table.loc[(scenario, rep)]
        best = block.loc[["postfix", "kumomta"], "replies_4xx_per_delivered"].min()
        assert row["4xx_best"] == pytest.approx(best)
        own = block.loc["adaptive", "replies_4xx_per_delivered"]
        assert row["4xx_ratio"] == pytest.approx(own / best)


def test_envelope_ratio_handles_never() -> None:
    rows = []
    for pol, p95 in (("naive", math.inf), ("postfix", 2.0), ("adaptive", math.inf)):
        rows.append(
            {
                "scenario": "x",
                "reputation_from_retries": False,
                "seed": 1,
                "policy": pol,
                **dict.fromkeys(sim.SUITE_COLUMNS, 1.0),
                "p95_h": p95,
            }
        )
    env = sim.envelope(pd.DataFrame(rows))
    row = env.iloc[0]
    assert row["p95_best_preset"] == "postfix"
    assert math.isinf(row["p95_ratio"])  # adaptive never delivers 95 %: infinitely worse
    assert row["4xx_ratio"] == 1.0


def test_simulate_cli_suite_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    import argparse

    from mailretry.sim_cli import add_simulate_parser

    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulate",
            "--suite",
            "greylisting",
            "--seeds",
            "1,2",
            "--messages",
            "300",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "== greylisting" in out and "envelope" in out
    for pol in sim.POLICIES:
        assert pol in out
    for name in ("suite_runs.csv", "suite.csv", "envelope.csv", "suite.png"):
        assert (tmp_path / name).exists(), name
    runs = pd.read_csv(tmp_path / "suite_runs.csv")
    assert len(runs) == 2 * len(sim.POLICIES)

    args = parser.parse_args(["simulate", "--explain"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "postgrey" in out and "SCHEDULER_README" in out
    for name in sim.profile_names():
        assert name in out


def test_simulate_cli_suite_dir_alone_runs_that_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--suite-dir without --suite once fell through to the default scenario."""
    pytest.importorskip("matplotlib")
    import argparse

    from mailretry.sim_cli import add_simulate_parser

    heldout = Path(__file__).resolve().parents[1] / "scenarios_heldout"
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    common = ["--seeds", "1", "--messages", "200", "--policy", "adaptive", "--no-progress"]
    args = parser.parse_args(
        ["simulate", "--suite-dir", str(heldout), *common, "--out", str(tmp_path)]
    )
    assert args.func(args) == 0
    runs = pd.read_csv(tmp_path / "suite_runs.csv")
    assert set(runs["scenario"]) == set(sim.suite_names(heldout))
    assert "== heldout-" in capsys.readouterr().out

    args = parser.parse_args(
        ["simulate", "scenario.toml", "--suite-dir", str(heldout), *common, "--out", str(tmp_path)]
    )
    with pytest.raises(InvalidInputError, match="exclude each other"):
        args.func(args)


def test_explain_lists_every_profile_and_preset() -> None:
    info = sim.explain()
    items = " ".join(r["item"] for r in info["profiles"])
    for name in sim.profile_names():
        assert name in items
    assert {r["item"] for r in info["presets"]} >= set(sim.POLICIES)
    assert all(r["source"] for r in info["profiles"] + info["presets"])


def test_run_suite_from_a_directory_runs_the_held_out_set(tmp_path: Path) -> None:
    heldout = Path(__file__).resolve().parents[1] / "scenarios_heldout"
    names = sim.suite_names(heldout)
    assert len(names) == 4 and all(n.startswith("heldout-") for n in names)
    assert not set(names) & set(sim.suite_names())  # kept apart from the tuned-on suite
    df = sim.run_suite(names[:1], seeds=[1], policies=["adaptive"], messages=200, directory=heldout)
    assert list(df["scenario"]) == [names[0]]
    with pytest.raises(InvalidInputError):
        sim.suite_names(tmp_path / "missing")
