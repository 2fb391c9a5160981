"""The import rule, checked on the source (Python's `ast`), so a wrong-way import fails `make test`.

robotflow is layered; a module may import its own package and any package of a lower layer, never one of its own
layer or above. The README's architecture section shows the same order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "robotflow"

LAYERS: list[tuple[str, ...]] = [
    ("runtime", "geometry", "storage", "network"),  # the core and numpy/stdlib-only helpers
    ("recording", "safety", "wire"),  # episode files, the command safety layer, the inference wire protocol
    ("codecs",),  # recorded data <-> LeRobot datasets and policy tensors
    ("drivers", "views", "policies", "testing"),  # node types
    ("serving",),  # the inference server (loads policies)
    ("evaluation", "training"),  # rollouts and training runs, built from nodes and codecs
    ("scripts",),  # the click CLI: parses, calls one library function
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}

# Inside a package, parts that must not reach sideways. drivers/sim/ is the simulator; a hardware graph imports the
# teleop and Franka modules, so they must never pull MuJoCo in through drivers/sim.
SEALED = {"robotflow.drivers.sim": ("robotflow.drivers.sim", "robotflow.drivers.base")}

# Function-level imports of robotflow modules, allowed only where importing at the top would load a heavy
# dependency for callers that never need it. Each entry says why.
DEFERRED_OK = {
    "robotflow.policies.loading": "torch and LeRobot (seconds to import); a graph without a policy never needs them",
    "robotflow.policies.chunking": "torch; imported when a policy node starts, not when a graph is validated",
    "robotflow.policies.sync_runner": "torch; as chunking",
    "robotflow.codecs.relative": "torch and LeRobot's dataset; only training on EE-relative chunks uses it",
    "robotflow.codecs.memory_frames": "torch, PyAV and LeRobot's dataset; only `train --frames-in-memory` uses it",
    "robotflow.drivers.sim": "MuJoCo; teleop.scripted drives the simulator only, and hardware graphs must not load it",
    "robotflow.views.rerun": "the Rerun SDK; only `--rerun` and `view` use it",
    "robotflow.serving.server": "FastAPI and uvicorn; only `serve` uses it",
    "robotflow.training": "torch, LeRobot and accelerate; only `train` uses them",
}


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imported(module: str, path: Path, node: ast.AST) -> list[str]:
    """The robotflow modules an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "robotflow"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != "robotflow":
        return []
    # `from robotflow.x import y` may name a submodule y: count it as importing robotflow.x.y when that exists.
    names = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        names.append(sub if (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").exists() else base)
    return names


def unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def all_imports():
    for module, path in modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            for target in imported(module, path, node):
                yield module, path, node, target


def test_every_package_has_a_layer():
    units = {unit(m) for m, _ in modules()} - {None}
    assert units <= set(LAYER_OF), f"put these in LAYERS (and the README): {sorted(units - set(LAYER_OF))}"


def test_imports_run_downward():
    wrong = []
    for module, path, node, target in all_imports():
        src, dst = unit(module), unit(target)
        if src is None or dst is None or src == dst:
            continue
        if LAYER_OF[dst] >= LAYER_OF[src]:
            wrong.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {module} -> {target}")
    assert not wrong, "imports that run sideways or upward:\n" + "\n".join(wrong)


def test_sealed_parts_do_not_reach_sideways():
    wrong = []
    for module, path, node, target in all_imports():
        for sealed, allowed in SEALED.items():
            if module.startswith(sealed) and target.startswith(sealed.rsplit(".", 1)[0] + "."):
                if not target.startswith(allowed):
                    wrong.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {module} -> {target}")
    assert not wrong, "\n".join(wrong)


def test_function_level_imports_only_for_heavy_modules():
    wrong = []
    for module, path in modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                for target in imported(module, path, node):
                    if not any(target == ok or target.startswith(ok + ".") for ok in DEFERRED_OK):
                        wrong.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {target} (in {fn.name})")
    assert not wrong, "move these imports to the top of the file (or justify them in DEFERRED_OK):\n" + "\n".join(
        sorted(set(wrong))
    )


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from robotflow.codecs import get_codec", ["robotflow.codecs"]),
        ("from robotflow.runtime import node", ["robotflow.runtime.node"]),
        ("from .world import SimWorld", ["robotflow.drivers.sim.world"]),
        ("from ... import safety", ["robotflow.safety"]),
        ("from .. import base", ["robotflow.drivers.base"]),
        ("import numpy", []),
    ],
)
def test_the_checker_resolves_imports(source, expected):
    # The checker itself is tested, so a rule that silently matches nothing cannot pass.
    path = ROOT / "drivers" / "sim" / "nodes.py"
    node = ast.parse(source).body[0]
    assert imported("robotflow.drivers.sim.nodes", path, node) == expected
