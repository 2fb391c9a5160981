"""`make e2e-lowdim` in small (the pipeline, not success), and the evaluation users read: Wilson intervals,
per-seed tables, parallel workers with identical per-seed results, failure videos."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.e2e_lowdim import E2EConfig, run, table
from robotflow.evaluation import EpisodeOutcome, format_table, wilson_interval
from robotflow.recording.reader import EpisodeFile
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_wilson_interval_matches_reference_values():
    # Reference values from the closed form (Wilson 1927), z = 1.96.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(45, 50) == pytest.approx((0.7864, 0.9565), abs=1e-4)
    lo, hi = wilson_interval(50, 50)
    assert lo == pytest.approx(0.9287, abs=1e-4) and hi == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_per_seed_table():
    outcomes = [
        EpisodeOutcome(0, 1000, True, "success", 7.5),
        EpisodeOutcome(1, 1001, False, "failure", 30.0),
    ]
    text = format_table(outcomes)
    assert "1001  failure" in text and "1000  success" in text
    assert text.splitlines()[-1] == "success rate: 50.0% (1/2), 95% Wilson interval 9.5% - 90.5%"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The small `make e2e-lowdim`: 2 demos, a few training steps, one rollout episode."""
    out = tmp_path_factory.mktemp("e2e") / "run"
    doc = run(E2EConfig.small(), out, progress=False)
    return out, doc


def test_e2e_lowdim_small_runs_the_whole_pipeline(small_run):
    out, doc = small_run
    r = doc["results"]["stack_cubes"]
    assert r["episodes"] == 1 and r["demo_frames"] > 100 and r["final_loss"] is not None
    assert 0.0 <= r["wilson_95"][0] <= r["success_rate"] <= r["wilson_95"][1] <= 1.0
    assert set(doc["stages_s"]) == {"record", "convert", "train", "rollout"}
    assert "| stack_cubes | " in table(doc)
    # The rollout was recorded, with the privileged object poses, next to the run.
    recorded = sorted((out / "stack_cubes/runs/act_lowdim/rollouts").rglob("episode_*.h5"))
    assert len(recorded) == 1
    with EpisodeFile(recorded[0]) as ep:
        assert ep.has_channel("task/objects") and ep.info.seed == 1000


def _rollout(ckpt: Path, graph: str, out: Path, workers: int, episodes: int = 2, *extra: str) -> dict:
    r = CliRunner().invoke(
        main,
        [
            "rollout",
            "--checkpoints-dir",
            str(ckpt),
            "--graph",
            graph,
            "--episodes",
            str(episodes),
            "--seed",
            "1000",
            "--workers",
            str(workers),
            "--output-dir",
            str(out),
            "--summary",
            str(out / "summary.json"),
            "--set",
            "task.timeout_s=1.5",
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    assert "95% Wilson interval" in r.output
    return json.loads((out / "summary.json").read_text())


def test_workers_give_the_same_per_seed_results(small_run, tmp_path):
    out, _ = small_run
    ckpt = out / "stack_cubes/runs/act_lowdim"
    graph = str(ROOT / "graphs/sim_stack_cubes_lowdim_policy.yaml")
    one = _rollout(ckpt, graph, tmp_path / "w1", 1)
    two = _rollout(ckpt, graph, tmp_path / "w2", 2)
    assert one["workers"] == 1 and two["workers"] == 2
    key = [(e["seed"], e["success"], e["duration_s"]) for e in one["episodes"]]
    assert key == [(e["seed"], e["success"], e["duration_s"]) for e in two["episodes"]]
    assert [e["seed"] for e in one["episodes"]] == [1000, 1001]
    # Not just the outcome: the arm moved identically, seed by seed.
    for i in range(2):
        with (
            EpisodeFile(tmp_path / "w1" / f"episode_{i:06d}.h5") as a,
            EpisodeFile(tmp_path / "w2" / f"episode_{i:06d}.h5") as b,
        ):
            assert a.info.seed == b.info.seed == 1000 + i
            pa, pb = a.field("arm/state", "ee_pose"), b.field("arm/state", "ee_pose")
            assert pa.shape == pb.shape and np.array_equal(pa, pb)


def test_a_worker_loads_the_policy_once(small_run, monkeypatch):
    """Episodes run one after another in a process share one loaded policy (reset between them); two nodes at
    once never share one; a process that does not keep policies loads each time."""
    from robotflow.evaluation import EpisodeJob, EvalPlan, run_episodes
    from robotflow.policies import loading
    from robotflow.runtime.graph import load_graph

    out, _ = small_run
    loads = []
    real = loading.load_policy
    monkeypatch.setattr(loading, "load_policy", lambda *a, **k: loads.append(a) or real(*a, **k))
    model = loading.resolve_checkpoint(out / "stack_cubes/runs/act_lowdim", None).path
    graph = load_graph(ROOT / "graphs/sim_stack_cubes_lowdim_policy.yaml").set_params(
        "policy", {"checkpoint": str(model)}
    )
    plan = EvalPlan(graph.set_params("task", {"timeout_s": 0.5}), "task", None, torch_threads=1)
    outcomes = run_episodes(plan, [EpisodeJob(0, 1000), EpisodeJob(1, 1001), EpisodeJob(2, 1002)], workers=1)
    assert [o.seed for o in outcomes] == [1000, 1001, 1002] and len(loads) == 1
    assert loading._shelf is None  # run_episodes empties the shelf when it is done

    loading.keep_loaded_policies()
    try:
        a = loading.take_policy(model, device="cpu", codec="ee_objects_rel")
        b = loading.take_policy(model, device="cpu", codec="ee_objects_rel")
        assert b is not a  # a is in use
        loading.release_policy(a)
        assert loading.take_policy(model, device="cpu", codec="ee_objects_rel") is a
    finally:
        loading.keep_loaded_policies(False)
    loading.release_policy(a)  # not kept: dropped
    assert loading.take_policy(model, device="cpu", codec="ee_objects_rel") is not a


def test_failed_episode_gets_a_front_camera_video(small_run, tmp_path):
    import av

    out, _ = small_run
    # The low-dim policy graph plus a recorded (not policy-fed) front camera.
    text = (ROOT / "graphs/sim_stack_cubes_lowdim_policy.yaml").read_text()
    text = text.replace(
        "  - name: task\n",
        "  - name: front_camera\n    type: sim.camera\n    rate: 15\n"
        "    params: {camera: front, width: 64, height: 48, fps: 15}\n  - name: task\n",
    )
    graph = tmp_path / "with_camera.yaml"
    graph.write_text(text)
    doc = _rollout(out / "stack_cubes/runs/act_lowdim", str(graph), tmp_path / "rec", 1, 1)
    assert doc["episodes"][0]["success"] is False  # 1.5 s is too short for any policy
    video = tmp_path / "rec" / "episode_000000.front_camera.mp4"
    assert video.is_file()
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with EpisodeFile(tmp_path / "rec" / "episode_000000.h5") as ep:
        recorded = ep.images("front_camera/frame", list(range(len(ep.timestamps("front_camera/frame")))))
    assert len(frames) == len(recorded) >= 15 and frames[0].shape == (48, 64, 3)
    # Same orientation and channel order as the recording (within video compression).
    err = np.abs(frames[-1].astype(int) - recorded[-1].astype(int)).mean()
    assert err < 12, err


def test_relative_checkpoint_carries_offset_statistics_and_plain_lerobot_ones_are_refused(small_run, tmp_path):
    """The small run trains `ee_objects_rel`: its normaliser holds the statistics of chunk offsets from the EE
    (centimetres around zero), and a checkpoint without robotflow's codec file beside it (what plain
    lerobot-train writes) is refused in one line rather than driven as if its targets were offsets."""
    import shutil

    from safetensors.torch import load_file

    out, doc = small_run
    assert doc["config"]["codec"] == "ee_objects_rel"
    model = out / "stack_cubes/runs/act_lowdim/checkpoints/last/pretrained_model"
    stats = load_file(next(model.glob("policy_postprocessor_step_*_unnormalizer_processor.safetensors")))
    assert stats["action.mean"][:3].abs().max() < 0.1 and stats["action.mean"][3:7].abs().max() > 0.3
    plain = tmp_path / "plain"
    shutil.copytree(model, plain)
    (plain / "robotflow_codec.json").unlink()
    r = CliRunner().invoke(
        main,
        [
            "rollout",
            "--checkpoints-dir",
            str(plain),
            "--graph",
            str(ROOT / "graphs/sim_stack_cubes_lowdim_policy.yaml"),
            "--episodes",
            "1",
            "--no-record",
        ],
    )
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    assert "was not trained by `robotflow train`" in r.output, r.output
