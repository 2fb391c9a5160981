"""The runtime core: nodes, channels, clocks, graph files and the scheduler."""

from .channels import Message
from .graph import GraphError, GraphSpec, load_graph, parse_graph
from .node import Input, Node, StopGraph, register
from .scheduler import RunResult, Scheduler, run_graph

__all__ = [
    "GraphError",
    "GraphSpec",
    "Input",
    "Message",
    "Node",
    "RunResult",
    "Scheduler",
    "StopGraph",
    "load_graph",
    "parse_graph",
    "register",
    "run_graph",
]
