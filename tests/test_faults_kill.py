"""SIGKILL at random points of `record`, `convert`, `convert append` and `train` (marked slow; `make test-all`).

Each sweep runs the command once to the end (the reference, and its wall time T), then starts it again and
again, killing its whole process group at a point drawn from a fixed-seed RNG between 0.2 T and 1.1 T (the
first fifth is mostly imports), and checks what it left:
- record: every finished episode is kept whole (numbered without holes, outcome success, no message lost in
  it); an episode in progress is a `.partial` that `robotflow recover` turns into an aborted episode or moves
  aside, never deletes.
- convert: the output path holds nothing, or the whole dataset (the reference's data, loadable by LeRobot).
- convert append: the dataset is byte for byte what it was, or the whole appended dataset.
- train: `train --resume` finishes the run from its last checkpoint (or from step 0 when the kill came before
  the first one), and every checkpoint left is loadable.

How many kills each sweep gets is set by KILLS, sized for the 2-core machine under load (README, Reliability).
Each test prints where its kills landed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")

from episode_factory import write_episodes  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from test_train import TINY, make_dataset  # noqa: E402

from robotflow.policies.checkpoints import list_checkpoints  # noqa: E402
from robotflow.recording.reader import EpisodeFile  # noqa: E402
from robotflow.recording.recover import recover_partials  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "robotflow.scripts.cli"]
SEED = 24
KILLS = {"record": 20, "convert": 8, "append": 8, "train": 6}


def kill_times(name: str, reference_s: float) -> list[float]:
    rng = np.random.default_rng([SEED, sum(map(ord, name))])
    return sorted(rng.uniform(0.2, 1.1, KILLS[name]) * reference_s)


def timed_run(cmd: list[str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return time.monotonic() - t0


def run_until(cmd: list[str], at_s: float, look=None) -> tuple[bool, object]:
    """Start `cmd` in its own process group and SIGKILL the group `at_s` seconds later (unless it ended
    first). Returns (killed, what `look()` saw just before the kill)."""
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        p.wait(at_s)
        return False, None
    except subprocess.TimeoutExpired:
        seen = look() if look is not None else None
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
        return True, seen


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def dataset_table(root: Path):
    import pandas as pd

    frames = [pd.read_parquet(f) for f in sorted((root / "data").rglob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def assert_whole_dataset(out: Path, reference: Path) -> None:
    """`out` is the reference dataset: the same totals and data, and LeRobot loads it."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    info, ref = (json.loads((d / "meta" / "info.json").read_text()) for d in (out, reference))
    assert (info["total_episodes"], info["total_frames"]) == (ref["total_episodes"], ref["total_frames"])
    assert dataset_table(out).equals(dataset_table(reference))
    ds = LeRobotDataset("robotflow/dataset", root=out)
    assert len(ds) == ref["total_frames"] and ds.meta.total_episodes == ref["total_episodes"]


# ---- record -------------------------------------------------------------------------------------------

RECORD_GRAPH = """
nodes:
  - {name: task, type: test.episodes, rate: 100, params: {episodes: 4, length_s: 0.6, gap_s: 0.1}}
  - {name: cam, type: test.frames, rate: 30, params: {width: 160, height: 120}}
  - {name: arm, type: test.counter, rate: 200}
"""


def test_sigkill_during_record_keeps_every_finished_episode(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(RECORD_GRAPH)

    def cmd(out: Path) -> list[str]:
        return [*CLI, "record", str(graph), "--episodes", "4", "--output-dir", str(out)]

    reference = timed_run(cmd(tmp_path / "ref"))
    landed = {"before the first episode closed": 0, "with an episode open": 0, "after the run": 0}
    recovered = unrecoverable = 0
    for i, at in enumerate(kill_times("record", reference)):
        out = tmp_path / f"k{i}"
        killed, partial = run_until(cmd(out), at, look=lambda out=out: bool(list(out.glob("*.partial"))))
        finished = sorted(out.glob("episode_*.h5")) if out.exists() else []
        assert [f.name for f in finished] == [f"episode_{k:06d}.h5" for k in range(len(finished))]
        for f in finished:
            with EpisodeFile(f) as ep:
                assert ep.info.outcome == "success", f
                for ch, least in (("cam/frame", 12), ("arm/count", 80)):
                    seq = ep.seq(ch)
                    assert len(seq) >= least and np.all(np.diff(seq) == 1), (f, ch)
        partials = sorted(out.glob("*.partial")) if out.exists() else []
        assert len(partials) <= 1
        for r in recover_partials(out) if out.exists() else []:
            if r.ok:
                recovered += 1
                with EpisodeFile(r.path) as ep:
                    assert ep.info.outcome == "aborted"
            else:
                unrecoverable += 1
                assert r.path.is_file() and r.path.parent.name == "unrecoverable"
        key = (
            "after the run"
            if not killed
            else ("with an episode open" if partial else "before the first episode closed")
        )
        landed[key] += 1
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"record: {KILLS['record']} kills over {reference:.1f} s runs: {landed}; "
        f"partials recovered {recovered}, moved aside {unrecoverable}"
    )
    assert landed["with an episode open"] >= KILLS["record"] // 4, "the kills landed inside episodes"


# ---- convert and append ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("episodes")
    write_episodes(root / "a", 2, duration_s=1.0)
    write_episodes(root / "b", 2, duration_s=1.0)
    return root / "a", root / "b"


def convert_cmd(src: Path, out: Path) -> list[str]:
    return [*CLI, "convert", "--input", str(src), "--output-dir", str(out), "--codec", "ee", "--image-size", "48x64"]


def append_cmd(src: Path, out: Path) -> list[str]:
    return [*CLI, "convert", "append", "--input", str(src), "--output-dir", str(out), "--codec", "ee"]


def work_dirs(out: Path) -> list[Path]:
    return [p for p in out.parent.glob(f".{out.name}.*")] if out.parent.exists() else []


def test_sigkill_during_convert_leaves_nothing_or_the_whole_dataset(tmp_path, episodes):
    src, _ = episodes
    reference = tmp_path / "ref" / "ds"
    took = timed_run(convert_cmd(src, reference))
    landed = {"before building": 0, "while building": 0, "after the run": 0}
    for i, at in enumerate(kill_times("convert", took)):
        out = tmp_path / f"k{i}" / "ds"
        killed, building = run_until(convert_cmd(src, out), at, look=lambda out=out: bool(work_dirs(out)))
        if out.exists():
            assert_whole_dataset(out, reference)
        landed["after the run" if not killed else ("while building" if building else "before building")] += 1
        assert killed or out.exists()
    print(f"convert: {KILLS['convert']} kills over {took:.1f} s runs: {landed}")
    assert landed["while building"] >= 1


def test_sigkill_during_append_leaves_the_dataset_untouched_or_whole(tmp_path, episodes):
    src, more = episodes
    base = tmp_path / "base" / "ds"
    timed_run(convert_cmd(src, base))
    before = tree_digest(base)
    reference = tmp_path / "ref" / "ds"
    shutil.copytree(base, reference)
    took = timed_run(append_cmd(more, reference))
    landed = {"untouched": 0, "appended": 0}
    building = 0
    for i, at in enumerate(kill_times("append", took)):
        out = tmp_path / f"k{i}" / "ds"
        shutil.copytree(base, out)
        killed, busy = run_until(append_cmd(more, out), at, look=lambda out=out: bool(work_dirs(out)))
        building += bool(busy)
        assert out.is_dir(), "the dataset is never missing (an append killed between its two renames is undone)"
        if tree_digest(out) == before:
            landed["untouched"] += 1
        else:
            assert_whole_dataset(out, reference)
            landed["appended"] += 1
    print(f"convert append: {KILLS['append']} kills over {took:.1f} s runs: {landed}, {building} while building")
    assert building >= 1


# ---- train --------------------------------------------------------------------------------------------


def test_sigkill_during_train_then_resume_finishes_from_the_last_checkpoint(tmp_path):
    from robotflow.codecs import get_codec

    make_dataset(tmp_path / "data", get_codec("ee", image_size=(48, 64)))
    steps = 24

    def cmd(runs: Path, *extra: str) -> list[str]:
        return [
            *CLI,
            "train",
            "--dataset-root",
            str(tmp_path / "data"),
            "--run-name",
            "tiny",
            "--output-dir",
            str(runs),
            "--steps",
            str(steps),
            "--save-freq",
            "4",
            "--batch-size",
            "2",
            "--num-workers",
            "0",
            "--device",
            "cpu",
            "--no-pretrained-backbone",
            *TINY,
            *extra,
        ]

    os.environ.pop("WANDB_API_KEY", None)
    took = timed_run(cmd(tmp_path / "ref"))
    resumed_from = []
    for i, at in enumerate(kill_times("train", took)):
        runs = tmp_path / f"k{i}"
        killed, _ = run_until(cmd(runs), at)
        run = runs / "tiny"
        last = run / "checkpoints" / "last"
        start = int(last.resolve().name) if last.exists() else 0
        resumed_from.append(start if killed else steps)
        kept = {c.step: tree_digest(c.path.parent) for c in list_checkpoints(run) if run.exists() and c.step <= start}
        if not run.exists():  # killed before the run dir appeared: a plain run starts it
            r = subprocess.run(cmd(runs), cwd=ROOT, capture_output=True, text=True, timeout=600)
        else:
            r = subprocess.run(cmd(runs, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        state = json.loads((last / "training_state" / "training_step.json").read_text())
        assert state["step"] == steps
        saved = list_checkpoints(run)
        assert [c.step for c in saved] == list(range(4, steps + 1, 4))
        for c in saved:
            load_file(c.path / "model.safetensors")  # whole: a kill mid-save was saved over
        # Continued from the last checkpoint: those up to it were not written again.
        assert {c.step: tree_digest(c.path.parent) for c in saved if c.step <= start} == kept
    print(f"train: {KILLS['train']} kills over {took:.1f} s runs; resumed from steps {resumed_from}")
