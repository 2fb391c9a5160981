"""`robotflow rollout --realtime`: the simulated graph paced to the wall clock with asynchronous inference."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("lerobot")

from click.testing import CliRunner
from test_policy_node import save_checkpoint

from robotflow.evaluation import EvalError, RolloutOptions, RolloutUsageError, rollout, with_realtime
from robotflow.runtime.graph import load_graph
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs/sim_stack_cubes_policy.yaml"
SETS = [f"--set={cam}.{k}={v}" for cam in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))]


def test_realtime_overrides_pace_the_world_and_make_inference_asynchronous():
    spec = with_realtime(load_graph(GRAPH))
    assert spec.node("world").params.realtime and spec.node("policy").params.async_inference
    assert not load_graph(GRAPH).node("world").params.realtime


def test_rollout_realtime_runs_on_the_wall_clock(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "000001" / "pretrained_model")
    args = ["rollout", "--checkpoints-dir", run, "--graph", GRAPH, "--episodes", 1, "--no-record", *SETS]
    args += ["--set", "task.timeout_s=1.5", "--summary", tmp_path / "rt.json", "--realtime"]
    t0 = time.monotonic()
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert time.monotonic() - t0 >= 1.5  # 1.5 s of simulated time took at least 1.5 s: paced
    doc = json.loads((tmp_path / "rt.json").read_text())
    assert doc["realtime"] is True and [e["seed"] for e in doc["episodes"]] == [1000]
    assert doc["episodes"][0]["duration_s"] == pytest.approx(1.5, abs=0.05)


def test_rollout_realtime_needs_a_simulated_world():
    with pytest.raises(EvalError, match="no node"):
        with_realtime(load_graph(ROOT / "graphs/franka_stack_cubes_policy.yaml"))


def test_rollout_is_callable_from_python(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "000001" / "pretrained_model")
    sets = tuple(s.removeprefix("--set=") for s in SETS) + ("task.timeout_s=0.5",)
    lines = []
    opts = RolloutOptions(checkpoints_dir=str(run), graph_file=str(GRAPH), episodes=1, sets=sets, no_record=True)
    outcomes = rollout(opts, echo=lambda text, err=False: lines.append(text))
    assert [o.seed for o in outcomes] == [1000]
    assert lines[0].startswith("rolling out ") and lines[-1].splitlines()[-1].startswith("success rate: ")
    with pytest.raises(RolloutUsageError, match="give one or the other"):
        rollout(RolloutOptions(checkpoints_dir=str(run), server="ws://127.0.0.1:1"))
