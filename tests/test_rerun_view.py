"""Rerun views: `launch --rerun FILE.rrd` streams a running graph from the view node's own process, and
`robotflow view` writes a recorded episode or a dataset episode; the .rrd files are read back with Rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from robotflow.runtime.graph import parse_graph
from robotflow.scripts.cli import main
from robotflow.views.rerun import with_view

GRAPH = """
nodes:
  - {name: control, type: test.counter, rate: 200, params: {stop_after: 400}}
  - {name: cam, type: test.frames, rate: 30, params: {width: 64, height: 48}}
"""


def entities(rrd: Path) -> dict[str, int]:
    """Entity path -> rows logged on the `time` timeline."""
    import rerun as rr

    rec = rr.dataframe.load_recording(str(rrd))
    table = rec.view(index="time", contents="/**").select().read_all()
    out = {}
    for name in table.column_names:
        if name.startswith("/") and ":" in name:
            entity = name.split(":")[0]
            out[entity] = max(out.get(entity, 0), table.column(name).drop_null().__len__())
    return out


def test_view_node_has_its_own_lower_priority_process_on_the_wall_clock(tmp_path):
    import os

    from robotflow.runtime.scheduler import Scheduler

    spec = with_view(parse_graph(GRAPH, "g.yaml"), str(tmp_path / "x.rrd"), ("cam/frame",))
    view = [n for n in spec.nodes if n.type_name == "view.rerun"][0]
    tap = [n for n in spec.nodes if n.type_name == "view.tap"][0]
    assert view.process == "rerun" and list(view.inputs) == ["cam.frame"]
    assert view.inputs["cam.frame"].delivery == "latest" and view.inputs["cam.frame"].source == f"{tap.name}/cam.frame"
    # Only the tap's copy crosses into the view's process; the tap reads the camera in the graph's process.
    assert tap.process is None and tap.inputs["cam.frame"].source == "cam/frame"
    sched = Scheduler(spec)
    assert sched.run().ok
    report = sched.reports[view.name]
    assert report["pid"] != os.getpid() and report["niceness"] >= 10 and report["messages"] >= 1


STAMPED = (
    GRAPH
    + """  - {name: stamps, type: test.sink, rate: 50, inputs: {f: {source: cam/frame, delivery: queue}}}
"""
)


def _run_with_stamps(spec) -> tuple[dict, dict[int, int]]:
    """Run `spec`; returns the run's stats and every camera frame's index -> timestamp as the camera sent it."""
    from robotflow.runtime.scheduler import Scheduler

    sched = Scheduler(spec)
    sink, stamps = sched.nodes["stamps"], {}

    def step() -> None:  # the `stamps` sink, in this process, keeps what it reads
        for m in sink.read_all("f"):
            stamps[int(m["index"])] = m.timestamp_ns

    sink.step = step
    result = sched.run()
    assert result.ok, result
    return result.stats, stamps


def logged_frames(rrd: Path) -> list[tuple[int, int]]:
    """(time ns, frame index) of every `cam/frame/index` row in the .rrd."""
    import rerun as rr

    column = "/cam/frame/index:Scalars:scalars"
    table = rr.dataframe.load_recording(str(rrd)).view(index="time", contents="/cam/frame/index")
    table = table.select("time", column).read_all()
    times = table.column("time").cast("int64").to_pylist()
    return [(t, int(v[0])) for t, v in zip(times, table.column(column).to_pylist()) if v]


@pytest.mark.parametrize("clock", ["wall", "virtual"])
def test_view_receives_the_tap_rate_under_original_names_and_times(tmp_path, clock):
    rrd = tmp_path / "live.rrd"
    graph = ("clock: virtual\n" if clock == "virtual" else "") + STAMPED
    spec = with_view(parse_graph(graph, "g.yaml"), str(rrd), ("cam/frame", "control/count"), rate=7.0)
    view = [n for n in spec.nodes if n.type_name == "view.rerun"][0]
    assert view.process == ("rerun" if clock == "wall" else None)
    stats, stamps = _run_with_stamps(spec)
    # The graph runs 2 s (400 counts at 200 Hz): the camera sends 60 frames, the view gets at most 7 a second.
    # (7 Hz: on the virtual clock its ticks fall between the camera's, so a re-stamped copy would show.)
    sent = stats["channels"]
    assert sent["cam/frame"]["sent"] >= 50 and 1 <= sent["rerun_tap/cam.frame"]["sent"] <= 2 * 7 + 2, sent
    assert sent["rerun_tap/control.count"]["sent"] <= 2 * 7 + 2, sent
    got = entities(rrd)
    assert 1 <= got.get("/cam/frame/image", 0) <= 2 * 7 + 2, got
    assert "/control/count/value" in got and not any("rerun_tap" in e for e in got), got
    # Each logged frame is on the timeline at the time the camera stamped it, not when the tap passed it on.
    rows = logged_frames(rrd)
    assert rows and all(t == stamps[i] for t, i in rows), (rows, stamps)


def test_launch_streams_channels_to_a_file(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    rrd = tmp_path / "live.rrd"
    res = CliRunner().invoke(main, ["launch", str(graph), "--rerun", str(rrd)])
    assert res.exit_code == 0, res.output
    got = entities(rrd)
    # The graph runs 2 s: the view gets about 20 camera frames and 20 counts at the 10 Hz default (a loaded
    # machine: fewer).
    assert 3 <= got.get("/cam/frame/image", 0) <= 22, got
    assert got.get("/control/count/vec", 0) >= 3 and "/control/count/value" in got


def test_unknown_rerun_channel_is_one_line(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    res = CliRunner().invoke(main, ["launch", str(graph), "--rerun-channel", "cam/nope"])
    assert res.exit_code != 0 and "cam/nope" in res.output and "cam/frame" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["launch", str(graph), "--rerun", str(tmp_path / "x.rrd"), "--rerun-rate", "0"])
    # Refused by the option's declared range (LiveViewOptions.rate), before the graph is loaded.
    assert res.exit_code != 0 and "Invalid value for '--rerun-rate': 0.0 is not in the range x>0" in res.output
    assert "Traceback" not in res.output


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    from episode_factory import write_episodes

    out = tmp_path_factory.mktemp("view") / "eps"
    write_episodes(out, 2, duration_s=1.0, image_shape=(48, 64))
    return out


def test_view_episode_file(episodes, tmp_path):
    ep = sorted(episodes.glob("*.h5"))[0]
    rrd = tmp_path / "ep.rrd"
    res = CliRunner().invoke(main, ["view", str(ep), "--save", str(rrd)])
    assert res.exit_code == 0, res.output
    got = entities(rrd)
    images = [e for e in got if e.endswith("/image")]
    assert images and all(got[e] >= 10 for e in images), got
    assert any(e.endswith("/ee_pose") for e in got)


def test_view_dataset_episode(episodes, tmp_path):
    from robotflow.codecs import ConvertOptions, convert, get_codec

    root = tmp_path / "data"
    convert(episodes, root, get_codec("ee", image_size=(48, 64)), ConvertOptions(progress=False))
    rrd = tmp_path / "ds.rrd"
    res = CliRunner().invoke(main, ["view", str(root), "--episode", "1", "--save", str(rrd)])
    assert res.exit_code == 0, res.output
    got = entities(rrd)
    assert got.get("/dataset/action", 0) >= 10 and got.get("/dataset/observation.state", 0) >= 10, got
    assert any(e.startswith("/dataset/observation.images.") for e in got), got
    bad = CliRunner().invoke(main, ["view", str(root), "--episode", "7"])
    assert bad.exit_code != 0 and "episodes 0..1" in bad.output


def test_replay_writes_the_same_view(episodes, tmp_path):
    ep = sorted(episodes.glob("*.h5"))[0]
    rrd = tmp_path / "replay.rrd"
    res = CliRunner().invoke(main, ["replay", str(ep), "--rerun", str(rrd)])
    assert res.exit_code == 0, res.output
    assert any(e.endswith("/image") for e in entities(rrd))
