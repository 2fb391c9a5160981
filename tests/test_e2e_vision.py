"""`make e2e-vision` in small: the camera-only pipeline (record, convert with `ee_cams_rel`, train from cameras,
roll out), that no object pose is in the dataset or reaches the policy, and that a second run resumes training."""

import json
from pathlib import Path

import pytest
import yaml

from benchmarks.e2e_vision import RUN_NAME, VisionConfig, last_step, run, table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e_vision") / "run"
    return out, run(VisionConfig.small(), out, progress=False)


def test_e2e_vision_small_runs_the_whole_pipeline_from_cameras(small_run):
    out, doc = small_run
    r = doc["results"]["pick_place"]
    assert r["episodes"] == 1 and r["demo_frames"] > 100 and r["final_loss"] is not None
    assert r["checkpoint_step"] == 2 and "| pick_place | " in table(doc)
    # Cameras and the robot's own state only, in the dataset and in what the trained policy takes.
    assert r["features"] == ["action", "observation.images.front", "observation.images.wrist", "observation.state"]
    model = out / "pick_place/runs" / RUN_NAME / "checkpoints/last/pretrained_model"
    inputs = json.loads((model / "config.json").read_text())["input_features"]
    assert sorted(inputs) == ["observation.images.front", "observation.images.wrist", "observation.state"]
    assert json.loads((model / "robotflow_codec.json").read_text())["name"] == "ee_cams_rel"
    # The rollout graph feeds the policy no simulator channel.
    graph = yaml.safe_load(open(ROOT / "graphs/sim_pick_place_vision_policy.yaml"))
    policy = next(n for n in graph["nodes"] if n["name"] == "policy")
    assert not any(ch.startswith("task/objects") for ch in policy["inputs"].values())


def test_e2e_vision_resumes_training_instead_of_starting_over(small_run):
    out, _ = small_run
    cfg = VisionConfig.small()
    cfg.steps, cfg.eval_episodes = 4, 0
    run(cfg, out, progress=False)
    assert last_step(out / "pick_place/runs" / RUN_NAME) == 4
    log = (out / "logs/train_pick_place.log").read_text()
    assert log.count("$ ") == 2 and "--resume" in log.split("$ ")[2].splitlines()[0]
    assert "'resume': True" in log


def test_frames_in_memory_are_the_frames_lerobot_decodes(small_run):
    """`train --frames-in-memory` must feed exactly the pixels LeRobot's own decoder gives, across episodes."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.codecs import video_backend
    from robotflow.codecs.memory_frames import keep_frames_in_memory

    out, _ = small_run
    root = out / "pick_place/dataset"
    decoded = LeRobotDataset("local/d", root=root, video_backend=video_backend())
    held = keep_frames_in_memory(LeRobotDataset("local/d", root=root, video_backend=video_backend()))
    first_of_second = int(decoded.meta.episodes[1]["dataset_from_index"])
    for i in (0, 1, first_of_second - 1, first_of_second, len(decoded) - 1):
        a, b = decoded[i], held[i]
        for key in decoded.meta.video_keys:
            assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype
            assert (a[key] - b[key]).abs().max().item() == 0.0, (i, key)
