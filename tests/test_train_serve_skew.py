"""Train/serve skew: what the policy node builds live equals what training read from the dataset.

A recorded sim episode (two cameras, object poses) is converted, then replayed with its original timing
into the real `policy.act` node. At each policy tick the observation the node encodes is compared with
the dataset frame held at the same instant: state and environment state exactly, images at PSNR >= 35 dB
on average and >= 30 dB on every frame (JPEG in the episode, AV1 video in the dataset), in the same channel order and orientation.
And the ceiling a policy is measured against: replaying the dataset's own `action` column into the sim
from the recorded seeds solves the task again.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from robotflow.codecs import convert, get_codec, load_dataset_codec
from robotflow.codecs.export import ConvertOptions
from robotflow.codecs.resample import make_grid, zoh_indices
from robotflow.policies.nodes import ACTNode
from robotflow.recording.reader import EpisodeFile
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAMERAS = {"wrist": "wrist_camera/frame", "front": "front_camera/frame"}


class ProbeACT(ACTNode):
    """The real policy node; it keeps every observation it hands to the policy, with the tick's time."""

    def _make_runner(self, loaded):
        runner = super()._make_runner(loaded)
        self.observed: list[tuple[int, dict]] = []
        inner_step = runner.step

        def step(obs, *args, **kwargs):
            self.observed.append((self.now_ns(), {k: np.array(v, copy=True) for k, v in obs.items()}))
            return inner_step(obs, *args, **kwargs)

        runner.step = step
        return runner


def _record(graph: str, out: Path, episodes: int, *sets: str) -> None:
    r = CliRunner().invoke(
        main, ["record", str(ROOT / graph), "--episodes", str(episodes), "--output-dir", str(out), *sets]
    )
    assert r.exit_code == 0, r.output


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_policy_node_sees_the_dataset_frames(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.training import TrainOptions, train

    small = []
    for cam in ("wrist_camera", "front_camera"):
        small += ["--set", f"{cam}.width=160", "--set", f"{cam}.height=120"]
    _record("graphs/sim_stack_cubes.yaml", tmp_path / "eps", 1, *small)
    episode = tmp_path / "eps" / "episode_000000.h5"
    # Stored at 96x128: the live path must resize exactly as conversion did.
    codec = get_codec("ee_objects", cameras=CAMERAS, image_size=(96, 128))
    convert(tmp_path / "eps", tmp_path / "ds", codec, ConvertOptions(progress=False))
    codec = load_dataset_codec(tmp_path / "ds")
    # A one-step checkpoint: the observation path does not depend on what the weights learned.
    train(
        TrainOptions(
            dataset_root=tmp_path / "ds",
            run_name="probe",
            output_dir=tmp_path / "runs",
            steps=1,
            save_freq=1,
            batch_size=2,
            device="cpu",
            pretrained_backbone=False,
            dim_model=32,
            chunk_size=5,
            num_workers=0,
        )
    )
    streams = {"arm_state": "arm/state", "gripper_state": "gripper/state", "objects": "task/objects", **CAMERAS}
    graph = {
        "clock": "virtual",
        "nodes": [
            {
                # The replay ticks with the policy: at each tick it publishes every message up to now, so
                # the policy's `latest` inputs hold exactly the zero-order hold the converter takes.
                "name": "replay",
                "type": "record.replay",
                "rate": 15,
                "params": {"episode": str(episode), "channels": {p: ch for p, ch in streams.items()}},
            },
            {
                "name": "policy",
                "type": "test_train_serve_skew:ProbeACT",
                "rate": 15,
                "params": {
                    "checkpoint": str(tmp_path / "runs" / "probe"),
                    "codec": "ee_objects",
                    "cameras": list(CAMERAS),
                },
                "inputs": {p: f"replay/{p}" for p in streams},
            },
        ],
    }
    sched = Scheduler(parse_graph(json.dumps(graph), "skew.yaml"))
    result = sched.run()
    assert result.failed_node is None, result.error
    observed = sched.nodes["policy"].observed
    assert len(observed) > 50

    ds = LeRobotDataset("local/ds", root=tmp_path / "ds")
    with EpisodeFile(episode) as ep:
        ts = {ch: ep.timestamps(ch) for ch in streams.values()}
        need = sorted({c for c, _, _ in codec.required_streams()})
        grid = make_grid({c: ep.timestamps(c) for c in need}, codec.params.fps).timestamps_ns
    t0 = min(int(t[0]) for t in ts.values())  # the replay's time zero in the episode's clock
    # Which recorded message of each stream is held at each dataset frame, and at each policy tick.
    held_frames = {
        tuple(int(zoh_indices(ts[ch], np.array([g]))[0]) for ch in streams.values()): k for k, g in enumerate(grid)
    }
    matched, psnrs = 0, []
    for now, obs in observed:
        key = tuple(int(zoh_indices(ts[ch], np.array([t0 + now]))[0]) for ch in streams.values())
        k = held_frames.get(key)
        if k is None:
            continue
        matched += 1
        frame = ds[k]
        assert np.array_equal(obs["observation.state"], frame["observation.state"].numpy()), k
        assert np.array_equal(obs["observation.environment_state"], frame["observation.environment_state"].numpy())
        for cam in CAMERAS:
            live = obs[f"observation.images.{cam}"]
            stored = (frame[f"observation.images.{cam}"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert live.shape == stored.shape == (96, 128, 3)
            psnrs.append(psnr(live, stored))
            # Channel order and orientation: swapping red/blue or flipping the image must do clearly worse.
            assert psnr(live[..., ::-1], stored) < psnr(live, stored) - 3 or psnr(live[::-1], stored) < 30
    # Nearly every dataset frame was seen live at its own instant (the first ticks precede the grid start).
    assert matched >= 0.9 * len(grid), (matched, len(grid))
    # The dataset's frames went through AV1 (LeRobot's default CRF): 35 dB on average, no frame below 30 dB
    # (measured: mean ~37 dB, the worst frame ~32 dB on fast wrist-camera motion).
    assert float(np.mean(psnrs)) >= 35.0 and min(psnrs) >= 30.0, (float(np.mean(psnrs)), min(psnrs))


def _replay_dataset_actions(dataset: Path, episodes_dir: Path, task: str, count: int) -> list[bool]:
    graph_text = (ROOT / "graphs" / f"sim_{task}_lowdim.yaml").read_text()
    doc = __import__("yaml").safe_load(graph_text)
    for n in doc["nodes"]:
        if n["name"] == "teleop":
            n.update(
                {
                    "type": "robotflow.testing:DatasetActions",
                    "rate": 15,
                    "params": {"dataset": str(dataset), "episode": 0},
                    "inputs": {"episode": "task/episode"},
                }
            )
    files = sorted(episodes_dir.glob("*.h5"))[:count]
    outcomes = []
    for k, f in enumerate(files):
        with EpisodeFile(f) as ep:
            seed = ep.info.seed
        spec = parse_graph(
            json.dumps(doc), "dataset_actions.yaml", (f"teleop.episode={k}", f"task.seed={seed}", "task.episodes=1")
        )
        sched = Scheduler(spec)
        result = sched.run()
        assert result.failed_node is None, result.error
        outcomes.append(bool(sched.nodes["task"].results[0]["success"]))
    return outcomes


def _ceiling(tmp_path: Path, task: str, n: int) -> list[bool]:
    _record(f"graphs/sim_{task}_lowdim.yaml", tmp_path / "eps", n)
    convert(tmp_path / "eps", tmp_path / "ds", get_codec("ee_objects"), ConvertOptions(progress=False))
    return _replay_dataset_actions(tmp_path / "ds", tmp_path / "eps", task, n)


def test_dataset_actions_replay_solves_the_task(tmp_path):
    outcomes = _ceiling(tmp_path, "stack_cubes", 2)
    assert all(outcomes), outcomes


@pytest.mark.slow
@pytest.mark.parametrize("task", ["stack_cubes", "pick_place"])
def test_dataset_replay_ceiling_is_at_least_95_percent(tmp_path, task):
    outcomes = _ceiling(tmp_path, task, 20)
    assert sum(outcomes) >= 19, outcomes
