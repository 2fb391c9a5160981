"""A hardware graph never imports MuJoCo: the Franka graphs validate, and every node class they use and
every teleop device module imports, in a process where `import mujoco` fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
sys.modules["mujoco"] = None  # any `import mujoco` from here on raises ImportError

import importlib
from robotflow.runtime.graph import load_graph

for path in ("graphs/franka_stack_cubes.yaml", "graphs/franka_stack_cubes_policy.yaml"):
    for node in load_graph(path).nodes:  # load_graph imports each node's class to validate its params
        assert node.cls.__module__ in sys.modules, node.type_name
for name in ("teleop_base", "teleop_keyboard", "teleop_gamepad", "teleop_spacemouse", "teleop_webxr",
             "teleop_scripted", "franka", "realsense", "opencv_camera"):
    importlib.import_module("robotflow.drivers." + name)
sim = sorted(m for m in sys.modules if m.startswith("robotflow.drivers.sim"))
assert not sim, f"imported without need: {sim}"
print("ok")
"""


def test_hardware_graphs_and_teleop_modules_import_without_mujoco():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
