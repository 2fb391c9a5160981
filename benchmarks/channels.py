"""Channel latency: robotflow's zero-copy inproc channel against queue.Queue, multiprocessing.Queue and dora-rs.

One sender, one receiver; the sender stamps each message with time.monotonic_ns() just before sending,
the receiver takes the time once the message is a numpy array. Messages are spaced 1 ms apart so this
measures latency, not queueing. Sizes: 64 B, 4 KB, 640x480x3, 4 MB.

dora-rs 1.1.0 runs from `.venv-peers` (`make bench` installs dora-rs and dora-rs-cli there, apart from
robotflow's own environment): a two-node dataflow (Python sender and receiver, the same sizes, counts and
interval, the timestamp in the message metadata) under `dora run`, which needs no coordinator or daemon.

    python -m benchmarks.channels --json
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._util import emit, machine, parser, percentiles_us
from robotflow.runtime.channels import Publisher, Subscriber

SIZES = [64, 4096, 921600, 4_000_000]
GAP_S = 0.001
PEERS = Path(__file__).resolve().parents[1] / ".venv-peers"


def _count(size: int, quick: bool) -> int:
    n = 2000 if size <= 4096 else 600
    return max(50, n // 5) if quick else n


def _inproc_block(pub: Publisher, sub: Subscriber, size: int, n: int) -> list[int]:
    payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    lat: list[int] = []

    def receiver():
        while len(lat) < n:
            if sub.wait(2000):  # what a triggered node waits on
                for m in sub.read_all():
                    lat.append(time.monotonic_ns() - m.timestamp_ns)
                    assert m["data"].nbytes == size

    t = threading.Thread(target=receiver)
    t.start()
    for _i in range(n):
        pub.send(time.monotonic_ns(), {"data": payload})
        time.sleep(GAP_S)
    t.join()
    return lat[5:]


def _queue_block(size: int, n: int) -> list[int]:
    """queue.Queue handing a numpy array between threads: the floor for an in-process handoff."""
    q: queue.Queue = queue.Queue()
    payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    lat: list[int] = []

    def receiver():
        for _ in range(n):
            t_sent, arr = q.get()
            lat.append(time.monotonic_ns() - t_sent)

    t = threading.Thread(target=receiver)
    t.start()
    for _ in range(n):
        q.put((time.monotonic_ns(), payload))
        time.sleep(GAP_S)
    t.join()
    return lat[5:]


def bench_inproc_and_queue(size: int, n: int, rounds: int = 6) -> tuple[dict, dict]:
    """robotflow's channel and the queue.Queue floor, in alternating blocks so that both see the same load."""
    ep = f"inproc://bench-{size}"
    pub = Publisher("bench/data", ep, hwm=1000)
    sub = Subscriber("bench/data", ep, "queue", queue_size=1000)
    assert pub.wait_for_subscribers(1, 5)
    ours: list[int] = []
    floor: list[int] = []
    for _ in range(rounds):
        ours += _inproc_block(pub, sub, size, n // rounds)
        floor += _queue_block(size, n // rounds)
    pub.close()
    sub.close()
    return percentiles_us(ours), percentiles_us(floor)


def _mp_receiver(q, out, n):
    lat = []
    for _ in range(n):
        t_sent, arr = q.get()
        lat.append(time.monotonic_ns() - t_sent)
    out.put(lat)


def bench_mp_queue(size: int, n: int) -> dict:
    """multiprocessing.Queue: pickles and copies the array into another process."""
    ctx = multiprocessing.get_context("spawn")
    q, out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_mp_receiver, args=(q, out, n))
    p.start()
    payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    time.sleep(1.0)
    for _ in range(n):
        q.put((time.monotonic_ns(), payload))
        time.sleep(GAP_S if size < 1_000_000 else 0.005)
    lat = out.get(timeout=120)
    p.join(10)
    return percentiles_us(lat[10:])


DORA_SENDER = """
import json, os, time
import numpy as np
import pyarrow as pa
from dora import Node

node = Node()
time.sleep(1.0)  # the receiver is up
for size, n in json.loads(os.environ["BENCH_PLAN"]):
    payload = pa.array(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8))
    for _ in range(n):
        node.send_output("data", payload, {"t": time.monotonic_ns(), "size": size})
        time.sleep(float(os.environ["BENCH_GAP_S"]))
time.sleep(0.5)
"""

DORA_RECEIVER = """
import json, os, time
from dora import Node

lat = {}
for event in Node():
    if event["type"] == "INPUT":
        arr = event["value"].to_numpy()  # zero-copy view of the received buffer
        now = time.monotonic_ns()
        assert arr.nbytes == event["metadata"]["size"]
        lat.setdefault(str(arr.nbytes), []).append(now - event["metadata"]["t"])
    elif event["type"] == "STOP":
        break
with open(os.environ["BENCH_OUT"], "w") as f:
    json.dump(lat, f)
"""


def bench_dora(plan: list[tuple[int, int]]) -> tuple[dict | None, str | None]:
    """dora-rs 1.1.0's Python API, same sizes, counts and interval: ({size: stats}, None) or (None, why not)."""
    dora = PEERS / "bin" / "dora"
    if not dora.exists():
        return None, f"{dora} not found: `make bench` installs dora-rs==1.1.0 and dora-rs-cli==1.1.0 there"
    with tempfile.TemporaryDirectory(prefix="robotflow-dora-") as tmp:
        out = Path(tmp) / "latencies.json"
        (Path(tmp) / "sender.py").write_text(DORA_SENDER)
        (Path(tmp) / "receiver.py").write_text(DORA_RECEIVER)
        env = {"RUST_LOG": "error"}  # dora 1.1.0 logs a diagnostic per large send otherwise
        (Path(tmp) / "dataflow.yml").write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "nodes": [
                        {
                            "id": "sender",
                            "path": "sender.py",
                            "outputs": ["data"],
                            "env": {**env, "BENCH_PLAN": json.dumps(plan), "BENCH_GAP_S": str(GAP_S)},
                        },
                        {
                            "id": "receiver",
                            "path": "receiver.py",
                            # the same bound as robotflow's reader: every message queued, none discarded
                            "inputs": {"data": {"source": "sender/data", "queue_size": 1000}},
                            "env": {**env, "BENCH_OUT": str(out)},
                        },
                    ]
                }
            )
        )
        budget = 60 + sum(n for _, n in plan) * GAP_S * 20
        path = f"{PEERS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"  # the nodes' `python` is the peers' one
        try:
            proc = subprocess.run(
                [str(dora), "run", "dataflow.yml", "--stop-after", f"{int(budget)}s", "--log-level", "error"],
                cwd=tmp,
                env={**os.environ, "PATH": path},
                capture_output=True,
                text=True,
                timeout=budget + 30,
            )
        except subprocess.TimeoutExpired:
            return None, f"dora run did not finish within {budget + 30:.0f} s"
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"dora run exited {proc.returncode} without results: {' | '.join(tail)}"
        lat = json.loads(out.read_text())
    return {
        str(size): {**percentiles_us(lat.get(str(size), [])[10:]), "delivered": len(lat.get(str(size), []))}
        for size, _n in plan
        if len(lat.get(str(size), [])) > 10
    }, None


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages (smoke run)")
    ap.add_argument("--no-dora", action="store_true", help="skip the dora-rs comparison")
    args = ap.parse_args()
    result: dict = {"inproc": {}, "baselines": {"queue": {}, "mp_queue": {}}}
    plan = [(size, _count(size, args.quick)) for size in SIZES]
    for size, n in plan:
        result["inproc"][str(size)], result["baselines"]["queue"][str(size)] = bench_inproc_and_queue(size, n)
        result["baselines"]["mp_queue"][str(size)] = bench_mp_queue(size, max(50, n // 4))
    dora, why = (None, "skipped (--no-dora)") if args.no_dora else bench_dora(plan)
    result["dora"] = dora
    if why:
        result["dora_reason"] = why
    inp, q = result["inproc"], result["baselines"]["queue"]
    result["ratio_vs_queue"] = {s: round(inp[s]["p50_us"] / q[s]["p50_us"], 2) for s in inp}
    result["ratio_vs_dora"] = {s: round(inp[s]["p50_us"] / d["p50_us"], 3) for s, d in (dora or {}).items()}
    result["checks"] = {
        "p50_ratio_4MB_vs_640x480": round(inp["4000000"]["p50_us"] / inp["921600"]["p50_us"], 3),
        "p50_vs_queue_le_2.5": all(r <= 2.5 for r in result["ratio_vs_queue"].values()),
        "p50_vs_dora_le_1/3": (
            None
            if dora is None or not {"921600", "4000000"} <= set(dora)
            else all(result["ratio_vs_dora"][s] <= 1 / 3 for s in ("921600", "4000000"))
        ),
        "targets_met": bool(
            inp["921600"]["p50_us"] <= 100
            and inp["4000000"]["p50_us"] <= 100
            and inp["921600"]["p99_us"] <= 250
            and inp["4000000"]["p99_us"] <= 250
            and inp["4000000"]["p50_us"] / inp["921600"]["p50_us"] <= 1.2
        ),
    }
    result["machine"] = machine()
    emit(result, args.json)


if __name__ == "__main__":
    main()
