"""The robotflow command line: launch, graph check/show, errors and signals."""

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "graphs" / "demo_runtime.yaml")


def rf(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "robotflow.scripts.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        **kw,
    )


def test_launch_demo_graph_prints_stats_table():
    r = rf("launch", DEMO, "--duration", "1.5", "--set", "camera.width=320", "--set", "camera.height=240")
    assert r.returncode == 0, r.stderr
    assert "counter" in r.stderr and "err p99 us" in r.stderr
    assert "counter/count" in r.stderr and "sink.ticks" in r.stderr


def test_graph_check_and_show(tmp_path):
    r = rf("graph", "check", DEMO)
    assert r.returncode == 0 and "ok (4 nodes, 2 channels, wall clock)" in r.stdout
    r = rf("graph", "show", DEMO)
    assert "sink (test.sink, 100 Hz)" in r.stdout and "<- ticks: counter/count (queue)" in r.stdout
    r = rf("graph", "show", DEMO, "--dot")
    assert r.stdout.startswith("digraph robotflow {") and '"counter" -> "sink"' in r.stdout


def test_bad_graph_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - name: cam\n    type: test.frames\n    rate: 30\n    params:\n      widht: 640\n")
    r = rf("graph", "check", str(bad))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines == [f"Error: unknown param 'widht' for test.frames at {bad}:6; did you mean 'width'?"]


def test_failing_node_exits_nonzero_naming_it(tmp_path):
    g = tmp_path / "fail.yaml"
    g.write_text(
        "nodes:\n  - {name: arm, type: test.fail, rate: 100, params: {after: 5, message: joint limit}}\n"
        "  - {name: n, type: test.counter, rate: 100}\n"
    )
    r = rf("launch", str(g), "--duration", "5")
    assert r.returncode == 1
    assert "error: node 'arm' failed: RuntimeError: joint limit" in r.stderr
    assert "Traceback" not in r.stderr


def test_sigterm_stops_the_graph_with_teardown(tmp_path):
    p = subprocess.Popen(
        [sys.executable, "-m", "robotflow.scripts.cli", "launch", DEMO],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM
    assert "stopped: stopped by SIGTERM" in err and "counter" in err
    assert time.monotonic() - t0 < 10
