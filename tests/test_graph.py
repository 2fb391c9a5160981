"""Graph files: every validation error is one line naming file:line and the fix."""

import textwrap

import pytest

from robotflow.runtime.graph import GraphError, load_graph, parse_graph


def _check(text, overrides=()):
    return parse_graph(textwrap.dedent(text), "graphs/x.yaml", overrides)


def _error(text, overrides=()):
    with pytest.raises(GraphError) as e:
        _check(text, overrides)
    msg = str(e.value)
    assert "\n" not in msg, "errors are one line"
    return msg


GOOD = """
nodes:
  - name: counter
    type: test.counter
    rate: 100
  - name: sink
    type: test.sink
    rate: 50
    inputs:
      n: {source: counter/count, delivery: queue}
"""


def test_valid_graph_orders_producers_first_and_applies_defaults():
    g = _check(GOOD)
    assert [n.name for n in g.nodes] == ["counter", "sink"]
    assert g.clock == "wall"
    assert g.node("sink").inputs["n"].delivery == "queue"
    assert g.node("counter").params.start == 0


def test_set_overrides_params_and_rate():
    g = _check(GOOD, ["counter.start=5", "counter.rate=250"])
    assert g.node("counter").params.start == 5 and g.node("counter").rate == 250


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "nodes:\n  - name: a\n    type: test.countr\n    rate: 1\n",
            "unknown node type 'test.countr' for node 'a' at graphs/x.yaml:3; did you mean 'test.counter'?",
        ),
        (
            "nodes:\n  - name: a\n    type: test.counter\n    rate: 1\n    params:\n      strat: 3\n",
            "unknown param 'strat' for test.counter at graphs/x.yaml:6; did you mean 'start'?",
        ),
        (
            "nodes:\n  - name: a\n    type: test.counter\n    rate: 1\n    params:\n      start: fast\n",
            "param 'start' of node 'a' (test.counter) at graphs/x.yaml:6 must be int, got str 'fast'",
        ),
        (
            "nodes:\n  - name: a\n    type: test.relay\n",
            "node 'a' (test.relay) at graphs/x.yaml:2 is missing required input 'x'; add `x: <node>/<output>` under inputs",
        ),
        (
            "nodes:\n  - name: a\n    type: test.counter\n    rate: 1\n  - name: b\n    type: test.relay\n    inputs:\n      x: a/cont\n",
            "input 'x' of node 'b' at graphs/x.yaml:8 reads 'a/cont', but 'a' has no output 'cont'; did you mean 'count'?",
        ),
        (
            "nodes:\n  - name: a\n    type: test.counter\n    rate: 1\n  - name: a\n    type: test.counter\n    rate: 1\n",
            "duplicate node name 'a' at graphs/x.yaml:5 (first at line 2); names must be unique",
        ),
        (
            "nodes:\n  - name: a\n    type: test.relay\n    inputs: {x: b/y}\n  - name: b\n    type: test.relay\n    inputs: {x: a/y}\n",
            "with no delayed edge",
        ),
        ("nodes:\n  - name: a\n    type: test.counter\n   rate: 1\n", "invalid YAML at graphs/x.yaml:"),
        (
            "nodes:\n  - name: a\n    type: test.counter\n",
            "node 'a' (test.counter) at graphs/x.yaml:2 needs `rate:` (Hz) or `trigger: <input>`",
        ),
        (
            "nodes:\n  - name: a\n    type: test.counter\n    rate: 1\n    prams: {}\n",
            "unknown key 'prams' at graphs/x.yaml:5; did you mean 'params'?",
        ),
        (
            "nodes:\n  - name: a\n    type: test.relay\n    inputs: {y: b/count}\n  - name: b\n    type: test.counter\n    rate: 1\n",
            "node 'a' (test.relay) has no input 'y' at graphs/x.yaml:4",
        ),
    ],
)
def test_validation_errors(text, expected):
    assert expected in _error(text)


def test_cycle_with_delayed_edge_is_accepted():
    g = _check("""
    nodes:
      - name: a
        type: test.relay
        inputs: {x: {source: b/y, delayed: true}}
      - name: b
        type: test.relay
        inputs: {x: a/y}
    """)
    assert [n.name for n in g.nodes] == ["a", "b"]


def test_cycle_error_names_the_loop_and_the_fix():
    msg = _error(
        "nodes:\n  - name: a\n    type: test.relay\n    inputs: {x: b/y}\n"
        "  - name: b\n    type: test.relay\n    inputs: {x: a/y}\n"
    )
    assert "a -> b" in msg or "b -> a" in msg
    assert "mark one input of the loop `delayed: true`" in msg and "graphs/x.yaml:" in msg


def test_set_unknown_node_and_param():
    assert "no node named 'countr'" in _error(GOOD, ["countr.start=1"])
    assert "unknown param 'strt'" in _error(GOOD, ["counter.strt=1"])
    assert "use --set node.param=value" in _error(GOOD, ["counter"])


def test_import_path_type_and_missing_file(tmp_path):
    g = _check("nodes:\n  - name: a\n    type: robotflow.testing.Counter\n    rate: 1\n")
    assert g.nodes[0].cls.__name__ == "Counter"
    with pytest.raises(GraphError, match="not found"):
        load_graph(tmp_path / "nope.yaml")


def test_priority_is_validated():
    g = _check("nodes:\n  - {name: a, type: test.counter, rate: 500, priority: 50}\n")
    assert g.nodes[0].priority == 50
    assert "must be an integer 1..99" in _error("nodes:\n  - {name: a, type: test.counter, rate: 5, priority: 200}\n")
