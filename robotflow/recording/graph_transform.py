"""Recording edits of a validated graph: add a recorder that reads every channel (or configure the one it has),
feed an episode into a replay node.

The edits go through the graph's composition API (robotflow.runtime.graph), so the result is validated like a
graph file and runs the same in every process group.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from robotflow.runtime.graph import GraphError, GraphSpec, NodeDef

from .reader import EpisodeFile

RECORDER_TYPE = "record.hdf5"


def episode_source(spec: GraphSpec) -> str | None:
    """The channel whose `episode` events start and stop episodes: the last node publishing one, except that a
    source wired into a `control` input is skipped when there is another.

    A teleop device in a sim graph publishes `episode` too, into the sim task's `control` input; the episodes
    themselves (seeded, with outcomes) are the task's.
    """
    sources = [f"{n.name}/episode" for n in spec.nodes if "episode" in n.outputs]
    controls = {i.source for n in spec.nodes for i in n.inputs.values() if i.port == "control"}
    return next((s for s in reversed(sources) if s not in controls), sources[-1] if sources else None)


def recorder_node(spec: GraphSpec, name: str) -> NodeDef:
    """A recorder named `name` reading every output of every node (driver outputs and commands alike), its
    episode input wired to the graph's episode source when there is one."""
    source = episode_source(spec)
    inputs: dict[str, Any] = {}
    for n in spec.nodes:
        for o in n.outputs:
            if f"{n.name}/{o}" == source:
                inputs["episode"] = {"source": source, "delivery": "queue"}
            else:
                inputs[f"{n.name}.{o}"] = {"source": f"{n.name}/{o}", "delivery": "queue", "queue_size": 2048}
    # h5py holds the GIL while it writes; in its own process the recorder cannot delay a control loop
    # (measured: p99 period error x4.5 in-process, x1.3 as a process group; benchmarks/recording.py).
    process = "recorder" if spec.clock == "wall" else None
    return NodeDef(name, RECORDER_TYPE, rate=50, inputs=inputs, process=process)


def with_recorder(spec: GraphSpec, params: Mapping[str, Any]) -> tuple[GraphSpec, str]:
    """The graph with a recorder and its name: the recorder it has, or a new `recorder` node reading every
    channel; `params` (record.hdf5 params: output_dir, task, ...) set on it. Raises GraphError."""
    existing = [n for n in spec.nodes if n.type_name == RECORDER_TYPE]
    if existing:
        name = existing[0].name
    else:
        name = "recorder"
        taken = {n.name for n in spec.nodes}
        while name in taken:
            name += "_"
        spec = spec.add_node(recorder_node(spec, name))
    return spec.set_params(name, params), name


def with_replay(spec: GraphSpec, episode: str | Path, speed: float, keep_seed: Collection[str] = ()) -> GraphSpec:
    """The graph with its first `record.replay` node playing `episode` at `speed`, and every simulated task node
    (but those named in `keep_seed`) reset with the episode's own seed, so objects start where they did.
    Raises GraphError, EpisodeError."""
    nodes = [n for n in spec.nodes if n.type_name == "record.replay"]
    if not nodes:
        raise GraphError(f"{spec.path} has no record.replay node to feed the episode into")
    spec = spec.set_params(nodes[0].name, {"episode": str(episode), "speed": speed})
    with EpisodeFile(episode) as ep:
        seed = ep.info.seed
    for n in spec.nodes:
        if n.type_name == "sim.task" and seed >= 0 and n.name not in keep_seed:
            spec = spec.set_params(n.name, {"seed": seed})
    return spec
