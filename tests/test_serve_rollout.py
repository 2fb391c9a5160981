"""`robotflow rollout --server`: the simulated stack graph driven by `policy.remote` against a real `robotflow
serve`, compared with the in-process rollout of the same checkpoint on the same seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")

from click.testing import CliRunner
from test_policy_node import save_checkpoint
from test_serve import ServeProcess

from robotflow.recording.reader import EpisodeFile
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs/sim_stack_cubes_policy.yaml"
SETS = [
    "--set",
    "task.timeout_s=1.5",
    *[f"--set={cam}.{k}={v}" for cam in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))],
]
TOKEN = "rollout-token"


def invoke(*args: object) -> str:
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    save_checkpoint(root / "checkpoints" / "000003" / "pretrained_model")
    return root


def targets(rec: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    out = []
    for f in sorted(rec.glob("episode_*.h5")):
        with EpisodeFile(f) as ep:
            out.append(
                (
                    {"seed": ep.attr("seed"), "outcome": ep.attr("outcome")},
                    ep.field("policy/ee_target", "ee_pose"),
                    ep.field("policy/grip", "width"),
                )
            )
    return out


def test_remote_rollout_equals_in_process_rollout(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOTFLOW_TOKEN", TOKEN)  # the rollout's --token default
    server = ServeProcess("--checkpoints-dir", str(run_dir), "--token", TOKEN, "--device", "cpu")
    try:
        local, remote = tmp_path / "local", tmp_path / "remote"
        args = ("--graph", GRAPH, "--episodes", 2, *SETS)
        invoke("rollout", "--checkpoints-dir", run_dir, "--output-dir", local, "--summary", tmp_path / "l.json", *args)
        out = invoke("rollout", "--server", server.url, "--output-dir", remote, "--summary", tmp_path / "r.json", *args)
        assert "rolling out the policy served at ws://127.0.0.1" in out and "success rate:" in out
        server.wait_for_line("session 1 from 127.0.0.1")
    finally:
        server.stop()

    import json

    lsum, rsum = json.loads((tmp_path / "l.json").read_text()), json.loads((tmp_path / "r.json").read_text())
    assert [e["seed"] for e in rsum["episodes"]] == [1000, 1001]
    assert rsum["episodes"] == lsum["episodes"]
    assert rsum["server"] == server.url and rsum["codec"] == "eepose_absolute"
    a, b = targets(local), targets(remote)
    assert len(a) == len(b) == 2
    for (ma, pa, ga), (mb, pb, gb) in zip(a, b, strict=True):
        assert ma == mb
        assert len(pa) == len(pb) >= 15, "the policy acted every tick of the 1.5 s episode"
        # Same weights, same pixels, same chunk cadence: the targets agree up to float rounding (the
        # server's thread count may reorder reductions).
        np.testing.assert_allclose(pb, pa, atol=1e-4)
        np.testing.assert_allclose(gb, ga, atol=1e-4)


def test_remote_rollout_refuses_bad_arguments(tmp_path):
    r = CliRunner().invoke(main, ["rollout", "--server", "http://x:1", "--no-record"])
    assert r.exit_code != 0 and "use ws://HOST:PORT" in r.output
    r = CliRunner().invoke(main, ["rollout", "--server", "ws://127.0.0.1:9", "--checkpoints-dir", str(tmp_path)])
    assert r.exit_code != 0 and "give one or the other" in r.output
    r = CliRunner().invoke(main, ["rollout", "--server", "ws://127.0.0.1:9"])
    assert r.exit_code != 0 and "--output-dir" in r.output
    # Nothing listens there: the policy node fails setup with one line naming the server.
    r = CliRunner().invoke(main, ["rollout", "--server", "ws://127.0.0.1:9", "--no-record", "--episodes", "1", *SETS])
    assert r.exit_code != 0 and "cannot open a session on ws://127.0.0.1:9" in r.output
