"""The fake SDKs follow the real ones: every public name a fake defines exists in the installed SDK, with
the same kind (class, property, method), and every method or constructor the drivers call accepts the
same parameter names in the same order (read from pybind11's signature docstrings).

Also runs graphs/franka_stack_cubes.yaml end to end on the fakes.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from fakes import FAKES_DIR, install, load

from robotflow.runtime.graph import load_graph
from robotflow.runtime.scheduler import run_graph

ROOT = FAKES_DIR.parents[1]

# Classes whose constructors the drivers call (the others are only returned by the SDK, and their fake
# constructors are a test detail).
CONSTRUCTED = {
    "franky": {
        "Robot",
        "Gripper",
        "Affine",
        "CartesianMotion",
        "JointMotion",
        "CartesianStopMotion",
        "JointStopMotion",
        "TorqueStopMotion",
        "CartesianImpedanceTrackingMotion",
        "CartesianReference",
        "RelativeDynamicsFactor",
    },
    "pyrealsense2": {"context", "config", "pipeline"},
}


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def real_overloads(func, name: str) -> list[list[tuple[str, bool]]]:
    """[(param, has_default), ...] per overload, from a pybind11 docstring (self excluded)."""
    doc = getattr(func, "__doc__", None) or ""
    out = []
    for line in doc.splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->", line)
        if not m:
            continue
        params = []
        for part in _split_top(m.group(1)):
            pname = part.split(":", 1)[0].split("=", 1)[0].strip()
            if pname in ("self", "*args", "**kwargs") or not pname:
                continue
            params.append((pname, "=" in part.split(":", 1)[-1] or "=" in part.split(":", 1)[0]))
        out.append(params)
    if not out:  # a plain Python function (franky.Robot's own methods)
        sig = inspect.signature(func)
        out.append(
            [
                (p.name, p.default is not inspect.Parameter.empty)
                for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
        )
    return out


def compatible(fake_func, overloads) -> bool:
    """The fake's parameters are a prefix of one real overload, whose remaining parameters have defaults."""
    fake = [p.name for p in inspect.signature(fake_func).parameters.values() if p.name != "self"]
    for real in overloads:
        names = [n for n, _ in real]
        if names[: len(fake)] == fake and all(d for _, d in real[len(fake) :]):
            return True
    return False


def public_members(cls) -> dict[str, object]:
    return {k: v for k, v in vars(cls).items() if not k.startswith("_") or k in ("__init__", "__bool__")}


@pytest.mark.parametrize("sdk", ["franky", "pyrealsense2"])
def test_fake_matches_real_sdk(sdk):
    real = pytest.importorskip(sdk)
    fake = load(sdk)
    checked = 0
    for name, obj in vars(fake).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != fake.__name__ or not inspect.isclass(obj):
            continue
        assert hasattr(real, name), f"{sdk}.{name} does not exist in the real {sdk}"
        real_cls = getattr(real, name)
        assert inspect.isclass(real_cls), f"{sdk}.{name} is not a class in the real {sdk}"
        if issubclass(obj, BaseException):
            for base in ("Exception",):
                if hasattr(fake, base) and obj is not getattr(fake, base):
                    assert issubclass(obj, getattr(fake, base)) == issubclass(real_cls, getattr(real, base)), (
                        f"{sdk}.{name}: exception hierarchy differs from the real one"
                    )
            continue
        for attr, value in public_members(obj).items():
            if attr == "__init__" and name not in CONSTRUCTED[sdk]:
                continue
            where = f"{sdk}.{name}.{attr}"
            assert hasattr(real_cls, attr), f"{where} does not exist in the real {sdk}"
            real_attr = inspect.getattr_static(real_cls, attr) if attr in vars(real_cls) else getattr(real_cls, attr)
            if isinstance(value, property):
                assert isinstance(real_attr, property), f"{where} is a property in the fake but not in {sdk}"
                assert (value.fset is not None) <= (real_attr.fset is not None), f"{where} is read-only in {sdk}"
            elif callable(value):
                assert not isinstance(real_attr, property), f"{where} is a property in {sdk}"
                if attr != "__bool__":
                    ovl = real_overloads(getattr(real_cls, attr), attr)
                    assert compatible(value, ovl), f"{where}{inspect.signature(value)} matches no overload: {ovl}"
            else:  # enum-like class attributes (ReferenceType.Absolute, stream.color, ...)
                assert isinstance(getattr(real_cls, attr), real_cls), f"{where} is not a {name} value in {sdk}"
            checked += 1
    assert checked > 20


def test_signature_check_catches_a_wrong_name():
    franky = pytest.importorskip("franky")

    def move_async(self, target_width, speed):  # real: width, speed
        pass

    assert not compatible(move_async, real_overloads(franky.Gripper.move_async, "move_async"))

    def grasp_async(self, width, speed, force, epsilon_inner=0.005, epsilon_outer=0.005):
        pass

    assert compatible(grasp_async, real_overloads(franky.Gripper.grasp_async, "grasp_async"))


# ---- the hardware graph file ------------------------------------------------------------------------


def test_franka_stack_cubes_graph_validates():
    spec = load_graph(ROOT / "graphs" / "franka_stack_cubes.yaml")
    assert spec.clock == "wall"
    types = {n.name: n.type_name for n in spec.nodes}
    assert types == {
        "arm": "franka.arm",
        "gripper": "franka.gripper",
        "wrist_camera": "realsense.camera",
        "front_camera": "realsense.camera",
        "teleop": "teleop.keyboard",
    }
    assert spec.node("arm").inputs["ee_target"].source == "teleop/ee_target"
    assert spec.node("gripper").inputs["target"].source == "teleop/grip"
    assert spec.node("teleop").inputs["state"].source == "arm/state"


def test_franka_stack_cubes_graph_runs_on_fakes(monkeypatch):
    franky = install(monkeypatch, "franky")
    rs = install(monkeypatch, "pyrealsense2")
    sets = [
        "wrist_camera.serial=111111111111",
        "front_camera.serial=222222222222",
        "wrist_camera.width=64",
        "wrist_camera.height=48",
        "front_camera.width=64",
        "front_camera.height=48",
    ]
    spec = load_graph(ROOT / "graphs" / "franka_stack_cubes.yaml", sets)
    result, sched = run_graph(spec, duration_s=1.0)
    assert result.ok, result
    robot = franky.Robot._instances[0]
    assert type(robot._moves[0]).__name__ == "JointMotion"  # home_on_start
    # teleop starts from the measured pose, so its first target is where the arm already is
    cart = [m for m in robot._moves if isinstance(m, franky.CartesianMotion)]
    assert cart, "teleop targets reached the arm"
    np.testing.assert_allclose(cart[0].target.pose.end_effector_pose.translation, [0.4, 0.0, 0.4])
    assert not robot.is_in_control
    assert [p._config._serial for p in rs._pipelines] == ["111111111111", "222222222222"]
    assert all(p._stopped for p in rs._pipelines)
    assert sched.reports["wrist_camera"]["frames"] > 5 and sched.reports["front_camera"]["frames"] > 5
    assert franky.Gripper._instances[0]._commands[0][0] == "open"  # teleop starts with the gripper open


def test_record_adds_a_recorder_to_the_franka_graph(tmp_path):
    from robotflow.recording.graph_transform import with_recorder

    spec = load_graph(ROOT / "graphs" / "franka_stack_cubes.yaml")
    rec_spec, name = with_recorder(spec, {"output_dir": str(tmp_path), "task": "stack", "max_episodes": 2})
    rec = rec_spec.node(name)
    assert rec.process == "recorder"  # wall clock: the writer runs in its own process
    assert rec.inputs["episode"].source == "teleop/episode"
    sources = {i.source for i in rec.inputs.values()}
    assert {
        "arm/state",
        "arm/command",
        "gripper/state",
        "gripper/command",
        "wrist_camera/frame",
        "front_camera/frame",
    } <= sources


# ---- the real SDKs, where no hardware is needed ----------------------------------------------------


@pytest.mark.parametrize("node_type", ["franka.arm", "franka.gripper"])
def test_real_franky_refused_connection_is_actionable(node_type):
    pytest.importorskip("franky")
    from robotflow.runtime.graph import parse_graph

    # Nothing listens on localhost's FCI port: libfranka refuses at once.
    doc = f'nodes: [{{name: dev, type: {node_type}, rate: 10, params: {{host: "127.0.0.1"}}}}]'
    result, _ = run_graph(parse_graph(doc), duration_s=5)
    assert not result.ok and result.failed_node == "dev"
    assert "127.0.0.1" in result.error and "NetworkException" in result.error and "\n" not in result.error


def test_real_pyrealsense2_without_camera():
    rs = pytest.importorskip("pyrealsense2")
    if len(rs.context().query_devices()):
        pytest.skip("a RealSense is connected")
    from robotflow.runtime.graph import parse_graph

    result, _ = run_graph(parse_graph("nodes: [{name: cam, type: realsense.camera, rate: 30}]"), duration_s=5)
    assert not result.ok and result.failed_node == "cam" and "no RealSense camera found" in result.error
