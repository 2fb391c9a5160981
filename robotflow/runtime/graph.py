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

A validated `GraphSpec` is edited in code through its composition API (`add_node`, `replace_node`,
`remove_node`, `rewire`, `set_params`): each returns a new GraphSpec validated by the same checks as a file,
so `record` adds its recorder, `rollout` swaps the policy node and `launch --rerun` adds its view without
writing YAML. A node added in code has no line; its errors say "(node added to the graph)" instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .node import Input, Node, known_types, resolve_type
from .params import ParamError, value_problem

# The field metadata (robotflow.scripts.options) of a command's `--set NODE.PARAM=VALUE` overrides: a tuple field.
SET_OPTION = {
    "flag": "--set",
    "multiple": True,
    "metavar": "NODE.PARAM=VALUE",
    "help": "Override a node param (repeatable).",
}
NODE_KEYS = ("name", "type", "params", "rate", "inputs", "process", "trigger", "priority")
INPUT_OPTIONS = ("delivery", "queue_size", "delayed")


class GraphError(Exception):
    """A graph file problem; str() is one line that says what to fix."""


class _LineDict(dict):
    """A mapping that remembers its line and the line of each key (0: built in code, not read from a file)."""

    line: int = 0

    def __init__(self, items=(), line: int = 0, lines: dict | None = None):
        super().__init__(items)
        self.line = line
        self.lines = dict(lines or {})


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping and of each key in it."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    d = _LineDict(line=node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        d[key] = loader.construct_object(value_node, deep=True)
        d.lines[key] = key_node.start_mark.line + 1
    return d


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _at(path: str, line: int) -> str:
    """Where an entry is: `file:line`, or the file and a note for an entry added in code."""
    return f"{path}:{line}" if line else f"{path} (node added to the graph)"


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
    params_raw: dict = field(default_factory=dict)  # as written, --set overrides applied (remembers its lines)
    priority: int | None = None  # SCHED_FIFO priority of the node's thread (wall clock, Linux)

    def has_param(self, name: str) -> bool:
        """Whether the node's type has a param `name` (a task node's `episodes`, a world's `realtime`)."""
        return name in getattr(self.params, "__dataclass_fields__", {})


@dataclass(frozen=True)
class NodeDef:
    """A node entry written in code: what a graph file's entry under `nodes:` says, for `GraphSpec.add_node`
    and `replace_node`. Inputs are `port: node/output` or `port: {source, delivery, queue_size, delayed}`."""

    name: str
    type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    rate: float | None = None
    trigger: str | None = None
    inputs: Mapping[str, str | Mapping[str, Any]] = field(default_factory=dict)
    process: str | None = None
    priority: int | None = None

    @classmethod
    def of(cls, node: NodeSpec) -> NodeDef:
        """The entry of a validated node (inputs with their effective options), to change and put back."""
        inputs = {
            p: {"source": i.source, "delivery": i.delivery, "queue_size": i.queue_size, "delayed": i.delayed}
            for p, i in node.inputs.items()
        }
        # A trigger the type gives a node without a rate is left for the type to give again (a `rate` set later
        # then makes the node periodic, as in a file).
        derived = node.rate is None and node.trigger == node.cls.trigger
        trigger = None if derived else node.trigger
        return cls(
            node.name, node.type_name, dict(node.params_raw), node.rate, trigger, inputs, node.process, node.priority
        )


@dataclass
class GraphSpec:
    path: str
    text: str  # the graph file as loaded; nodes added or changed in code are not in it
    nodes: list[NodeSpec]  # in start order: topological over non-delayed edges, file order on ties
    clock: str = "wall"
    channels: dict[str, str] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()  # the --set items applied when the file was loaded
    clock_declared: bool = False  # the file names the clock (else edits derive it again from the nodes)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, channel: str) -> list[tuple[NodeSpec, InputSpec]]:
        return [(n, i) for n in self.nodes for i in n.inputs.values() if i.source == channel]

    def channel_names(self) -> list[str]:
        return [f"{n.name}/{o}" for n in self.nodes for o in n.outputs]

    # ---- composition: each edit returns a new, fully validated graph; this one is unchanged ----------------

    def add_node(self, node: NodeDef) -> GraphSpec:
        """This graph with `node` added (started after the nodes it reads from)."""
        if any(n.name == node.name for n in self.nodes):
            raise GraphError(f"cannot add node {node.name!r} to {self.path}: a node of that name exists; pick another")
        entry = _def_entry(node)
        _check_entry_keys_and_name(entry, self.path, {})
        return self._with_nodes([*self.nodes, _node_spec(entry, self.path, [])])

    def replace_node(self, node: NodeDef) -> GraphSpec:
        """This graph with the node named `node.name` replaced by `node` (its readers keep reading its outputs)."""
        self._existing(node.name)
        entry = _def_entry(node)
        _check_entry_keys_and_name(entry, self.path, {})
        new = _node_spec(entry, self.path, [])
        return self._with_nodes([new if n.name == node.name else n for n in self.nodes])

    def remove_node(self, name: str) -> GraphSpec:
        """This graph without node `name`; no other node may read from it (rewire or remove those first)."""
        self._existing(name)
        for reader, inp in ((n, i) for n in self.nodes if n.name != name for i in n.inputs.values()):
            if inp.source_node == name:
                raise GraphError(
                    f"cannot remove node {name!r} from {self.path}: node {reader.name!r} reads {inp.source!r} "
                    f"(input {inp.port!r}); rewire or remove that node first"
                )
        channels = _LineDict(
            {ch: ep for ch, ep in self.channels.items() if not ch.startswith(f"{name}/")},
            lines=getattr(self.channels, "lines", {}),
        )
        return self._with_nodes([n for n in self.nodes if n.name != name], channels)

    def rewire(
        self,
        node: str,
        port: str,
        source: str,
        delivery: str | None = None,
        queue_size: int | None = None,
        delayed: bool | None = None,
    ) -> GraphSpec:
        """This graph with input `port` of `node` reading `source` (node/output). Options left None keep the
        input's current ones (a port not connected yet: the node's declared defaults)."""
        old = self._existing(node).inputs.get(port)
        entry = _entry_of(self.node(node))
        opts: dict[str, Any] = {"source": source}
        for key, value in (("delivery", delivery), ("queue_size", queue_size), ("delayed", delayed)):
            if value is not None or old is not None:
                opts[key] = value if value is not None else getattr(old, key)
        entry["inputs"][port] = opts
        return self._with_nodes([_node_spec(entry, self.path, []) if n.name == node else n for n in self.nodes])

    def set_params(self, node: str, params: Mapping[str, Any]) -> GraphSpec:
        """This graph with `params` (name: value, as a graph file writes them) set on `node`, like `--set`
        (`rate` sets the node's rate)."""
        self._existing(node)
        entry = _entry_of(self.node(node))
        new = _node_spec(entry, self.path, list(params.items()))
        return self._with_nodes([new if n.name == node else n for n in self.nodes])

    def _existing(self, name: str) -> NodeSpec:
        try:
            return self.node(name)
        except KeyError:
            names = [n.name for n in self.nodes]
            raise GraphError(f"no node named {name!r} in {self.path}{_did_you_mean(name, names)}") from None

    def _with_nodes(self, nodes: list[NodeSpec], channels: dict | None = None) -> GraphSpec:
        return _assemble(
            self.path,
            self.text,
            nodes,
            self.clock if self.clock_declared else None,
            self.channels if channels is None else channels,
            self.overrides,
        )


def _def_entry(node: NodeDef) -> _LineDict:
    """A NodeDef as the validator reads a file's entry, with no lines."""
    raw = _LineDict({"name": node.name, "type": node.type, "params": _LineDict(node.params)})
    for key in ("rate", "trigger", "process", "priority"):
        if getattr(node, key) is not None:
            raw[key] = getattr(node, key)
    raw["inputs"] = _LineDict({p: dict(s) if isinstance(s, Mapping) else s for p, s in node.inputs.items()})
    return raw


def _entry_of(node: NodeSpec) -> _LineDict:
    """A validated node's entry (its lines kept), to validate again after an edit."""
    raw = _def_entry(NodeDef.of(node))
    raw.line = node.line
    written = node.params_raw
    raw["params"] = _LineDict(written, line=getattr(written, "line", 0), lines=getattr(written, "lines", {}))
    raw["inputs"].lines = {p: i.line for p, i in node.inputs.items()}
    return raw


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


def build_params(cls: type[Node], raw: dict, path: str, line: int, node_name: str) -> Any:
    """Validate raw params against the node's Params dataclass (types, then the constraints its fields declare,
    see runtime/params.py) and construct it (`line`: where `params:` is)."""
    pcls = cls.Params
    if not dataclasses.is_dataclass(pcls):
        raise GraphError(f"{cls.__name__}.Params must be a dataclass ({_at(path, line)})")
    lines = getattr(raw, "lines", {})
    tname = getattr(cls, "type_name", cls.__name__)
    kwargs = _typed_params(pcls, raw, path, line, node_name, tname)
    fields = {f.name: f for f in dataclasses.fields(pcls)}
    missing = [n for n, f in fields.items() if n not in kwargs and _default(f) is dataclasses.MISSING]
    if missing:
        raise GraphError(
            f"node {node_name!r} ({tname}) at {_at(path, line)} is missing required param {missing[0]!r}; "
            "add it under params"
        )
    for name, f in fields.items():
        problem = value_problem(kwargs[name] if name in kwargs else _default(f), f.metadata)
        if problem:
            at = _at(path, lines.get(name, line))
            raise GraphError(f"{at}: param {name!r} of node {node_name!r} ({tname}) {problem}")
    try:
        return pcls(**kwargs)
    except ParamError as e:
        at = _at(path, lines.get(e.field, line))
        raise GraphError(f"{at}: param {e.field!r} of node {node_name!r} ({tname}) {e.problem}") from None
    except (ValueError, TypeError) as e:
        raise GraphError(f"{_at(path, line)}: bad params for node {node_name!r} ({tname}): {e}") from None


def _default(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh one from its factory), or MISSING."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _typed_params(pcls: type, raw: dict, path: str, line: int, node_name: str, tname: str) -> dict[str, Any]:
    """The written params, each known to `pcls` and coerced to its field's type."""
    hints = typing.get_type_hints(pcls)
    fields = [f.name for f in dataclasses.fields(pcls)]
    lines = getattr(raw, "lines", {})
    kwargs = {}
    for key, value in raw.items():
        loc = _at(path, lines.get(key, line))
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
    return kwargs


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
    """Validate a graph file's text (`path` names it in errors) with `--set` items applied."""
    doc = _load_yaml(text, path)
    raw_nodes = _check_document(doc, path)
    sets = parse_set(overrides)
    names_in_file = [n.get("name") for n in raw_nodes if isinstance(n, dict)]
    for node, param, _value in sets:
        if node not in names_in_file:
            raise GraphError(
                f"--set {node}.{param}: no node named {node!r} in {path}{_did_you_mean(node, names_in_file)}"
            )
    specs: list[NodeSpec] = []
    seen: dict[str, int] = {}
    for raw in raw_nodes:
        if not isinstance(raw, dict):
            raise GraphError(f"{path}: each entry of `nodes:` must be a mapping with name and type")
        _check_entry_keys_and_name(raw, path, seen)
        specs.append(_node_spec(raw, path, [(p, v) for n, p, v in sets if n == raw["name"]]))
    channels = doc.get("channels") or _LineDict()
    channels = _LineDict(channels, lines=getattr(channels, "lines", {}))
    clock = doc.get("clock")
    return _assemble(path, text, specs, clock, channels, tuple(overrides), doc.lines.get("clock", 0))


def _load_yaml(text: str, path: str) -> _LineDict:
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GraphError(f"invalid YAML at {path}{line}: {problem}; check indentation and quoting") from None


def _check_document(doc: Any, path: str) -> list:
    """The top level: known keys and a non-empty `nodes:` list, which is returned."""
    if not isinstance(doc, dict) or "nodes" not in doc:
        raise GraphError(f"{path}: a graph file needs a top-level `nodes:` list")
    top_known = {"nodes", "clock", "channels", "description"}
    for key in doc:
        if key not in top_known:
            raise GraphError(f"unknown top-level key {key!r} at {path}:{doc.lines[key]}{_did_you_mean(key, top_known)}")
    raw_nodes = doc["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError(f"`nodes:` at {path}:{doc.lines['nodes']} must be a non-empty list of nodes")
    return raw_nodes


def _check_entry_keys_and_name(raw: _LineDict, path: str, seen: dict[str, int]) -> None:
    """Known keys and a unique name; `seen` (name: line) collects the names so far."""
    where = _at(path, raw.line)
    for key in raw:
        if key not in NODE_KEYS:
            raise GraphError(
                f"unknown key {key!r} at {_at(path, raw.lines.get(key, raw.line))}{_did_you_mean(key, NODE_KEYS)}"
            )
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise GraphError(f"node at {where} needs a `name:` (text without '/')")
    if name in seen:
        raise GraphError(f"duplicate node name {name!r} at {where} (first at line {seen[name]}); names must be unique")
    seen[name] = raw.line


def _node_spec(raw: _LineDict, path: str, sets: list[tuple[str, Any]]) -> NodeSpec:
    """One validated node from its entry, with its `--set` items (param, value) applied."""
    name, where = raw["name"], _at(path, raw.line)
    type_name, cls = _node_type(raw, path)
    params_raw, rate = _with_overrides(raw, where, sets)
    params = build_params(cls, params_raw, path, params_raw.line or raw.line, name)
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise GraphError(f"`rate:` of node {name!r} at {where} must be a positive number of Hz, got {rate!r}")
        rate = float(rate)
    inputs = _node_inputs(raw, path, cls, cls.declare_inputs(params))
    trigger = raw.get("trigger")
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
            f"`priority:` of node {name!r} at {_at(path, raw.lines.get('priority', raw.line))} must be an integer "
            f"1..99 (real-time SCHED_FIFO priority), got {priority!r}"
        )
    outputs = tuple(cls.declare_outputs(params))
    return NodeSpec(
        name, type_name, cls, params, rate, trigger, inputs, outputs, process, raw.line, params_raw, priority
    )


def _node_type(raw: _LineDict, path: str) -> tuple[str, type[Node]]:
    name, type_name = raw["name"], raw.get("type")
    if not isinstance(type_name, str):
        raise GraphError(f"node {name!r} at {_at(path, raw.line)} needs a `type:`")
    try:
        return type_name, resolve_type(type_name)
    except LookupError as e:
        hint = _did_you_mean(type_name, known_types())
        at = _at(path, raw.lines.get("type", raw.line))
        raise GraphError(f"unknown node type {type_name!r} for node {name!r} at {at}{hint or f' ({e})'}") from None
    except ImportError as e:
        raise GraphError(f"node type {type_name!r} at {_at(path, raw.line)} cannot be loaded: {e}") from None


def _with_overrides(raw: _LineDict, where: str, sets: list[tuple[str, Any]]) -> tuple[_LineDict, Any]:
    """The entry's params and rate with its `--set` items applied; params keep the lines they were written at."""
    written = raw.get("params") or _LineDict()
    if not isinstance(written, dict):
        raise GraphError(f"`params:` of node {raw['name']!r} at {where} must be a mapping")
    params = _LineDict(written, line=getattr(written, "line", 0), lines=getattr(written, "lines", {}))
    rate = raw.get("rate")
    for param, value in sets:
        if param == "rate":
            rate = value
        else:
            params[param] = value
    return params, rate


def _node_inputs(raw: _LineDict, path: str, cls: type[Node], declared: dict[str, Input]) -> dict[str, InputSpec]:
    """The entry's `inputs:` checked against the node's declared inputs (required ones included)."""
    name, type_name, where = raw["name"], raw["type"], _at(path, raw.line)
    raw_inputs = raw.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        raise GraphError(f"`inputs:` of node {name!r} at {where} must map port: node/output")
    inputs: dict[str, InputSpec] = {}
    for port, src in raw_inputs.items():
        line = getattr(raw_inputs, "lines", {}).get(port, raw.line)
        loc = _at(path, line)
        decl = declared.get(port)
        if decl is None:
            if not cls.any_inputs:
                opts = ", ".join(declared) or "none"
                raise GraphError(
                    f"node {name!r} ({type_name}) has no input {port!r} at {loc}"
                    f"{_did_you_mean(port, declared) or f' (inputs: {opts})'}"
                )
            decl = Input(delivery="queue")
        inputs[port] = _input_spec(port, src, decl, name, loc, line)
    for port, decl in declared.items():
        if decl.required and port not in inputs:
            raise GraphError(
                f"node {name!r} ({type_name}) at {where} is missing required input {port!r}; "
                f"add `{port}: <node>/<output>` under inputs"
            )
    return inputs


def _input_spec(port: str, src: Any, decl: Input, node: str, loc: str, line: int) -> InputSpec:
    """One `port: node/output` or `port: {source: ..., delivery: ...}` entry; unset options are the declaration's."""
    opts: dict = {}
    if isinstance(src, dict):
        opts = dict(src)
        src = opts.pop("source", None)
        bad = set(opts) - set(INPUT_OPTIONS)
        if bad:
            raise GraphError(
                f"unknown input option {sorted(bad)[0]!r} at {loc}; use source, delivery, queue_size, delayed"
            )
    if not isinstance(src, str) or src.count("/") != 1:
        raise GraphError(f"input {port!r} of node {node!r} at {loc} must be `node/output`, got {src!r}")
    delivery = opts.get("delivery", decl.delivery)
    if delivery not in ("latest", "queue"):
        raise GraphError(f"delivery of input {port!r} at {loc} must be latest or queue, got {delivery!r}")
    queue_size, delayed = int(opts.get("queue_size", decl.queue_size)), bool(opts.get("delayed", decl.delayed))
    return InputSpec(port, src, delivery, queue_size, delayed, line)


def _assemble(
    path: str,
    text: str,
    specs: list[NodeSpec],
    clock: str | None,
    channels: _LineDict,
    overrides: tuple[str, ...],
    clock_line: int = 0,
) -> GraphSpec:
    """The graph-wide checks over validated nodes: sources, cycles, clock, channel endpoints."""
    _check_sources(specs, path)
    ordered = _topological(specs, path)
    declared = clock is not None
    if clock is None:
        clock = "virtual" if any(s.cls.virtual_clock for s in specs) else "wall"
    if clock not in ("wall", "virtual"):
        raise GraphError(f"`clock:` at {path}:{clock_line} must be wall or virtual, got {clock!r}")
    if clock == "virtual" and any(s.process for s in specs):
        raise GraphError(f"{path}: `process:` groups need the wall clock; a virtual-clock graph runs in one process")
    all_channels = [f"{s.name}/{o}" for s in specs for o in s.outputs]
    for ch, ep in channels.items():
        if ch not in all_channels:
            raise GraphError(
                f"`channels:` entry {ch!r} at {path}:{channels.lines.get(ch, 0)} is not a node output"
                f"{_did_you_mean(ch, all_channels)}"
            )
        if not isinstance(ep, str) or not ep.startswith(("inproc://", "ipc://", "tcp://")):
            raise GraphError(
                f"endpoint for {ch!r} at {path}:{channels.lines.get(ch, 0)} must start with inproc://, ipc:// or tcp://"
            )
    return GraphSpec(path, text, ordered, clock, channels, overrides, declared)


def _check_sources(specs: list[NodeSpec], path: str) -> None:
    """Every input reads an output that some node declares."""
    by_name = {s.name: s for s in specs}
    for s in specs:
        for inp in s.inputs.values():
            src = by_name.get(inp.source_node)
            if src is None:
                raise GraphError(
                    f"input {inp.port!r} of node {s.name!r} at {_at(path, inp.line)} reads from unknown node "
                    f"{inp.source_node!r}{_did_you_mean(inp.source_node, by_name)}"
                )
            if inp.source_output not in src.outputs:
                outs = ", ".join(src.outputs) or "none"
                hint = _did_you_mean(inp.source_output, src.outputs) or f" (outputs: {outs})"
                raise GraphError(
                    f"input {inp.port!r} of node {s.name!r} at {_at(path, inp.line)} reads {inp.source!r}, but "
                    f"{src.name!r} has no output {inp.source_output!r}{hint}"
                )


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
            where = _at(path, edge.line if edge else first.line)
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
