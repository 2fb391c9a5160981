"""Operator labels and episode edits (issue 22): the recorder keeps the end event's label; `robotflow episodes
drop|undrop|label` appends to DIR/edits.jsonl and never touches an episode file; `info`, `convert` and `view` honour
the log; `info` and rollouts report success by outcome and by label with Wilson intervals, interventions, time
under human control and faults. Real h5py episode files (tests/episode_factory.py), the CLI through CliRunner."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_factory import EpisodeSpec, write_episode

from robotflow.recording.edits import EDITS_FILE, EditError, edit_episodes, load_edits
from robotflow.recording.metrics import control_time, wilson_interval
from robotflow.recording.reader import EpisodeFile, find_episode_files
from robotflow.recording.summary import recorded_metrics
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import Scheduler
from robotflow.scripts.cli import main

SIZE = (48, 64)
# policy until 0.5 s, the human until 1.0 s, policy until 1.5 s, the human to the end (2.0 s): 2 interventions, 1 s
TWO_TAKEOVERS = ((0.5, "human"), (1.0, "policy"), (1.5, "human"))


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res) -> str:
    assert res.exit_code != 0, res.output
    assert res.output.count("Error: ") == 1 and "Traceback" not in res.output, res.output
    return res.output[res.output.index("Error: ") :].strip()


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.h5"))}


@pytest.fixture
def recorded(tmp_path) -> Path:
    """Four episodes: 0 success labelled success with two take-overs, 1 failure labelled failure, 2 a fault with
    no label, 3 a success from before labels (no attr)."""
    d = tmp_path / "eps"
    specs = [
        EpisodeSpec(label="success", control=TWO_TAKEOVERS),
        EpisodeSpec(outcome="failure", label="failure", control=((0.0, "policy"),)),
        EpisodeSpec(outcome="fault", label=""),
        EpisodeSpec(),
    ]
    for i, spec in enumerate(specs):
        spec.episode_index, spec.seed, spec.duration_s, spec.image_shape = i, i, 2.0, SIZE
        write_episode(d / f"episode_{i:06d}.h5", spec)
    return d


# ---- the recorder ------------------------------------------------------------------------------------------------


@register("t.labelled_episodes")
class LabelledEpisodes(Node):
    """Two episodes ended by an operator: the first labelled failure, the second with no label field at all."""

    outputs = ("episode",)

    def setup(self):
        self.k = 0

    def step(self):
        self.k += 1
        if self.k in (1, 5):
            self.emit("episode", event="start", index=self.k // 5, seed=7)
        elif self.k == 3:
            self.emit("episode", event="end", index=0, outcome="failure", label="failure", duration_s=0.1)
        elif self.k == 7:
            self.emit("episode", event="end", index=1, outcome="success", duration_s=0.1)
        elif self.k == 8:
            self.request_stop("done")


def test_recorder_stores_the_end_events_label_and_old_files_read_as_none(tmp_path):
    g = parse_graph(
        f"""
nodes:
  - {{name: tel, type: t.labelled_episodes, rate: 20}}
  - {{name: c, type: test.counter, rate: 100}}
  - {{name: rec, type: record.hdf5, rate: 50, params: {{output_dir: "{tmp_path}"}},
      inputs: {{episode: tel/episode, c: c/count}}}}
""",
        "labels.yaml",
    )
    assert Scheduler(g).run().ok
    with EpisodeFile(tmp_path / "episode_000000.h5") as ep:
        assert ep.info.outcome == "failure" and ep.info.label == "failure"
    with EpisodeFile(tmp_path / "episode_000001.h5") as ep:
        assert ep.info.outcome == "success" and ep.info.label == ""
    old = write_episode(tmp_path / "old" / "episode_000000.h5", EpisodeSpec(image_shape=SIZE))
    with EpisodeFile(old) as ep:
        assert ep.attr("label") == "" and ep.info.label == ""


# ---- the edit log ------------------------------------------------------------------------------------------------


def test_later_edits_win_undrop_reverses_drop_and_no_episode_file_changes(recorded):
    before = digest(recorded)
    edit_episodes(recorded, "drop", ["1", "episode_000002.h5"])
    edit_episodes(recorded, "label", ["episode_000000"], "failure")
    edit_episodes(recorded, "label", ["0"], "discarded")
    edit_episodes(recorded, "undrop", ["2"])
    edits = load_edits(recorded)
    assert edits.is_dropped("episode_000001.h5") and not edits.is_dropped("episode_000002.h5")
    assert edits.label("episode_000000.h5", "success") == "discarded", "the later label wins"
    assert edits.label("episode_000003.h5", "") == "", "an unedited episode keeps its recorded label"
    assert [p.name for p in find_episode_files(recorded)] == ["episode_000002.h5", "episode_000003.h5"]
    assert len(find_episode_files(recorded, left_out=True)) == 4
    lines = [json.loads(line) for line in (recorded / EDITS_FILE).read_text().splitlines()]
    assert [(e["op"], e["episode"], e["label"]) for e in lines] == [
        ("drop", "episode_000001.h5", ""),
        ("drop", "episode_000002.h5", ""),
        ("label", "episode_000000.h5", "failure"),
        ("label", "episode_000000.h5", "discarded"),
        ("undrop", "episode_000002.h5", ""),
    ]
    assert all(e["time"].endswith("Z") for e in lines)
    assert digest(recorded) == before, "edits never rewrite an episode file"


def _edit_many(directory: str, op: str, n: int) -> None:
    for i in range(n):
        edit_episodes(directory, op, [str(i % 4)])


def test_concurrent_editors_append_whole_lines(recorded):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_edit_many, args=(str(recorded), op, 20)) for op in ("drop", "undrop", "drop")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (recorded / EDITS_FILE).read_text().splitlines()
    assert len(lines) == 60 and all(json.loads(line)["op"] in ("drop", "undrop") for line in lines)


def test_a_log_applies_to_the_episodes_of_its_own_directory(recorded, tmp_path):
    nested = recorded / "session2"
    write_episode(nested / "episode_000000.h5", EpisodeSpec(duration_s=1.0, image_shape=SIZE))
    edit_episodes(recorded, "drop", ["0"])
    assert [p.relative_to(recorded).as_posix() for p in find_episode_files(recorded)] == [
        "episode_000001.h5",
        "episode_000002.h5",
        "episode_000003.h5",
        "session2/episode_000000.h5",
    ]
    edit_episodes(nested, "drop", ["0"])
    assert len(find_episode_files(recorded)) == 3


def test_cli_edits_and_their_errors_write_nothing(recorded, tmp_path):
    before = digest(recorded)
    res = cli("episodes", "drop", recorded, "1", "3")
    assert res.exit_code == 0, res.output
    assert "drop episode_000001.h5" in res.output and "2 edits appended" in res.output
    res = cli("episodes", "label", recorded, "episode_000002.h5", "--as", "success")
    assert res.exit_code == 0 and "label episode_000002.h5 as success" in res.output, res.output
    res = cli("episodes", "undrop", recorded, "3")
    assert res.exit_code == 0, res.output
    log = (recorded / EDITS_FILE).read_text()
    assert len(log.splitlines()) == 4

    # Each mistake is one line saying what to fix, and the log is as it was (one bad EPISODE among good ones too).
    assert "has no episode '9'" in one_line_error(cli("episodes", "drop", recorded, "0", "9"))
    assert "'bogus' is not one of" in one_line_error(cli("episodes", "label", recorded, "0", "--as", "bogus"))
    assert "Missing option '--as'" in one_line_error(cli("episodes", "label", recorded, "0"))
    assert "no such directory" in one_line_error(cli("episodes", "drop", tmp_path / "nope", "0"))
    (tmp_path / "empty").mkdir()
    assert "holds no episode files" in one_line_error(cli("episodes", "drop", tmp_path / "empty", "0"))
    assert (recorded / EDITS_FILE).read_text() == log
    assert not (tmp_path / "empty" / EDITS_FILE).exists()
    assert digest(recorded) == before

    # A damaged log is reported with its line, by the editor and by info, and is not appended to.
    (recorded / EDITS_FILE).write_text(log + "{not json\n")
    assert "edits.jsonl line 5 is not an edit" in one_line_error(cli("episodes", "drop", recorded, "0"))
    assert "edits.jsonl line 5 is not an edit" in one_line_error(cli("info", recorded))
    assert (recorded / EDITS_FILE).read_text() == log + "{not json\n"
    with pytest.raises(EditError, match="not one of"):
        edit_episodes(recorded, "label", ["0"], "great")


# ---- what info reports -------------------------------------------------------------------------------------------


def test_control_time_counts_policy_to_human_switches_not_the_arbiters_running_totals(recorded):
    with EpisodeFile(recorded / "episode_000000.h5") as ep:
        ct = control_time(ep)
    # The factory's recorded `interventions`/`human_s` start at 5 and 100 s (a run's totals): not used.
    assert ct.interventions == 2 and ct.human_s == pytest.approx(1.0, abs=1e-9)
    with EpisodeFile(recorded / "episode_000002.h5") as ep:
        assert control_time(ep) is None


def test_info_reports_labels_success_interventions_faults_and_drops(recorded):
    assert cli("episodes", "label", recorded, "2", "--as", "failure").exit_code == 0
    assert cli("episodes", "drop", recorded, "3").exit_code == 0
    res = cli("info", recorded, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [e["file"] for e in doc["episodes"]] == [f"episode_00000{i}.h5" for i in range(3)]
    assert [e["file"] for e in doc["dropped"]] == ["episode_000003.h5"]
    assert [(e["label"], e["recorded_label"]) for e in doc["episodes"]] == [
        ("success", "success"),
        ("failure", "failure"),
        ("failure", ""),
    ]
    assert doc["outcomes"] == {"success": 1, "failure": 1, "fault": 1}, "a dropped episode counts nowhere"
    m = doc["metrics"]
    lo, hi = wilson_interval(1, 3)
    assert m["success_outcome"] == {
        "successes": 1,
        "episodes": 3,
        "rate": 0.3333,
        "wilson_95": [round(lo, 4), round(hi, 4)],
    }
    assert m["success_label"]["successes"] == 1 and m["success_label"]["episodes"] == 3
    assert m["interventions"] == {
        "episodes": 2,
        "total": 2,
        "per_episode": 1.0,
        "human_s": 1.0,
        "human_fraction": 0.25,
    }
    assert m["faults"] == 1

    text = cli("info", recorded).output
    assert f"success by recorded outcome: 33.3% (1/3), 95% Wilson interval {lo:.1%} - {hi:.1%}" in text
    assert "success by operator label: 33.3% (1/3)" in text
    assert "interventions: 1.00 per episode (2 in 2 episodes), under human control 1.0 s (25.0% of the time)" in text
    assert "faults: 1" in text
    assert "failure*" in text and "* label edited" in text
    assert "dropped in edits.jsonl (1; info --show-dropped lists them): episode_000003.h5" in text
    table = text.split("\n\n")[1].splitlines()
    assert table[0].split()[:3] == ["episode", "outcome", "label"] and "interventions" in table[0]
    assert len(table) == 1 + 3 + 1, "three kept episodes and the edited-label note"
    shown = cli("info", recorded, "--show-dropped").output.split("\n\n")[1].splitlines()
    assert len(shown) == 1 + 4 + 1 and shown[4].split()[:2] == ["3", "success"] and "dropped" in shown[4]


def test_a_discarded_label_is_no_trial(recorded):
    assert cli("episodes", "label", recorded, "1", "--as", "discarded").exit_code == 0
    doc = json.loads(cli("info", recorded, "--json").output)
    assert doc["metrics"]["trials"] == 3 and doc["metrics"]["success_outcome"]["episodes"] == 3
    assert doc["metrics"]["interventions"]["episodes"] == 1


def test_rollout_metrics_read_the_recordings_as_recorded(recorded):
    edit_episodes(recorded, "drop", ["0"])  # an edit log left in the directory by an earlier run
    m = recorded_metrics(sorted(recorded.glob("*.h5")))
    assert m["trials"] == 4 and m["interventions"]["total"] == 2 and m["faults"] == 1
    assert m["success_label"] == {"successes": 1, "episodes": 2, "rate": 0.5, "wilson_95": [0.0945, 0.9055]}


# ---- convert and view honour the log -----------------------------------------------------------------------------


def test_convert_leaves_out_dropped_and_discarded_labelled_episodes(recorded, tmp_path):
    pytest.importorskip("lerobot")
    from robotflow.scripts.convert import convert as convert_cli

    edit_episodes(recorded, "drop", ["0"])
    edit_episodes(recorded, "label", ["1"], "discarded")
    args = ["--input", recorded, "--codec", "ee", "--image-size", "48x64", "--json"]
    res = CliRunner().invoke(convert_cli, [str(a) for a in [*args, "--output-dir", tmp_path / "ds"]])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip())
    assert doc["episodes"] == 2, "episodes 2 and 3 are converted"
    assert [(Path(s["path"]).name, s["reason"]) for s in doc["skipped"]] == [
        ("episode_000000.h5", "dropped in edits.jsonl"),
        ("episode_000001.h5", "labelled discarded in edits.jsonl"),
    ]
    edit_episodes(recorded, "drop", ["2", "3"])
    res = CliRunner().invoke(convert_cli, [str(a) for a in [*args, "--output-dir", tmp_path / "none"]])
    assert "every episode is dropped or labelled discarded" in one_line_error(res)
    assert not (tmp_path / "none").exists()


def test_view_of_a_directory_leaves_dropped_episodes_out(recorded, tmp_path):
    pytest.importorskip("rerun")
    edit_episodes(recorded, "drop", ["1"])
    rrd = tmp_path / "ep.rrd"
    res = cli("view", recorded, "--episode", "2", "--save", rrd)
    assert res.exit_code == 0, res.output
    assert "episode_000002.h5: " in res.output and rrd.stat().st_size > 0
    msg = one_line_error(cli("view", recorded, "--episode", "1", "--save", tmp_path / "no.rrd"))
    assert "episode_000001.h5 is dropped" in msg and "robotflow episodes undrop" in msg
    assert "episodes: 0, 2, 3" in one_line_error(cli("view", recorded, "--episode", "7"))
    # The file itself can still be looked at, marked as dropped.
    res = cli("view", recorded / "episode_000001.h5", "--save", tmp_path / "file.rrd")
    assert res.exit_code == 0 and "(label failure, dropped)" in res.output, res.output


@pytest.mark.slow  # a policy rollout in the simulator (~15 s)
def test_rollout_summary_reports_its_recordings(tmp_path):
    pytest.importorskip("lerobot")
    from test_policy_node import save_checkpoint

    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "000001" / "pretrained_model")
    sets = [
        f"--set={cam}.{k}={v}" for cam in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))
    ]
    args = ["rollout", "--checkpoints-dir", run, "--graph", root / "graphs/sim_stack_cubes_policy.yaml"]
    args += ["--episodes", 1, *sets, "--set", "task.timeout_s=0.5", "--summary", tmp_path / "s.json"]
    args += ["--video-channel", ""]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "faults: 0" in res.output
    doc = json.loads((tmp_path / "s.json").read_text())
    rec = doc["recordings"]
    assert rec["trials"] == 1 and rec["faults"] == 0 and rec["success_outcome"]["episodes"] == 1
    assert rec["interventions"] is None, "the policy graph has no arbiter"
    assert rec["success_label"] is None, "no operator labelled a rollout episode"
