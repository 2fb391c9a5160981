"""`robotflow record` and `rollout --list` with S3 output dirs (moto's server on loopback): episodes are uploaded
after the run, never overwrite remote ones, and stay local (with a one-line error) when the upload fails."""

from __future__ import annotations

import json

import pytest
import s3fs
from click.testing import CliRunner
from s3_server import BUCKET, s3_server

from robotflow.recording.reader import EpisodeFile
from robotflow.scripts.cli import main
from robotflow.storage import Cache

GRAPH = """
nodes:
  - {name: task, type: test.episodes, rate: 100, params: {length_s: 0.3, gap_s: 0.1}}
  - {name: control, type: test.counter, rate: 100}
"""


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "count.yaml"
    path.write_text(GRAPH)
    return str(path)


def _remote_names(url_path: str) -> list[str]:
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url_path))


def test_record_to_s3_appends_after_remote_episodes(graph, tmp_path, monkeypatch):
    url = f"s3://{BUCKET}/episodes/count"
    with s3_server(monkeypatch, tmp_path):
        res = CliRunner().invoke(main, ["record", graph, "--episodes", "2", "--output-dir", url])
        assert res.exit_code == 0, res.output
        assert "uploaded 2 file(s)" in res.output
        assert _remote_names(f"{BUCKET}/episodes/count") == ["episode_000000.h5", "episode_000001.h5"]
        # Another machine (an empty cache) records into the same URL: numbering continues after the remote ones.
        monkeypatch.setenv("ROBOTFLOW_CACHE_DIR", str(tmp_path / "other_cache"))
        res = CliRunner().invoke(main, ["record", graph, "--episodes", "1", "--output-dir", url])
        assert res.exit_code == 0, res.output
        names = _remote_names(f"{BUCKET}/episodes/count")
        assert names == ["episode_000000.h5", "episode_000001.h5", "episode_000002.h5"]
        local = Cache().local_path(url) / "episode_000002.h5"
        with EpisodeFile(local) as ep:
            assert ep.info.episode_index == 2 and ep.info.outcome == "success"
        # info and replay read the remote episodes too.
        monkeypatch.setenv("ROBOTFLOW_CACHE_DIR", str(tmp_path / "third_cache"))
        res = CliRunner().invoke(main, ["info", url, "--json"])
        assert res.exit_code == 0, res.output
        assert [e["index"] for e in json.loads(res.output)["episodes"]] == [0, 1, 2]
        rrd = tmp_path / "ep.rrd"
        res = CliRunner().invoke(main, ["replay", f"{url}/episode_000001.h5", "--rerun", str(rrd)])
        assert res.exit_code == 0 and rrd.stat().st_size > 0, res.output
        missing = CliRunner().invoke(main, ["replay", f"{url}/episode_000009.h5", "--rerun", str(rrd)])
        assert missing.exit_code != 0 and "does not exist" in missing.output


def test_failed_upload_keeps_the_episode_and_reports_one_line(graph, tmp_path, monkeypatch):
    url = f"s3://{BUCKET}/episodes/lost"
    with s3_server(monkeypatch, tmp_path) as server:
        server.stop()
        # As a fresh `robotflow record` process would: no pooled connection to the old server, one attempt.
        s3fs.S3FileSystem.clear_instance_cache()
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        res = CliRunner().invoke(main, ["record", graph, "--episodes", "1", "--output-dir", url])
        assert res.exit_code == 1
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and url in errors[0] and "kept in" in errors[0], res.output
        assert "Traceback" not in res.output
        local = Cache().local_path(url)
        with EpisodeFile(local / "episode_000000.h5") as ep:
            assert ep.info.outcome == "success"
        assert Cache().pinned(url)
    # The server is back (a new one): the next run to the same URL uploads the kept episode with its own.
    with s3_server(monkeypatch, tmp_path):
        res = CliRunner().invoke(main, ["record", graph, "--episodes", "1", "--output-dir", url])
        assert res.exit_code == 0, res.output
        assert _remote_names(f"{BUCKET}/episodes/lost") == ["episode_000000.h5", "episode_000001.h5"]
        assert not Cache().pinned(url)
