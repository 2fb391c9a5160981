"""The sim graphs through the real runtime: nodes, virtual clock, episodes, cameras, determinism."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import robotflow.drivers.sim.nodes  # noqa: F401  (registers sim.*)
import robotflow.drivers.teleop_scripted  # noqa: F401  (registers teleop.scripted)
from robotflow.drivers.sim.scene import HOME_QPOS
from robotflow.runtime.graph import load_graph, parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import run_graph

ROOT = Path(__file__).resolve().parents[1]
# Small, slow cameras keep the test short; rendering cost is mostly geometry, so the rate matters most.
SMALL = [
    f"{cam}.{k}={v}"
    for cam in ("wrist_camera", "front_camera")
    for k, v in (("width", 32), ("height", 24), ("fps", 5), ("rate", 5))
]


@dataclass
class _NoParams:
    pass


@register("test_sim.collect")
class Collect(Node):
    """Keeps copies of everything it receives, per port, for comparisons between runs."""

    Params = _NoParams
    any_inputs = True

    def setup(self):
        self.got: dict[str, list] = {}

    def step(self):
        for port, sub in self._subs.items():
            for m in sub.read_all() if sub.delivery == "queue" else [x for x in [sub.read_new()] if x]:
                self.got.setdefault(port, []).append(
                    (m.timestamp_ns, {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in m.fields.items()})
                )


def _with_collector(path: Path) -> str:
    text = path.read_text()
    text += """
  - name: collect
    type: test_sim.collect
    rate: 50
    inputs:
      state: {source: arm/state, delivery: queue}
      episode: {source: task/episode, delivery: queue}
      grip: {source: teleop/grip, delivery: queue}
      front: {source: front_camera/frame, delivery: queue}
      wrist: {source: wrist_camera/frame, delivery: queue}
"""
    return text


def test_graph_files_load():
    for name in ("sim_stack_cubes.yaml", "sim_pick_place.yaml"):
        g = load_graph(ROOT / "graphs" / name)
        assert g.clock == "virtual"
        assert {n.name for n in g.nodes} == {
            "world",
            "arm",
            "gripper",
            "wrist_camera",
            "front_camera",
            "task",
            "teleop",
        }


def test_pick_place_graph_runs_an_episode_deterministically():
    runs = []
    for _ in range(2):
        g = parse_graph(
            _with_collector(ROOT / "graphs" / "sim_pick_place.yaml"),
            "sim_pick_place.yaml",
            overrides=SMALL + ["task.episodes=1", "task.seed=3", "task.hold_s=0.3"],
        )
        result, sched = run_graph(g)
        assert result.ok and result.reason.endswith("done"), result
        runs.append(
            (sched.nodes["task"].results, sched.nodes["collect"].got, sched.nodes["world"].sim.data.qpos.copy())
        )
    (res1, got1, q1), (res2, got2, q2) = runs
    assert res1 == res2 and res1[0]["success"] and res1[0]["seed"] == 3
    assert np.array_equal(q1, q2)
    events = [f["event"] for _, f in got1["episode"]]
    assert events[:2] == ["start", "end"]
    # 5 fps of 24x32 RGB frames on the virtual clock, identical between runs.
    duration = res1[0]["duration_s"]
    assert abs(len(got1["front"]) - 5 * duration) < 3
    assert got1["front"][0][1]["image"].shape == (24, 32, 3) and got1["front"][0][1]["image"].dtype == np.uint8
    for key in ("state", "grip", "front", "wrist"):
        assert len(got1[key]) == len(got2[key])
        for (ta, fa), (tb, fb) in zip(got1[key], got2[key]):
            assert ta == tb and all(np.array_equal(fa[k], fb[k]) for k in fa)
    ts = [t for t, _ in got1["state"]]
    assert all(b - a == 10_000_000 for a, b in zip(ts, ts[1:]))  # arm state at 100 Hz of virtual time


def test_arm_holds_position_without_commands():
    text = """
nodes:
  - {name: world, type: sim.world, rate: 500, params: {task: pick_place}}  # model cached by the test above
  - {name: arm, type: sim.arm, rate: 100}
  - {name: gripper, type: sim.gripper, rate: 100}
"""
    result, sched = run_graph(parse_graph(text), duration_s=0.5)
    assert result.ok
    sim = sched.nodes["world"].sim
    assert abs(sim.time - 0.5) < 0.003
    assert np.max(np.abs(sim.arm_qpos() - HOME_QPOS)) < 1e-3
    assert sim.gripper_width() > 0.95
