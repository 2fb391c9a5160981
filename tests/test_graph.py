"""Graph files: every validation error is one line naming file:line and the fix."""

import textwrap

import pytest

from robotflow.runtime.graph import GraphError, NodeDef, load_graph, parse_graph
from robotflow.runtime.scheduler import run_graph


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


# ---- the composition API: each edit returns a new validated graph -----------------------------------------


def test_add_node_validates_and_leaves_the_original_unchanged():
    g = _check(GOOD)
    g2 = g.add_node(NodeDef("echo", "test.echo", inputs={"x": "counter/count"}))
    assert [n.name for n in g2.nodes] == ["counter", "sink", "echo"]
    assert g2.node("echo").trigger == "x" and g2.node("echo").inputs["x"].delivery == "queue"
    assert [n.name for n in g.nodes] == ["counter", "sink"] and g2.text == g.text
    with pytest.raises(GraphError, match="cannot add node 'sink' to graphs/x.yaml: a node of that name exists"):
        g.add_node(NodeDef("sink", "test.sink", rate=5))
    with pytest.raises(GraphError) as e:
        g.add_node(NodeDef("e", "test.echo", params={"fail_att": 1}, inputs={"x": "counter/count"}))
    assert str(e.value) == (
        "unknown param 'fail_att' for test.echo at graphs/x.yaml (node added to the graph); did you mean 'fail_at'?"
    )
    with pytest.raises(GraphError, match="reads 'counter/cont', but 'counter' has no output 'cont'"):
        g.add_node(NodeDef("e", "test.echo", inputs={"x": "counter/cont"}))


def test_added_node_starts_after_its_source_and_runs_in_a_process_group():
    g = _check(
        "nodes:\n  - {name: sink, type: test.sink, rate: 50, inputs: {n: {source: counter/count, delivery: queue}}}\n"
        "  - {name: counter, type: test.counter, rate: 100, params: {stop_after: 30}}\n"
    )
    g = g.add_node(NodeDef("far", "test.sink", rate=50, inputs={"n": "counter/count"}, process="far"))
    assert [n.name for n in g.nodes] == ["counter", "sink", "far"]
    result, _ = run_graph(g, duration_s=10.0)
    assert result.ok, result
    assert "far" in result.stats["nodes"], "the process group ran the node added in code"


def test_replace_node_keeps_its_readers_and_checks_them():
    g = _check(GOOD)
    counter = NodeDef.of(g.node("counter"))
    g2 = g.replace_node(NodeDef(counter.name, counter.type, params={"start": 7}, rate=20.0))
    assert g2.node("counter").params.start == 7 and g2.node("counter").rate == 20.0
    assert g2.node("sink").inputs["n"].source == "counter/count"
    with pytest.raises(GraphError, match="input 'n' of node 'sink' at graphs/x.yaml:10 reads 'counter/count', but"):
        g.replace_node(NodeDef("counter", "test.fail", rate=5))
    with pytest.raises(GraphError, match="no node named 'countr' in graphs/x.yaml; did you mean 'counter'"):
        g.replace_node(NodeDef("countr", "test.counter", rate=5))


def test_remove_node_refuses_while_read():
    g = _check(GOOD)
    assert [n.name for n in g.remove_node("sink").nodes] == ["counter"]
    with pytest.raises(GraphError) as e:
        g.remove_node("counter")
    assert str(e.value) == (
        "cannot remove node 'counter' from graphs/x.yaml: node 'sink' reads 'counter/count' (input 'n'); "
        "rewire or remove that node first"
    )


def test_rewire_keeps_the_input_options_and_validates_the_source():
    g = _check(GOOD).add_node(NodeDef("other", "test.counter", rate=10))
    g2 = g.rewire("sink", "n", "other/count")
    assert g2.node("sink").inputs["n"].source == "other/count" and g2.node("sink").inputs["n"].delivery == "queue"
    assert g.node("sink").inputs["n"].source == "counter/count"
    assert g.rewire("sink", "n", "other/count", delivery="latest").node("sink").inputs["n"].delivery == "latest"
    with pytest.raises(GraphError, match="reads from unknown node 'nobody'"):
        g.rewire("sink", "n", "nobody/count")
    with pytest.raises(GraphError, match="must be `node/output`"):
        g.rewire("sink", "n", "other")


def test_set_params_is_like_set_and_names_the_file_line():
    g = _check(GOOD)
    g2 = g.set_params("counter", {"start": 3, "rate": 10})
    assert g2.node("counter").params.start == 3 and g2.node("counter").rate == 10.0
    assert g.node("counter").params.start == 0
    with pytest.raises(GraphError) as e:
        g.set_params("counter", {"start": "x"})
    assert str(e.value) == "param 'start' of node 'counter' (test.counter) at graphs/x.yaml:3 must be int, got str 'x'"


def test_set_rate_on_a_triggered_node_makes_it_periodic_as_in_a_file():
    g = _check(
        "nodes:\n  - {name: a, type: test.counter, rate: 5}\n  - {name: b, type: test.relay, inputs: {x: a/count}}\n"
    )
    assert g.node("b").trigger == "x" and g.node("b").rate is None
    b = g.set_params("b", {"rate": 20})
    assert b.node("b").rate == 20.0 and b.node("b").trigger is None
    assert b.node("b").trigger == _check(g.text, ["b.rate=20"]).node("b").trigger


def test_param_constraints_are_checked_at_their_line():
    """A value out of the range or set its field declares (runtime/params.py) is refused at its own line, from
    the file, from --set and from a GraphSpec edit alike."""
    cam = "nodes:\n  - name: cam\n    type: test.frames\n    rate: 30\n    params:\n      width: {w}\n"
    assert _check(cam.format(w=64)).node("cam").params.width == 64
    assert _error(cam.format(w=0)) == "graphs/x.yaml:6: param 'width' of node 'cam' (test.frames) must be > 0, got 0"
    # --set of a written param: its line; of one not written: the line of `params:`' first entry.
    assert _error(cam.format(w=64), ["cam.width=-3"]).startswith("graphs/x.yaml:6: param 'width'")
    assert _error(cam.format(w=64), ["cam.height=0"]) == (
        "graphs/x.yaml:6: param 'height' of node 'cam' (test.frames) must be > 0, got 0"
    )
    with pytest.raises(GraphError, match=r"^graphs/x.yaml:6: param 'width' .* must be > 0, got -1$"):
        _check(cam.format(w=64)).set_params("cam", {"width": -1})
    with pytest.raises(GraphError, match=r"^graphs/x.yaml \(node added to the graph\): param 'episodes' .* >= 0"):
        _check(cam.format(w=64)).add_node(NodeDef("eps", "test.episodes", {"episodes": -1}, rate=10))


def test_cross_field_constraint_names_its_field_line():
    arm = (
        "nodes:\n  - name: world\n    type: sim.world\n    rate: 500\n  - name: arm\n    type: sim.arm\n"
        "    rate: 100\n    params:\n      workspace_max: [0.8, 0.45, 0.65]\n      workspace_min: [0.2, 0.5, 0.0]\n"
    )
    assert _error(arm) == (
        "graphs/x.yaml:9: param 'workspace_max' of node 'arm' (sim.arm) must be above workspace_min on every "
        "axis, got min [0.2, 0.5, 0.0] and max [0.8, 0.45, 0.65]"
    )
