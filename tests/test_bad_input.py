"""Bad input is refused before anything starts: exit status != 0, one line naming the place (file:line or the
option) and the fix, no traceback, and no output written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from robotflow.scripts.cli import main

SIM_GRAPH = """\
nodes:
  - name: world
    type: sim.world
    rate: 500
    params:
      task: {task}
      timestep: {timestep}
  - name: arm
    type: sim.arm
    rate: 100
    params:
      workspace_min: {workspace_min}
  - name: camera
    type: sim.camera
    rate: 15
    params:
      width: {width}
  - name: task
    type: sim.task
    rate: 10
"""
GOOD = {"task": "stack_cubes", "timestep": 0.002, "workspace_min": [0.2, -0.45, 0.005], "width": 64}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def rf(*args: str) -> Result:
    """The command run in this process (as `robotflow ARGS`), with an uncaught exception counted as a traceback."""
    r = CliRunner().invoke(main, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return Result(1, r.stdout, "Traceback: " + repr(r.exception))
    return Result(r.exit_code, r.stdout, r.stderr)


def error_line(r: Result) -> str:
    """The one error line of a refused command (click's `Usage:`/`Try` lines around a usage error aside)."""
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("Usage:", "Try '"))]
    assert len(lines) == 1, r.stderr
    return lines[0]


def nothing_in(path: Path, *keep: str) -> None:
    assert sorted(p.name for p in path.iterdir()) == sorted(keep), "nothing may start or be written"


def write_graph(tmp_path: Path, **bad) -> Path:
    graph = tmp_path / "g.yaml"
    graph.write_text(SIM_GRAPH.format(**{**GOOD, **bad}))
    return graph


@pytest.mark.parametrize(
    "bad, line, problem",
    [
        ({"timestep": -0.001}, 7, "param 'timestep' of node 'world' (sim.world) must be > 0, got -0.001"),
        (
            {"task": "stack_cube"},
            6,
            "param 'task' of node 'world' (sim.world) must be one of stack_cubes, pick_place, got 'stack_cube'; "
            "did you mean 'stack_cubes'?",
        ),
        ({"width": 0}, 17, "param 'width' of node 'camera' (sim.camera) must be > 0, got 0"),
        (
            {"workspace_min": [0.9, -0.45, 0.005]},
            12,
            "param 'workspace_max' of node 'arm' (sim.arm) must be above workspace_min on every axis, "
            "got min [0.9, -0.45, 0.005] and max [0.8, 0.45, 0.65]",
        ),
    ],
    ids=["negative-timestep", "unknown-task", "zero-width-camera", "workspace-min-above-max"],
)
def test_bad_node_param_is_refused_at_its_line(tmp_path, bad, line, problem):
    graph = write_graph(tmp_path, **bad)
    r = rf("record", str(graph), "--episodes", "1", "--output-dir", str(tmp_path / "out"))
    assert error_line(r) == f"Error: {graph}:{line}: {problem}"
    nothing_in(tmp_path, "g.yaml")


def test_cross_field_error_names_the_written_line(tmp_path):
    """A constraint between fields points at the field it names, where that one is written."""
    graph = tmp_path / "g.yaml"
    text = SIM_GRAPH.format(**GOOD).replace(
        "      workspace_min: [0.2, -0.45, 0.005]\n",
        "      workspace_min: [0.2, -0.45, 0.005]\n      workspace_max: [0.1, 0.45, 0.65]\n",
    )
    graph.write_text(text)
    r = rf("graph", "check", str(graph))
    assert error_line(r).startswith(f"Error: {graph}:13: param 'workspace_max' of node 'arm' (sim.arm) must be above")


def test_negative_episode_count_is_refused(tmp_path):
    graph = write_graph(tmp_path)
    out = tmp_path / "out"
    for args in (
        ("record", str(graph), "--episodes", "-1", "--output-dir", str(out)),
        ("rollout", "--checkpoints-dir", str(tmp_path), "--graph", str(graph), "--episodes", "-1"),
        ("launch", str(graph), "--episodes", "-1"),
    ):
        line = error_line(rf(*args))
        assert line.startswith("Error: Invalid value for '--episodes': -1 is not in the range x>=1"), (args, line)
    nothing_in(tmp_path, "g.yaml")


def test_output_dir_that_cannot_be_created_is_refused(tmp_path):
    graph = write_graph(tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a directory would go")
    out = blocker / "sub"
    episodes = tmp_path / "episodes"
    episodes.mkdir()
    problem = f"{out} cannot be created: {blocker} is a file; give a directory path"
    for args in (
        ("record", str(graph), "--episodes", "1", "--output-dir", str(out)),
        ("rollout", "--checkpoints-dir", str(tmp_path), "--graph", str(graph), "--output-dir", str(out)),
        ("convert", "--input", str(episodes), "--output-dir", str(out)),
        ("convert", "append", "--input", str(episodes), "--output-dir", str(out), "--codec", "ee"),
        ("train", "--dataset-root", str(episodes), "--run-name", "r", "--output-dir", str(out)),
    ):
        assert error_line(rf(*args)) == f"Error: --output-dir {problem}", args
    nothing_in(tmp_path, "g.yaml", "file.txt", "episodes")
    assert not any(episodes.iterdir())


def test_library_calls_check_their_options_too(tmp_path):
    """record() and rollout() called from Python refuse the same options, naming the option."""
    from robotflow.evaluation import RolloutOptions, RolloutUsageError, rollout
    from robotflow.recording.session import RecordError, RecordOptions, record

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(RecordError, match=r"^--output-dir .*file.txt is a file, not a directory; give a directory$"):
        record(RecordOptions("g.yaml", episodes=1, output_dir=str(blocker)))
    with pytest.raises(RolloutUsageError, match=r"^--episodes must be >= 1, got 0$"):
        rollout(RolloutOptions(checkpoints_dir=str(tmp_path), episodes=0))
    with pytest.raises(RolloutUsageError, match=r"^--summary .* is a directory; give a file path$"):
        rollout(RolloutOptions(checkpoints_dir=str(tmp_path), summary=str(tmp_path)))
    nothing_in(tmp_path, "file.txt")
