"""A validated graph as text: `robotflow graph show` prints it as a node list or Graphviz dot."""

from __future__ import annotations

from .graph import GraphSpec


def graph_text(spec: GraphSpec) -> str:
    """Nodes in start order with their rate or trigger, process group, inputs and outputs."""
    lines = [f"graph {spec.path} ({spec.clock} clock)"]
    for n in spec.nodes:
        when = f"{n.rate:g} Hz" if n.rate else f"on {n.trigger}"
        proc = f" [process {n.process}]" if n.process else ""
        lines.append(f"  {n.name} ({n.type_name}, {when}){proc}")
        for port, i in n.inputs.items():
            flags = ", ".join(x for x in (i.delivery, "delayed" if i.delayed else "") if x)
            lines.append(f"    <- {port}: {i.source} ({flags})")
        for o in n.outputs:
            lines.append(f"    -> {o}")
    return "\n".join(lines)


def graph_dot(spec: GraphSpec) -> str:
    """Graphviz dot: a box per node, an edge per input (dashed when delayed)."""
    lines = ["digraph robotflow {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for n in spec.nodes:
        when = f"{n.rate:g} Hz" if n.rate else f"on {n.trigger}"
        lines.append(f'  "{n.name}" [label="{n.name}\\n{n.type_name}\\n{when}"];')
    for n in spec.nodes:
        for port, i in n.inputs.items():
            style = ", style=dashed" if i.delayed else ""
            lines.append(f'  "{i.source_node}" -> "{n.name}" [label="{i.source_output} -> {port}"{style}];')
    lines.append("}")
    return "\n".join(lines)
