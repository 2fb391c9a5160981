"""SIGKILL at random points of `record`, `convert`, `convert append` and `train` (marked slow; `make test-all`).

Each sweep runs the command once to the end (the reference), timing the span where it writes (record: from
its first episode file to its exit; convert and append: from LeRobot's first dataset file to the whole
dataset at the output path; train: from its run dir's first checkpoint to its exit). Then it starts the
command again and again, killing its whole process group at points drawn from a fixed-seed RNG, uniform over
the same span of each run and a tenth beyond it (the start-up before it, imports mostly, writes nothing and is
not a kill point), and checks what each kill left:
- record: every finished episode is kept whole (numbered without holes, outcome success, no message lost in
  it); an episode in progress is a `.partial` that `robotflow recover` turns into an aborted episode or moves
  aside, never deletes.
- convert: the output path holds nothing, or the whole dataset (the reference's data, loadable by LeRobot).
- convert append: the dataset is byte for byte what it was, or the whole appended dataset.
- train: every checkpoint the run lists (what rollout and serve would load) is whole, and `train --resume`
  finishes the run from its last checkpoint (or from step 0 when the kill came before the first one).

Each sweep kills its command at 20 points (KILLS); ROBOTFLOW_KILLS=N sets another count for every sweep (a quick
look: the train sweep's 20 kills take 20-50 minutes on 2 cores). Each test prints where its kills landed.
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

from robotflow.codecs import CHECKPOINT_SPEC_FILE  # noqa: E402
from robotflow.codecs.export import clear_interrupted  # noqa: E402
from robotflow.policies.checkpoints import list_checkpoints  # noqa: E402
from robotflow.recording.reader import EpisodeFile  # noqa: E402
from robotflow.recording.recover import recover_partials  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "robotflow.scripts.cli"]
SEED = 24
N_EPISODES = 6  # per source directory of the convert and append sweeps
KILLS = dict.fromkeys(("record", "convert", "append", "train"), int(os.environ.get("ROBOTFLOW_KILLS", "20")))


def kill_times(name: str, span_s: float) -> list[float]:
    """KILLS[name] points from a fixed-seed RNG, uniform over the span plus a tenth (some after the end)."""
    rng = np.random.default_rng([SEED, sum(map(ord, name))])
    return sorted(rng.uniform(0.0, 1.1, KILLS[name]) * span_s)


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_started(p: subprocess.Popen, started) -> float:
    """Poll until `started()` (the command's work is under way) or the process ended; returns the time."""
    while started is not None and not started() and p.poll() is None:
        time.sleep(0.01)
    return time.monotonic()


def timed_run(cmd: list[str], started=None, ended=None) -> float:
    """Run `cmd` to the end; seconds from `started()` first holding (None: from the start) to `ended()` first
    holding (None: to its exit)."""
    p = _start(cmd)
    t0 = _wait_started(p, started)
    t1 = _wait_started(p, ended) if ended is not None else None
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()
    return (t1 or time.monotonic()) - t0


def run_until(cmd: list[str], after_s: float, started=None, look=None) -> tuple[bool, object]:
    """Start `cmd` in its own process group and SIGKILL the group `after_s` seconds after `started()` first
    holds (None: after the start), unless it ended first. Returns (killed, what `look()` saw just before)."""
    p = _start(cmd)
    t0 = _wait_started(p, started)
    try:
        p.wait(max(0.0, t0 + after_s - time.monotonic()))
        return False, None
    except subprocess.TimeoutExpired:
        seen = look() if look is not None else None
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
        gone_by = time.monotonic() + 30  # the group's other processes (a recorder's) die a moment later
        while time.monotonic() < gone_by:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        return True, seen
    finally:
        p.stderr.close()


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

    def first_episode(out: Path):
        return lambda: out.exists() and any(out.glob("episode_*"))

    ref = tmp_path / "ref"
    span = timed_run(cmd(ref), started=first_episode(ref))  # from the first episode file to the end
    landed = {"between episodes": 0, "with an episode open": 0, "after the run": 0}
    recovered, messages, unrecoverable = 0, [], 0
    for i, at in enumerate(kill_times("record", span)):
        out = tmp_path / f"k{i}"
        killed, partial = run_until(
            cmd(out), at, started=first_episode(out), look=lambda out=out: bool(list(out.glob("*.partial")))
        )
        finished = sorted(out.glob("episode_*.h5"))
        assert [f.name for f in finished] == [f"episode_{k:06d}.h5" for k in range(len(finished))]
        for f in finished:
            with EpisodeFile(f) as ep:
                assert ep.info.outcome == "success", f
                for ch, least in (("cam/frame", 12), ("arm/count", 80)):
                    seq = ep.seq(ch)
                    assert len(seq) >= least and np.all(np.diff(seq) == 1), (f, ch)
        assert len(list(out.glob("*.partial"))) <= 1
        for r in recover_partials(out):
            if r.ok:
                recovered += 1
                messages.append(r.messages)
                with EpisodeFile(r.path) as ep:
                    assert ep.info.outcome == "aborted"
            else:
                unrecoverable += 1
                assert r.path.is_file() and r.path.parent.name == "unrecoverable"
        landed["after the run" if not killed else ("with an episode open" if partial else "between episodes")] += 1
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"record: {KILLS['record']} kills over the {span:.1f} s of episodes: {landed}; partials recovered "
        f"{recovered} (messages {messages}), moved aside {unrecoverable}"
    )
    assert landed["with an episode open"] >= KILLS["record"] // 2, "the kills landed inside episodes"


# ---- convert and append ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("episodes")
    # Enough frames that writing the dataset takes a while (a second or two), so kills land inside it.
    write_episodes(root / "a", N_EPISODES, duration_s=3.0)
    write_episodes(root / "b", N_EPISODES, duration_s=3.0)
    return root / "a", root / "b"


def convert_cmd(src: Path, out: Path) -> list[str]:
    return [*CLI, "convert", "--input", str(src), "--output-dir", str(out), "--codec", "ee", "--image-size", "48x64"]


def append_cmd(src: Path, out: Path) -> list[str]:
    return [*CLI, "convert", "append", "--input", str(src), "--output-dir", str(out), "--codec", "ee"]


def work_dirs(out: Path) -> list[Path]:
    return [p for p in out.parent.glob(f".{out.name}.*")] if out.parent.exists() else []


def total_episodes(out: Path) -> int | None:
    try:
        return json.loads((out / "meta" / "info.json").read_text())["total_episodes"]
    except (OSError, ValueError, KeyError):
        return None


def building(out: Path) -> bool:
    """Dataset files are being written (LeRobot created a dataset in a work dir, or at the output)."""
    return out.exists() or any(any(w.iterdir()) for w in work_dirs(out))


def test_sigkill_during_convert_leaves_nothing_or_the_whole_dataset(tmp_path, episodes):
    src, _ = episodes
    reference = tmp_path / "ref" / "ds"
    # The span: from LeRobot's first dataset file to the whole dataset at the output path.
    span = timed_run(
        convert_cmd(src, reference), started=lambda: building(reference), ended=lambda: total_episodes(reference)
    )
    landed = {"while building": 0, "after the run": 0}
    for i, at in enumerate(kill_times("convert", span)):
        out = tmp_path / f"k{i}" / "ds"
        killed, _ = run_until(convert_cmd(src, out), at, started=lambda out=out: building(out))
        if out.exists():
            assert_whole_dataset(out, reference)
        assert killed or out.exists()
        landed["while building" if killed else "after the run"] += 1
    print(
        f"convert: {KILLS['convert']} kills over the {span:.1f} s from its first dataset file to the whole dataset: {landed}"
    )


def test_sigkill_during_append_leaves_the_dataset_untouched_or_whole(tmp_path, episodes):
    src, more = episodes
    base = tmp_path / "base" / "ds"
    timed_run(convert_cmd(src, base))
    before = tree_digest(base)
    reference = tmp_path / "ref" / "ds"
    shutil.copytree(base, reference)
    grown = total_episodes(base) + N_EPISODES
    span = timed_run(
        append_cmd(more, reference),
        started=lambda: any(any(w.iterdir()) for w in work_dirs(reference)),
        ended=lambda: total_episodes(reference) == grown,
    )
    landed = {"untouched": 0, "appended": 0, "put back": 0}
    for i, at in enumerate(kill_times("append", span)):
        out = tmp_path / f"k{i}" / "ds"
        shutil.copytree(base, out)
        run_until(append_cmd(more, out), at, started=lambda out=out: any(any(w.iterdir()) for w in work_dirs(out)))
        if not out.exists():  # killed between its two renames: the next convert or append puts it back
            clear_interrupted(out)
            landed["put back"] += 1
        if tree_digest(out) == before:
            landed["untouched"] += 1
        else:
            assert_whole_dataset(out, reference)
            landed["appended"] += 1
    print(
        f"convert append: {KILLS['append']} kills over the {span:.1f} s from its first dataset file to the whole dataset: {landed}"
    )


# ---- train --------------------------------------------------------------------------------------------


def train_cmd(data: Path, runs: Path, steps: int, *extra: str) -> list[str]:
    return [
        *CLI,
        "train",
        "--dataset-root",
        str(data),
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


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    from robotflow.codecs import get_codec

    data = tmp_path_factory.mktemp("train") / "data"
    make_dataset(data, get_codec("ee", image_size=(48, 64)))
    os.environ.pop("WANDB_API_KEY", None)
    return data


@pytest.mark.timeout(7200)  # a kill and its resume: two trainings' start-ups, about 2.5 min each under load
def test_sigkill_during_train_then_resume_finishes_from_the_last_checkpoint(tmp_path, train_data):
    steps = 24

    def cmd(runs: Path, *extra: str) -> list[str]:
        return train_cmd(train_data, runs, steps, *extra)

    # Timed from when the run dir appears (imports and dataset loading before it write nothing).
    took = timed_run(cmd(tmp_path / "ref"), started=lambda: (tmp_path / "ref" / "tiny").exists())
    resumed_from = []
    for i, at in enumerate(kill_times("train", took)):
        runs = tmp_path / f"k{i}"
        killed, _ = run_until(cmd(runs), at, started=lambda runs=runs: (runs / "tiny").exists())
        run = runs / "tiny"
        last = run / "checkpoints" / "last"
        start = int(last.resolve().name) if last.exists() else 0
        resumed_from.append(start if killed else steps)
        for c in list_checkpoints(run):  # what rollout and serve would load now: whole, even after a kill mid-save
            load_file(c.path / "model.safetensors")
        kept = {c.step: tree_digest(c.path.parent) for c in list_checkpoints(run) if c.step <= start}
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
    print(
        f"train: {KILLS['train']} kills over the {took:.1f} s from its run dir to its end; resumed from steps "
        f"{resumed_from} ({steps}: the run had ended)"
    )


def test_resume_of_a_run_killed_inside_its_first_checkpoint_starts_it_again(tmp_path, train_data):
    """What a kill in the middle of the first save leaves (a step dir without `last`, its weights cut short):
    there is nothing to continue, so `train --resume` starts the run again from step 0 with a warning (it used
    to refuse, as a plain `train` refuses the existing run dir)."""
    runs = tmp_path / "runs"
    timed_run(train_cmd(train_data, runs, 4))
    checkpoints = runs / "tiny" / "checkpoints"
    (checkpoints / "last").unlink()
    weights = checkpoints / "000004" / "pretrained_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (weights.parent / CHECKPOINT_SPEC_FILE).unlink()  # robotflow writes it once LeRobot's save is done
    assert list_checkpoints(runs / "tiny") == [], "a half-written checkpoint is not offered to rollout or serve"
    r = subprocess.run(train_cmd(train_data, runs, 8, "--resume"), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "has no checkpoint yet (stopped before its first save): starting it from step 0" in r.stderr
    assert [c.step for c in list_checkpoints(runs / "tiny")] == [4, 8]
    for c in list_checkpoints(runs / "tiny"):
        load_file(c.path / "model.safetensors")
