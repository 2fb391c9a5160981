"""`benchmarks.serve_load` for a few seconds: concurrent sessions on a real `robotflow serve` with every
kind of bad message mixed in (malformed, oversize, JPEG bombs, no or wrong token): no crash, every valid
request answered, every fault met by its refusal. The 5-minute run is the README's figure."""

from __future__ import annotations

import pytest

pytest.importorskip("lerobot")

from benchmarks.serve_load import FAULTS, main


def test_the_server_survives_concurrent_sessions_with_bad_messages_mixed_in():
    out = main(["--json", "--minutes", "0.15", "--sessions", "3", "--fault-rate", "0.4"])
    assert out["crashes"] == 0, out["examples"]
    assert out["valid_sent"] > 0 and out["valid_unanswered"] == 0, out["examples"]
    assert out["faults_unexpected"] == 0, out["examples"]
    assert all(out["faults"][kind] >= 1 for kind in FAULTS), out["faults"]
    assert out["sessions_opened"] >= 3 + out["faults"]["oversize_transport"]  # each 1009 costs a session
