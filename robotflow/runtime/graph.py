"""Graph files: load, apply `--set` overrides, validate everything before any node starts.

A graph file is YAML:

    clock: virtual            # optional: wall | virtual (default: virtual if a node owns simulated time)
    channels:                 # optional endpoint overrides, e.g. to move a channel to tcp
      camera/frame: tcp://127.0.0.1:5555
    nodes:
      - name: camera
        type: test.frames     # registered short name or import path
        rate: 30              # periodic, Hz; or `trigger: <input>` for a triggered node
        params: {width: 640}
        inputs:               # port: node/output   or   port: {source: node/output, delivery: queue}
          x: other/y
        process: vision       # optional: run in a separate process (channels become ipc://)
        priority: 50          # optional: real-time (SCHED_FIFO) priority of the node's thread

Every error is one line naming file:line and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .node import Input, Node, known_types, resolve_type


class GraphError(Exception):
    """A graph file problem; str() is one line that says what to fix."""


class _LineDict(dict):
    line: int = 0
    lines: dict


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping and of each key in it."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    d = _LineDict()
    d.line = node.start_mark.line + 1
    d.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        d[key] = loader.construct_object(value_node, deep=True)
        d.lines[key] = key_node.start_mark.line + 1
    return d


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class InputSpec:
    port: str
    source: str  # "node/output"
    delivery: str = "latest"
    queue_size: int = 256
    delayed: bool = False
    line: int = 0

    @property
    def source_node(self) -> str:
        return self.source.split("/", 1)[0]

    @property
    def source_output(self) -> str:
        return self.source.split("/", 1)[1]


@dataclass
class NodeSpec:
    name: str
    type_name: str
    cls: type[Node]
    params: Any
    rate: float | None
    trigger: str | None
    inputs: dict[str, InputSpec]
    outputs: tuple[str, ...]
    process: str | None = None
    line: int = 0
    params_raw: dict = field(default_factory=dict)
    priority: int | None = None  # SCHED_FIFO priority of the node's thread (wall clock, Linux)


@dataclass
class GraphSpec:
    path: str
    text: str
    nodes: list[NodeSpec]  # in start order: topological over non-delayed edges, file order on ties
    clock: str = "wall"
    channels: dict[str, str] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()  # the --set items applied (process groups re-parse text + overrides)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, channel: str) -> list[tuple[NodeSpec, InputSpec]]:
        return [(n, i) for n in self.nodes for i in n.inputs.values() if i.source == channel]

    def channel_names(self) -> list[str]:
        return [f"{n.name}/{o}" for n in self.nodes for o in n.outputs]


def _did_you_mean(word: str, options) -> str:
    m = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean {m[0]!r}?" if m else ""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(value: Any, hint: Any) -> tuple[bool, Any]:
    """Check a YAML value against a dataclass field type; returns (ok, coerced value)."""
    if hint is Any:
        return True, value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return True, None
            ok, v = _check_value(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return (value in typing.get_args(hint)), value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        item = args[0] if args else Any
        out = []
        for v in value:
            ok, cv = _check_value(v, item if item is not Ellipsis else Any)
            if not ok:
                return False, value
            out.append(cv)
        return True, (tuple(out) if origin is tuple else out)
    if origin is dict:
        return isinstance(value, dict), (dict(value) if isinstance(value, dict) else value)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if hint in (list, dict):
        return isinstance(value, hint), value
    return True, value


def build_params(cls: type[Node], raw: dict, where: str, node_name: str) -> Any:
    """Validate raw params against the node's Params dataclass and construct it."""
    pcls = cls.Params
    if not dataclasses.is_dataclass(pcls):
        raise GraphError(f"{cls.__name__}.Params must be a dataclass ({where})")
    hints = typing.get_type_hints(pcls)
    fields = {f.name: f for f in dataclasses.fields(pcls)}
    lines = getattr(raw, "lines", {})
    kwargs = {}
    tname = getattr(cls, "type_name", cls.__name__)
    for key, value in raw.items():
        loc = f"{where.rsplit(':', 1)[0]}:{lines.get(key, where.rsplit(':', 1)[-1])}"
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise GraphError(
                f"unknown param {key!r} for {tname} at {loc}{_did_you_mean(key, fields) or f' (params: {known})'}"
            )
        ok, coerced = _check_value(value, hints.get(key, Any))
        if not ok:
            raise GraphError(
                f"param {key!r} of node {node_name!r} ({tname}) at {loc} must be "
                f"{_type_name(hints.get(key))}, got {type(value).__name__} {value!r}"
            )
        kwargs[key] = coerced
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise GraphError(
            f"node {node_name!r} ({tname}) at {where} is missing required param {missing[0]!r}; add it under params"
        )
    try:
        return pcls(**kwargs)
    except (ValueError, TypeError) as e:
        raise GraphError(f"bad params for node {node_name!r} ({tname}) at {where}: {e}") from None


def parse_set(items: list[str] | tuple[str, ...]) -> list[tuple[str, str, Any]]:
    """Parse `node.param=value` overrides (the value is YAML: 30, true, [1, 2], text)."""
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not eq or not dot or not node or not param:
            raise GraphError(f"bad --set {item!r}; use --set node.param=value")
        try:
            out.append((node, param, yaml.safe_load(value) if value != "" else ""))
        except yaml.YAMLError:
            out.append((node, param, value))
    return out


def load_graph(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> GraphSpec:
    """Load and fully validate a graph file. Raises GraphError with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GraphError(f"graph file {str(path)!r} not found") from None
    except OSError as e:
        raise GraphError(f"cannot read graph file {str(path)!r}: {e.strerror}") from None
    return parse_graph(text, str(path), overrides)


def parse_graph(text: str, path: str = "<graph>", overrides=()) -> GraphSpec:
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GraphError(f"invalid YAML at {path}{line}: {problem}; check indentation and quoting") from None
    if not isinstance(doc, dict) or "nodes" not in doc:
        raise GraphError(f"{path}: a graph file needs a top-level `nodes:` list")
    top_known = {"nodes", "clock", "channels", "description"}
    for key in doc:
        if key not in top_known:
            raise GraphError(f"unknown top-level key {key!r} at {path}:{doc.lines[key]}{_did_you_mean(key, top_known)}")
    raw_nodes = doc["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError(f"`nodes:` at {path}:{doc.lines['nodes']} must be a non-empty list of nodes")

    sets = parse_set(overrides)
    names_in_file = [n.get("name") for n in raw_nodes if isinstance(n, dict)]
    for node, param, _value in sets:
        if node not in names_in_file:
            raise GraphError(
                f"--set {node}.{param}: no node named {node!r} in {path}{_did_you_mean(node, names_in_file)}"
            )

    node_keys = {"name", "type", "params", "rate", "inputs", "process", "trigger", "priority"}
    specs: list[NodeSpec] = []
    seen: dict[str, int] = {}
    for raw in raw_nodes:
        if not isinstance(raw, dict):
            raise GraphError(f"{path}: each entry of `nodes:` must be a mapping with name and type")
        where = f"{path}:{raw.line}"
        for key in raw:
            if key not in node_keys:
                raise GraphError(f"unknown key {key!r} at {path}:{raw.lines[key]}{_did_you_mean(key, node_keys)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise GraphError(f"node at {where} needs a `name:` (text without '/')")
        if name in seen:
            raise GraphError(
                f"duplicate node name {name!r} at {where} (first at line {seen[name]}); names must be unique"
            )
        seen[name] = raw.line
        type_name = raw.get("type")
        if not isinstance(type_name, str):
            raise GraphError(f"node {name!r} at {where} needs a `type:`")
        try:
            cls = resolve_type(type_name)
        except LookupError as e:
            hint = _did_you_mean(type_name, known_types())
            raise GraphError(
                f"unknown node type {type_name!r} for node {name!r} at {path}:{raw.lines['type']}{hint or f' ({e})'}"
            ) from None
        except ImportError as e:
            raise GraphError(f"node type {type_name!r} at {where} cannot be loaded: {e}") from None

        params_raw = raw.get("params") or _LineDict()
        if not isinstance(params_raw, dict):
            raise GraphError(f"`params:` of node {name!r} at {where} must be a mapping")
        rate = raw.get("rate")
        trigger = raw.get("trigger")
        for node, param, value in sets:
            if node != name:
                continue
            if param == "rate":
                rate = value
            else:
                params_raw = _LineDict(params_raw)
                params_raw.line = getattr(raw.get("params"), "line", raw.line)
                params_raw.lines = dict(getattr(raw.get("params"), "lines", {}))
                params_raw[param] = value
        params = build_params(cls, params_raw, f"{path}:{getattr(params_raw, 'line', raw.line)}", name)

        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise GraphError(f"`rate:` of node {name!r} at {where} must be a positive number of Hz, got {rate!r}")
            rate = float(rate)
        declared_in = cls.declare_inputs(params)
        outputs = tuple(cls.declare_outputs(params))

        raw_inputs = raw.get("inputs") or {}
        if not isinstance(raw_inputs, dict):
            raise GraphError(f"`inputs:` of node {name!r} at {where} must map port: node/output")
        inputs: dict[str, InputSpec] = {}
        for port, src in raw_inputs.items():
            line = raw_inputs.lines.get(port, raw.line) if hasattr(raw_inputs, "lines") else raw.line
            loc = f"{path}:{line}"
            decl = declared_in.get(port)
            if decl is None:
                if not cls.any_inputs:
                    opts = ", ".join(declared_in) or "none"
                    raise GraphError(
                        f"node {name!r} ({type_name}) has no input {port!r} at {loc}"
                        f"{_did_you_mean(port, declared_in) or f' (inputs: {opts})'}"
                    )
                decl = Input(delivery="queue") if cls.any_inputs else Input()
            opts: dict = {}
            if isinstance(src, dict):
                opts = dict(src)
                src = opts.pop("source", None)
                bad = set(opts) - {"delivery", "queue_size", "delayed"}
                if bad:
                    raise GraphError(
                        f"unknown input option {sorted(bad)[0]!r} at {loc}; use source, delivery, queue_size, delayed"
                    )
            if not isinstance(src, str) or src.count("/") != 1:
                raise GraphError(f"input {port!r} of node {name!r} at {loc} must be `node/output`, got {src!r}")
            delivery = opts.get("delivery", decl.delivery)
            if delivery not in ("latest", "queue"):
                raise GraphError(f"delivery of input {port!r} at {loc} must be latest or queue, got {delivery!r}")
            inputs[port] = InputSpec(
                port,
                src,
                delivery,
                int(opts.get("queue_size", decl.queue_size)),
                bool(opts.get("delayed", decl.delayed)),
                line,
            )
        for port, decl in declared_in.items():
            if decl.required and port not in inputs:
                raise GraphError(
                    f"node {name!r} ({type_name}) at {where} is missing required input {port!r}; "
                    f"add `{port}: <node>/<output>` under inputs"
                )
        trigger = trigger if trigger is not None else (cls.trigger if rate is None else None)
        if trigger is not None and trigger not in inputs:
            raise GraphError(f"node {name!r} at {where} is triggered by {trigger!r}, which is not a connected input")
        if rate is None and trigger is None:
            raise GraphError(f"node {name!r} ({type_name}) at {where} needs `rate:` (Hz) or `trigger: <input>`")
        process = raw.get("process")
        if process is not None and not isinstance(process, str):
            raise GraphError(f"`process:` of node {name!r} at {where} must be a name")
        priority = raw.get("priority")
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 99
        ):
            raise GraphError(
                f"`priority:` of node {name!r} at {path}:{raw.lines['priority']} must be an integer "
                f"1..99 (real-time SCHED_FIFO priority), got {priority!r}"
            )
        specs.append(
            NodeSpec(
                name,
                type_name,
                cls,
                params,
                rate,
                trigger,
                inputs,
                outputs,
                process,
                raw.line,
                dict(params_raw),
                priority,
            )
        )

    by_name = {s.name: s for s in specs}
    for s in specs:
        for inp in s.inputs.values():
            src = by_name.get(inp.source_node)
            if src is None:
                raise GraphError(
                    f"input {inp.port!r} of node {s.name!r} at {path}:{inp.line} reads from unknown node "
                    f"{inp.source_node!r}{_did_you_mean(inp.source_node, by_name)}"
                )
            if inp.source_output not in src.outputs:
                outs = ", ".join(src.outputs) or "none"
                hint = _did_you_mean(inp.source_output, src.outputs) or f" (outputs: {outs})"
                raise GraphError(
                    f"input {inp.port!r} of node {s.name!r} at {path}:{inp.line} reads {inp.source!r}, but "
                    f"{src.name!r} has no output {inp.source_output!r}{hint}"
                )

    ordered = _topological(specs, path)
    clock = doc.get("clock")
    if clock is None:
        clock = "virtual" if any(s.cls.virtual_clock for s in specs) else "wall"
    if clock not in ("wall", "virtual"):
        raise GraphError(f"`clock:` at {path}:{doc.lines['clock']} must be wall or virtual, got {clock!r}")
    if clock == "virtual" and any(s.process for s in specs):
        raise GraphError(f"{path}: `process:` groups need the wall clock; a virtual-clock graph runs in one process")
    channels = dict(doc.get("channels") or {})
    all_channels = [f"{s.name}/{o}" for s in specs for o in s.outputs]
    for ch, ep in channels.items():
        if ch not in all_channels:
            raise GraphError(
                f"`channels:` entry {ch!r} at {path}:{doc['channels'].lines[ch]} is not a node output"
                f"{_did_you_mean(ch, all_channels)}"
            )
        if not isinstance(ep, str) or not ep.startswith(("inproc://", "ipc://", "tcp://")):
            raise GraphError(
                f"endpoint for {ch!r} at {path}:{doc['channels'].lines[ch]} must start with inproc://, ipc:// or tcp://"
            )
    return GraphSpec(path, text, ordered, clock, channels, tuple(overrides))


def _topological(specs: list[NodeSpec], path: str) -> list[NodeSpec]:
    """Order nodes so producers run before consumers; only delayed edges may close a cycle."""
    index = {s.name: i for i, s in enumerate(specs)}
    deps = {
        s.name: {i.source_node for i in s.inputs.values() if not i.delayed and i.source_node != s.name} for s in specs
    }
    ordered: list[NodeSpec] = []
    done: set[str] = set()
    remaining = list(specs)
    while remaining:
        ready = [s for s in remaining if deps[s.name] <= done]
        if not ready:
            cycle = _find_cycle(deps, {s.name for s in remaining})
            first = next(s for s in specs if s.name == cycle[0])
            edge = next((i for i in first.inputs.values() if i.source_node == cycle[1] and not i.delayed), None)
            where = f"{path}:{edge.line}" if edge else f"{path}:{first.line}"
            raise GraphError(
                f"cycle {' -> '.join(reversed(cycle))} with no delayed edge at {where}; "
                f"mark one input of the loop `delayed: true`"
            )
        ready.sort(key=lambda s: index[s.name])
        s = ready[0]
        ordered.append(s)
        done.add(s.name)
        remaining.remove(s)
    return ordered


def _find_cycle(deps: dict[str, set[str]], nodes: set[str]) -> list[str]:
    start = sorted(nodes)[0]
    path = [start]
    seen = {start: 0}
    cur = start
    while True:
        nxt = sorted(d for d in deps[cur] if d in nodes)[0]
        if nxt in seen:
            cyc = path[seen[nxt] :] + [nxt]
            return cyc
        seen[nxt] = len(path)
        path.append(nxt)
        cur = nxt
